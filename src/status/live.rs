//! [`Live`]: what the loop keeps for the status endpoints — the listener
//! (when STATUS_LISTEN is set), the [`Metrics`] and the [`Recent`] checks and
//! incidents — behind one call per event, so that the loop's hooks are one
//! line each. The figures are kept whether or not the listener is on (a few
//! additions per check).

use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant, SystemTime};

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
        })
    }

    /// A check's result (as recorded in the state) and its latency.
    pub fn checked(&mut self, check: &LastCheck, latency: Duration) {
        self.metrics
            .record_check(check.healthy, latency, unix(SystemTime::now()));
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

    /// The policy's state after a turn, and the alerts' tally and outbox.
    pub fn update(
        &mut self,
        snap: &Snapshot,
        restarts_total: u64,
        alerts: &crate::alert::Dispatcher,
        now: Instant,
    ) {
        let state = metrics::State::of_phase(snap.phase, snap.failures, restarts_total > 0);
        self.metrics.set_state(state, now);
        self.metrics.consecutive_failures = snap.failures;
        self.metrics.restart_attempts = snap.attempts;
        self.metrics.outbox_entries = alerts.pending();
        let tally: std::collections::BTreeMap<_, _> = (alerts.outcomes.iter())
            .map(|(&(channel, result), &n)| ((channel.as_str(), result), n))
            .collect();
        self.metrics.set_alerts(&tally);
    }

    /// Once a loop turn, before the wait: [`Self::update`], then
    /// [`Self::service`].
    pub fn turn(
        &mut self,
        snap: &Snapshot,
        state: &State,
        alerts: &crate::alert::Dispatcher,
        now: Instant,
    ) {
        self.update(snap, state.restarts_total, alerts, now);
        self.service(now, state);
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

    /// Serves what is ready, from `state` (the loop's, in memory).
    pub fn service(&mut self, now: Instant, state: &State) {
        let Some(server) = &mut self.server else {
            return;
        };
        let (metrics, recent) = (&mut self.metrics, &self.recent);
        server.service(now, &mut |route| match route {
            Route::Metrics => {
                let usage = state.server_pid.and_then(super::process_usage);
                metrics.server_memory_bytes = usage.map(|u| u.0);
                metrics.server_cpu_seconds = usage.map(|u| u.1);
                metrics::render(metrics, Instant::now())
            }
            Route::StatusJson => {
                // The loop's state keeps no time stamps between writes: it
                // is current now.
                let wall = SystemTime::now();
                page::status_json(&State {
                    updated: utc_iso8601_millis(wall),
                    updated_unix_ms: unix_millis(wall),
                    ..state.clone()
                })
            }
            Route::Page => page::render_page(state, recent),
            Route::Healthz => "ok\n".into(),
        });
    }
}
