//! The dead man's switch: `GET HEARTBEAT_URL` every `HEARTBEAT_INTERVAL`
//! while the server is healthy, so that an outside service (healthchecks.io,
//! Uptime Kuma push, …) alerts when the pings stop: the host died, the
//! monitor died, or the server is down. The silence is the alert.
//!
//! Parts:
//! - [`Schedule`] (pure, time a parameter): when a ping is due. The first
//!   ping goes out as soon as the server counts as healthy (verified after a
//!   start, or a healthy check after adoption); none from the first failed
//!   check, an exit, a restart, a give-up or a pause until it is verified
//!   again. A ping that is due while the previous one still runs is skipped,
//!   never queued; a late ping is simply the next one (the interval counts
//!   from when it went out, so a held-up loop makes no burst).
//! - [`FailureLog`] (pure): a failed ping is said at WARNING once, then at
//!   most once an hour until one succeeds, which is said once at INFO.
//! - [`Heartbeat`]: the loop's side. The GET runs on one long-lived helper
//!   thread of its own (like `health::Checker`), under one deadline of
//!   HEALTH_TIMEOUT (`crate::http`; https trusts the system's roots). The
//!   loop hands it a job only when it is idle and collects the result with
//!   `try_recv` on a later turn: it never waits for a ping. A ping still
//!   running a second past its deadline (only a name lookup, which has no
//!   timeout, can do that) is given up on as timed out; that thread ends
//!   when the lookup does, and the next ping gets a new one.
//!
//! The URL is a secret (the key is often its path): it is shown only as
//! `config::mask_secret_url` gives it, and no error here carries it.
//!
//! Not here: deciding whether the server is healthy (the policy; the loop
//! asks it), logging the outcome's meaning beyond the failure lines.

use std::fmt;
use std::sync::mpsc::{self, TryRecvError};
use std::time::{Duration, Instant, SystemTime};

use crate::config::mask_secret_url;
use crate::http::{self, IoClass, Url};

/// The most of a ping's answer body that is read (it is not looked at).
const BODY_LIMIT: usize = 4096;

/// How long past its deadline a ping is waited for before it is given up.
const OVERDUE_GRACE: Duration = Duration::from_secs(1);

/// How often a failure that goes on is said again.
pub const REPEAT_WARNING: Duration = Duration::from_secs(3600);

/// Pure: when the next ping is due.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    interval: Duration,
    /// `None` while the server is not healthy: no ping is due.
    next: Option<Instant>,
}

/// What [`Schedule::turn`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing is due.
    Wait,
    /// Send a ping now.
    Ping,
    /// A ping was due but the previous one still runs: this one is dropped.
    Skip,
}

impl Schedule {
    pub fn new(interval: Duration) -> Schedule {
        Schedule {
            interval,
            next: None,
        }
    }

    /// One loop turn at `now`: `healthy` is whether the server counts as
    /// healthy now, `busy` whether the previous ping still runs.
    pub fn turn(&mut self, healthy: bool, busy: bool, now: Instant) -> Decision {
        if !healthy {
            self.next = None;
            return Decision::Wait;
        }
        let due = *self.next.get_or_insert(now);
        if now < due {
            return Decision::Wait;
        }
        // From now, not from `due`: a late ping is the next one, and the one
        // after it comes a whole interval later.
        self.next = Some(crate::deadline::instant_after(now, self.interval));
        if busy {
            Decision::Skip
        } else {
            Decision::Ping
        }
    }

    /// When the next ping is due; `None` while the server is not healthy.
    pub fn next_due(&self) -> Option<Instant> {
        self.next
    }
}

/// Pure: which ping outcomes are said, and how.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FailureLog {
    /// Failed pings since the last success.
    failures: u64,
    last_warned: Option<Instant>,
}

/// A line [`FailureLog`] wants said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Say {
    /// WARNING: the first failure, or one an hour after the last warning.
    Failed { reason: String, failures: u64 },
    /// INFO: a success after failures.
    Recovered { failures: u64 },
}

impl FailureLog {
    /// The outcome of one ping at `now`; what to log, if anything.
    pub fn record(&mut self, result: &Result<Duration, PingError>, now: Instant) -> Option<Say> {
        match result {
            Ok(_) => {
                let failures = std::mem::take(&mut self.failures);
                self.last_warned = None;
                (failures > 0).then_some(Say::Recovered { failures })
            }
            Err(e) => {
                self.failures += 1;
                let warn = self
                    .last_warned
                    .is_none_or(|at| now >= crate::deadline::instant_after(at, REPEAT_WARNING));
                if !warn {
                    return None;
                }
                self.last_warned = Some(now);
                Some(Say::Failed {
                    reason: e.to_string(),
                    failures: self.failures,
                })
            }
        }
    }
}

/// Why a ping failed. `Display` is the short reason the log, the state file
/// and `test-alert` show; it never holds the URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PingError {
    /// Any non-2xx answer.
    Status(u16),
    Refused,
    TimedOut,
    HostNotFound,
    Other(String),
}

impl fmt::Display for PingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PingError::Status(code) if (300..400).contains(code) => {
                write!(f, "HTTP {code} (redirects are not followed)")
            }
            PingError::Status(code) => write!(f, "HTTP {code}"),
            PingError::Refused => f.write_str("connection refused"),
            PingError::TimedOut => f.write_str("timed out"),
            PingError::HostNotFound => f.write_str("host not found"),
            PingError::Other(s) => f.write_str(s),
        }
    }
}

/// One GET of `url` under `timeout`, here and now: its latency, or why not.
pub fn ping_now(url: &str, timeout: Duration) -> Result<Duration, PingError> {
    let started = Instant::now();
    let url = Url::parse(url).map_err(PingError::Other)?;
    let tls = match url.https {
        false => None,
        true => Some(
            crate::tls::default_client_config(None).map_err(|e| match e {
                crate::tls::SetupError::CaFile(e) => PingError::Other(e.1),
                crate::tls::SetupError::Rustls(e) => PingError::Other(e),
            })?,
        ),
    };
    let request = http::Request {
        method: "GET",
        url: &url,
        headers: &[],
        body: &[],
        body_limit: BODY_LIMIT,
        tls,
    };
    match http::send(&request, timeout) {
        Ok(r) if (200..300).contains(&r.status) => Ok(started.elapsed()),
        Ok(r) => Err(PingError::Status(r.status)),
        Err(e) => Err(from_http(e)),
    }
}

/// [`ping_now`] on a thread of its own, waited for at most a second past
/// `timeout`: a name lookup (no timeout of its own) cannot hold the caller
/// (`test-alert`) longer.
pub fn ping_bounded(url: &str, timeout: Duration) -> Result<Duration, PingError> {
    let (tx, rx) = mpsc::channel();
    let url_owned = url.to_string();
    let spawned = std::thread::Builder::new()
        .name("heartbeat".into())
        .spawn(move || {
            let _ = tx.send(ping_now(&url_owned, timeout));
        });
    if spawned.is_err() {
        return ping_now(url, timeout);
    }
    match rx.recv_timeout(timeout + OVERDUE_GRACE) {
        Ok(result) => result,
        Err(mpsc::RecvTimeoutError::Timeout) => Err(PingError::TimedOut),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            Err(PingError::Other("the HTTP client failed".into()))
        }
    }
}

fn from_http(err: http::Error) -> PingError {
    match err {
        http::Error::Io(e) => match http::io_class(&e) {
            IoClass::Refused => PingError::Refused,
            IoClass::TimedOut => PingError::TimedOut,
            IoClass::Reset | IoClass::ClosedEarly => {
                PingError::Other("the connection was closed before an answer".into())
            }
            IoClass::Other => PingError::Other(crate::alert::one_line(&e.to_string())),
        },
        http::Error::HostNotFound => PingError::HostNotFound,
        http::Error::NoAnswer | http::Error::ClosedEarly => {
            PingError::Other("the connection was closed before an answer".into())
        }
        // The others name what was wrong with the answer, never the URL.
        other => PingError::Other(crate::alert::one_line(&other.to_string())),
    }
}

/// The last ping as the state file keeps it.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub time: SystemTime,
    pub result: Result<Duration, PingError>,
}

/// The helper thread and the job in flight.
struct Worker {
    jobs: mpsc::Sender<()>,
    results: mpsc::Receiver<Result<Duration, PingError>>,
    /// When the ping in flight was handed over.
    busy_since: Option<Instant>,
}

/// The loop's side of the heartbeat; see the module header.
pub struct Heartbeat {
    url: String,
    timeout: Duration,
    schedule: Schedule,
    log: FailureLog,
    worker: Option<Worker>,
}

impl Heartbeat {
    /// `timeout` is each ping's deadline (HEALTH_TIMEOUT).
    pub fn new(url: &str, interval: Duration, timeout: Duration) -> Heartbeat {
        Heartbeat {
            url: url.to_string(),
            timeout,
            schedule: Schedule::new(interval),
            log: FailureLog::default(),
            worker: None,
        }
    }

    /// Where the pings go, masked: for logs.
    pub fn describe(&self) -> String {
        mask_secret_url(&self.url)
    }

    /// One loop turn: collects a finished ping (never waiting for one),
    /// then sends the next if it is due. `healthy`: whether the server
    /// counts as healthy now; `paused`: whether the monitor is paused (SPEC:
    /// no ping while paused, however healthy the server). Returns the ping
    /// that finished, for the state file.
    pub fn turn(&mut self, healthy: bool, paused: bool, now: Instant) -> Option<Outcome> {
        let finished = self.collect(now);
        if let Some(o) = &finished {
            self.say(&o.result, now);
        }
        let busy = self.worker.as_ref().is_some_and(|w| w.busy_since.is_some());
        match self.schedule.turn(healthy && !paused, busy, now) {
            Decision::Wait => {}
            Decision::Skip => {
                log::debug!("heartbeat ping due while the previous one still runs: skipped");
            }
            Decision::Ping => self.send(now),
        }
        finished
    }

    /// When the loop should turn for the heartbeat: the next ping, or the
    /// moment the ping in flight is given up on.
    pub fn next_due(&self) -> Option<Instant> {
        let overdue = self
            .worker
            .as_ref()
            .and_then(|w| w.busy_since)
            .map(|t| crate::deadline::instant_after(t, self.timeout + OVERDUE_GRACE));
        match (self.schedule.next_due(), overdue) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn collect(&mut self, now: Instant) -> Option<Outcome> {
        let w = self.worker.as_mut()?;
        let since = w.busy_since?;
        let result = match w.results.try_recv() {
            Ok(r) => r,
            Err(TryRecvError::Empty) => {
                if now < crate::deadline::instant_after(since, self.timeout + OVERDUE_GRACE) {
                    return None;
                }
                // Only a name lookup holds a ping past its deadline: leave
                // that thread to it; the next ping gets a new one.
                self.worker = None;
                Err(PingError::TimedOut)
            }
            Err(TryRecvError::Disconnected) => {
                self.worker = None;
                Err(PingError::Other("the HTTP client failed".into()))
            }
        };
        if let Some(w) = self.worker.as_mut() {
            w.busy_since = None;
        }
        Some(Outcome {
            time: SystemTime::now(),
            result,
        })
    }

    fn send(&mut self, now: Instant) {
        if self.worker.is_none() {
            self.worker = self.spawn();
        }
        let Some(w) = self.worker.as_mut() else {
            log::warn!("cannot start the heartbeat's thread: this ping is skipped");
            return;
        };
        if w.jobs.send(()).is_err() {
            self.worker = None;
            return;
        }
        w.busy_since = Some(now);
    }

    fn spawn(&self) -> Option<Worker> {
        let (jobs, job_rx) = mpsc::channel::<()>();
        let (result_tx, results) = mpsc::channel();
        let (url, timeout) = (self.url.clone(), self.timeout);
        std::thread::Builder::new()
            .name("heartbeat".into())
            .spawn(move || {
                while job_rx.recv().is_ok() {
                    if result_tx.send(ping_now(&url, timeout)).is_err() {
                        return;
                    }
                }
            })
            .ok()?;
        Some(Worker {
            jobs,
            results,
            busy_since: None,
        })
    }

    fn say(&mut self, result: &Result<Duration, PingError>, now: Instant) {
        let url = self.describe();
        match result {
            Ok(t) => {
                log::debug!(url = url.as_str(), ms = t.as_millis() as u64; "heartbeat ping answered")
            }
            Err(e) => {
                log::debug!(url = url.as_str(), reason = e.to_string().as_str(); "heartbeat ping unanswered")
            }
        }
        match self.log.record(result, now) {
            None => {}
            Some(Say::Failed {
                reason,
                failures: 1,
            }) => {
                log::warn!(url = url.as_str(), reason = reason.as_str();
                    "heartbeat ping failed (said again at most once an hour until one succeeds)");
            }
            Some(Say::Failed { reason, failures }) => {
                log::warn!(url = url.as_str(), reason = reason.as_str(), failures = failures;
                    "heartbeat pings still failing");
            }
            Some(Say::Recovered { failures }) => {
                log::info!(url = url.as_str(), failures = failures; "heartbeat ping succeeded again");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    /// Runs `turns` (time in seconds from t0, healthy, busy) and returns
    /// the times at which a ping was sent.
    fn pings(interval: f64, turns: &[(f64, bool, bool)]) -> Vec<f64> {
        let t0 = Instant::now();
        let mut s = Schedule::new(secs(interval));
        turns
            .iter()
            .filter(|(t, healthy, busy)| s.turn(*healthy, *busy, t0 + secs(*t)) == Decision::Ping)
            .map(|(t, _, _)| *t)
            .collect()
    }

    #[test]
    fn pings_at_interval_while_healthy() {
        let t0 = Instant::now();
        let mut s = Schedule::new(secs(60.0));
        assert_eq!(
            s.next_due(),
            None,
            "nothing is due before the server is healthy"
        );
        assert_eq!(
            s.turn(true, false, t0),
            Decision::Ping,
            "the first ping at once"
        );
        assert_eq!(s.next_due(), Some(t0 + secs(60.0)));
        assert_eq!(s.turn(true, false, t0 + secs(30.0)), Decision::Wait);
        assert_eq!(s.turn(true, false, t0 + secs(59.9)), Decision::Wait);
        assert_eq!(s.turn(true, false, t0 + secs(60.0)), Decision::Ping);
        assert_eq!(s.next_due(), Some(t0 + secs(120.0)));
        let every_turn: Vec<_> = (0..=40)
            .map(|i| (f64::from(i) * 5.0, true, false))
            .collect();
        assert_eq!(pings(60.0, &every_turn), vec![0.0, 60.0, 120.0, 180.0]);
    }

    #[test]
    fn no_ping_from_first_failed_check_until_verified() {
        // Healthy at 0 and 10; the check at 15 fails; failing, restarting
        // and verifying until 40; verified at 40.
        let mut turns = vec![(0.0, true, false), (10.0, true, false)];
        turns.extend((15..40).map(|t| (f64::from(t), false, false)));
        turns.extend([
            (40.0, true, false),
            (45.0, true, false),
            (50.0, true, false),
        ]);
        assert_eq!(
            pings(10.0, &turns),
            vec![0.0, 10.0, 40.0, 50.0],
            "the ping due at 20 and 30 is not sent; the verified server gets one at once"
        );
        let t0 = Instant::now();
        let mut s = Schedule::new(secs(10.0));
        s.turn(true, false, t0);
        s.turn(false, false, t0 + secs(5.0));
        assert_eq!(s.next_due(), None, "no deadline while not healthy");
    }

    #[test]
    fn no_ping_while_paused_however_healthy() {
        // Nothing listens on port 1: a ping sent would fail, not hang.
        let mut hb = Heartbeat::new("http://127.0.0.1:1/ping", secs(10.0), secs(1.0));
        let t0 = Instant::now();
        for t in [0.0, 10.0, 20.0, 30.0] {
            assert!(hb.turn(true, true, t0 + secs(t)).is_none());
            assert_eq!(hb.next_due(), None, "nothing due while paused (at {t} s)");
            assert!(hb.worker.is_none(), "no ping was sent (at {t} s)");
        }
        hb.turn(true, false, t0 + secs(40.0));
        assert!(hb.worker.is_some(), "a ping once the pause ended");
        assert!(hb.next_due().is_some());
    }

    #[test]
    fn late_ping_is_not_followed_by_a_burst() {
        // The loop was held up from 10 to 45 (3.5 intervals): one ping at
        // 45, the next a whole interval later, none in between.
        let turns: Vec<_> = [0.0, 10.0, 45.0, 45.1, 46.0, 50.0, 54.9, 55.0, 60.0]
            .iter()
            .map(|t| (*t, true, false))
            .collect();
        assert_eq!(pings(10.0, &turns), vec![0.0, 10.0, 45.0, 55.0]);
        // A ping due while the previous one still runs is skipped, not
        // queued: no ping follows when the stalled one ends.
        let t0 = Instant::now();
        let mut s = Schedule::new(secs(10.0));
        assert_eq!(s.turn(true, false, t0), Decision::Ping);
        assert_eq!(s.turn(true, true, t0 + secs(10.0)), Decision::Skip);
        assert_eq!(s.turn(true, false, t0 + secs(12.0)), Decision::Wait);
        assert_eq!(s.turn(true, false, t0 + secs(20.0)), Decision::Ping);
    }

    #[test]
    fn failure_warning_once_then_hourly() {
        let t0 = Instant::now();
        let mut log = FailureLog::default();
        let fail = Err(PingError::Refused);
        let said: Vec<_> = (0..=130)
            .map(|min| log.record(&fail, t0 + secs(f64::from(min) * 60.0)))
            .enumerate()
            .filter_map(|(min, say)| say.map(|s| (min, s)))
            .collect();
        assert_eq!(
            said,
            vec![
                (
                    0,
                    Say::Failed {
                        reason: "connection refused".into(),
                        failures: 1
                    }
                ),
                (
                    60,
                    Say::Failed {
                        reason: "connection refused".into(),
                        failures: 61
                    }
                ),
                (
                    120,
                    Say::Failed {
                        reason: "connection refused".into(),
                        failures: 121
                    }
                ),
            ]
        );
        let ok = Ok(secs(0.01));
        assert_eq!(
            log.record(&ok, t0 + secs(8000.0)),
            Some(Say::Recovered { failures: 131 })
        );
        assert_eq!(
            log.record(&ok, t0 + secs(8060.0)),
            None,
            "one INFO line only"
        );
        assert!(
            matches!(
                log.record(&fail, t0 + secs(8100.0)),
                Some(Say::Failed { failures: 1, .. })
            ),
            "a new failure after a success is said at once"
        );
    }

    #[test]
    fn reasons_are_short_and_never_hold_the_url() {
        assert_eq!(PingError::Status(404).to_string(), "HTTP 404");
        assert_eq!(
            PingError::Status(302).to_string(),
            "HTTP 302 (redirects are not followed)"
        );
        let secret = "http://127.0.0.1:1/ping/0f6a-secret-uuid";
        let e = ping_now(secret, secs(1.0)).unwrap_err();
        assert_eq!(e, PingError::Refused);
        let bad = ping_now("http://127.0.0.1:1/x y-secret", secs(1.0)).unwrap_err();
        assert!(!bad.to_string().contains("secret"), "{bad}");
    }
}
