//! `report --html FILE`: one self-contained page (no script, no outside
//! file): the figures, the charts of [`super::chart`], the incident table and
//! the per-day table. Everything from the server is escaped.

use std::fmt::Write;

use super::chart::{charts_for, escape};
use super::render::{duration, time};
use super::Report;
use crate::history::day_name;

const STYLE: &str = "body{font-family:sans-serif;margin:0 auto;padding:16px;max-width:1100px;\
box-sizing:border-box;color:#222;background:#fff}\
table{border-collapse:collapse;width:100%;table-layout:fixed;font-size:13px;margin:8px 0 20px}\
td,th{border:1px solid #ccc;padding:3px 6px;text-align:left;overflow-wrap:anywhere}\
svg.chart{display:block;margin:8px 0 16px;max-width:100%}\
dl{display:grid;grid-template-columns:max-content auto;gap:2px 16px}dt{font-weight:bold}dd{margin:0}";

/// The whole page.
pub fn page(r: &Report, service: &str) -> String {
    let mut o = String::new();
    let title = format!("{service}: availability report");
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{}</title>\
         <style>{STYLE}</style></head><body><h1>{}</h1><p>{} to {}</p><dl>",
        escape(&title),
        escape(&title),
        time(r.period.from),
        time(r.period.to)
    );
    let pct = |p: Option<f64>| p.map_or("n/a".to_string(), |p| format!("{p:.3}%"));
    let figures = [
        ("Availability", pct(r.availability())),
        ("Coverage", pct(r.coverage())),
        ("Downtime", duration(r.down)),
        ("Not observed", duration(r.not_observed())),
        ("Paused", duration(r.paused)),
        ("Incidents", r.incidents.len().to_string()),
        ("Restarts", r.restarts_total().to_string()),
        (
            "Mean time to recovery",
            r.mttr().map_or("n/a".into(), duration),
        ),
        (
            "Longest outage",
            r.longest().map_or("n/a".into(), |i| duration(i.downtime)),
        ),
    ];
    for (k, v) in figures {
        let _ = write!(o, "<dt>{k}</dt><dd>{}</dd>", escape(&v));
    }
    o.push_str("</dl>");
    o.push_str(&charts_for(r.period, r));
    o.push_str("<h2>Incidents</h2><table><thead><tr><th>Start</th><th>End</th><th>Downtime</th><th>Restarts</th><th>Cause</th></tr></thead><tbody>");
    for i in &r.incidents {
        let end = if i.ongoing {
            "ongoing".into()
        } else {
            time(i.end)
        };
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            time(i.start),
            end,
            duration(i.downtime),
            i.restarts,
            escape(&i.cause)
        );
    }
    if r.incidents.is_empty() {
        o.push_str("<tr><td colspan=\"5\">none</td></tr>");
    }
    o.push_str("</tbody></table>");
    if !r.restarts.is_empty() {
        o.push_str("<h2>Restarts by cause</h2><table><tbody>");
        for (cause, n) in &r.restarts {
            let _ = write!(o, "<tr><td>{n}</td><td>{}</td></tr>", escape(cause));
        }
        o.push_str("</tbody></table>");
    }
    if !r.pauses.is_empty() {
        o.push_str("<h2>Paused</h2><table><tbody>");
        for p in &r.pauses {
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                time(p.start),
                duration(p.end - p.start),
                escape(&p.by)
            );
        }
        o.push_str("</tbody></table>");
    }
    o.push_str("<h2>Per day</h2><table><thead><tr><th>Day</th><th>Availability</th><th>Checks</th><th>Failed</th><th>p50 ms</th><th>p95 ms</th><th>Max ms</th><th>Memory %</th><th>CPU %</th><th>DB ms</th></tr></thead><tbody>");
    for d in &r.days {
        let c = d.checks.as_ref();
        let f = |v: Option<f64>| v.map_or("-".into(), |x| format!("{x:.1}"));
        let lat = c.map(|c| &c.latency).filter(|h| h.total() > 0);
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            day_name(d.day),
            pct(d.availability()),
            c.map_or(0, |c| c.checks),
            c.map_or(0, |c| c.failures),
            f(lat.and_then(|h| h.quantile(0.5))),
            f(lat.and_then(|h| h.quantile(0.95))),
            f(lat.map(|h| h.max_ms)),
            f(c.and_then(|c| c.memory.mean())),
            f(c.and_then(|c| c.cpu.mean())),
            f(c.and_then(|c| c.db.mean())),
        );
    }
    o.push_str("</tbody></table></body></html>\n");
    o
}
