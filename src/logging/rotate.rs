//! The size rotator: appends whole lines to one log file and rotates it by
//! renaming before it would pass a size limit.
//!
//! Contract (SPEC "Files under LOG_DIR"):
//! - `NAME` is the live file; `NAME.1` is the newest backup, `NAME.N` the
//!   oldest, and exactly `backups` of them are kept (the oldest is dropped).
//! - Before a line that would make the file pass `max_bytes`, and when the
//!   file is not empty, it rotates: `NAME.(N-1)` -> `NAME.N` … `NAME` ->
//!   `NAME.1`, then a fresh `NAME`. A file may thus hold exactly `max_bytes`.
//! - A line is never split across files: a single line longer than
//!   `max_bytes` goes whole into a fresh file of its own.
//! - New files are created mode 0640 and missing directories 0750 (both
//!   reduced by the process umask, as usual).
//! - The file is opened with `O_APPEND`, lazily on the first write; a file
//!   left by an earlier run is appended to, its size taken at open.
//! - A file deleted or moved away while open is created again: every
//!   [`RotatingFile::write_lines`] compares the (device, inode) of the path
//!   with the open file's and reopens when they differ or the path is gone.
//! - One `write_all` per run of lines that fits the current file, not one
//!   per line: the log-writer process passes megabytes a second through here.
//!
//! What it does not do: it does not split bytes into lines (callers pass
//! whole lines: the logger formats them, `capture` has its `LineSplitter`),
//! it does not buffer (data is in the kernel when `write_lines` returns), it
//! does not fsync, it does not delete old backups by age (retention is the
//! monitor's), and it assumes no other process appends to the same file
//! (sizes are counted, not re-read). Errors are returned, never printed; after
//! a failure the file is closed, so the next call reopens and tries again.
//! A write that fails part of the way (a full disk) is cut back to the size
//! before it, so that no partial line stays behind for the next line to be
//! glued to. NOTE: should that truncation fail too, a partial line remains.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Mode of new log files (before the umask): owner rw, group r.
pub const FILE_MODE: u32 = 0o640;
/// Mode of new log directories (before the umask): owner rwx, group rx.
pub const DIR_MODE: u32 = 0o750;

/// One size-rotated log file. See the module documentation.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    backups: u32,
    open: Option<OpenFile>,
}

#[derive(Debug)]
struct OpenFile {
    file: File,
    dev: u64,
    ino: u64,
    size: u64,
}

impl RotatingFile {
    /// A rotator for `path` keeping `backups` rotated files. Nothing is
    /// opened or created until the first write (or [`RotatingFile::open`]).
    /// `backups == 0` means the full file is simply started afresh.
    pub fn new(path: PathBuf, max_bytes: u64, backups: u32) -> RotatingFile {
        RotatingFile {
            path,
            max_bytes,
            backups,
            open: None,
        }
    }

    /// The live file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The size limit this rotator was made with.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Opens (creating the file and its directories if needed) now rather
    /// than at the first write, so that a caller can report an unusable
    /// directory at start-up. Reopens when the path no longer names the open
    /// file.
    pub fn open(&mut self) -> io::Result<()> {
        self.ensure_open().map(|_| ())
    }

    /// Appends `lines`, which holds one or more WHOLE lines (each ending in
    /// `'\n'`), rotating before a line that would make the file pass
    /// `max_bytes`. Lines are never split across files. Trailing bytes
    /// without a `'\n'` are treated as one more line (callers should not rely
    /// on it).
    pub fn write_lines(&mut self, lines: &[u8]) -> io::Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let result = self.write_runs(lines);
        if result.is_err() {
            // Close, so that the next call starts from a fresh open (and a
            // fresh size from the file's metadata).
            self.open = None;
        }
        result
    }

    fn write_runs(&mut self, mut rest: &[u8]) -> io::Result<()> {
        while !rest.is_empty() {
            let max_bytes = self.max_bytes;
            let open = self.ensure_open()?;
            let mut take = fitting_prefix(rest, max_bytes.saturating_sub(open.size));
            if take == 0 {
                if open.size > 0 {
                    self.rotate()?;
                    continue;
                }
                // An empty file and a first line longer than the limit: it
                // goes whole into this fresh file, alone.
                take = first_line_len(rest);
            }
            if let Err(e) = open.file.write_all(&rest[..take]) {
                // A full disk fails a write part of the way through a line;
                // cut the file back so that no half line is left for the
                // next one to be glued to.
                let _ = open.file.set_len(open.size);
                return Err(e);
            }
            open.size += take as u64;
            rest = &rest[take..];
        }
        Ok(())
    }

    /// The open file, (re)opened when there is none or when the path is gone
    /// or names another file (deleted, moved away, rotated by someone else).
    fn ensure_open(&mut self) -> io::Result<&mut OpenFile> {
        if let Some(open) = &self.open {
            let same = fs::metadata(&self.path)
                .map(|m| m.dev() == open.dev && m.ino() == open.ino)
                .unwrap_or(false);
            if !same {
                self.open = None;
            }
        }
        match &mut self.open {
            Some(open) => Ok(open),
            none => Ok(none.insert(open_append(&self.path)?)),
        }
    }

    /// Shifts the backups up by one (dropping the oldest) and moves the live
    /// file to `NAME.1`; the next write creates a fresh `NAME`.
    fn rotate(&mut self) -> io::Result<()> {
        self.open = None;
        if self.backups == 0 {
            return ignore_not_found(fs::remove_file(&self.path));
        }
        for n in (1..self.backups).rev() {
            // A missing backup (fewer rotations so far, or deleted by the
            // retention sweep) is no error.
            ignore_not_found(fs::rename(
                backup_path(&self.path, n),
                backup_path(&self.path, n + 1),
            ))?;
        }
        ignore_not_found(fs::rename(&self.path, backup_path(&self.path, 1)))
    }
}

/// The path of backup number `n`: `server.log` and 3 give `server.log.3`.
pub fn backup_path(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Length of the longest prefix of `lines` made of whole lines and at most
/// `room` bytes long (0 when even the first line does not fit).
fn fitting_prefix(lines: &[u8], room: u64) -> usize {
    if lines.len() as u64 <= room {
        return lines.len();
    }
    // room < lines.len() here, so it fits in usize.
    let window = &lines[..room as usize];
    window
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1)
}

/// Length of the first line including its `'\n'` (all of it without one).
fn first_line_len(lines: &[u8]) -> usize {
    lines
        .iter()
        .position(|&b| b == b'\n')
        .map_or(lines.len(), |i| i + 1)
}

fn ignore_not_found(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Opens `path` for appending, creating it (0640) and its directories (0750).
fn open_append(path: &Path) -> io::Result<OpenFile> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir)
            // Say which step failed: "File exists" alone would puzzle.
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot create directory {}: {e}", dir.display()),
                )
            })?;
    }
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(FILE_MODE)
        .open(path)?;
    let meta = file.metadata()?;
    Ok(OpenFile {
        file,
        dev: meta.dev(),
        ino: meta.ino(),
        size: meta.len(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A directory under the system temp dir, unique per test, removed on drop.
    pub(crate) struct TempDir(pub PathBuf);

    impl TempDir {
        pub(crate) fn new(name: &str) -> TempDir {
            static SEQ: AtomicU32 = AtomicU32::new(0);
            let path = std::env::temp_dir().join(format!(
                "server-monitor-test-{}-{}-{}",
                name,
                std::process::id(),
                SEQ.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).unwrap();
            TempDir(path)
        }
        pub(crate) fn join(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn read(path: &Path) -> String {
        fs::read_to_string(path).unwrap_or_default()
    }

    #[test]
    fn backup_path_appends_the_number() {
        let table = [
            ("server.log", 1, "server.log.1"),
            ("server.log", 3, "server.log.3"),
            ("logs/server_error.log", 12, "logs/server_error.log.12"),
            ("/var/log/app", 5, "/var/log/app.5"),
        ];
        for (path, n, want) in table {
            assert_eq!(backup_path(Path::new(path), n), PathBuf::from(want));
        }
    }

    #[test]
    fn fitting_prefix_takes_whole_lines_only() {
        let table: [(&[u8], u64, usize); 8] = [
            (b"ab\ncd\n", 100, 6),
            (b"ab\ncd\n", 6, 6),
            (b"ab\ncd\n", 5, 3),
            (b"ab\ncd\n", 3, 3),
            (b"ab\ncd\n", 2, 0),
            (b"ab\ncd\n", 0, 0),
            (b"\n\n\n", 2, 2),
            (b"abc", 2, 0),
        ];
        for (lines, room, want) in table {
            assert_eq!(fitting_prefix(lines, room), want, "{lines:?} {room}");
        }
    }

    #[test]
    fn appends_to_an_existing_file_and_counts_its_size() {
        let dir = TempDir::new("append");
        let path = dir.join("app.log");
        fs::write(&path, "old1\nold2\n").unwrap(); // 10 bytes
        let mut f = RotatingFile::new(path.clone(), 16, 2);
        f.write_lines(b"new1\n").unwrap(); // 15: fits
        assert_eq!(read(&path), "old1\nold2\nnew1\n");
        f.write_lines(b"new2\n").unwrap(); // 20: rotate first
        assert_eq!(read(&backup_path(&path, 1)), "old1\nold2\nnew1\n");
        assert_eq!(read(&path), "new2\n");
    }

    #[test]
    fn file_may_reach_exactly_max_bytes() {
        let dir = TempDir::new("exact");
        let path = dir.join("a.log");
        let mut f = RotatingFile::new(path.clone(), 8, 1);
        f.write_lines(b"abc\n").unwrap();
        f.write_lines(b"def\n").unwrap();
        assert_eq!(read(&path), "abc\ndef\n");
        assert!(!backup_path(&path, 1).exists());
        f.write_lines(b"g\n").unwrap();
        assert_eq!(read(&backup_path(&path, 1)), "abc\ndef\n");
        assert_eq!(read(&path), "g\n");
    }

    #[test]
    fn rotation_keeps_exactly_backups_files_newest_first() {
        let dir = TempDir::new("keep");
        let path = dir.join("server.log");
        let mut f = RotatingFile::new(path.clone(), 6, 3);
        for i in 0..10 {
            // Each line is 6 bytes: one line per file.
            f.write_lines(format!("line{i}\n").as_bytes()).unwrap();
        }
        assert_eq!(read(&path), "line9\n");
        assert_eq!(read(&backup_path(&path, 1)), "line8\n");
        assert_eq!(read(&backup_path(&path, 2)), "line7\n");
        assert_eq!(read(&backup_path(&path, 3)), "line6\n");
        assert!(!backup_path(&path, 4).exists());
        let mut names: Vec<_> = fs::read_dir(&dir.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["server.log", "server.log.1", "server.log.2", "server.log.3"]
        );
    }

    #[test]
    fn zero_backups_starts_the_file_afresh() {
        let dir = TempDir::new("zero");
        let path = dir.join("a.log");
        let mut f = RotatingFile::new(path.clone(), 4, 0);
        f.write_lines(b"one\n").unwrap();
        f.write_lines(b"two\n").unwrap();
        assert_eq!(read(&path), "two\n");
        assert!(!backup_path(&path, 1).exists());
    }

    #[test]
    fn no_line_is_split_or_lost_across_rotations() {
        let dir = TempDir::new("nolost");
        let path = dir.join("server.log");
        let backups = 400;
        let mut f = RotatingFile::new(path.clone(), 100, backups);
        let mut next = 0u32;
        // Batches of varying numbers of lines of varying lengths.
        for batch in 0..200u32 {
            let mut buf = Vec::new();
            for _ in 0..(batch % 7 + 1) {
                let pad = "x".repeat((next * 7 % 23) as usize);
                buf.extend_from_slice(format!("{next:05} {pad}\n").as_bytes());
                next += 1;
            }
            f.write_lines(&buf).unwrap();
        }
        let mut seen = Vec::new();
        for n in (1..=backups).rev() {
            let text = read(&backup_path(&path, n));
            assert!(text.len() <= 100, "backup {n} has {} bytes", text.len());
            assert!(
                text.is_empty() || text.ends_with('\n'),
                "backup {n} ends mid-line"
            );
            seen.extend(text.lines().map(str::to_owned));
        }
        seen.extend(read(&path).lines().map(str::to_owned));
        assert!(
            backup_path(&path, 2).exists(),
            "the test must rotate many times"
        );
        assert_eq!(seen.len(), next as usize);
        for (i, line) in seen.iter().enumerate() {
            let pad = "x".repeat((i as u32 * 7 % 23) as usize);
            assert_eq!(*line, format!("{i:05} {pad}"));
        }
    }

    #[test]
    fn a_batch_is_split_at_line_boundaries_when_rotating() {
        let dir = TempDir::new("batch");
        let path = dir.join("a.log");
        let mut f = RotatingFile::new(path.clone(), 10, 5);
        f.write_lines(b"aaaa\nbbbb\ncccc\ndddd\ne\n").unwrap();
        assert_eq!(read(&backup_path(&path, 2)), "aaaa\nbbbb\n");
        assert_eq!(read(&backup_path(&path, 1)), "cccc\ndddd\n");
        assert_eq!(read(&path), "e\n");
    }

    #[test]
    fn over_long_line_goes_whole_into_a_fresh_file() {
        let dir = TempDir::new("long");
        let path = dir.join("a.log");
        let mut f = RotatingFile::new(path.clone(), 10, 5);
        let long = format!("{}\n", "L".repeat(25));
        f.write_lines(b"short\n").unwrap();
        f.write_lines(format!("{long}after\n").as_bytes()).unwrap();
        assert_eq!(read(&backup_path(&path, 2)), "short\n");
        assert_eq!(read(&backup_path(&path, 1)), long);
        assert_eq!(read(&path), "after\n");
        // First write into an empty file: no rotation of an empty file.
        let path2 = dir.join("b.log");
        let mut g = RotatingFile::new(path2.clone(), 10, 5);
        g.write_lines(long.as_bytes()).unwrap();
        assert_eq!(read(&path2), long);
        assert!(!backup_path(&path2, 1).exists());
    }

    #[test]
    fn a_deleted_file_is_created_again() {
        let dir = TempDir::new("deleted");
        let path = dir.join("logs").join("a.log");
        let mut f = RotatingFile::new(path.clone(), 1000, 2);
        f.write_lines(b"one\n").unwrap();
        fs::remove_dir_all(dir.join("logs")).unwrap();
        f.write_lines(b"two\n").unwrap();
        assert_eq!(read(&path), "two\n");
        // Moved away: the old file keeps what it had, the path starts afresh.
        fs::rename(&path, dir.join("moved.log")).unwrap();
        f.write_lines(b"three\n").unwrap();
        assert_eq!(read(&dir.join("moved.log")), "two\n");
        assert_eq!(read(&path), "three\n");
    }

    #[test]
    fn a_failed_write_is_retried_on_the_next_call() {
        let dir = TempDir::new("retry");
        // The parent is a regular file: the directory cannot be created.
        fs::write(dir.join("logs"), "").unwrap();
        let path = dir.join("logs").join("a.log");
        let mut f = RotatingFile::new(path.clone(), 1000, 2);
        assert!(f.write_lines(b"lost\n").is_err());
        fs::remove_file(dir.join("logs")).unwrap();
        f.write_lines(b"kept\n").unwrap();
        assert_eq!(read(&path), "kept\n");
    }

    /// The permission bits the umask lets through, measured on a probe file.
    fn umask_allows(dir: &Path) -> u32 {
        let probe = dir.join("probe");
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o777)
            .open(&probe)
            .unwrap();
        let mode = fs::metadata(&probe).unwrap().permissions().mode() & 0o777;
        fs::remove_file(&probe).unwrap();
        mode
    }

    #[test]
    fn new_files_are_0640_and_directories_0750() {
        let dir = TempDir::new("modes");
        let allowed = umask_allows(&dir.0);
        let path = dir.join("logs").join("deep").join("a.log");
        let mut f = RotatingFile::new(path.clone(), 4, 1);
        f.write_lines(b"abc\n").unwrap();
        f.write_lines(b"def\n").unwrap(); // rotated: the fresh file too
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o640 & allowed);
        assert_eq!(mode(&backup_path(&path, 1)), 0o640 & allowed);
        assert_eq!(mode(&dir.join("logs")), 0o750 & allowed);
        assert_eq!(mode(&dir.join("logs").join("deep")), 0o750 & allowed);
    }

    #[test]
    fn open_creates_the_file_before_any_write() {
        let dir = TempDir::new("open");
        let path = dir.join("x").join("a.log");
        let mut f = RotatingFile::new(path.clone(), 100, 1);
        assert!(!path.exists());
        f.open().unwrap();
        assert_eq!(read(&path), "");
        f.write_lines(b"").unwrap();
        assert_eq!(read(&path), "");
    }
}
