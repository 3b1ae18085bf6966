//! The only module with `unsafe` code: thin wrappers over the few Linux calls
//! that std does not offer, and the monitor's signal set-up. Each wrapper
//! returns `io::Result` (or a plain value) and carries a `SAFETY:` note;
//! nothing here makes decisions.
//!
//! What lives here:
//! - processes: pidfds and `poll` (to wait for a process exit and a signal at
//!   once, with a deadline), `kill`/`killpg`, a group's existence,
//!   `waitpid(-1, WNOHANG)` reaping, the child-subreaper flag, `execve` (the
//!   re-exec after a panic);
//! - signals: dispositions (SIGHUP under `nohup`, defaults restored for the
//!   server), the SIGUSR1 handler, and [`Signals`], the set-up the main loop
//!   polls; the globals a handler must reach (`WAKE_FD`, `USR1`) are
//!   declared together below, and are the only signal state outside
//!   [`Signals`] (the shutdown flag is set on ctrlc's thread, so it needs no
//!   global);
//! - descriptors and sockets: close-on-exec of inherited descriptors, pipe
//!   sizes and whether a pipe's writers are gone, `SO_PEERCRED`, abstract
//!   Unix sockets (the lock);
//! - memory and CPUs: dropping clean executable pages, CPU pinning (bench).
//!
//! What does not: anything that can be done with std (pipes, locks, sockets,
//! reading `/proc`), and any policy about when to use these.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use libc::{SIGHUP, SIGINT, SIGKILL, SIGTERM, SIGUSR1};

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A file descriptor that becomes readable when process `pid` exits
/// (Linux ≥ 5.3). Works for any process, not only our children.
pub fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; the
    // fd is owned by nobody else, so wrapping it in OwnedFd is sound.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, valid descriptor that we own from here on.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Waits until one of `fds` is readable or `timeout` passes; returns which
/// ones are readable (all false on timeout). EINTR counts as a timeout with
/// nothing ready, so that the caller looks at its flags again.
pub fn poll_readable(fds: &[BorrowedFd<'_>], timeout: Duration) -> io::Result<Vec<bool>> {
    let fds: Vec<(BorrowedFd<'_>, bool)> = fds.iter().map(|&fd| (fd, false)).collect();
    poll_ready(&fds, timeout)
}

/// [`poll_readable`] with a direction per descriptor: `(fd, true)` waits
/// for it to be writable, `(fd, false)` readable (the status listener's
/// connections with an unsent rest). Returns which are ready
/// (including an error or hang-up).
pub fn poll_ready(fds: &[(BorrowedFd<'_>, bool)], timeout: Duration) -> io::Result<Vec<bool>> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|(fd, write)| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: if *write { libc::POLLOUT } else { libc::POLLIN },
            revents: 0,
        })
        .collect();
    // Round up so that a wait for 0.4 ms does not become a busy 0 ms poll.
    let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int;
    // SAFETY: pfds is a valid, exclusively borrowed array of pollfd of the given length.
    let ret = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
    if ret == -1 {
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::Interrupted {
            return Ok(vec![false; fds.len()]);
        }
        return Err(err);
    }
    Ok(pfds.iter().map(|p| p.revents != 0).collect())
}

/// Sends `sig` to process `pid`.
pub fn kill(pid: u32, sig: libc::c_int) -> io::Result<()> {
    if pid <= 1 || pid > i32::MAX as u32 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "refusing to signal pid <= 1",
        ));
    }
    // SAFETY: kill has no memory-safety preconditions.
    check(unsafe { libc::kill(pid as libc::pid_t, sig) }).map(drop)
}

/// Sends `sig` to every process of process group `pgid`.
pub fn killpg(pgid: u32, sig: libc::c_int) -> io::Result<()> {
    if pgid <= 1 || pgid > i32::MAX as u32 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "refusing to signal group <= 1",
        ));
    }
    // SAFETY: killpg has no memory-safety preconditions.
    check(unsafe { libc::killpg(pgid as libc::pid_t, sig) }).map(drop)
}

/// Asks the kernel to make the pipe of `fd` hold `bytes` (F_SETPIPE_SZ);
/// returns the size it now has. Unprivileged processes get at most
/// /proc/sys/fs/pipe-max-size (1 MiB by default).
pub fn set_pipe_size(fd: BorrowedFd<'_>, bytes: usize) -> io::Result<usize> {
    let bytes = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: fcntl(F_SETPIPE_SZ) takes an fd and an int; a bad fd or size
    // is an error return, never memory access.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, bytes) }).map(|n| n as usize)
}

/// True when no process holds the write end of the pipe whose read end is
/// `fd` any more and nothing is left to read in it (POLLHUP without POLLIN).
pub fn pipe_finished(fd: BorrowedFd<'_>) -> bool {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid, exclusively borrowed pollfd; timeout 0 never blocks.
    let ret = unsafe { libc::poll(&mut pfd, 1, 0) };
    ret == 1 && pfd.revents & libc::POLLHUP != 0 && pfd.revents & libc::POLLIN == 0
}

/// How a reaped child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitStatus {
    Exited(i32),
    Signaled(i32),
}

/// Reaps every child that has ended, without blocking; returns (pid, status)
/// pairs. Children still running are left alone.
pub fn reap_children() -> Vec<(u32, WaitStatus)> {
    let mut out = Vec::new();
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: status is a valid out-pointer; WNOHANG never blocks.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return out; // 0: children remain, none ended; -1: ECHILD or EINTR
        }
        let ws = if libc::WIFEXITED(status) {
            WaitStatus::Exited(libc::WEXITSTATUS(status))
        } else if libc::WIFSIGNALED(status) {
            WaitStatus::Signaled(libc::WTERMSIG(status))
        } else {
            continue; // stopped/continued: not an end
        };
        out.push((pid as u32, ws));
    }
}

/// Makes orphaned descendants (a server's grandchildren whose parent died)
/// children of this process, so that they can be reaped here instead of
/// lingering as zombies under an init that does not reap.
pub fn set_child_subreaper() -> io::Result<()> {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER, 1) takes plain integers.
    check(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) })
        .map(drop)
}

/// True when `sig` is currently ignored (SIG_IGN), e.g. SIGHUP under `nohup`.
pub fn is_signal_ignored(sig: libc::c_int) -> bool {
    // SAFETY: a zeroed sigaction is a valid out-buffer; a null `act` only queries.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, std::ptr::null(), &mut old) == 0 && old.sa_sigaction == libc::SIG_IGN
    }
}

/// Sets `sig` to SIG_IGN (inherited across exec by the server).
pub fn ignore_signal(sig: libc::c_int) -> io::Result<()> {
    // SAFETY: signal with SIG_IGN installs no handler code.
    if unsafe { libc::signal(sig, libc::SIG_IGN) } == libc::SIG_ERR {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The descriptor the SIGUSR1 handler writes a byte to. -1: none.
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);
/// Set by the SIGUSR1 handler; read and cleared by [`take_usr1`].
static USR1: AtomicBool = AtomicBool::new(false);

extern "C" fn on_usr1(_: libc::c_int) {
    USR1.store(true, Ordering::SeqCst);
    let fd = WAKE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let byte = 1u8;
        // SAFETY: write(2) is async-signal-safe; the buffer is a valid local.
        // A full socket buffer (EAGAIN) is fine: a wake-up is already pending.
        unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) };
    }
}

/// Installs a SIGUSR1 handler that sets a flag and writes a byte to `wake`
/// (a non-blocking socket the main loop polls), so that the signal ends the
/// loop's wait at once. `wake` must outlive the process's use of signals.
pub fn install_usr1_handler(wake: BorrowedFd<'_>) -> io::Result<()> {
    WAKE_FD.store(wake.as_raw_fd(), Ordering::SeqCst);
    // SAFETY: the handler only touches atomics and calls write(2), both
    // async-signal-safe; the sigaction struct is fully initialised.
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = on_usr1 as *const () as libc::sighandler_t;
        act.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut act.sa_mask);
        check(libc::sigaction(libc::SIGUSR1, &act, std::ptr::null_mut())).map(drop)
    }
}

/// True once per SIGUSR1 received since the last call.
pub fn take_usr1() -> bool {
    USR1.swap(false, Ordering::SeqCst)
}

/// The signals the monitor answers: SIGINT/SIGTERM (and SIGHUP unless it was
/// ignored at start) set the shutdown flag; those and SIGUSR1 write a byte to
/// a socket the loop polls, so that a signal ends its wait at once.
pub struct Signals {
    shutdown: Arc<AtomicBool>,
    wake_rx: UnixDatagram,
    _wake_tx: UnixDatagram,
}

impl Signals {
    pub fn install() -> io::Result<Signals> {
        let (wake_tx, wake_rx) = UnixDatagram::pair()?;
        wake_tx.set_nonblocking(true)?;
        wake_rx.set_nonblocking(true)?;
        let shutdown = Arc::new(AtomicBool::new(false));
        // NOTE: ctrlc's `termination` feature takes SIGHUP over too, which
        // would undo `nohup`: remember whether it was ignored and put it back.
        let hup_ignored = is_signal_ignored(SIGHUP);
        let flag = shutdown.clone();
        let tx = wake_tx.try_clone()?;
        ctrlc::set_handler(move || {
            flag.store(true, Ordering::SeqCst);
            let _ = tx.send(&[1]);
        })
        .map_err(io::Error::other)?;
        if hup_ignored {
            ignore_signal(SIGHUP)?;
        }
        install_usr1_handler(wake_tx.as_fd())?;
        Ok(Signals {
            shutdown,
            wake_rx,
            _wake_tx: wake_tx,
        })
    }

    /// The shutdown flag, for waits elsewhere that must give up on it.
    pub fn shutdown_flag(&self) -> &Arc<AtomicBool> {
        &self.shutdown
    }

    pub fn shutdown_requested(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }

    /// True once per SIGUSR1 received since the last call.
    pub fn take_usr1(&self) -> bool {
        take_usr1()
    }

    /// The descriptor that becomes readable when a signal came.
    pub fn wake_fd(&self) -> BorrowedFd<'_> {
        self.wake_rx.as_fd()
    }

    /// Empties the wake-up socket after a wait.
    pub fn drain(&self) {
        let mut buf = [0u8; 64];
        while self.wake_rx.recv(&mut buf).is_ok() {}
    }
}

/// Marks every descriptor from 3 up close-on-exec: what our own parent left
/// open (a shell's redirection, socket activation's LISTEN_FDS) must not reach
/// the server or the log writers. Descriptors this process opens itself are
/// close-on-exec already (std does so), and those meant for a child are
/// dup'ed onto its 0, 1 and 2. `close_range` (Linux 5.11); before that, one
/// `fcntl` per entry of /proc/self/fd.
pub fn cloexec_inherited_fds() {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets a flag on
    // descriptors; no memory is passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if ret == 0 {
        return;
    }
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<RawFd> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd >= 3)
        .collect();
    for fd in fds {
        // SAFETY: F_GETFD/F_SETFD on a descriptor number only read and set its
        // flags; a number that was closed meanwhile gives EBADF, ignored.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
}

/// The pid and uid of the process at the other end of a Unix socket
/// (`SO_PEERCRED`: for a listener, the one that called `listen`).
pub fn peer_credentials(sock: BorrowedFd<'_>) -> io::Result<(u32, u32)> {
    // SAFETY: a zeroed ucred is a valid out-buffer of the length given.
    unsafe {
        let mut cred: libc::ucred = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        check(libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        ))?;
        Ok((cred.pid as u32, cred.uid))
    }
}

/// A non-blocking Unix stream socket connected to the abstract address
/// `name` (without its leading NUL): it never waits on a listener whose
/// backlog is full (EAGAIN then).
pub fn connect_abstract(name: &[u8]) -> io::Result<OwnedFd> {
    // SAFETY: socket takes integers; the fd it returns is ours alone.
    let fd = check(unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    })?;
    // SAFETY: fd is a fresh descriptor owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: a zeroed sockaddr_un is valid; the name is copied within
    // sun_path's bounds (checked), and the length passed covers what was set.
    unsafe {
        let mut addr: libc::sockaddr_un = std::mem::zeroed();
        if name.len() + 1 > addr.sun_path.len() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "name too long"));
        }
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (i, &b) in name.iter().enumerate() {
            addr.sun_path[i + 1] = b as libc::c_char;
        }
        let len = std::mem::size_of::<libc::sa_family_t>() + 1 + name.len();
        check(libc::connect(
            sock.as_raw_fd(),
            (&addr as *const libc::sockaddr_un).cast(),
            len as libc::socklen_t,
        ))?;
    }
    Ok(sock)
}

/// This process's effective uid.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid cannot fail and takes nothing.
    unsafe { libc::geteuid() }
}

/// Whether process group `pgid` has any member at all, zombies included
/// (`kill(-pgid, 0)`; EPERM means it exists but is not ours).
pub fn group_exists(pgid: u32) -> bool {
    if pgid <= 1 || pgid > i32::MAX as u32 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks for existence and permission.
    let ret = unsafe { libc::kill(-(pgid as libc::pid_t), 0) };
    ret == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Resets `sig` to its default action and unblocks it in this thread.
/// Returns what had to be repaired (`ignored`, `blocked`), so that a test
/// server can tell that its parent leaked a disposition.
pub fn restore_default_signal(sig: libc::c_int) -> Vec<&'static str> {
    let mut repaired = Vec::new();
    if is_signal_ignored(sig) {
        repaired.push("ignored");
    }
    // SAFETY: SIG_DFL installs no handler; the sigsets are initialised
    // locals, and pthread_sigmask only reads and writes them.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        if libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, &mut old) == 0
            && libc::sigismember(&old, sig) == 1
        {
            repaired.push("blocked");
        }
    }
    repaired
}

/// Sends `sig`, with its default action, to this very process.
pub fn raise_default(sig: libc::c_int) {
    restore_default_signal(sig);
    // SAFETY: raise has no memory-safety preconditions.
    unsafe { libc::raise(sig) };
}

/// Drops this process's page-table entries for the clean, read-only file
/// mappings of its own executable (code and constants), so that pages used
/// only at start-up stop counting in its resident set; pages still in use
/// fault back in from the page cache on their next touch. A mapping with any
/// anonymous (copied-on-write) page, such as RELRO written by the loader, is
/// left alone: dropping it would lose those writes. Returns the bytes advised.
pub fn drop_executable_pages() -> usize {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return 0;
    };
    let Ok(exe) = std::fs::read_link("/proc/self/exe") else {
        return 0;
    };
    let exe = exe.to_string_lossy().into_owned();
    // The mapping being read, while it may still be dropped.
    let mut current: Option<(usize, usize)> = None;
    let mut candidates = Vec::new();
    for line in smaps.lines() {
        let mut f = line.split_whitespace();
        let first = f.next().unwrap_or("");
        if let Some((start, end)) = first.split_once('-').filter(|_| !first.ends_with(':')) {
            let perms = f.next().unwrap_or("");
            let path = f.nth(3).unwrap_or("");
            current = match (
                usize::from_str_radix(start, 16),
                usize::from_str_radix(end, 16),
            ) {
                (Ok(s), Ok(e)) if path == exe && !perms.contains('w') => Some((s, e)),
                _ => None,
            };
        } else if let Some((start, end)) = current {
            let kb = f.next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            match first {
                // Copied on write (RELRO, written by the loader): not ours to drop.
                "Anonymous:" if kb > 0 => current = None,
                "VmFlags:" => {
                    candidates.push((start, end));
                    current = None;
                }
                _ => {}
            }
        }
    }
    let mut advised = 0;
    for (start, end) in candidates {
        // SAFETY: the range is a whole mapping of this process: read-only,
        // file-backed and without a copied-on-write page, so MADV_DONTNEED only
        // drops page-table entries; the next access reads the same bytes
        // back from the page cache.
        if unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) }
            == 0
        {
            advised += end - start;
        }
    }
    advised
}

/// The CPU the calling thread runs on now, if the kernel says.
pub fn current_cpu() -> Option<usize> {
    // SAFETY: sched_getcpu takes nothing and returns a number or -1.
    let cpu = unsafe { libc::sched_getcpu() };
    usize::try_from(cpu).ok()
}

/// Lets the calling thread (and the threads it starts later) run on `cpu`
/// only.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    // SAFETY: the cpu_set_t is a zeroed local filled with CPU_SET, whose
    // index is checked against the set's capacity; pid 0 is this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if cpu >= 8 * std::mem::size_of::<libc::cpu_set_t>() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cpu out of range",
            ));
        }
        libc::CPU_SET(cpu, &mut set);
        check(libc::sched_setaffinity(
            0,
            std::mem::size_of::<libc::cpu_set_t>(),
            &set,
        ))
        .map(drop)
    }
}

/// Replaces this process's program (same pid); returns only on failure.
pub fn execve(
    path: &std::ffi::CStr,
    argv: &[std::ffi::CString],
    envp: &[std::ffi::CString],
) -> io::Error {
    let mut a: Vec<*const libc::c_char> = argv.iter().map(|s| s.as_ptr()).collect();
    a.push(std::ptr::null());
    let mut e: Vec<*const libc::c_char> = envp.iter().map(|s| s.as_ptr()).collect();
    e.push(std::ptr::null());
    // SAFETY: every pointer is a NUL-terminated string owned by `argv`/`envp`,
    // which outlive the call; both arrays end with a null pointer.
    unsafe { libc::execve(path.as_ptr(), a.as_ptr(), e.as_ptr()) };
    io::Error::last_os_error()
}

/// Clock ticks per second of the CPU times in /proc/PID/stat (USER_HZ;
/// 100 where sysconf cannot say).
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf reads a constant of the system; no pointers.
    let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(n).ok().filter(|&n| n > 0).unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropping_executable_pages_keeps_the_process_working() {
        let advised = drop_executable_pages();
        assert!(advised > 0, "the test binary code is a clean mapping");
        // Code and constants come back from the page cache on use.
        let text = format!("{:?}", (1..5).map(|i| i * 2).collect::<Vec<_>>());
        assert_eq!(text, "[2, 4, 6, 8]");
        assert!(!is_signal_ignored(SIGTERM));
    }

    #[test]
    fn a_pipe_can_be_made_to_hold_1_mib() {
        let (reader, _writer) = io::pipe().unwrap();
        use std::os::fd::AsFd;
        let fd: OwnedFd = reader.into();
        assert_eq!(set_pipe_size(fd.as_fd(), 1 << 20).unwrap(), 1 << 20);
    }

    #[test]
    fn signalling_pid_1_or_group_1_is_refused() {
        assert!(kill(1, 0).is_err());
        assert!(killpg(1, 0).is_err());
        assert!(!group_exists(1));
    }
}
