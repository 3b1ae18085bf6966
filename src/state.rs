//! `server_monitor.state.json`: what the monitor is doing, for `status`,
//! `server-monitor restart` and people.
//!
//! [`Writer`] is the running monitor's side: it holds what only the monitor
//! knows (who it is, restart totals, the last check, the last heartbeat
//! ping, the server's memory and CPU, the last planned restart, the pause
//! requests taken) and builds the rest of the state from the policy's
//! [`Snapshot`], the escalation's part (pause, reminders, flapping:
//! [`Writer::oncall`]) and the server's pid at each save, so nothing is
//! mirrored by hand. A save writes atomically (a temporary file and a rename) at once,
//! fsynced, when anything beyond the last check changed; a new last check
//! alone (or a heartbeat ping, a memory sample) is written at most every
//! [`REFRESH`], not fsynced, since a lost "last check" line costs nothing.
//! The status endpoints read the state from memory ([`Writer::current`]).
//!
//! The monitor reads its state back only at start, to resume the attempt
//! count and a give-up from a recent state its predecessor left
//! ([`resumable`]), and a pause and the reminder schedule from any; a state file that is truncated or garbage is ignored
//! then, reported by `status` and rebuilt by the next write. Rendering for
//! `status` is here too ([`render`]); deciding what the phase is is not (the
//! policy does).

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::logging::{unix_millis, utc_iso8601_millis};
use crate::policy::{PhaseName, Snapshot};

pub const STATE_FILE: &str = "server_monitor.state.json";

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub monitor_pid: u32,
    pub service_name: String,
    pub health_url: String,
    /// idle, starting, verifying, running, restart-pending, given-up, stopped
    pub phase: PhaseName,
    pub server_pid: Option<u32>,
    pub consecutive_failures: u32,
    pub restart_attempts: u32,
    pub max_restart_attempts: u32,
    pub restarts_total: u64,
    pub last_check: Option<LastCheck>,
    pub last_error: Option<String>,
    pub last_restart: Option<String>,
    pub started: String,
    pub updated: String,
    /// `updated` as milliseconds since the epoch, for the next monitor's
    /// [`resumable`].
    #[serde(default)]
    pub updated_unix_ms: u64,
    /// The last planned restart (`server-monitor restart`) and its outcome.
    #[serde(default)]
    pub planned_restart: Option<PlannedRestart>,
    /// A maintenance pause (`server-monitor pause`).
    #[serde(default)]
    pub pause: Option<crate::escalation::SavedPause>,
    /// The ids of the last pause/resume requests the monitor took.
    #[serde(default)]
    pub pause_acks: Vec<String>,
    /// Reminder schedule, flap state, suppressed alerts.
    #[serde(default)]
    pub escalation: crate::escalation::Saved,
    /// The server's memory and CPU, measured at every check with
    /// MEMORY_LIMIT, else at most once a minute (src/usage.rs).
    #[serde(default)]
    pub usage: Option<crate::usage::Usage>,
    /// The last HEARTBEAT_URL ping and its result (never the URL).
    #[serde(default)]
    pub last_heartbeat: Option<LastHeartbeat>,
}

/// One heartbeat ping: when, and `ok` or why not.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LastHeartbeat {
    pub time: String,
    pub ok: bool,
    pub latency_ms: Option<f64>,
    pub reason: Option<String>,
}

/// What `server-monitor restart` waits for: its request id and the outcome.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PlannedRestart {
    /// The ids of the requests this restart answers.
    pub ids: Vec<String>,
    pub by: String,
    pub requested: String,
    pub outcome: Outcome,
    pub detail: Option<String>,
    pub server_pid: Option<u32>,
}

/// How a planned restart ended, as the monitor records it and `server-monitor
/// restart` reads it: `in progress`, `ok` or `failed` in the state file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    #[default]
    #[serde(rename = "in progress")]
    InProgress,
    /// The new server was verified healthy.
    #[serde(rename = "ok")]
    Ok,
    /// It was not, or the restart was refused.
    #[serde(rename = "failed")]
    Failed,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Outcome::InProgress => "in progress",
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
        })
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LastCheck {
    pub time: String,
    pub healthy: bool,
    pub latency_ms: f64,
    pub reason: Option<String>,
}

/// Pure: what a monitor starting at `now_unix_ms` takes over from the state
/// `s` its predecessor left: only when that state is recent (`updated`
/// within `window` of now), is for the same HEALTH_URL, and its monitor did
/// not stop on purpose (phase `stopped`). `window` is max(RESTART_COOLDOWN,
/// 3 × CHECK_INTERVAL) + 5 s (the state is rewritten at least that often
/// while anything changes).
pub fn resumable(
    s: &State,
    health_url: &str,
    now_unix_ms: u64,
    window: std::time::Duration,
) -> Option<crate::policy::Resumed> {
    let age = now_unix_ms.abs_diff(s.updated_unix_ms);
    let recent = s.updated_unix_ms > 0 && u128::from(age) <= window.as_millis();
    if !recent || s.health_url != health_url || s.phase == PhaseName::Stopped {
        return None;
    }
    Some(crate::policy::Resumed {
        attempts: s.restart_attempts,
        given_up: s.phase == PhaseName::GivenUp,
        failures: s.consecutive_failures,
        last_error: s.last_error.clone(),
    })
}

/// How often the state file is rewritten when only the last check changed.
pub const REFRESH: Duration = Duration::from_secs(5);

/// The running monitor's state file; see the module header.
pub struct Writer {
    dir: PathBuf,
    /// What only the monitor knows; the policy's part and the server pid are
    /// filled in at each save.
    state: State,
    /// The state last written, less `last_check` and the time stamps.
    saved: Option<State>,
    written_check: Option<LastCheck>,
    written_heartbeat: Option<LastHeartbeat>,
    written_at: Instant,
}

impl Writer {
    /// `base` holds who the monitor is (pid, service, URL, start time).
    pub fn new(dir: &Path, base: State, now: Instant) -> Writer {
        Writer {
            dir: dir.to_path_buf(),
            state: base,
            saved: None,
            written_check: None,
            written_heartbeat: None,
            written_at: now,
        }
    }

    /// Takes over the restart totals of the state a predecessor left.
    pub fn resume(&mut self, old: &State) {
        self.state.restarts_total = old.restarts_total;
        self.state.last_restart = old.last_restart.clone();
    }

    /// A restart began at `wall`.
    pub fn restarted(&mut self, wall: SystemTime) {
        self.state.restarts_total += 1;
        self.state.last_restart = Some(utc_iso8601_millis(wall));
    }

    pub fn checked(&mut self, check: LastCheck) {
        self.state.last_check = Some(check);
    }

    /// A heartbeat ping ended; like a last check, written at most every
    /// [`REFRESH`] unless its result changed.
    pub fn heartbeat(&mut self, ping: LastHeartbeat) {
        self.state.last_heartbeat = Some(ping);
    }

    /// MEMORY_LIMIT: the server's last measured memory and CPU;
    /// like the last check, it alone does not make a write significant.
    pub fn usage(&mut self, usage: Option<&crate::usage::Usage>) {
        if self.state.usage.as_ref() != usage {
            self.state.usage = usage.cloned();
        }
    }

    /// A planned restart was asked for; it replaces the one before.
    pub fn planned_restart_requested(&mut self, p: PlannedRestart) {
        self.state.planned_restart = Some(p);
    }

    /// The last planned restart, for its outcome to be filled in.
    pub fn planned_restart(&mut self) -> Option<&mut PlannedRestart> {
        self.state.planned_restart.as_mut()
    }

    /// The escalation's part (pause, reminder schedule, flap
    /// state), taken from it at each save.
    pub fn oncall(&mut self, e: &crate::escalation::Escalation) {
        self.state.pause = e.saved_pause();
        self.state.escalation = e.saved();
    }

    /// A pause or resume request was taken; its command waits for
    /// its id in `pause_acks` (the last [`crate::pause::ACKS_KEPT`] kept).
    pub fn pause_acked(&mut self, id: String) {
        let acks = &mut self.state.pause_acks;
        acks.push(id);
        let excess = acks.len().saturating_sub(crate::pause::ACKS_KEPT);
        acks.drain(..excess);
    }

    /// The state as of the last save, less the time stamps (the status
    /// endpoints render it from memory).
    pub fn current(&self) -> &State {
        &self.state
    }

    /// When a last check that was held back is due to be written.
    pub fn next_due(&self) -> Option<Instant> {
        (self.state.last_check != self.written_check
            || self.state.last_heartbeat != self.written_heartbeat)
            .then(|| self.written_at + REFRESH)
    }

    /// Writes the state if it changed (see the module header).
    pub fn save(&mut self, snap: &Snapshot, server_pid: Option<u32>, now: Instant) {
        self.fill(snap, server_pid);
        // `saved` holds what was written less the last check and the time
        // stamps, so that this comparison, made every loop turn, copies
        // nothing.
        // A heartbeat counts like a last check, but whether it succeeded
        // is significant.
        let check = self.state.last_check.take();
        let beat = self.state.last_heartbeat.take();
        let usage = self.state.usage.take();
        let beat_ok = beat.as_ref().map(|b| b.ok);
        let significant = self.saved.as_ref() != Some(&self.state)
            || beat_ok != self.written_heartbeat.as_ref().map(|b| b.ok);
        self.state.last_check = check;
        self.state.last_heartbeat = beat;
        self.state.usage = usage;
        let unchanged = self.state.last_check == self.written_check
            && self.state.last_heartbeat == self.written_heartbeat;
        if !significant && (unchanged || now < self.written_at + REFRESH) {
            return;
        }
        self.saved = Some(State {
            last_check: None,
            last_heartbeat: None,
            usage: None,
            ..self.state.clone()
        });
        self.written_check = self.state.last_check.clone();
        self.written_heartbeat = self.state.last_heartbeat.clone();
        self.write(significant);
        self.written_at = now;
    }

    /// The last write, on the monitor's way out: phase `stopped`.
    pub fn finish(&mut self, snap: &Snapshot, server_pid: Option<u32>) {
        self.fill(snap, server_pid);
        self.state.phase = PhaseName::Stopped;
        self.write(true);
    }

    fn fill(&mut self, snap: &Snapshot, server_pid: Option<u32>) {
        let s = &mut self.state;
        s.phase = snap.phase;
        s.consecutive_failures = snap.failures;
        s.restart_attempts = snap.attempts;
        s.last_error.clone_from(&snap.last_error);
        s.server_pid = server_pid;
    }

    /// Stamps and writes the whole state; `self.state` keeps empty time
    /// stamps between writes, for the comparison in [`Writer::save`].
    fn write(&mut self, durable: bool) {
        let wall = SystemTime::now();
        let stamped = State {
            updated: utc_iso8601_millis(wall),
            updated_unix_ms: unix_millis(wall),
            ..self.state.clone()
        };
        if let Err(e) = write(&self.dir, &stamped, durable) {
            log::warn!(error = e.to_string().as_str(); "cannot write the state file");
        }
    }
}

/// Writes the state file atomically.
pub fn write(dir: &Path, state: &State, durable: bool) -> io::Result<()> {
    let mut json = serde_json::to_vec_pretty(state).map_err(io::Error::other)?;
    json.push(b'\n');
    crate::files::write_atomic(&dir.join(STATE_FILE), &json, durable)
}

#[derive(Debug)]
pub enum ReadError {
    Missing,
    Io(io::Error),
    Invalid(String),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Missing => f.write_str("no state file (has a monitor run with this LOG_DIR?)"),
            ReadError::Io(e) => write!(f, "cannot read the state file: {e}"),
            ReadError::Invalid(e) => write!(f, "the state file is damaged ({e}); the running monitor rewrites it at its next check"),
        }
    }
}

pub fn read(dir: &Path) -> Result<State, ReadError> {
    let bytes = match fs::read(dir.join(STATE_FILE)) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ReadError::Missing),
        Err(e) => return Err(ReadError::Io(e)),
    };
    serde_json::from_slice(&bytes).map_err(|e| ReadError::Invalid(e.to_string()))
}

/// The readable form `server-monitor status` prints.
pub fn render(s: &State, monitor_running: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "service:        {}", s.service_name);
    let _ = writeln!(out, "health URL:     {}", s.health_url);
    let monitor = if monitor_running {
        "running"
    } else {
        "not running"
    };
    let _ = writeln!(out, "monitor:        pid {} ({monitor})", s.monitor_pid);
    match &s.pause {
        Some(p) => {
            let _ = writeln!(out, "state:          {}; {}", p.describe(), s.phase);
        }
        None => {
            let _ = writeln!(out, "state:          {}", s.phase);
        }
    }
    let server = s
        .server_pid
        .map_or("none".to_string(), |p| format!("pid {p}"));
    let _ = writeln!(out, "server:         {server}");
    if let Some(c) = &s.last_check {
        let result = match (&c.healthy, &c.reason) {
            (true, _) => "healthy".to_string(),
            (false, Some(r)) => format!("failed: {r}"),
            (false, None) => "failed".to_string(),
        };
        let _ = writeln!(
            out,
            "last check:     {} {result} ({:.1} ms)",
            c.time, c.latency_ms
        );
    }
    if let Some(u) = &s.usage {
        let _ = writeln!(out, "memory:         {} at {}", u.summary(), u.time);
    }
    let _ = writeln!(out, "failures:       {} in a row", s.consecutive_failures);
    let _ = writeln!(
        out,
        "restarts:       {}/{} attempts, {} in total",
        s.restart_attempts, s.max_restart_attempts, s.restarts_total
    );
    if let Some(r) = &s.last_restart {
        let _ = writeln!(out, "last restart:   {r}");
    }
    if let Some(e) = &s.last_error {
        let _ = writeln!(out, "last error:     {e}");
    }
    if let Some(p) = &s.planned_restart {
        let detail = p
            .detail
            .as_deref()
            .map(|d| format!(": {d}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "planned restart: {} by {}, {}{detail}",
            p.requested, p.by, p.outcome
        );
    }
    if let Some(h) = &s.last_heartbeat {
        let result = match (h.ok, &h.reason, h.latency_ms) {
            (true, _, Some(ms)) => format!("ok ({ms:.1} ms)"),
            (true, _, None) => "ok".to_string(),
            (false, Some(r), _) => format!("failed: {r}"),
            (false, None, _) => "failed".to_string(),
        };
        let _ = writeln!(out, "last heartbeat: {} {result}", h.time);
    }
    let e = &s.escalation;
    if let Some(i) = &e.incident {
        let _ = writeln!(
            out,
            "incident:       given up since {}; {}/{} reminders sent",
            i.since,
            i.reminders_sent,
            crate::escalation::MAX_REMINDERS
        );
    }
    if let Some(list) = &e.flapping {
        let _ = writeln!(
            out,
            "flapping:       {} restarts in this episode; per-restart alerts held",
            list.len()
        );
    }
    if e.alerts_suppressed_total > 0 {
        let _ = writeln!(out, "suppressed:     {} alerts", e.alerts_suppressed_total);
    }
    let _ = writeln!(out, "since:          {}", s.started);
    let _ = writeln!(out, "updated:        {}", s.updated);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_recent_state_of_the_same_url_is_resumed() {
        use std::time::Duration;
        let url = "http://127.0.0.1:8000/health";
        let s = State {
            health_url: url.into(),
            phase: PhaseName::GivenUp,
            restart_attempts: 3,
            consecutive_failures: 9,
            last_error: Some("HTTP 503".into()),
            updated_unix_ms: 1_000_000,
            ..State::default()
        };
        let w = Duration::from_secs(10);
        let r = resumable(&s, url, 1_009_000, w).expect("recent");
        assert_eq!(
            r,
            crate::policy::Resumed {
                attempts: 3,
                given_up: true,
                failures: 9,
                last_error: Some("HTTP 503".into()),
            }
        );
        assert_eq!(resumable(&s, url, 1_010_001, w), None, "too old");
        assert_eq!(
            resumable(&s, "http://127.0.0.1:9/health", 1_000_000, w),
            None
        );
        let stopped = State {
            phase: PhaseName::Stopped,
            ..s.clone()
        };
        assert_eq!(resumable(&stopped, url, 1_000_000, w), None);
        let old_format = State {
            updated_unix_ms: 0,
            ..s.clone()
        };
        assert_eq!(resumable(&old_format, url, 5_000, w), None);
        let running = State {
            phase: PhaseName::Running,
            restart_attempts: 1,
            ..s
        };
        let r = resumable(&running, url, 1_000_000, w).unwrap();
        assert!(!r.given_up && r.attempts == 1);
    }

    #[test]
    fn status_says_paused_until_by() {
        let s = State {
            phase: PhaseName::Running,
            pause: Some(crate::escalation::SavedPause {
                by: "alice (uid 1000, pid 42)".into(),
                since: "2026-12-01T08:00:00.000Z".into(),
                since_unix_ms: 1,
                until: Some("2026-12-01T08:30:00.000Z".into()),
                until_unix_ms: Some(2),
            }),
            ..State::default()
        };
        let text = render(&s, true);
        assert!(
            text.contains("state:          paused (until 2026-12-01T08:30:00.000Z, by alice (uid 1000, pid 42)); running"),
            "{text}"
        );
        assert!(!render(&State::default(), true).contains("paused"));
        // An older state file without these fields still reads.
        let old: State = serde_json::from_str(r#"{"monitor_pid":1,"service_name":"","health_url":"","phase":"running","server_pid":null,"consecutive_failures":0,"restart_attempts":0,"max_restart_attempts":3,"restarts_total":0,"last_check":null,"last_error":null,"last_restart":null,"started":"","updated":""}"#).unwrap();
        assert_eq!(old.pause, None);
        assert_eq!(old.escalation, crate::escalation::Saved::default());
    }

    #[test]
    fn a_new_last_check_alone_is_written_at_most_every_refresh() {
        let dir = std::env::temp_dir().join(format!("sm-state-writer-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let t0 = Instant::now();
        let base = State {
            monitor_pid: 7,
            ..State::default()
        };
        let mut w = Writer::new(&dir, base, t0);
        let snap = |phase, failures| Snapshot {
            phase,
            failures,
            attempts: 0,
            last_error: None,
        };
        let check = |ms| LastCheck {
            latency_ms: ms,
            ..LastCheck::default()
        };
        let on_disk = || read(&dir).unwrap();
        w.checked(check(1.0));
        w.save(&snap(PhaseName::Running, 0), Some(9), t0);
        let first = on_disk();
        assert_eq!(
            (first.phase, first.server_pid),
            (PhaseName::Running, Some(9))
        );
        assert_eq!(first.last_check, Some(check(1.0)));
        assert_eq!(w.next_due(), None);
        // Only the check changed, within REFRESH: held back.
        w.checked(check(2.0));
        w.save(
            &snap(PhaseName::Running, 0),
            Some(9),
            t0 + Duration::from_secs(1),
        );
        assert_eq!(on_disk().last_check, Some(check(1.0)));
        assert_eq!(w.next_due(), Some(t0 + REFRESH));
        // A change of the policy's part is written at once, check and all.
        w.save(
            &snap(PhaseName::Running, 1),
            Some(9),
            t0 + Duration::from_secs(2),
        );
        assert_eq!(on_disk().consecutive_failures, 1);
        assert_eq!(on_disk().last_check, Some(check(2.0)));
        // A check alone once REFRESH has passed since the last write.
        w.checked(check(3.0));
        w.save(
            &snap(PhaseName::Running, 1),
            Some(9),
            t0 + Duration::from_secs(6),
        );
        assert_eq!(on_disk().last_check, Some(check(2.0)));
        w.save(
            &snap(PhaseName::Running, 1),
            Some(9),
            t0 + Duration::from_secs(7),
        );
        assert_eq!(on_disk().last_check, Some(check(3.0)));
        w.finish(&snap(PhaseName::Running, 1), None);
        let last = on_disk();
        assert_eq!((last.phase, last.server_pid), (PhaseName::Stopped, None));
        assert!(last.updated_unix_ms > 0 && !last.updated.is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }

    /// MEMORY_LIMIT: a new memory sample is written like a new
    /// last check, held back within REFRESH, never a write of its own.
    #[test]
    fn a_new_usage_alone_is_not_a_significant_write() {
        let dir = std::env::temp_dir().join(format!("sm-state-usage-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let t0 = Instant::now();
        let mut w = Writer::new(&dir, State::default(), t0);
        let snap = Snapshot {
            phase: PhaseName::Running,
            failures: 0,
            attempts: 0,
            last_error: None,
        };
        let usage = |bytes| crate::usage::Usage {
            memory_bytes: bytes,
            ..crate::usage::Usage::default()
        };
        let check = |ms| LastCheck {
            latency_ms: ms,
            ..LastCheck::default()
        };
        let on_disk = || read(&dir).unwrap();
        w.checked(check(1.0));
        w.usage(Some(&usage(100)));
        w.save(&snap, Some(9), t0);
        assert_eq!(on_disk().usage, Some(usage(100)));
        // A new sample with a new check, within REFRESH: held back.
        w.checked(check(2.0));
        w.usage(Some(&usage(200)));
        w.save(&snap, Some(9), t0 + Duration::from_secs(1));
        assert_eq!(on_disk().usage, Some(usage(100)));
        // Once REFRESH has passed, written with the check.
        w.save(&snap, Some(9), t0 + REFRESH + Duration::from_secs(1));
        assert_eq!(on_disk().usage, Some(usage(200)));
        assert_eq!(on_disk().last_check, Some(check(2.0)));
        // The last write keeps the last sample.
        w.usage(Some(&usage(300)));
        w.finish(&snap, None);
        assert_eq!(on_disk().usage, Some(usage(300)));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn round_trips_and_reports_damage() {
        let dir = std::env::temp_dir().join(format!("sm-state-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        assert!(matches!(read(&dir), Err(ReadError::Missing)));
        let s = State {
            monitor_pid: 7,
            phase: PhaseName::Running,
            last_check: Some(LastCheck {
                time: "t".into(),
                healthy: false,
                latency_ms: 1.5,
                reason: Some("refused".into()),
            }),
            ..State::default()
        };
        write(&dir, &s, true).unwrap();
        assert_eq!(read(&dir).unwrap(), s);
        assert!(render(&s, true).contains("failed: refused"));
        fs::write(dir.join(STATE_FILE), b"{\"monitor_pid\": 7, \"pha").unwrap();
        assert!(matches!(read(&dir), Err(ReadError::Invalid(_))));
        fs::remove_dir_all(&dir).unwrap();
    }
}
