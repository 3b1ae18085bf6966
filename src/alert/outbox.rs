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
//! - [`delivery_order`] and [`plan_folds`] / [`summarize`] are pure too:
//!   "Server Down" and "Server Recovered" first, newest first; stale entries
//!   of one kind, and past [`MAX_ENTRIES`] the oldest (`restarted` first),
//!   folded into one summary that lists each — folded, never dropped.
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

/// The id of a pending entry: the stem of its file in the outbox, or, for
/// an entry kept in memory only (no channel configured, or its file could
/// not be written), a number of this run's.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Id {
    File(String),
    Unsaved(u32),
}

impl Id {
    /// The outbox file's stem; `None` for an entry that has no file.
    pub fn file(&self) -> Option<&str> {
        match self {
            Id::File(stem) => Some(stem),
            Id::Unsaved(_) => None,
        }
    }
}

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Id::File(stem) => f.write_str(stem),
            Id::Unsaved(n) => write!(f, "unsaved-{n}"),
        }
    }
}

impl PartialEq<str> for Id {
    fn eq(&self, other: &str) -> bool {
        match self {
            Id::File(stem) => stem == other,
            Id::Unsaved(n) => other.strip_prefix("unsaved-") == Some(n.to_string().as_str()),
        }
    }
}

impl PartialEq<&str> for Id {
    fn eq(&self, other: &&str) -> bool {
        self == *other
    }
}

/// When each pending entry is due. Pure; file ids sort by creation time
/// (their stems begin with it), in-memory ones after them in the order made,
/// so [`Schedule::due`] hands out the oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schedule {
    slots: BTreeMap<Id, Slot>,
}

impl Schedule {
    /// Adds an entry, due at `now` (a new alert, or one found at start).
    pub fn add(&mut self, id: &Id, now: Instant) {
        self.slots.insert(
            id.clone(),
            Slot {
                due: now,
                failures: 0,
            },
        );
    }

    /// The entries due at `now`, oldest first.
    pub fn due(&self, now: Instant) -> Vec<Id> {
        self.slots
            .iter()
            .filter(|(_, s)| s.due <= now)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// A round failed: the entry is due again after [`retry_delay`] of its
    /// failures in a row. Returns that delay (`None` for an unknown id).
    pub fn record_failure(&mut self, id: &Id, now: Instant) -> Option<Duration> {
        let slot = self.slots.get_mut(id)?;
        slot.failures = slot.failures.saturating_add(1);
        let delay = retry_delay(slot.failures);
        slot.due = now + delay;
        Some(delay)
    }

    /// Moves an entry's due time without counting a failure: it was not
    /// tried, because a channel it needs failed moments ago for another entry.
    pub fn defer(&mut self, id: &Id, until: Instant) {
        if let Some(slot) = self.slots.get_mut(id) {
            slot.due = until;
        }
    }

    /// The entry is done (delivered everywhere) or gone.
    pub fn remove(&mut self, id: &Id) {
        self.slots.remove(id);
    }

    /// When the next entry is due; `None` when nothing waits.
    pub fn next_due(&self) -> Option<Instant> {
        self.slots.values().map(|s| s.due).min()
    }

    /// The entry's due time, if it is pending.
    pub fn due_at(&self, id: &Id) -> Option<Instant> {
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
    /// A summary entry: the alerts folded into it (see [`plan_folds`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub folded: Vec<Folded>,
}

/// One alert folded into a summary: when, what, why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Folded {
    pub time: String,
    pub subject: String,
    pub cause: String,
}

/// Entries older than this are stale: all but the newest of one kind are
/// folded into one summary.
pub const STALE_AFTER: Duration = Duration::from_secs(3600);
/// The most entries the outbox holds; past that the oldest `restarted`
/// entries are folded first.
pub const MAX_ENTRIES: usize = 1000;

/// "Server Down" and "Server Recovered": these go first, newest first.
fn urgent(event: &str) -> bool {
    matches!(event, "down" | "recovered")
}

/// Pure: the order in which the waiting entries `ids` are tried: "Server
/// Down" and "Server Recovered" newest first, then the rest oldest first
/// (ids unknown to `entries` last).
pub fn delivery_order(ids: &[Id], entries: &BTreeMap<Id, Entry>) -> Vec<Id> {
    let key = |id: &Id| entries.get(id).map(|e| (e.time_unix_ms, id.clone()));
    let mut first: Vec<(u64, Id)> = Vec::new();
    let mut rest: Vec<(u64, Id)> = Vec::new();
    let mut unknown = Vec::new();
    for id in ids {
        match (key(id), entries.get(id)) {
            (Some(k), Some(e)) if urgent(&e.event) => first.push(k),
            (Some(k), Some(_)) => rest.push(k),
            _ => unknown.push(id.clone()),
        }
    }
    first.sort_by(|a, b| b.cmp(a));
    rest.sort();
    first
        .into_iter()
        .chain(rest)
        .map(|(_, id)| id)
        .chain(unknown)
        .collect()
}

/// Entries of one kind (`event`) to fold into one summary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fold {
    pub event: String,
    /// Oldest first.
    pub ids: Vec<Id>,
}

/// Pure: which waiting entries to fold at `now_unix_ms`. Only entries no
/// channel has taken yet are folded, and never the newest of its kind.
/// 1. Per kind, the entries older than `stale_after` (at least two) become
///    one fold.
/// 2. While more than `max` entries would remain, the oldest entries are
///    folded, `restarted` first, then other kinds, "Server Recovered" and
///    "Server Down" last.
///
/// Folding never drops anything: each folded entry is listed in its summary.
pub fn plan_folds(
    entries: &BTreeMap<Id, Entry>,
    now_unix_ms: u64,
    stale_after: Duration,
    max: usize,
) -> Vec<Fold> {
    // Per kind, the foldable entries oldest first, less the newest.
    let mut kinds: BTreeMap<&str, Vec<(u64, &Id)>> = BTreeMap::new();
    for (id, e) in entries {
        if e.delivered.is_empty() {
            kinds
                .entry(e.event.as_str())
                .or_default()
                .push((e.time_unix_ms, id));
        }
    }
    for list in kinds.values_mut() {
        list.sort();
        list.pop();
    }
    let stale_ms = u64::try_from(stale_after.as_millis()).unwrap_or(u64::MAX);
    let mut folds: BTreeMap<&str, Vec<Id>> = BTreeMap::new();
    let mut taken: BTreeMap<&str, usize> = BTreeMap::new();
    for (kind, list) in &kinds {
        let stale = list
            .iter()
            .take_while(|(t, _)| now_unix_ms.saturating_sub(*t) >= stale_ms)
            .count();
        if stale >= 2 {
            folds.insert(
                kind,
                list[..stale].iter().map(|(_, id)| (*id).clone()).collect(),
            );
            taken.insert(kind, stale);
        }
    }
    let mut remaining = entries.len() - folds.values().map(|f| f.len() - 1).sum::<usize>();
    let rank = |k: &str| match k {
        "restarted" => 0,
        "down" => 3,
        "recovered" => 2,
        _ => 1,
    };
    let mut order: Vec<&str> = kinds.keys().copied().collect();
    order.sort_by_key(|k| (rank(k), *k));
    for kind in order {
        if remaining <= max {
            break;
        }
        let list = &kinds[kind];
        let from = taken.get(kind).copied().unwrap_or(0);
        let more = &list[from..];
        let excess = remaining - max;
        let fold = folds.entry(kind).or_default();
        // A new fold of n entries saves n - 1; each added to one saves 1.
        let n = if fold.is_empty() {
            if more.len() < 2 {
                folds.remove(kind);
                continue;
            }
            (excess + 1).min(more.len())
        } else {
            excess.min(more.len())
        };
        let fold = folds.entry(kind).or_default();
        let saved = if fold.is_empty() { n - 1 } else { n };
        fold.extend(more[..n].iter().map(|(_, id)| (*id).clone()));
        remaining -= saved;
    }
    folds
        .into_iter()
        .map(|(event, ids)| Fold {
            event: event.to_string(),
            ids,
        })
        .collect()
}

/// Pure: the summary entry for `items` (one kind, oldest first): each item,
/// and each one an earlier summary holds, listed with its time, subject and
/// cause. It takes the newest item's time, and a Message-ID of its own.
pub fn summarize(items: &[&Entry]) -> Option<Entry> {
    let newest = items.iter().max_by_key(|e| e.time_unix_ms)?;
    let mut folded: Vec<Folded> = Vec::new();
    for e in items {
        if e.folded.is_empty() {
            folded.push(Folded {
                time: e.time.clone(),
                subject: e.subject.clone(),
                cause: cause_of(&e.body),
            });
        } else {
            folded.extend(e.folded.iter().cloned());
        }
    }
    folded.sort_by(|a, b| a.time.cmp(&b.time));
    let base = newest
        .subject
        .split(" (")
        .next()
        .unwrap_or(&newest.subject)
        .to_string();
    let mut body = format!(
        "{} alerts of this kind waited for delivery and are folded into this one:\n",
        folded.len()
    );
    for f in &folded {
        body.push_str(&format!("- {} {}: {}\n", f.time, f.subject, f.cause));
    }
    Some(Entry {
        event: newest.event.clone(),
        subject: format!("{base} ({} alerts, folded)", folded.len()),
        body,
        host: newest.host.clone(),
        time: newest.time.clone(),
        time_unix_ms: newest.time_unix_ms,
        message_id: format!("summary-{}.{}", folded.len(), newest.message_id),
        attempts: BTreeMap::new(),
        delivered: Vec::new(),
        folded,
    })
}

/// The `Cause:` line of an alert's body, else its first line.
fn cause_of(body: &str) -> String {
    body.lines()
        .find_map(|l| l.strip_prefix("Cause: "))
        .or_else(|| body.lines().next())
        .unwrap_or_default()
        .to_string()
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
            folded: Vec::new(),
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

    /// Test ids are file stems.
    impl From<&str> for Id {
        fn from(stem: &str) -> Id {
            Id::File(stem.to_string())
        }
    }

    const HOUR_MS: u64 = 3_600_000;

    fn entry(event: &str, at_ms: u64, cause: &str) -> Entry {
        let subject = match event {
            "down" => "[A] Server Down",
            "recovered" => "[A] Server Recovered",
            _ => "[A] Server Restarted Successfully",
        };
        Entry::new(
            event,
            subject,
            &format!("Something.\nCause: {cause}\nhost"),
            "h",
            SystemTime::UNIX_EPOCH + Duration::from_millis(at_ms),
            &format!("{at_ms}@h"),
        )
    }

    fn outbox(list: &[(&str, u64)]) -> BTreeMap<Id, Entry> {
        list.iter()
            .enumerate()
            .map(|(i, (ev, t))| {
                let id = Id::File(format!("{i:05}-{ev}"));
                (id, entry(ev, *t, &format!("c{i}")))
            })
            .collect()
    }

    #[test]
    fn down_and_recovered_go_first_newest_first() {
        let e = outbox(&[
            ("restarted", 1),
            ("down", 2),
            ("restarted", 3),
            ("recovered", 4),
            ("down", 5),
        ]);
        let ids: Vec<Id> = e.keys().cloned().collect();
        let order = delivery_order(&ids, &e);
        assert_eq!(
            order,
            [
                "00004-down",
                "00003-recovered",
                "00001-down",
                "00000-restarted",
                "00002-restarted"
            ]
        );
        let mut with_unknown = ids.clone();
        with_unknown.insert(0, Id::File("gone".into()));
        assert_eq!(delivery_order(&with_unknown, &e).last().unwrap(), "gone");
    }

    #[test]
    fn stale_entries_of_one_kind_fold_but_the_newest_and_lone_ones_stay() {
        let now = 100 * HOUR_MS;
        let e = outbox(&[
            ("restarted", now - 5 * HOUR_MS),
            ("restarted", now - 4 * HOUR_MS),
            ("down", now - 4 * HOUR_MS),
            ("restarted", now - 3 * HOUR_MS),
            ("restarted", now - 60_000),
            ("down", now - 60_000),
        ]);
        let folds = plan_folds(&e, now, STALE_AFTER, MAX_ENTRIES);
        assert_eq!(
            folds,
            [Fold {
                event: "restarted".into(),
                ids: vec![
                    "00000-restarted".into(),
                    "00001-restarted".into(),
                    "00003-restarted".into()
                ],
            }],
            "one stale down alone is not folded; the fresh restarted stays"
        );
        // All stale: the newest of each kind still stays as it is.
        let folds = plan_folds(&e, now + 10 * HOUR_MS, STALE_AFTER, MAX_ENTRIES);
        assert_eq!(folds.len(), 1, "{folds:?}");
        assert_eq!(folds[0].ids.len(), 3, "{folds:?}");
        // Nothing stale: nothing folded.
        assert!(plan_folds(
            &e,
            now - 4 * HOUR_MS - HOUR_MS / 2,
            STALE_AFTER,
            MAX_ENTRIES
        )
        .is_empty());
    }

    #[test]
    fn past_the_cap_the_oldest_restarted_fold_first() {
        let now = 10 * HOUR_MS;
        let mut list: Vec<(&str, u64)> = (0..1005).map(|i| ("restarted", now - 1000 + i)).collect();
        list.extend([("down", now - 2000), ("down", now - 1), ("recovered", now)]);
        let e = outbox(&list);
        let folds = plan_folds(&e, now, STALE_AFTER, 1000);
        assert_eq!(folds.len(), 1, "{folds:?}");
        assert_eq!(folds[0].event, "restarted");
        // 1008 entries: 9 folded into one leave 1000.
        assert_eq!(folds[0].ids.len(), 9);
        assert_eq!(folds[0].ids[0], "00000-restarted", "the oldest first");
        let left = e.len() - (folds[0].ids.len() - 1);
        assert_eq!(left, 1000);
        // Only "down" entries past the cap: they fold too, never dropped.
        let downs: Vec<(&str, u64)> = (0..12).map(|i| ("down", now - 100 + i)).collect();
        let folds = plan_folds(&outbox(&downs), now, STALE_AFTER, 10);
        assert_eq!(folds.len(), 1);
        assert_eq!(folds[0].ids.len(), 3);
    }

    #[test]
    fn entries_a_channel_took_are_not_folded() {
        let now = 100 * HOUR_MS;
        let mut e = outbox(&[("restarted", 1), ("restarted", 2), ("restarted", 3)]);
        e.get_mut(&Id::from("00000-restarted"))
            .unwrap()
            .mark_delivered("email");
        let folds = plan_folds(&e, now, STALE_AFTER, MAX_ENTRIES);
        assert!(
            folds.is_empty(),
            "one left to fold is not a fold: {folds:?}"
        );
    }

    #[test]
    fn a_summary_lists_each_folded_alert_and_folds_again_flat() {
        let a = entry("restarted", 1_000, "killed by signal 9");
        let b = entry("restarted", 2_000, "3 failed checks");
        let s = summarize(&[&a, &b]).unwrap();
        assert_eq!(s.event, "restarted");
        assert_eq!(
            s.subject,
            "[A] Server Restarted Successfully (2 alerts, folded)"
        );
        assert_eq!(s.time_unix_ms, 2_000);
        assert_ne!(s.message_id, b.message_id);
        assert!(
            s.body.contains(&format!(
                "{} [A] Server Restarted Successfully: killed by signal 9",
                a.time
            )),
            "{}",
            s.body
        );
        assert!(
            s.body.contains("Successfully: 3 failed checks"),
            "{}",
            s.body
        );
        let c = entry("restarted", 3_000, "exited with status 1");
        let again = summarize(&[&s, &c]).unwrap();
        assert_eq!(again.folded.len(), 3);
        assert_eq!(
            again.subject,
            "[A] Server Restarted Successfully (3 alerts, folded)"
        );
        assert!(summarize(&[]).is_none());
    }

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
        s.add(&Id::from("a"), t0);
        assert_eq!(s.due(t0), vec!["a"]);
        assert_eq!(s.next_due(), Some(t0));
    }

    #[test]
    fn failures_push_an_entry_back_with_the_growing_delay() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.add(&Id::from("a"), t0);
        assert_eq!(s.record_failure(&Id::from("a"), t0), Some(secs(5)));
        assert!(s.due(t0 + secs(4)).is_empty());
        assert_eq!(s.due(t0 + secs(5)), vec!["a"]);
        let t1 = t0 + secs(5);
        assert_eq!(s.record_failure(&Id::from("a"), t1), Some(secs(10)));
        assert_eq!(s.next_due(), Some(t1 + secs(10)));
        let mut t = t1;
        for _ in 0..10 {
            t += secs(1000);
            s.record_failure(&Id::from("a"), t);
        }
        assert_eq!(s.next_due(), Some(t + secs(300)), "capped at 5 minutes");
        assert_eq!(s.record_failure(&Id::from("missing"), t), None);
    }

    #[test]
    fn due_lists_the_oldest_first_and_next_due_is_the_earliest() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.add(&Id::from("2024-01-02-down"), t0);
        s.add(&Id::from("2024-01-01-restarted"), t0);
        s.add(&Id::from("2024-01-03-recovered"), t0);
        assert_eq!(
            s.due(t0),
            vec![
                "2024-01-01-restarted",
                "2024-01-02-down",
                "2024-01-03-recovered"
            ]
        );
        s.record_failure(&Id::from("2024-01-01-restarted"), t0);
        s.defer(&Id::from("2024-01-02-down"), t0 + secs(5));
        s.remove(&Id::from("2024-01-03-recovered"));
        assert!(s.due(t0 + secs(1)).is_empty());
        assert_eq!(s.next_due(), Some(t0 + secs(5)));
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn defer_does_not_count_a_failure() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.add(&Id::from("a"), t0);
        s.defer(&Id::from("a"), t0 + secs(40));
        assert_eq!(s.due_at(&Id::from("a")), Some(t0 + secs(40)));
        assert_eq!(
            s.record_failure(&Id::from("a"), t0 + secs(40)),
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
