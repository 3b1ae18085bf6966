//! The main loop.
//!
//! Each turn ([`Monitor::run`]): look at the shutdown flag; collect events
//! (pause and planned-restart requests, a pause that ran out, the server
//! exited, a `Tick`); feed each to the policy with the clock read for it,
//! record what it changed in the history, pass its actions through the
//! escalation (reminders, flap control, pauses) and carry out every one (a
//! check, a start, an alert, a log line), feeding results back as events;
//! do the chores (the history's tick, LOG_DIR's files, dead log writers, the
//! heartbeat, due alert retries, a memory sample); save the state, tell
//! systemd, serve the status endpoints; then wait until the earliest of the
//! named deadlines ([`Monitor::deadlines`]) — on the server's pidfd, the
//! signal wake-up socket and the status listener at the same time, so that a
//! death, a signal or a status client ends the wait at once and an idle
//! monitor costs nothing.
//!
//! The side jobs live with what they touch: the state file's throttling in
//! `state::Writer`, STOP_COMMAND in `server::stop_foreign`, the STATUS
//! wording in `notify`, planned-restart bookkeeping in `restart`, signal
//! set-up in `sys::Signals`, LOG_DIR's housekeeping in `chores`, the
//! history's records in `history::Recorder`, the on-call decisions in
//! `escalation`, MEMORY_LIMIT in `usage`, the pings in `heartbeat`, the
//! status endpoints in `status::live`. What stays here is the order of
//! things and what a check or a start means given the processes
//! ([`Monitor::judge`]).
//!
//! Single-threaded: the only other threads are ctrlc's signal thread, the
//! long-lived one that runs the checks (so that a stop signal need not wait
//! for HEALTH_TIMEOUT; see `health::Checker`); with HEARTBEAT_URL, the
//! long-lived one that sends its pings (`heartbeat`); a webhook POST's
//! thread while one is under way; short-lived watchdog pingers during a long
//! stop or delivery (`Notifier::keep_alive`); and, for the length of one
//! email delivery, a current-thread tokio runtime (plus tokio's thread for
//! resolving a host name). An idle monitor has three threads: this one,
//! ctrlc's and the checks' helper (four with HEARTBEAT_URL, once the first
//! ping went out).

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use crate::alert;
use crate::chores::Housekeeping;
use crate::config::Config;
use crate::health::{self, CheckOutcome};
use crate::lock::{Lock, LockError};
use crate::logging::{round_ms, utc_iso8601_millis};
use crate::notify::Notifier;
use crate::policy::{Action, Begin, Event, Policy, StartKind};
use crate::server::{self, Adoption, Launch, PidFile, Server};
use crate::state::{self, LastCheck, State};
use crate::sys::{self, Signals};
use std::os::fd::BorrowedFd;

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
    let bundle = crate::tls::default_system_bundle();
    if let Some(warning) = crate::tls::missing_bundle_warning(cfg.uses_tls(), bundle.as_deref()) {
        log::warn!("{warning}");
    }
    if let Some(panic) = crate::reexec::previous_panic() {
        log::error!(panic = panic.as_str(); "the monitor was re-executed after a panic; adopting the server");
    }
    crate::reexec::install();
    if let Some(who) = lock.squatter() {
        log::warn!(holder = who; "another process holds this LOG_DIR's lock socket name; relying on the lock file alone");
    }

    if let Some((path, mode)) = cfg.readable_secret_file() {
        log::warn!(path = path.display().to_string().as_str(), mode = format!("{mode:04o}").as_str();
            "the env file holds SMTP_PASSWORD and other users can read it: chmod 600 it");
    }
    let signals = Signals::install()
        .map_err(|e| RunError::Setup(format!("cannot set up signal handling: {e}")))?;
    if let Err(e) = sys::set_child_subreaper() {
        log::warn!(error = e.to_string().as_str(); "cannot become a child subreaper; orphaned grandchildren of the server will not be reaped here");
    }
    // The status endpoints (a bind error is a runtime error naming STATUS_LISTEN).
    let live = crate::status::live::Live::new(cfg, Instant::now()).map_err(RunError::Setup)?;
    Monitor::new(cfg, signals, lock, live).run()
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
    state: state::Writer,
    /// The lock file and server.pid put back, the hourly sweep.
    housekeeping: Housekeeping,
    notify: Notifier,
    /// Alert delivery: the outbox and the channels.
    alerts: alert::Dispatcher,
    /// The status listener, /metrics figures, recent checks.
    live: crate::status::live::Live,
    /// HEARTBEAT_URL's pinger, when it is set.
    heartbeat: Option<crate::heartbeat::Heartbeat>,
    /// MEMORY_LIMIT and the server's memory and CPU (src/usage.rs).
    usage: crate::usage::Watch,
    /// The memory measured at the last check, fed after its `Checked`.
    memory_event: Option<Event>,
    /// State changes and day summaries under `LOG_DIR/history/`.
    history: crate::history::Recorder,
    /// Reminders, flap control, pauses.
    oncall: crate::escalation::Escalation,
}

impl<'a> Monitor<'a> {
    fn new(
        cfg: &'a Config,
        signals: Signals,
        lock: Lock,
        live: crate::status::live::Live,
    ) -> Monitor<'a> {
        let now = Instant::now();
        let base = State {
            monitor_pid: std::process::id(),
            service_name: cfg.alert.service_name.clone(),
            health_url: cfg.health.health_url.clone(),
            max_restart_attempts: cfg.policy.max_restart_attempts,
            started: utc_iso8601_millis(SystemTime::now()),
            ..State::default()
        };
        let mut alerts = alert::Dispatcher::load(cfg, now);
        alerts.cancel_on(signals.shutdown_flag().clone());
        Monitor {
            cfg,
            checker: health::Checker::new(&cfg.health),
            lock,
            signals,
            policy: Policy::new(cfg.policy.clone(), cfg.server.server_command.is_some(), now),
            server: None,
            foreign: false,
            unstoppable: false,
            state: state::Writer::new(&cfg.log.log_dir, base, now),
            housekeeping: Housekeeping::new(&cfg.log, now),
            notify: Notifier::from_env(now),
            alerts,
            live,
            heartbeat: cfg.heartbeat.heartbeat_url.as_deref().map(|url| {
                crate::heartbeat::Heartbeat::new(
                    url,
                    cfg.heartbeat.heartbeat_interval,
                    cfg.health.health_timeout,
                )
            }),
            usage: crate::usage::Watch::new(cfg.policy.memory_limit, now),
            memory_event: None,
            history: crate::history::Recorder::open(&cfg.log.log_dir, cfg.log.history_days),
            oncall: crate::escalation::Escalation::new(crate::escalation::Settings::from_config(
                &cfg.alert,
            )),
        }
    }

    fn run(mut self) -> Result<(), RunError> {
        self.warn_of_watchdog_risks();
        self.resume();
        let mut events = VecDeque::from([Event::Begin(self.begin())]);
        while !self.signals.shutdown_requested() {
            // One SMTP_TIMEOUT for all the deliveries of this turn.
            self.alerts.begin_turn();
            self.collect_events(&mut events);
            self.handle(&mut events);
            self.chores();
            let (snap, pid) = (self.policy.snapshot(), self.server_pid());
            self.state.usage(self.usage.usage());
            self.state.oncall(&self.oncall);
            self.state.save(&snap, pid, Instant::now());
            let pause = self.oncall.saved_pause().map(|p| p.describe());
            self.notify.paused(pause);
            self.notify.tell(&snap, pid, Instant::now());
            // The figures of this turn, then serve what is ready.
            let state = self.state.current();
            let feeds = crate::status::live::Feeds {
                history: &self.history,
                usage: &self.usage,
                oncall: &self.oncall,
            };
            self.live
                .turn(&snap, state, &self.alerts, feeds, Instant::now());
            self.wait();
        }
        self.shut_down();
        Ok(())
    }

    /// What happened since the last turn, in order. A new event source is
    /// added here (and, if it has a descriptor, to [`Monitor::wake_fds`]).
    fn collect_events(&mut self, events: &mut VecDeque<Event>) {
        if self.signals.take_usr1() {
            // Pause and resume requests come by SIGUSR1 too, first.
            let asked = crate::restart::signalled(&self.cfg.log.log_dir);
            events.extend(self.pause_requests(&asked.pauses));
            if asked.restart {
                events.push_back(self.planned_restart_requested());
            }
        }
        if let Some((event, n)) = self.oncall.expire_pause(Instant::now()) {
            log::log!(n.level(), "{n}");
            events.push_back(event);
        }
        if let Some(cause) = self.server_exit() {
            events.push_back(Event::Exited(cause));
        }
        events.push_back(Event::Tick);
    }

    /// Feeds each event to the policy with the clock read for it, carries
    /// out every action, and feeds each action's result back.
    fn handle(&mut self, events: &mut VecDeque<Event>) {
        while let Some(event) = events.pop_front() {
            // NOTE: a batch is always carried out whole, even when a
            // signal came meanwhile: it may hold an alert.
            let actions = self.policy.handle(event.clone(), Instant::now());
            // A pause begun or ended comes first: a restart its end lets go
            // is written after the state the server was left in.
            let pause = self.oncall.pause().map(|p| p.by.as_str());
            self.history.follow_pause(pause);
            self.history
                .observe(&event, &actions, self.policy.snapshot().phase);
            let actions = (self.oncall).pass(actions, Instant::now(), SystemTime::now());
            for action in actions {
                if let Some(next) = self.act(action) {
                    events.push_back(next);
                }
                // MEMORY_LIMIT: a check's memory after its result.
                events.extend(self.memory_event.take());
            }
        }
    }

    /// The jobs of every turn besides the policy's: LOG_DIR's files, dead
    /// log writers, the heartbeat, due alert retries.
    fn chores(&mut self) {
        // The history's day line, heartbeat and hourly pruning.
        self.history.tick();
        let server = self.server.as_mut();
        (self.housekeeping).turn(&mut self.lock, server, Instant::now());
        self.replace_log_writers();
        self.heartbeat();
        if self
            .alerts
            .next_due()
            .is_some_and(|at| at <= Instant::now())
        {
            let _fed = self.notify.keep_alive(self.cfg.alert.smtp_timeout);
            self.alerts.retry_due(Instant::now());
        }
        // MEMORY_LIMIT: without a limit, a sample once a minute.
        let server = self.server.as_ref().map(|s| (s.pid, s.pgid));
        self.usage.refresh_if_due(server, Instant::now());
    }

    /// The named deadlines the loop's wait takes the earliest of. A new
    /// timer is added here, with a [`Wake`] of its own.
    fn deadlines(&self, now: Instant) -> [Option<Deadline>; 9] {
        let at = |at: Option<Instant>, reason| at.map(|at| Deadline { at, reason });
        // With no timer of the policy's, the loop still turns now and then.
        let policy = at(self.policy.next_wakeup(), Wake::Policy).unwrap_or(Deadline {
            at: now + IDLE_WAIT,
            reason: Wake::Idle,
        });
        [
            Some(policy),
            at(self.alerts.next_due(), Wake::Outbox),
            at(self.notify.next_ping(), Wake::Watchdog),
            at(Some(self.housekeeping.next_due()), Wake::Housekeeping),
            at(self.state.next_due(), Wake::StateSave),
            at(self.live.next_deadline(), Wake::Status),
            at(
                self.heartbeat.as_ref().and_then(|h| h.next_due()),
                Wake::Heartbeat,
            ),
            at(Some(self.history.next_due()), Wake::History),
            at(self.oncall.next_wakeup(), Wake::Escalation),
        ]
    }

    /// The descriptors that end the wait at once, each with whether it is
    /// waited on for writing: the signal wake-up socket, the server's pidfd,
    /// its log writers' pidfds, then the status listener's (its
    /// socket and connections, some for writing), in that order.
    fn wake_fds(&self) -> Vec<(BorrowedFd<'_>, bool)> {
        let mut fds = vec![(self.signals.wake_fd(), false)];
        if let Some(s) = &self.server {
            fds.push((s.pidfd(), false));
            fds.extend(s.writer_pidfds().into_iter().map(|fd| (fd, false)));
        }
        fds.extend(self.live.fds());
        fds
    }

    /// Sleeps until the earliest deadline, the server's exit or a signal;
    /// says at DEBUG what woke it.
    fn wait(&mut self) {
        let now = Instant::now();
        let next = earliest(self.deadlines(now)).unwrap_or(Deadline {
            at: now + IDLE_WAIT,
            reason: Wake::Idle,
        });
        let timeout = next.at.saturating_duration_since(now);
        let woke = if timeout.is_zero() {
            next.reason
        } else {
            let fds = self.wake_fds();
            let ready = sys::poll_ready(&fds, timeout).unwrap_or_default();
            // The status listener's descriptors come last.
            let ours = fds.len() - self.live.fds().len();
            self.signals.drain();
            match ready.iter().position(|&r| r) {
                Some(0) => Wake::Signal,
                Some(i) if i >= ours => Wake::Status,
                Some(1) => Wake::ServerExit,
                Some(_) => Wake::LogWriterExit,
                None => next.reason,
            }
        };
        log::debug!(reason = woke.as_str(); "loop woke");
    }

    /// A wait that may outlast systemd's watchdog is said at start.
    fn warn_of_watchdog_risks(&self) {
        let Some(every) = self.notify.watchdog() else {
            return;
        };
        let waits = [
            ("STOP_TIMEOUT", self.cfg.server.stop_timeout),
            ("SMTP_TIMEOUT", self.cfg.alert.smtp_timeout),
        ];
        for risk in crate::notify::watchdog_risks(every, &waits) {
            log::warn!("{risk}");
        }
    }

    /// Takes over the attempt count and a give-up from the state file a
    /// monitor that did not stop on purpose (killed, crashed) left recently.
    fn resume(&mut self) {
        let Ok(old) = state::read(&self.cfg.log.log_dir) else {
            return;
        };
        // A pause the previous monitor left goes on, until its end (it does
        // not depend on how that monitor stopped).
        if let Some(p) = &old.pause {
            if (self.oncall).restore_pause(p, Instant::now(), SystemTime::now()) {
                log::warn!(by = p.by.as_str(); "{} goes on from the previous monitor", p.describe());
                let _ = self.policy.handle(Event::Pause, Instant::now());
            }
        }
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
        self.state.resume(&old);
        let given_up = r.given_up;
        self.policy.resume(r, Instant::now());
        (self.oncall).restore(&old.escalation, given_up, Instant::now(), SystemTime::now());
    }

    /// Adopt, watch or start: what the monitor finds decides how it begins.
    fn begin(&mut self) -> Begin {
        let dir = &self.cfg.log.log_dir;
        match PidFile::read(dir) {
            Some(Ok(record)) => match Server::adopt(&record) {
                Adoption::Adopted(s) => {
                    log::info!(pid = s.pid; "adopted the server this monitor started earlier");
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
        let shutdown = self.signals.shutdown_flag();
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
    fn server_exit(&mut self) -> Option<server::ExitCause> {
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
        Some(cause)
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
                let pid = self.server_pid();
                crate::restart::record_outcome(self.state.planned_restart(), &n, pid);
                None
            }
        }
    }

    /// One check, logged and recorded; `None` when a stop signal came while
    /// it ran (the loop then ends without waiting for its deadline).
    fn check(&mut self) -> Option<CheckOutcome> {
        #[cfg(debug_assertions)]
        crate::reexec::test_fault_panic();
        let verifying = self.policy.is_starting();
        let shutdown = self.signals.shutdown_flag();
        let Some(c) = self.checker.check(|| shutdown.load(Ordering::SeqCst)) else {
            log::debug!("health check abandoned: the monitor is stopping");
            return None;
        };
        if !verifying {
            self.history.sample(&c);
        }
        let ms = round_ms(c.latency);
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
        if !verifying {
            let server = self.server.as_ref().map(|s| (s.pid, s.pgid));
            self.memory_event = self
                .usage
                .at_check(server, Instant::now())
                .map(|(used, limit)| Event::Memory { used, limit });
        }
        self.state.checked(LastCheck {
            time: utc_iso8601_millis(SystemTime::now()),
            healthy: c.outcome.is_healthy(),
            latency_ms: ms,
            reason: match &c.outcome {
                CheckOutcome::Failed(r) => Some(r.to_string()),
                CheckOutcome::Healthy { .. } => None,
            },
        });
        if let Some(last) = &self.state.current().last_check {
            self.live.checked(last, c.latency);
        }
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
                log::warn!(cause = cause.to_string().as_str(); "a healthy answer came, but the new server has already exited: it came from another process");
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
                let ours = server::local_port(&self.cfg.health.health_url)
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
            crate::chores::update_pid_file(&self.cfg.log.log_dir, self.server.as_mut());
        } else if self.server.is_none() && !self.foreign {
            log::warn!(url = self.cfg.health.health_url.as_str(); "a healthy server answers that this monitor did not start: it will be stopped with STOP_COMMAND before a restart");
            self.foreign = true;
        }
        Event::Checked(outcome)
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
            let wall = SystemTime::now();
            self.state.restarted(wall);
            self.live.restarting(&kind, wall);
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
            let ms = round_ms(t.elapsed());
            let exit = stopped.cause.map(|c| c.to_string()).unwrap_or_default();
            if stopped.killed {
                log::warn!(pid = s.pid, ms = ms, killed = true, exit = exit.as_str(); "server killed (SIGKILL) after STOP_TIMEOUT");
            } else {
                log::info!(pid = s.pid, ms = ms, killed = false, exit = exit.as_str(); "server stopped");
            }
            self.unstoppable = server::group_alive(s.pgid);
            PidFile::remove(&self.cfg.log.log_dir);
        } else if self.foreign {
            self.foreign = false;
            self.unstoppable = !self.stop_foreign();
        }
    }

    /// The longest a stop may hold up the loop: STOP_TIMEOUT and a second
    /// for SIGKILL (a foreign server's last probe is given up at
    /// STOP_TIMEOUT).
    fn stop_bound(&self) -> Duration {
        self.cfg.server.stop_timeout + Duration::from_secs(1)
    }

    /// Runs STOP_COMMAND; true once the health URL refuses connections.
    /// The probes are the loop's own, given up at STOP_TIMEOUT or a stop
    /// signal, so that a URL that hangs cannot hold the stop past either.
    fn stop_foreign(&mut self) -> bool {
        let cfg = self.cfg;
        let Some(cmd) = &cfg.server.stop_command else {
            log::error!("the server was not started by this monitor and cannot be stopped: set STOP_COMMAND; starting a new one anyway");
            return false;
        };
        log::info!(command = cmd.join(" ").as_str(); "stopping the server with STOP_COMMAND");
        let (checker, shutdown) = (&mut self.checker, self.signals.shutdown_flag());
        server::stop_foreign(cmd, cfg.server.stop_timeout, |deadline| {
            let give_up = || shutdown.load(Ordering::SeqCst) || Instant::now() >= deadline;
            checker
                .check(give_up)
                .is_some_and(|c| matches!(c.outcome, CheckOutcome::Failed(health::Reason::Refused)))
        })
    }

    fn alert(&mut self, a: &crate::policy::Alert) {
        let dir = &self.cfg.log.log_dir;
        let tail = if alert::quotes_error_tail(a) {
            alert::tail_lines(&dir.join(server::STDERR_LOG), alert::ERROR_TAIL_LINES)
        } else {
            Vec::new()
        };
        let now = SystemTime::now();
        let ctx = alert::Context {
            service_name: &self.cfg.alert.service_name,
            host: &self.cfg.hostname,
            time: now,
            health_url: &self.cfg.health.health_url,
            error_tail: &tail,
        };
        let mut msg = alert::render(a, &ctx);
        self.usage.annotate(a, &mut msg.body);
        self.live.alerted(a, &utc_iso8601_millis(now));
        let _fed = self.notify.keep_alive(self.cfg.alert.smtp_timeout);
        self.alerts.submit(&msg, now, Instant::now());
    }

    /// The pause and resume requests a SIGUSR1 brought: logged, acknowledged
    /// in the state file, and the policy's events they make.
    fn pause_requests(&mut self, requests: &[crate::pause::Request]) -> Vec<Event> {
        let (now, wall) = (Instant::now(), SystemTime::now());
        let mut events = Vec::new();
        for r in requests {
            let (event, notice) = self.oncall.request(r, now, wall);
            log::log!(notice.level(), by = r.by.as_str(); "{notice}");
            events.extend(event);
            self.state.pause_acked(r.id.clone());
        }
        events
    }

    fn server_pid(&self) -> Option<u32> {
        self.server.as_ref().map(|s| s.pid)
    }

    /// SIGUSR1: records who asked, for the outcome to be reported.
    fn planned_restart_requested(&mut self) -> Event {
        let now = utc_iso8601_millis(SystemTime::now());
        let p = crate::restart::requested(&self.cfg.log.log_dir, now);
        log::info!(by = p.by.as_str(); "planned restart requested");
        let by = p.by.clone();
        self.state.planned_restart_requested(p);
        Event::PlannedRestart { by }
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

    /// Hands the heartbeat its turn (it never waits for a ping) and
    /// records a ping that ended. Pings go out only while the server is
    /// healthy and the monitor is not paused.
    fn heartbeat(&mut self) {
        let healthy = self.policy.is_healthy();
        let paused = self.oncall.pause().is_some();
        let Some(hb) = self.heartbeat.as_mut() else {
            return;
        };
        if let Some(ping) = hb.turn(healthy, paused, Instant::now()) {
            self.state.heartbeat(state::LastHeartbeat {
                time: utc_iso8601_millis(ping.time),
                ok: ping.result.is_ok(),
                latency_ms: ping.result.as_ref().ok().map(|t| round_ms(*t)),
                reason: ping.result.err().map(|e| e.to_string()),
            });
        }
    }

    fn shut_down(mut self) {
        self.notify.stopping();
        if self.cfg.server.keep_server_on_exit {
            if let Some(s) = &self.server {
                log::info!(pid = s.pid; "monitor stopping; leaving the server running (KEEP_SERVER_ON_EXIT)");
            }
        } else if self.server.is_some() {
            log::info!("monitor stopping; stopping the server");
            self.stop_server();
        }
        let pid = self.server_pid();
        self.state.finish(&self.policy.snapshot(), pid);
        self.history.stop();
        log::info!("monitor stopped");
        log::logger().flush();
    }
}

/// How long the loop waits when the policy has no timer.
const IDLE_WAIT: Duration = Duration::from_secs(60);

/// What ended the loop's wait: a named deadline, or a descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wake {
    /// The policy's next check, probe, or timer.
    Policy,
    /// An alert's retry is due.
    Outbox,
    /// systemd's watchdog wants a ping.
    Watchdog,
    /// The hourly sweep of old files.
    Housekeeping,
    /// A last check held back from the state file is due to be written.
    StateSave,
    /// A status client is ready, or its exchange's deadline passed.
    Status,
    /// A heartbeat ping is due, or the one in flight is overdue.
    Heartbeat,
    /// The history's heartbeat, day line or pruning.
    History,
    /// A reminder, "Stable Again", or the end of a pause.
    Escalation,
    /// The policy had no timer: the [`IDLE_WAIT`] passed.
    Idle,
    Signal,
    ServerExit,
    LogWriterExit,
}

impl Wake {
    fn as_str(self) -> &'static str {
        match self {
            Wake::Policy => "policy",
            Wake::Outbox => "outbox",
            Wake::Watchdog => "watchdog",
            Wake::Housekeeping => "housekeeping",
            Wake::StateSave => "state save",
            Wake::Status => "status",
            Wake::Heartbeat => "heartbeat",
            Wake::History => "history",
            Wake::Escalation => "escalation",
            Wake::Idle => "idle",
            Wake::Signal => "signal",
            Wake::ServerExit => "server exit",
            Wake::LogWriterExit => "log writer exit",
        }
    }
}

/// One named deadline of the loop's wait (ureq's `NextTimeout`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Deadline {
    at: Instant,
    reason: Wake,
}

/// Pure: the earliest of `deadlines`; the first listed wins a tie.
fn earliest(deadlines: impl IntoIterator<Item = Option<Deadline>>) -> Option<Deadline> {
    deadlines
        .into_iter()
        .flatten()
        .fold(None, |best: Option<Deadline>, d| match best {
            Some(b) if b.at <= d.at => Some(b),
            _ => Some(d),
        })
}

#[cfg(test)]
mod tests {
    use super::{earliest, Deadline, Wake};
    use std::time::{Duration, Instant};

    #[test]
    fn the_wait_takes_the_earliest_named_deadline() {
        let t0 = Instant::now();
        let d = |secs, reason| {
            Some(Deadline {
                at: t0 + Duration::from_secs(secs),
                reason,
            })
        };
        let next = earliest([d(30, Wake::Policy), d(5, Wake::Outbox), None]);
        assert_eq!(next, d(5, Wake::Outbox));
        let tie = earliest([d(5, Wake::Policy), d(5, Wake::Watchdog)]);
        assert_eq!(
            tie.map(|d| d.reason),
            Some(Wake::Policy),
            "the first listed wins a tie"
        );
        assert_eq!(earliest([None, None]), None);
        let far = earliest([d(3600, Wake::Housekeeping), d(120, Wake::Policy)]);
        assert_eq!(far, d(120, Wake::Policy), "no cap but the policy's own");
    }
}
