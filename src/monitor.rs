//! The main loop, and the one-shot subcommands that share its pieces
//! (`check`, `status`).
//!
//! Each turn: look at the shutdown flag; reap ended children and see whether
//! the server exited; feed the events and a `Tick` to the policy; carry out
//! every action it returns (a check, a restart, an alert, a log line), feeding
//! results back as events; save the state; then wait until the policy's next
//! wake-up — on the server's pidfd and the signal wake-up socket at the same
//! time, so that a death or a signal ends the wait at once and an idle monitor
//! costs nothing.
//!
//! Single-threaded: the only other threads are ctrlc's signal thread, the
//! long-lived one that runs the checks (so that a stop signal
//! need not wait for HEALTH_TIMEOUT; see `health::Checker`); a webhook POST's
//! thread while one is under way; short-lived watchdog pingers during a long
//! stop or delivery (`Notifier::keep_alive`); and, for the length of one email delivery, a
//! current-thread tokio runtime (plus tokio's thread for resolving a host
//! name). An idle monitor has three threads: this one, ctrlc's and the
//! checks' helper.

use std::collections::VecDeque;
use std::fmt;
use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::alert;
use crate::config::Config;
use crate::health::{self, CheckOutcome};
use crate::lock::{lock_holder, Lock, LockError};
use crate::logging::utc_iso8601_millis;
use crate::notify::Notifier;
use crate::policy::{Action, Begin, Event, Note, Policy, StartKind};
use crate::server::{self, Adoption, Launch, PidFile, Server};
use crate::state::PlannedRestart;
use crate::state::{self, LastCheck, State};
use crate::sys;

/// How often the state file is rewritten when only the last check changed.
const STATE_REFRESH: Duration = Duration::from_secs(5);

/// A fault of the monitor itself (not of the server): exit status 1.
#[derive(Debug)]
pub enum RunError {
    AlreadyRunning {
        dir: PathBuf,
        pid: Option<u32>,
    },
    Io {
        what: String,
        path: PathBuf,
        err: io::Error,
    },
    Setup(String),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::AlreadyRunning { dir, pid } => {
                let who = pid.map_or(String::new(), |p| format!(" (pid {p})"));
                write!(
                    f,
                    "another server-monitor{who} is already running with LOG_DIR {}",
                    dir.display()
                )
            }
            RunError::Io { what, path, err } => {
                write!(f, "cannot {what} {}: {err}", path.display())
            }
            RunError::Setup(s) => f.write_str(s),
        }
    }
}

fn io_err(what: &str, path: &Path) -> impl FnOnce(io::Error) -> RunError {
    let (what, path) = (what.to_string(), path.to_path_buf());
    move |err| RunError::Io { what, path, err }
}

/// Runs the monitor until SIGINT or SIGTERM.
pub fn run(cfg: &Config) -> Result<(), RunError> {
    let dir = &cfg.log.log_dir;
    // Descriptors our own parent left open (without close-on-exec) are not
    // the server's: none of them reaches it or the log writers.
    sys::cloexec_inherited_fds();
    crate::files::create_dir_0750(dir).map_err(io_err("create the log directory", dir))?;
    let lock = Lock::acquire(dir).map_err(|e| match e {
        LockError::Held { pid } => RunError::AlreadyRunning {
            dir: dir.clone(),
            pid,
        },
        LockError::Io { what, path, err } => RunError::Io {
            what: what.to_string(),
            path,
            err,
        },
    })?;
    crate::logging::init_monitor(&crate::logging::Settings {
        dir: dir.clone(),
        level: cfg.log.log_level,
        max_bytes: cfg.log.log_max_bytes,
        backups: cfg.log.log_backups,
        console: true,
    })
    .map_err(|e| RunError::Setup(format!("cannot set up logging: {e}")))?;
    for warning in &cfg.warnings {
        log::warn!("{warning}");
    }
    if let Some(panic) = crate::reexec::previous_panic() {
        log::error!(panic = panic.as_str(); "the monitor was re-executed after a panic; adopting the server");
    }
    crate::reexec::install();
    if let Some(who) = lock.squatter() {
        log::warn!(holder = who; "another process holds this LOG_DIR's lock socket name; relying on the lock file alone");
    }

    warn_if_secret_file_readable(cfg);
    let signals = Signals::install()?;
    if let Err(e) = sys::set_child_subreaper() {
        log::warn!(error = e.to_string().as_str(); "cannot become a child subreaper; orphaned grandchildren of the server will not be reaped here");
    }
    // Issue 13: the status endpoints (a bind error is a runtime error naming STATUS_LISTEN).
    let live = crate::status::live::Live::new(cfg, Instant::now()).map_err(RunError::Setup)?;
    Monitor::new(cfg, signals, lock, live).run()
}

/// Fault injection for the tests, in debug builds only: with
/// `SERVER_MONITOR_TEST_PANIC_AT_CHECK=N` the monitor panics at its N-th
/// check, unless it was re-executed after a panic already.
#[cfg(debug_assertions)]
fn test_fault_panic() {
    use std::sync::atomic::AtomicU32;
    static CHECKS: AtomicU32 = AtomicU32::new(0);
    let n = CHECKS.fetch_add(1, Ordering::Relaxed) + 1;
    let at = std::env::var("SERVER_MONITOR_TEST_PANIC_AT_CHECK")
        .ok()
        .and_then(|v| v.parse::<u32>().ok());
    if at == Some(n) && crate::reexec::previous_panic().is_none() {
        panic!("test fault: SERVER_MONITOR_TEST_PANIC_AT_CHECK={n}");
    }
}

/// An env file that holds SMTP_PASSWORD should be readable by its owner (and
/// group) only; say so at start when other users can read it.
fn warn_if_secret_file_readable(cfg: &Config) {
    use std::os::unix::fs::PermissionsExt;
    let Some(crate::config::Source::EnvFile(path)) = cfg.source("SMTP_PASSWORD") else {
        return;
    };
    if let Ok(meta) = fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o004 != 0 {
            log::warn!(path = path.display().to_string().as_str(), mode = format!("{mode:04o}").as_str();
                "the env file holds SMTP_PASSWORD and other users can read it: chmod 600 it");
        }
    }
}

/// SIGINT/SIGTERM (and SIGHUP unless it was ignored at start) set the
/// shutdown flag; those and SIGUSR1 write to a socket the loop polls.
struct Signals {
    shutdown: Arc<AtomicBool>,
    wake_rx: UnixDatagram,
    _wake_tx: UnixDatagram,
}

impl Signals {
    fn install() -> Result<Signals, RunError> {
        let setup = |e: io::Error| RunError::Setup(format!("cannot set up signal handling: {e}"));
        let (wake_tx, wake_rx) = UnixDatagram::pair().map_err(setup)?;
        wake_tx.set_nonblocking(true).map_err(setup)?;
        wake_rx.set_nonblocking(true).map_err(setup)?;
        let shutdown = Arc::new(AtomicBool::new(false));
        // NOTE: ctrlc's `termination` feature takes SIGHUP over too, which
        // would undo `nohup`: remember whether it was ignored and put it back.
        let hup_ignored = sys::is_signal_ignored(sys::SIGHUP);
        let flag = shutdown.clone();
        let tx = wake_tx.try_clone().map_err(setup)?;
        ctrlc::set_handler(move || {
            flag.store(true, Ordering::SeqCst);
            let _ = tx.send(&[1]);
        })
        .map_err(|e| RunError::Setup(format!("cannot set up signal handling: {e}")))?;
        if hup_ignored {
            sys::ignore_signal(sys::SIGHUP).map_err(setup)?;
        }
        sys::install_usr1_handler(wake_tx.as_fd()).map_err(setup)?;
        Ok(Signals {
            shutdown,
            wake_rx,
            _wake_tx: wake_tx,
        })
    }

    fn shutdown_requested(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }

    fn drain(&self) {
        let mut buf = [0u8; 64];
        while self.wake_rx.recv(&mut buf).is_ok() {}
    }
}

struct Monitor<'a> {
    cfg: &'a Config,
    checker: health::Checker,
    lock: Lock,
    signals: Signals,
    policy: Policy,
    server: Option<Server>,
    /// A healthy server answers that this monitor did not start (found at
    /// start, or started by hand while none of ours ran).
    foreign: bool,
    /// The last stop could not make sure the old server is gone (no
    /// STOP_COMMAND, it still answers): until a start is verified, a healthy
    /// answer counts only if our server holds the listening socket.
    unstoppable: bool,
    host: String,
    state: State,
    /// The state last written, less `last_check` and `updated`.
    saved: Option<State>,
    written_check: Option<LastCheck>,
    next_sweep: Instant,
    state_written: Instant,
    /// When the lock file and server.pid are next looked at.
    next_restore: Instant,
    notify: Notifier,
    /// Alert delivery: the outbox and the channels.
    alerts: alert::Dispatcher,
    /// Issue 13: the status listener, /metrics figures, recent checks.
    live: crate::status::live::Live,
}

impl<'a> Monitor<'a> {
    fn new(
        cfg: &'a Config,
        signals: Signals,
        lock: Lock,
        live: crate::status::live::Live,
    ) -> Monitor<'a> {
        let now = Instant::now();
        let started = utc_iso8601_millis(SystemTime::now());
        let state = State {
            monitor_pid: std::process::id(),
            service_name: cfg.alert.service_name.clone(),
            health_url: cfg.health.health_url.clone(),
            max_restart_attempts: cfg.policy.max_restart_attempts,
            started: started.clone(),
            updated: started,
            ..State::default()
        };
        let mut alerts = alert::Dispatcher::load(cfg, now);
        alerts.cancel_on(signals.shutdown.clone());
        Monitor {
            cfg,
            checker: health::Checker::new(&cfg.health),
            lock,
            signals,
            policy: Policy::new(cfg.policy.clone(), cfg.server.server_command.is_some(), now),
            server: None,
            foreign: false,
            unstoppable: false,
            host: cfg.hostname.clone(),
            state,
            saved: None,
            written_check: None,
            next_sweep: now,
            state_written: now,
            next_restore: now,
            notify: Notifier::from_env(now),
            alerts,
            live,
        }
    }

    fn run(mut self) -> Result<(), RunError> {
        if let Some(every) = self.notify.watchdog() {
            let waits = [
                ("STOP_TIMEOUT", self.cfg.server.stop_timeout),
                ("SMTP_TIMEOUT", self.cfg.alert.smtp_timeout),
            ];
            for risk in crate::notify::watchdog_risks(every, &waits) {
                log::warn!("{risk}");
            }
        }
        self.resume();
        let begin = self.begin();
        let mut events = VecDeque::from([Event::Begin(begin)]);
        while !self.signals.shutdown_requested() {
            // One SMTP_TIMEOUT for all the deliveries of this turn.
            self.alerts.begin_turn();
            if sys::take_usr1() {
                events.push_back(self.planned_restart_requested());
            }
            if let Some(cause) = self.server_exit() {
                events.push_back(Event::Exited(cause));
            }
            events.push_back(Event::Tick);
            while let Some(event) = events.pop_front() {
                // NOTE: a batch is always carried out whole, even when a
                // signal came meanwhile: it may hold an alert.
                for action in self.policy.handle(event, Instant::now()) {
                    if let Some(next) = self.act(action) {
                        events.push_back(next);
                    }
                }
            }
            self.housekeeping();
            self.replace_log_writers();
            if self
                .alerts
                .next_due()
                .is_some_and(|at| at <= Instant::now())
            {
                let _fed = self.notify.keep_alive(self.cfg.alert.smtp_timeout);
                self.alerts.retry_due(Instant::now());
            }
            self.save_state();
            self.tell_systemd();
            // Issue 13: the figures of this turn, then serve what is ready.
            let snap = self.policy.snapshot();
            self.live
                .turn(&snap, &self.state, &self.alerts, Instant::now());
            self.wait();
        }
        self.shut_down();
        Ok(())
    }

    /// Takes over the attempt count and a give-up from the state file a
    /// monitor that did not stop on purpose (killed, crashed) left recently.
    fn resume(&mut self) {
        let Ok(old) = state::read(&self.cfg.log.log_dir) else {
            return;
        };
        let p = &self.cfg.policy;
        let window =
            p.restart_cooldown.max(p.check_interval.saturating_mul(3)) + Duration::from_secs(5);
        let Some(r) = state::resumable(
            &old,
            &self.cfg.health.health_url,
            crate::logging::unix_millis(SystemTime::now()),
            window,
        ) else {
            return;
        };
        log::warn!(attempts = r.attempts, given_up = r.given_up, previous_pid = old.monitor_pid;
            "resuming from the state file the previous monitor left (it did not stop on purpose)");
        self.state.restarts_total = old.restarts_total;
        self.state.last_restart = old.last_restart;
        self.policy.resume(r, Instant::now());
    }

    /// Adopt, watch or start: what the monitor finds decides how it begins.
    fn begin(&mut self) -> Begin {
        let dir = &self.cfg.log.log_dir;
        match PidFile::read(dir) {
            Some(Ok(record)) => match Server::adopt(&record) {
                Adoption::Adopted(s) => {
                    log::info!(pid = s.pid; "adopted the server this monitor started earlier");
                    self.state.server_pid = Some(s.pid);
                    self.server = Some(s);
                    return Begin::Watch;
                }
                Adoption::Gone => {
                    log::info!(pid = record.pid; "the server recorded in server.pid has ended");
                    PidFile::remove(dir);
                }
                Adoption::Reused { now } => {
                    log::warn!(pid = record.pid, now = now.as_str(); "the pid in server.pid now belongs to another process: not adopted, not signalled");
                    PidFile::remove(dir);
                }
            },
            Some(Err(e)) => {
                log::warn!(error = e.as_str(); "server.pid cannot be parsed; replacing it");
                PidFile::remove(dir);
            }
            None => {}
        }
        let shutdown = &self.signals.shutdown;
        let probe = self.checker.check(|| shutdown.load(Ordering::SeqCst));
        if probe.is_some_and(|p| p.outcome.is_healthy()) {
            log::warn!(url = self.cfg.health.health_url.as_str(); "a healthy server already answers but was not started by this monitor: watching it, not starting another");
            self.foreign = true;
            return Begin::Watch;
        }
        if self.cfg.server.server_command.is_some() {
            Begin::Start
        } else {
            log::info!(url = self.cfg.health.health_url.as_str(); "no SERVER_COMMAND: watching and alerting only");
            Begin::Watch
        }
    }

    /// Reaps ended children; `Some(cause)` when the server has exited.
    fn server_exit(&mut self) -> Option<String> {
        let reaped = sys::reap_children();
        let cause = self.server.as_mut()?.poll_exit(&reaped)?;
        let mut s = self.server.take()?;
        log::error!(pid = s.pid, cause = cause.to_string().as_str(); "server exited unexpectedly");
        // SPEC step 4: what is left of the group is stopped even when its
        // leader already died; a worker or grandchild must not outlive it
        // (nor hold the port or the capture pipes against the next start).
        if server::group_alive(s.pgid) {
            let _fed = self.notify.keep_alive(self.stop_bound());
            let stopped = s.stop(self.cfg.server.stop_timeout);
            log::warn!(pgid = s.pgid, killed = stopped.killed;
                "stopped what was left of the server's process group");
        }
        PidFile::remove(&self.cfg.log.log_dir);
        self.state.server_pid = None;
        Some(cause.to_string())
    }

    /// Carries out one action; returns the event that reports its result.
    fn act(&mut self, action: Action) -> Option<Event> {
        match action {
            Action::Check => self.check().map(|outcome| self.judge(outcome)),
            Action::Start(kind) => self.start(kind),
            Action::Alert(a) => {
                self.alert(&a);
                None
            }
            Action::Note(n) => {
                log::log!(n.level(), "{n}");
                self.planned_restart_outcome(&n);
                None
            }
        }
    }

    /// One check, logged and recorded; `None` when a stop signal came while
    /// it ran (the loop then ends without waiting for its deadline).
    fn check(&mut self) -> Option<CheckOutcome> {
        #[cfg(debug_assertions)]
        test_fault_panic();
        let verifying = self.policy.is_starting();
        let shutdown = &self.signals.shutdown;
        let Some(c) = self.checker.check(|| shutdown.load(Ordering::SeqCst)) else {
            log::debug!("health check abandoned: the monitor is stopping");
            return None;
        };
        let ms = (c.latency.as_secs_f64() * 10_000.0).round() / 10.0;
        let failures = self.policy.snapshot().failures;
        match &c.outcome {
            CheckOutcome::Healthy { warnings } => {
                log::debug!(latency_ms = ms, verifying = verifying; "health check passed");
                for w in warnings {
                    log::warn!(latency_ms = ms, warning = w.as_str(); "health threshold passed");
                }
            }
            CheckOutcome::Failed(reason) => {
                let reason = reason.to_string();
                if verifying {
                    log::debug!(latency_ms = ms, reason = reason.as_str(); "startup probe failed");
                } else {
                    log::warn!(latency_ms = ms, reason = reason.as_str(), failures = failures + 1, threshold = self.cfg.policy.failure_threshold;
                        "health check failed");
                }
            }
        }
        self.state.last_check = Some(LastCheck {
            time: utc_iso8601_millis(SystemTime::now()),
            healthy: c.outcome.is_healthy(),
            latency_ms: ms,
            reason: match &c.outcome {
                CheckOutcome::Failed(r) => Some(r.to_string()),
                CheckOutcome::Healthy { .. } => None,
            },
        });
        let recorded = self.state.last_check.as_ref()?;
        self.live.checked(recorded, c.latency); // issue 13
        Some(c.outcome)
    }

    /// What a check's outcome means given the processes: a healthy answer
    /// while a start is verified counts only if the new server is alive (and,
    /// when an old one could not be stopped, holds the port); a healthy
    /// answer while no server of ours runs comes from a foreign one.
    fn judge(&mut self, outcome: CheckOutcome) -> Event {
        if !outcome.is_healthy() || self.cfg.server.server_command.is_none() {
            return Event::Checked(outcome);
        }
        if self.policy.is_starting() {
            if let Some(cause) = self.server_exit() {
                log::warn!(cause = cause.as_str(); "a healthy answer came, but the new server has already exited: it came from another process");
                return Event::Exited(cause);
            }
            let Some(pgid) = self
                .server
                .as_ref()
                .filter(|s| s.is_running())
                .map(|s| s.pgid)
            else {
                return Event::Checked(outcome);
            };
            if self.unstoppable {
                let ours = local_port(&self.cfg.health.health_url)
                    .and_then(|port| server::group_listens_on(pgid, port));
                if ours != Some(true) {
                    log::debug!("startup probe answered, but not by the new server: the old server that could not be stopped still answers");
                    return Event::Checked(CheckOutcome::Failed(health::Reason::Other(
                        "the old server that could not be stopped still answers, not the new one"
                            .into(),
                    )));
                }
                self.unstoppable = false;
            }
            // Verified: record the command line it has now (a wrapper may
            // have exec'd the real server meanwhile).
            self.update_pid_file();
        } else if self.server.is_none() && !self.foreign {
            log::warn!(url = self.cfg.health.health_url.as_str(); "a healthy server answers that this monitor did not start: it will be stopped with STOP_COMMAND before a restart");
            self.foreign = true;
        }
        Event::Checked(outcome)
    }

    /// Rewrites `server.pid` when the server's command line changed.
    fn update_pid_file(&mut self) {
        let dir = &self.cfg.log.log_dir;
        if let Some(s) = self.server.as_mut() {
            match s.update_record(dir) {
                Some(Ok(())) => {
                    log::debug!(pid = s.pid; "the server's command line changed (exec); server.pid updated")
                }
                Some(Err(e)) => {
                    log::warn!(error = e.to_string().as_str(); "cannot write server.pid")
                }
                None => {}
            }
        }
    }

    /// Stops the server if `kind` is a restart, then starts a new one;
    /// `None` when a stop signal came meanwhile: then nothing is spawned
    /// (the loop ends at once, and there is nothing left to stop).
    fn start(&mut self, kind: StartKind) -> Option<Event> {
        let dir = &self.cfg.log.log_dir;
        match &kind {
            StartKind::First => {}
            StartKind::Restart { attempt, cause, .. } => {
                log::info!(attempt = *attempt, max_attempts = self.cfg.policy.max_restart_attempts, cause = cause.as_str();
                    "restarting the server");
            }
            StartKind::Retry { cause, .. } => {
                log::info!(cause = cause.as_str(); "trying one more restart after giving up (RETRY_AFTER_GIVE_UP)");
            }
            StartKind::Planned { by } => {
                log::info!(by = by.as_str(); "planned restart");
            }
        }
        if kind.is_restart() {
            self.stop_server();
            self.state.restarts_total += 1;
            self.state.last_restart = Some(utc_iso8601_millis(SystemTime::now()));
            // Issue 13: counted by cause, an incident on the status page.
            let at = self.state.last_restart.as_deref().unwrap_or("");
            self.live.restarting(&kind, at);
        }
        // Never spawn after a stop signal (issue 8, item 9): the new server
        // would only be stopped again on the way out.
        if self.signals.shutdown_requested() {
            log::info!("the monitor is stopping: no new server is started");
            return None;
        }
        let Some(command) = &self.cfg.server.server_command else {
            return Some(Event::SpawnFailed("no SERVER_COMMAND".into()));
        };
        let launch = Launch {
            command,
            workdir: self.cfg.server.server_workdir.as_deref(),
            log_dir: dir,
            log_max_bytes: self.cfg.log.log_max_bytes,
            log_backups: self.cfg.log.log_backups,
        };
        match Server::spawn(&launch) {
            Ok(s) => {
                log::info!(pid = s.pid, command = command.join(" ").as_str(); "server started");
                self.state.server_pid = Some(s.pid);
                self.server = Some(s);
                Some(Event::Spawned)
            }
            Err(e) => {
                log::error!(error = e.to_string().as_str(); "cannot start the server");
                Some(Event::SpawnFailed(e.to_string()))
            }
        }
    }

    /// Stops the server this monitor runs, or a foreign one through
    /// STOP_COMMAND; leaves no server.pid behind.
    fn stop_server(&mut self) {
        let timeout = self.cfg.server.stop_timeout;
        // The loop does not turn while it waits: systemd's watchdog is fed
        // from a helper thread, for as long as the stop may take.
        let _fed = self.notify.keep_alive(self.stop_bound());
        // With nothing to stop, `unstoppable` stays as it is: an old server
        // that could not be stopped before still holds the port.
        if let Some(mut s) = self.server.take() {
            let t = Instant::now();
            let stopped = s.stop(timeout);
            let ms = (t.elapsed().as_secs_f64() * 10_000.0).round() / 10.0;
            let exit = stopped.cause.map(|c| c.to_string()).unwrap_or_default();
            if stopped.killed {
                log::warn!(pid = s.pid, ms = ms, killed = true, exit = exit.as_str(); "server killed (SIGKILL) after STOP_TIMEOUT");
            } else {
                log::info!(pid = s.pid, ms = ms, killed = false, exit = exit.as_str(); "server stopped");
            }
            self.unstoppable = server::group_alive(s.pgid);
            PidFile::remove(&self.cfg.log.log_dir);
            self.state.server_pid = None;
        } else if self.foreign {
            self.foreign = false;
            self.unstoppable = !self.stop_foreign(timeout);
        }
    }

    /// The longest a stop may hold up the loop: STOP_TIMEOUT, a second for
    /// SIGKILL (or, for a foreign server, the last health check).
    fn stop_bound(&self) -> Duration {
        self.cfg.server.stop_timeout + Duration::from_secs(1).max(self.cfg.health.health_timeout)
    }

    /// Runs STOP_COMMAND; true once the health URL refuses connections.
    fn stop_foreign(&mut self, timeout: Duration) -> bool {
        let Some(cmd) = &self.cfg.server.stop_command else {
            log::error!("the server was not started by this monitor and cannot be stopped: set STOP_COMMAND; starting a new one anyway");
            return false;
        };
        log::info!(command = cmd.join(" ").as_str(); "stopping the server with STOP_COMMAND");
        let deadline = crate::config::instant_after(Instant::now(), timeout);
        let mut run = Command::new(&cmd[0]);
        server::scrub_env(&mut run);
        let run = run
            .args(&cmd[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn();
        use std::os::unix::process::CommandExt as _;
        match run {
            Ok(mut child) => loop {
                match child.try_wait() {
                    Ok(Some(status)) if !status.success() => {
                        log::error!(status = status.to_string().as_str(); "STOP_COMMAND failed");
                        break;
                    }
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    _ => {
                        log::error!("STOP_COMMAND did not finish within STOP_TIMEOUT; killing it");
                        let _ = sys::killpg(child.id(), sys::SIGKILL);
                        let _ = child.wait();
                        break;
                    }
                }
            },
            Err(e) => {
                log::error!(error = e.to_string().as_str(); "cannot run STOP_COMMAND")
            }
        }
        // Wait for the health URL to stop answering.
        while Instant::now() < deadline {
            if matches!(
                health::check(&self.cfg.health).outcome,
                CheckOutcome::Failed(health::Reason::Refused)
            ) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        log::warn!("the server still answers after STOP_COMMAND and STOP_TIMEOUT");
        false
    }

    fn alert(&mut self, a: &crate::policy::Alert) {
        let dir = &self.cfg.log.log_dir;
        let tail = if matches!(
            a,
            crate::policy::Alert::Down { .. } | crate::policy::Alert::PlannedRestartFailed { .. }
        ) {
            alert::tail_lines(&dir.join(server::STDERR_LOG), alert::ERROR_TAIL_LINES)
        } else {
            Vec::new()
        };
        let now = SystemTime::now();
        let ctx = alert::Context {
            service_name: &self.cfg.alert.service_name,
            host: &self.host,
            time: now,
            health_url: &self.cfg.health.health_url,
            error_tail: &tail,
        };
        let msg = alert::render(a, &ctx);
        self.live.alerted(a, &utc_iso8601_millis(now)); // issue 13
        let _fed = self.notify.keep_alive(self.cfg.alert.smtp_timeout);
        self.alerts.submit(&msg, now, Instant::now());
    }

    /// Puts back the lock file and `server.pid` when they went missing (a
    /// removed `LOG_DIR`, say): `restart`, `status` and the next monitor's
    /// adoption depend on them. Looked at once a second at most: with a
    /// tiny CHECK_INTERVAL the loop turns far more often than that.
    fn restore_files(&mut self) {
        let now = Instant::now();
        if now < self.next_restore {
            return;
        }
        self.next_restore = now + Duration::from_secs(1);
        self.update_pid_file();
        match self.lock.refresh() {
            Ok(false) => return,
            Ok(true) => log::warn!("server_monitor.lock was removed; created again"),
            Err(e) => {
                log::warn!(error = e.to_string().as_str(); "cannot put server_monitor.lock back");
                return;
            }
        }
        if let Some(record) = self.server.as_ref().and_then(Server::record) {
            if PidFile::read(&self.cfg.log.log_dir).is_none() {
                if let Err(e) = record.write(&self.cfg.log.log_dir) {
                    log::warn!(error = e.to_string().as_str(); "cannot write server.pid");
                }
            }
        }
    }

    /// SIGUSR1: collects who asked (request files left by `server-monitor
    /// restart`) and records the request for the outcome to be reported.
    fn planned_restart_requested(&mut self) -> Event {
        let requests = crate::restart::take_requests(&self.cfg.log.log_dir);
        let by = if requests.is_empty() {
            "SIGUSR1 (no request file)".to_string()
        } else {
            let who: Vec<&str> = requests.iter().map(|r| r.by.as_str()).collect();
            who.join(", ")
        };
        log::info!(by = by.as_str(); "planned restart requested");
        self.state.planned_restart = Some(PlannedRestart {
            ids: requests.into_iter().map(|r| r.id).collect(),
            by: by.clone(),
            requested: utc_iso8601_millis(SystemTime::now()),
            outcome: "in progress".into(),
            detail: None,
            server_pid: None,
        });
        Event::PlannedRestart { by }
    }

    /// Records how a planned restart ended, for `server-monitor restart`.
    fn planned_restart_outcome(&mut self, note: &Note) {
        let (outcome, detail) = match note {
            Note::Verified {
                kind: StartKind::Planned { .. },
                after,
            } => ("ok", format!("healthy after {:.3}s", after.as_secs_f64())),
            Note::VerifyFailed {
                kind: StartKind::Planned { .. },
                reason,
            } => ("failed", reason.clone()),
            Note::AlreadyRestarting { .. } => ("failed", "a start is already in progress".into()),
            Note::CannotRestart { .. } => (
                "failed",
                "no SERVER_COMMAND: this monitor only watches".into(),
            ),
            _ => return,
        };
        let server_pid = self.state.server_pid;
        if let Some(p) = self
            .state
            .planned_restart
            .as_mut()
            .filter(|p| p.outcome == "in progress")
        {
            p.outcome = outcome.into();
            p.detail = Some(detail);
            p.server_pid = server_pid;
        }
    }

    /// sd_notify: READY once the first start is settled, STATUS on every
    /// change, WATCHDOG pings while the loop turns. Nothing without systemd.
    fn tell_systemd(&mut self) {
        if !self.notify.is_enabled() {
            return;
        }
        let snap = self.policy.snapshot();
        let last = snap.last_error.as_deref().unwrap_or("none");
        let status = match snap.phase {
            "idle" | "starting" | "verifying" => "starting the server".to_string(),
            "running" if snap.failures == 0 => match self.state.server_pid {
                Some(pid) => format!("server pid {pid} healthy"),
                None => "server healthy".to_string(),
            },
            "running" => format!("{} failed checks in a row (last: {last})", snap.failures),
            "restart-pending" => format!("restart due, waiting for the cooldown (last: {last})"),
            _ => format!(
                "gave up after {} restart attempts: manual intervention required (last: {last})",
                snap.attempts
            ),
        };
        if !matches!(snap.phase, "idle" | "starting" | "verifying") {
            self.notify.ready(&status);
        }
        self.notify.status(&status);
        self.notify.ping_if_due(Instant::now());
    }

    /// A log writer that died while the server still writes is replaced on
    /// the same pipe (issue 8: the server would block on a full pipe).
    fn replace_log_writers(&mut self) {
        let Some(s) = &mut self.server else { return };
        for r in s.replace_dead_writers() {
            let file = r.path.display().to_string();
            match r.new_pid {
                Ok(pid) => log::warn!(file = file.as_str(), old_pid = r.old_pid, pid = pid;
                    "a log writer ended while the server still writes; started a new one"),
                Err(e) => {
                    log::error!(file = file.as_str(), old_pid = r.old_pid, error = e.as_str();
                    "a log writer ended and a new one cannot be started")
                }
            }
        }
    }

    fn housekeeping(&mut self) {
        self.restore_files();
        let now = Instant::now();
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + Duration::from_secs(3600);
        let days = self.cfg.log.log_retention_days;
        if days > 0 {
            let removed = crate::logging::sweep_old_files(
                &self.cfg.log.log_dir,
                Duration::from_secs(u64::from(days) * 86_400),
            );
            if removed > 0 {
                log::info!(removed = removed, retention_days = days; "removed rotated logs and alert files past LOG_RETENTION_DAYS");
            }
        }
        // Code that ran only at start, or once this hour (a restart, an
        // email over TLS), need not stay in the resident set: the loop's own
        // pages come straight back from the page cache.
        let dropped = sys::drop_executable_pages();
        log::debug!(bytes = dropped; "dropped clean executable pages from the resident set");
    }

    fn save_state(&mut self) {
        let snap = self.policy.snapshot();
        self.state.phase = snap.phase.to_string();
        self.state.consecutive_failures = snap.failures;
        self.state.restart_attempts = snap.attempts;
        self.state.last_error = snap.last_error;
        // A change beyond the last check is written at once, and fsynced; a
        // new last check alone at most every STATE_REFRESH (it costs a rename
        // per check otherwise, for a line nobody reads that often). `saved`
        // holds what was written less the last check and the time stamp, so
        // that this comparison, made every loop turn, copies nothing.
        let check = self.state.last_check.take();
        let updated = std::mem::take(&mut self.state.updated);
        let updated_ms = std::mem::take(&mut self.state.updated_unix_ms);
        let significant = self.saved.as_ref() != Some(&self.state);
        self.state.last_check = check;
        self.state.updated = updated;
        self.state.updated_unix_ms = updated_ms;
        let now = Instant::now();
        if !significant
            && (self.state.last_check == self.written_check
                || now < self.state_written + STATE_REFRESH)
        {
            return;
        }
        self.saved = Some(State {
            last_check: None,
            updated: String::new(),
            updated_unix_ms: 0,
            ..self.state.clone()
        });
        self.written_check = self.state.last_check.clone();
        let wall = SystemTime::now();
        self.state.updated = utc_iso8601_millis(wall);
        self.state.updated_unix_ms = crate::logging::unix_millis(wall);
        if let Err(e) = state::write(&self.cfg.log.log_dir, &self.state, significant) {
            log::warn!(error = e.to_string().as_str(); "cannot write the state file");
        }
        self.state_written = now;
    }

    /// Sleeps until the policy's next wake-up, the server's exit or a signal.
    fn wait(&mut self) {
        let now = Instant::now();
        let timeout = self
            .policy
            .next_wakeup()
            .map_or(Duration::from_secs(60), |at| {
                at.saturating_duration_since(now)
            })
            .min(self.next_sweep.saturating_duration_since(now))
            .min(
                self.notify
                    .next_ping()
                    .map_or(Duration::MAX, |at| at.saturating_duration_since(now)),
            )
            .min(
                self.alerts
                    .next_due()
                    .map_or(Duration::MAX, |at| at.saturating_duration_since(now)),
            )
            .min(
                self.live
                    .next_deadline()
                    .map_or(Duration::MAX, |at| at.saturating_duration_since(now)),
            );
        if timeout.is_zero() {
            return;
        }
        let mut fds = vec![self.signals.wake_rx.as_fd()];
        if let Some(s) = &self.server {
            fds.push(s.pidfd());
            fds.extend(s.writer_pidfds());
        }
        // Issue 13: the status listener's fds join the wait (some for writing).
        let mut fds: Vec<_> = fds.into_iter().map(|fd| (fd, false)).collect();
        fds.extend(self.live.fds());
        let _ = sys::poll_ready(&fds, timeout);
        self.signals.drain();
    }

    fn shut_down(mut self) {
        self.notify.stopping();
        let dir = self.cfg.log.log_dir.clone();
        if self.cfg.server.keep_server_on_exit {
            if let Some(s) = &self.server {
                log::info!(pid = s.pid; "monitor stopping; leaving the server running (KEEP_SERVER_ON_EXIT)");
            }
        } else if self.server.is_some() {
            log::info!("monitor stopping; stopping the server");
            self.stop_server();
        }
        self.state.phase = "stopped".into();
        self.state.updated = utc_iso8601_millis(SystemTime::now());
        self.state.updated_unix_ms = crate::logging::unix_millis(SystemTime::now());
        let _ = state::write(&dir, &self.state, true);
        log::info!("monitor stopped");
        log::logger().flush();
    }
}

/// The port of a health URL whose host is this machine (loopback or
/// `localhost`); None for another host.
fn local_port(url: &str) -> Option<u16> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']')?;
            (host, after.strip_prefix(':'))
        }
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    let host = host.to_ascii_lowercase();
    let local = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified());
    if !local {
        return None;
    }
    match port {
        Some(p) => p.parse().ok(),
        None if scheme.eq_ignore_ascii_case("https") => Some(443),
        None => Some(80),
    }
}

/// `server-monitor check`: one check, one line, Nagios exit codes.
pub fn check_once(cfg: &Config) -> i32 {
    // On a thread, so that a panic of the HTTP client is a CRITICAL line;
    // never None, as it never gives up.
    let c = health::Checker::new(&cfg.health)
        .check(|| false)
        .unwrap_or_else(|| health::check(&cfg.health));
    let ms = c.latency.as_secs_f64() * 1000.0;
    let url = &cfg.health.health_url;
    match c.outcome {
        CheckOutcome::Healthy { warnings } if warnings.is_empty() => {
            println!("OK - {url} healthy in {ms:.1} ms");
            0
        }
        CheckOutcome::Healthy { warnings } => {
            println!(
                "WARNING - {url} healthy in {ms:.1} ms, but {}",
                warnings.join("; ")
            );
            1
        }
        CheckOutcome::Failed(reason) => {
            println!("CRITICAL - {url} {reason} after {ms:.1} ms");
            2
        }
    }
}

/// `server-monitor status [--json]`.
pub fn status(cfg: &Config, json: bool) -> i32 {
    let dir = &cfg.log.log_dir;
    let running = lock_holder(dir).is_some();
    match state::read(dir) {
        Ok(s) if json => {
            let mut v = serde_json::to_value(&s).unwrap_or_default();
            v["monitor_running"] = serde_json::Value::Bool(running);
            println!("{v}");
            0
        }
        Ok(s) => {
            print!("{}", state::render(&s, running));
            0
        }
        Err(e) => {
            eprintln!(
                "server-monitor: {e} ({})",
                dir.join(state::STATE_FILE).display()
            );
            if matches!(e, state::ReadError::Missing) {
                3
            } else {
                1
            }
        }
    }
}

/// Runs a subcommand that needs the configuration; returns the exit status.
pub fn dispatch(command: &crate::cli::Command, cfg: &Config, cli: &crate::cli::Cli) -> u8 {
    use crate::cli::Command;
    // One rustls crypto provider for the whole process (ring); see Cargo.toml.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match command {
        Command::Run => match run(cfg) {
            Ok(()) => 0,
            Err(e) => {
                log::error!("{e}");
                eprintln!("server-monitor: {e}");
                1
            }
        },
        Command::Check => check_once(cfg) as u8,
        Command::Status => status(cfg, cli.json) as u8,
        Command::Config => {
            for warning in &cfg.warnings {
                eprintln!("server-monitor: warning: {warning}");
            }
            print!("{}", cfg.render());
            0
        }
        Command::Restart => crate::restart::run(cfg),
        Command::TestAlert => alert::test_alert(cfg),
        // NOTE: parsed, and being built (issues 11 and 12).
        Command::Pause { .. } | Command::Resume | Command::Report(_) => {
            eprintln!("server-monitor: this subcommand is not built yet");
            1
        }
        Command::Help | Command::Version | Command::Capture { .. } => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::local_port;

    #[test]
    fn local_ports_of_health_urls() {
        assert_eq!(local_port("http://127.0.0.1:8000/health"), Some(8000));
        assert_eq!(local_port("HTTP://LocalHost/health"), Some(80));
        assert_eq!(local_port("https://[::1]/h?x=1"), Some(443));
        assert_eq!(local_port("http://[::1]:9000"), Some(9000));
        assert_eq!(local_port("http://u:p@127.0.0.2:81/"), Some(81));
        assert_eq!(local_port("http://example.com:8000/health"), None);
        assert_eq!(local_port("http://10.0.0.1:8000/health"), None);
        assert_eq!(local_port("no url"), None);
    }
}
