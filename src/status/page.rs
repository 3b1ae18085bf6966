//! `/` and `/status.json`, rendered from memory: the loop's [`State`] (what
//! `status --json` prints), a ring of the last checks and of the last
//! incidents ([`Recent`]). Pure: no I/O, no clock.
//!
//! Everything shown on the page is HTML-escaped ([`escape`]); the page has no
//! script and refreshes itself with a meta tag.
//!
//! The availability windows (24 h / 7 d / 30 d) and the hourly bars are the
//! report's accounting ([`report::availabilities`]) over the history the
//! Recorder keeps in memory; the 24-hour charts are drawn by the report's
//! chart code ([`chart`]) from those bars and the [`Hourly`] buckets.

use std::collections::VecDeque;
use std::fmt::Write as _;

use super::hourly::{Hourly, HOUR_MS};
use crate::history::Record;
use crate::policy::PhaseName;
use crate::report::{self, chart, Period};
use crate::state::{LastCheck, State};

/// How many checks and incidents are kept.
pub const RECENT_CHECKS: usize = 20;
pub const RECENT_INCIDENTS: usize = 10;

/// One restart or give-up, for the page.
#[derive(Clone, Debug, PartialEq)]
pub struct Incident {
    pub time: String,
    /// What happened: "restart", "planned restart", "gave up", …
    pub what: String,
    /// The cause as the log words it.
    pub detail: String,
}

/// The last checks and incidents, newest last; bounded.
#[derive(Clone, Debug, Default)]
pub struct Recent {
    pub checks: VecDeque<LastCheck>,
    pub incidents: VecDeque<Incident>,
}

impl Recent {
    pub fn push_check(&mut self, c: LastCheck) {
        if self.checks.len() == RECENT_CHECKS {
            self.checks.pop_front();
        }
        self.checks.push_back(c);
    }

    pub fn push_incident(&mut self, i: Incident) {
        if self.incidents.len() == RECENT_INCIDENTS {
            self.incidents.pop_front();
        }
        self.incidents.push_back(i);
    }
}

/// Availability in percent over the last 24 h, 7 d and 30 d (None: nothing
/// observed in the window).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Windows {
    pub h24: Option<f64>,
    pub d7: Option<f64>,
    pub d30: Option<f64>,
}

/// The windows' lengths in hours: 24 h, 7 d, 30 d.
const WINDOW_HOURS: [i64; 3] = [24, 168, 720];

/// The windows, then the availability of each of the last 24 UTC hours
/// (the current one last, cut at now), from `records` with the monitor
/// alive until `now_ms`.
pub fn figures(records: &[Record], now_ms: i64) -> (Windows, Vec<(i64, Option<f64>)>) {
    let this_hour = now_ms.div_euclid(HOUR_MS) * HOUR_MS;
    let hours: Vec<Period> = (0..24)
        .rev()
        .map(|k| {
            let from = this_hour - k * HOUR_MS;
            Period {
                from,
                to: (from + HOUR_MS).min(now_ms),
            }
        })
        .collect();
    let windows = WINDOW_HOURS.iter().map(|h| Period {
        from: now_ms - h * HOUR_MS,
        to: now_ms,
    });
    let periods: Vec<Period> = windows.chain(hours.iter().copied()).collect();
    let a = report::availabilities(records, &periods, Some(now_ms));
    let w = Windows {
        h24: a[0],
        d7: a[1],
        d30: a[2],
    };
    (
        w,
        hours
            .iter()
            .map(|p| p.from)
            .zip(a[3..].iter().copied())
            .collect(),
    )
}

/// The `availability` object of `/status.json`: `{"24h": .., "7d": ..,
/// "30d": ..}`, percent or null.
pub fn availability(w: &Windows) -> serde_json::Value {
    serde_json::json!({"24h": w.h24, "7d": w.d7, "30d": w.d30})
}

/// `/status.json`: the state as `status --json` prints it (with
/// `monitor_running`: true, since the monitor itself answers, and its
/// `availability_24h_percent` and `availability_7d_percent`), plus
/// `availability_30d_percent` and the `availability` object of the three.
pub fn status_json(state: &State, w: &Windows) -> String {
    let mut v = serde_json::to_value(state).unwrap_or_default();
    v["monitor_running"] = serde_json::Value::Bool(true);
    v["availability_24h_percent"] = serde_json::json!(w.h24);
    v["availability_7d_percent"] = serde_json::json!(w.d7);
    v["availability_30d_percent"] = serde_json::json!(w.d30);
    v["availability"] = availability(w);
    let mut s = v.to_string();
    s.push('\n');
    s
}

/// The page's 24-hour charts, drawn by the report's chart code:
/// availability per hour (bars), check latency p95 per hour and the
/// server's memory, the largest sample per hour (lines).
pub fn charts(hours: &[(i64, Option<f64>)], hourly: &Hourly, now_ms: i64) -> String {
    let period = Period {
        from: now_ms - 24 * HOUR_MS,
        to: now_ms,
    };
    let entries: Vec<(String, Option<f64>)> = (hours.iter())
        .map(|&(from, a)| {
            let h = from.div_euclid(HOUR_MS).rem_euclid(24);
            (format!("{h:02}:00"), a)
        })
        .collect();
    let mut o = chart::bars("Availability per hour (UTC), last 24 h", &entries);
    o.push_str(&chart::line(
        "Check latency, p95 per hour",
        "ms",
        period,
        &hourly.latency_p95(period.from),
    ));
    o.push_str(&chart::line(
        "Server memory, largest sample per hour",
        "MiB",
        period,
        &hourly.memory_mib(period.from),
    ));
    o
}

fn pct(a: Option<f64>) -> String {
    a.map_or("n/a (nothing observed)".into(), |a| format!("{a:.3}%"))
}

/// `/`: the status page, with the availability `w` and the `charts`
/// (see [`charts`]).
pub fn render_page(state: &State, recent: &Recent, w: &Windows, charts: &str) -> String {
    let mut o = String::with_capacity(8 * 1024);
    let name = escape(&state.service_name);
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta http-equiv=\"refresh\" content=\"10\">\
<meta name=\"viewport\" content=\"width=device-width\">\
<title>{name}: {phase}</title>\
<style>body{{font:14px sans-serif;margin:2em;max-width:60em}}table{{border-collapse:collapse}}\
td,th{{padding:2px 8px;text-align:left;border-bottom:1px solid #ddd}}\
.ok{{color:#060}}.bad{{color:#a00}}svg.chart{{display:block;margin:1em 0}}</style></head><body>\n",
        phase = escape(state.phase.as_str())
    );
    let healthy = state.phase == PhaseName::Running && state.consecutive_failures == 0;
    let _ = writeln!(
        o,
        "<h1>{name}</h1>\n<p>State: <b class=\"{}\">{}</b></p>",
        if healthy { "ok" } else { "bad" },
        escape(state.phase.as_str())
    );
    o.push_str("<table>\n");
    let row = |o: &mut String, k: &str, v: &str| {
        let _ = writeln!(o, "<tr><th>{k}</th><td>{}</td></tr>", escape(v));
    };
    row(&mut o, "Health URL", &state.health_url);
    row(
        &mut o,
        "Server pid",
        &state
            .server_pid
            .map(|p| p.to_string())
            .unwrap_or_else(|| "none".into()),
    );
    row(
        &mut o,
        "Consecutive failures",
        &state.consecutive_failures.to_string(),
    );
    row(
        &mut o,
        "Restart attempts",
        &format!(
            "{} of {}",
            state.restart_attempts, state.max_restart_attempts
        ),
    );
    row(&mut o, "Restarts in all", &state.restarts_total.to_string());
    row(
        &mut o,
        "Last error",
        state.last_error.as_deref().unwrap_or("none"),
    );
    row(
        &mut o,
        "Last restart",
        state.last_restart.as_deref().unwrap_or("none"),
    );
    row(&mut o, "Monitor started", &state.started);
    o.push_str("</table>\n");
    o.push_str("<h2>Availability</h2>\n<table>\n");
    row(&mut o, "Last 24 hours", &pct(w.h24));
    row(&mut o, "Last 7 days", &pct(w.d7));
    row(&mut o, "Last 30 days", &pct(w.d30));
    o.push_str("</table>\n<h2>Last 24 hours</h2>\n<div class=\"charts\">");
    o.push_str(charts);
    o.push_str("</div>\n");
    o.push_str("<h2>Last checks</h2>\n<table><tr><th>Time</th><th>Result</th><th>Latency</th><th>Reason</th></tr>\n");
    for c in recent.checks.iter().rev() {
        let _ = writeln!(
            o,
            "<tr><td>{}</td><td class=\"{}\">{}</td><td>{:.1} ms</td><td>{}</td></tr>",
            escape(&c.time),
            if c.healthy { "ok" } else { "bad" },
            if c.healthy { "healthy" } else { "failed" },
            c.latency_ms,
            escape(c.reason.as_deref().unwrap_or(""))
        );
    }
    o.push_str("</table>\n<h2>Last incidents</h2>\n");
    if recent.incidents.is_empty() {
        o.push_str("<p>None since the monitor started.</p>\n");
    } else {
        o.push_str("<table><tr><th>Time</th><th>What</th><th>Cause</th></tr>\n");
        for i in recent.incidents.iter().rev() {
            let _ = writeln!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&i.time),
                escape(&i.what),
                escape(&i.detail)
            );
        }
        o.push_str("</table>\n");
    }
    o.push_str("</body></html>\n");
    o
}

/// Escapes text for HTML element content and quoted attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(i: usize) -> LastCheck {
        LastCheck {
            time: format!("t{i}"),
            healthy: i.is_multiple_of(2),
            latency_ms: 1.5,
            reason: (!i.is_multiple_of(2)).then(|| "<script>alert(1)</script>".into()),
        }
    }

    #[test]
    fn rings_keep_the_last_only() {
        let mut r = Recent::default();
        for i in 0..50 {
            r.push_check(check(i));
            r.push_incident(Incident {
                time: format!("t{i}"),
                what: "restart".into(),
                detail: String::new(),
            });
        }
        assert_eq!(r.checks.len(), RECENT_CHECKS);
        assert_eq!(r.checks.front().unwrap().time, "t30");
        assert_eq!(r.incidents.len(), RECENT_INCIDENTS);
        assert_eq!(r.incidents.back().unwrap().time, "t49");
    }

    #[test]
    fn page_escapes_everything_and_has_no_script() {
        let state = State {
            service_name: "a<b>&\"c\"".into(),
            phase: PhaseName::Running,
            health_url: "http://x/?a=<i>".into(),
            last_error: Some("'quoted' <b>".into()),
            ..State::default()
        };
        let mut r = Recent::default();
        r.push_check(check(1));
        r.push_incident(Incident {
            time: "now".into(),
            what: "restart".into(),
            detail: "<img src=x onerror=y>".into(),
        });
        let page = render_page(&state, &r, &Windows::default(), "");
        assert!(page.contains("<meta http-equiv=\"refresh\" content=\"10\">"));
        assert!(!page.to_lowercase().contains("<script"));
        assert!(!page.contains("<img"));
        assert!(!page.contains("<i>"));
        assert!(page.contains("a&lt;b&gt;&amp;&quot;c&quot;"));
        assert!(page.contains("&#39;quoted&#39; &lt;b&gt;"));
        assert!(page.contains("&lt;script&gt;"));
    }

    #[test]
    fn status_json_is_the_state_plus_running_and_availability() {
        let state = State {
            phase: PhaseName::Running,
            restarts_total: 2,
            ..State::default()
        };
        let w = Windows {
            h24: Some(99.5),
            d7: None,
            d30: Some(100.0),
        };
        let v: serde_json::Value = serde_json::from_str(&status_json(&state, &w)).unwrap();
        assert_eq!(v["phase"], "running");
        assert_eq!(v["restarts_total"], 2);
        assert_eq!(v["monitor_running"], true);
        // The names of `status --json`, plus 30 d, and the object of three.
        assert_eq!(v["availability_24h_percent"], 99.5);
        assert!(v["availability_7d_percent"].is_null());
        assert_eq!(v["availability_30d_percent"], 100.0);
        assert_eq!(
            v["availability"],
            serde_json::json!({"24h": 99.5, "7d": null, "30d": 100.0})
        );
    }

    fn healthy_from(t: i64) -> Vec<Record> {
        use crate::history::{Change, Status};
        vec![
            Record::Start {
                t,
                pid: 1,
                prev: None,
            },
            Record::State {
                t,
                change: Change::to(Status::Healthy),
            },
        ]
    }

    #[test]
    fn figures_are_the_windows_and_24_hourly_bars_from_memory() {
        use crate::history::{Change, Status};
        const H: i64 = HOUR_MS;
        let now = 20_758 * 24 * H + 30 * 60_000; // 00:30 UTC
                                                 // Healthy from 48 h ago; down for the 6 minutes from 3 h ago.
        let mut rec = healthy_from(now - 48 * H);
        rec.push(Record::State {
            t: now - 3 * H,
            change: Change::to(Status::Failing).because("timed out"),
        });
        rec.push(Record::State {
            t: now - 3 * H + 360_000,
            change: Change::to(Status::Healthy),
        });
        let (w, hours) = figures(&rec, now);
        let day = 100.0 * (1.0 - 360_000.0 / (24 * H) as f64);
        assert!((w.h24.unwrap() - day).abs() < 1e-9, "{w:?}");
        assert!(w.d7.unwrap() > day && w.d7 == w.d30, "{w:?}");
        assert_eq!(hours.len(), 24);
        assert_eq!(hours[23].0, now - 30 * 60_000, "the current hour last");
        let down_hour = hours.iter().find(|h| h.1 != Some(100.0)).unwrap();
        assert_eq!(down_hour.0, now - 30 * 60_000 - 3 * H);
        assert!((down_hour.1.unwrap() - 90.0).abs() < 1e-9);
        // Nothing observed at all: no figure, and bars of nothing.
        let (w, hours) = figures(&[], now);
        assert_eq!(w, Windows::default());
        assert!(hours.iter().all(|h| h.1.is_none()));
    }

    #[test]
    fn the_page_shows_the_windows_and_the_charts_with_their_data() {
        let now = 20_758 * 24 * HOUR_MS + 30 * 60_000;
        let (w, hours) = figures(&healthy_from(now - 2 * HOUR_MS), now);
        let mut hourly = Hourly::default();
        hourly.latency(now - HOUR_MS, 4.0);
        hourly.latency(now, 6.0);
        hourly.memory(now, 200 << 20);
        let charts = charts(&hours, &hourly, now);
        assert_eq!(charts.matches("<svg").count(), 3);
        assert_eq!(charts.matches("class=\"bar\"").count(), 24);
        assert_eq!(charts.matches("<circle").count(), 3, "2 latency, 1 memory");
        let page = render_page(&State::default(), &Recent::default(), &w, &charts);
        assert!(page.contains("<td>100.000%</td>"), "{page}");
        assert!(page.contains("Availability per hour"));
        assert!(!page.contains("TODO"));
    }
}
