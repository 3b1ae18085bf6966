//! One health check: `GET HEALTH_URL` under one deadline, and the pure
//! [`classify`] that turns a status code and a body into a [`CheckOutcome`].
//!
//! Healthy means a 2xx status and, when the body is a JSON object with a
//! string `status`, that status is one of `HEALTHY_STATUSES` (compared
//! case-insensitively). Everything else is `Failed(Reason)`, whose `Display`
//! is the short reason the log and the alerts show.
//!
//! The deadline covers the whole check: `crate::http` sets the socket's
//! timeouts to what is left of one deadline before every read and write, so
//! connect, the TLS handshake, the request and every body read end by
//! HEALTH_TIMEOUT, and a server that trickles a byte a second still fails
//! then, leaving no thread or socket behind. At most [`MAX_BODY`] bytes are
//! read; a longer body is a failure. Redirects are never followed. https
//! trusts the system's roots plus HEALTH_CA_FILE ([`TlsCache`]).
//!
//! NOTE: name resolution has no timeout of its own. [`Checker`] runs checks
//! on one long-lived helper thread, so that the monitor can stop waiting for
//! one (a stop signal). A panic there is a failed check where panics unwind
//! (`check`, debug builds); in a running release monitor, which aborts on a
//! panic, the panic hook re-executes the monitor instead (`reexec`).
//! The monitor's own code stays single-threaded; the process is not
//! strictly.
//!
//! Not here: deciding what a failure means (that is `policy`), logging.

use std::fmt;
use std::io;
use std::time::{Duration, Instant};

use crate::config::HealthSettings;

/// The most of a body that is read; one byte more makes the check fail.
pub const MAX_BODY: usize = 1 << 20;

/// What one check found, and how long it took.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    pub outcome: CheckOutcome,
    pub latency: Duration,
    /// What a healthy JSON body told of the server (for the history's day
    /// summary); all `None` for a failed check or a body without them.
    pub figures: Figures,
}

/// The health body's memory %, CPU % and database ms, when present.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Figures {
    pub memory_percent: Option<f64>,
    pub cpu_percent: Option<f64>,
    pub db_ms: Option<f64>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum CheckOutcome {
    /// Healthy; `warnings` lists the WARN_* thresholds the body passed.
    Healthy {
        warnings: Vec<String>,
    },
    Failed(Reason),
}

impl CheckOutcome {
    pub fn is_healthy(&self) -> bool {
        matches!(self, CheckOutcome::Healthy { .. })
    }
}

/// Why a check failed: expected failures are data, not errors.
#[derive(Clone, Debug, PartialEq)]
pub enum Reason {
    Refused,
    TimedOut,
    Reset,
    /// A non-2xx, non-3xx status.
    Http(u16),
    /// A 3xx; redirects are not followed.
    Redirect {
        code: u16,
        location: Option<String>,
    },
    /// A JSON `status` that is not one of HEALTHY_STATUSES.
    Status(String),
    BodyTooLarge,
    /// Anything else the connection or the HTTP parser reported.
    Other(String),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Refused => f.write_str("refused"),
            Reason::TimedOut => f.write_str("timed out"),
            Reason::Reset => f.write_str("connection reset"),
            Reason::Http(code) => write!(f, "HTTP {code}"),
            Reason::Redirect {
                code,
                location: Some(to),
            } => {
                write!(
                    f,
                    "HTTP {code} redirect to {} (not followed)",
                    clip(to, 200)
                )
            }
            Reason::Redirect {
                code,
                location: None,
            } => {
                write!(f, "HTTP {code} redirect (not followed)")
            }
            Reason::Status(s) => write!(f, "status {:?}", clip(s, 100)),
            Reason::BodyTooLarge => f.write_str("body over 1 MiB"),
            Reason::Other(s) => f.write_str(s),
        }
    }
}

fn clip(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Runs one check against `settings.health_url` with `settings.health_timeout`.
pub fn check(settings: &HealthSettings) -> Check {
    check_with(settings, &mut TlsCache::default())
}

/// [`check`] with the TLS configuration kept in `tls` between checks.
pub fn check_with(settings: &HealthSettings, tls: &mut TlsCache) -> Check {
    let started = Instant::now();
    let (outcome, figures) = match fetch(settings, tls) {
        Ok((code, body, location)) => {
            let (mut outcome, figures) = classify_with_figures(code, &body, settings);
            if let CheckOutcome::Failed(Reason::Redirect { location: l, .. }) = &mut outcome {
                *l = location;
            }
            (outcome, figures)
        }
        Err(reason) => (CheckOutcome::Failed(reason), Figures::default()),
    };
    Check {
        outcome,
        latency: started.elapsed(),
        figures,
    }
}

/// Runs checks on one long-lived helper thread, so that the caller can stop
/// waiting for one (a stop signal) without waiting out HEALTH_TIMEOUT.
///
/// NOTE: why a thread of our own. A check blocks for up to HEALTH_TIMEOUT
/// (a name lookup longer) and cannot be interrupted, and SPEC 6 wants SIGTERM to end the loop within a
/// second however long HEALTH_TIMEOUT is. One thread for the monitor's life,
/// not one per check: a thread start costs more than the check itself. It
/// also keeps a panic inside the HTTP client (none is known; the client
/// parses hostile input) from taking `check` down where panics unwind: it
/// becomes a failed check, and the next check starts a new helper. (A running
/// monitor re-executes itself on any panic first: see `reexec`.)
pub struct Checker {
    settings: HealthSettings,
    worker: Option<Worker>,
}

struct Worker {
    /// A job is the CPU the caller runs on (see [`Checker::check`]).
    jobs: std::sync::mpsc::Sender<Option<usize>>,
    results: std::sync::mpsc::Receiver<Check>,
    /// A check was asked for and its result not taken yet.
    pending: bool,
}

impl Checker {
    pub fn new(settings: &HealthSettings) -> Checker {
        Checker {
            settings: settings.clone(),
            worker: None,
        }
    }

    fn spawn(&self) -> Option<Worker> {
        let (jobs, job_rx) = std::sync::mpsc::channel::<Option<usize>>();
        let (result_tx, results) = std::sync::mpsc::channel();
        let settings = self.settings.clone();
        std::thread::Builder::new()
            .name("health-check".into())
            .spawn(move || {
                let mut pinned = None;
                let mut tls = TlsCache::default();
                while let Ok(cpu) = job_rx.recv() {
                    // NOTE: the check runs where the loop runs: a hand-over
                    // within one CPU is a context switch, across CPUs a
                    // wake-up interrupt — measured here, under a hypervisor,
                    // 0.4 ms of CPU per check against 0.18 ms.
                    if cpu.is_some()
                        && cpu != pinned
                        && crate::sys::pin_current_thread(cpu.unwrap_or(0)).is_ok()
                    {
                        pinned = cpu;
                    }
                    if result_tx.send(check_with(&settings, &mut tls)).is_err() {
                        return;
                    }
                }
            })
            .ok()?;
        Some(Worker {
            jobs,
            results,
            pending: false,
        })
    }

    /// One check; `None` when `give_up()` turned true first (it is asked
    /// every [`GIVE_UP_POLL`] while the check runs). An abandoned check still
    /// ends at its own deadline; the next call waits for it first.
    pub fn check(&mut self, give_up: impl Fn() -> bool) -> Option<Check> {
        use std::sync::mpsc::RecvTimeoutError;
        let started = Instant::now();
        if self.worker.is_none() {
            self.worker = self.spawn();
        }
        let Some(worker) = self.worker.as_mut() else {
            // No thread to be had: check here, uninterruptibly.
            return Some(check(&self.settings));
        };
        // `true` once this call's own check was asked for.
        let mut asked = false;
        let mut asked_at = started;
        let overdue = self.settings.health_timeout + OVERDUE_GRACE;
        loop {
            if !worker.pending {
                if asked || worker.jobs.send(crate::sys::current_cpu()).is_err() {
                    break;
                }
                worker.pending = true;
                asked = true;
                asked_at = Instant::now();
            }
            if give_up() {
                return None;
            }
            if asked_at.elapsed() > overdue {
                // Past the check's own deadline: only a name lookup (no
                // timeout of its own) can hold it so. Leave that helper to
                // it (it ends when the lookup does); a new one next time.
                self.worker = None;
                return Some(Check {
                    outcome: CheckOutcome::Failed(Reason::TimedOut),
                    latency: started.elapsed(),
                    figures: Figures::default(),
                });
            }
            match worker.results.recv_timeout(GIVE_UP_POLL) {
                Ok(c) => {
                    worker.pending = false;
                    if asked {
                        return Some(c);
                    } // else: the result of an abandoned check; ask again
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        // The helper died (a panic in the HTTP client): a failed check, and
        // a new helper next time.
        self.worker = None;
        Some(Check {
            outcome: CheckOutcome::Failed(Reason::Other(CLIENT_FAILED.into())),
            latency: started.elapsed(),
            figures: Figures::default(),
        })
    }
}

/// How long past HEALTH_TIMEOUT [`Checker::check`] waits for its helper.
const OVERDUE_GRACE: Duration = Duration::from_secs(1);

/// How often [`Checker::check`] asks whether to give up.
pub const GIVE_UP_POLL: Duration = Duration::from_millis(50);

/// The reason of a check whose HTTP client panicked on the response.
const CLIENT_FAILED: &str = "malformed response (the HTTP client failed on it)";

/// The TLS configuration of https checks: built at the first one and kept
/// (the system bundle and HEALTH_CA_FILE are read then; a failure to build
/// it is a failed check, and it is tried again at the next).
#[derive(Default)]
pub struct TlsCache(Option<std::sync::Arc<rustls::ClientConfig>>);

impl TlsCache {
    fn get(
        &mut self,
        settings: &HealthSettings,
    ) -> Result<std::sync::Arc<rustls::ClientConfig>, Reason> {
        if let Some(config) = &self.0 {
            return Ok(config.clone());
        }
        use crate::tls::{CaFileError, SetupError};
        let config = crate::tls::default_client_config(settings.health_ca_file.as_deref())
            .map_err(|e| match e {
                SetupError::CaFile(CaFileError(path, e)) => {
                    Reason::Other(format!("HEALTH_CA_FILE {}: {e}", path.display()))
                }
                SetupError::Rustls(e) => Reason::Other(e),
            })?;
        self.0 = Some(config.clone());
        Ok(config)
    }
}

/// The GET itself: (status code, at most MAX_BODY + 1 bytes of body, Location).
fn fetch(
    settings: &HealthSettings,
    tls: &mut TlsCache,
) -> Result<(u16, Vec<u8>, Option<String>), Reason> {
    let url = crate::http::Url::parse(&settings.health_url).map_err(Reason::Other)?;
    let tls = match url.https {
        true => Some(tls.get(settings)?),
        false => None,
    };
    let request = crate::http::Request {
        method: "GET",
        url: &url,
        headers: &[],
        body: &[],
        body_limit: MAX_BODY + 1,
        tls,
    };
    let response = crate::http::send(&request, settings.health_timeout).map_err(from_http)?;
    Ok((response.status, response.body, response.location))
}

fn from_http(err: crate::http::Error) -> Reason {
    use crate::http::Error as E;
    match err {
        E::Io(e) => from_io(e),
        E::Tls(e) => {
            let mut reason = crate::http::tls_reason(&e);
            if matches!(
                e,
                rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
            ) {
                reason.push_str(" (set HEALTH_CA_FILE?)");
            }
            Reason::Other(reason)
        }
        other => Reason::Other(other.to_string()),
    }
}

fn from_io(err: io::Error) -> Reason {
    use crate::http::IoClass;
    match crate::http::io_class(&err) {
        IoClass::Refused => Reason::Refused,
        IoClass::TimedOut => Reason::TimedOut,
        IoClass::Reset => Reason::Reset,
        IoClass::ClosedEarly => Reason::Other("connection closed early".into()),
        IoClass::Other => Reason::Other(err.to_string()),
    }
}

/// Pure: what a response with this status code and body means.
pub fn classify(code: u16, body: &[u8], settings: &HealthSettings) -> CheckOutcome {
    classify_with_figures(code, body, settings).0
}

/// [`classify`], and the body's figures when it was healthy.
pub fn classify_with_figures(
    code: u16,
    body: &[u8],
    settings: &HealthSettings,
) -> (CheckOutcome, Figures) {
    let failed = |r| (CheckOutcome::Failed(r), Figures::default());
    if (300..400).contains(&code) {
        return failed(Reason::Redirect {
            code,
            location: None,
        });
    }
    if !(200..300).contains(&code) {
        return failed(Reason::Http(code));
    }
    if body.len() > MAX_BODY {
        return failed(Reason::BodyTooLarge);
    }
    // Not JSON, or JSON nested deeper than serde_json's limit: the 2xx decides.
    let Ok(serde_json::Value::Object(json)) = serde_json::from_slice::<serde_json::Value>(body)
    else {
        let warnings = Vec::new();
        return (CheckOutcome::Healthy { warnings }, Figures::default());
    };
    if let Some(serde_json::Value::String(status)) = json.get("status") {
        let healthy = settings
            .healthy_statuses
            .iter()
            .any(|ok| ok.eq_ignore_ascii_case(status.trim()));
        if !healthy {
            return failed(Reason::Status(status.clone()));
        }
    }
    let (warnings, figures) = warnings(&json, settings);
    (CheckOutcome::Healthy { warnings }, figures)
}

/// The WARN_* thresholds a healthy body passes, as readable lines, and the
/// figures they were judged on.
fn warnings(
    json: &serde_json::Map<String, serde_json::Value>,
    s: &HealthSettings,
) -> (Vec<String>, Figures) {
    let num = |path: &[&str]| -> Option<f64> {
        let mut v = json.get(path[0])?;
        for key in &path[1..] {
            v = v.get(key)?;
        }
        v.as_f64().filter(|x| x.is_finite())
    };
    let mut out = Vec::new();
    let mut figures = Figures {
        memory_percent: None,
        cpu_percent: num(&["system", "cpuUsage", "percent"]),
        db_ms: num(&["services", "database", "responseTime"]),
    };
    if let (Some(used), Some(total)) = (num(&["memory", "used"]), num(&["memory", "total"])) {
        if total > 0.0 {
            let percent = used / total * 100.0;
            figures.memory_percent = Some(percent);
            if percent > s.warn_memory_percent {
                out.push(format!(
                    "memory at {percent:.1}% (used {used} of {total}), above {}%",
                    s.warn_memory_percent
                ));
            }
        }
    }
    if let Some(cpu) = num(&["system", "cpuUsage", "percent"]) {
        if cpu > s.warn_cpu_percent {
            out.push(format!("CPU at {cpu}%, above {}%", s.warn_cpu_percent));
        }
    }
    if let Some(ms) = num(&["services", "database", "responseTime"]) {
        if ms > s.warn_db_response_ms {
            out.push(format!(
                "database response time {ms} ms, above {} ms",
                s.warn_db_response_ms
            ));
        }
    }
    (out, figures)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn settings() -> HealthSettings {
        HealthSettings {
            health_url: "http://127.0.0.1:1/health".into(),
            health_timeout: Duration::from_secs(1),
            healthy_statuses: ["healthy", "ok", "pass", "up"].map(String::from).to_vec(),
            warn_memory_percent: 80.0,
            warn_cpu_percent: 50.0,
            warn_db_response_ms: 100.0,
            health_ca_file: None,
        }
    }

    fn failed(code: u16, body: &str) -> String {
        match classify(code, body.as_bytes(), &settings()) {
            CheckOutcome::Failed(r) => r.to_string(),
            other => panic!("expected a failure for {code} {body:?}, got {other:?}"),
        }
    }

    fn warnings_of(body: &str) -> Vec<String> {
        match classify(200, body.as_bytes(), &settings()) {
            CheckOutcome::Healthy { warnings } => warnings,
            other => panic!("expected healthy for {body:?}, got {other:?}"),
        }
    }

    #[test]
    fn healthy_needs_2xx_and_an_accepted_status() {
        for (code, body) in [
            (200, r#"{"status":"healthy"}"#),
            (204, ""),
            (200, r#"{"status":"OK"}"#),
            (200, r#"{"status":" up "}"#),
            (200, "plain text"),
            (200, r#"{"status": 1}"#),
            (200, r#"["not", "an", "object"]"#),
            (299, r#"{"no_status": true}"#),
        ] {
            assert!(
                classify(code, body.as_bytes(), &settings()).is_healthy(),
                "{code} {body}"
            );
        }
    }

    #[test]
    fn failure_reasons_are_short_and_specific() {
        assert_eq!(failed(503, r#"{"status":"unhealthy"}"#), "HTTP 503");
        assert_eq!(failed(404, ""), "HTTP 404");
        assert_eq!(
            failed(200, r#"{"status":"unhealthy"}"#),
            r#"status "unhealthy""#
        );
        assert_eq!(failed(302, ""), "HTTP 302 redirect (not followed)");
        assert_eq!(failed(199, ""), "HTTP 199");
    }

    #[test]
    fn body_over_one_mib_fails() {
        let big = vec![b' '; MAX_BODY + 1];
        assert_eq!(
            classify(200, &big, &settings()),
            CheckOutcome::Failed(Reason::BodyTooLarge)
        );
        assert!(classify(200, &big[..MAX_BODY], &settings()).is_healthy());
    }

    #[test]
    fn hostile_bodies_are_a_clean_pass_or_fail() {
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        assert!(classify(200, deep.as_bytes(), &settings()).is_healthy());
        assert!(classify(200, b"\xff\xfe{\"status\":\"healthy\"}", &settings()).is_healthy());
        let long_status = format!(r#"{{"status":"{}"}}"#, "x".repeat(10_000));
        assert!(failed(200, &long_status).len() < 120);
    }

    #[test]
    fn body_figures_are_kept_for_the_history() {
        let body = br#"{"status":"healthy","memory":{"used":150,"total":1000},
            "system":{"cpuUsage":{"percent":5.5}},"services":{"database":{"responseTime":45}}}"#;
        let (_, f) = classify_with_figures(200, body, &settings());
        assert_eq!(f.memory_percent, Some(15.0));
        assert_eq!((f.cpu_percent, f.db_ms), (Some(5.5), Some(45.0)));
        let (_, none) = classify_with_figures(503, body, &settings());
        assert_eq!(none, Figures::default());
    }

    #[test]
    fn thresholds_warn_but_stay_healthy() {
        let calm = r#"{"status":"healthy","memory":{"used":150,"total":16384},
            "system":{"cpuUsage":{"percent":5.2}},"services":{"database":{"responseTime":45}}}"#;
        assert!(warnings_of(calm).is_empty());
        let busy = r#"{"status":"healthy","memory":{"used":900,"total":1000},
            "system":{"cpuUsage":{"percent":75}},"services":{"database":{"responseTime":250}}}"#;
        let w = warnings_of(busy);
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(w[0].starts_with("memory at 90.0%"), "{w:?}");
        assert!(w[1].starts_with("CPU at 75%"), "{w:?}");
        assert!(w[2].starts_with("database response time 250 ms"), "{w:?}");
        // A zero total or a missing field is no warning, not a division by zero.
        assert!(warnings_of(r#"{"memory":{"used":5,"total":0}}"#).is_empty());
    }

    #[test]
    fn connection_closed_without_an_answer_is_no_http_503() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        // Reads the request, then closes without a word, like a server
        // that dies mid-request.
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let (mut head, mut buf) = (Vec::new(), [0u8; 1024]);
            // The whole request, so that the close is a FIN, not a reset.
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
        });
        let mut s = settings();
        s.health_url = format!("http://127.0.0.1:{port}/health");
        let c = check(&s);
        server.join().unwrap();
        assert_eq!(
            c.outcome,
            CheckOutcome::Failed(Reason::Other(
                "no HTTP answer (connection closed or not HTTP)".into()
            ))
        );
    }

    #[test]
    fn checker_stops_waiting_when_told_to() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut s = settings();
        s.health_url = format!("http://127.0.0.1:{port}/health");
        s.health_timeout = Duration::from_secs(5);
        // Accepted by the kernel, never answered: the check stalls.
        let t = Instant::now();
        let mut checker = Checker::new(&s);
        let given_up = checker.check(|| t.elapsed() > Duration::from_millis(100));
        assert_eq!(given_up, None);
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        drop(listener);
        // Told nothing, it waits for the abandoned check, then runs its own.
        let c = checker.check(|| false).unwrap();
        assert_eq!(c.outcome, CheckOutcome::Failed(Reason::Refused));
        let again = checker.check(|| false).unwrap();
        assert_eq!(again.outcome, CheckOutcome::Failed(Reason::Refused));
    }

    #[test]
    fn refused_connection_is_reported_as_refused() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut s = settings();
        s.health_url = format!("http://127.0.0.1:{port}/health");
        let c = check(&s);
        assert_eq!(c.outcome, CheckOutcome::Failed(Reason::Refused));
    }
}
