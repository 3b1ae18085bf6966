//! The loop's housekeeping of `LOG_DIR`: the lock file and `server.pid` put
//! back when they went missing (looked at once a second at most), and the
//! hourly sweep (rotated logs and alert files past LOG_RETENTION_DAYS, then
//! the clean executable pages dropped from the resident set).
//!
//! Each chore is due at its own time; the loop calls [`Housekeeping::turn`]
//! every turn (cheap when nothing is due) and waits for
//! [`Housekeeping::next_due`] as its `Wake::Housekeeping`.
//!
//! Not here: the history's own day line, heartbeat and pruning
//! (`history::Recorder::tick`); the state file (`state::Writer`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::config::LogSettings;
use crate::lock::Lock;
use crate::server::{PidFile, Server};

/// How often the lock file and `server.pid` are looked at: with a tiny
/// CHECK_INTERVAL the loop turns far more often than that.
const RESTORE_EVERY: Duration = Duration::from_secs(1);
/// How often old files are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// When each chore is next due.
pub struct Housekeeping {
    dir: PathBuf,
    retention_days: u32,
    next_sweep: Instant,
    next_restore: Instant,
}

impl Housekeeping {
    /// Both chores are due at once.
    pub fn new(log: &LogSettings, now: Instant) -> Housekeeping {
        Housekeeping {
            dir: log.log_dir.clone(),
            retention_days: log.log_retention_days,
            next_sweep: now,
            next_restore: now,
        }
    }

    /// The hourly sweep's deadline (the restore rides on the loop's turns).
    pub fn next_due(&self) -> Instant {
        self.next_sweep
    }

    /// Does what is due at `now`.
    pub fn turn(&mut self, lock: &mut Lock, server: Option<&mut Server>, now: Instant) {
        if now >= self.next_restore {
            self.next_restore = now + RESTORE_EVERY;
            restore_files(&self.dir, lock, server);
        }
        if now >= self.next_sweep {
            self.next_sweep = now + SWEEP_EVERY;
            sweep(&self.dir, self.retention_days);
        }
    }
}

/// Rewrites `server.pid` when the server's command line changed (a wrapper
/// exec'd the real server, say).
pub fn update_pid_file(dir: &Path, server: Option<&mut Server>) {
    let Some(s) = server else { return };
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

/// Puts back the lock file and `server.pid` when they went missing (a
/// removed `LOG_DIR`, say): `restart`, `status` and the next monitor's
/// adoption depend on them.
fn restore_files(dir: &Path, lock: &mut Lock, mut server: Option<&mut Server>) {
    update_pid_file(dir, server.as_deref_mut());
    match lock.refresh() {
        Ok(false) => return,
        Ok(true) => log::warn!("server_monitor.lock was removed; created again"),
        Err(e) => {
            log::warn!(error = e.to_string().as_str(); "cannot put server_monitor.lock back");
            return;
        }
    }
    if let Some(record) = server.as_deref().and_then(Server::record) {
        if PidFile::read(dir).is_none() {
            if let Err(e) = record.write(dir) {
                log::warn!(error = e.to_string().as_str(); "cannot write server.pid");
            }
        }
    }
}

/// Removes rotated logs and alert files past LOG_RETENTION_DAYS (0 keeps
/// everything), then drops clean executable pages from the resident set.
fn sweep(dir: &Path, days: u32) {
    if days > 0 {
        let age = Duration::from_secs(u64::from(days) * 86_400);
        let removed = crate::logging::retention::sweep_rotated_logs(dir, age)
            + crate::alert::sweep_old_alert_files(dir, age);
        if removed > 0 {
            log::info!(removed = removed, retention_days = days; "removed rotated logs and alert files past LOG_RETENTION_DAYS");
        }
    }
    // Code that ran only at start, or once this hour (a restart, an email
    // over TLS), need not stay in the resident set: the loop's own pages
    // come straight back from the page cache.
    let dropped = crate::sys::drop_executable_pages();
    log::debug!(bytes = dropped; "dropped clean executable pages from the resident set");
}
