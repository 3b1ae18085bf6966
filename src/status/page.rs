//! `/` and `/status.json`, rendered from memory: the loop's [`State`] (what
//! `status --json` prints), a ring of the last checks and of the last
//! incidents ([`Recent`]). Pure: no I/O, no clock.
//!
//! Everything shown on the page is HTML-escaped ([`escape`]); the page has no
//! script and refreshes itself with a meta tag.
//!
//! TODO(history): the availability windows (24 h / 7 d / 30 d) and the
//! 24-hour charts come from the history module (src/history/, src/report/)
//! once it lands: [`availability`] returns null until then, and the page
//! leaves the marked place for the charts empty.

use std::collections::VecDeque;
use std::fmt::Write as _;

use crate::policy::PhaseName;
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

/// TODO(history): the availability object of `/status.json` and the page,
/// `{"24h": .., "7d": .., "30d": ..}` from the history module; null until
/// that code lands.
pub fn availability() -> serde_json::Value {
    serde_json::Value::Null
}

/// `/status.json`: the state as `status --json` prints it (with
/// `monitor_running`: true, since the monitor itself answers), plus
/// `availability`.
pub fn status_json(state: &State) -> String {
    let mut v = serde_json::to_value(state).unwrap_or_default();
    v["monitor_running"] = serde_json::Value::Bool(true);
    v["availability"] = availability();
    let mut s = v.to_string();
    s.push('\n');
    s
}

/// `/`: the status page.
pub fn render_page(state: &State, recent: &Recent) -> String {
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
.ok{{color:#060}}.bad{{color:#a00}}</style></head><body>\n",
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
    // TODO(history): availability over 24 h / 7 d / 30 d and the 24-hour
    // charts (the SVG code of `report --html`) go here.
    o.push_str("<!-- charts: history -->\n");
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
        let page = render_page(&state, &r);
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
        let v: serde_json::Value = serde_json::from_str(&status_json(&state)).unwrap();
        assert_eq!(v["phase"], "running");
        assert_eq!(v["restarts_total"], 2);
        assert_eq!(v["monitor_running"], true);
        assert!(v.get("availability").is_some_and(|a| a.is_null()));
    }
}
