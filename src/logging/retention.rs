//! Retention: delete rotated log files (`NAME.log.N`) and alert files
//! (`alerts/*.eml`) older than a given age. The live files (`NAME.log`), the
//! outbox and everything else are never touched.

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

/// Removes rotated logs in `dir` and `.eml` files in `dir/alerts` whose
/// modification time is more than `max_age` ago; returns how many.
pub fn sweep_old_files(dir: &Path, max_age: Duration) -> usize {
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
    let mut removed = 0;
    let mut sweep = |dir: &Path, wanted: &dyn Fn(&str) -> bool| {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            let keep = !e.file_name().to_str().is_some_and(wanted) || !old(&path);
            if !keep && fs::remove_file(&path).is_ok() {
                removed += 1;
            }
        }
    };
    sweep(dir, &is_rotated_log);
    sweep(&dir.join("alerts"), &|n: &str| n.ends_with(".eml"));
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
    fn sweep_removes_only_old_backups_and_alerts() {
        let dir = std::env::temp_dir().join(format!("sm-retention-{}", std::process::id()));
        fs::create_dir_all(dir.join("alerts")).unwrap();
        for f in ["server.log", "server.log.1", "alerts/a.eml", "alerts/b.txt"] {
            fs::write(dir.join(f), "x").unwrap();
        }
        assert_eq!(sweep_old_files(&dir, Duration::from_secs(3600)), 0);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(sweep_old_files(&dir, Duration::from_millis(1)), 2);
        assert!(dir.join("server.log").exists());
        assert!(!dir.join("server.log.1").exists());
        assert!(!dir.join("alerts/a.eml").exists());
        assert!(dir.join("alerts/b.txt").exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}
