//! Planned restarts: `server-monitor restart` after a deploy.
//!
//! The command finds the running monitor of the same `LOG_DIR` (its pid is in
//! `server_monitor.lock`, held with flock), leaves a request file
//! `LOG_DIR/restart-ID.request` saying who asks, sends SIGUSR1, and waits for
//! the monitor to report the outcome for that ID in the state file. The
//! monitor stops, starts and verifies the server; a planned restart is not an
//! attempt, ignores the cooldown and sends no alert unless it fails.
//!
//! The client ([`run`]) returns `Ok` once the new server is verified healthy,
//! [`ClientError::NoMonitor`] if no monitor runs with this `LOG_DIR` (`main`
//! makes that exit 3), and [`ClientError::Failed`] otherwise, also when no
//! answer came in time (exit 1).
//!
//! The monitor's side is here too: [`requested`] turns the request files
//! into the state file's record when SIGUSR1 comes, and [`record_outcome`]
//! fills in how it ended from the policy's notes. SIGUSR1 also carries
//! `pause` and `resume` (issue 11): [`signalled`] takes their requests first
//! and says whether the signal asks for a restart at all.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::policy::{Note, StartKind};
use crate::state::{self, Outcome, PlannedRestart};
use crate::sys;

const PREFIX: &str = "restart-";
const SUFFIX: &str = ".request";

/// One request, as the file holds it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub id: String,
    pub by: String,
}

/// Reads and removes every pending request file (a restart answers them all).
pub fn take_requests(dir: &Path) -> Vec<Request> {
    take_request_files(dir, PREFIX, SUFFIX)
}

/// Reads and removes every `PREFIX…SUFFIX` file in `dir` (restart and pause
/// requests alike), in no order; a file that does not parse is removed too.
pub fn take_request_files<T: serde::de::DeserializeOwned>(
    dir: &Path,
    prefix: &str,
    suffix: &str,
) -> Vec<T> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if !(name.starts_with(prefix) && name.ends_with(suffix)) {
            continue;
        }
        let path = e.path();
        if let Ok(text) = fs::read(&path) {
            if let Ok(req) = serde_json::from_slice::<T>(&text) {
                out.push(req);
            }
        }
        let _ = fs::remove_file(&path);
    }
    out
}

/// Whether a restart request file is waiting (a SIGUSR1 that brought only
/// pause requests is no restart).
fn has_requests(dir: &Path) -> bool {
    fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(PREFIX) && n.ends_with(SUFFIX))
        })
    })
}

/// What one SIGUSR1 asks for (issue 11: `pause` and `resume` use the same
/// signal): the pause and resume requests, taken first, oldest first; and
/// whether a planned restart is asked too — when a restart request came,
/// or no request at all (a bare `kill -USR1`).
#[derive(Debug, PartialEq)]
pub struct Signalled {
    pub pauses: Vec<crate::pause::Request>,
    pub restart: bool,
}

/// SIGUSR1 came: takes the pause requests and says whether a planned
/// restart is asked (its request files are then [`requested`]'s).
pub fn signalled(dir: &Path) -> Signalled {
    let pauses = crate::pause::take_requests(dir);
    let restart = pauses.is_empty() || has_requests(dir);
    Signalled { pauses, restart }
}

/// SIGUSR1 came: takes the request files and says who asked, for the state
/// file's record (outcome in progress) and the policy's event.
pub fn requested(dir: &Path, requested: String) -> PlannedRestart {
    let requests = take_requests(dir);
    let by = if requests.is_empty() {
        "SIGUSR1 (no request file)".to_string()
    } else {
        let who: Vec<&str> = requests.iter().map(|r| r.by.as_str()).collect();
        who.join(", ")
    };
    PlannedRestart {
        ids: requests.into_iter().map(|r| r.id).collect(),
        by,
        requested,
        outcome: Outcome::InProgress,
        detail: None,
        server_pid: None,
    }
}

/// Pure: how a planned restart ended, when `note` says so.
pub fn outcome_of(note: &Note) -> Option<(Outcome, String)> {
    Some(match note {
        Note::Verified {
            kind: StartKind::Planned { .. },
            after,
        } => (
            Outcome::Ok,
            format!("healthy after {:.3}s", after.as_secs_f64()),
        ),
        Note::VerifyFailed {
            kind: StartKind::Planned { .. },
            reason,
        } => (Outcome::Failed, reason.clone()),
        Note::AlreadyRestarting { .. } => {
            (Outcome::Failed, "a start is already in progress".into())
        }
        Note::CannotRestart { .. } => (
            Outcome::Failed,
            "no SERVER_COMMAND: this monitor only watches".into(),
        ),
        _ => return None,
    })
}

/// Records in `planned` how the restart in progress ended, for `server-monitor
/// restart`; a note about anything else changes nothing.
pub fn record_outcome(planned: Option<&mut PlannedRestart>, note: &Note, server_pid: Option<u32>) {
    let Some(p) = planned.filter(|p| p.outcome == Outcome::InProgress) else {
        return;
    };
    if let Some((outcome, detail)) = outcome_of(note) {
        p.outcome = outcome;
        p.detail = Some(detail);
        p.server_pid = server_pid;
    }
}

/// Pure: a user name for `uid` from the text of /etc/passwd.
pub fn user_name(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let mut f = line.split(':');
        let name = f.next()?;
        let id = f.nth(1)?.parse::<u32>().ok()?;
        (id == uid && !name.is_empty()).then(|| name.to_string())
    })
}

/// Who is asking: user (and sudo user), uid and pid, for the monitor's log.
pub fn requester() -> String {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u32>().ok());
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    let user = uid
        .and_then(|u| user_name(&passwd, u))
        .unwrap_or_else(|| "unknown user".into());
    let sudo = std::env::var("SUDO_USER")
        .map(|s| format!(" via sudo from {s}"))
        .unwrap_or_default();
    let uid = uid.map_or(String::new(), |u| format!("uid {u}, "));
    format!("{user}{sudo} ({uid}pid {})", std::process::id())
}

/// Why `server-monitor restart` did not get a verified restart.
#[derive(Debug)]
pub enum ClientError {
    /// No monitor holds the lock of this LOG_DIR.
    NoMonitor(std::path::PathBuf),
    /// The request could not be made, the restart failed, or no answer came.
    Failed(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::NoMonitor(dir) => {
                write!(f, "no monitor is running with LOG_DIR {}", dir.display())
            }
            ClientError::Failed(s) => f.write_str(s),
        }
    }
}

/// The client's first steps, for `restart` and `pause`/`resume`: the pid of
/// the monitor running with `dir` (or [`ClientError::NoMonitor`]) and the
/// time now in nanoseconds since the epoch, for a request id.
pub fn find_monitor(dir: &Path) -> Result<(u32, u128), ClientError> {
    let Some(pid) = crate::lock::lock_holder(dir) else {
        return Err(ClientError::NoMonitor(dir.to_path_buf()));
    };
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    Ok((pid, nanos))
}

/// `server-monitor restart`.
pub fn run(cfg: &Config) -> Result<(), ClientError> {
    let dir = &cfg.log.log_dir;
    let (pid, nanos) = find_monitor(dir)?;
    let request = Request {
        id: format!("{}-{nanos}", std::process::id()),
        by: requester(),
    };
    let path = dir.join(format!("{PREFIX}{}{SUFFIX}", request.id));
    send(
        &path,
        &serde_json::to_vec(&request).unwrap_or_default(),
        pid,
    )?;
    println!("asked the monitor (pid {pid}) to restart the server; waiting for it");
    await_answer(cfg, &path, pid, |s| {
        let p = s.planned_restart.filter(|p| p.ids.contains(&request.id))?;
        match p.outcome {
            Outcome::Ok => {
                let pid = p
                    .server_pid
                    .map_or(String::new(), |p| format!(" (pid {p})"));
                println!("server restarted{pid} and verified healthy");
                Some(Ok(()))
            }
            Outcome::Failed => {
                let why = p.detail.unwrap_or_default();
                Some(Err(ClientError::Failed(format!(
                    "the planned restart failed: {why}"
                ))))
            }
            Outcome::InProgress => None,
        }
    })
}

/// Leaves a request file at `path` and sends SIGUSR1 to the monitor `pid`
/// (the file is removed again when the signal cannot be sent).
pub fn send(path: &Path, json: &[u8], pid: u32) -> Result<(), ClientError> {
    if let Err(e) = crate::files::write_atomic(path, json, false) {
        return Err(ClientError::Failed(format!(
            "cannot write {}: {e}",
            path.display()
        )));
    }
    if let Err(e) = sys::kill(pid, sys::SIGUSR1) {
        let _ = fs::remove_file(path);
        return Err(ClientError::Failed(format!(
            "cannot signal the monitor (pid {pid}): {e}"
        )));
    }
    Ok(())
}

/// Waits until `answered` finds the monitor's answer in its state file,
/// the monitor `pid` stops, or the wait runs out (then the request file at
/// `path` is removed).
pub fn await_answer(
    cfg: &Config,
    path: &Path,
    pid: u32,
    mut answered: impl FnMut(state::State) -> Option<Result<(), ClientError>>,
) -> Result<(), ClientError> {
    let dir = &cfg.log.log_dir;
    // Stop, start and verify, plus time for the monitor to finish a check
    // that was under way when the signal came.
    let wait = cfg.server.stop_timeout
        + cfg.policy.startup_timeout
        + cfg.health.health_timeout
        + Duration::from_secs(5);
    let deadline = crate::config::instant_after(Instant::now(), wait);
    while Instant::now() < deadline {
        if let Some(answer) = state::read(dir).ok().and_then(&mut answered) {
            return answer;
        }
        if crate::lock::lock_holder(dir) != Some(pid) {
            return Err(ClientError::Failed(format!(
                "the monitor (pid {pid}) stopped before answering"
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = fs::remove_file(path);
    Err(ClientError::Failed(format!(
        "no answer from the monitor (pid {pid}) in time"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planned_restart_outcomes_come_from_the_notes() {
        use std::time::Duration;
        let planned = StartKind::Planned { by: "alice".into() };
        let first = StartKind::First;
        let verified = |kind| Note::Verified {
            kind,
            after: Duration::from_millis(1500),
        };
        let mut p = Some(PlannedRestart::default());
        record_outcome(p.as_mut(), &verified(first.clone()), Some(7));
        assert_eq!(p.as_ref().unwrap().outcome, Outcome::InProgress, "not ours");
        record_outcome(p.as_mut(), &verified(planned.clone()), Some(7));
        let done = p.clone().unwrap();
        assert_eq!(
            (done.outcome, done.detail.as_deref(), done.server_pid),
            (Outcome::Ok, Some("healthy after 1.500s"), Some(7))
        );
        let failed = Note::VerifyFailed {
            kind: planned,
            reason: "timed out".into(),
        };
        record_outcome(p.as_mut(), &failed, None);
        assert_eq!(p.as_ref().unwrap().outcome, Outcome::Ok, "recorded once");
        assert_eq!(
            outcome_of(&failed),
            Some((Outcome::Failed, "timed out".into()))
        );
        assert_eq!(
            outcome_of(&Note::CannotRestart { by: "bob".into() }).map(|o| o.0),
            Some(Outcome::Failed)
        );
        assert_eq!(outcome_of(&Note::AttemptsReset), None);
        let json = serde_json::to_string(&Outcome::InProgress).unwrap();
        assert_eq!(json, "\"in progress\"");
    }

    #[test]
    fn user_names_come_from_passwd() {
        let passwd =
            "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/sh\nbroken\n";
        assert_eq!(user_name(passwd, 0).as_deref(), Some("root"));
        assert_eq!(user_name(passwd, 1000).as_deref(), Some("alice"));
        assert_eq!(user_name(passwd, 5), None);
    }

    #[test]
    fn a_signal_with_pause_requests_alone_asks_no_restart() {
        let dir = std::env::temp_dir().join(format!("sm-signalled-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        assert_eq!(
            signalled(&dir),
            Signalled {
                pauses: vec![],
                restart: true
            },
            "a bare SIGUSR1 is a planned restart"
        );
        let pause = crate::pause::Request {
            id: "001-1".into(),
            by: "alice".into(),
            pause: true,
            for_ms: None,
        };
        let write_pause = || {
            fs::write(
                dir.join("pause-001-1.request"),
                serde_json::to_vec(&pause).unwrap(),
            )
            .unwrap()
        };
        write_pause();
        let s = signalled(&dir);
        assert_eq!((s.pauses, s.restart), (vec![pause.clone()], false));
        write_pause();
        fs::write(dir.join("restart-1-2.request"), b"{}").unwrap();
        let s = signalled(&dir);
        assert_eq!((s.pauses, s.restart), (vec![pause.clone()], true));
        assert!(
            dir.join("restart-1-2.request").exists(),
            "left for `requested`"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn requests_are_taken_once_and_garbage_is_dropped() {
        let dir = std::env::temp_dir().join(format!("sm-restart-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let req = Request {
            id: "1-2".into(),
            by: "alice (pid 1)".into(),
        };
        fs::write(
            dir.join("restart-1-2.request"),
            serde_json::to_vec(&req).unwrap(),
        )
        .unwrap();
        fs::write(dir.join("restart-x.request"), b"garbage").unwrap();
        fs::write(dir.join("other.file"), b"keep").unwrap();
        assert_eq!(take_requests(&dir), vec![req]);
        assert!(take_requests(&dir).is_empty());
        assert!(dir.join("other.file").exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}
