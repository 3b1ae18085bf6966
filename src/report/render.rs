//! The report as aligned text, JSON (schema in the README) and CSV.

use std::fmt::Write;

use serde_json::{json, Value};

use super::{Day, Report};
use crate::history::{day_name, Stat};

/// `2026-12-01 08:28:39Z`
pub fn time(ms: i64) -> String {
    let day = ms.div_euclid(86_400_000);
    let s = ms.rem_euclid(86_400_000) / 1000;
    format!(
        "{} {:02}:{:02}:{:02}Z",
        day_name(day),
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

fn iso(ms: i64) -> String {
    let day = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    let s = rem / 1000;
    format!(
        "{}T{:02}:{:02}:{:02}.{:03}Z",
        day_name(day),
        s / 3600,
        s % 3600 / 60,
        s % 60,
        rem % 1000
    )
}

/// `1h 02m 03s`, `4m 05s`, `6.2s`.
pub fn duration(ms: i64) -> String {
    let s = ms / 1000;
    match s {
        _ if s >= 86_400 => format!(
            "{}d {:02}h {:02}m",
            s / 86_400,
            s % 86_400 / 3600,
            s % 3600 / 60
        ),
        _ if s >= 3600 => format!("{}h {:02}m {:02}s", s / 3600, s % 3600 / 60, s % 60),
        _ if s >= 60 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{:.1}s", ms as f64 / 1000.0),
    }
}

fn pct(p: Option<f64>) -> String {
    p.map_or("n/a".into(), |p| format!("{p:.3}%"))
}

fn secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// Aligned text for a terminal.
pub fn text(r: &Report, service: &str) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{service}: {} to {}",
        time(r.period.from),
        time(r.period.to)
    );
    let rows = [
        ("availability", pct(r.availability())),
        ("coverage", pct(r.coverage())),
        ("downtime", duration(r.down)),
        ("not observed", duration(r.not_observed())),
        ("paused", duration(r.paused)),
        ("incidents", r.incidents.len().to_string()),
        ("restarts", r.restarts_total().to_string()),
        (
            "mean time to recovery",
            r.mttr().map_or("n/a".into(), duration),
        ),
        (
            "longest outage",
            r.longest().map_or("n/a".into(), |i| {
                format!("{} from {}", duration(i.downtime), time(i.start))
            }),
        ),
    ];
    for (k, v) in rows {
        let _ = writeln!(o, "  {k:<22} {v}");
    }
    if !r.restarts.is_empty() {
        let _ = writeln!(o, "\nrestarts by cause");
        for (cause, n) in &r.restarts {
            let _ = writeln!(o, "  {n:>5}  {}", one_line(cause));
        }
    }
    if !r.incidents.is_empty() {
        let _ = writeln!(
            o,
            "\n{:<21} {:<21} {:>12} {:>8}  cause",
            "incident start", "end", "downtime", "restarts"
        );
        for i in &r.incidents {
            let end = if i.ongoing {
                "ongoing".to_string()
            } else {
                time(i.end)
            };
            let _ = writeln!(
                o,
                "{:<21} {:<21} {:>12} {:>8}  {}",
                time(i.start),
                end,
                duration(i.downtime),
                i.restarts,
                one_line(&i.cause)
            );
        }
    }
    if !r.pauses.is_empty() {
        let _ = writeln!(o, "\npaused");
        for p in &r.pauses {
            let _ = writeln!(
                o,
                "  {}  {:>12}  {}",
                time(p.start),
                duration(p.end - p.start),
                one_line(&p.by)
            );
        }
    }
    let _ = writeln!(
        o,
        "\n{:<10} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6} {:>6} {:>7}",
        "day", "avail", "checks", "failed", "p50 ms", "p95 ms", "max ms", "mem %", "cpu %", "db ms"
    );
    for d in &r.days {
        let c = d.checks.as_ref();
        let num =
            |v: Option<f64>, w: usize| v.map_or(format!("{:>w$}", "-"), |x| format!("{x:>w$.1}"));
        let lat = c.map(|c| &c.latency);
        let _ = writeln!(
            o,
            "{:<10} {:>9} {:>8} {:>8} {} {} {} {} {} {}",
            day_name(d.day),
            d.availability().map_or("-".into(), |a| format!("{a:.2}%")),
            c.map_or("-".into(), |c| c.checks.to_string()),
            c.map_or("-".into(), |c| c.failures.to_string()),
            num(lat.and_then(|h| h.quantile(0.5)), 8),
            num(lat.and_then(|h| h.quantile(0.95)), 8),
            num(lat.filter(|h| h.total() > 0).map(|h| h.max_ms), 8),
            num(c.and_then(|c| c.memory.mean()), 6),
            num(c.and_then(|c| c.cpu.mean()), 6),
            num(c.and_then(|c| c.db.mean()), 7),
        );
    }
    o
}

/// Text from the server on one line (a cause may hold anything).
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn stat(s: &Stat) -> Value {
    match s.mean() {
        Some(mean) => json!({"mean": mean, "max": s.max}),
        None => Value::Null,
    }
}

fn day_json(d: &Day) -> Value {
    let c = d.checks.as_ref();
    let lat = c.filter(|c| c.latency.total() > 0).map(|c| &c.latency);
    json!({
        "date": day_name(d.day),
        "availability_percent": d.availability(),
        "up_s": secs(d.up),
        "downtime_s": secs(d.down),
        "paused_s": secs(d.paused),
        "not_observed_s": secs(d.not_observed),
        "checks": c.map_or(0, |c| c.checks),
        "failures": c.map_or(0, |c| c.failures),
        "latency_ms": lat.map_or(Value::Null, |h| json!({
            "p50": h.quantile(0.5), "p95": h.quantile(0.95), "max": h.max_ms})),
        "memory_percent": c.map_or(Value::Null, |c| stat(&c.memory)),
        "cpu_percent": c.map_or(Value::Null, |c| stat(&c.cpu)),
        "db_ms": c.map_or(Value::Null, |c| stat(&c.db)),
    })
}

/// The JSON document (schema: README "History and report").
pub fn json(r: &Report, service: &str) -> Value {
    let incidents: Vec<Value> = r
        .incidents
        .iter()
        .map(|i| {
            json!({"start": iso(i.start), "end": iso(i.end), "duration_s": secs(i.downtime),
                "not_observed_s": secs(i.not_observed), "cause": i.cause,
                "restarts": i.restarts, "ongoing": i.ongoing})
        })
        .collect();
    let pauses: Vec<Value> = r
        .pauses
        .iter()
        .map(|p| json!({"start": iso(p.start), "end": iso(p.end), "duration_s": secs(p.end - p.start), "by": p.by}))
        .collect();
    json!({
        "service": service,
        "from": iso(r.period.from),
        "to": iso(r.period.to),
        "period_s": secs(r.period.len()),
        "availability_percent": r.availability(),
        "coverage_percent": r.coverage(),
        "up_s": secs(r.up),
        "downtime_s": secs(r.down),
        "paused_s": secs(r.paused),
        "not_observed_s": secs(r.not_observed()),
        "incident_count": r.incidents.len(),
        "incidents": incidents,
        "restarts": {"total": r.restarts_total(), "by_cause": r.restarts},
        "mttr_s": r.mttr().map(secs),
        "longest_outage_s": r.longest().map(|i| secs(i.downtime)),
        "pauses": pauses,
        "days": r.days.iter().map(day_json).collect::<Vec<_>>(),
    })
}

/// One incident per row, with a header (RFC 4180 quoting).
pub fn csv(r: &Report) -> String {
    let mut o = String::from("start,end,duration_s,not_observed_s,restarts,ongoing,cause\n");
    for i in &r.incidents {
        let _ = writeln!(
            o,
            "{},{},{:.3},{:.3},{},{},{}",
            iso(i.start),
            iso(i.end),
            secs(i.downtime),
            secs(i.not_observed),
            i.restarts,
            i.ongoing,
            quote(&i.cause)
        );
    }
    o
}

fn quote(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
