//! The history under `LOG_DIR/history/`: what `report` and `status` count
//! availability from. This module holds the record format, its parser, the
//! day summary's fixed histogram, the file names, reading and pruning;
//! [`recorder`] holds the writer the monitor's loop calls.
//!
//! # Format
//!
//! One file per UTC month, `history/YYYY-MM.jsonl` (mode 0640, directory
//! 0750), one JSON object a line, append-only. Every line is written with one
//! `write(2)` on a descriptor opened with `O_APPEND`, so a crash loses at
//! most the line being written; a torn (unparsable) line is skipped by the
//! reader, and so is a line of an unknown kind (room for later fields).
//! Every line has `t`, UTC milliseconds since the epoch, and `e`, its kind:
//!
//! | `e` | fields | written |
//! | --- | --- | --- |
//! | `start` | `pid`; `prev`: the previous monitor's last sign of life (its state file's `updated_unix_ms`), when known | when a monitor starts |
//! | `state` | `s`: `healthy`, `failing`, `down`, `restarting`, `paused`, `given-up`; `cause`, `detail` (optional text); `planned: true` on a start made on purpose (the first start, `server-monitor restart`); `restart: true` when the start counts as a restart; `carry: true` on the first line of a month file (the state goes on, nothing happened) | the moment the state changes |
//! | `hb` | — | every [`recorder::HEARTBEAT`] when nothing else was written |
//! | `day` | `d` (`YYYY-MM-DD`), `checks`, `fail`, `lat` (the latency histogram: `[[bucket, count], …]`, see [`Histogram`]), `lat_max` (ms), and `mem`, `cpu`, `db` as `[sum, count, max]` when the body had them | at UTC midnight, and at monitor stop for the part of the day seen (the reader adds up lines of the same day) |
//! | `stop` | — | when a monitor stops on purpose |
//!
//! `t` within one monitor run is the start's wall clock plus monotonic time,
//! so that a clock step does not stretch or shrink a duration; a clock that
//! drifts more than a minute from it is taken again at the next heartbeat.
//!
//! What the lines mean for availability is `report`'s business (see there).
//!
//! Not here: no per-check write (checks are added up in memory and written
//! once a day); no lock (`report` reads a copied `LOG_DIR` as well).

pub mod recorder;

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

pub use recorder::Recorder;

/// The directory under `LOG_DIR`.
pub const DIR: &str = "history";

/// A state the history knows; see `report` for how each counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    Healthy,
    Failing,
    Down,
    Restarting,
    Paused,
    GivenUp,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Healthy => "healthy",
            Status::Failing => "failing",
            Status::Down => "down",
            Status::Restarting => "restarting",
            Status::Paused => "paused",
            Status::GivenUp => "given-up",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        [
            Status::Healthy,
            Status::Failing,
            Status::Down,
            Status::Restarting,
            Status::Paused,
            Status::GivenUp,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One state change.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Change {
    pub status: Option<Status>,
    pub cause: Option<String>,
    pub detail: Option<String>,
    /// A planned restart (`server-monitor restart`).
    pub planned: bool,
    /// A start that counts as a restart (not the first start).
    pub restart: bool,
    /// Repeated at the top of a new month file: nothing happened.
    pub carry: bool,
}

impl Change {
    pub fn to(status: Status) -> Change {
        Change {
            status: Some(status),
            ..Change::default()
        }
    }

    pub fn because(mut self, cause: impl Into<String>) -> Change {
        self.cause = Some(cause.into());
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Change {
        self.detail = Some(detail.into());
        self
    }
}

/// A `[sum, count, max]` of one body figure over a day.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Stat {
    pub sum: f64,
    pub count: u64,
    pub max: f64,
}

impl Stat {
    pub fn add(&mut self, x: f64) {
        self.max = if self.count == 0 { x } else { self.max.max(x) };
        self.sum += x;
        self.count += 1;
    }

    pub fn merge(&mut self, o: &Stat) {
        if o.count == 0 {
            return;
        }
        self.max = if self.count == 0 {
            o.max
        } else {
            self.max.max(o.max)
        };
        self.sum += o.sum;
        self.count += o.count;
    }

    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }
}

/// Check latency as a small fixed histogram: bucket `i` holds latencies up
/// to `0.1 ms × 2^(i/4)` (each bucket 19 % wider than the one before), the
/// last one everything above 104 s. Percentiles read from it are the
/// bucket's upper edge: within 19 % of the true value, and mergeable across
/// partial lines of a day.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    pub counts: [u32; Histogram::BUCKETS],
    pub max_ms: f64,
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram {
            counts: [0; Histogram::BUCKETS],
            max_ms: 0.0,
        }
    }
}

impl Histogram {
    pub const BUCKETS: usize = 81;

    /// The upper edge of bucket `i`, in ms.
    pub fn upper_ms(i: usize) -> f64 {
        0.1 * 2f64.powf(i as f64 / 4.0)
    }

    pub fn bucket(ms: f64) -> usize {
        if ms <= 0.1 || ms.is_nan() {
            return 0;
        }
        let i = (4.0 * (ms / 0.1).log2()).ceil();
        (i.max(0.0) as usize).min(Self::BUCKETS - 1)
    }

    pub fn add(&mut self, ms: f64) {
        let b = Self::bucket(ms);
        self.counts[b] = self.counts[b].saturating_add(1);
        self.max_ms = self.max_ms.max(ms);
    }

    pub fn merge(&mut self, o: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(o.counts.iter()) {
            *a = a.saturating_add(*b);
        }
        self.max_ms = self.max_ms.max(o.max_ms);
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().map(|&c| u64::from(c)).sum()
    }

    /// The `q`-quantile (0..=1), as a bucket's upper edge capped at the max.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += u64::from(c);
            if seen >= rank {
                return Some(Self::upper_ms(i).min(self.max_ms));
            }
        }
        Some(self.max_ms)
    }
}

/// One day's checks, as written in a `day` line (or several added up).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DaySummary {
    /// Days since 1970-01-01 (UTC).
    pub day: i64,
    pub checks: u64,
    pub failures: u64,
    pub latency: Histogram,
    pub memory: Stat,
    pub cpu: Stat,
    pub db: Stat,
}

impl DaySummary {
    pub fn merge(&mut self, o: &DaySummary) {
        self.checks += o.checks;
        self.failures += o.failures;
        self.latency.merge(&o.latency);
        self.memory.merge(&o.memory);
        self.cpu.merge(&o.cpu);
        self.db.merge(&o.db);
    }
}

/// One line of the history.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    Start { t: i64, pid: u32, prev: Option<i64> },
    State { t: i64, change: Change },
    Heartbeat { t: i64 },
    Day { t: i64, summary: Box<DaySummary> },
    Stop { t: i64 },
}

impl Record {
    pub fn time(&self) -> i64 {
        match self {
            Record::Start { t, .. }
            | Record::State { t, .. }
            | Record::Heartbeat { t }
            | Record::Day { t, .. }
            | Record::Stop { t } => *t,
        }
    }

    /// The line, with its `\n`.
    pub fn to_line(&self) -> String {
        let v = match self {
            Record::Start { t, pid, prev } => {
                let mut v = json!({"t": t, "e": "start", "pid": pid});
                if let Some(p) = prev {
                    v["prev"] = json!(p);
                }
                v
            }
            Record::State { t, change } => {
                let mut m = Map::new();
                m.insert("t".into(), json!(t));
                m.insert("e".into(), json!("state"));
                let s = change.status.map_or("healthy", Status::as_str);
                m.insert("s".into(), json!(s));
                if let Some(c) = &change.cause {
                    m.insert("cause".into(), json!(c));
                }
                if let Some(d) = &change.detail {
                    m.insert("detail".into(), json!(d));
                }
                for (k, on) in [
                    ("planned", change.planned),
                    ("restart", change.restart),
                    ("carry", change.carry),
                ] {
                    if on {
                        m.insert(k.into(), json!(true));
                    }
                }
                Value::Object(m)
            }
            Record::Heartbeat { t } => json!({"t": t, "e": "hb"}),
            Record::Stop { t } => json!({"t": t, "e": "stop"}),
            Record::Day { t, summary: s } => {
                let lat: Vec<[u64; 2]> = s
                    .latency
                    .counts
                    .iter()
                    .enumerate()
                    .filter(|(_, &c)| c > 0)
                    .map(|(i, &c)| [i as u64, u64::from(c)])
                    .collect();
                let mut v = json!({"t": t, "e": "day", "d": day_name(s.day),
                    "checks": s.checks, "fail": s.failures, "lat": lat,
                    "lat_max": round3(s.latency.max_ms)});
                for (k, st) in [("mem", &s.memory), ("cpu", &s.cpu), ("db", &s.db)] {
                    if st.count > 0 {
                        v[k] = json!([round3(st.sum), st.count, round3(st.max)]);
                    }
                }
                v
            }
        };
        let mut line = v.to_string();
        line.push('\n');
        line
    }

    /// Parses one line; `None` for a torn line or an unknown kind.
    pub fn parse(line: &str) -> Option<Record> {
        let v: Value = serde_json::from_str(line).ok()?;
        let t = v.get("t")?.as_i64()?;
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let flag = |k: &str| v.get(k).and_then(Value::as_bool).unwrap_or(false);
        Some(match v.get("e")?.as_str()? {
            "start" => Record::Start {
                t,
                pid: v.get("pid").and_then(Value::as_u64).unwrap_or(0) as u32,
                prev: v.get("prev").and_then(Value::as_i64),
            },
            "state" => Record::State {
                t,
                change: Change {
                    status: Some(Status::parse(v.get("s")?.as_str()?)?),
                    cause: text("cause"),
                    detail: text("detail"),
                    planned: flag("planned"),
                    restart: flag("restart"),
                    carry: flag("carry"),
                },
            },
            "hb" => Record::Heartbeat { t },
            "stop" => Record::Stop { t },
            "day" => {
                let mut s = DaySummary {
                    day: parse_day(v.get("d")?.as_str()?)?,
                    checks: v.get("checks").and_then(Value::as_u64).unwrap_or(0),
                    failures: v.get("fail").and_then(Value::as_u64).unwrap_or(0),
                    ..DaySummary::default()
                };
                for pair in v.get("lat").and_then(Value::as_array).into_iter().flatten() {
                    let (Some(i), Some(c)) = (
                        pair.get(0).and_then(Value::as_u64),
                        pair.get(1).and_then(Value::as_u64),
                    ) else {
                        continue;
                    };
                    if let Some(slot) = s.latency.counts.get_mut(i as usize) {
                        *slot = slot.saturating_add(c.min(u64::from(u32::MAX)) as u32);
                    }
                }
                s.latency.max_ms = v.get("lat_max").and_then(Value::as_f64).unwrap_or(0.0);
                for (k, st) in [
                    ("mem", &mut s.memory),
                    ("cpu", &mut s.cpu),
                    ("db", &mut s.db),
                ] {
                    if let Some(a) = v.get(k).and_then(Value::as_array) {
                        let n = |i: usize| a.get(i).and_then(Value::as_f64).unwrap_or(0.0);
                        *st = Stat {
                            sum: n(0),
                            count: n(1) as u64,
                            max: n(2),
                        };
                    }
                }
                Record::Day {
                    t,
                    summary: Box::new(s),
                }
            }
            _ => return None,
        })
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// `YYYY-MM-DD` of a day number.
pub fn day_name(day: i64) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The day number of `YYYY-MM-DD`.
pub fn parse_day(s: &str) -> Option<i64> {
    let mut it = s.splitn(3, '-');
    let y: i64 = it.next()?.parse().ok()?;
    let m: u32 = it.next()?.parse().ok()?;
    let d: u32 = it.next()?.parse().ok()?;
    ((1..=12).contains(&m) && (1..=31).contains(&d)).then(|| days_from_civil(y, m, d))
}

/// UTC day number of a time in ms.
pub fn day_of(t_ms: i64) -> i64 {
    t_ms.div_euclid(86_400_000)
}

/// Howard Hinnant's `days_from_civil`: (year, month, day) to days since 1970-01-01.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 to (year, month, day).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The month file a time belongs in: `YYYY-MM.jsonl`.
pub fn file_name(t_ms: i64) -> String {
    let (y, m, _) = civil_from_days(day_of(t_ms));
    format!("{y:04}-{m:02}.jsonl")
}

/// (year, month) of a month file's name.
fn month_of_name(name: &str) -> Option<(i64, u32)> {
    let stem = name.strip_suffix(".jsonl")?;
    let (y, m) = stem.split_once('-')?;
    let (y, m) = (y.parse().ok()?, m.parse().ok()?);
    (y > 0 && (1..=12).contains(&m) && stem.len() == 7).then_some((y, m))
}

/// The month files under `dir/history`, oldest first, with their months.
pub fn month_files(log_dir: &Path) -> Vec<(PathBuf, i64, u32)> {
    let Ok(entries) = fs::read_dir(log_dir.join(DIR)) else {
        return Vec::new();
    };
    let mut out: Vec<(PathBuf, i64, u32)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let (y, m) = month_of_name(&name)?;
            Some((e.path(), y, m))
        })
        .collect();
    out.sort_by_key(|(_, y, m)| (*y, *m));
    out
}

/// The first day of the month after (y, m).
fn next_month(y: i64, m: u32) -> i64 {
    if m == 12 {
        days_from_civil(y + 1, 1, 1)
    } else {
        days_from_civil(y, m + 1, 1)
    }
}

/// Every record of the month files that may hold times in `[from, to)`
/// (plus the month before, for the state at `from`), in file order.
pub fn read(log_dir: &Path, from_ms: i64, to_ms: i64) -> io::Result<Vec<Record>> {
    let files = month_files(log_dir);
    let first = day_of(from_ms);
    let last = day_of(to_ms);
    let mut wanted: Vec<&PathBuf> = Vec::new();
    for (i, (path, y, m)) in files.iter().enumerate() {
        let start = days_from_civil(*y, *m, 1);
        let end = next_month(*y, *m);
        let overlaps = start <= last && end > first;
        let next_overlaps = files.get(i + 1).is_some_and(|(_, y2, m2)| {
            days_from_civil(*y2, *m2, 1) <= last && next_month(*y2, *m2) > first
        });
        // The file before the first one that overlaps: the state at `from`.
        if overlaps || (next_overlaps && end <= first) {
            wanted.push(path);
        }
    }
    let mut out = Vec::new();
    for path in wanted {
        let text = match fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        parse_all(&String::from_utf8_lossy(&text), &mut out);
    }
    Ok(out)
}

/// Parses every good line of `text` into `out`.
pub fn parse_all(text: &str, out: &mut Vec<Record>) {
    out.extend(text.lines().filter_map(Record::parse));
}

/// Removes month files that ended more than `days` days before `now_ms`
/// (0 keeps all); returns how many.
pub fn prune(log_dir: &Path, days: u32, now_ms: i64) -> usize {
    if days == 0 {
        return 0;
    }
    let cutoff = day_of(now_ms) - i64::from(days);
    month_files(log_dir)
        .into_iter()
        .filter(|(_, y, m)| next_month(*y, *m) <= cutoff)
        .filter(|(p, _, _)| fs::remove_file(p).is_ok())
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_record_kind_round_trips_through_its_line() {
        let mut s = DaySummary {
            day: parse_day("2026-11-30").unwrap(),
            checks: 2880,
            failures: 3,
            ..DaySummary::default()
        };
        s.latency.add(1.2);
        s.latency.add(40.0);
        s.memory.add(12.5);
        s.cpu.add(5.0);
        let records = [
            Record::Start {
                t: 1,
                pid: 7,
                prev: Some(0),
            },
            Record::State {
                t: 2,
                change: Change {
                    planned: true,
                    restart: true,
                    ..Change::to(Status::Restarting).because("planned restart")
                },
            },
            Record::State {
                t: 3,
                change: Change::to(Status::Failing)
                    .because("HTTP 503")
                    .detail("\"quoted\"\n<b>"),
            },
            Record::Heartbeat { t: 4 },
            Record::Day {
                t: 5,
                summary: Box::new(s),
            },
            Record::Stop { t: 6 },
        ];
        for r in records {
            let line = r.to_line();
            assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
            assert_eq!(Record::parse(&line), Some(r), "{line}");
        }
    }

    #[test]
    fn torn_and_unknown_lines_are_skipped() {
        let mut out = Vec::new();
        parse_all(
            "{\"t\":1,\"e\":\"hb\"}\n{\"t\":2,\"e\":\"later\"}\n{\"t\":3,\"e\":\"st",
            &mut out,
        );
        assert_eq!(out, vec![Record::Heartbeat { t: 1 }]);
    }

    #[test]
    fn histogram_quantiles_are_within_a_bucket() {
        let mut h = Histogram::default();
        for i in 1..=100 {
            h.add(f64::from(i));
        }
        let p50 = h.quantile(0.5).unwrap();
        let p95 = h.quantile(0.95).unwrap();
        assert!((50.0..=50.0 * 1.19).contains(&p50), "{p50}");
        assert!((95.0..=100.0).contains(&p95), "{p95}");
        assert_eq!(h.quantile(1.0), Some(100.0));
        assert_eq!(Histogram::default().quantile(0.5), None);
        assert_eq!(Histogram::bucket(1e9), Histogram::BUCKETS - 1);
    }

    #[test]
    fn calendar_helpers_agree() {
        for day in [-1, 0, 59, 365, 20_423, 20_788] {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
        }
        assert_eq!(day_name(parse_day("2026-12-01").unwrap()), "2026-12-01");
        assert_eq!(
            file_name(days_from_civil(2025, 12, 31) * 86_400_000 + 86_399_999),
            "2025-12.jsonl"
        );
    }

    #[test]
    fn pruning_removes_months_past_history_days_only() {
        let dir = std::env::temp_dir().join(format!("sm-hist-prune-{}", std::process::id()));
        let h = dir.join(DIR);
        fs::create_dir_all(&h).unwrap();
        for name in [
            "2025-01.jsonl",
            "2026-10.jsonl",
            "2026-11.jsonl",
            "notes.txt",
        ] {
            fs::write(h.join(name), "").unwrap();
        }
        let now = days_from_civil(2026, 12, 1) * 86_400_000;
        assert_eq!(prune(&dir, 0, now), 0);
        assert_eq!(prune(&dir, 40, now), 1);
        let left: Vec<String> = month_files(&dir)
            .iter()
            .map(|(p, _, _)| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, ["2026-10.jsonl", "2026-11.jsonl"]);
        assert!(h.join("notes.txt").exists());
        fs::remove_dir_all(dir).unwrap();
    }
}
