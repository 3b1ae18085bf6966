//! Small inline-SVG charts of our own (no charting crate, no script): bars
//! coloured by availability, and a line over time, each with labelled axes.
//! Every SVG has a `viewBox` and `width="100%"`, so that it scales to its
//! container and never overflows a page. Every text that may come from the
//! server goes through [`escape`].
//!
//! Reusable: the status page draws its 24-hour charts with [`bars`],
//! [`line`] or [`charts_for`] over a [`Period`] of its own.

use std::fmt::Write;

use super::{Period, Report};
use crate::history::day_name;

const W: f64 = 1000.0;
const H: f64 = 220.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 45.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 30.0;

/// Escapes text for HTML and SVG (element content and quoted attributes).
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

/// The colour of an availability percentage (`None`: not observed).
pub fn colour(a: Option<f64>) -> &'static str {
    match a {
        None => "#c8c8c8",
        Some(a) if a >= 99.9 => "#2e9e44",
        Some(a) if a >= 99.0 => "#9acd32",
        Some(a) if a >= 95.0 => "#f0a020",
        Some(_) => "#d03030",
    }
}

fn open(o: &mut String, title: &str) {
    let _ = write!(
        o,
        "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {H}\" width=\"100%\" role=\"img\" aria-label=\"{t}\">\
         <text x=\"{LEFT}\" y=\"18\" font-size=\"15\" font-weight=\"bold\">{t}</text>",
        t = escape(title)
    );
}

fn axes(o: &mut String, y_labels: &[(f64, String)], x_labels: &[(f64, String)]) {
    let (x0, x1, y0, y1) = (LEFT, W - RIGHT, TOP, H - BOTTOM);
    let _ = write!(
        o,
        "<path class=\"axis\" d=\"M{x0} {y0}V{y1}H{x1}\" stroke=\"#555\" fill=\"none\"/>"
    );
    for (y, label) in y_labels {
        let _ = write!(
            o,
            "<text x=\"{}\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"end\">{}</text>\
             <path d=\"M{x0} {y:.1}H{x1}\" stroke=\"#ddd\"/>",
            x0 - 6.0,
            y + 4.0,
            escape(label)
        );
    }
    for (x, label) in x_labels {
        let _ = write!(
            o,
            "<text x=\"{x:.1}\" y=\"{}\" font-size=\"12\" text-anchor=\"middle\">{}</text>",
            H - 10.0,
            escape(label)
        );
    }
}

/// One bar per entry (a label and an availability %), coloured by it; an
/// entry with no observed time is a short grey bar.
pub fn bars(title: &str, entries: &[(String, Option<f64>)]) -> String {
    let mut o = String::new();
    open(&mut o, title);
    let (x0, x1, y0, y1) = (LEFT, W - RIGHT, TOP, H - BOTTOM);
    // The scale starts at 90 %: below that a bar is full red anyway.
    let floor = 90.0;
    let y_of = |a: f64| y1 - ((a - floor).max(0.0) / (100.0 - floor)) * (y1 - y0);
    axes(
        &mut o,
        &[
            (y_of(100.0), "100%".into()),
            (y_of(95.0), "95%".into()),
            (y1, "≤90%".into()),
        ],
        &x_ticks(entries.len(), |i| entries[i].0.clone(), x0, x1),
    );
    let n = entries.len().max(1) as f64;
    let slot = (x1 - x0) / n;
    for (i, (label, a)) in entries.iter().enumerate() {
        let top = a.map_or(y1 - 4.0, |a| y_of(a).min(y1 - 2.0));
        let _ = write!(
            o,
            "<rect class=\"bar\" x=\"{:.2}\" y=\"{top:.2}\" width=\"{:.2}\" height=\"{:.2}\" fill=\"{}\"><title>{}: {}</title></rect>",
            x0 + slot * i as f64 + slot * 0.1,
            (slot * 0.8).max(0.5),
            y1 - top,
            colour(*a),
            escape(label),
            a.map_or("not observed".into(), |a| format!("{a:.3}%"))
        );
    }
    o.push_str("</svg>");
    o
}

/// About six labels along an axis of `n` slots.
fn x_ticks(n: usize, label: impl Fn(usize) -> String, x0: f64, x1: f64) -> Vec<(f64, String)> {
    if n == 0 {
        return Vec::new();
    }
    let step = n.div_ceil(6).max(1);
    let slot = (x1 - x0) / n as f64;
    (0..n)
        .step_by(step)
        .map(|i| (x0 + slot * (i as f64 + 0.5), label(i)))
        .collect()
}

/// A line of `(time ms, value)` points over `period`, y from 0 to the max.
pub fn line(title: &str, unit: &str, period: Period, points: &[(i64, f64)]) -> String {
    let mut o = String::new();
    open(&mut o, title);
    let (x0, x1, y0, y1) = (LEFT, W - RIGHT, TOP, H - BOTTOM);
    let max = points.iter().map(|p| p.1).fold(0.0f64, f64::max);
    let top = nice(max);
    let span = period.len().max(1) as f64;
    let x_of = |t: i64| x0 + ((t - period.from) as f64 / span).clamp(0.0, 1.0) * (x1 - x0);
    let y_of = |v: f64| y1 - (v / top).clamp(0.0, 1.0) * (y1 - y0);
    // Two days or less (the status page's 24 hours): times, not dates.
    let short = period.len() <= 2 * 86_400_000;
    let x_labels: Vec<(f64, String)> = (0..=4)
        .map(|k| {
            let t = period.from + (period.len() * k / 4);
            let label = if short {
                let minute = t.div_euclid(60_000);
                format!(
                    "{:02}:{:02}",
                    minute.div_euclid(60).rem_euclid(24),
                    minute.rem_euclid(60)
                )
            } else {
                day_name(t.div_euclid(86_400_000))
            };
            (x0 + (x1 - x0) * k as f64 / 4.0, label)
        })
        .collect();
    axes(
        &mut o,
        &[
            (y_of(top), format!("{} {unit}", fmt_num(top))),
            (y_of(top / 2.0), fmt_num(top / 2.0)),
            (y1, "0".into()),
        ],
        &x_labels,
    );
    if points.is_empty() {
        let _ = write!(
            o,
            "<text x=\"{}\" y=\"{}\" font-size=\"14\" text-anchor=\"middle\" fill=\"#777\">no data</text>",
            (x0 + x1) / 2.0,
            (y0 + y1) / 2.0
        );
    } else {
        o.push_str("<polyline class=\"series\" fill=\"none\" stroke=\"#2060c0\" stroke-width=\"2\" points=\"");
        for (t, v) in points {
            let _ = write!(o, "{:.1},{:.1} ", x_of(*t), y_of(*v));
        }
        o.push_str("\"/>");
        for (t, v) in points {
            let _ = write!(
                o,
                "<circle class=\"point\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"#2060c0\"/>",
                x_of(*t),
                y_of(*v)
            );
        }
    }
    o.push_str("</svg>");
    o
}

/// 1, 2 or 5 times a power of ten, at least `x` (and at least 1).
fn nice(x: f64) -> f64 {
    if x.is_nan() || x <= 1.0 {
        return 1.0;
    }
    let p = 10f64.powf(x.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|&v| v >= x)
        .unwrap_or(10.0 * p)
}

fn fmt_num(x: f64) -> String {
    if x >= 10.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

/// The report's three charts: availability per day, latency (p95 per day)
/// and memory (mean % per day) over the period.
pub fn charts_for(period: Period, report: &Report) -> String {
    let noon = |day: i64| day * 86_400_000 + 43_200_000;
    let entries: Vec<(String, Option<f64>)> = report
        .days
        .iter()
        .map(|d| (day_name(d.day), d.availability()))
        .collect();
    let latency: Vec<(i64, f64)> = report
        .days
        .iter()
        .filter_map(|d| Some((noon(d.day), d.checks.as_ref()?.latency.quantile(0.95)?)))
        .collect();
    let memory: Vec<(i64, f64)> = report
        .days
        .iter()
        .filter_map(|d| Some((noon(d.day), d.checks.as_ref()?.memory.mean()?)))
        .collect();
    let mut o = bars("Availability per day", &entries);
    o.push_str(&line("Check latency, p95 per day", "ms", period, &latency));
    o.push_str(&line("Memory used, mean per day", "%", period, &memory));
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_text_is_escaped_in_svg() {
        let svg = bars("t", &[("<script>&\"".into(), Some(50.0))]);
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("&lt;script&gt;&amp;&quot;"));
    }

    #[test]
    fn a_line_has_one_point_per_value_and_scales_to_its_max() {
        let p = Period { from: 0, to: 1000 };
        let svg = line("x", "ms", p, &[(0, 1.0), (500, 40.0), (1000, 3.0)]);
        assert_eq!(svg.matches("<circle").count(), 3);
        assert!(svg.contains(">50 ms<"), "{svg}");
        assert!(line("x", "ms", p, &[]).contains("no data"));
        // A day or two: the axis shows UTC times; longer: dates.
        let day = Period {
            from: 20_758 * 86_400_000 + 6 * 3_600_000,
            to: 20_759 * 86_400_000 + 6 * 3_600_000,
        };
        let svg = line("x", "ms", day, &[]);
        assert!(svg.contains(">06:00<") && svg.contains(">12:00<"), "{svg}");
        let month = Period {
            from: 20_758 * 86_400_000,
            to: 20_788 * 86_400_000,
        };
        assert!(line("x", "ms", month, &[]).contains(">2026-11-01<"));
        assert_eq!(nice(0.3), 1.0);
        assert_eq!(nice(120.0), 200.0);
    }
}
