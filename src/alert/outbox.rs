//! The durable outbox: alerts waiting for delivery, one JSON file each under
//! `LOG_DIR/outbox/`, and the pure schedule that says when each is retried.
//!
//! - [`Schedule`] is pure: it takes `now: Instant` and never reads a clock. An
//!   entry is due when added; after a failed round it is due again
//!   [`retry_delay`] later: 5 s, then doubling, at most 5 minutes. Entries
//!   found at start are added afresh, so they are due at once.
//! - [`Entry`] is what a file holds: the rendered alert (so that a retry, even
//!   after a restart, sends the same subject, body, time and Message-ID),
//!   how often each channel was tried, and which channels already took it
//!   (a channel that delivered is not asked again).
//! - [`OutboxDir`] is the thin file layer: every write is atomic (a `.tmp`
//!   file, fsync, rename, fsync of the directory), files are 0640 and the
//!   directory 0750.
//!
//! Not here: delivery, logging, deciding which channels exist (that is
//! `dispatch`). Nothing is ever deleted here except an entry the caller says
//! is done; a file that cannot be parsed is left where it is.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::files::{create_dir_0750, write_atomic};
use crate::logging::utc_iso8601_millis;

/// The wait after the first failed round.
pub const FIRST_RETRY: Duration = Duration::from_secs(5);
/// The longest wait between two rounds.
pub const MAX_RETRY: Duration = Duration::from_secs(300);

/// The wait after the `failures`-th failed round in a row (1-based): 5 s,
/// 10 s, 20 s, … capped at 5 minutes. `0` failures: no wait.
pub fn retry_delay(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    // 5 s << 6 is already past the cap; clamping the shift keeps it from overflowing.
    let doubled = FIRST_RETRY * (1u32 << (failures - 1).min(16));
    doubled.min(MAX_RETRY)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot {
    due: Instant,
    failures: u32,
}

/// When each pending entry is due. Pure; ids are file stems, which sort by
/// creation time, so [`Schedule::due`] hands out the oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schedule {
    slots: BTreeMap<String, Slot>,
}

impl Schedule {
    /// Adds an entry, due at `now` (a new alert, or one found at start).
    pub fn add(&mut self, id: &str, now: Instant) {
        self.slots.insert(
            id.to_string(),
            Slot {
                due: now,
                failures: 0,
            },
        );
    }

    /// The entries due at `now`, oldest first.
    pub fn due(&self, now: Instant) -> Vec<String> {
        self.slots
            .iter()
            .filter(|(_, s)| s.due <= now)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// A round failed: the entry is due again after [`retry_delay`] of its
    /// failures in a row. Returns that delay (`None` for an unknown id).
    pub fn record_failure(&mut self, id: &str, now: Instant) -> Option<Duration> {
        let slot = self.slots.get_mut(id)?;
        slot.failures = slot.failures.saturating_add(1);
        let delay = retry_delay(slot.failures);
        slot.due = now + delay;
        Some(delay)
    }

    /// Moves an entry's due time without counting a failure: it was not
    /// tried, because a channel it needs failed moments ago for another entry.
    pub fn defer(&mut self, id: &str, until: Instant) {
        if let Some(slot) = self.slots.get_mut(id) {
            slot.due = until;
        }
    }

    /// The entry is done (delivered everywhere) or gone.
    pub fn remove(&mut self, id: &str) {
        self.slots.remove(id);
    }

    /// When the next entry is due; `None` when nothing waits.
    pub fn next_due(&self) -> Option<Instant> {
        self.slots.values().map(|s| s.due).min()
    }

    /// The entry's due time, if it is pending.
    pub fn due_at(&self, id: &str) -> Option<Instant> {
        self.slots.get(id).map(|s| s.due)
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

/// One alert waiting for delivery, as its file holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The machine name: `restarted`, `down`, `recovered`, `test`, …
    pub event: String,
    pub subject: String,
    pub body: String,
    pub host: String,
    /// When the alert was made: UTC, ISO 8601 with milliseconds.
    pub time: String,
    /// The same moment as milliseconds since the epoch (for the Date header).
    pub time_unix_ms: u64,
    /// Kept so that every try sends the same Message-ID.
    pub message_id: String,
    /// Tries so far, per channel (`email`, `webhook`).
    #[serde(default)]
    pub attempts: BTreeMap<String, u32>,
    /// Channels that have taken it (`email`, `webhook`).
    #[serde(default)]
    pub delivered: Vec<String>,
}

impl Entry {
    pub fn new(
        event: &str,
        subject: &str,
        body: &str,
        host: &str,
        time: SystemTime,
        message_id: &str,
    ) -> Entry {
        let ms = time
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        Entry {
            event: event.to_string(),
            subject: subject.to_string(),
            body: body.to_string(),
            host: host.to_string(),
            time: utc_iso8601_millis(time),
            time_unix_ms: u64::try_from(ms).unwrap_or(u64::MAX),
            message_id: message_id.to_string(),
            attempts: BTreeMap::new(),
            delivered: Vec::new(),
        }
    }

    /// When the alert was made.
    pub fn system_time(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(self.time_unix_ms)
    }

    /// Counts a try on `channel`; returns its number (1 for the first).
    pub fn count_attempt(&mut self, channel: &str) -> u32 {
        let n = self.attempts.entry(channel.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }

    pub fn has_delivered(&self, channel: &str) -> bool {
        self.delivered.iter().any(|c| c == channel)
    }

    pub fn mark_delivered(&mut self, channel: &str) {
        if !self.has_delivered(channel) {
            self.delivered.push(channel.to_string());
        }
    }
}

/// `LOG_DIR/outbox/`: one `ID.json` per pending alert.
#[derive(Clone, Debug)]
pub struct OutboxDir {
    dir: PathBuf,
}

impl OutboxDir {
    pub fn new(log_dir: &Path) -> OutboxDir {
        OutboxDir {
            dir: log_dir.join("outbox"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    pub fn file(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Writes a new entry under a fresh id (`<time>-<event>`, `-2`, … when
    /// taken) and returns the id.
    pub fn create(&self, entry: &Entry) -> io::Result<String> {
        create_dir_0750(&self.dir)?;
        let stamp = entry.time.replace([':', '.'], "-");
        let event: String = entry
            .event
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        let mut id = format!("{stamp}-{event}");
        let mut n = 1;
        while self.file(&id).exists() {
            n += 1;
            id = format!("{stamp}-{event}-{n}");
        }
        self.write(&id, entry)?;
        Ok(id)
    }

    /// Replaces an entry's file atomically and durably.
    pub fn write(&self, id: &str, entry: &Entry) -> io::Result<()> {
        create_dir_0750(&self.dir)?;
        let mut json = serde_json::to_vec_pretty(entry).map_err(io::Error::other)?;
        json.push(b'\n');
        write_atomic(&self.file(id), &json, true)
    }

    pub fn read(&self, id: &str) -> io::Result<Entry> {
        let text = fs::read(self.file(id))?;
        serde_json::from_slice(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    pub fn remove(&self, id: &str) -> io::Result<()> {
        match fs::remove_file(self.file(id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// The ids of every `*.json` file, oldest first (left-over `.tmp` files
    /// of an interrupted write are not entries). A missing directory is empty.
    pub fn list(&self) -> Vec<String> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut ids: Vec<String> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".json").map(str::to_string)
            })
            .collect();
        ids.sort();
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn retry_waits_5_s_then_doubles_up_to_5_minutes() {
        let table = [
            (0, 0),
            (1, 5),
            (2, 10),
            (3, 20),
            (4, 40),
            (5, 80),
            (6, 160),
            (7, 300),
            (8, 300),
            (40, 300),
            (u32::MAX, 300),
        ];
        for (failures, want) in table {
            assert_eq!(
                retry_delay(failures),
                secs(want),
                "after {failures} failures"
            );
        }
    }

    #[test]
    fn a_new_entry_is_due_at_once() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        assert_eq!(s.next_due(), None);
        s.add("a", t0);
        assert_eq!(s.due(t0), vec!["a"]);
        assert_eq!(s.next_due(), Some(t0));
    }

    #[test]
    fn failures_push_an_entry_back_with_the_growing_delay() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.add("a", t0);
        assert_eq!(s.record_failure("a", t0), Some(secs(5)));
        assert!(s.due(t0 + secs(4)).is_empty());
        assert_eq!(s.due(t0 + secs(5)), vec!["a"]);
        let t1 = t0 + secs(5);
        assert_eq!(s.record_failure("a", t1), Some(secs(10)));
        assert_eq!(s.next_due(), Some(t1 + secs(10)));
        let mut t = t1;
        for _ in 0..10 {
            t += secs(1000);
            s.record_failure("a", t);
        }
        assert_eq!(s.next_due(), Some(t + secs(300)), "capped at 5 minutes");
        assert_eq!(s.record_failure("missing", t), None);
    }

    #[test]
    fn due_lists_the_oldest_first_and_next_due_is_the_earliest() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.add("2024-01-02-down", t0);
        s.add("2024-01-01-restarted", t0);
        s.add("2024-01-03-recovered", t0);
        assert_eq!(
            s.due(t0),
            vec![
                "2024-01-01-restarted",
                "2024-01-02-down",
                "2024-01-03-recovered"
            ]
        );
        s.record_failure("2024-01-01-restarted", t0);
        s.defer("2024-01-02-down", t0 + secs(5));
        s.remove("2024-01-03-recovered");
        assert!(s.due(t0 + secs(1)).is_empty());
        assert_eq!(s.next_due(), Some(t0 + secs(5)));
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn defer_does_not_count_a_failure() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.add("a", t0);
        s.defer("a", t0 + secs(40));
        assert_eq!(s.due_at("a"), Some(t0 + secs(40)));
        assert_eq!(
            s.record_failure("a", t0 + secs(40)),
            Some(secs(5)),
            "the first failure still waits 5 s"
        );
    }

    #[test]
    fn entries_survive_a_round_trip_through_their_file() {
        let dir = std::env::temp_dir().join(format!("sm-outbox-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let outbox = OutboxDir::new(&dir);
        assert!(outbox.list().is_empty(), "a missing directory is empty");
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let mut e = Entry::new("down", "[X Alert] Down", "body\n", "vm1", t, "id@vm1");
        assert_eq!(e.time, "2023-11-14T22:13:20.123Z");
        assert_eq!(e.system_time(), t);
        let a = outbox.create(&e).unwrap();
        let b = outbox.create(&e).unwrap();
        assert_ne!(a, b);
        assert_eq!(outbox.list(), vec![a.clone(), b.clone()]);
        assert_eq!(e.count_attempt("email"), 1);
        assert_eq!(e.count_attempt("email"), 2);
        assert_eq!(e.count_attempt("webhook"), 1);
        e.mark_delivered("webhook");
        e.mark_delivered("webhook");
        outbox.write(&a, &e).unwrap();
        let back = outbox.read(&a).unwrap();
        assert_eq!(back, e);
        assert_eq!(back.delivered, vec!["webhook"]);
        assert_eq!(back.attempts["email"], 2);
        fs::write(outbox.path().join("x.json.tmp"), "partial").unwrap();
        outbox.remove(&b).unwrap();
        outbox.remove(&b).unwrap();
        assert_eq!(outbox.list(), vec![a.clone()]);
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&outbox.file(&a)), 0o640);
        assert_eq!(mode(outbox.path()), 0o750);
        fs::remove_dir_all(&dir).unwrap();
    }
}
