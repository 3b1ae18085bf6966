//! `server_monitor.state.json`: what the monitor is doing, for `status` and
//! for people. Written atomically (a temporary file and a rename) after every
//! change and every check; fsynced only when the counters or the phase change,
//! since a lost "last check" line costs nothing.
//!
//! The monitor reads its state back only at start, to resume the attempt
//! count and a give-up from a recent state its predecessor left
//! ([`resumable`]); a state file that is truncated or garbage is ignored
//! then, reported by `status` and rebuilt by the next write.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

pub const STATE_FILE: &str = "server_monitor.state.json";

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub monitor_pid: u32,
    pub service_name: String,
    pub health_url: String,
    /// idle, starting, verifying, running, restart-pending, given-up, stopped
    pub phase: String,
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
    /// Issue 11: a maintenance pause (`server-monitor pause`).
    #[serde(default)]
    pub pause: Option<crate::escalation::SavedPause>,
    /// The ids of the last pause/resume requests the monitor took.
    #[serde(default)]
    pub pause_acks: Vec<String>,
    /// Reminder schedule, flap state, suppressed alerts.
    #[serde(default)]
    pub escalation: crate::escalation::Saved,
}

/// What `server-monitor restart` waits for: its request id and the outcome.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PlannedRestart {
    /// The ids of the requests this restart answers.
    pub ids: Vec<String>,
    pub by: String,
    pub requested: String,
    /// `in progress`, `ok` or `failed`.
    pub outcome: String,
    pub detail: Option<String>,
    pub server_pid: Option<u32>,
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
    if !recent || s.health_url != health_url || matches!(s.phase.as_str(), "stopped" | "") {
        return None;
    }
    Some(crate::policy::Resumed {
        attempts: s.restart_attempts,
        given_up: s.phase == "given-up",
        failures: s.consecutive_failures,
        last_error: s.last_error.clone(),
    })
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
            phase: "given-up".into(),
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
            phase: "stopped".into(),
            ..s.clone()
        };
        assert_eq!(resumable(&stopped, url, 1_000_000, w), None);
        let old_format = State {
            updated_unix_ms: 0,
            ..s.clone()
        };
        assert_eq!(resumable(&old_format, url, 5_000, w), None);
        let running = State {
            phase: "running".into(),
            restart_attempts: 1,
            ..s
        };
        let r = resumable(&running, url, 1_000_000, w).unwrap();
        assert!(!r.given_up && r.attempts == 1);
    }

    #[test]
    fn status_says_paused_until_by() {
        let s = State {
            phase: "running".into(),
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
    fn round_trips_and_reports_damage() {
        let dir = std::env::temp_dir().join(format!("sm-state-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        assert!(matches!(read(&dir), Err(ReadError::Missing)));
        let s = State {
            monitor_pid: 7,
            phase: "running".into(),
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
