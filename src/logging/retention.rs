//! Retention: delete rotated log files (`NAME.log.N`) older than a given age,
//! for a program that wants its backups to go by age as well as by count.
//!
//! The logger never calls this itself: when, and how old, is the program's
//! choice (the monitor sweeps once an hour by LOG_RETENTION_DAYS). The live
//! files (`NAME.log`) and every file that is not a numbered backup of a
//! `.log` file are never touched; subdirectories are not entered.

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// True for a rotated backup name such as `server.log.3` or `app.log.1`.
pub fn is_rotated_log(name: &str) -> bool {
    match name.rsplit_once('.') {
        Some((stem, n)) => {
            !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && stem.ends_with(".log")
        }
        None => false,
    }
}

/// Removes the rotated logs in `dir` whose modification time is more than
/// `max_age` ago; returns how many.
pub fn sweep_rotated_logs(dir: &Path, max_age: Duration) -> usize {
    remove_files_older_than(dir, max_age, is_rotated_log)
}

/// Removes the regular files directly in `dir` whose name is `wanted` and
/// whose modification time is more than `max_age` ago; returns how many. A
/// missing `dir` is none; a file that cannot be removed is left (and not
/// counted). Symbolic links are never followed nor removed.
pub fn remove_files_older_than(
    dir: &Path,
    max_age: Duration,
    wanted: impl Fn(&str) -> bool,
) -> usize {
    let Some(cutoff) = SystemTime::now().checked_sub(max_age) else {
        return 0;
    };
    let old = |path: &Path| {
        fs::symlink_metadata(path)
            .ok()
            .filter(|m| m.is_file())
            .and_then(|m| m.modified().ok())
            .is_some_and(|t| t < cutoff)
    };
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let path = e.path();
        let keep = !e.file_name().to_str().is_some_and(&wanted) || !old(&path);
        if !keep && fs::remove_file(&path).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_numbered_backups_of_log_files_are_rotated_logs() {
        for (name, want) in [
            ("server.log.1", true),
            ("server_monitor.log.12", true),
            ("server.log", false),
            ("server.log.", false),
            ("server.log.1a", false),
            ("server.pid", false),
            ("notes.txt.1", false),
            ("server_monitor.state.json", false),
        ] {
            assert_eq!(is_rotated_log(name), want, "{name}");
        }
    }

    #[test]
    fn sweep_removes_only_old_backups() {
        let dir = std::env::temp_dir().join(format!("sm-retention-{}", std::process::id()));
        fs::create_dir_all(dir.join("alerts")).unwrap();
        for f in ["server.log", "server.log.1", "notes.txt", "alerts/a.log.1"] {
            fs::write(dir.join(f), "x").unwrap();
        }
        assert_eq!(sweep_rotated_logs(&dir, Duration::from_secs(3600)), 0);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(sweep_rotated_logs(&dir, Duration::from_millis(1)), 1);
        assert!(dir.join("server.log").exists());
        assert!(!dir.join("server.log.1").exists());
        assert!(dir.join("notes.txt").exists());
        assert!(
            dir.join("alerts/a.log.1").exists(),
            "subdirectories are not entered"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
