//! Maintenance pauses: `server-monitor pause [--for DURATION]` and `resume`.
//!
//! The same channel as `server-monitor restart` (see `restart.rs`): the
//! command finds the running monitor of this `LOG_DIR` through
//! `server_monitor.lock`, leaves a request file `LOG_DIR/pause-ID.request`
//! (who asks, pause or resume, how long), sends SIGUSR1, and waits until the
//! monitor lists the ID in the state file's `pause_acks`. The monitor takes
//! pause requests before restart requests on a SIGUSR1, and does a planned
//! restart only when a restart request (or no request at all) came
//! (`restart::signalled`).
//!
//! Exit status: 0 once the monitor has taken it, 1 if it did not answer in
//! time, 3 if no monitor runs with this `LOG_DIR`.
//!
//! Not here: what a pause does (`escalation`, the policy's `Event::Pause`).

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::restart::ClientError;

const PREFIX: &str = "pause-";
const SUFFIX: &str = ".request";
/// How many handled request ids the state file keeps for their commands.
pub const ACKS_KEPT: usize = 16;

/// One request, as the file holds it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub id: String,
    pub by: String,
    /// true: pause; false: resume.
    pub pause: bool,
    /// `--for`, in milliseconds; `None`: until resume.
    pub for_ms: Option<u64>,
}

impl Request {
    pub fn length(&self) -> Option<Duration> {
        self.for_ms.map(Duration::from_millis)
    }
}

/// Reads and removes every pending pause or resume request, oldest first.
pub fn take_requests(dir: &Path) -> Vec<Request> {
    let mut out: Vec<Request> = crate::restart::take_request_files(dir, PREFIX, SUFFIX);
    // The id begins with the nanoseconds of the request: oldest first.
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

/// `server-monitor pause [--for D]` (`pause`) or `resume`: prints what the
/// monitor took; [`ClientError::NoMonitor`] when none runs with this
/// `LOG_DIR` (`main` makes that exit 3), [`ClientError::Failed`] when the
/// request could not be made or no answer came in time (exit 1).
pub fn run(cfg: &Config, pause: bool, length: Option<Duration>) -> Result<(), ClientError> {
    let dir = &cfg.log.log_dir;
    let (pid, nanos) = crate::restart::find_monitor(dir)?;
    let request = Request {
        id: format!("{nanos:024}-{}", std::process::id()),
        by: crate::restart::requester(),
        pause,
        for_ms: length.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    };
    let path = dir.join(format!("{PREFIX}{}{SUFFIX}", request.id));
    let json = serde_json::to_vec(&request).unwrap_or_default();
    crate::restart::send(&path, &json, pid)?;
    // The monitor may be in the middle of a stop, a start or a check.
    crate::restart::await_answer(cfg, &path, pid, |s| {
        if !s.pause_acks.contains(&request.id) {
            return None;
        }
        match (&s.pause, pause) {
            (Some(p), true) => println!("monitor (pid {pid}) {}", p.describe()),
            (_, true) => println!("monitor (pid {pid}) paused"),
            (_, false) => println!("monitor (pid {pid}) resumed: the usual rules act again"),
        }
        Some(Ok(()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn pause_requests_are_taken_once_oldest_first() {
        let dir = std::env::temp_dir().join(format!("sm-pause-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let a = Request {
            id: "001-1".into(),
            by: "alice".into(),
            pause: true,
            for_ms: Some(1000),
        };
        let b = Request {
            id: "002-1".into(),
            pause: false,
            for_ms: None,
            ..a.clone()
        };
        for r in [&b, &a] {
            let name = format!("pause-{}.request", r.id);
            fs::write(dir.join(name), serde_json::to_vec(r).unwrap()).unwrap();
        }
        fs::write(dir.join("restart-1.request"), b"{}").unwrap();
        assert_eq!(take_requests(&dir), vec![a, b]);
        assert!(take_requests(&dir).is_empty());
        assert!(dir.join("restart-1.request").exists(), "not ours");
        fs::remove_dir_all(&dir).unwrap();
    }
}
