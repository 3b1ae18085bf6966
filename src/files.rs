//! The file conventions of everything under `LOG_DIR`: directories 0750,
//! files 0640, and whole-file writes that a reader never sees half done.
//!
//! Not here: the size-rotated logs (`logging::rotate`, which appends).

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Creates `dir` and its missing parents, mode 0750.
pub fn create_dir_0750(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(dir)
}

/// Writes `data` to `path` through `path.tmp` and a rename (mode 0640).
/// `durable` adds an fsync of the file before the rename and of the
/// directory after it, so the new content survives a power cut, not just a
/// crash.
pub fn write_atomic(path: &Path, data: &[u8], durable: bool) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o640)
        .open(&tmp)?;
    f.write_all(data)?;
    if durable {
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if durable {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::File::open(dir)?.sync_all()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn atomic_writes_replace_whole_files_with_mode_0640() {
        let dir = std::env::temp_dir().join(format!("sm-files-{}/a/b", std::process::id()));
        create_dir_0750(&dir).unwrap();
        let path = dir.join("state.json");
        write_atomic(&path, b"one", true).unwrap();
        write_atomic(&path, b"two", false).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert!(!dir.join("state.json.tmp").exists());
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & !0o640, 0, "{mode:o}");
        fs::remove_dir_all(dir.parent().unwrap().parent().unwrap()).unwrap();
    }
}
