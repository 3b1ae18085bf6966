//! One monitor per `LOG_DIR`.
//!
//! Two locks, held for the monitor's life:
//! - `LOG_DIR/server_monitor.lock`, an exclusive `flock`; the file holds the
//!   monitor's pid, which `server-monitor restart` and `status` read;
//! - an abstract Unix socket named after the canonical `LOG_DIR` path, which
//!   lives in no directory: removing `LOG_DIR` (or the lock file) while the
//!   monitor runs cannot let a second monitor in. [`Lock::refresh`] puts the
//!   lock file back when it went missing.
//!
//! The flock decides; it is taken first, and its pid written, before the
//! socket is bound. The name is predictable, so any local user can bind it:
//! a holder counts as another monitor only when it is a listening stream
//! socket whose owner (`SO_PEERCRED`) has our uid and runs this program;
//! anything else is reported ([`Lock::squatter`]) and the flock alone guards.
//!
//! Not here: what the monitor does once it holds the locks.

use std::fs;
use std::io::{self, Read, Seek, Write};
use std::os::fd::AsFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::net::{SocketAddr, UnixListener};
use std::path::{Path, PathBuf};

pub const LOCK_FILE: &str = "server_monitor.lock";

/// Why the locks could not be taken.
#[derive(Debug)]
pub enum LockError {
    /// Another monitor holds them; its pid when the lock file tells.
    Held { pid: Option<u32> },
    Io {
        what: &'static str,
        path: PathBuf,
        err: io::Error,
    },
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::Held { pid: Some(pid) } => write!(f, "held by pid {pid}"),
            LockError::Held { pid: None } => f.write_str("held by another monitor"),
            LockError::Io { what, path, err } => {
                write!(f, "cannot {what} {}: {err}", path.display())
            }
        }
    }
}

pub struct Lock {
    dir: PathBuf,
    file: fs::File,
    _name: Option<UnixListener>,
    squatter: Option<String>,
}

/// Pure: the abstract socket name for a canonical directory path. Linux
/// allows 107 bytes; a longer path is replaced by its FNV-1a hash.
pub fn socket_name(canonical: &Path) -> Vec<u8> {
    let path = canonical.as_os_str().as_encoded_bytes();
    let mut name = b"server-monitor:".to_vec();
    if name.len() + path.len() <= 100 {
        name.extend_from_slice(path);
    } else {
        let hash = path.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        name.extend_from_slice(format!("#{hash:016x}").as_bytes());
    }
    name
}

impl Lock {
    /// Takes both locks for `dir` (which must exist).
    pub fn acquire(dir: &Path) -> Result<Lock, LockError> {
        let io = |what, path: &Path| {
            let path = path.to_path_buf();
            move |err| LockError::Io { what, path, err }
        };
        let canonical = fs::canonicalize(dir).map_err(io("resolve", dir))?;
        let addr = SocketAddr::from_abstract_name(socket_name(&canonical))
            .map_err(io("name a lock socket for", dir))?;
        let file = lock_file(dir)?;
        let (name, squatter) = match UnixListener::bind_addr(&addr) {
            Ok(sock) => (Some(sock), None),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                match name_holder(&socket_name(&canonical)) {
                    // A monitor whose lock file was removed (with LOG_DIR).
                    Ok(pid) => {
                        let _ = file.set_len(0);
                        return Err(LockError::Held { pid: Some(pid) });
                    }
                    Err(who) => (None, Some(who)),
                }
            }
            Err(e) => return Err(io("bind a lock socket for", dir)(e)),
        };
        Ok(Lock {
            dir: dir.to_path_buf(),
            file,
            _name: name,
            squatter,
        })
    }

    /// Who holds the abstract socket name instead of us, when it is not a
    /// monitor (then only the flock guards this LOG_DIR).
    pub fn squatter(&self) -> Option<&str> {
        self.squatter.as_deref()
    }

    /// Puts the lock file back if it was removed or replaced (with `LOG_DIR`,
    /// say); true when it had to. Two `stat`s when all is well.
    pub fn refresh(&mut self) -> Result<bool, LockError> {
        let path = self.dir.join(LOCK_FILE);
        let ours = self.file.metadata().ok().map(|m| (m.dev(), m.ino()));
        let there = fs::metadata(&path).ok().map(|m| (m.dev(), m.ino()));
        if ours.is_some() && ours == there {
            return Ok(false);
        }
        crate::files::create_dir_0750(&self.dir).map_err(|err| LockError::Io {
            what: "create",
            path: self.dir.clone(),
            err,
        })?;
        self.file = lock_file(&self.dir)?;
        Ok(true)
    }
}

/// Opens, flocks and fills the lock file.
fn lock_file(dir: &Path) -> Result<fs::File, LockError> {
    let path = dir.join(LOCK_FILE);
    let io = |what| {
        let path = path.clone();
        move |err| LockError::Io { what, path, err }
    };
    let mut file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o640)
        .open(&path)
        .map_err(io("open"))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            return Err(LockError::Held {
                pid: lock_holder(dir),
            })
        }
        Err(fs::TryLockError::Error(e)) => return Err(io("lock")(e)),
    }
    file.set_len(0).map_err(io("write"))?;
    file.rewind().map_err(io("write"))?;
    writeln!(file, "{}", std::process::id()).map_err(io("write"))?;
    Ok(file)
}

/// The pid of the monitor holding the abstract name: Ok when it is a
/// listening stream socket of a process of our uid running this program;
/// else a description of the holder.
fn name_holder(name: &[u8]) -> Result<u32, String> {
    let sock = crate::sys::connect_abstract(name)
        .map_err(|e| format!("not a monitor's socket (connect: {e})"))?;
    let (pid, uid) = crate::sys::peer_credentials(sock.as_fd())
        .map_err(|e| format!("unknown holder (SO_PEERCRED: {e})"))?;
    let comm = |pid: &str| fs::read_to_string(format!("/proc/{pid}/comm")).ok();
    if uid == crate::sys::effective_uid()
        && comm(&pid.to_string()).is_some()
        && comm(&pid.to_string()) == comm("self")
    {
        Ok(pid)
    } else {
        Err(format!(
            "pid {pid}, uid {uid}, is not a server-monitor of ours"
        ))
    }
}

/// The pid written in the lock file, if a monitor holds the lock.
///
/// NOTE: a monitor that has just taken the lock writes its pid a moment
/// later: an empty file, or one naming a process that is gone (an old
/// monitor's), is read again for up to a second.
pub fn lock_holder(dir: &Path) -> Option<u32> {
    let mut file = fs::File::open(dir.join(LOCK_FILE)).ok()?;
    if file.try_lock_shared().is_ok() {
        return None; // nobody holds it
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    loop {
        let mut text = String::new();
        file.rewind().ok()?;
        file.read_to_string(&mut text).ok()?;
        let pid = text.trim().parse::<u32>().ok();
        if pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists()) {
            return pid;
        }
        if std::time::Instant::now() >= deadline || file.try_lock_shared().is_ok() {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_names_fit_and_long_paths_are_hashed() {
        assert_eq!(
            socket_name(Path::new("/var/log/server-monitor")),
            b"server-monitor:/var/log/server-monitor".to_vec()
        );
        let long = PathBuf::from(format!("/{}", "x".repeat(200)));
        let name = socket_name(&long);
        assert!(name.len() <= 107, "{}", name.len());
        assert_ne!(
            name,
            socket_name(&PathBuf::from(format!("/{}", "y".repeat(200))))
        );
    }

    #[test]
    fn a_second_lock_on_the_same_dir_is_refused_even_without_the_file() {
        let dir = std::env::temp_dir().join(format!("sm-lock-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let mut first = Lock::acquire(&dir).unwrap();
        assert_eq!(lock_holder(&dir), Some(std::process::id()));
        assert!(matches!(Lock::acquire(&dir), Err(LockError::Held { .. })));
        fs::remove_dir_all(&dir).unwrap();
        fs::create_dir_all(&dir).unwrap();
        assert!(matches!(Lock::acquire(&dir), Err(LockError::Held { .. })));
        assert!(first.refresh().unwrap(), "the file is put back");
        assert_eq!(lock_holder(&dir), Some(std::process::id()));
        assert!(!first.refresh().unwrap());
        drop(first);
        assert!(Lock::acquire(&dir).is_ok());
        fs::remove_dir_all(&dir).unwrap();
    }
}
