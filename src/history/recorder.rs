//! The history writer the monitor's loop calls: [`Tracker`] turns what the
//! policy saw and decided into state changes (pure), [`Recorder`] writes
//! them, adds up checks for the day line and writes heartbeats, and prunes.
//!
//! Mapping (the policy's events and actions to history states):
//! - a healthy check with the policy running (or a verified start) is
//!   `healthy`;
//! - a failed check (not a start's probe) while healthy is `failing`: the
//!   incident starts there;
//! - the server's exit, a failed verification is `down`;
//! - every start is `restarting` (`restart: true` but for the first start;
//!   `planned: true` for `server-monitor restart`);
//! - giving up is `given-up`; `paused` comes from the monitor's pause
//!   ([`Recorder::follow_pause`]) and hides every other change until it
//!   ends, when the state the server is in by then is written.
//!
//! Nothing is written per check: a check changes a few counters in memory.
//! Write errors are logged once until a write works again; they never stop
//! the monitor.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use super::{day_of, file_name, Change, DaySummary, Record, Status};
use crate::health::{Check, CheckOutcome};
use crate::policy::{Action, Event, Note, PhaseName, StartKind};

/// A heartbeat line when nothing else was written for this long: the next
/// monitor without a state file to go by counts at most this much of a
/// crash's gap as observed.
pub const HEARTBEAT: Duration = Duration::from_secs(900);
/// How often old month files are looked for.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// A month file stops growing here (a server flapping every second); the
/// rest of the month is then "not observed" in the report.
pub const MAX_FILE_BYTES: u64 = 16 << 20;
/// A wall clock this far from the anchored one is taken again.
const MAX_DRIFT_MS: i64 = 60_000;
/// How far back the history kept in memory goes: the status page's longest
/// window (30 d).
pub const KEEP_MS: i64 = 30 * 86_400_000;
/// At most this many records are kept in memory (a server flapping all
/// month); past it the oldest tenth goes, and the start of the 30 days is
/// then "not observed" on the status page (never on the report).
pub const KEEP_MAX: usize = 10_000;

/// The last [`KEEP_MS`] of history records, in file order, for the status
/// endpoints (which never read the disk on a request). Besides the records
/// of the window it keeps the last state line before it: the state at the
/// window's start. Bounded by [`KEEP_MAX`].
#[derive(Debug, Default)]
pub struct Kept {
    records: Vec<Record>,
}

impl Kept {
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// Keeps `r`, then drops what fell out of the window at `now_ms`.
    pub fn push(&mut self, r: Record, now_ms: i64) {
        self.records.push(r);
        self.trim(now_ms);
    }

    pub fn trim(&mut self, now_ms: i64) {
        let cutoff = now_ms - KEEP_MS;
        let len = self.records.len();
        let first_in = (self.records.iter())
            .position(|r| r.time() >= cutoff)
            .unwrap_or(len);
        let start = self.records[..first_in]
            .iter()
            .rposition(|r| matches!(r, Record::State { .. }))
            .unwrap_or(first_in);
        let over = if len > KEEP_MAX {
            len - KEEP_MAX * 9 / 10
        } else {
            0
        };
        let drop = start.max(over);
        if drop > 0 {
            self.records.drain(..drop);
        }
    }
}

/// Pure: the state the history shows, from the policy's events and actions.
#[derive(Clone, Debug, Default)]
pub struct Tracker {
    /// The state the server is in, paused or not.
    underlying: Option<Change>,
    /// The state last written.
    shown: Option<Status>,
    paused: bool,
}

impl Tracker {
    /// The changes `event`, and the `actions` the policy answered it with,
    /// make; `phase` is the policy's phase after it (`Snapshot::phase`).
    pub fn observe(&mut self, event: &Event, actions: &[Action], phase: PhaseName) -> Vec<Change> {
        let mut out = Vec::new();
        let starting = matches!(phase, PhaseName::Starting | PhaseName::Verifying);
        match event {
            Event::Checked(CheckOutcome::Healthy { .. }) if phase == PhaseName::Running => {
                self.set(Change::to(Status::Healthy), &mut out)
            }
            Event::Checked(CheckOutcome::Failed(reason))
                if !starting && matches!(self.current(), None | Some(Status::Healthy)) =>
            {
                self.set(
                    Change::to(Status::Failing).because(reason.to_string()),
                    &mut out,
                )
            }
            Event::Exited(cause) if self.current() != Some(Status::GivenUp) => self.set(
                Change::to(Status::Down).because(cause.to_string()),
                &mut out,
            ),
            _ => {}
        }
        for action in actions {
            let change = match action {
                Action::Start(kind) => start_change(kind),
                Action::Note(Note::Verified { .. }) => Change::to(Status::Healthy),
                Action::Note(Note::VerifyFailed { reason, .. }) => {
                    Change::to(Status::Down).because(reason.clone())
                }
                Action::Note(Note::GaveUp { last_error, .. }) => {
                    Change::to(Status::GivenUp).because(last_error.clone())
                }
                _ => continue,
            };
            self.set(change, &mut out);
        }
        out
    }

    /// Maintenance begins: `paused` until [`Tracker::resume`].
    pub fn pause(&mut self, by: &str) -> Option<Change> {
        if self.paused {
            return None;
        }
        self.paused = true;
        self.shown = Some(Status::Paused);
        Some(Change::to(Status::Paused).because(by.to_string()))
    }

    /// Maintenance ends: the state the server is in now.
    pub fn resume(&mut self) -> Option<Change> {
        if !self.paused {
            return None;
        }
        self.paused = false;
        let mut c = self.underlying.clone()?;
        c.restart = false;
        c.planned = false;
        c.detail = Some("resumed".into());
        self.shown = c.status;
        Some(c)
    }

    /// The state shown now, for the top of a new month file.
    pub fn shown(&self) -> Option<Change> {
        if self.paused {
            return Some(Change::to(Status::Paused));
        }
        self.underlying.clone()
    }

    fn current(&self) -> Option<Status> {
        self.underlying.as_ref().and_then(|c| c.status)
    }

    fn set(&mut self, change: Change, out: &mut Vec<Change>) {
        let repeat = change.status == self.current() && change.status != Some(Status::Restarting);
        if repeat {
            return;
        }
        self.underlying = Some(change.clone());
        if !self.paused {
            self.shown = change.status;
            out.push(change);
        }
    }
}

fn start_change(kind: &StartKind) -> Change {
    let c = Change::to(Status::Restarting);
    match kind {
        // On purpose, like a planned restart: down only if it fails.
        StartKind::First => Change {
            planned: true,
            ..c.because("first start")
        },
        StartKind::Restart { attempt, cause, .. } => Change {
            restart: true,
            ..c.because(cause.clone())
                .detail(format!("attempt {attempt}"))
        },
        StartKind::Retry { cause, .. } => Change {
            restart: true,
            ..c.because(cause.clone()).detail("retry after giving up")
        },
        StartKind::Planned { by } => Change {
            restart: true,
            planned: true,
            ..c.because("planned restart").detail(format!("by {by}"))
        },
    }
}

/// Writes the history of one monitor run.
pub struct Recorder {
    log_dir: PathBuf,
    history_days: u32,
    anchor_ms: i64,
    anchor: Instant,
    file: Option<(String, File, u64)>,
    /// The latest month file written to (a later one gets a `carry` line).
    latest: Option<String>,
    last_write: Instant,
    next_prune: Instant,
    tracker: Tracker,
    today: DaySummary,
    failing_write: bool,
    /// The last 30 days, in memory (loaded once at start).
    kept: Kept,
}

impl Recorder {
    /// Starts the history of this run: prunes, and writes the `start` line
    /// with the previous monitor's last sign of life from its state file
    /// (read before this monitor writes its own).
    pub fn open(log_dir: &std::path::Path, history_days: u32) -> Recorder {
        let now = Instant::now();
        let anchor_ms = wall_ms();
        let prev = crate::state::read(log_dir)
            .ok()
            .map(|s| s.updated_unix_ms as i64)
            .filter(|&ms| ms > 0);
        // The status endpoints' 30 days, read once (the files are small).
        let mut kept = Kept::default();
        for rec in super::read(log_dir, anchor_ms - KEEP_MS, anchor_ms).unwrap_or_default() {
            kept.records.push(rec);
            if kept.records.len() > 2 * KEEP_MAX {
                kept.trim(anchor_ms);
            }
        }
        kept.trim(anchor_ms);
        let mut r = Recorder {
            log_dir: log_dir.to_path_buf(),
            history_days,
            anchor_ms,
            anchor: now,
            file: None,
            latest: None,
            last_write: now,
            next_prune: now,
            tracker: Tracker::default(),
            today: DaySummary {
                day: day_of(anchor_ms),
                ..DaySummary::default()
            },
            failing_write: false,
            kept,
        };
        r.prune_if_due();
        let t = r.now_ms();
        r.write(Record::Start {
            t,
            pid: std::process::id(),
            prev,
        });
        r
    }

    /// Hook after every `policy.handle`: writes the state changes it made.
    pub fn observe(&mut self, event: &Event, actions: &[Action], phase: PhaseName) {
        for change in self.tracker.observe(event, actions, phase) {
            let t = self.now_ms();
            self.write(Record::State { t, change });
        }
    }

    /// Follows the monitor's pause (`escalation`'s, `by` whom), called
    /// before each event the policy is fed: a pause that began is written
    /// `paused`, one that ended the state the server is in by then. Cheap
    /// when nothing changed.
    pub fn follow_pause(&mut self, by: Option<&str>) {
        match by {
            Some(by) => self.paused(by),
            None => self.resumed(),
        }
    }

    /// A pause began (`paused` until [`Recorder::resumed`]).
    pub fn paused(&mut self, by: &str) {
        if let Some(change) = self.tracker.pause(by) {
            let t = self.now_ms();
            self.write(Record::State { t, change });
        }
    }

    /// The pause ended.
    pub fn resumed(&mut self) {
        if let Some(change) = self.tracker.resume() {
            let t = self.now_ms();
            self.write(Record::State { t, change });
        }
    }

    /// Hook for every check on the normal schedule (not a start's probes):
    /// counted in memory for the day line.
    pub fn sample(&mut self, c: &Check) {
        let t = self.now_ms();
        self.roll_day(t);
        let d = &mut self.today;
        d.checks += 1;
        if !c.outcome.is_healthy() {
            d.failures += 1;
        }
        d.latency.add(c.latency.as_secs_f64() * 1000.0);
        if let Some(x) = c.figures.memory_percent {
            d.memory.add(x);
        }
        if let Some(x) = c.figures.cpu_percent {
            d.cpu.add(x);
        }
        if let Some(x) = c.figures.db_ms {
            d.db.add(x);
        }
    }

    /// Hook once a loop turn: the day line at midnight, a heartbeat when
    /// due, pruning once an hour. Cheap when none is due.
    pub fn tick(&mut self) {
        let t = self.now_ms();
        self.roll_day(t);
        if self.last_write.elapsed() >= HEARTBEAT {
            let wall = wall_ms();
            if (wall - t).abs() > MAX_DRIFT_MS {
                self.anchor_ms = wall;
                self.anchor = Instant::now();
            }
            let t = self.now_ms();
            self.write(Record::Heartbeat { t });
        }
        self.prune_if_due();
    }

    /// When [`Recorder::tick`] has work next (the loop's `Wake::History`):
    /// a heartbeat, the day line just past midnight, or pruning. Each is
    /// moved on by the tick that does it, so the deadline never stays past.
    pub fn next_due(&self) -> Instant {
        let midnight_ms = (self.today.day + 1) * 86_400_000;
        // A millisecond past midnight: `now_ms` then reads the new day.
        let to_midnight = (midnight_ms - self.anchor_ms + 1).max(0) as u64;
        let midnight = self.anchor + Duration::from_millis(to_midnight);
        (self.last_write + HEARTBEAT)
            .min(midnight)
            .min(self.next_prune)
    }

    /// Hook at monitor stop: the day so far, then `stop`.
    pub fn stop(&mut self) {
        let t = self.now_ms();
        self.write_day(t);
        self.write(Record::Stop { t });
    }

    /// Now, in the history's UTC milliseconds.
    pub fn now_ms(&self) -> i64 {
        self.anchor_ms + self.anchor.elapsed().as_millis() as i64
    }

    /// The history of the last 30 days, in memory, this run's lines
    /// included: for the status endpoints.
    pub fn recent(&self) -> &[Record] {
        self.kept.records()
    }

    fn prune_if_due(&mut self) {
        let now = Instant::now();
        if now < self.next_prune {
            return;
        }
        self.next_prune = now + PRUNE_EVERY;
        let removed = super::prune(&self.log_dir, self.history_days, self.now_ms());
        if removed > 0 {
            log::info!(removed = removed, history_days = self.history_days;
                "removed history months past HISTORY_DAYS");
        }
    }

    fn roll_day(&mut self, t: i64) {
        if day_of(t) != self.today.day {
            self.write_day(t);
            self.today = DaySummary {
                day: day_of(t),
                ..DaySummary::default()
            };
        }
    }

    /// The day line of the checks counted so far (none: no line), stamped
    /// within its own day so that it lands in its own month's file.
    fn write_day(&mut self, t: i64) {
        if self.today.checks == 0 {
            return;
        }
        let end_of_day = (self.today.day + 1) * 86_400_000 - 1;
        let summary = std::mem::take(&mut self.today);
        self.today.day = summary.day;
        self.write(Record::Day {
            t: t.min(end_of_day),
            summary: Box::new(summary),
        });
    }

    fn write(&mut self, record: Record) {
        let t = record.time();
        let name = file_name(t);
        if self
            .file
            .as_ref()
            .is_none_or(|(n, f, _)| *n != name || f.metadata().map_or(true, |m| m.nlink() == 0))
        {
            self.file = self.open_file(&name);
            let later = self.latest.as_ref().is_some_and(|l| name > *l);
            if self.latest.is_none() || later {
                self.latest = Some(name.clone());
            }
            if later && !matches!(record, Record::Start { .. }) {
                if let Some(mut change) = self.tracker.shown() {
                    change.carry = true;
                    change.restart = false;
                    let carry = Record::State { t, change };
                    self.append(&carry.to_line());
                    self.kept.push(carry, t);
                }
            }
        }
        self.append(&record.to_line());
        self.kept.push(record, t);
        self.last_write = Instant::now();
    }

    fn open_file(&mut self, name: &str) -> Option<(String, File, u64)> {
        let dir = self.log_dir.join(super::DIR);
        let path = dir.join(name);
        let opened = crate::files::create_dir_0750(&dir).and_then(|()| {
            OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o640)
                .open(&path)
        });
        match opened {
            Ok(f) => {
                let len = f.metadata().map_or(0, |m| m.len());
                Some((name.to_string(), f, len))
            }
            Err(e) => {
                self.warn_once(&format!("cannot open {}: {e}", path.display()));
                None
            }
        }
    }

    /// One `write(2)` of a whole line (O_APPEND): a crash loses this line at
    /// most.
    fn append(&mut self, line: &str) {
        let Some((name, f, len)) = self.file.as_mut() else {
            return;
        };
        if *len + line.len() as u64 > MAX_FILE_BYTES {
            let msg = format!("history/{name} reached {MAX_FILE_BYTES} bytes; not written to until the next month");
            self.warn_once(&msg);
            return;
        }
        match f.write(line.as_bytes()) {
            Ok(n) if n == line.len() => {
                *len += n as u64;
                self.failing_write = false;
            }
            Ok(n) => {
                *len += n as u64;
                let msg = format!("short write to history/{name}");
                self.warn_once(&msg);
            }
            Err(e) => {
                let msg = format!("cannot write history/{name}: {e}");
                self.warn_once(&msg);
            }
        }
    }

    fn warn_once(&mut self, msg: &str) {
        if !self.failing_write {
            log::warn!("{msg}");
        }
        self.failing_write = true;
    }
}

fn wall_ms() -> i64 {
    crate::logging::unix_millis(SystemTime::now()) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Reason;
    use crate::server::ExitCause;
    use crate::sys::WaitStatus;

    fn failed(r: Reason) -> Event {
        Event::Checked(CheckOutcome::Failed(r))
    }

    fn healthy() -> Event {
        Event::Checked(CheckOutcome::Healthy { warnings: vec![] })
    }

    fn states(changes: &[Change]) -> Vec<Status> {
        changes.iter().filter_map(|c| c.status).collect()
    }

    #[test]
    fn kept_holds_30_days_and_the_state_at_their_start() {
        const DAY: i64 = 86_400_000;
        let state = |t: i64, st: Status| Record::State {
            t,
            change: Change::to(st),
        };
        let mut k = Kept::default();
        k.push(state(0, Status::Healthy), 0);
        k.push(state(DAY, Status::Failing), DAY);
        k.push(Record::Heartbeat { t: 2 * DAY }, 2 * DAY);
        k.push(state(3 * DAY, Status::Healthy), 3 * DAY);
        // At day 32 the window starts at day 2: the failing line (the state
        // at day 2) stays, the one before it goes.
        k.push(Record::Heartbeat { t: 32 * DAY }, 32 * DAY);
        let times: Vec<i64> = k.records().iter().map(Record::time).collect();
        assert_eq!(times, [DAY, 2 * DAY, 3 * DAY, 32 * DAY]);
        // Bounded: a month of flapping keeps at most KEEP_MAX records.
        for i in 0..(3 * KEEP_MAX as i64) {
            k.push(state(32 * DAY + i, Status::Failing), 32 * DAY + i);
        }
        assert!(k.records().len() <= KEEP_MAX);
        assert_eq!(
            k.records().last().unwrap().time(),
            32 * DAY + 3 * KEEP_MAX as i64 - 1
        );
    }

    #[test]
    fn the_recorder_keeps_what_it_writes_and_loads_the_files_once() {
        let dir = std::env::temp_dir().join(format!("sm-recorder-kept-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut r = Recorder::open(&dir, 400);
        r.observe(&healthy(), &[], PhaseName::Running);
        r.stop();
        let n = r.recent().len();
        assert!(n >= 3, "{:?}", r.recent());
        assert!(matches!(r.recent()[0], Record::Start { .. }));
        // The next run starts with the previous one's lines.
        let r2 = Recorder::open(&dir, 400);
        assert_eq!(r2.recent().len(), n + 1);
        assert!(matches!(r2.recent()[n], Record::Start { .. }));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn downtime_begins_at_the_first_failed_check() {
        let mut t = Tracker::default();
        assert_eq!(
            states(&t.observe(&healthy(), &[], PhaseName::Running)),
            [Status::Healthy]
        );
        assert!(t.observe(&healthy(), &[], PhaseName::Running).is_empty());
        let c = t.observe(&failed(Reason::Refused), &[], PhaseName::Running);
        assert_eq!(states(&c), [Status::Failing]);
        assert_eq!(c[0].cause.as_deref(), Some("refused"));
        assert!(t
            .observe(&failed(Reason::TimedOut), &[], PhaseName::Running)
            .is_empty());
        let restart = Action::Start(StartKind::Restart {
            attempt: 1,
            cause: "3 failed checks".into(),
            down_checks: 3,
            trigger: crate::policy::Trigger::Health,
        });
        let c = t.observe(&Event::Tick, &[restart], PhaseName::Starting);
        assert_eq!(states(&c), [Status::Restarting]);
        assert!(c[0].restart && !c[0].planned);
        // The new server's probes are no change; its verification is.
        assert!(t
            .observe(&failed(Reason::Refused), &[], PhaseName::Verifying)
            .is_empty());
        let ok = Action::Note(Note::Verified {
            kind: StartKind::First,
            after: Duration::from_secs(1),
        });
        assert_eq!(
            states(&t.observe(&healthy(), &[ok], PhaseName::Running)),
            [Status::Healthy]
        );
    }

    #[test]
    fn an_exit_is_down_and_giving_up_is_given_up() {
        let mut t = Tracker::default();
        t.observe(&healthy(), &[], PhaseName::Running);
        let exit = ExitCause::Status(WaitStatus::Exited(1));
        let c = t.observe(&Event::Exited(exit), &[], PhaseName::RestartPending);
        assert_eq!(states(&c), [Status::Down]);
        assert_eq!(c[0].cause.as_deref(), Some("process exited with status 1"));
        let gave = Action::Note(Note::GaveUp {
            attempts: 3,
            last_error: "refused".into(),
            alerted: false,
        });
        let c = t.observe(&failed(Reason::Refused), &[gave], PhaseName::GivenUp);
        assert_eq!(states(&c), [Status::GivenUp]);
        assert!(t
            .observe(&failed(Reason::Refused), &[], PhaseName::GivenUp)
            .is_empty());
    }

    #[test]
    fn the_recorder_appends_whole_lines_to_a_0640_month_file_in_a_0750_dir() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("sm-recorder-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut r = Recorder::open(&dir, 400);
        r.observe(&healthy(), &[], PhaseName::Running);
        r.sample(&Check {
            outcome: CheckOutcome::Healthy { warnings: vec![] },
            latency: Duration::from_millis(3),
            figures: Default::default(),
        });
        r.stop();
        let files = super::super::month_files(&dir);
        assert_eq!(files.len(), 1);
        let text = std::fs::read_to_string(&files[0].0).unwrap();
        let kinds: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["e"].to_string())
            .collect();
        assert_eq!(kinds, ["\"start\"", "\"state\"", "\"day\"", "\"stop\""]);
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&files[0].0), 0o640);
        assert_eq!(mode(&dir.join(super::super::DIR)), 0o750);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_next_due_tick_is_ahead_and_moves_on_once_done() {
        let dir = std::env::temp_dir().join(format!("sm-recorder-due-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut r = Recorder::open(&dir, 400);
        let now = Instant::now();
        let due = r.next_due();
        assert!(due > now && due <= now + HEARTBEAT, "{:?}", due - now);
        // A heartbeat that is due: the tick writes it, the deadline moves on.
        r.last_write = now - HEARTBEAT;
        assert!(r.next_due() <= Instant::now());
        r.tick();
        assert!(r.next_due() > Instant::now());
        // Midnight is a deadline too: the day line of the day just ended.
        r.today.day -= 1;
        r.today.checks = 1;
        assert!(r.next_due() <= Instant::now());
        r.tick();
        assert!(r.next_due() > Instant::now());
        // (On the 1st, yesterday's day line is in last month's file.)
        let mut kinds: Vec<String> = super::super::month_files(&dir)
            .iter()
            .flat_map(|(path, ..)| {
                let text = std::fs::read_to_string(path).unwrap();
                let lines: Vec<String> = text.lines().map(str::to_string).collect();
                lines
            })
            .map(|l| serde_json::from_str::<serde_json::Value>(&l).unwrap()["e"].to_string())
            .collect();
        kinds.sort();
        assert_eq!(kinds, ["\"day\"", "\"hb\"", "\"start\""]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_pause_hides_changes_until_resume_tells_the_state_then() {
        let mut t = Tracker::default();
        t.observe(&healthy(), &[], PhaseName::Running);
        assert_eq!(t.pause("ops").and_then(|c| c.status), Some(Status::Paused));
        assert!(t
            .observe(&failed(Reason::Refused), &[], PhaseName::Running)
            .is_empty());
        assert_eq!(t.resume().and_then(|c| c.status), Some(Status::Failing));
        assert_eq!(t.resume(), None);
    }

    #[test]
    fn a_pause_followed_by_the_recorder_is_paused_time_and_no_downtime() {
        let dir = std::env::temp_dir().join(format!("sm-recorder-pause-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut r = Recorder::open(&dir, 400);
        r.follow_pause(None);
        r.observe(&healthy(), &[], PhaseName::Running);
        r.follow_pause(Some("ops (pid 7)"));
        r.follow_pause(Some("ops (pid 7)"));
        // The server dies while paused: hidden.
        let exit = Event::Exited(ExitCause::Status(WaitStatus::Exited(1)));
        r.observe(&exit, &[], PhaseName::RestartPending);
        std::thread::sleep(Duration::from_millis(30));
        r.follow_pause(None);
        r.follow_pause(None);
        r.stop();
        let records = super::super::read(&dir, 0, i64::MAX).unwrap();
        let lines: Vec<(Status, Option<String>)> = records
            .iter()
            .filter_map(|rec| match rec {
                Record::State { change, .. } => Some((change.status?, change.cause.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(
            lines,
            [
                (Status::Healthy, None),
                (Status::Paused, Some("ops (pid 7)".into())),
                (Status::Down, Some("process exited with status 1".into())),
            ],
            "each change once"
        );
        let (first, last) = (records[0].time(), records[records.len() - 1].time());
        let period = crate::report::Period {
            from: first,
            to: last,
        };
        let report = crate::report::account(&records, period, None);
        let paused_ms = match (&records[2], &records[3]) {
            (Record::State { t: a, .. }, Record::State { t: b, .. }) => b - a,
            other => panic!("{other:?}"),
        };
        assert!(paused_ms >= 30, "{paused_ms}");
        assert_eq!(report.paused, paused_ms, "{report:?}");
        assert_eq!(
            report.down,
            last - records[3].time(),
            "down only from the resume: {report:?}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
