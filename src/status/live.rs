//! [`Live`]: what the loop keeps for the status endpoints — the listener
//! (when STATUS_LISTEN is set), the [`Metrics`] and the [`Recent`] checks and
//! incidents — behind one call per event, so that the loop's hooks are one
//! line each. The figures are kept whether or not the listener is on (a few
//! additions per check).
//!
//! What the loop's other parts hold is lent for a turn through [`Feeds`]:
//! the history kept in memory (availability, hourly bars), the usage watch
//! (the server group's memory and CPU) and the escalation (pause,
//! suppressed alerts).

use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant, SystemTime};

use super::hourly::Hourly;
use super::metrics::{self, Cause, Metrics};
use super::page::{self, Incident, Recent};
use super::{Route, StatusServer};
use crate::config::Config;
use crate::logging::{unix_millis, utc_iso8601_millis};
use crate::policy::{Alert, Snapshot, StartKind};
use crate::state::{LastCheck, State};

pub struct Live {
    server: Option<StatusServer>,
    pub metrics: Metrics,
    pub recent: Recent,
    /// The 24-hour charts' latency and memory, per hour.
    pub hourly: Hourly,
    /// The time of the last usage sample put in [`Self::hourly`].
    last_usage: Option<String>,
}

/// What the loop lends the status endpoints for one turn.
pub struct Feeds<'a> {
    pub history: &'a crate::history::Recorder,
    pub usage: &'a crate::usage::Watch,
    pub oncall: &'a crate::escalation::Escalation,
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Live {
    /// Binds STATUS_LISTEN when it is set; the error names the address.
    pub fn new(cfg: &Config, now: Instant) -> Result<Live, String> {
        let server = match cfg.status.status_listen {
            Some(addr) => {
                let s = StatusServer::bind(addr, cfg.status.status_token.clone())?;
                log::info!(address = s.local_addr().to_string().as_str(), token = cfg.status.status_token.is_some();
                    "status endpoints listening (/, /status.json, /metrics, /healthz)");
                Some(s)
            }
            None => None,
        };
        Ok(Live {
            server,
            metrics: Metrics::new(
                cfg.health.health_timeout,
                cfg.policy.max_restart_attempts,
                unix(SystemTime::now()),
                now,
            ),
            recent: Recent::default(),
            hourly: Hourly::default(),
            last_usage: None,
        })
    }

    /// A check's result (as recorded in the state) and its latency.
    pub fn checked(&mut self, check: &LastCheck, latency: Duration) {
        let wall = SystemTime::now();
        self.metrics
            .record_check(check.healthy, latency, unix(wall));
        (self.hourly).latency(unix_millis(wall) as i64, latency.as_secs_f64() * 1000.0);
        self.recent.push_check(check.clone());
    }

    /// A restart of `kind` is being carried out, begun at `wall`.
    pub fn restarting(&mut self, kind: &StartKind, wall: SystemTime) {
        let time = utc_iso8601_millis(wall);
        let (cause, what, detail) = match kind {
            StartKind::First => return,
            StartKind::Restart { cause, trigger, .. } => {
                (Cause::of_trigger(*trigger), "restart", cause.as_str())
            }
            StartKind::Retry { cause, .. } => {
                (Cause::Retry, "retry after giving up", cause.as_str())
            }
            StartKind::Planned { by } => (Cause::Planned, "planned restart", by.as_str()),
        };
        self.metrics.record_restart(cause, unix(SystemTime::now()));
        self.recent.push_incident(Incident {
            time,
            what: what.to_string(),
            detail: detail.to_string(),
        });
    }

    /// An alert the policy raised: a give-up and a failed planned restart
    /// are incidents.
    pub fn alerted(&mut self, a: &Alert, time: &str) {
        let (what, detail) = match a {
            Alert::Down { last_error, .. } => ("gave up", last_error.clone()),
            Alert::PlannedRestartFailed { reason, .. } => {
                ("planned restart failed", reason.clone())
            }
            Alert::Flapping { restarts, window } => (
                "flapping",
                format!(
                    "{} restarts in {}",
                    restarts.len(),
                    crate::config::format_duration(*window)
                ),
            ),
            Alert::Recovered { .. }
            | Alert::Restarted { .. }
            | Alert::StillDown { .. }
            | Alert::StableAgain { .. } => return,
        };
        self.recent.push_incident(Incident {
            time: time.to_string(),
            what: what.to_string(),
            detail,
        });
    }

    /// The policy's state after a turn, the escalation's pause and
    /// suppressed alerts, and the alerts' tally and outbox.
    pub fn update(
        &mut self,
        snap: &Snapshot,
        restarts_total: u64,
        alerts: &crate::alert::Dispatcher,
        oncall: &crate::escalation::Escalation,
        now: Instant,
    ) {
        let state = metrics::State::of_phase(snap.phase, snap.failures, restarts_total > 0)
            .paused(oncall.pause().is_some());
        self.metrics.set_state(state, now);
        self.metrics.consecutive_failures = snap.failures;
        self.metrics.restart_attempts = snap.attempts;
        self.metrics.outbox_entries = alerts.pending();
        let tally: std::collections::BTreeMap<_, _> = (alerts.outcomes.iter())
            .map(|(&(channel, result), &n)| ((channel.as_str(), result), n))
            .collect();
        self.metrics.set_alerts(&tally);
        let channels: Vec<&str> = alerts.channels().iter().map(|c| c.as_str()).collect();
        self.metrics
            .set_suppressed(&channels, oncall.suppressed_total());
    }

    /// A usage sample not seen before goes into the hourly memory figures.
    fn usage_sampled(&mut self, usage: Option<&crate::usage::Usage>) {
        let Some(u) = usage else { return };
        if self.last_usage.as_deref() == Some(u.time.as_str()) {
            return;
        }
        self.last_usage = Some(u.time.clone());
        let t = unix_millis(SystemTime::now()) as i64;
        self.hourly.memory(t, u.memory_bytes);
    }

    /// Once a loop turn, before the wait: [`Self::update`], then
    /// [`Self::service`].
    pub fn turn(
        &mut self,
        snap: &Snapshot,
        state: &State,
        alerts: &crate::alert::Dispatcher,
        feeds: Feeds<'_>,
        now: Instant,
    ) {
        self.update(snap, state.restarts_total, alerts, feeds.oncall, now);
        self.usage_sampled(state.usage.as_ref());
        self.service(now, state, &feeds);
    }

    /// What the loop's wait polls; empty when the listener is off.
    pub fn fds(&self) -> Vec<(BorrowedFd<'_>, bool)> {
        self.server
            .as_ref()
            .map_or_else(Vec::new, StatusServer::fds)
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.server.as_ref().and_then(StatusServer::next_deadline)
    }

    /// Serves what is ready, from `state` (the loop's, in memory) and the
    /// `feeds` (in memory too: no disk is read on a request).
    pub fn service(&mut self, now: Instant, state: &State, feeds: &Feeds<'_>) {
        let Some(server) = &mut self.server else {
            return;
        };
        let (metrics, recent, hourly) = (&mut self.metrics, &self.recent, &self.hourly);
        let now_ms = feeds.history.now_ms();
        server.service(now, &mut |route| match route {
            Route::Metrics => {
                let usage = metrics::server_usage(
                    state.server_pid,
                    feeds.usage.last_sample(),
                    super::process_usage,
                );
                metrics.server_memory_bytes = usage.map(|u| u.0);
                metrics.server_cpu_seconds = usage.map(|u| u.1);
                metrics::render(metrics, Instant::now())
            }
            Route::StatusJson => {
                // The loop's state keeps no time stamps between writes: it
                // is current now.
                let wall = SystemTime::now();
                let (windows, _) = page::figures(feeds.history.recent(), now_ms);
                let state = State {
                    updated: utc_iso8601_millis(wall),
                    updated_unix_ms: unix_millis(wall),
                    ..state.clone()
                };
                page::status_json(&state, &windows)
            }
            Route::Page => {
                let (windows, hours) = page::figures(feeds.history.recent(), now_ms);
                let charts = page::charts(&hours, hourly, now_ms);
                page::render_page(state, recent, &windows, &charts)
            }
            Route::Healthz => "ok\n".into(),
        });
    }
}
