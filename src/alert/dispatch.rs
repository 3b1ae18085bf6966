//! The [`Dispatcher`]: the one thing the main loop gives an alert to, and
//! `server-monitor test-alert`.
//!
//! With a channel configured (email: `SMTP_SERVER` and `ALERT_EMAIL`; the
//! webhook: `ALERT_WEBHOOK_URL`), [`Dispatcher::submit`] writes the alert to
//! the outbox *before* the first try, then tries every channel at once. An
//! entry leaves the outbox only when every configured channel has taken it;
//! what one channel took is recorded in the file and not sent again. A failed
//! round is retried on the outbox schedule (5 s, doubling, at most 5
//! minutes); [`Dispatcher::load`] at start makes every entry found due at
//! once. Without any channel an alert is an `.eml` file under
//! `LOG_DIR/alerts/`, as it always was, and entries left in the outbox by an
//! earlier run with channels are turned into such files rather than lost.
//!
//! Bounded: within one loop turn (from one [`Dispatcher::begin_turn`] to the
//! next), [`Dispatcher::submit`] and [`Dispatcher::retry_due`] start a
//! channel attempt only while a whole `SMTP_TIMEOUT` still fits in one
//! `SMTP_TIMEOUT` from the turn's first attempt (the first attempt always
//! runs), so the loop is never held up longer than that (plus the webhook's
//! rounding to whole seconds when `SMTP_TIMEOUT` is under one second). What
//! did not fit stays due and goes in the next loop turn. When a channel fails
//! for one entry, the other entries that need it are not tried in the same
//! turn: they are deferred to that entry's retry time, without counting a
//! failure, so a dead mail server costs one timeout per round, not one per
//! waiting alert.
//!
//! Logging: every attempt's outcome — `alert delivered` (INFO) or `alert
//! delivery failed` (WARNING) with the channel, subject, attempt number and
//! the seconds until the retry. Never a password; the webhook URL only masked.
//!
//! Not here: rendering (the parent module), the wire protocols (`smtp`,
//! `webhook`), the schedule's arithmetic (`outbox`).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::outbox::{self, Entry, Id, OutboxDir, Schedule};
use super::smtp::{self, Mailer};
use super::webhook::{self, Webhook};
use super::{build_mime, message_id, render_test, to_mime, write_eml, Context, Message, MimeParts};
use crate::config::Config;
use crate::logging::utc_iso8601_millis;

/// The ways an alert goes out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    Email,
    Webhook,
    /// Used when neither email nor webhook is configured:
    /// `LOG_DIR/alerts/*.eml`. It needs no outbox file (the `.eml` is the
    /// durable copy), but a write that fails (a full disk) is retried like
    /// any delivery.
    Local,
}

impl Channel {
    /// The name the outbox files and the log show.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Webhook => "webhook",
            Channel::Local => "eml",
        }
    }
}

impl std::fmt::Display for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Alert delivery: the outbox, its schedule, the channels.
#[derive(Debug)]
pub struct Dispatcher {
    log_dir: PathBuf,
    host: String,
    outbox: OutboxDir,
    schedule: Schedule,
    /// The pending entries, as their files hold them.
    entries: BTreeMap<Id, Entry>,
    email: Option<Mailer>,
    webhook: Option<Webhook>,
    from: String,
    to: Vec<String>,
    /// SMTP_TIMEOUT: one attempt's deadline, and one call's budget.
    timeout: Duration,
    /// The last [`Id::Unsaved`] handed out.
    unsaved: u32,
    /// Set when the monitor is stopping: a delivery in progress gives up.
    cancel: Option<Arc<AtomicBool>>,
    /// When this loop turn's first attempt began: one SMTP_TIMEOUT from
    /// there is the whole turn's budget (see [`Dispatcher::begin_turn`]).
    turn_start: Option<Instant>,
    /// Channels that failed in this turn, and when the entry that failed on
    /// them is due again.
    down: HashMap<Channel, Instant>,
    /// Delivery attempts by (channel, `sent` | `failed`), for /metrics
    /// (issue 13); counted in [`Dispatcher::record`].
    pub outcomes: HashMap<(Channel, &'static str), u64>,
}

/// One channel's failed attempt, for the log line after the round.
struct Failure {
    channel: Channel,
    attempt: u32,
    reason: String,
    ms: f64,
}

/// Pure: whether another attempt of up to `timeout` may start at `now` in a
/// loop turn whose first attempt began at `turn_start` (`None`: none yet —
/// the first attempt always runs): only while it ends within one `timeout`
/// of the turn's first attempt.
pub fn room_for_attempt(turn_start: Option<Instant>, now: Instant, timeout: Duration) -> bool {
    turn_start.is_none_or(|start| {
        crate::config::instant_after(now, timeout) <= crate::config::instant_after(start, timeout)
    })
}

impl Dispatcher {
    /// The channels from the configuration, an empty schedule; reads
    /// nothing but `SSL_CERT_FILE` (once, now: see `smtp`).
    pub fn new(cfg: &Config) -> Dispatcher {
        let bundle =
            smtp::system_bundle(std::env::var_os("SSL_CERT_FILE").map(PathBuf::from), |p| {
                p.is_file()
            });
        let a = &cfg.alert;
        Dispatcher {
            log_dir: cfg.log.log_dir.clone(),
            host: cfg.hostname.clone(),
            outbox: OutboxDir::new(&cfg.log.log_dir),
            schedule: Schedule::default(),
            entries: BTreeMap::new(),
            email: Mailer::new(a, &cfg.hostname, bundle),
            webhook: a.alert_webhook_url.as_deref().map(Webhook::new),
            from: a.alert_from.clone(),
            to: a.alert_email.clone(),
            timeout: a.smtp_timeout,
            unsaved: 0,
            cancel: None,
            turn_start: None,
            down: HashMap::new(),
            outcomes: HashMap::new(),
        }
    }

    /// How many alerts wait in the outbox (for /metrics, issue 13).
    pub fn pending(&self) -> usize {
        self.schedule.len()
    }

    /// [`Dispatcher::new`], then the entries an earlier run left in
    /// `LOG_DIR/outbox/`, all due at `now`.
    pub fn load(cfg: &Config, now: Instant) -> Dispatcher {
        let mut d = Dispatcher::new(cfg);
        for stem in d.outbox.list() {
            let file = d.outbox.file(&stem).display().to_string();
            match d.outbox.read(&stem) {
                Ok(entry) => {
                    if !d.has_channels() {
                        log::info!(subject = entry.subject.as_str();
                            "no alert channel is configured any more: the alert from the outbox goes to LOG_DIR/alerts");
                    }
                    let id = Id::File(stem);
                    d.schedule.add(&id, now);
                    d.entries.insert(id, entry);
                }
                Err(e) => {
                    log::error!(file = file.as_str(), error = e.to_string().as_str();
                        "cannot read an alert in the outbox; leaving it there")
                }
            }
        }
        if !d.schedule.is_empty() {
            log::info!(pending = d.schedule.len(), channels = d.channels().iter().map(|c| c.as_str()).collect::<Vec<_>>().join(",").as_str();
                "alerts left in the outbox by an earlier run: delivering them now");
        }
        d.compact(SystemTime::now(), now);
        d
    }

    /// Folds stale entries of one kind, and past [`outbox::MAX_ENTRIES`]
    /// the oldest ones (`restarted` first), into one summary entry each (see
    /// [`outbox::plan_folds`]). The summary is written before the folded
    /// files are removed, and each fold is logged: nothing is dropped
    /// silently. A summary that cannot be written folds nothing.
    fn compact(&mut self, wall: SystemTime, now: Instant) {
        if self.entries.len() < 3 {
            return;
        }
        let folds = outbox::plan_folds(
            &self.entries,
            crate::logging::unix_millis(wall),
            outbox::STALE_AFTER,
            outbox::MAX_ENTRIES,
        );
        for fold in folds {
            let items: Vec<&Entry> = fold
                .ids
                .iter()
                .filter_map(|id| self.entries.get(id))
                .collect();
            let Some(summary) = outbox::summarize(&items) else {
                continue;
            };
            let id = if !self.has_channels() {
                // Not next_unsaved(): `items` borrows the entries.
                self.unsaved += 1;
                Id::Unsaved(self.unsaved)
            } else {
                match self.outbox.create(&summary) {
                    Ok(stem) => Id::File(stem),
                    Err(e) => {
                        log::error!(event = fold.event.as_str(), count = fold.ids.len(), error = e.to_string().as_str();
                            "cannot write a summary of waiting alerts to the outbox; they stay as they are");
                        continue;
                    }
                }
            };
            let first = items.first().map(|e| e.time.clone()).unwrap_or_default();
            let last = items.last().map(|e| e.time.clone()).unwrap_or_default();
            log::warn!(event = fold.event.as_str(), folded = summary.folded.len(), entries = fold.ids.len(),
                oldest = first.as_str(), newest = last.as_str(), summary = id.to_string().as_str();
                "waiting alerts of one kind folded into one summary (each is listed in it; none dropped)");
            for old in &fold.ids {
                self.schedule.remove(old);
                self.entries.remove(old);
                if let Some(stem) = old.file() {
                    if let Err(e) = self.outbox.remove(stem) {
                        log::warn!(id = stem, error = e.to_string().as_str();
                            "cannot remove a folded alert from the outbox; it may be sent again after a restart");
                    }
                }
            }
            self.entries.insert(id.clone(), summary);
            self.schedule.add(&id, now);
        }
    }

    /// Makes every delivery give up as soon as `flag` is set (the monitor's
    /// shutdown flag): an email in progress within 50 ms, a webhook POST at
    /// its own timeout. What was not delivered stays in the outbox.
    pub fn cancel_on(&mut self, flag: Arc<AtomicBool>) {
        self.cancel = Some(flag);
    }

    fn is_cancelled(&self) -> bool {
        self.cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::SeqCst))
    }

    /// Whether any channel (email, webhook) is configured.
    pub fn has_channels(&self) -> bool {
        self.email.is_some() || self.webhook.is_some()
    }

    /// The configured channels; [`Channel::Local`] alone when there are none.
    pub fn channels(&self) -> Vec<Channel> {
        if !self.has_channels() {
            return vec![Channel::Local];
        }
        let mut c = Vec::new();
        if self.email.is_some() {
            c.push(Channel::Email);
        }
        if self.webhook.is_some() {
            c.push(Channel::Webhook);
        }
        c
    }

    /// A new loop turn: a new budget of one SMTP_TIMEOUT for every
    /// [`Dispatcher::submit`] and [`Dispatcher::retry_due`] until the next
    /// call, so that a turn that makes several alerts still holds up the
    /// checks for one SMTP_TIMEOUT at most.
    pub fn begin_turn(&mut self) {
        self.turn_start = None;
        self.down.clear();
    }

    /// When [`Dispatcher::retry_due`] has work next; `None`: nothing waits.
    pub fn next_due(&self) -> Option<Instant> {
        self.schedule.next_due()
    }

    /// Takes a new alert made at `time` and tries it at once: with email or
    /// webhook configured it goes into the outbox (durably) first; without,
    /// the [`Channel::Local`] `.eml` is the durable copy and is retried in memory
    /// until it can be written.
    pub fn submit(&mut self, msg: &Message, time: SystemTime, now: Instant) {
        let entry = Entry::new(
            msg.event,
            &msg.subject,
            &msg.body,
            &self.host,
            time,
            &message_id(time, &self.host),
        );
        let id = if !self.has_channels() {
            self.next_unsaved()
        } else {
            match self.outbox.create(&entry) {
                Ok(stem) => Id::File(stem),
                Err(e) => {
                    // Still try: an alert that cannot be kept may yet be delivered.
                    log::error!(subject = entry.subject.as_str(), error = e.to_string().as_str(),
                    dir = self.outbox.path().display().to_string().as_str();
                    "cannot write the alert to the outbox; trying to deliver it anyway");
                    self.next_unsaved()
                }
            }
        };
        log::debug!(subject = entry.subject.as_str(), id = id.to_string().as_str(); "alert queued");
        self.entries.insert(id.clone(), entry);
        self.schedule.add(&id, now);
        self.compact(time, now);
        if self.entries.contains_key(&id) {
            self.deliver(vec![id]);
        } else {
            self.retry_due(now);
        }
    }

    /// Tries every entry that is due at `now`: "Server Down" and "Server
    /// Recovered" newest first, then the rest oldest first.
    pub fn retry_due(&mut self, now: Instant) {
        let due = self.schedule.due(now);
        if !due.is_empty() {
            self.compact(SystemTime::now(), now);
            let due = outbox::delivery_order(&self.schedule.due(now), &self.entries);
            self.deliver(due);
        }
    }

    /// One attempt on one channel; `Err` is the short reason.
    fn attempt(&self, channel: Channel, entry: &Entry) -> Result<(), String> {
        match channel {
            Channel::Email => {
                let Some(mailer) = &self.email else {
                    return Err("email is not configured".into());
                };
                let mime = self.mime(entry);
                mailer
                    .send(
                        &self.from,
                        &self.to,
                        &mime,
                        self.timeout,
                        self.cancel.as_deref(),
                    )
                    .map_err(|e| e.to_string())
            }
            Channel::Webhook => {
                let Some(hook) = &self.webhook else {
                    return Err("the webhook is not configured".into());
                };
                let json = webhook::payload(
                    &entry.event,
                    &entry.subject,
                    &entry.body,
                    &entry.host,
                    &entry.time,
                );
                hook.post(&json, self.timeout, self.cancel.as_deref())
                    .map_err(|e| e.to_string())
            }
            Channel::Local => self.write_local(entry),
        }
    }

    /// Where a channel delivers, safe to show.
    fn target(&self, channel: Channel) -> String {
        match channel {
            Channel::Email => self
                .email
                .as_ref()
                .map(|m| format!("{} via {}", self.to.join(","), m.describe()))
                .unwrap_or_default(),
            Channel::Webhook => self
                .webhook
                .as_ref()
                .map(Webhook::describe)
                .unwrap_or_default(),
            Channel::Local => self.log_dir.join("alerts").display().to_string(),
        }
    }

    /// One round for each of `ids` (in the order given) within the turn's
    /// budget: choose the channels, attempt them, record the outcome.
    fn deliver(&mut self, ids: Vec<Id>) {
        let mut down = std::mem::take(&mut self.down);
        for id in ids {
            let Some(mut entry) = self.entries.get(&id).cloned() else {
                self.schedule.remove(&id);
                continue;
            };
            let Some(channels) = self.choose(&id, &entry, &down) else {
                continue;
            };
            let (sent, failed, stop) = self.attempt_all(&mut entry, &channels);
            self.record(&id, &entry, (&sent, failed), &mut down);
            if stop {
                break;
            }
        }
        self.down = down;
    }

    /// The channels that still need `entry` and did not fail this turn;
    /// `None` when every one it needs did: it is deferred to the soonest of
    /// their retry times, without counting a failure.
    fn choose(
        &mut self,
        id: &Id,
        entry: &Entry,
        down: &HashMap<Channel, Instant>,
    ) -> Option<Vec<Channel>> {
        let pending: Vec<Channel> = self
            .channels()
            .into_iter()
            .filter(|c| !entry.has_delivered(c.as_str()))
            .collect();
        let to_try: Vec<Channel> = pending
            .iter()
            .copied()
            .filter(|c| !down.contains_key(c))
            .collect();
        if to_try.is_empty() && !pending.is_empty() {
            if let Some(until) = pending.iter().filter_map(|c| down.get(c)).min() {
                self.schedule.defer(id, *until);
            }
            return None;
        }
        Some(to_try)
    }

    /// Tries `channels` in turn while the turn's budget has room for a whole
    /// attempt and the monitor is not stopping; marks what each took.
    /// Returns the channels that took it, the failures, and whether the
    /// round must stop here.
    fn attempt_all(
        &mut self,
        entry: &mut Entry,
        channels: &[Channel],
    ) -> (Vec<Channel>, Vec<Failure>, bool) {
        let (mut sent, mut failed) = (Vec::new(), Vec::new());
        for &channel in channels {
            if self.is_cancelled() {
                log::info!(subject = entry.subject.as_str(), channel = channel.as_str();
                    "the monitor is stopping: the alert stays in the outbox for the next start");
                return (sent, failed, true);
            }
            let now = Instant::now();
            if !room_for_attempt(self.turn_start, now, self.timeout) {
                // No room for another whole attempt: what is left waits
                // for the next loop turn (still due), after the checks.
                return (sent, failed, true);
            }
            self.turn_start.get_or_insert(now);
            let attempt = entry.count_attempt(channel.as_str());
            let t = Instant::now();
            let result = self.attempt(channel, entry);
            let ms = crate::logging::round_ms(t.elapsed());
            match result {
                Ok(()) => {
                    if channel != Channel::Local {
                        log::info!(channel = channel.as_str(), subject = entry.subject.as_str(),
                            attempt = attempt, ms = ms, to = self.target(channel).as_str();
                            "alert delivered");
                    }
                    entry.mark_delivered(channel.as_str());
                    sent.push(channel);
                }
                Err(reason) => failed.push(Failure {
                    channel,
                    attempt,
                    reason,
                    ms,
                }),
            }
        }
        (sent, failed, false)
    }

    /// After a round: the attempts are tallied (issue 13); an entry every
    /// channel has leaves the outbox; else the failures set its retry, are
    /// logged, and mark their channels down for the rest of the turn, and
    /// its progress is saved.
    fn record(
        &mut self,
        id: &Id,
        entry: &Entry,
        (sent, failed): (&[Channel], Vec<Failure>),
        down: &mut HashMap<Channel, Instant>,
    ) {
        let tried = sent.iter().map(|&c| (c, "sent"));
        for key in tried.chain(failed.iter().map(|f| (f.channel, "failed"))) {
            *self.outcomes.entry(key).or_default() += 1;
        }
        if self
            .channels()
            .iter()
            .all(|c| entry.has_delivered(c.as_str()))
        {
            self.finish(id);
            return;
        }
        if !failed.is_empty() {
            let delay = self
                .schedule
                .record_failure(id, Instant::now())
                .unwrap_or_default();
            let until = self.schedule.due_at(id).unwrap_or_else(Instant::now);
            let next_retry = utc_iso8601_millis(SystemTime::now() + delay);
            for f in failed {
                log::warn!(channel = f.channel.as_str(), subject = entry.subject.as_str(),
                    attempt = f.attempt, error = f.reason.as_str(), ms = f.ms,
                    retry_in_s = delay.as_secs(), next_retry = next_retry.as_str(),
                    to = self.target(f.channel).as_str();
                    "alert delivery failed");
                down.insert(f.channel, until);
            }
        }
        self.save(id, entry);
    }

    /// A new id for an entry kept in memory only.
    fn next_unsaved(&mut self) -> Id {
        self.unsaved += 1;
        Id::Unsaved(self.unsaved)
    }

    /// Records an entry's progress, in memory and in its file.
    fn save(&mut self, id: &Id, entry: &Entry) {
        if let Some(stem) = id.file() {
            if let Err(e) = self.outbox.write(stem, entry) {
                log::warn!(id = stem, error = e.to_string().as_str(); "cannot update the alert in the outbox");
            }
        }
        self.entries.insert(id.clone(), entry.clone());
    }

    /// Every channel has the entry: it leaves the outbox.
    fn finish(&mut self, id: &Id) {
        self.schedule.remove(id);
        self.entries.remove(id);
        if let Some(stem) = id.file() {
            if let Err(e) = self.outbox.remove(stem) {
                log::error!(id = stem, error = e.to_string().as_str();
                    "cannot remove a delivered alert from the outbox; a restart would send it again");
            }
        }
    }

    /// The message for an entry, with the current ALERT_FROM and ALERT_EMAIL
    /// (the same Message-ID at every try).
    fn mime(&self, entry: &Entry) -> Vec<u8> {
        let parts = MimeParts {
            event: &entry.event,
            subject: &entry.subject,
            body: &entry.body,
            time: entry.system_time(),
            message_id: &entry.message_id,
        };
        build_mime(&parts, &self.from, &self.to)
    }

    /// The local channel: writes `LOG_DIR/alerts/*.eml`.
    fn write_local(&self, entry: &Entry) -> Result<(), String> {
        let mime = self.mime(entry);
        let path = write_eml(&self.log_dir, &mime, &entry.event, entry.system_time())
            .map_err(|e| e.to_string())?;
        log::info!(subject = entry.subject.as_str(), path = path.display().to_string().as_str();
            "alert written");
        Ok(())
    }
}

/// `server-monitor test-alert`: "Test Alert" through each configured channel
/// directly (no outbox), one line per channel on stdout; `Ok` when every one
/// took it, else `Err` with the reasons (`main` prints them). Without
/// channels the `.eml` file is written and its path printed. With
/// HEARTBEAT_URL, one ping too, reported on a `heartbeat:` line like a
/// channel (and failing the command like one).
pub fn test_alert(cfg: &Config) -> Result<(), String> {
    let channels = test_channels(cfg);
    let Some(url) = &cfg.heartbeat.heartbeat_url else {
        return channels;
    };
    let target = crate::config::mask_secret_url(url);
    let beat = match crate::heartbeat::ping_bounded(url, cfg.health.health_timeout) {
        Ok(t) => {
            println!("heartbeat: ok ({target}, {} ms)", t.as_millis());
            Ok(())
        }
        Err(reason) => {
            println!("heartbeat: FAILED: {reason} ({target})");
            Err(format!("the heartbeat ping failed: {reason}"))
        }
    };
    match (channels, beat) {
        (Ok(()), Ok(())) => Ok(()),
        (Err(e), Ok(())) | (Ok(()), Err(e)) => Err(e),
        (Err(a), Err(b)) => Err(format!("{a}; {b}")),
    }
}

/// [`test_alert`]'s alert channels.
fn test_channels(cfg: &Config) -> Result<(), String> {
    let d = Dispatcher::new(cfg);
    let time = SystemTime::now();
    let ctx = Context {
        service_name: &cfg.alert.service_name,
        host: &cfg.hostname,
        time,
        health_url: &cfg.health.health_url,
        error_tail: &[],
    };
    let msg = render_test(&ctx);
    if !d.has_channels() {
        let mime = to_mime(
            &msg,
            &cfg.alert.alert_from,
            &cfg.alert.alert_email,
            time,
            &cfg.hostname,
        );
        return match write_eml(&cfg.log.log_dir, &mime, msg.event, time) {
            Ok(path) => {
                println!(
                    "no alert channel is configured (SMTP_SERVER and ALERT_EMAIL, or ALERT_WEBHOOK_URL): the test alert was written to {}",
                    path.display()
                );
                Ok(())
            }
            Err(e) => Err(format!(
                "cannot write the test alert under {}: {e}",
                cfg.log.log_dir.join("alerts").display()
            )),
        };
    }
    let entry = Entry::new(
        msg.event,
        &msg.subject,
        &msg.body,
        &cfg.hostname,
        time,
        &message_id(time, &cfg.hostname),
    );
    let mut failures = Vec::new();
    for channel in d.channels() {
        let target = d.target(channel);
        let t = Instant::now();
        match d.attempt(channel, &entry) {
            Ok(()) => println!("{channel}: ok ({target}, {} ms)", t.elapsed().as_millis()),
            Err(reason) => {
                println!("{channel}: FAILED: {reason} ({target})");
                failures.push(format!("{channel}: {reason}"));
            }
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the test alert was not delivered: {}",
            failures.join("; ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::room_for_attempt;
    use std::time::{Duration, Instant};

    #[test]
    fn one_smtp_timeout_per_loop_turn() {
        let t = Duration::from_secs(2);
        let start = Instant::now();
        assert!(room_for_attempt(None, start, t), "the first attempt runs");
        // An attempt that answered at once leaves room for another.
        assert!(room_for_attempt(Some(start), start, t));
        assert!(!room_for_attempt(
            Some(start),
            start + Duration::from_millis(1),
            t
        ));
        // One that timed out leaves none for the rest of the turn.
        assert!(!room_for_attempt(Some(start), start + t, t));
    }
}
