//! What an on-call person hears beyond the policy's own alerts: reminders
//! while the server stays down, flap control, and maintenance pauses.
//! Pure: time comes in as `now: Instant` (every schedule) and `wall:
//! SystemTime` (only for the times an alert or `status` shows); no I/O, no
//! clock, no logging.
//!
//! The monitor passes every batch of the policy's actions through
//! [`Escalation::pass`] ([`Escalation::handle`] each, then
//! [`Escalation::tick`]); [`Escalation::next_wakeup`] joins the loop's list
//! of deadlines; a pause request becomes the policy's event through
//! [`Escalation::request`], the end of one through
//! [`Escalation::expire_pause`].
//!
//! ```text
//!   policy "Down" ---> incident open --ALERT_REMINDER--> "Still Down" 1
//!                        |  (doubling, capped at 24 h)    ... "Still Down" 5 (the last)
//!                        +-- policy "Recovered" / a pause: incident closed
//!
//!   automatic restart --FLAP_RESTARTS within FLAP_WINDOW--> flapping ("Server Flapping")
//!        while flapping: "Restarted" suppressed (counted, logged); "Down" still sent
//!        FLAP_WINDOW / 2 without a restart (and not given up) --> "Server Stable Again"
//! ```
//!
//! Rules enforced here (SPEC.md Settings ALERT_REMINDER, FLAP_RESTARTS,
//! FLAP_WINDOW; "How it behaves" 5, 7, 9):
//! - reminders: while an incident is open (the policy sent "Down": it gave
//!   up, or watching only the server is down), "Server Still Down" after
//!   `ALERT_REMINDER`, then at doubling intervals capped at 24 h, at most
//!   [`MAX_REMINDERS`] per incident, the last saying so; "Recovered" ends the
//!   incident. The incident's start is the "Down" alert.
//! - a restart, for flapping, is every automatic stop-and-start by the
//!   monitor (a counted attempt, or a retry after giving up), whether its
//!   verification then passes or not. The first start and planned restarts
//!   (`server-monitor restart`, a deploy) are not restarts here.
//! - flapping: `FLAP_RESTARTS` restarts within `FLAP_WINDOW` send one
//!   "Server Flapping"; until `FLAP_WINDOW / 2` passes without a restart no
//!   "Restarted" alert goes out (each is a [`Notice::Suppressed`], counted);
//!   then one "Server Stable Again" with the whole episode's list. A give-up
//!   while flapping still sends "Down"; "Stable Again" waits for the end of
//!   such an incident. Restarts themselves are the policy's business and go on.
//! - pause: no alert at all while paused (each a counted, logged
//!   suppression) and no reminder; a pause closes an open incident (a person
//!   has taken over). It ends by itself at its `until`
//!   ([`Escalation::pause_expired`]).
//!
//! Not here: the restarts a pause holds back (the policy's `Event::Pause`),
//! request files and signals (`pause.rs`), rendering (`alert`).

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::config::instant_after;
use crate::policy::{Action, Alert, Event, StartKind};

/// The most reminders one incident gets.
pub const MAX_REMINDERS: u32 = 5;
/// The longest gap between two reminders.
pub const REMINDER_CAP: Duration = Duration::from_secs(24 * 3600);

#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// ALERT_REMINDER; `None`: no reminders.
    pub alert_reminder: Option<Duration>,
    /// FLAP_RESTARTS; 0: no flap detection.
    pub flap_restarts: u32,
    pub flap_window: Duration,
}

impl Settings {
    pub fn from_config(a: &crate::config::AlertSettings) -> Settings {
        Settings {
            alert_reminder: a.alert_reminder,
            flap_restarts: a.flap_restarts,
            flap_window: a.flap_window,
        }
    }
}

/// One automatic restart, as an alert lists it.
#[derive(Clone, Debug, PartialEq)]
pub struct RestartRecord {
    pub time: SystemTime,
    pub cause: String,
}

/// Why an alert was not sent.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Why {
    Flapping,
    Paused,
}

/// What the escalation has to say in the log.
#[derive(Clone, Debug, PartialEq)]
pub enum Notice {
    Suppressed {
        title: &'static str,
        why: Why,
    },
    Paused {
        by: String,
        until: Option<SystemTime>,
    },
    Resumed {
        by: String,
    },
    PauseEnded,
    NotPaused {
        by: String,
    },
}

impl Notice {
    pub fn level(&self) -> log::Level {
        match self {
            Notice::Paused { .. } | Notice::Resumed { .. } | Notice::PauseEnded => log::Level::Warn,
            _ => log::Level::Info,
        }
    }
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Notice::Suppressed { title, why } => {
                let why = match why {
                    Why::Flapping => "the server is flapping (FLAP_RESTARTS)",
                    Why::Paused => "the monitor is paused",
                };
                write!(f, "alert \"{title}\" not sent (suppressed): {why}")
            }
            Notice::Paused { by, until } => {
                write!(f, "paused by {by}")?;
                match until {
                    Some(t) => write!(f, " until {}", crate::logging::utc_iso8601_millis(*t))?,
                    None => f.write_str(" until resume")?,
                }
                f.write_str(": checks go on; no restart and no alert")
            }
            Notice::Resumed { by } => write!(f, "resumed by {by}: the usual rules act again, from a fresh failure count"),
            Notice::PauseEnded => f.write_str("the pause has ended (--for): the usual rules act again, from a fresh failure count"),
            Notice::NotPaused { by } => write!(f, "resume asked by {by}, but the monitor was not paused"),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
struct Incident {
    since: Instant,
    since_wall: SystemTime,
    sent: u32,
    next_due: Instant,
    next_due_wall: SystemTime,
    last_error: String,
}

#[derive(Clone, Debug, PartialEq)]
struct Restart {
    at: Instant,
    record: RestartRecord,
}

/// A maintenance pause.
#[derive(Clone, Debug, PartialEq)]
pub struct Pause {
    pub by: String,
    pub since: SystemTime,
    /// `None`: until `resume`.
    pub until: Option<(Instant, SystemTime)>,
}

#[derive(Clone, Debug)]
pub struct Escalation {
    rules: Settings,
    incident: Option<Incident>,
    /// Automatic restarts within the last FLAP_WINDOW.
    recent: VecDeque<Restart>,
    /// While flapping: every restart of the episode.
    episode: Option<Vec<Restart>>,
    pause: Option<Pause>,
    suppressed: u64,
}

/// The gap after the `n`-th reminder (n ≥ 1) before the next one:
/// ALERT_REMINDER doubled n times, at most 24 h.
pub fn reminder_gap(first: Duration, n: u32) -> Duration {
    first
        .checked_mul(1u32.checked_shl(n).unwrap_or(u32::MAX))
        .unwrap_or(REMINDER_CAP)
        .min(REMINDER_CAP)
}

impl Escalation {
    pub fn new(rules: Settings) -> Escalation {
        Escalation {
            rules,
            incident: None,
            recent: VecDeque::new(),
            episode: None,
            pause: None,
            suppressed: 0,
        }
    }

    /// Alerts not sent (flapping, paused) since this monitor started, plus
    /// those of a resumed predecessor (`/metrics`' suppressed alerts).
    pub fn suppressed_total(&self) -> u64 {
        self.suppressed
    }

    #[cfg(test)] // read by the tests only
    pub fn is_flapping(&self) -> bool {
        self.episode.is_some()
    }

    /// The pause in force, if any (`/metrics`' `paused` state).
    pub fn pause(&self) -> Option<&Pause> {
        self.pause.as_ref()
    }

    #[cfg(test)] // read by the tests only
    pub fn reminders_sent(&self) -> Option<u32> {
        self.incident.as_ref().map(|i| i.sent)
    }

    /// One batch of the policy's actions, each through
    /// [`handle`](Self::handle), then what is due of its own
    /// ([`tick`](Self::tick)): the actions the monitor carries out.
    pub fn pass(&mut self, actions: Vec<Action>, now: Instant, wall: SystemTime) -> Vec<Action> {
        let mut out = Vec::new();
        for a in actions {
            out.extend(self.handle(a, now, wall));
        }
        out.extend(self.tick(now, wall));
        out
    }

    /// Passes one policy action through: a restart is recorded (and may
    /// make the server flapping), an alert may be suppressed, "Down" opens an
    /// incident and "Recovered" closes it.
    pub fn handle(&mut self, action: Action, now: Instant, wall: SystemTime) -> Vec<Action> {
        let mut out = Vec::new();
        match action {
            Action::Start(kind) => {
                let cause = match &kind {
                    StartKind::Restart { cause, .. } | StartKind::Retry { cause, .. } => {
                        Some(cause.clone())
                    }
                    StartKind::First | StartKind::Planned { .. } => None,
                };
                out.push(Action::Start(kind));
                if let Some(cause) = cause {
                    self.restarted(cause, now, wall, &mut out);
                }
            }
            Action::Alert(alert) => self.alert(alert, now, wall, &mut out),
            other => out.push(other),
        }
        out
    }

    fn restarted(&mut self, cause: String, now: Instant, wall: SystemTime, out: &mut Vec<Action>) {
        if self.rules.flap_restarts == 0 {
            return;
        }
        let r = Restart {
            at: now,
            record: RestartRecord { time: wall, cause },
        };
        self.recent.push_back(r.clone());
        while self
            .recent
            .front()
            .is_some_and(|f| now.saturating_duration_since(f.at) > self.rules.flap_window)
        {
            self.recent.pop_front();
        }
        match &mut self.episode {
            Some(list) => list.push(r),
            None if self.recent.len() >= self.rules.flap_restarts as usize => {
                let list: Vec<Restart> = self.recent.iter().cloned().collect();
                let alert = Alert::Flapping {
                    restarts: list.iter().map(|r| r.record.clone()).collect(),
                    window: self.rules.flap_window,
                };
                self.episode = Some(list);
                self.send(alert, out);
            }
            None => {}
        }
    }

    fn alert(&mut self, alert: Alert, now: Instant, wall: SystemTime, out: &mut Vec<Action>) {
        match &alert {
            Alert::Down { last_error, .. } if self.pause.is_none() => {
                // Open even without reminders: "Stable Again" waits for it.
                let first = self.rules.alert_reminder.unwrap_or(REMINDER_CAP);
                self.incident = Some(Incident {
                    since: now,
                    since_wall: wall,
                    sent: 0,
                    next_due: instant_after(now, first),
                    next_due_wall: wall + first.min(REMINDER_CAP * 3650),
                    last_error: last_error.clone(),
                });
            }
            Alert::Recovered { .. } => self.incident = None,
            Alert::Restarted { .. } if self.episode.is_some() => {
                return self.suppress(&alert, Why::Flapping, out);
            }
            _ => {}
        }
        self.send(alert, out);
    }

    fn send(&mut self, alert: Alert, out: &mut Vec<Action>) {
        if self.pause.is_some() {
            return self.suppress(&alert, Why::Paused, out);
        }
        out.push(Action::Alert(alert));
    }

    fn suppress(&mut self, alert: &Alert, why: Why, out: &mut Vec<Action>) {
        self.suppressed += 1;
        out.push(Action::Note(crate::policy::Note::Escalation(
            Notice::Suppressed {
                title: crate::alert::title(alert),
                why,
            },
        )));
    }

    /// The reminders and the "Stable Again" that are due at `now`.
    pub fn tick(&mut self, now: Instant, wall: SystemTime) -> Vec<Action> {
        let mut out = Vec::new();
        if self.pause.is_some() {
            return out;
        }
        if let (Some(first), Some(inc)) = (self.rules.alert_reminder, self.incident.as_mut()) {
            if inc.sent < MAX_REMINDERS && now >= inc.next_due {
                inc.sent += 1;
                let gap = reminder_gap(first, inc.sent);
                let last = inc.sent == MAX_REMINDERS;
                // From the due time, not from now: a late turn does not
                // push the whole schedule back; but after a long absence
                // (a resumed monitor) the next one is a full gap away.
                let mut next = instant_after(inc.next_due, gap);
                let mut next_wall = inc.next_due_wall + gap;
                if next <= now {
                    next = instant_after(now, gap);
                    next_wall = wall + gap;
                }
                inc.next_due = next;
                inc.next_due_wall = next_wall;
                out.push(Action::Alert(Alert::StillDown {
                    down_for: now.saturating_duration_since(inc.since),
                    since: inc.since_wall,
                    reminder: inc.sent,
                    max: MAX_REMINDERS,
                    next_in: (!last).then_some(gap),
                    last_error: inc.last_error.clone(),
                }));
            }
        }
        if self.incident.is_none() {
            if let Some(at) = self.stable_at() {
                if now >= at {
                    let list = self.episode.take().unwrap_or_default();
                    self.recent.clear();
                    out.push(Action::Alert(Alert::StableAgain {
                        restarts: list.into_iter().map(|r| r.record).collect(),
                        quiet: self.rules.flap_window / 2,
                    }));
                }
            }
        }
        out
    }

    /// When the flapping episode ends if no restart comes first.
    fn stable_at(&self) -> Option<Instant> {
        let last = self.episode.as_ref()?.last()?;
        Some(instant_after(last.at, self.rules.flap_window / 2))
    }

    /// When [`tick`](Self::tick) or [`pause_expired`](Self::pause_expired)
    /// has something to do next.
    pub fn next_wakeup(&self) -> Option<Instant> {
        let pause_end = self.pause.as_ref().and_then(|p| p.until.map(|u| u.0));
        if self.pause.is_some() {
            return pause_end;
        }
        let reminder = self
            .incident
            .as_ref()
            .filter(|i| i.sent < MAX_REMINDERS && self.rules.alert_reminder.is_some())
            .map(|i| i.next_due);
        let stable = if self.incident.is_none() {
            self.stable_at()
        } else {
            None
        };
        [reminder, stable].into_iter().flatten().min()
    }

    /// Begins (or replaces) a pause; an open incident is closed.
    pub fn begin_pause(
        &mut self,
        by: String,
        length: Option<Duration>,
        now: Instant,
        wall: SystemTime,
    ) -> Notice {
        let until = length.map(|d| (instant_after(now, d), wall + d.min(REMINDER_CAP * 36500)));
        self.incident = None;
        self.pause = Some(Pause {
            by: by.clone(),
            since: wall,
            until,
        });
        Notice::Paused {
            by,
            until: until.map(|u| u.1),
        }
    }

    /// One `pause` or `resume` request (`pause.rs`): the policy's event it
    /// makes (none for a resume while not paused), and what to log.
    pub fn request(
        &mut self,
        r: &crate::pause::Request,
        now: Instant,
        wall: SystemTime,
    ) -> (Option<Event>, Notice) {
        if r.pause {
            let n = self.begin_pause(r.by.clone(), r.length(), now, wall);
            (Some(Event::Pause), n)
        } else {
            let (was_paused, n) = self.end_pause(r.by.clone());
            (was_paused.then_some(Event::Resume), n)
        }
    }

    /// Ends a pause on request; `None` in the notice when there was none.
    pub fn end_pause(&mut self, by: String) -> (bool, Notice) {
        match self.pause.take() {
            Some(_) => (true, Notice::Resumed { by }),
            None => (false, Notice::NotPaused { by }),
        }
    }

    /// The policy's `Resume` and what to log, once (see
    /// [`pause_expired`](Self::pause_expired)).
    pub fn expire_pause(&mut self, now: Instant) -> Option<(Event, Notice)> {
        self.pause_expired(now)
            .then_some((Event::Resume, Notice::PauseEnded))
    }

    /// True (once) when a pause with `--for` has run out at `now`.
    pub fn pause_expired(&mut self, now: Instant) -> bool {
        let over = self
            .pause
            .as_ref()
            .and_then(|p| p.until)
            .is_some_and(|(at, _)| now >= at);
        if over {
            self.pause = None;
        }
        over
    }

    /// What the state file keeps, so that a monitor started again goes on.
    pub fn saved(&self) -> Saved {
        let rec = |r: &Restart| SavedRestart {
            unix_ms: unix_ms(r.record.time),
            cause: r.record.cause.clone(),
        };
        Saved {
            incident: self.incident.as_ref().map(|i| SavedIncident {
                since_unix_ms: unix_ms(i.since_wall),
                since: crate::logging::utc_iso8601_millis(i.since_wall),
                reminders_sent: i.sent,
                next_due_unix_ms: unix_ms(i.next_due_wall),
                last_error: i.last_error.clone(),
            }),
            restarts: self.recent.iter().map(rec).collect(),
            flapping: self.episode.as_ref().map(|e| e.iter().map(rec).collect()),
            alerts_suppressed_total: self.suppressed,
        }
    }

    /// What `status` and the state file show of the pause.
    pub fn saved_pause(&self) -> Option<SavedPause> {
        self.pause.as_ref().map(|p| SavedPause {
            by: p.by.clone(),
            since: crate::logging::utc_iso8601_millis(p.since),
            since_unix_ms: unix_ms(p.since),
            until: p.until.map(|u| crate::logging::utc_iso8601_millis(u.1)),
            until_unix_ms: p.until.map(|u| unix_ms(u.1)),
        })
    }

    /// Takes over what a predecessor saved: the reminder schedule (only
    /// when `incident` — the policy resumed a give-up — holds) and the flap
    /// state. Wall times are turned back into Instants relative to `now`.
    pub fn restore(&mut self, s: &Saved, incident: bool, now: Instant, wall: SystemTime) {
        let wall_ms = unix_ms(wall);
        let instant = |ms: u64| instant_of(ms, now, wall_ms);
        let time = |ms: u64| UNIX_EPOCH + Duration::from_millis(ms);
        self.suppressed = s.alerts_suppressed_total;
        if incident {
            self.incident = s.incident.as_ref().map(|i| Incident {
                since: instant(i.since_unix_ms),
                since_wall: time(i.since_unix_ms),
                sent: i.reminders_sent.min(MAX_REMINDERS),
                next_due: instant(i.next_due_unix_ms),
                next_due_wall: time(i.next_due_unix_ms),
                last_error: i.last_error.clone(),
            });
        }
        let restart = |r: &SavedRestart| Restart {
            at: instant(r.unix_ms),
            record: RestartRecord {
                time: time(r.unix_ms),
                cause: r.cause.clone(),
            },
        };
        self.recent = s.restarts.iter().map(restart).collect();
        self.episode = s.flapping.as_ref().map(|e| e.iter().map(restart).collect());
    }

    /// Takes over a saved pause that has not run out at `wall`; true if so.
    pub fn restore_pause(&mut self, p: &SavedPause, now: Instant, wall: SystemTime) -> bool {
        let wall_ms = unix_ms(wall);
        let until = match p.until_unix_ms {
            Some(ms) if ms <= wall_ms => return false,
            Some(ms) => Some((
                instant_of(ms, now, wall_ms),
                UNIX_EPOCH + Duration::from_millis(ms),
            )),
            None => None,
        };
        self.pause = Some(Pause {
            by: p.by.clone(),
            since: if p.since_unix_ms > 0 {
                UNIX_EPOCH + Duration::from_millis(p.since_unix_ms)
            } else {
                wall
            },
            until,
        });
        true
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    crate::logging::unix_millis(t)
}

/// The Instant of the wall time `ms`, given that `now` is `now_ms`.
fn instant_of(ms: u64, now: Instant, now_ms: u64) -> Instant {
    if ms >= now_ms {
        instant_after(now, Duration::from_millis(ms - now_ms))
    } else {
        now.checked_sub(Duration::from_millis(now_ms - ms))
            .unwrap_or(now)
    }
}

/// The escalation's part of the state file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Saved {
    /// The open incident's reminder schedule.
    pub incident: Option<SavedIncident>,
    /// Automatic restarts within the last FLAP_WINDOW.
    pub restarts: Vec<SavedRestart>,
    /// While flapping: the episode's restarts.
    pub flapping: Option<Vec<SavedRestart>>,
    /// Alerts not sent (flapping, paused): counted, for metrics.
    pub alerts_suppressed_total: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SavedIncident {
    pub since_unix_ms: u64,
    pub since: String,
    pub reminders_sent: u32,
    pub next_due_unix_ms: u64,
    pub last_error: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SavedRestart {
    pub unix_ms: u64,
    pub cause: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SavedPause {
    pub by: String,
    pub since: String,
    pub since_unix_ms: u64,
    /// `None`: until `resume`.
    pub until: Option<String>,
    pub until_unix_ms: Option<u64>,
}

impl SavedPause {
    /// `paused (until …, by …)`, as `status` and systemd's STATUS say it.
    pub fn describe(&self) -> String {
        let until = self.until.as_deref().unwrap_or("resume");
        format!("paused (until {until}, by {})", self.by)
    }
}

/// A span as a person reads it: `45s`, `2m 5s`, `1h 30m`, `2d 3h`.
pub fn fmt_span(d: Duration) -> String {
    let s = d.as_secs();
    if s == 0 {
        return format!("{}ms", d.as_millis());
    }
    let (days, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    let parts: Vec<String> = [(days, "d"), (h, "h"), (m, "m"), (sec, "s")]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, u)| format!("{n}{u}"))
        .collect();
    parts.into_iter().take(2).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Note;

    const SEC: Duration = Duration::from_secs(1);
    const MIN: Duration = Duration::from_secs(60);

    fn rules() -> Settings {
        Settings {
            alert_reminder: Some(3600 * SEC),
            flap_restarts: 4,
            flap_window: 30 * MIN,
        }
    }

    fn down() -> Alert {
        Alert::Down {
            failures: 3,
            attempts: 3,
            max_attempts: 3,
            last_error: "refused".into(),
            cause: "3 failed checks".into(),
        }
    }

    fn restarted() -> Alert {
        Alert::Restarted {
            down_checks: 0,
            cause: "process exited with status 1".into(),
        }
    }

    fn restart(n: u32) -> Action {
        Action::Start(StartKind::Restart {
            attempt: n,
            cause: format!("process exited with status {n}"),
            down_checks: 0,
            trigger: crate::policy::Trigger::Exit,
        })
    }

    /// An escalation driven with a clock the test moves.
    struct Scenario {
        e: Escalation,
        t0: Instant,
        now: Instant,
        wall0: SystemTime,
        sent: Vec<(Duration, Alert)>,
        notes: Vec<Notice>,
    }

    impl Scenario {
        fn new(rules: Settings) -> Scenario {
            let t0 = Instant::now();
            Scenario {
                e: Escalation::new(rules),
                t0,
                now: t0,
                wall0: UNIX_EPOCH + Duration::from_secs(1_800_000_000),
                sent: vec![],
                notes: vec![],
            }
        }
        fn wall(&self) -> SystemTime {
            self.wall0 + (self.now - self.t0)
        }
        fn take(&mut self, out: Vec<Action>) -> Vec<Action> {
            for a in &out {
                match a {
                    Action::Alert(al) => self.sent.push((self.now - self.t0, al.clone())),
                    Action::Note(Note::Escalation(n)) => self.notes.push(n.clone()),
                    _ => {}
                }
            }
            out
        }
        fn feed(&mut self, a: Action) -> Vec<Action> {
            let out = self.e.handle(a, self.now, self.wall());
            self.take(out)
        }
        fn after(&mut self, d: Duration) -> &mut Scenario {
            self.now += d;
            self
        }
        fn tick(&mut self) -> Vec<Action> {
            let out = self.e.tick(self.now, self.wall());
            self.take(out)
        }
        /// Ticks every `step` for `span`, as the loop does at its wake-ups.
        fn run_for(&mut self, span: Duration, step: Duration) {
            let end = self.now + span;
            while self.now < end {
                self.after(step);
                self.tick();
            }
        }
        fn count(&self, title: &str) -> usize {
            self.sent
                .iter()
                .filter(|(_, a)| crate::alert::title(a) == title)
                .count()
        }
        fn reminders(&self) -> Vec<(Duration, Alert)> {
            self.sent
                .iter()
                .filter(|(_, a)| matches!(a, Alert::StillDown { .. }))
                .cloned()
                .collect()
        }
    }

    const FLAPPING: &str = "Server Flapping";
    const STABLE: &str = "Server Stable Again";
    const RESTARTED: &str = "Server Restarted Successfully";

    #[test]
    fn reminder_after_alert_reminder_then_doubling() {
        let mut s = Scenario::new(rules());
        s.feed(Action::Alert(down()));
        assert_eq!(s.e.next_wakeup(), Some(s.t0 + 3600 * SEC));
        s.run_for(3599 * SEC, SEC);
        assert!(s.reminders().is_empty(), "not before ALERT_REMINDER");
        s.run_for(2 * 3600 * SEC + SEC, SEC);
        let r = s.reminders();
        assert_eq!(r.len(), 2, "{r:?}");
        // 1 h, then 2 h later (at 3 h), then 4 h later (at 7 h).
        assert_eq!(r[0].0, 3600 * SEC);
        assert_eq!(r[1].0, 3 * 3600 * SEC);
        assert_eq!(s.e.next_wakeup(), Some(s.t0 + 7 * 3600 * SEC));
        match &r[1].1 {
            Alert::StillDown {
                down_for,
                since,
                reminder: 2,
                max: 5,
                next_in: Some(next),
                last_error,
            } => {
                assert_eq!(*down_for, 3 * 3600 * SEC);
                assert_eq!(*since, s.wall0);
                assert_eq!(*next, 4 * 3600 * SEC);
                assert_eq!(last_error, "refused");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reminder_gaps_double_up_to_a_day() {
        let h = 3600 * SEC;
        let gaps: Vec<Duration> = (1..=6).map(|n| reminder_gap(10 * h, n)).collect();
        assert_eq!(gaps, vec![20 * h, 24 * h, 24 * h, 24 * h, 24 * h, 24 * h]);
        assert_eq!(reminder_gap(SEC, 40), REMINDER_CAP, "no overflow");
    }

    #[test]
    fn at_most_five_reminders_and_the_last_says_so() {
        let mut s = Scenario::new(Settings {
            alert_reminder: Some(SEC),
            ..rules()
        });
        s.feed(Action::Alert(down()));
        s.run_for(200 * SEC, SEC / 10);
        let r = s.reminders();
        let at: Vec<u64> = r.iter().map(|(t, _)| t.as_secs()).collect();
        // 1, 1+2, 3+4, 7+8, 15+16 seconds.
        assert_eq!(at, vec![1, 3, 7, 15, 31]);
        assert!(matches!(
            r[4].1,
            Alert::StillDown {
                reminder: 5,
                next_in: None,
                ..
            }
        ));
        assert!(r[..4].iter().all(|(_, a)| matches!(
            a,
            Alert::StillDown {
                next_in: Some(_),
                ..
            }
        )));
        assert_eq!(s.e.next_wakeup(), None);
    }

    #[test]
    fn reminders_stop_on_recovery() {
        let mut s = Scenario::new(Settings {
            alert_reminder: Some(SEC),
            ..rules()
        });
        s.feed(Action::Alert(down()));
        s.run_for(4 * SEC, SEC / 10);
        assert_eq!(s.reminders().len(), 2);
        let out = s.feed(Action::Alert(Alert::Recovered { failures: 9 }));
        assert_eq!(out.len(), 1, "Recovered goes out as today");
        s.run_for(100 * SEC, SEC / 10);
        assert_eq!(s.reminders().len(), 2);
        assert_eq!(s.e.next_wakeup(), None);
        // A new incident has its own schedule from the start.
        s.feed(Action::Alert(down()));
        s.run_for(2 * SEC, SEC / 10);
        assert!(matches!(
            s.reminders().last(),
            Some((_, Alert::StillDown { reminder: 1, .. }))
        ));
    }

    #[test]
    fn no_reminders_when_alert_reminder_is_zero() {
        let mut s = Scenario::new(Settings {
            alert_reminder: None,
            ..rules()
        });
        s.feed(Action::Alert(down()));
        s.run_for(48 * 3600 * SEC, 60 * SEC);
        assert!(s.reminders().is_empty());
        assert_eq!(s.e.next_wakeup(), None);
    }

    #[test]
    fn reminder_schedule_survives_a_monitor_restart() {
        let mut s = Scenario::new(Settings {
            alert_reminder: Some(10 * SEC),
            ..rules()
        });
        s.feed(Action::Alert(down()));
        s.run_for(35 * SEC, SEC); // reminders at 10 s and 30 s
        assert_eq!(s.reminders().len(), 2);
        let saved = s.e.saved();
        // A new monitor, 5 s later, with its own Instants.
        let mut t = Scenario::new(s.e.rules.clone());
        t.wall0 = s.wall() + 5 * SEC;
        t.e.restore(&saved, true, t.now, t.wall());
        // The third is due 40 s after the second: at 70 s of the incident,
        // that is 30 s from the new monitor's start.
        assert_eq!(t.e.next_wakeup(), Some(t.t0 + 30 * SEC));
        t.run_for(29 * SEC, SEC);
        assert!(t.reminders().is_empty());
        t.run_for(SEC, SEC);
        match &t.reminders()[..] {
            [(
                _,
                Alert::StillDown {
                    reminder: 3,
                    down_for,
                    since,
                    ..
                },
            )] => {
                assert_eq!(*down_for, 70 * SEC);
                assert_eq!(*since, s.wall0);
            }
            other => panic!("{other:?}"),
        }
        // Not resumed as given up: no incident.
        let mut u = Scenario::new(s.e.rules.clone());
        u.e.restore(&saved, false, u.now, u.wall());
        assert_eq!(u.e.reminders_sent(), None);
    }

    #[test]
    fn flapping_sends_one_alert_and_suppresses_restarts() {
        let mut s = Scenario::new(rules());
        for n in 1..=10 {
            let out = s.feed(restart(n));
            assert!(
                matches!(out[0], Action::Start(_)),
                "the restart itself goes on"
            );
            s.after(SEC);
            s.feed(Action::Alert(restarted()));
            s.after(MIN);
            s.tick();
        }
        assert_eq!(s.count(FLAPPING), 1, "{:?}", s.sent);
        assert_eq!(s.count(RESTARTED), 3, "the three before flapping");
        assert_eq!(s.e.suppressed_total(), 7);
        assert_eq!(s.notes.len(), 7);
        assert!(s.notes.iter().all(|n| matches!(
            n,
            Notice::Suppressed {
                why: Why::Flapping,
                title: RESTARTED
            }
        )));
        match &s
            .sent
            .iter()
            .find(|(_, a)| matches!(a, Alert::Flapping { .. }))
            .unwrap()
            .1
        {
            Alert::Flapping { restarts, window } => {
                assert_eq!(restarts.len(), 4);
                assert_eq!(*window, 30 * MIN);
                assert_eq!(restarts[0].time, s.wall0);
                assert_eq!(restarts[3].cause, "process exited with status 4");
            }
            _ => unreachable!(),
        }
    }

    #[test]
    fn restarts_spread_wider_than_the_window_are_not_flapping() {
        let mut s = Scenario::new(rules());
        for n in 1..=10 {
            s.feed(restart(n));
            s.feed(Action::Alert(restarted()));
            s.after(11 * MIN);
            s.tick();
        }
        assert_eq!(s.count(FLAPPING), 0);
        assert_eq!(s.count(RESTARTED), 10);
    }

    #[test]
    fn first_start_and_planned_restarts_do_not_count_for_flapping() {
        let mut s = Scenario::new(rules());
        s.feed(Action::Start(StartKind::First));
        for _ in 0..10 {
            s.feed(Action::Start(StartKind::Planned { by: "ops".into() }));
        }
        assert_eq!(s.count(FLAPPING), 0);
        assert!(!s.e.is_flapping());
    }

    #[test]
    fn stable_again_after_half_window() {
        let mut s = Scenario::new(rules());
        for n in 1..=5 {
            s.feed(restart(n));
            s.after(MIN);
        }
        assert!(s.e.is_flapping());
        let last = s.now - MIN;
        assert_eq!(s.e.next_wakeup(), Some(last + 15 * MIN));
        s.run_for(13 * MIN, SEC);
        assert_eq!(s.count(STABLE), 0, "not before FLAP_WINDOW / 2");
        s.run_for(2 * MIN, SEC);
        assert_eq!(s.count(STABLE), 1);
        match &s.sent.last().unwrap().1 {
            Alert::StableAgain { restarts, quiet } => {
                assert_eq!(restarts.len(), 5, "the whole episode");
                assert_eq!(*quiet, 15 * MIN);
            }
            other => panic!("{other:?}"),
        }
        s.run_for(60 * MIN, MIN);
        assert_eq!(s.count(STABLE), 1, "once");
        // Per-restart alerts again, and a fresh count for a new episode.
        s.feed(restart(6));
        s.feed(Action::Alert(restarted()));
        assert_eq!(s.count(RESTARTED), 1);
        assert_eq!(s.count(FLAPPING), 1);
    }

    #[test]
    fn give_up_while_flapping_still_alerts() {
        let mut s = Scenario::new(Settings {
            alert_reminder: Some(MIN),
            ..rules()
        });
        for n in 1..=4 {
            s.feed(restart(n));
        }
        let out = s.feed(Action::Alert(down()));
        assert_eq!(out, vec![Action::Alert(down())], "Down is news");
        // While given up there are no restarts; that is not stability.
        s.run_for(60 * MIN, 10 * SEC);
        assert_eq!(s.count(STABLE), 0);
        assert!(s.reminders().len() >= 3, "reminders go on");
        s.feed(Action::Alert(Alert::Recovered { failures: 9 }));
        s.tick();
        assert_eq!(s.count(STABLE), 1, "once the incident is over");
    }

    #[test]
    fn give_up_while_flapping_holds_stable_again_without_reminders_too() {
        let mut s = Scenario::new(Settings {
            alert_reminder: None,
            ..rules()
        });
        for n in 1..=4 {
            s.feed(restart(n));
        }
        s.feed(Action::Alert(down()));
        s.run_for(60 * MIN, 10 * SEC);
        assert_eq!(s.count(STABLE), 0, "{:?}", s.sent);
        assert!(s.reminders().is_empty());
        s.feed(Action::Alert(Alert::Recovered { failures: 9 }));
        s.tick();
        assert_eq!(s.count(STABLE), 1);
    }

    #[test]
    fn flap_detection_off_with_zero_restarts() {
        let mut s = Scenario::new(Settings {
            flap_restarts: 0,
            ..rules()
        });
        for n in 1..=20 {
            s.feed(restart(n));
            s.feed(Action::Alert(restarted()));
        }
        assert_eq!(s.count(FLAPPING), 0);
        assert_eq!(s.count(RESTARTED), 20);
    }

    #[test]
    fn flap_state_survives_a_monitor_restart() {
        let mut s = Scenario::new(rules());
        for n in 1..=4 {
            s.feed(restart(n));
            s.after(MIN);
        }
        let saved = s.e.saved();
        let mut t = Scenario::new(rules());
        t.wall0 = s.wall();
        t.e.restore(&saved, false, t.now, t.wall());
        assert!(t.e.is_flapping());
        t.feed(Action::Alert(restarted()));
        assert_eq!(t.count(RESTARTED), 0);
        t.run_for(15 * MIN, SEC);
        assert!(matches!(
            t.sent.last(),
            Some((_, Alert::StableAgain { restarts, .. })) if restarts.len() == 4
        ));
    }

    #[test]
    fn a_pause_that_runs_out_is_the_policys_resume_once() {
        let mut s = Scenario::new(rules());
        s.e.begin_pause("bob".into(), Some(10 * SEC), s.now, s.wall());
        assert_eq!(s.e.expire_pause(s.now), None);
        s.after(10 * SEC);
        assert_eq!(
            s.e.expire_pause(s.now),
            Some((Event::Resume, Notice::PauseEnded))
        );
        assert_eq!(s.e.expire_pause(s.now), None, "once");
        assert!(s.e.pause().is_none());
    }

    #[test]
    fn paused_sends_no_alert_and_no_reminder() {
        let mut s = Scenario::new(Settings {
            alert_reminder: Some(SEC),
            ..rules()
        });
        s.feed(Action::Alert(down()));
        let n =
            s.e.begin_pause("alice (pid 1)".into(), Some(10 * SEC), s.now, s.wall());
        assert!(n.to_string().contains("alice"));
        s.run_for(5 * SEC, SEC / 10);
        for a in [down(), restarted(), Alert::Recovered { failures: 1 }] {
            assert!(s
                .feed(Action::Alert(a))
                .iter()
                .all(|a| matches!(a, Action::Note(_))));
        }
        assert_eq!(
            s.sent.len(),
            1,
            "only the Down before the pause: {:?}",
            s.sent
        );
        assert_eq!(s.e.suppressed_total(), 3);
        assert!(s.notes.iter().all(|n| matches!(
            n,
            Notice::Suppressed {
                why: Why::Paused,
                ..
            }
        )));
        assert_eq!(s.e.next_wakeup(), Some(s.t0 + 10 * SEC));
        assert!(!s.e.pause_expired(s.now));
        s.after(5 * SEC);
        assert!(s.e.pause_expired(s.now), "ends by itself after --for");
        assert!(!s.e.pause_expired(s.now), "once");
        // The pause closed the incident: no late reminders.
        s.run_for(60 * SEC, SEC);
        assert!(s.reminders().is_empty());
    }

    #[test]
    fn a_pause_survives_a_monitor_restart_until_it_runs_out() {
        let mut s = Scenario::new(rules());
        s.e.begin_pause("bob".into(), Some(60 * SEC), s.now, s.wall());
        let saved = s.e.saved_pause().unwrap();
        assert_eq!(saved.by, "bob");
        assert!(
            saved.describe().starts_with("paused (until 2027-"),
            "{}",
            saved.describe()
        );
        let mut t = Scenario::new(rules());
        t.wall0 = s.wall() + 20 * SEC;
        assert!(t.e.restore_pause(&saved, t.now, t.wall()));
        assert_eq!(t.e.next_wakeup(), Some(t.t0 + 40 * SEC));
        let mut late = Scenario::new(rules());
        late.wall0 = s.wall() + 61 * SEC;
        assert!(!late.e.restore_pause(&saved, late.now, late.wall()));
        // Until resume: no end.
        let mut u = Scenario::new(rules());
        u.e.begin_pause("carol".into(), None, u.now, u.wall());
        let p = u.e.saved_pause().unwrap();
        assert_eq!(p.describe(), "paused (until resume, by carol)");
        let mut v = Scenario::new(rules());
        assert!(v.e.restore_pause(&p, v.now, v.wall()));
        assert_eq!(v.e.next_wakeup(), None);
        assert!(v.e.end_pause("carol".into()).0);
        assert!(!v.e.end_pause("carol".into()).0);
    }

    #[test]
    fn pause_and_resume_requests_make_the_policy_events() {
        let mut s = Scenario::new(rules());
        let req = |pause, for_ms| crate::pause::Request {
            id: "1".into(),
            by: "dave".into(),
            pause,
            for_ms,
        };
        let (e, n) = s.e.request(&req(false, None), s.now, s.wall());
        assert_eq!((e, n), (None, Notice::NotPaused { by: "dave".into() }));
        let (e, n) = s.e.request(&req(true, Some(30_000)), s.now, s.wall());
        assert_eq!(e, Some(Event::Pause));
        assert!(matches!(n, Notice::Paused { until: Some(_), .. }), "{n:?}");
        assert_eq!(s.e.next_wakeup(), Some(s.t0 + 30 * SEC));
        let (e, n) = s.e.request(&req(false, None), s.now, s.wall());
        assert_eq!(
            (e, n),
            (Some(Event::Resume), Notice::Resumed { by: "dave".into() })
        );
        assert!(s.e.pause().is_none());
    }

    #[test]
    fn spans_read_like_a_person_says_them() {
        assert_eq!(fmt_span(45 * SEC), "45s");
        assert_eq!(fmt_span(125 * SEC), "2m 5s");
        assert_eq!(fmt_span(30 * MIN), "30m");
        assert_eq!(fmt_span(90 * MIN), "1h 30m");
        assert_eq!(fmt_span(51 * 3600 * SEC), "2d 3h");
        assert_eq!(fmt_span(SEC / 2), "500ms");
    }
}
