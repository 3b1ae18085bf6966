//! `server-monitor report`: availability from the history files, as pure
//! functions over the records and a period ([`account`]), and a thin shell
//! ([`run`]) that reads `LOG_DIR/history/` (no lock, no running monitor: a
//! copied `LOG_DIR` works) and prints text, JSON, CSV or an HTML page.
//!
//! Accounting rules (README "History and report"):
//! - time is split into segments by the state lines; `healthy` is up;
//!   `failing`, `down`, `restarting` and `given-up` are down, so downtime
//!   begins at the first failed check; `paused` is neither;
//! - a start made on purpose (the monitor's first start, `server-monitor
//!   restart`) is up when the next state is `healthy` (the new server passed
//!   its verification), down otherwise;
//! - time the monitor did not run is *not observed*, neither up nor down: a
//!   run ends at its `stop` line or, after a crash, at its last sign of life
//!   (its last line, or the `prev` of the next `start`: the state file's
//!   last write); until the first state line of a run, time is not observed;
//! - availability = up ÷ (up + down); coverage = (up + down + paused) ÷ the
//!   period;
//! - an incident is a run of down time; a pause or a gap inside it does not
//!   end it when the server is still down after it (that time is not counted
//!   as downtime), a healthy state does; an incident still open at the end of
//!   the period (or of the data) is cut there and marked ongoing; its cause is
//!   that of its first state, its restarts the restarts begun inside it; the
//!   mean time to recovery is over the incidents that ended.

pub mod chart;
mod html;
mod render;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use crate::cli::{ReportFormat, ReportPeriod, ReportRequest};
use crate::config::Config;
use crate::history::{self, day_of, Change, DaySummary, Record, Status};

pub use html::page;
pub use render::{csv, json, text};

const DAY_MS: i64 = 86_400_000;

/// `[from, to)` in UTC milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Period {
    pub from: i64,
    pub to: i64,
}

impl Period {
    pub fn len(&self) -> i64 {
        (self.to - self.from).max(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The period a request names, at `now_ms`; a month is cut at now.
    pub fn of(request: ReportPeriod, now_ms: i64) -> Period {
        match request {
            ReportPeriod::Since(d) => Period {
                from: now_ms - d.as_millis().min(i64::MAX as u128 / 2) as i64,
                to: now_ms,
            },
            ReportPeriod::Month { year, month } => {
                let y = i64::from(year);
                let from = history::days_from_civil(y, month, 1) * DAY_MS;
                let next = if month == 12 {
                    history::days_from_civil(y + 1, 1, 1)
                } else {
                    history::days_from_civil(y, month + 1, 1)
                };
                Period {
                    from,
                    to: (next * DAY_MS).min(now_ms.max(from)),
                }
            }
        }
    }
}

/// How a stretch of time counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Up,
    Down,
    Paused,
}

/// A stretch of observed time in one state.
#[derive(Clone, Debug, PartialEq)]
pub struct Segment {
    pub from: i64,
    pub to: i64,
    /// When the state line was written (before clipping to the period).
    pub began: i64,
    pub change: Change,
    pub class: Class,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Incident {
    pub start: i64,
    pub end: i64,
    /// Observed down time within it.
    pub downtime: i64,
    /// Gaps and pauses within it.
    pub not_observed: i64,
    pub cause: String,
    pub restarts: u32,
    pub ongoing: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Pause {
    pub start: i64,
    pub end: i64,
    pub by: String,
}

/// One UTC day of the period.
#[derive(Clone, Debug, PartialEq)]
pub struct Day {
    pub day: i64,
    pub up: i64,
    pub down: i64,
    pub paused: i64,
    pub not_observed: i64,
    pub checks: Option<DaySummary>,
}

impl Day {
    pub fn availability(&self) -> Option<f64> {
        percent(self.up, self.up + self.down)
    }
}

/// Everything a report shows.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub period: Period,
    pub up: i64,
    pub down: i64,
    pub paused: i64,
    pub incidents: Vec<Incident>,
    pub restarts: BTreeMap<String, u32>,
    pub pauses: Vec<Pause>,
    pub days: Vec<Day>,
}

impl Report {
    pub fn observed(&self) -> i64 {
        self.up + self.down
    }

    pub fn not_observed(&self) -> i64 {
        (self.period.len() - self.up - self.down - self.paused).max(0)
    }

    pub fn availability(&self) -> Option<f64> {
        percent(self.up, self.observed())
    }

    pub fn coverage(&self) -> Option<f64> {
        percent(self.observed() + self.paused, self.period.len())
    }

    pub fn restarts_total(&self) -> u32 {
        self.restarts.values().sum()
    }

    /// Mean time to recovery, over the incidents that ended.
    pub fn mttr(&self) -> Option<i64> {
        let ended: Vec<i64> = self
            .incidents
            .iter()
            .filter(|i| !i.ongoing)
            .map(|i| i.downtime)
            .collect();
        (!ended.is_empty()).then(|| ended.iter().sum::<i64>() / ended.len() as i64)
    }

    pub fn longest(&self) -> Option<&Incident> {
        self.incidents.iter().max_by_key(|i| i.downtime)
    }
}

fn percent(part: i64, whole: i64) -> Option<f64> {
    (whole > 0).then(|| part as f64 * 100.0 / whole as f64)
}

/// Pure: the observed segments of `records` (in file order), unclipped.
/// `alive_until` is the last sign of life of the latest run when known
/// better than its last line (now, when a monitor runs).
pub fn segments(records: &[Record], alive_until: Option<i64>) -> Vec<Segment> {
    let mut out: Vec<(i64, i64, Change)> = Vec::new();
    let mut cur: Option<(i64, Change)> = None;
    let mut last = i64::MIN;
    let mut run_open = false;
    let close = |cur: &mut Option<(i64, Change)>, at: i64, out: &mut Vec<(i64, i64, Change)>| {
        if let Some((since, c)) = cur.take() {
            out.push((since, at.max(since), c));
        }
    };
    for r in records {
        // A clock that went back between runs: keep time in order.
        let t = r.time().max(last);
        match r {
            Record::Day { .. } => continue,
            Record::Start { prev, .. } => {
                if run_open {
                    let end = prev.map_or(last, |p| p.clamp(last, t));
                    close(&mut cur, end, &mut out);
                }
                run_open = true;
            }
            Record::State { change, .. } => {
                let same = cur.as_ref().is_some_and(|(_, c)| c.status == change.status);
                if change.carry && same {
                    last = t;
                    continue;
                }
                close(&mut cur, t, &mut out);
                cur = Some((t, change.clone()));
                run_open = true;
            }
            Record::Heartbeat { .. } => run_open = true,
            Record::Stop { .. } => {
                close(&mut cur, t, &mut out);
                run_open = false;
            }
        }
        last = t;
    }
    let end = alive_until.map_or(last, |a| a.max(last));
    close(&mut cur, end, &mut out);
    let mut segs = Vec::with_capacity(out.len());
    for (i, (from, to, change)) in out.iter().enumerate() {
        let class = match change.status {
            Some(Status::Healthy) => Class::Up,
            Some(Status::Paused) => Class::Paused,
            Some(Status::Restarting) if change.planned => {
                let next = out.get(i + 1);
                let verified =
                    next.is_some_and(|(f, _, c)| *f == *to && c.status == Some(Status::Healthy));
                if verified {
                    Class::Up
                } else {
                    Class::Down
                }
            }
            _ => Class::Down,
        };
        segs.push(Segment {
            from: *from,
            to: *to,
            began: *from,
            change: change.clone(),
            class,
        });
    }
    segs
}

/// Pure: the report of `period` from the history `records` (in file order).
pub fn account(records: &[Record], period: Period, alive_until: Option<i64>) -> Report {
    let all = segments(records, alive_until);
    let segs: Vec<Segment> = all
        .into_iter()
        .filter(|s| s.to > period.from && s.from < period.to)
        .map(|mut s| {
            s.from = s.from.max(period.from);
            s.to = s.to.min(period.to);
            s
        })
        .collect();
    let mut r = Report {
        period,
        up: 0,
        down: 0,
        paused: 0,
        incidents: Vec::new(),
        restarts: BTreeMap::new(),
        pauses: Vec::new(),
        days: Vec::new(),
    };
    let in_period = |t: i64| t >= period.from && t < period.to;
    let mut open: Option<Incident> = None;
    let mut last_down_end = 0;
    for s in &segs {
        let len = s.to - s.from;
        let counts_restart = s.change.restart && in_period(s.began);
        if counts_restart {
            let cause = if s.change.planned {
                "planned restart".to_string()
            } else {
                s.change.cause.clone().unwrap_or_else(|| "unknown".into())
            };
            *r.restarts.entry(cause).or_default() += 1;
        }
        match s.class {
            Class::Up => {
                r.up += len;
                // After a gap or a pause, it ended some time unseen: the
                // incident ends where it was last seen down.
                if let Some(mut i) = open.take() {
                    i.end = last_down_end;
                    r.incidents.push(i);
                }
            }
            Class::Paused => {
                r.paused += len;
                match r.pauses.last_mut() {
                    Some(p) if p.end == s.from => p.end = s.to,
                    _ => r.pauses.push(Pause {
                        start: s.from,
                        end: s.to,
                        by: s.change.cause.clone().unwrap_or_default(),
                    }),
                }
            }
            Class::Down => {
                r.down += len;
                let i = open.get_or_insert_with(|| Incident {
                    start: s.from,
                    end: s.to,
                    downtime: 0,
                    not_observed: 0,
                    cause: s.change.cause.clone().unwrap_or_else(|| "unknown".into()),
                    restarts: 0,
                    ongoing: false,
                });
                if i.downtime > 0 || i.start < s.from {
                    i.not_observed += (s.from - last_down_end).max(0);
                }
                i.downtime += len;
                i.restarts += u32::from(counts_restart);
                i.end = s.to;
                last_down_end = s.to;
            }
        }
    }
    if let Some(mut i) = open.take() {
        i.ongoing = true;
        i.end = last_down_end;
        r.incidents.push(i);
    }
    r.days = days(&segs, records, period);
    r
}

/// Pure: the availability % over each of `periods` (None: nothing observed
/// in it), with the rules of [`account`] (up ÷ (up + down); paused and
/// unobserved time count for neither) from one pass over the records: the
/// status page's windows and hourly bars.
pub fn availabilities(
    records: &[Record],
    periods: &[Period],
    alive_until: Option<i64>,
) -> Vec<Option<f64>> {
    let segs = segments(records, alive_until);
    periods
        .iter()
        .map(|p| {
            let (mut up, mut down) = (0, 0);
            for s in &segs {
                let len = (s.to.min(p.to) - s.from.max(p.from)).max(0);
                match s.class {
                    Class::Up => up += len,
                    Class::Down => down += len,
                    Class::Paused => {}
                }
            }
            percent(up, up + down)
        })
        .collect()
}

/// Per-day figures: time by class, and the `day` lines added up.
fn days(segs: &[Segment], records: &[Record], period: Period) -> Vec<Day> {
    if period.is_empty() {
        return Vec::new();
    }
    let first = day_of(period.from);
    let last = day_of(period.to - 1);
    let mut out: Vec<Day> = (first..=last)
        .map(|day| Day {
            day,
            up: 0,
            down: 0,
            paused: 0,
            not_observed: 0,
            checks: None,
        })
        .collect();
    for s in segs {
        let mut t = s.from;
        while t < s.to {
            let d = day_of(t);
            let end = ((d + 1) * DAY_MS).min(s.to);
            if let Some(day) = out.get_mut((d - first) as usize) {
                let slot = match s.class {
                    Class::Up => &mut day.up,
                    Class::Down => &mut day.down,
                    Class::Paused => &mut day.paused,
                };
                *slot += end - t;
            }
            t = end;
        }
    }
    for r in records {
        if let Record::Day { summary, .. } = r {
            if let Some(day) = summary
                .day
                .checked_sub(first)
                .and_then(|i| out.get_mut(usize::try_from(i).ok()?))
            {
                match &mut day.checks {
                    Some(s) => s.merge(summary),
                    None => day.checks = Some((**summary).clone()),
                }
            }
        }
    }
    for day in &mut out {
        let start = (day.day * DAY_MS).max(period.from);
        let end = ((day.day + 1) * DAY_MS).min(period.to);
        day.not_observed = (end - start - day.up - day.down - day.paused).max(0);
    }
    out
}

/// The history of `log_dir` over `period`, with the latest run's last sign
/// of life: now when a monitor holds the lock, else its state file's time.
pub fn load(log_dir: &Path, period: Period, now_ms: i64) -> std::io::Result<Report> {
    let records = history::read(log_dir, period.from, period.to)?;
    let alive_until = if crate::lock::lock_holder(log_dir).is_some() {
        Some(now_ms)
    } else {
        let last_start = records.iter().rev().find_map(|r| match r {
            Record::Start { t, .. } => Some(*t),
            _ => None,
        });
        crate::state::read(log_dir)
            .ok()
            .filter(|s| s.phase != crate::policy::PhaseName::Stopped)
            .map(|s| s.updated_unix_ms as i64)
            .filter(|&ms| last_start.is_some_and(|t| ms >= t))
    };
    Ok(account(&records, period, alive_until))
}

/// Availability over the last `hours`, for `status`.
pub fn recent_availability(log_dir: &Path, hours: i64) -> Option<f64> {
    let now = crate::logging::unix_millis(SystemTime::now()) as i64;
    let period = Period {
        from: now - hours * 3_600_000,
        to: now,
    };
    load(log_dir, period, now).ok()?.availability()
}

/// For `status`: availability over the last 24 h and 7 d, as text lines and
/// as JSON fields (`availability_24h_percent`, `availability_7d_percent`;
/// null with nothing observed).
pub fn status_text(log_dir: &Path) -> String {
    let f = |h| recent_availability(log_dir, h).map_or("n/a".into(), |a| format!("{a:.3}%"));
    format!("availability: {} (24 h), {} (7 d)\n", f(24), f(168))
}

pub fn status_json(log_dir: &Path, v: &mut serde_json::Value) {
    v["availability_24h_percent"] = serde_json::json!(recent_availability(log_dir, 24));
    v["availability_7d_percent"] = serde_json::json!(recent_availability(log_dir, 168));
}

/// `server-monitor report`; the error is the message for `main` to print
/// (exit status 1).
pub fn run(cfg: &Config, request: &ReportRequest) -> Result<(), String> {
    let now = crate::logging::unix_millis(SystemTime::now()) as i64;
    let period = Period::of(request.period, now);
    let dir = &cfg.log.log_dir;
    let report = match load(dir, period, now) {
        Ok(r) => r,
        Err(e) => {
            let path = dir.join(history::DIR);
            return Err(format!("cannot read {}: {e}", path.display()));
        }
    };
    let service = &cfg.alert.service_name;
    let out = match &request.format {
        ReportFormat::Text => text(&report, service),
        ReportFormat::Json => format!("{}\n", json(&report, service)),
        ReportFormat::Csv => csv(&report),
        ReportFormat::Html(path) => {
            let page = page(&report, service);
            if let Err(e) = crate::files::write_atomic(path, page.as_bytes(), false) {
                return Err(format!("cannot write {}: {e}", path.display()));
            }
            format!("wrote {}\n", path.display())
        }
    };
    // A closed pipe (`| head`) is no reason to panic.
    let _ = std::io::Write::write_all(&mut std::io::stdout(), out.as_bytes());
    Ok(())
}

#[cfg(test)]
mod tests;
