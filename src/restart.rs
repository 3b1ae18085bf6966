//! Planned restarts: `server-monitor restart` after a deploy.
//!
//! The command finds the running monitor of the same `LOG_DIR` (its pid is in
//! `server_monitor.lock`, held with flock), leaves a request file
//! `LOG_DIR/restart-ID.request` saying who asks, sends SIGUSR1, and waits for
//! the monitor to report the outcome for that ID in the state file. The
//! monitor stops, starts and verifies the server; a planned restart is not an
//! attempt, ignores the cooldown and sends no alert unless it fails.
//!
//! Exit status: 0 once the new server is verified healthy, 1 if it is not (or
//! no answer came in time), 3 if no monitor runs with this `LOG_DIR`.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::state;
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
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if !(name.starts_with(PREFIX) && name.ends_with(SUFFIX)) {
            continue;
        }
        let path = e.path();
        if let Ok(text) = fs::read(&path) {
            if let Ok(req) = serde_json::from_slice::<Request>(&text) {
                out.push(req);
            }
        }
        let _ = fs::remove_file(&path);
    }
    out
}

/// Whether a restart request file is waiting (a SIGUSR1 that brought only
/// pause requests is no restart).
pub fn has_requests(dir: &Path) -> bool {
    fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(PREFIX) && n.ends_with(SUFFIX))
        })
    })
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

/// `server-monitor restart`.
pub fn run(cfg: &Config) -> u8 {
    let dir = &cfg.log.log_dir;
    let Some(pid) = crate::lock::lock_holder(dir) else {
        eprintln!(
            "server-monitor: no monitor is running with LOG_DIR {}",
            dir.display()
        );
        return 3;
    };
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let request = Request {
        id: format!("{}-{nanos}", std::process::id()),
        by: requester(),
    };
    let path = dir.join(format!("{PREFIX}{}{SUFFIX}", request.id));
    let json = serde_json::to_vec(&request).unwrap_or_default();
    if let Err(e) = crate::files::write_atomic(&path, &json, false) {
        eprintln!("server-monitor: cannot write {}: {e}", path.display());
        return 1;
    }
    if let Err(e) = sys::kill(pid, sys::SIGUSR1) {
        let _ = fs::remove_file(&path);
        eprintln!("server-monitor: cannot signal the monitor (pid {pid}): {e}");
        return 1;
    }
    println!("asked the monitor (pid {pid}) to restart the server; waiting for it");
    // Stop, start and verify, plus time for the monitor to finish a check
    // that was under way when the signal came.
    let wait = cfg.server.stop_timeout
        + cfg.server.startup_timeout
        + cfg.health.health_timeout
        + Duration::from_secs(5);
    let deadline = crate::config::instant_after(Instant::now(), wait);
    while Instant::now() < deadline {
        if let Ok(s) = state::read(dir) {
            if let Some(p) = s.planned_restart.filter(|p| p.ids.contains(&request.id)) {
                match p.outcome.as_str() {
                    "ok" => {
                        let pid = p
                            .server_pid
                            .map_or(String::new(), |p| format!(" (pid {p})"));
                        println!("server restarted{pid} and verified healthy");
                        return 0;
                    }
                    "failed" => {
                        let why = p.detail.unwrap_or_default();
                        eprintln!("server-monitor: the planned restart failed: {why}");
                        return 1;
                    }
                    _ => {}
                }
            }
        }
        if crate::lock::lock_holder(dir) != Some(pid) {
            eprintln!("server-monitor: the monitor (pid {pid}) stopped before answering");
            return 1;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = fs::remove_file(&path);
    eprintln!("server-monitor: no answer from the monitor (pid {pid}) in time");
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_come_from_passwd() {
        let passwd =
            "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/sh\nbroken\n";
        assert_eq!(user_name(passwd, 0).as_deref(), Some("root"));
        assert_eq!(user_name(passwd, 1000).as_deref(), Some("alice"));
        assert_eq!(user_name(passwd, 5), None);
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
