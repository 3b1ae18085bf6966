//! `/metrics`: the monitor's figures as plain numbers ([`Metrics`]), and
//! their rendering in the Prometheus text format 0.0.4 ([`render`]).
//!
//! Rules (SPEC "Status endpoints", issue 13): names start `server_monitor_`,
//! base units (seconds, bytes), counters end `_total`, every labelled series
//! is there from the start at 0, and label values come from closed sets only
//! ([`STATES`], [`CAUSES`], [`CHANNELS`], [`RESULTS`]): never a pid, a URL or
//! a reason's text. The loop records into a [`Metrics`] with one call where a
//! check, a restart or an alert happens; nothing here does I/O or reads a
//! clock.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::policy::PhaseName;

/// The states of `server_monitor_state{state}`: the policy's phases as an
/// operator reads them (see [`State::of_phase`]).
pub const STATES: [&str; 7] = [
    "healthy",
    "failing",
    "restarting",
    "given_up",
    "paused",
    "starting",
    "stopped",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Healthy,
    Failing,
    Restarting,
    GivenUp,
    Paused,
    Starting,
    Stopped,
}

impl State {
    /// The state for the policy's phase (`Snapshot::phase`), its failure
    /// count, and whether the server was ever restarted (a start being
    /// verified after a restart is `restarting`, the first `starting`).
    /// NOTE: exhaustive on purpose: a new phase must be given its state
    /// here. A pause is not a phase but the escalation's: [`State::paused`].
    pub fn of_phase(phase: PhaseName, failures: u32, restarted: bool) -> State {
        match phase {
            PhaseName::Running if failures == 0 => State::Healthy,
            PhaseName::Running => State::Failing,
            PhaseName::RestartPending => State::Restarting,
            p if p.is_starting() && restarted => State::Restarting,
            PhaseName::Idle | PhaseName::Starting | PhaseName::Verifying => State::Starting,
            PhaseName::GivenUp => State::GivenUp,
            PhaseName::Stopped => State::Stopped,
        }
    }

    /// `paused` while restarts are paused (the escalation's pause), over
    /// whatever the phase is, but for a stopped monitor.
    pub fn paused(self, paused: bool) -> State {
        if paused && self != State::Stopped {
            State::Paused
        } else {
            self
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The causes of `server_monitor_restarts_total{cause}`.
pub const CAUSES: [&str; 5] = ["exit", "health", "memory", "planned", "retry"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    Exit,
    Health,
    Memory,
    Planned,
    Retry,
}

impl Cause {
    /// The cause of an automatic restart, from the policy's
    /// [`Trigger`](crate::policy::Trigger) (data, not the cause's wording).
    pub fn of_trigger(trigger: crate::policy::Trigger) -> Cause {
        use crate::policy::Trigger;
        match trigger {
            Trigger::Exit => Cause::Exit,
            Trigger::Health => Cause::Health,
            Trigger::Memory => Cause::Memory,
        }
    }
}

/// Alert channels and results of `server_monitor_alerts_total`.
pub const CHANNELS: [&str; 3] = ["email", "webhook", "file"];
pub const RESULTS: [&str; 3] = ["sent", "failed", "suppressed"];

/// Upper bounds of the check-duration histogram, in seconds; those above
/// HEALTH_TIMEOUT are left out and HEALTH_TIMEOUT itself added.
const BUCKETS: [f64; 11] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Everything `/metrics` shows, as plain numbers.
#[derive(Clone, Debug)]
pub struct Metrics {
    pub version: &'static str,
    /// Unix seconds at which this monitor started.
    pub start_time: f64,
    state: State,
    state_since: Instant,
    /// Seconds spent in each of [`STATES`], up to `state_since`.
    state_seconds: [f64; 7],
    pub checks_healthy: u64,
    pub checks_failed: u64,
    bounds: Vec<f64>,
    /// Cumulative counts per bound (not yet summed: one per bucket).
    bucket_counts: Vec<u64>,
    duration_sum: f64,
    pub consecutive_failures: u32,
    pub restart_attempts: u32,
    pub max_restart_attempts: u32,
    restarts: [u64; 5],
    /// `[channel][result]`, in the order of [`CHANNELS`] and [`RESULTS`].
    alerts: [[u64; 3]; 3],
    pub outbox_entries: usize,
    pub last_check_time: Option<f64>,
    pub last_restart_time: Option<f64>,
    pub server_memory_bytes: Option<u64>,
    pub server_cpu_seconds: Option<f64>,
}

impl Metrics {
    pub fn new(
        health_timeout: Duration,
        max_restart_attempts: u32,
        start_time: f64,
        now: Instant,
    ) -> Metrics {
        let timeout = health_timeout.as_secs_f64();
        let mut bounds: Vec<f64> = BUCKETS.iter().copied().filter(|b| *b < timeout).collect();
        if timeout > 0.0 {
            bounds.push(timeout);
        }
        Metrics {
            version: env!("CARGO_PKG_VERSION"),
            start_time,
            state: State::Starting,
            state_since: now,
            state_seconds: [0.0; 7],
            checks_healthy: 0,
            checks_failed: 0,
            bucket_counts: vec![0; bounds.len()],
            bounds,
            duration_sum: 0.0,
            consecutive_failures: 0,
            restart_attempts: 0,
            max_restart_attempts,
            restarts: [0; 5],
            alerts: [[0; 3]; 3],
            outbox_entries: 0,
            last_check_time: None,
            last_restart_time: None,
            server_memory_bytes: None,
            server_cpu_seconds: None,
        }
    }

    /// The state from `now` on; the time until now goes to the old one.
    pub fn set_state(&mut self, state: State, now: Instant) {
        self.advance(now);
        self.state = state;
    }

    /// Counts the time up to `now` in the current state.
    pub fn advance(&mut self, now: Instant) {
        let spent = now.saturating_duration_since(self.state_since);
        self.state_seconds[self.state.index()] += spent.as_secs_f64();
        self.state_since = self.state_since.max(now);
    }

    /// One check: its result, how long it took, when (unix seconds).
    pub fn record_check(&mut self, healthy: bool, latency: Duration, at: f64) {
        if healthy {
            self.checks_healthy += 1;
        } else {
            self.checks_failed += 1;
        }
        let s = latency.as_secs_f64();
        if let Some(i) = self.bounds.iter().position(|b| s <= *b) {
            self.bucket_counts[i] += 1;
        }
        self.duration_sum += s;
        self.last_check_time = Some(at);
    }

    /// One restart, at `at` (unix seconds).
    pub fn record_restart(&mut self, cause: Cause, at: f64) {
        self.restarts[cause as usize] += 1;
        self.last_restart_time = Some(at);
    }

    /// The alerts the escalation held back on purpose (flapping, a pause:
    /// `suppressed_total`), as `result="suppressed"` on each channel they
    /// would have gone to: the configured ones (the dispatcher's names
    /// `email`, `webhook`), or `file` (`eml`) when none is.
    pub fn set_suppressed(&mut self, channels: &[&str], n: u64) {
        let s = RESULTS.iter().position(|x| *x == "suppressed");
        for row in &mut self.alerts {
            if let Some(s) = s {
                row[s] = 0;
            }
        }
        for c in channels.iter().filter_map(|c| channel_index(c)) {
            if let Some(s) = s {
                self.alerts[c][s] = n;
            }
        }
    }

    /// Sets the alert counts from the dispatcher's tally of
    /// `(channel, result)`; names outside the closed sets are not shown.
    pub fn set_alerts<'a>(
        &mut self,
        tally: impl IntoIterator<Item = (&'a (&'a str, &'a str), &'a u64)>,
    ) {
        // NOTE: only what the tally names is set: `suppressed` comes from
        // the escalation (`set_suppressed`), and stays.
        for ((channel, result), n) in tally {
            if let (Some(c), Some(r)) = (
                channel_index(channel),
                RESULTS.iter().position(|x| x == result),
            ) {
                self.alerts[c][r] = *n;
            }
        }
    }
}

/// The server's memory (bytes) and CPU seconds for `/metrics`: the usage
/// watch's last sample of the group (PSS) when it is of the server running
/// now (`pid`), else `read` of that process alone (RSS), else none.
pub fn server_usage(
    pid: Option<u32>,
    sample: Option<(u32, &crate::usage::Sample)>,
    read: impl FnOnce(u32) -> Option<(u64, f64)>,
) -> Option<(u64, f64)> {
    let pid = pid?;
    match sample {
        Some((of, s)) if of == pid => Some((s.total_bytes, s.cpu_seconds)),
        _ => read(pid),
    }
}

fn channel_index(channel: &str) -> Option<usize> {
    match channel {
        "email" => Some(0),
        "webhook" => Some(1),
        "eml" | "file" => Some(2),
        _ => None,
    }
}

/// The text format 0.0.4, with the state clock advanced to `now`.
pub fn render(m: &Metrics, now: Instant) -> String {
    let mut m = m.clone();
    m.advance(now);
    let mut out = String::with_capacity(6 * 1024);
    let o = &mut out;
    let state = m.state;
    gauge(
        o,
        "up",
        "1 while the server is healthy, else 0.",
        &[("", u8::from(state == State::Healthy).into())],
    );
    let states: Vec<(String, f64)> = STATES
        .iter()
        .enumerate()
        .map(|(i, s)| {
            (
                format!("state=\"{s}\""),
                f64::from(u8::from(state.index() == i)),
            )
        })
        .collect();
    family(
        o,
        "state",
        "gauge",
        "1 for the monitor's current state, 0 for the others.",
        &states,
    );
    let secs: Vec<(String, f64)> = STATES
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("state=\"{s}\""), m.state_seconds[i]))
        .collect();
    family(
        o,
        "state_seconds_total",
        "counter",
        "Seconds this monitor has spent in each state.",
        &secs,
    );
    family(
        o,
        "checks_total",
        "counter",
        "Health checks by result.",
        &[
            ("result=\"healthy\"".into(), m.checks_healthy as f64),
            ("result=\"failed\"".into(), m.checks_failed as f64),
        ],
    );
    let _ = writeln!(
        o,
        "# HELP server_monitor_check_duration_seconds How long health checks took."
    );
    let _ = writeln!(o, "# TYPE server_monitor_check_duration_seconds histogram");
    let mut cumulative = 0;
    for (bound, count) in m.bounds.iter().zip(&m.bucket_counts) {
        cumulative += count;
        let _ = writeln!(
            o,
            "server_monitor_check_duration_seconds_bucket{{le=\"{}\"}} {cumulative}",
            num(*bound)
        );
    }
    let total = m.checks_healthy + m.checks_failed;
    let _ = writeln!(
        o,
        "server_monitor_check_duration_seconds_bucket{{le=\"+Inf\"}} {total}"
    );
    let _ = writeln!(
        o,
        "server_monitor_check_duration_seconds_sum {}",
        num(m.duration_sum)
    );
    let _ = writeln!(o, "server_monitor_check_duration_seconds_count {total}");
    gauge(
        o,
        "consecutive_failures",
        "Failed checks in a row.",
        &[("", m.consecutive_failures.into())],
    );
    gauge(
        o,
        "restart_attempts",
        "Restart attempts since the counter was last reset.",
        &[("", m.restart_attempts.into())],
    );
    gauge(
        o,
        "restart_attempts_max",
        "MAX_RESTART_ATTEMPTS.",
        &[("", m.max_restart_attempts.into())],
    );
    let restarts: Vec<(String, f64)> = CAUSES
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("cause=\"{c}\""), m.restarts[i] as f64))
        .collect();
    family(
        o,
        "restarts_total",
        "counter",
        "Server restarts by cause.",
        &restarts,
    );
    gauge(
        o,
        "given_up",
        "1 after the monitor gave up restarting the server.",
        &[("", u8::from(state == State::GivenUp).into())],
    );
    gauge(
        o,
        "paused",
        "1 while restarts are paused.",
        &[("", u8::from(state == State::Paused).into())],
    );
    let mut alerts = Vec::new();
    for (c, channel) in CHANNELS.iter().enumerate() {
        for (r, result) in RESULTS.iter().enumerate() {
            alerts.push((
                format!("channel=\"{channel}\",result=\"{result}\""),
                m.alerts[c][r] as f64,
            ));
        }
    }
    family(
        o,
        "alerts_total",
        "counter",
        "Alert deliveries by channel and result.",
        &alerts,
    );
    gauge(
        o,
        "outbox_entries",
        "Alerts waiting in the outbox.",
        &[("", m.outbox_entries as f64)],
    );
    let ts = |v: Option<f64>| v.unwrap_or(0.0);
    gauge(
        o,
        "last_check_timestamp_seconds",
        "Unix time of the last check (0: none yet).",
        &[("", ts(m.last_check_time))],
    );
    gauge(
        o,
        "last_restart_timestamp_seconds",
        "Unix time of the last restart (0: none yet).",
        &[("", ts(m.last_restart_time))],
    );
    gauge(
        o,
        "server_memory_bytes",
        "Memory of the server: its process group's PSS as last measured, else the process's RSS (0: none running).",
        &[("", m.server_memory_bytes.unwrap_or(0) as f64)],
    );
    family(
        o,
        "server_cpu_seconds_total",
        "counter",
        "CPU seconds (user and system) of the running server: its process group's as last measured, else the process's.",
        &[(String::new(), m.server_cpu_seconds.unwrap_or(0.0))],
    );
    family(
        o,
        "build_info",
        "gauge",
        "Always 1; the monitor's version in a label.",
        &[(format!("version=\"{}\"", escape_label(m.version)), 1.0)],
    );
    gauge(
        o,
        "start_time_seconds",
        "Unix time at which this monitor started.",
        &[("", m.start_time)],
    );
    out
}

fn gauge(out: &mut String, name: &str, help: &str, series: &[(&str, f64)]) {
    let series: Vec<(String, f64)> = series.iter().map(|(l, v)| (l.to_string(), *v)).collect();
    family(out, name, "gauge", help, &series);
}

fn family(out: &mut String, name: &str, kind: &str, help: &str, series: &[(String, f64)]) {
    let _ = writeln!(out, "# HELP server_monitor_{name} {help}");
    let _ = writeln!(out, "# TYPE server_monitor_{name} {kind}");
    for (labels, value) in series {
        if labels.is_empty() {
            let _ = writeln!(out, "server_monitor_{name} {}", num(*value));
        } else {
            let _ = writeln!(out, "server_monitor_{name}{{{labels}}} {}", num(*value));
        }
    }
}

/// A sample value: integers without a fraction, others as Rust prints them.
fn num(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh() -> (Metrics, Instant) {
        let t0 = Instant::now();
        (
            Metrics::new(Duration::from_secs(2), 5, 1_700_000_000.0, t0),
            t0,
        )
    }

    #[test]
    fn every_labelled_series_is_there_from_the_start_at_zero() {
        let (m, t0) = fresh();
        let text = render(&m, t0);
        for s in STATES {
            assert!(
                text.contains(&format!(
                    "server_monitor_state_seconds_total{{state=\"{s}\"}} 0\n"
                )),
                "{s}"
            );
        }
        for c in CAUSES {
            assert!(
                text.contains(&format!(
                    "server_monitor_restarts_total{{cause=\"{c}\"}} 0\n"
                )),
                "{c}"
            );
        }
        for c in CHANNELS {
            for r in RESULTS {
                let line =
                    format!("server_monitor_alerts_total{{channel=\"{c}\",result=\"{r}\"}} 0\n");
                assert!(text.contains(&line), "{line}");
            }
        }
        assert!(text.contains("server_monitor_checks_total{result=\"failed\"} 0\n"));
        assert!(text.contains("server_monitor_state{state=\"starting\"} 1\n"));
        assert!(text.contains("server_monitor_up 0\n"));
        assert!(text.contains("server_monitor_build_info{version=\""));
    }

    #[test]
    fn every_sample_has_help_and_type_and_a_prefixed_name() {
        let (m, t0) = fresh();
        let text = render(&m, t0);
        let mut typed = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                typed.push(rest.split(' ').next().unwrap().to_string());
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            assert!(line.starts_with("server_monitor_"), "{line}");
            let name = line.split(['{', ' ']).next().unwrap();
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s)
                        .filter(|b| typed.iter().any(|t| t == b))
                })
                .unwrap_or(name);
            assert_eq!(typed.last().map(String::as_str), Some(base), "{line}");
        }
    }

    #[test]
    fn state_seconds_accumulate_per_state() {
        let (mut m, t0) = fresh();
        m.set_state(State::Healthy, t0 + Duration::from_secs(3));
        m.set_state(State::Failing, t0 + Duration::from_secs(10));
        let text = render(&m, t0 + Duration::from_secs(12));
        assert!(
            text.contains("server_monitor_state_seconds_total{state=\"starting\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("server_monitor_state_seconds_total{state=\"healthy\"} 7\n"));
        assert!(text.contains("server_monitor_state_seconds_total{state=\"failing\"} 2\n"));
        assert!(text.contains("server_monitor_state{state=\"failing\"} 1\n"));
        assert!(text.contains("server_monitor_up 0\n"));
    }

    #[test]
    fn histogram_is_cumulative_and_ends_at_health_timeout() {
        let (mut m, t0) = fresh();
        m.record_check(true, Duration::from_millis(3), 1.0);
        m.record_check(false, Duration::from_millis(300), 2.0);
        m.record_check(false, Duration::from_secs(5), 3.0);
        let text = render(&m, t0);
        assert!(text.contains("_bucket{le=\"0.005\"} 1\n"), "{text}");
        assert!(text.contains("_bucket{le=\"0.5\"} 2\n"));
        assert!(text.contains("_bucket{le=\"2\"} 2\n"));
        assert!(!text.contains("le=\"2.5\""));
        assert!(text.contains("_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("server_monitor_check_duration_seconds_count 3\n"));
        assert!(text.contains("server_monitor_checks_total{result=\"failed\"} 2\n"));
        assert!(text.contains("server_monitor_last_check_timestamp_seconds 3\n"));
    }

    #[test]
    fn restarts_and_alerts_count_into_closed_label_sets() {
        let (mut m, t0) = fresh();
        use crate::policy::Trigger;
        m.record_restart(Cause::of_trigger(Trigger::Exit), 5.0);
        m.record_restart(Cause::of_trigger(Trigger::Health), 6.0);
        m.record_restart(Cause::of_trigger(Trigger::Memory), 6.5);
        m.record_restart(Cause::Planned, 7.0);
        let tally: std::collections::BTreeMap<(&str, &str), u64> = [
            (("eml", "sent"), 1),
            (("webhook", "failed"), 1),
            (("pager", "sent"), 1),
        ]
        .into();
        m.set_alerts(&tally);
        let text = render(&m, t0);
        assert!(text.contains("restarts_total{cause=\"exit\"} 1\n"));
        assert!(text.contains("restarts_total{cause=\"health\"} 1\n"));
        assert!(text.contains("restarts_total{cause=\"memory\"} 1\n"));
        assert!(text.contains("restarts_total{cause=\"planned\"} 1\n"));
        assert!(text.contains("alerts_total{channel=\"file\",result=\"sent\"} 1\n"));
        assert!(text.contains("alerts_total{channel=\"webhook\",result=\"failed\"} 1\n"));
        assert!(!text.contains("pager"));
        assert!(text.contains("server_monitor_last_restart_timestamp_seconds 7\n"));
    }

    #[test]
    fn the_dispatchers_tally_leaves_suppressed_counts_alone() {
        let (mut m, t0) = fresh();
        m.set_suppressed(&["email"], 1);
        let tally: std::collections::BTreeMap<(&str, &str), u64> =
            [(("email", "sent"), 3), (("eml", "failed"), 1)].into();
        m.set_alerts(&tally);
        m.set_alerts(&tally);
        let text = render(&m, t0);
        assert!(text.contains("alerts_total{channel=\"email\",result=\"suppressed\"} 1\n"));
        assert!(text.contains("alerts_total{channel=\"email\",result=\"sent\"} 3\n"));
        assert!(text.contains("alerts_total{channel=\"file\",result=\"failed\"} 1\n"));
    }

    #[test]
    fn a_restarts_cause_is_the_policys_trigger() {
        use crate::policy::Trigger;
        assert_eq!(Cause::of_trigger(Trigger::Exit), Cause::Exit);
        assert_eq!(Cause::of_trigger(Trigger::Health), Cause::Health);
        assert_eq!(Cause::of_trigger(Trigger::Memory), Cause::Memory);
    }

    #[test]
    fn suppressed_alerts_count_on_the_channels_they_would_have_gone_to() {
        let (mut m, t0) = fresh();
        m.set_suppressed(&["email", "webhook"], 4);
        let text = render(&m, t0);
        assert!(text.contains("alerts_total{channel=\"email\",result=\"suppressed\"} 4\n"));
        assert!(text.contains("alerts_total{channel=\"webhook\",result=\"suppressed\"} 4\n"));
        assert!(text.contains("alerts_total{channel=\"file\",result=\"suppressed\"} 0\n"));
        // No channel configured: the dispatcher names the local file.
        m.set_suppressed(&["eml"], 5);
        let text = render(&m, t0);
        assert!(text.contains("alerts_total{channel=\"file\",result=\"suppressed\"} 5\n"));
        assert!(text.contains("alerts_total{channel=\"email\",result=\"suppressed\"} 0\n"));
    }

    #[test]
    fn a_pause_is_the_paused_state_and_gauge() {
        use PhaseName as P;
        let s = State::of_phase(P::Running, 0, false).paused(true);
        assert_eq!(s, State::Paused);
        assert_eq!(
            State::of_phase(P::Running, 2, true).paused(false),
            State::Failing
        );
        assert_eq!(
            State::of_phase(P::GivenUp, 3, true).paused(true),
            State::Paused
        );
        assert_eq!(
            State::of_phase(P::Stopped, 0, true).paused(true),
            State::Stopped
        );
        let (mut m, t0) = fresh();
        m.set_state(s, t0);
        let text = render(&m, t0);
        assert!(text.contains("server_monitor_state{state=\"paused\"} 1\n"));
        assert!(text.contains("server_monitor_paused 1\n"));
        assert!(text.contains("server_monitor_up 0\n"));
    }

    #[test]
    fn server_usage_is_the_groups_sample_of_the_running_server_else_a_read() {
        let sample = crate::usage::Sample {
            total_bytes: 300 << 20,
            pss: true,
            processes: vec![],
            cpu_seconds: 12.5,
            age_seconds: None,
            taken: Instant::now(),
        };
        let read = |pid: u32| Some((u64::from(pid), 1.0));
        assert_eq!(
            server_usage(Some(42), Some((42, &sample)), read),
            Some((300 << 20, 12.5))
        );
        // A sample of an earlier server: the process read now.
        assert_eq!(
            server_usage(Some(43), Some((42, &sample)), read),
            Some((43, 1.0))
        );
        assert_eq!(server_usage(Some(43), None, read), Some((43, 1.0)));
        assert_eq!(server_usage(None, Some((42, &sample)), read), None);
    }

    #[test]
    fn phases_map_to_states() {
        use PhaseName as P;
        assert_eq!(State::of_phase(P::Running, 0, false), State::Healthy);
        assert_eq!(State::of_phase(P::Running, 2, false), State::Failing);
        assert_eq!(
            State::of_phase(P::RestartPending, 3, true),
            State::Restarting
        );
        assert_eq!(State::of_phase(P::Verifying, 0, false), State::Starting);
        assert_eq!(State::of_phase(P::Verifying, 0, true), State::Restarting);
        assert_eq!(State::of_phase(P::GivenUp, 3, true), State::GivenUp);
        assert_eq!(State::of_phase(P::Stopped, 0, true), State::Stopped);
    }
}
