//! The restart state machine: `handle(Event, now) -> Vec<Action>` and
//! `next_wakeup()`. No I/O, no clock, no logging: time comes in as `now`, and
//! everything worth doing or saying goes out as an [`Action`].
//!
//! ```text
//!            Begin::Start                      Begin::Watch
//!                 |                                 |
//!                 v          Spawned                v
//!   +------> Starting -------------> Verifying ---healthy---> Running <-----------+
//!   |             |  SpawnFailed        |  timeout / exited      |  N failed checks |
//!   |             +---------------------+                        |  or exited       |
//!   |                        |                                   v                  |
//!   |                        +----------------------------> restart due             |
//!   |                                                            |                  |
//!   |            cooldown not over: Pending --(not_before)-------+                  |
//!   |            (a healthy check cancels it) -----------------------------------> +
//!   +--- attempts left, cooldown over                                               |
//!                attempts used up / cannot restart: GivenUp ---healthy: Recovered-->+
//!                      (RETRY_AFTER_GIVE_UP: one more Start every so often)
//!
//!   Pause (any phase): no automatic restart until Resume ("restart held");
//!   Resume: a fresh start, and a server that exited meanwhile restarts at once
//! ```
//!
//! Rules enforced here (SPEC.md "How it behaves"):
//! - checks every `CHECK_INTERVAL`, start to start; a healthy check resets the
//!   failure count;
//! - a restart is due at `FAILURE_THRESHOLD` failures in a row, or at once when
//!   the server exits and `RESTART_ON_EXIT` holds;
//! - two restarts begin at least `RESTART_COOLDOWN` apart; the first start and
//!   planned restarts do not count;
//! - every restart is an attempt; a verified restart sends "Restarted"; the
//!   attempt counter resets only after `RESTART_COOLDOWN` of health since the
//!   last verified restart;
//! - verification probes the URL on a fast schedule (5 ms, growing to at most
//!   250 ms apart, always under a second) until healthy or `STARTUP_TIMEOUT`; a
//!   server that exits meanwhile fails it at once; a failed verification leaves
//!   the failure count at the threshold, so the next restart comes when the
//!   cooldown allows unless a check passes first;
//! - when a restart is due with `MAX_RESTART_ATTEMPTS` used, or the last
//!   allowed attempt fails verification, one "Down" alert, no more restarts
//!   (but one every `RETRY_AFTER_GIVE_UP`), checks go on; the first healthy
//!   check then sends "Recovered" and starts over;
//! - "Down" goes out once per give-up episode, which only "Recovered" ends. A
//!   retry (`RETRY_AFTER_GIVE_UP`) is a restart: it counts as an attempt and
//!   sets the cooldown; verified, it is on probation and sends "Recovered"
//!   (attempts to zero) once healthy for `RESTART_COOLDOWN`; a retried server
//!   that fails before that goes back to given-up with no second "Down". A
//!   verified planned restart out of give-up is a recovery at once;
//! - without a server command nothing can be restarted: a due restart gives up
//!   at once (watch-and-alert mode);
//! - MEMORY_LIMIT (SPEC 8): the group's memory above the limit at
//!   `FAILURE_THRESHOLD` checks in a row makes a restart due like failed
//!   checks do (an attempt; cause `memory 612 MiB above MEMORY_LIMIT 512 MiB`);
//!   one sample under the limit resets that count, so one spike never
//!   restarts; a sample over the limit breaks the stable period, and a
//!   healthy check does not cancel a memory restart the cooldown holds, nor
//!   ends a give-up while the last sample was over the limit;
//! - pause (`Event::Pause`, SPEC `server-monitor pause`): checks go on, but
//!   no automatic restart is made, nor a retry out of give-up (a due restart
//!   is noted once, [`Note::HeldByPause`]); a planned restart, asked by a
//!   person, still goes. `Event::Resume` starts afresh: failures and
//!   attempts at zero, a give-up episode closed, no cooldown; a server that
//!   exited meanwhile is restarted at once (RESTART_ON_EXIT).

use std::fmt;
use std::time::{Duration, Instant};

use crate::config::PolicySettings;
use crate::health::{CheckOutcome, Reason};
use crate::server::ExitCause;

/// How the monitor begins.
#[derive(Clone, Debug, PartialEq)]
pub enum Begin {
    /// Nothing runs yet: start the server and verify it.
    Start,
    /// A server is there already (adopted, or found healthy), or none can be
    /// started: check it on the normal schedule.
    Watch,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Begin(Begin),
    /// Time has passed; the policy looks at its timers.
    Tick,
    /// The result of an [`Action::Check`].
    Checked(CheckOutcome),
    /// The server of the last [`Action::Start`] is running.
    Spawned,
    /// The last [`Action::Start`] could not start the server.
    SpawnFailed(String),
    /// The server process ended without being asked to; its Display reads
    /// like `process exited with status 1`.
    Exited(ExitCause),
    /// Someone asked for a restart (`server-monitor restart`).
    PlannedRestart {
        by: String,
    },
    /// MEMORY_LIMIT: the memory of the server's group measured at a check,
    /// fed after that check's [`Event::Checked`]; bytes.
    Memory {
        used: u64,
        limit: u64,
    },
    /// Maintenance (`server-monitor pause`, issue 11): checks go on, no
    /// restart is made until [`Event::Resume`].
    Pause,
    /// The pause is over: the usual rules act again from a fresh failure
    /// count (and attempt count); a server that exited meanwhile is
    /// restarted at once when RESTART_ON_EXIT holds.
    Resume,
}

/// Why a server is being started.
#[derive(Clone, Debug, PartialEq)]
pub enum StartKind {
    First,
    /// An automatic restart: the `attempt`-th since the counter was reset.
    Restart {
        attempt: u32,
        cause: String,
        down_checks: u32,
        /// What made it due, as data (the metrics' `cause` label).
        trigger: Trigger,
    },
    /// The one more try after giving up (RETRY_AFTER_GIVE_UP).
    Retry {
        cause: String,
        down_checks: u32,
    },
    Planned {
        by: String,
    },
}

/// What made an automatic restart due: the server's exit (also during a
/// start being verified), failed checks (or a start not healthy in time),
/// or MEMORY_LIMIT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    Exit,
    Health,
    Memory,
}

impl StartKind {
    /// Whether the running server must be stopped first.
    pub fn is_restart(&self) -> bool {
        !matches!(self, StartKind::First)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Run one health check now and feed back [`Event::Checked`].
    Check,
    /// Stop the server if one runs (unless `First`), start it, and feed back
    /// [`Event::Spawned`] or [`Event::SpawnFailed`].
    Start(StartKind),
    Alert(Alert),
    /// A decision worth a log line.
    Note(Note),
}

/// The alerts the policy decides on; `alert` renders them.
#[derive(Clone, Debug, PartialEq)]
pub enum Alert {
    Restarted {
        down_checks: u32,
        cause: String,
    },
    Down {
        failures: u32,
        attempts: u32,
        max_attempts: u32,
        last_error: String,
        cause: String,
    },
    Recovered {
        failures: u32,
    },
    /// A planned restart whose new server did not come up healthy.
    PlannedRestartFailed {
        by: String,
        reason: String,
    },
    /// A reminder while given up (`escalation`, ALERT_REMINDER).
    StillDown {
        down_for: Duration,
        since: std::time::SystemTime,
        reminder: u32,
        max: u32,
        /// `None` for the last one.
        next_in: Option<Duration>,
        last_error: String,
    },
    /// FLAP_RESTARTS restarts within FLAP_WINDOW (`escalation`).
    Flapping {
        restarts: Vec<crate::escalation::RestartRecord>,
        window: Duration,
    },
    /// FLAP_WINDOW / 2 without a restart after flapping (`escalation`).
    StableAgain {
        restarts: Vec<crate::escalation::RestartRecord>,
        quiet: Duration,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum Note {
    Verified {
        kind: StartKind,
        after: Duration,
    },
    VerifyFailed {
        kind: StartKind,
        reason: String,
    },
    RestartDeferred {
        cause: String,
        wait: Duration,
    },
    RestartCancelled,
    GaveUp {
        attempts: u32,
        last_error: String,
        /// The "Down" alert of this episode went out already.
        alerted: bool,
    },
    AttemptsReset,
    AlreadyRestarting {
        by: String,
    },
    /// A planned restart asked of a monitor that has no SERVER_COMMAND.
    CannotRestart {
        by: String,
    },
    /// A restart was due while paused: none is made until resume.
    HeldByPause {
        cause: String,
    },
    /// What `escalation` says (suppressed alerts, pauses).
    Escalation(crate::escalation::Notice),
}

impl Note {
    pub fn level(&self) -> log::Level {
        match self {
            Note::VerifyFailed { .. } | Note::GaveUp { .. } => log::Level::Error,
            Note::RestartDeferred { .. }
            | Note::AlreadyRestarting { .. }
            | Note::CannotRestart { .. } => log::Level::Warn,
            Note::Escalation(n) => n.level(),
            _ => log::Level::Info,
        }
    }
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Note::Verified { kind, after } => {
                let what = match kind {
                    StartKind::First => "start",
                    StartKind::Restart { .. } | StartKind::Retry { .. } => "restart",
                    StartKind::Planned { .. } => "planned restart",
                };
                write!(
                    f,
                    "server verified healthy {:.3}s after its {what}",
                    after.as_secs_f64()
                )
            }
            Note::VerifyFailed { reason, .. } => {
                write!(f, "server failed verification: {reason}")
            }
            Note::RestartDeferred { cause, wait } => write!(
                f,
                "restart due ({cause}), waiting {:.1}s for the cooldown",
                wait.as_secs_f64()
            ),
            Note::RestartCancelled => f.write_str("server is healthy again; restart cancelled"),
            Note::GaveUp {
                attempts,
                last_error,
                alerted,
            } => {
                write!(
                    f,
                    "giving up after {attempts} restart attempts (last error: {last_error}); manual intervention required"
                )?;
                if *alerted {
                    f.write_str(" (the Down alert of this episode was sent already)")?;
                }
                Ok(())
            }
            Note::AttemptsReset => f.write_str("server stayed healthy; restart attempts reset"),
            Note::AlreadyRestarting { by } => {
                write!(
                    f,
                    "restart requested by {by} ignored: a start is in progress"
                )
            }
            Note::CannotRestart { by } => write!(
                f,
                "restart requested by {by} refused: no SERVER_COMMAND, this monitor only watches"
            ),
            Note::HeldByPause { cause } => write!(
                f,
                "restart due ({cause}), but the monitor is paused: no restart until resume"
            ),
            Note::Escalation(n) => n.fmt(f),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Phase {
    Idle,
    /// A Start action is out; waiting for Spawned or SpawnFailed.
    Starting {
        kind: StartKind,
    },
    Verifying {
        kind: StartKind,
        started: Instant,
        deadline: Instant,
        next_probe: Instant,
        /// The last probe's failure, said in the verification's failure.
        last_failure: Option<Reason>,
    },
    Running {
        healthy_since: Option<Instant>,
    },
    /// A restart is due; the cooldown holds it until `not_before`.
    Pending {
        not_before: Instant,
        cause: String,
        down_checks: u32,
        trigger: Trigger,
    },
    GivenUp {
        retry_at: Option<Instant>,
    },
}

/// The shortest and longest gap between two verification probes.
const PROBE_MIN: Duration = Duration::from_millis(5);
const PROBE_MAX: Duration = Duration::from_millis(250);

#[derive(Clone, Debug)]
pub struct Policy {
    rules: PolicySettings,
    /// False when there is no SERVER_COMMAND: watch and alert only.
    can_restart: bool,
    phase: Phase,
    next_check: Instant,
    failures: u32,
    attempts: u32,
    last_restart: Option<Instant>,
    last_error: Option<String>,
    /// A "Down" alert went out and no "Recovered" since: the give-up episode
    /// is open, and giving up again within it sends no second "Down".
    down_alerted: bool,
    /// The failed checks of the open episode, for its "Recovered" alert.
    down_failures: u32,
    /// Checks in a row with the memory above MEMORY_LIMIT.
    memory_over: u32,
    /// Paused (maintenance): no restart until `Event::Resume`.
    paused: bool,
    /// While paused: the server exited (its cause), and "restart held"
    /// was logged.
    exited_while_paused: Option<ExitCause>,
    held_noted: bool,
}

/// What a monitor that starts again takes over from the one before it (the
/// state file, when recent: see `state::resumable`), so that a crash of the
/// monitor cannot reset the attempt count or end a give-up episode.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resumed {
    pub attempts: u32,
    /// The one before had given up: "Down" went out already.
    pub given_up: bool,
    pub failures: u32,
    pub last_error: Option<String>,
}

/// The name of the policy's phase, as the state file, `status` and systemd's
/// STATUS line know it (kebab-case: `restart-pending`, `given-up`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PhaseName {
    #[default]
    Idle,
    Starting,
    Verifying,
    Running,
    RestartPending,
    GivenUp,
    /// Written by the monitor on its way out; the policy is never in it.
    Stopped,
}

impl PhaseName {
    /// The words of the state file (the serde names).
    pub fn as_str(self) -> &'static str {
        match self {
            PhaseName::Idle => "idle",
            PhaseName::Starting => "starting",
            PhaseName::Verifying => "verifying",
            PhaseName::Running => "running",
            PhaseName::RestartPending => "restart-pending",
            PhaseName::GivenUp => "given-up",
            PhaseName::Stopped => "stopped",
        }
    }

    /// While a server is being started and verified (or before the first).
    pub fn is_starting(self) -> bool {
        matches!(
            self,
            PhaseName::Idle | PhaseName::Starting | PhaseName::Verifying
        )
    }
}

impl fmt::Display for PhaseName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the state file and `status` show.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    pub phase: PhaseName,
    pub failures: u32,
    pub attempts: u32,
    pub last_error: Option<String>,
}

impl Policy {
    pub fn new(rules: PolicySettings, can_restart: bool, now: Instant) -> Policy {
        Policy {
            rules,
            can_restart,
            phase: Phase::Idle,
            next_check: now,
            failures: 0,
            attempts: 0,
            last_restart: None,
            last_error: None,
            down_alerted: false,
            down_failures: 0,
            memory_over: 0,
            paused: false,
            exited_while_paused: None,
            held_noted: false,
        }
    }

    /// Takes over `r` before [`Event::Begin`]: the attempts go on from
    /// there (the next restart waits RESTART_COOLDOWN from `now`, as the last
    /// one's time is not known here); a given-up episode stays open — the
    /// begin neither starts a server nor sends a second "Down", and the
    /// first healthy check sends "Recovered".
    pub fn resume(&mut self, r: Resumed, now: Instant) {
        self.attempts = r.attempts.min(self.rules.max_restart_attempts);
        if self.attempts > 0 {
            self.last_restart = Some(now);
        }
        self.down_alerted = r.given_up;
        if r.given_up {
            self.failures = r.failures;
            self.down_failures = r.failures;
        }
        self.last_error = r.last_error;
    }

    pub fn snapshot(&self) -> Snapshot {
        let phase = match self.phase {
            Phase::Idle => PhaseName::Idle,
            Phase::Starting { .. } => PhaseName::Starting,
            Phase::Verifying { .. } => PhaseName::Verifying,
            Phase::Running { .. } => PhaseName::Running,
            Phase::Pending { .. } => PhaseName::RestartPending,
            Phase::GivenUp { .. } => PhaseName::GivenUp,
        };
        Snapshot {
            phase,
            failures: self.failures,
            attempts: self.attempts,
            last_error: self.last_error.clone(),
        }
    }

    /// True while the server counts as healthy: running, verified (after a
    /// start) or checked healthy (after adoption), and no failed check or
    /// exit since. The heartbeat pings only then.
    pub fn is_healthy(&self) -> bool {
        matches!(
            self.phase,
            Phase::Running {
                healthy_since: Some(_)
            }
        )
    }

    /// True while a start is out or being verified (checks are suspended).
    pub fn is_starting(&self) -> bool {
        matches!(self.phase, Phase::Starting { .. } | Phase::Verifying { .. })
    }

    /// When `handle(Event::Tick, _)` has something to do next.
    pub fn next_wakeup(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Idle | Phase::Starting { .. } => None,
            Phase::Verifying {
                deadline,
                next_probe,
                ..
            } => Some((*next_probe).min(*deadline)),
            Phase::Running { .. } => Some(self.next_check),
            Phase::Pending { not_before, .. } => Some(self.next_check.min(*not_before)),
            Phase::GivenUp { retry_at } => {
                Some(retry_at.map_or(self.next_check, |r| r.min(self.next_check)))
            }
        }
    }

    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Begin(_) if self.down_alerted => {
                // Resumed given up: watch, as the monitor before did.
                self.phase = Phase::GivenUp {
                    retry_at: self
                        .rules
                        .retry_after_give_up
                        .map(|d| crate::config::instant_after(now, d)),
                };
                self.next_check = now;
            }
            Event::Begin(Begin::Start) => self.start(StartKind::First, now, &mut out),
            Event::Begin(Begin::Watch) => {
                self.phase = Phase::Running {
                    healthy_since: None,
                };
                self.next_check = now;
            }
            Event::Tick => self.tick(now, &mut out),
            Event::Checked(outcome) => self.checked(outcome, now, &mut out),
            Event::Spawned => {
                self.exited_while_paused = None;
                if let Phase::Starting { kind } = &self.phase {
                    self.phase = Phase::Verifying {
                        kind: kind.clone(),
                        started: now,
                        deadline: crate::config::instant_after(now, self.rules.startup_timeout),
                        next_probe: now,
                        last_failure: None,
                    };
                }
            }
            Event::SpawnFailed(reason) => {
                if let Phase::Starting { kind } = &self.phase {
                    let kind = kind.clone();
                    self.verify_failed(kind, reason, Trigger::Health, now, &mut out);
                }
            }
            Event::Exited(cause) => self.exited(cause, now, &mut out),
            Event::Memory { used, limit } => self.memory(used, limit, now, &mut out),
            Event::Pause => self.pause(),
            Event::Resume => self.unpause(now, &mut out),
            Event::PlannedRestart { by } => {
                if !self.can_restart {
                    out.push(Action::Note(Note::CannotRestart { by }));
                } else if self.is_starting() {
                    out.push(Action::Note(Note::AlreadyRestarting { by }));
                } else {
                    self.start(StartKind::Planned { by }, now, &mut out);
                }
            }
        }
        out
    }

    fn tick(&mut self, now: Instant, out: &mut Vec<Action>) {
        match &mut self.phase {
            Phase::Idle | Phase::Starting { .. } => {}
            Phase::Verifying {
                kind,
                started,
                deadline,
                next_probe,
                last_failure,
            } => {
                if now >= *deadline {
                    let reason = format!(
                        "not healthy within {}s ({})",
                        fmt_secs(self.rules.startup_timeout),
                        last_failure
                            .as_ref()
                            .map_or_else(|| "no answer".to_string(), ToString::to_string)
                    );
                    let kind = kind.clone();
                    self.verify_failed(kind, reason, Trigger::Health, now, out);
                } else if now >= *next_probe {
                    *next_probe = now + probe_gap(now - *started);
                    out.push(Action::Check);
                }
            }
            Phase::Pending {
                not_before,
                cause,
                down_checks,
                trigger,
            } => {
                if now >= *not_before {
                    let (cause, down_checks, trigger) = (cause.clone(), *down_checks, *trigger);
                    self.restart_due(cause, trigger, down_checks, now, out);
                } else {
                    self.check_if_due(now, out);
                }
            }
            Phase::GivenUp { retry_at } => {
                if retry_at.is_some_and(|at| now >= at) && !self.paused {
                    let cause = self.last_error.clone().unwrap_or_default();
                    let kind = StartKind::Retry {
                        cause,
                        down_checks: self.failures,
                    };
                    self.start(kind, now, out);
                } else {
                    self.check_if_due(now, out);
                }
            }
            Phase::Running { .. } => self.check_if_due(now, out),
        }
    }

    fn check_if_due(&mut self, now: Instant, out: &mut Vec<Action>) {
        if now >= self.next_check {
            // Start to start: a slow check does not stretch the cadence, but
            // checks never queue up behind one another either.
            self.next_check =
                crate::config::instant_after(self.next_check, self.rules.check_interval).max(now);
            out.push(Action::Check);
        }
    }

    fn checked(&mut self, outcome: CheckOutcome, now: Instant, out: &mut Vec<Action>) {
        let healthy = outcome.is_healthy();
        let failure = match outcome {
            CheckOutcome::Failed(r) => Some(r),
            CheckOutcome::Healthy { .. } => None,
        };
        // Words only where they leave as words: `last_error` (which holds
        // exit causes and spawn errors too) and a restart's cause.
        let reason = failure
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        match &mut self.phase {
            Phase::Idle | Phase::Starting { .. } => {}
            Phase::Verifying {
                kind,
                started,
                last_failure,
                ..
            } => {
                if healthy {
                    let note = Note::Verified {
                        kind: kind.clone(),
                        after: now - *started,
                    };
                    let kind = kind.clone();
                    self.verified(kind, now, out);
                    out.push(Action::Note(note));
                } else {
                    *last_failure = failure;
                }
            }
            Phase::Running { healthy_since } => {
                if healthy {
                    self.failures = 0;
                    let since = *healthy_since.get_or_insert(now);
                    let stable =
                        now >= crate::config::instant_after(since, self.rules.restart_cooldown);
                    if self.attempts > 0 && stable {
                        self.attempts = 0;
                        out.push(Action::Note(Note::AttemptsReset));
                    }
                    if self.down_alerted && stable {
                        // A retry out of give-up that stayed healthy: the
                        // episode that began with "Down" ends here.
                        self.recovered(now, out);
                    }
                } else {
                    *healthy_since = None;
                    self.failures += 1;
                    self.last_error = Some(reason.clone());
                    if self.failures >= self.rules.failure_threshold {
                        let cause = format!("{} failed checks, last: {reason}", self.failures);
                        self.restart_due(cause, Trigger::Health, self.failures, now, out);
                    }
                }
            }
            // A healthy answer does not cancel a restart that memory made due.
            Phase::Pending { .. } if self.memory_over < self.rules.failure_threshold => {
                if healthy {
                    self.failures = 0;
                    self.phase = Phase::Running {
                        healthy_since: Some(now),
                    };
                    out.push(Action::Note(Note::RestartCancelled));
                } else {
                    self.failures += 1;
                    self.last_error = Some(reason);
                }
            }
            Phase::Pending { .. } => {
                if healthy {
                    self.failures = 0;
                } else {
                    self.failures += 1;
                    self.last_error = Some(reason);
                }
            }
            Phase::GivenUp { .. } => {
                // Answering while still over MEMORY_LIMIT is not recovered.
                if healthy && self.memory_over == 0 {
                    self.recovered(now, out);
                } else if !healthy {
                    self.failures += 1;
                    self.last_error = Some(reason);
                }
            }
        }
    }

    /// MEMORY_LIMIT: a count of samples over the limit in a row, like the
    /// failure count; samples during a start are not the running server's.
    fn memory(&mut self, used: u64, limit: u64, now: Instant, out: &mut Vec<Action>) {
        if matches!(
            self.phase,
            Phase::Idle | Phase::Starting { .. } | Phase::Verifying { .. }
        ) {
            return;
        }
        if used <= limit {
            self.memory_over = 0;
            return;
        }
        self.memory_over += 1;
        if let Phase::Running { healthy_since } = &mut self.phase {
            *healthy_since = None;
            if self.memory_over >= self.rules.failure_threshold {
                let cause = memory_cause(used, limit, self.rules.memory_limit);
                self.last_error = Some(cause.clone());
                self.restart_due(cause, Trigger::Memory, self.failures, now, out);
            }
        }
    }

    fn exited(&mut self, cause: ExitCause, now: Instant, out: &mut Vec<Action>) {
        if self.paused {
            self.exited_while_paused = Some(cause.clone());
        }
        let cause = cause.to_string();
        match &self.phase {
            Phase::Verifying { kind, .. } => {
                let kind = kind.clone();
                self.verify_failed(kind, cause, Trigger::Exit, now, out);
            }
            Phase::Running { .. } => {
                self.phase = Phase::Running {
                    healthy_since: None,
                };
                self.last_error = Some(cause.clone());
                if self.rules.restart_on_exit {
                    self.restart_due(cause, Trigger::Exit, self.failures, now, out);
                }
            }
            Phase::Idle
            | Phase::Starting { .. }
            | Phase::Pending { .. }
            | Phase::GivenUp { .. } => {
                self.last_error = Some(cause);
            }
        }
    }

    fn verified(&mut self, kind: StartKind, now: Instant, out: &mut Vec<Action>) {
        match &kind {
            StartKind::Restart {
                cause, down_checks, ..
            } => out.push(Action::Alert(Alert::Restarted {
                down_checks: *down_checks,
                cause: cause.clone(),
            })),
            // A retry out of give-up is on probation: it counted as an
            // attempt and set the cooldown; it ends the episode ("Recovered")
            // only once healthy for RESTART_COOLDOWN, and a server that dies
            // before that goes back to given-up without a second "Down".
            StartKind::Retry { .. } => {
                self.down_failures = self.down_failures.max(self.failures);
            }
            // Someone restarted it on purpose while given up, and it came up
            // healthy: that is a recovery.
            StartKind::Planned { .. } if self.down_alerted => {
                self.down_failures = self.down_failures.max(self.failures);
                self.recovered(now, out);
            }
            StartKind::First | StartKind::Planned { .. } => {}
        }
        self.failures = 0;
        self.phase = Phase::Running {
            healthy_since: Some(now),
        };
        self.next_check = crate::config::instant_after(now, self.rules.check_interval);
    }

    /// "Server Recovered": the give-up episode is over, counters to zero.
    fn recovered(&mut self, now: Instant, out: &mut Vec<Action>) {
        out.push(Action::Alert(Alert::Recovered {
            failures: self.down_failures.max(self.failures),
        }));
        self.down_alerted = false;
        self.down_failures = 0;
        self.failures = 0;
        self.attempts = 0;
        self.phase = Phase::Running {
            healthy_since: Some(now),
        };
    }

    fn verify_failed(
        &mut self,
        kind: StartKind,
        reason: String,
        trigger: Trigger,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        out.push(Action::Note(Note::VerifyFailed {
            kind: kind.clone(),
            reason: reason.clone(),
        }));
        self.last_error = Some(reason.clone());
        self.failures = self.failures.max(self.rules.failure_threshold);
        self.next_check = crate::config::instant_after(now, self.rules.check_interval);
        match kind {
            StartKind::Retry { .. } => {
                self.phase = Phase::GivenUp {
                    retry_at: self
                        .rules
                        .retry_after_give_up
                        .map(|d| crate::config::instant_after(now, d)),
                };
            }
            StartKind::Planned { by } => {
                out.push(Action::Alert(Alert::PlannedRestartFailed {
                    by,
                    reason: reason.clone(),
                }));
                self.phase = Phase::Running {
                    healthy_since: None,
                };
                self.restart_due(reason, trigger, self.failures, now, out);
            }
            StartKind::First | StartKind::Restart { .. } => {
                self.phase = Phase::Running {
                    healthy_since: None,
                };
                self.restart_due(reason, trigger, self.failures, now, out);
            }
        }
    }

    fn restart_due(
        &mut self,
        cause: String,
        trigger: Trigger,
        down_checks: u32,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        if self.paused {
            if !self.held_noted {
                self.held_noted = true;
                out.push(Action::Note(Note::HeldByPause { cause }));
            }
            return;
        }
        if !self.can_restart || self.attempts >= self.rules.max_restart_attempts {
            return self.give_up(cause, now, out);
        }
        if let Some(last) = self.last_restart {
            let not_before = crate::config::instant_after(last, self.rules.restart_cooldown);
            if now < not_before {
                if !matches!(self.phase, Phase::Pending { .. }) {
                    out.push(Action::Note(Note::RestartDeferred {
                        cause: cause.clone(),
                        wait: not_before - now,
                    }));
                }
                self.phase = Phase::Pending {
                    not_before,
                    cause,
                    down_checks,
                    trigger,
                };
                return;
            }
        }
        let kind = StartKind::Restart {
            attempt: self.attempts + 1,
            cause,
            down_checks,
            trigger,
        };
        self.start(kind, now, out);
    }

    fn start(&mut self, kind: StartKind, now: Instant, out: &mut Vec<Action>) {
        // A retry after giving up is a restart like any other: it counts and
        // it sets the cooldown.
        if let StartKind::Restart { .. } | StartKind::Retry { .. } = kind {
            self.attempts += 1;
            self.last_restart = Some(now);
        }
        self.memory_over = 0;
        self.phase = Phase::Starting { kind: kind.clone() };
        out.push(Action::Start(kind));
    }

    /// A pause holds back every restart (a planned one, asked
    /// by a person, still goes); checks go on.
    fn pause(&mut self) {
        self.paused = true;
        self.held_noted = false;
        if let Phase::Pending { .. } = self.phase {
            self.phase = Phase::Running {
                healthy_since: None,
            };
        }
    }

    /// The end of a pause: a fresh start — failures and attempts at zero,
    /// a give-up episode closed (the pause closed its incident), no
    /// cooldown; a server that exited meanwhile is restarted at once
    /// (RESTART_ON_EXIT).
    fn unpause(&mut self, now: Instant, out: &mut Vec<Action>) {
        if !std::mem::replace(&mut self.paused, false) {
            return;
        }
        self.failures = 0;
        self.memory_over = 0;
        self.attempts = 0;
        self.down_alerted = false;
        self.down_failures = 0;
        self.last_restart = None;
        if self.is_starting() || matches!(self.phase, Phase::Idle) {
            return;
        }
        self.phase = Phase::Running {
            healthy_since: None,
        };
        self.next_check = now;
        if let Some(cause) = self.exited_while_paused.take() {
            if self.rules.restart_on_exit {
                self.restart_due(cause.to_string(), Trigger::Exit, 0, now, out);
            }
        }
    }

    fn give_up(&mut self, cause: String, now: Instant, out: &mut Vec<Action>) {
        let last_error = self.last_error.clone().unwrap_or_else(|| cause.clone());
        out.push(Action::Note(Note::GaveUp {
            attempts: self.attempts,
            last_error: last_error.clone(),
            alerted: self.down_alerted,
        }));
        if !self.down_alerted {
            out.push(Action::Alert(Alert::Down {
                failures: self.failures,
                attempts: self.attempts,
                max_attempts: self.rules.max_restart_attempts,
                last_error,
                cause,
            }));
            self.down_alerted = true;
        }
        self.phase = Phase::GivenUp {
            retry_at: self
                .rules
                .retry_after_give_up
                .map(|d| crate::config::instant_after(now, d)),
        };
    }
}

/// The cause of a memory restart: `memory 612 MiB above MEMORY_LIMIT 512 MiB`
/// (a percentage adds the setting: `... MEMORY_LIMIT 1638 MiB (80%)`).
pub fn memory_cause(used: u64, limit: u64, setting: Option<crate::config::MemoryLimit>) -> String {
    let mut s = format!(
        "{MEMORY_CAUSE_PREFIX}{} above MEMORY_LIMIT {}",
        crate::usage::mib(used),
        crate::usage::mib(limit)
    );
    if let Some(p @ crate::config::MemoryLimit::Percent(_)) = setting {
        s.push_str(&format!(" ({p})"));
    }
    s
}

/// How every [`memory_cause`] begins.
pub const MEMORY_CAUSE_PREFIX: &str = "memory ";

/// The gap before the next verification probe: a tenth of the time waited so
/// far, between 5 ms and 250 ms — quick for a fast server, cheap for a slow one.
fn probe_gap(waited: Duration) -> Duration {
    (waited / 10).clamp(PROBE_MIN, PROBE_MAX)
}

fn fmt_secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0}")
    } else {
        format!("{s}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Reason;
    use crate::sys::WaitStatus;

    const SEC: Duration = Duration::from_secs(1);

    fn rules() -> PolicySettings {
        PolicySettings {
            check_interval: 10 * SEC,
            failure_threshold: 3,
            max_restart_attempts: 3,
            restart_cooldown: 60 * SEC,
            startup_timeout: 10 * SEC,
            retry_after_give_up: None,
            restart_on_exit: true,
            memory_limit: None,
        }
    }

    fn healthy() -> Event {
        Event::Checked(CheckOutcome::Healthy { warnings: vec![] })
    }

    fn failed() -> Event {
        Event::Checked(CheckOutcome::Failed(Reason::TimedOut))
    }

    /// A policy driven through its steps with a clock the test moves.
    struct Scenario {
        p: Policy,
        t0: Instant,
        now: Instant,
        alerts: Vec<Alert>,
        starts: Vec<StartKind>,
    }

    impl Scenario {
        fn new(rules: PolicySettings) -> Scenario {
            Scenario::with(rules, true)
        }

        fn with(rules: PolicySettings, can_restart: bool) -> Scenario {
            let t0 = Instant::now();
            Scenario {
                p: Policy::new(rules, can_restart, t0),
                t0,
                now: t0,
                alerts: vec![],
                starts: vec![],
            }
        }

        /// Started, verified and running.
        fn running(rules: PolicySettings) -> Scenario {
            let mut s = Scenario::new(rules);
            s.feed(Event::Begin(Begin::Start));
            s.feed(Event::Spawned);
            s.feed(Event::Tick);
            s.feed(healthy());
            assert_eq!(s.p.snapshot().phase, PhaseName::Running);
            s
        }

        fn at(&mut self, secs: f64) -> &mut Scenario {
            self.now = self.t0 + Duration::from_secs_f64(secs);
            self
        }

        fn feed(&mut self, e: Event) -> Vec<Action> {
            let actions = self.p.handle(e, self.now);
            for a in &actions {
                match a {
                    Action::Alert(al) => self.alerts.push(al.clone()),
                    Action::Start(k) => self.starts.push(k.clone()),
                    _ => {}
                }
            }
            actions
        }

        /// One regular check at `secs` with the given result (a Tick first).
        fn check_at(&mut self, secs: f64, ev: Event) -> Vec<Action> {
            self.at(secs);
            let tick = self.feed(Event::Tick);
            assert!(
                tick.contains(&Action::Check),
                "no check due at {secs}s: {tick:?}"
            );
            self.feed(ev)
        }

        fn restarts(&self) -> usize {
            self.starts
                .iter()
                .filter(|k| matches!(k, StartKind::Restart { .. }))
                .count()
        }

        fn phase(&self) -> PhaseName {
            self.p.snapshot().phase
        }
    }

    #[test]
    fn a_failed_verification_says_the_last_probe_failure() {
        let mut s = Scenario::new(rules());
        s.feed(Event::Begin(Begin::Start));
        s.feed(Event::Spawned);
        s.feed(Event::Tick);
        s.feed(Event::Checked(CheckOutcome::Failed(Reason::Refused)));
        s.at(2.0)
            .feed(Event::Checked(CheckOutcome::Failed(Reason::Http(503))));
        let out = s.at(11.0).feed(Event::Tick);
        let reason = out.iter().find_map(|a| match a {
            Action::Note(Note::VerifyFailed { reason, .. }) => Some(reason.as_str()),
            _ => None,
        });
        assert_eq!(reason, Some("not healthy within 10s (HTTP 503)"), "{out:?}");
        assert_eq!(
            s.p.snapshot().last_error.as_deref(),
            Some("not healthy within 10s (HTTP 503)")
        );
    }

    #[test]
    fn healthy_only_while_verified_and_no_failure_since() {
        // Started: healthy once verified, not while starting.
        let mut s = Scenario::new(rules());
        s.feed(Event::Begin(Begin::Start));
        assert!(!s.p.is_healthy(), "starting");
        s.feed(Event::Spawned);
        s.feed(Event::Tick);
        assert!(!s.p.is_healthy(), "verifying");
        s.feed(healthy());
        assert!(s.p.is_healthy(), "verified");
        // The first failed check ends it; a healthy one brings it back.
        s.check_at(10.0, failed());
        assert!(!s.p.is_healthy(), "one failed check");
        s.check_at(20.0, healthy());
        assert!(s.p.is_healthy());
        // An exit ends it at once, and the restart is not healthy until
        // it is verified.
        s.at(25.0)
            .feed(Event::Exited(ExitCause::Status(WaitStatus::Signaled(9))));
        assert!(!s.p.is_healthy(), "exited");
        // Adopted: not healthy until the first healthy check.
        let mut a = Scenario::new(rules());
        a.feed(Event::Begin(Begin::Watch));
        assert!(!a.p.is_healthy(), "adopted, not checked yet");
        a.check_at(0.0, healthy());
        assert!(a.p.is_healthy());
        // Given up: not healthy.
        let mut g = Scenario::running(PolicySettings {
            max_restart_attempts: 1,
            restart_cooldown: Duration::ZERO,
            ..rules()
        });
        g.at(1.0)
            .feed(Event::Exited(ExitCause::Status(WaitStatus::Exited(1))));
        g.feed(Event::SpawnFailed("boom".into()));
        assert_eq!(g.phase(), PhaseName::GivenUp);
        assert!(!g.p.is_healthy(), "given up");
    }

    #[test]
    fn resumed_attempts_go_on_to_give_up_with_one_down() {
        let mut s = Scenario::new(rules());
        s.p.resume(
            Resumed {
                attempts: 2,
                ..Resumed::default()
            },
            s.now,
        );
        // An adopted server is watched; three failures make a restart due,
        // after the cooldown counted from the resume.
        s.feed(Event::Begin(Begin::Watch));
        s.check_at(0.0, failed());
        s.check_at(10.0, failed());
        s.check_at(20.0, failed());
        assert!(s.starts.is_empty(), "{:?}", s.starts);
        assert_eq!(s.phase(), PhaseName::RestartPending);
        s.at(60.0).feed(Event::Tick);
        assert!(
            matches!(s.starts[..], [StartKind::Restart { attempt: 3, .. }]),
            "{:?}",
            s.starts
        );
        s.feed(Event::SpawnFailed("boom".into()));
        assert_eq!(s.phase(), PhaseName::GivenUp);
        assert_eq!(s.p.snapshot().attempts, 3);
        let downs = s
            .alerts
            .iter()
            .filter(|a| matches!(a, Alert::Down { .. }))
            .count();
        assert_eq!(downs, 1, "{:?}", s.alerts);
    }

    #[test]
    fn resumed_give_up_watches_without_a_start_or_a_second_down() {
        let mut s = Scenario::new(rules());
        s.p.resume(
            Resumed {
                attempts: 3,
                given_up: true,
                failures: 7,
                last_error: Some("HTTP 503".into()),
            },
            s.now,
        );
        let begin = s.feed(Event::Begin(Begin::Start));
        assert!(begin.is_empty(), "{begin:?}");
        assert_eq!(s.phase(), PhaseName::GivenUp);
        for i in 0..5 {
            s.check_at(f64::from(i) * 10.0, failed());
        }
        s.at(1000.0).feed(Event::Tick);
        assert!(s.starts.is_empty(), "{:?}", s.starts);
        assert!(s.alerts.is_empty(), "{:?}", s.alerts);
        s.check_at(1000.0, healthy());
        assert!(
            matches!(s.alerts[..], [Alert::Recovered { failures: 12 }]),
            "{:?}",
            s.alerts
        );
        assert_eq!(s.p.snapshot().attempts, 0);
    }

    #[test]
    fn first_start_is_verified_without_alert() {
        let mut s = Scenario::new(rules());
        assert_eq!(
            s.feed(Event::Begin(Begin::Start)),
            vec![Action::Start(StartKind::First)]
        );
        s.feed(Event::Spawned);
        assert_eq!(s.feed(Event::Tick), vec![Action::Check]);
        s.at(0.05).feed(healthy());
        assert_eq!(s.phase(), PhaseName::Running);
        assert!(s.alerts.is_empty());
        assert_eq!(s.p.snapshot().attempts, 0);
    }

    #[test]
    fn verification_probes_fast_and_at_least_every_second() {
        let mut s = Scenario::new(rules());
        s.feed(Event::Begin(Begin::Start));
        s.feed(Event::Spawned);
        let mut probes = vec![];
        let mut t = 0.0;
        while t < 9.5 {
            s.at(t);
            if s.feed(Event::Tick).contains(&Action::Check) {
                probes.push(t);
                s.feed(Event::Checked(CheckOutcome::Failed(Reason::Refused)));
            }
            t += 0.001;
        }
        assert!(probes.len() > 30, "{probes:?}");
        assert!(
            probes[1] - probes[0] < 0.0075,
            "first probes 5 ms apart: {probes:?}"
        );
        for w in probes.windows(2) {
            assert!(w[1] - w[0] <= 1.0, "gap over a second: {w:?}");
        }
    }

    #[test]
    fn restarts_after_failure_threshold() {
        let mut s = Scenario::running(rules());
        s.check_at(10.0, failed());
        s.check_at(20.0, failed());
        assert_eq!(s.restarts(), 0);
        let actions = s.check_at(30.0, failed());
        assert_eq!(
            actions,
            vec![Action::Start(StartKind::Restart {
                attempt: 1,
                cause: "3 failed checks, last: timed out".into(),
                down_checks: 3,
                trigger: Trigger::Health,
            })]
        );
    }

    #[test]
    fn healthy_check_resets_failure_count() {
        let mut s = Scenario::running(rules());
        s.check_at(10.0, failed());
        s.check_at(20.0, failed());
        s.check_at(30.0, healthy());
        s.check_at(40.0, failed());
        s.check_at(50.0, failed());
        assert_eq!(s.restarts(), 0);
        assert_eq!(s.p.snapshot().failures, 2);
    }

    #[test]
    fn checks_run_start_to_start() {
        let mut s = Scenario::running(rules());
        // A check due at 10 s that is only looked at 10.5 s later still
        // leaves the next one due at 20 s.
        s.check_at(10.5, failed());
        s.at(19.9);
        assert!(s.feed(Event::Tick).is_empty());
        assert_eq!(s.p.next_wakeup(), Some(s.t0 + 20 * SEC));
    }

    #[test]
    fn exit_restarts_at_once_with_zero_down_checks() {
        let mut s = Scenario::running(rules());
        s.at(5.0);
        let actions = s.feed(Event::Exited(ExitCause::Status(WaitStatus::Signaled(9))));
        assert_eq!(
            actions,
            vec![Action::Start(StartKind::Restart {
                attempt: 1,
                cause: "killed by signal 9 (SIGKILL)".into(),
                down_checks: 0,
                trigger: Trigger::Exit,
            })]
        );
        s.feed(Event::Spawned);
        s.at(5.06);
        s.feed(Event::Tick);
        s.feed(healthy());
        assert_eq!(
            s.alerts,
            vec![Alert::Restarted {
                down_checks: 0,
                cause: "killed by signal 9 (SIGKILL)".into()
            }]
        );
    }

    /// The trigger of a restart is data that survives the cooldown's wait:
    /// an exit while a restart is verified restarts for `exit`, a start
    /// never healthy in time for `health`.
    #[test]
    fn a_restarts_trigger_is_kept_through_verification_and_cooldown() {
        let mut s = Scenario::running(rules());
        s.at(5.0);
        s.feed(Event::Exited(ExitCause::Status(WaitStatus::Exited(1))));
        s.feed(Event::Spawned);
        s.at(5.01);
        s.feed(Event::Exited(ExitCause::Status(WaitStatus::Exited(2))));
        let mut t = 5.01;
        while s.restarts() < 2 && t < 3600.0 {
            t += 1.0;
            s.at(t);
            s.feed(Event::Tick);
        }
        let triggers: Vec<Trigger> = (s.starts.iter())
            .filter_map(|k| match k {
                StartKind::Restart { trigger, .. } => Some(*trigger),
                _ => None,
            })
            .collect();
        assert_eq!(triggers, [Trigger::Exit, Trigger::Exit]);
        // Spawned, never healthy: the start's deadline passes.
        s.feed(Event::Spawned);
        while s.restarts() < 3 && t < 7200.0 {
            t += 1.0;
            s.at(t);
            let actions = s.feed(Event::Tick);
            if actions.contains(&Action::Check) {
                s.feed(failed());
            }
        }
        assert!(
            matches!(
                s.starts.last(),
                Some(StartKind::Restart {
                    trigger: Trigger::Health,
                    ..
                })
            ),
            "{:?}",
            s.starts
        );
    }

    #[test]
    fn exit_without_restart_on_exit_waits_for_failed_checks() {
        let mut s = Scenario::running(PolicySettings {
            restart_on_exit: false,
            ..rules()
        });
        s.at(5.0);
        assert!(s
            .feed(Event::Exited(ExitCause::Status(WaitStatus::Exited(1))))
            .is_empty());
        s.check_at(10.0, failed());
        s.check_at(20.0, failed());
        assert_eq!(s.restarts(), 0);
        s.check_at(30.0, failed());
        assert_eq!(s.restarts(), 1);
    }

    #[test]
    fn cooldown_defers_restart() {
        let mut s = Scenario::running(rules());
        s.at(5.0)
            .feed(Event::Exited(ExitCause::Status(WaitStatus::Exited(1))));
        s.feed(Event::Spawned);
        s.at(5.1).feed(Event::Tick);
        s.feed(healthy());
        assert_eq!(s.restarts(), 1);
        // Dies again 10 s later: the first restart began at 5 s, so the next
        // may begin at 65 s, not before.
        s.at(15.0);
        let actions = s.feed(Event::Exited(ExitCause::Status(WaitStatus::Exited(1))));
        assert!(matches!(
            actions[..],
            [Action::Note(Note::RestartDeferred { .. })]
        ));
        assert_eq!(s.phase(), PhaseName::RestartPending);
        assert_eq!(
            s.p.next_wakeup(),
            Some(s.t0 + Duration::from_secs_f64(15.1))
        );
        s.at(64.9).feed(Event::Tick);
        assert_eq!(s.restarts(), 1);
        s.at(65.0);
        let actions = s.feed(Event::Tick);
        assert!(matches!(
            actions[..],
            [Action::Start(StartKind::Restart { attempt: 2, .. })]
        ));
    }

    #[test]
    fn first_start_does_not_count_for_cooldown() {
        let mut s = Scenario::running(rules());
        s.at(1.0);
        let actions = s.feed(Event::Exited(ExitCause::Status(WaitStatus::Signaled(9))));
        assert!(matches!(
            actions[..],
            [Action::Start(StartKind::Restart { attempt: 1, .. })]
        ));
    }

    #[test]
    fn healthy_check_cancels_pending_restart() {
        let mut s = Scenario::running(PolicySettings {
            restart_on_exit: false,
            ..rules()
        });
        s.at(1.0).feed(Event::Exited(ExitCause::Unknown));
        s.check_at(10.0, failed());
        s.check_at(20.0, failed());
        s.check_at(30.0, failed());
        s.feed(Event::Spawned);
        s.at(30.5).feed(Event::Tick);
        s.feed(healthy());
        s.check_at(40.5, failed());
        s.check_at(50.5, failed());
        s.check_at(60.5, failed());
        assert_eq!(s.phase(), PhaseName::RestartPending);
        s.check_at(70.5, healthy());
        assert_eq!(s.phase(), PhaseName::Running);
        s.at(95.0).feed(Event::Tick);
        assert_eq!(s.restarts(), 1);
    }

    #[test]
    fn attempts_reset_only_after_stable_period() {
        let mut s = Scenario::running(rules());
        s.at(1.0).feed(Event::Exited(ExitCause::Unknown));
        s.feed(Event::Spawned);
        s.at(1.1).feed(Event::Tick);
        s.feed(healthy());
        assert_eq!(s.p.snapshot().attempts, 1);
        // Healthy checks, but not yet for RESTART_COOLDOWN since the restart.
        s.check_at(11.1, healthy());
        s.check_at(51.1, healthy());
        assert_eq!(s.p.snapshot().attempts, 1);
        let actions = s.check_at(61.1, healthy());
        assert_eq!(actions, vec![Action::Note(Note::AttemptsReset)]);
        assert_eq!(s.p.snapshot().attempts, 0);
    }

    #[test]
    fn failed_check_breaks_the_stable_period() {
        let mut s = Scenario::running(rules());
        s.at(1.0).feed(Event::Exited(ExitCause::Unknown));
        s.feed(Event::Spawned);
        s.at(1.1).feed(Event::Tick);
        s.feed(healthy());
        s.check_at(31.1, failed());
        s.check_at(41.1, healthy());
        s.check_at(71.1, healthy());
        assert_eq!(s.p.snapshot().attempts, 1, "healthy only since 41.1 s");
        s.check_at(101.1, healthy());
        assert_eq!(s.p.snapshot().attempts, 0);
    }

    /// The server dies right after every verified restart.
    #[test]
    fn crash_loop_after_verified_restarts_reaches_give_up() {
        let mut s = Scenario::running(PolicySettings {
            restart_cooldown: 5 * SEC,
            ..rules()
        });
        let mut t = 1.0;
        for _ in 0..3 {
            s.at(t).feed(Event::Tick);
            s.feed(Event::Exited(ExitCause::Status(WaitStatus::Exited(1))));
            s.feed(Event::Spawned);
            s.at(t + 0.1).feed(Event::Tick);
            s.feed(healthy());
            t += 6.0;
        }
        assert_eq!(s.restarts(), 3);
        s.at(t)
            .feed(Event::Exited(ExitCause::Status(WaitStatus::Exited(1))));
        assert_eq!(s.restarts(), 3);
        assert_eq!(s.phase(), PhaseName::GivenUp);
        let downs: Vec<_> = s
            .alerts
            .iter()
            .filter(|a| matches!(a, Alert::Down { .. }))
            .collect();
        assert_eq!(downs.len(), 1);
        assert_eq!(
            s.alerts.len(),
            4,
            "three Restarted, one Down: {:?}",
            s.alerts
        );
    }

    /// The server dies at once every time it is started.
    #[test]
    fn crash_loop_at_start_gives_up_after_last_attempt_fails() {
        let mut s = Scenario::new(PolicySettings {
            restart_cooldown: SEC,
            ..rules()
        });
        s.feed(Event::Begin(Begin::Start));
        let mut t = 0.0;
        for _ in 0..10 {
            s.at(t);
            s.feed(Event::Tick);
            if s.phase() == PhaseName::Starting {
                s.feed(Event::Spawned);
                s.at(t + 0.01);
                s.feed(Event::Exited(ExitCause::Status(WaitStatus::Exited(1))));
            }
            t += 1.0;
        }
        assert_eq!(s.restarts(), 3);
        assert_eq!(s.phase(), PhaseName::GivenUp);
        match &s.alerts[..] {
            [Alert::Down {
                attempts: 3,
                max_attempts: 3,
                last_error,
                ..
            }] => assert_eq!(last_error, "process exited with status 1"),
            other => panic!("{other:?}"),
        }
    }

    /// A server that starts but never answers healthy.
    #[test]
    fn stays_broken_exactly_max_attempts_then_gives_up_once() {
        let mut s = Scenario::new(PolicySettings {
            check_interval: SEC,
            restart_cooldown: 2 * SEC,
            startup_timeout: 3 * SEC,
            ..rules()
        });
        s.feed(Event::Begin(Begin::Start));
        let mut t = 0.0;
        while t < 60.0 {
            s.at(t);
            for a in s.feed(Event::Tick) {
                if a == Action::Check {
                    s.feed(Event::Checked(CheckOutcome::Failed(Reason::Http(503))));
                }
            }
            if s.phase() == PhaseName::Starting {
                s.feed(Event::Spawned);
            }
            t += 0.01;
        }
        assert_eq!(s.restarts(), 3);
        assert_eq!(s.alerts.len(), 1, "{:?}", s.alerts);
        assert!(
            matches!(&s.alerts[0], Alert::Down { attempts: 3, max_attempts: 3, last_error, .. }
            if last_error.contains("HTTP 503"))
        );
        // Restarts began at least RESTART_COOLDOWN apart.
        assert_eq!(s.phase(), PhaseName::GivenUp);
    }

    #[test]
    fn gives_up_once_and_recovers_when_fixed() {
        let mut s = Scenario::running(PolicySettings {
            max_restart_attempts: 1,
            ..rules()
        });
        s.at(1.0).feed(Event::Exited(ExitCause::Unknown));
        s.feed(Event::Spawned);
        s.at(11.0).feed(Event::Tick);
        assert_eq!(s.phase(), PhaseName::GivenUp);
        assert_eq!(s.alerts.len(), 1);
        for i in 1..9 {
            s.check_at(11.0 + i as f64 * 10.0, failed());
        }
        assert_eq!(s.alerts.len(), 1, "one Down alert only");
        assert_eq!(s.restarts(), 1, "no restarts after giving up");
        s.check_at(101.0, healthy());
        assert_eq!(s.alerts.last(), Some(&Alert::Recovered { failures: 11 }));
        assert_eq!(s.phase(), PhaseName::Running);
        assert_eq!(s.p.snapshot().attempts, 0);
        // It starts over: a new exit restarts again.
        s.at(105.0);
        assert!(matches!(
            s.feed(Event::Exited(ExitCause::Unknown))[..],
            [Action::Start(StartKind::Restart { attempt: 1, .. })]
        ));
    }

    #[test]
    fn retry_after_give_up_tries_again_periodically() {
        let mut s = Scenario::running(PolicySettings {
            max_restart_attempts: 1,
            retry_after_give_up: Some(100 * SEC),
            ..rules()
        });
        s.at(1.0).feed(Event::Exited(ExitCause::Unknown));
        s.feed(Event::Spawned);
        s.at(1.5).feed(Event::Exited(ExitCause::Unknown));
        assert_eq!(s.phase(), PhaseName::GivenUp);
        assert_eq!(
            s.p.next_wakeup(),
            Some(s.t0 + Duration::from_secs_f64(11.5))
        );
        s.at(101.4).feed(Event::Tick);
        assert_eq!(s.starts.len(), 2);
        s.at(101.5);
        assert!(matches!(
            s.feed(Event::Tick)[..],
            [Action::Start(StartKind::Retry { .. })]
        ));
        // It fails too: still given up, no second Down alert, next retry later.
        s.feed(Event::Spawned);
        s.at(101.6).feed(Event::Exited(ExitCause::Unknown));
        assert_eq!(s.phase(), PhaseName::GivenUp);
        assert_eq!(s.alerts.len(), 1);
        s.at(201.6);
        assert!(matches!(
            s.feed(Event::Tick)[..],
            [Action::Start(StartKind::Retry { .. })]
        ));
        s.feed(Event::Spawned);
        s.at(201.7).feed(Event::Tick);
        s.feed(healthy());
        // Verified: running, but on probation (issue 8, item 7): no alert
        // yet, the retries counted, the attempts are not reset at once.
        assert_eq!(s.alerts.len(), 1, "{:?}", s.alerts);
        assert_eq!(s.phase(), PhaseName::Running);
        assert_eq!(s.p.snapshot().attempts, 3);
        // Healthy for RESTART_COOLDOWN (60 s): the episode ends.
        for i in 1..=6 {
            s.check_at(201.7 + 10.0 * i as f64, healthy());
        }
        assert!(matches!(s.alerts.last(), Some(Alert::Recovered { .. })));
        assert_eq!(s.p.snapshot().attempts, 0);
    }

    impl Scenario {
        /// Moves the clock on by `d`.
        fn after(&mut self, d: Duration) -> &mut Scenario {
            self.now += d;
            self
        }

        /// Ticks, and answers every check the tick asks for with `ev`.
        fn tick_answering(&mut self, ev: &Event) -> Vec<Action> {
            let actions = self.feed(Event::Tick);
            if actions.contains(&Action::Check) {
                self.feed(ev.clone());
            }
            actions
        }

        fn count(&self, what: fn(&Alert) -> bool) -> usize {
            self.alerts.iter().filter(|a| what(a)).count()
        }
    }

    fn is_down(a: &Alert) -> bool {
        matches!(a, Alert::Down { .. })
    }

    fn is_restarted(a: &Alert) -> bool {
        matches!(a, Alert::Restarted { .. })
    }

    fn is_recovered(a: &Alert) -> bool {
        matches!(a, Alert::Recovered { .. })
    }

    /// Given up after one attempt, with RETRY_AFTER_GIVE_UP = `retry`.
    fn given_up(cooldown: Duration, retry: Duration) -> Scenario {
        let mut s = Scenario::running(PolicySettings {
            max_restart_attempts: 1,
            restart_cooldown: cooldown,
            retry_after_give_up: Some(retry),
            ..rules()
        });
        s.after(SEC).feed(Event::Exited(ExitCause::Unknown));
        s.feed(Event::Spawned);
        s.after(SEC / 10).feed(Event::Exited(ExitCause::Unknown));
        assert_eq!(s.phase(), PhaseName::GivenUp);
        assert_eq!(s.count(is_down), 1);
        s
    }

    /// Waits (ticking every 10 ms, checks failing) until a retry starts.
    fn until_retry(s: &mut Scenario, limit: Duration) {
        let end = s.now + limit;
        while s.now < end {
            s.after(Duration::from_millis(10));
            let actions = s.tick_answering(&failed());
            if actions
                .iter()
                .any(|a| matches!(a, Action::Start(StartKind::Retry { .. })))
            {
                return;
            }
        }
        panic!("no retry within {limit:?}");
    }

    #[test]
    fn a_retry_counts_as_an_attempt_and_sets_the_cooldown() {
        let mut s = given_up(4 * SEC, 5 * SEC);
        until_retry(&mut s, 6 * SEC);
        assert_eq!(s.p.snapshot().attempts, 2, "the retry counted");
        let retry_at = s.now;
        s.feed(Event::Spawned);
        s.after(SEC / 10).tick_answering(&healthy());
        assert_eq!(s.phase(), PhaseName::Running);
        // Dies 1.7 s after the retry: not restarted before the cooldown,
        // and not from zero attempts: back to given-up.
        s.after(Duration::from_millis(1600));
        s.feed(Event::Exited(ExitCause::Status(WaitStatus::Exited(1))));
        assert_eq!(s.phase(), PhaseName::GivenUp);
        assert_eq!(s.restarts(), 1, "no restart after the retry");
        // The next start is the next retry, RETRY_AFTER_GIVE_UP later.
        let before = s.starts.len();
        until_retry(&mut s, 6 * SEC);
        assert_eq!(s.starts.len(), before + 1);
        assert!(s.now >= retry_at + 4 * SEC, "the cooldown holds");
    }

    #[test]
    fn a_retry_that_dies_before_the_cooldown_sends_no_second_down() {
        // The issue's case: a server that dies seconds after every retry,
        // for a minute and more: one Down, no Restarted, no Recovered.
        let mut s = given_up(4 * SEC, 5 * SEC);
        for _ in 0..12 {
            until_retry(&mut s, 6 * SEC);
            s.feed(Event::Spawned);
            s.after(SEC / 10).tick_answering(&healthy());
            s.after(2 * SEC)
                .feed(Event::Exited(ExitCause::Status(WaitStatus::Exited(1))));
            assert_eq!(s.phase(), PhaseName::GivenUp);
        }
        assert_eq!(s.count(is_down), 1, "{:?}", s.alerts);
        assert_eq!(s.count(is_restarted), 0, "{:?}", s.alerts);
        assert_eq!(s.count(is_recovered), 0, "{:?}", s.alerts);
        assert_eq!(s.restarts(), 1);
    }

    #[test]
    fn a_retry_healthy_for_the_cooldown_recovers_and_resets_attempts() {
        let mut s = given_up(4 * SEC, 5 * SEC);
        until_retry(&mut s, 6 * SEC);
        s.feed(Event::Spawned);
        s.after(SEC / 10).tick_answering(&healthy());
        // Healthy checks for just under the cooldown: still on probation.
        for _ in 0..3 {
            s.after(SEC).tick_answering(&healthy());
        }
        assert_eq!(s.count(is_recovered), 0);
        assert_eq!(s.p.snapshot().attempts, 2);
        s.after(SEC * 10).tick_answering(&healthy());
        assert_eq!(s.count(is_recovered), 1, "{:?}", s.alerts);
        assert_eq!(s.p.snapshot().attempts, 0);
        assert_eq!(s.p.snapshot().failures, 0);
        // A new episode may begin: it gets its own Down.
        s.after(SEC * 10).feed(Event::Exited(ExitCause::Unknown));
        s.feed(Event::Spawned);
        s.after(SEC / 10).feed(Event::Exited(ExitCause::Unknown));
        assert_eq!(s.phase(), PhaseName::GivenUp);
        assert_eq!(s.count(is_down), 2, "{:?}", s.alerts);
    }

    #[test]
    fn a_verified_planned_restart_out_of_give_up_is_a_recovery() {
        let mut s = given_up(60 * SEC, 600 * SEC);
        s.after(SEC)
            .feed(Event::PlannedRestart { by: "ops".into() });
        s.feed(Event::Spawned);
        s.after(SEC / 10).tick_answering(&healthy());
        assert_eq!(s.phase(), PhaseName::Running);
        assert!(
            matches!(s.alerts.last(), Some(Alert::Recovered { .. })),
            "{:?}",
            s.alerts
        );
        assert_eq!(s.p.snapshot().attempts, 0);
        assert_eq!(s.count(is_restarted), 0);
    }

    #[test]
    fn a_planned_restart_out_of_give_up_that_fails_sends_no_second_down() {
        let mut s = given_up(60 * SEC, 600 * SEC);
        s.after(SEC)
            .feed(Event::PlannedRestart { by: "ops".into() });
        s.feed(Event::Spawned);
        s.after(SEC / 10).feed(Event::Exited(ExitCause::Unknown));
        assert_eq!(s.phase(), PhaseName::GivenUp);
        assert_eq!(s.count(is_down), 1, "{:?}", s.alerts);
    }

    #[test]
    fn without_server_command_gives_up_at_threshold_and_recovers() {
        let mut s = Scenario::with(rules(), false);
        s.feed(Event::Begin(Begin::Watch));
        s.check_at(0.0, healthy());
        s.check_at(10.0, failed());
        s.check_at(20.0, failed());
        s.check_at(30.0, failed());
        assert!(s.starts.is_empty());
        assert!(matches!(&s.alerts[..], [Alert::Down { attempts: 0, .. }]));
        s.check_at(40.0, healthy());
        assert!(matches!(
            s.alerts.last(),
            Some(Alert::Recovered { failures: 3 })
        ));
    }

    #[test]
    fn spawn_failure_counts_as_failed_attempt() {
        let mut s = Scenario::running(PolicySettings {
            max_restart_attempts: 1,
            ..rules()
        });
        s.at(1.0).feed(Event::Exited(ExitCause::Unknown));
        s.feed(Event::SpawnFailed("cannot run `nope`: No such file".into()));
        assert_eq!(s.phase(), PhaseName::GivenUp);
        assert!(
            matches!(&s.alerts[..], [Alert::Down { last_error, .. }] if last_error.contains("nope"))
        );
    }

    #[test]
    fn planned_restart_ignores_cooldown_and_counts_nothing() {
        let mut s = Scenario::running(rules());
        s.at(1.0).feed(Event::Exited(ExitCause::Unknown));
        s.feed(Event::Spawned);
        s.at(1.1).feed(Event::Tick);
        s.feed(healthy());
        s.at(2.0);
        let actions = s.feed(Event::PlannedRestart {
            by: "pid 42".into(),
        });
        assert_eq!(
            actions,
            vec![Action::Start(StartKind::Planned {
                by: "pid 42".into()
            })]
        );
        s.feed(Event::Spawned);
        s.at(2.1).feed(Event::Tick);
        s.feed(healthy());
        assert_eq!(s.p.snapshot().attempts, 1);
        assert_eq!(s.alerts.len(), 1, "only the earlier Restarted alert");
        // A second request while starting is ignored.
        s.at(3.0).feed(Event::PlannedRestart { by: "a".into() });
        let again = s.feed(Event::PlannedRestart { by: "b".into() });
        assert!(matches!(
            again[..],
            [Action::Note(Note::AlreadyRestarting { .. })]
        ));
    }

    #[test]
    fn planned_restart_without_server_command_is_refused() {
        let mut s = Scenario::with(rules(), false);
        s.feed(Event::Begin(Begin::Watch));
        let actions = s.feed(Event::PlannedRestart { by: "x".into() });
        assert!(matches!(
            actions[..],
            [Action::Note(Note::CannotRestart { .. })]
        ));
        assert!(s.starts.is_empty() && s.alerts.is_empty());
    }

    #[test]
    fn failed_planned_restart_alerts_and_falls_back_to_the_rules() {
        let mut s = Scenario::running(rules());
        s.at(2.0).feed(Event::PlannedRestart {
            by: "pid 42".into(),
        });
        s.feed(Event::Spawned);
        s.at(2.1)
            .feed(Event::Exited(ExitCause::Status(WaitStatus::Exited(3))));
        assert!(matches!(
            &s.alerts[..],
            [Alert::PlannedRestartFailed { .. }]
        ));
        assert_eq!(s.restarts(), 1, "an automatic restart follows");
    }

    // Issue 11: pauses.

    #[test]
    fn paused_never_restarts() {
        let mut s = Scenario::running(PolicySettings {
            retry_after_give_up: Some(5 * SEC),
            ..rules()
        });
        s.at(1.0).feed(Event::Pause);
        let before = s.starts.len();
        // Failed checks go on and are counted, far past the threshold.
        let mut notes = vec![];
        for i in 1..=20 {
            let out = s.check_at(1.0 + 10.0 * i as f64, failed());
            notes.extend(
                out.into_iter()
                    .filter(|a| matches!(a, Action::Note(Note::HeldByPause { .. }))),
            );
        }
        assert_eq!(s.p.snapshot().failures, 20);
        // The server exits: not restarted either (RESTART_ON_EXIT included).
        s.at(205.0);
        assert!(s
            .feed(Event::Exited(ExitCause::Status(WaitStatus::Exited(1))))
            .iter()
            .all(|a| !matches!(a, Action::Start(_))));
        for i in 1..=10 {
            s.check_at(205.0 + 10.0 * i as f64, failed());
        }
        assert_eq!(s.starts.len(), before, "{:?}", s.starts);
        assert!(s.alerts.is_empty(), "no Down while paused: {:?}", s.alerts);
        assert_eq!(notes.len(), 1, "the held restart is logged once");
        assert_eq!(s.phase(), PhaseName::Running);
    }

    #[test]
    fn paused_given_up_makes_no_retry() {
        let mut s = given_up(SEC, 5 * SEC);
        s.after(SEC).feed(Event::Pause);
        for _ in 0..100 {
            s.after(SEC / 2).tick_answering(&failed());
        }
        assert_eq!(s.restarts(), 1);
        assert!(!s
            .starts
            .iter()
            .any(|k| matches!(k, StartKind::Retry { .. })));
    }

    #[test]
    fn resume_starts_a_fresh_failure_count() {
        let mut s = Scenario::running(rules());
        s.at(1.0).feed(Event::Pause);
        for i in 1..=5 {
            s.check_at(1.0 + 10.0 * i as f64, failed());
        }
        s.at(55.0).feed(Event::Resume);
        assert_eq!(s.p.snapshot().failures, 0);
        // FAILURE_THRESHOLD more failed checks, then the usual restart.
        s.check_at(55.0, failed());
        s.check_at(65.0, failed());
        assert!(s.starts.len() == 1, "{:?}", s.starts);
        s.check_at(75.0, failed());
        assert!(matches!(
            s.starts.last(),
            Some(StartKind::Restart { attempt: 1, .. })
        ));
    }

    #[test]
    fn resume_restarts_a_server_that_exited_while_paused_at_once() {
        let mut s = Scenario::running(rules());
        s.at(1.0).feed(Event::Pause);
        s.at(2.0)
            .feed(Event::Exited(ExitCause::Status(WaitStatus::Exited(1))));
        s.check_at(10.0, failed());
        assert_eq!(s.restarts(), 0);
        s.at(11.0);
        let out = s.feed(Event::Resume);
        assert!(
            matches!(
                out[..],
                [Action::Start(StartKind::Restart { attempt: 1, .. })]
            ),
            "{out:?}"
        );
    }

    #[test]
    fn resume_out_of_give_up_starts_over() {
        let mut s = given_up(SEC, 600 * SEC);
        s.after(SEC).feed(Event::Pause);
        s.after(SEC).feed(Event::Resume);
        assert_eq!(s.phase(), PhaseName::Running);
        assert_eq!(s.p.snapshot().attempts, 0);
        // Still broken: FAILURE_THRESHOLD checks, then restarts again, and a
        // new give-up sends a new Down.
        for _ in 0..200 {
            s.after(SEC / 2);
            s.tick_answering(&failed());
            if s.phase() == PhaseName::Starting {
                s.feed(Event::Spawned);
                s.after(SEC / 10).feed(Event::Exited(ExitCause::Unknown));
            }
        }
        assert!(s.restarts() >= 2, "{:?}", s.starts);
        assert_eq!(s.count(is_down), 2, "{:?}", s.alerts);
    }

    #[test]
    fn a_resume_without_a_pause_changes_nothing() {
        let mut s = Scenario::running(rules());
        s.check_at(10.0, failed());
        s.check_at(20.0, failed());
        s.feed(Event::Resume);
        assert_eq!(s.p.snapshot().failures, 2);
    }

    #[test]
    fn a_planned_restart_still_goes_while_paused() {
        let mut s = Scenario::running(rules());
        s.at(1.0).feed(Event::Pause);
        let out = s.feed(Event::PlannedRestart { by: "ops".into() });
        assert!(matches!(
            out[..],
            [Action::Start(StartKind::Planned { .. })]
        ));
    }

    #[test]
    fn wall_clock_is_not_consulted() {
        // The policy only sees the Instants it is given: the same sequence at a
        // different origin gives the same actions.
        let run = |offset: u64| {
            let t0 = Instant::now() + Duration::from_secs(offset);
            let mut p = Policy::new(rules(), true, t0);
            let mut all = vec![];
            all.extend(p.handle(Event::Begin(Begin::Watch), t0));
            for i in 0..5 {
                let now = t0 + 10 * SEC * i;
                all.extend(p.handle(Event::Tick, now));
                all.extend(p.handle(failed(), now));
            }
            all
        };
        assert_eq!(run(0), run(1_000_000));
    }

    const LIMIT: u64 = 512 << 20;

    fn memory(mib: u64) -> Event {
        Event::Memory {
            used: mib << 20,
            limit: LIMIT,
        }
    }

    /// One regular healthy check at `secs` with the group at `mib` MiB; a
    /// restart it brings is carried out and verified at once.
    fn memory_check_at(s: &mut Scenario, secs: f64, mib: u64) -> Vec<Action> {
        s.at(secs);
        let mut all = s.feed(Event::Tick);
        if all.contains(&Action::Check) {
            all.extend(s.feed(healthy()));
            all.extend(s.feed(memory(mib)));
        }
        if all.iter().any(|a| matches!(a, Action::Start(_))) {
            s.feed(Event::Spawned);
            assert!(s.feed(Event::Tick).contains(&Action::Check));
            all.extend(s.feed(healthy()));
        }
        all
    }

    #[test]
    fn memory_cause_names_the_figure_and_the_limit() {
        use crate::config::MemoryLimit;
        assert_eq!(
            memory_cause(612 << 20, LIMIT, Some(MemoryLimit::Bytes(LIMIT))),
            "memory 612 MiB above MEMORY_LIMIT 512 MiB"
        );
        assert_eq!(
            memory_cause(2000 << 20, 1638 << 20, Some(MemoryLimit::Percent(80.0))),
            "memory 2000 MiB above MEMORY_LIMIT 1638 MiB (80%)"
        );
    }

    #[test]
    fn memory_restarts_after_threshold_samples_over_limit() {
        let mut s = Scenario::running(rules());
        assert!(memory_check_at(&mut s, 10.0, 612).is_empty() || s.restarts() == 0);
        memory_check_at(&mut s, 20.0, 612);
        assert_eq!(s.restarts(), 0, "2 samples over a threshold of 3");
        memory_check_at(&mut s, 30.0, 612);
        let cause = "memory 612 MiB above MEMORY_LIMIT 512 MiB".to_string();
        assert_eq!(
            s.starts.last(),
            Some(&StartKind::Restart {
                attempt: 1,
                cause: cause.clone(),
                down_checks: 0,
                trigger: Trigger::Memory,
            })
        );
        assert_eq!(
            s.alerts,
            vec![Alert::Restarted {
                down_checks: 0,
                cause,
            }]
        );
        // The new server's count starts from zero.
        memory_check_at(&mut s, 40.0, 612);
        memory_check_at(&mut s, 50.0, 612);
        assert_eq!(s.restarts(), 1);
    }

    #[test]
    fn one_memory_spike_never_restarts() {
        let mut s = Scenario::running(rules());
        // Spikes of one and of two samples, each followed by one under the
        // limit, for 30 checks.
        let pattern = [900, 100, 900, 900, 100];
        for i in 0..30 {
            memory_check_at(&mut s, 10.0 * f64::from(i + 1), pattern[i as usize % 5]);
        }
        assert_eq!(s.restarts(), 0);
        assert!(s.alerts.is_empty());
        assert_eq!(s.phase(), PhaseName::Running);
    }

    #[test]
    fn memory_at_the_limit_is_not_over_it() {
        let mut s = Scenario::running(rules());
        for i in 1..=10 {
            memory_check_at(&mut s, 10.0 * f64::from(i), 512);
        }
        assert_eq!(s.restarts(), 0);
    }

    #[test]
    fn memory_restart_counts_as_an_attempt() {
        let mut s = Scenario::running(rules());
        for i in 1..=30 {
            memory_check_at(&mut s, 10.0 * f64::from(i), 700);
            if i == 3 {
                assert_eq!(s.p.snapshot().attempts, 1);
            }
        }
        // Always over the limit: never stable, so the attempts add up to the
        // limit and the monitor gives up once, naming the memory.
        assert_eq!(s.restarts(), 3, "{:?}", s.starts);
        let downs: Vec<_> = s.alerts.iter().filter(|a| is_down(a)).collect();
        assert!(
            matches!(downs[..], [Alert::Down { attempts: 3, cause, .. }]
                if cause == "memory 700 MiB above MEMORY_LIMIT 512 MiB"),
            "{downs:?}"
        );
        assert_eq!(s.phase(), PhaseName::GivenUp);
        assert!(!s.alerts.iter().any(is_recovered), "still over the limit");
        // Someone fixed the leak: under the limit, then the next healthy
        // check ends the episode.
        memory_check_at(&mut s, 310.0, 100);
        memory_check_at(&mut s, 320.0, 100);
        assert!(s.alerts.last().is_some_and(is_recovered), "{:?}", s.alerts);
    }

    #[test]
    fn memory_restart_deferred_by_cooldown_is_not_cancelled_by_a_healthy_check() {
        let mut s = Scenario::running(rules());
        for t in [10.0, 20.0, 30.0] {
            memory_check_at(&mut s, t, 700);
        }
        assert_eq!(s.restarts(), 1, "restarted at 30 s; cooldown until 90 s");
        for t in [40.0, 50.0, 60.0] {
            memory_check_at(&mut s, t, 700);
        }
        assert_eq!(s.phase(), PhaseName::RestartPending);
        memory_check_at(&mut s, 70.0, 700);
        memory_check_at(&mut s, 80.0, 100);
        assert_eq!(
            s.phase(),
            PhaseName::RestartPending,
            "healthy answers do not cancel it"
        );
        memory_check_at(&mut s, 90.0, 700);
        assert_eq!(s.restarts(), 2);
    }

    #[test]
    fn memory_samples_during_a_start_are_ignored() {
        let mut s = Scenario::new(rules());
        s.feed(Event::Begin(Begin::Start));
        for _ in 0..5 {
            assert!(s.feed(memory(900)).is_empty());
        }
        s.feed(Event::Spawned);
        for _ in 0..5 {
            assert!(s.feed(memory(900)).is_empty());
        }
        s.feed(Event::Tick);
        s.feed(healthy());
        memory_check_at(&mut s, 10.0, 900);
        memory_check_at(&mut s, 20.0, 900);
        assert_eq!(s.restarts(), 0, "the count began after the verification");
    }
}
