//! The server process: start it in its own process group with its output
//! going through two log-writer processes, notice its exit at once (a pidfd),
//! stop it (SIGTERM to the group, `STOP_TIMEOUT`, SIGKILL to the group, reap),
//! and adopt one that an earlier monitor started (pid, start time and command
//! line recorded in `server.pid` must all match).
//!
//! Never by name or pattern: only the pid we spawned or verified, and its
//! process group. A pid whose start time differs from the pid file's belongs
//! to another process now; it is neither adopted nor signalled.
//!
//! A server this monitor did not start is stopped through STOP_COMMAND
//! ([`stop_foreign`]), and known gone once its URL refuses connections.
//!
//! Not here: when to start or stop (that is `policy`), logging of decisions.

use std::fmt;
use std::fs;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::sys::{self, WaitStatus};

pub const PID_FILE: &str = "server.pid";
pub const STDOUT_LOG: &str = "server.log";
pub const STDERR_LOG: &str = "server_error.log";
/// The size asked for each capture pipe (F_SETPIPE_SZ).
pub const PIPE_BYTES: usize = 1 << 20;

/// Variables meant for the monitor alone: systemd's notify socket and
/// watchdog must not be inherited by the server (it would speak for us), nor
/// socket activation's (its descriptors are not passed on).
pub const CHILD_ENV_REMOVE: &[&str] = &[
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    crate::reexec::REEXEC_ENV,
];

/// The monitor's secrets: settings the server has no business reading
/// (`/proc/<server>/environ` would show them to whoever can read it). The
/// one list: a new secret setting goes here.
pub const SECRET_ENV: &[&str] = &[
    "SMTP_PASSWORD",
    "SMTP_USERNAME",
    "ALERT_WEBHOOK_URL",
    "HEARTBEAT_URL",
    "STATUS_TOKEN",
];

/// Removes what the server and the log writers must not inherit.
pub fn scrub_env(cmd: &mut Command) {
    for var in CHILD_ENV_REMOVE.iter().chain(SECRET_ENV) {
        cmd.env_remove(var);
    }
}

/// What `server.pid` holds: enough to recognise the same process later.
#[derive(Clone, Debug, PartialEq)]
pub struct PidFile {
    pub pid: u32,
    /// Field 22 of /proc/PID/stat: clock ticks after boot.
    pub start_time: u64,
    pub command: Vec<String>,
}

impl PidFile {
    /// The pid alone on the first line (so `kill $(head -1 server.pid)`
    /// works), then `start_time=` and `command=` (a JSON array).
    pub fn format(&self) -> String {
        let command = serde_json::to_string(&self.command).unwrap_or_else(|_| "[]".into());
        format!(
            "{}\nstart_time={}\ncommand={}\n",
            self.pid, self.start_time, command
        )
    }

    pub fn parse(text: &str) -> Result<PidFile, String> {
        let mut lines = text.lines();
        let pid = lines
            .next()
            .and_then(|l| l.trim().parse::<u32>().ok())
            .filter(|&p| p > 1)
            .ok_or("the first line is not a pid")?;
        let (mut start_time, mut command) = (None, None);
        for line in lines {
            if let Some(v) = line.strip_prefix("start_time=") {
                start_time = v.trim().parse::<u64>().ok();
            } else if let Some(v) = line.strip_prefix("command=") {
                command = serde_json::from_str::<Vec<String>>(v).ok();
            }
        }
        Ok(PidFile {
            pid,
            start_time: start_time.ok_or("no valid start_time= line")?,
            command: command.ok_or("no valid command= line")?,
        })
    }

    pub fn read(dir: &Path) -> Option<Result<PidFile, String>> {
        let text = fs::read_to_string(dir.join(PID_FILE)).ok()?;
        Some(PidFile::parse(&text))
    }

    /// Written to a temporary file and renamed, so a reader never sees half.
    pub fn write(&self, dir: &Path) -> io::Result<()> {
        crate::files::write_atomic(&dir.join(PID_FILE), self.format().as_bytes(), false)
    }

    pub fn remove(dir: &Path) {
        let _ = fs::remove_file(dir.join(PID_FILE));
    }
}

/// The parts of /proc/PID/stat we use.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProcStat {
    pub state: char,
    pub pgrp: u32,
    pub start_time: u64,
}

impl ProcStat {
    /// Parses the text of /proc/PID/stat; the command name in parentheses may
    /// itself hold spaces and parentheses, so fields are counted after the last `)`.
    pub fn parse(text: &str) -> Option<ProcStat> {
        let rest = &text[text.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // fields[0] is field 3 (state); pgrp is field 5, starttime field 22.
        Some(ProcStat {
            state: fields.first()?.chars().next()?,
            pgrp: fields.get(2)?.parse().ok()?,
            start_time: fields.get(19)?.parse().ok()?,
        })
    }

    pub fn read(pid: u32) -> Option<ProcStat> {
        ProcStat::parse(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
    }

    /// A zombie has ended; only its parent's wait is missing.
    pub fn is_alive(&self) -> bool {
        self.state != 'Z' && self.state != 'X'
    }
}

pub fn proc_cmdline(pid: u32) -> Option<Vec<String>> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect(),
    )
}

/// The command line of a process that has just been spawned.
///
/// NOTE: spawn returns once the exec has switched to the new memory, but the
/// kernel fills in the new argument area a moment later, and until then
/// /proc/PID/cmdline reads empty. Recording that empty line would make the
/// next monitor refuse to adopt its own server, so wait (briefly) for it.
/// The words can differ from the command given (a `#!` script shows its
/// interpreter), so they are read, not assumed. None if it stays empty (the
/// process already ended) or is gone.
fn cmdline_after_exec(pid: u32) -> Option<Vec<String>> {
    let deadline = Instant::now() + Duration::from_millis(100);
    loop {
        let words = proc_cmdline(pid)?;
        if !words.is_empty() {
            return Some(words);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Whether any live (non-zombie) process is left in process group `pgid`.
pub fn group_alive(pgid: u32) -> bool {
    if !sys::group_exists(pgid) {
        return false;
    }
    // Members exist, but zombies count as gone: look at each in /proc.
    let Ok(dir) = fs::read_dir("/proc") else {
        return true;
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(ProcStat::read)
        .any(|s| s.pgrp == pgid && s.is_alive())
}

/// The socket inodes of TCP sockets (IPv4 and IPv6) listening on `port`.
fn listening_inodes(port: u16) -> Vec<u64> {
    let mut out = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(st), Some(inode)) = (f.get(1), f.get(3), f.get(9)) else {
                continue;
            };
            let listens = *st == "0A"
                && local
                    .rsplit_once(':')
                    .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
                    == Some(port);
            if let (true, Ok(inode)) = (listens, inode.parse()) {
                out.push(inode);
            }
        }
    }
    out
}

/// The port of a health URL whose host is this machine (loopback or
/// `localhost`); None for another host.
pub fn local_port(url: &str) -> Option<u16> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']')?;
            (host, after.strip_prefix(':'))
        }
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    let host = host.to_ascii_lowercase();
    let local = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified());
    if !local {
        return None;
    }
    match port {
        Some(p) => p.parse().ok(),
        None if scheme.eq_ignore_ascii_case("https") => Some(443),
        None => Some(80),
    }
}

/// Whether a live process of group `pgid` holds a socket listening on TCP
/// `port`: the proof that the server answering on that port is ours and not
/// an old one we could not stop. None when no socket listens there at all
/// (the answer comes through something else: a proxy, a container).
pub fn group_listens_on(pgid: u32, port: u16) -> Option<bool> {
    let inodes = listening_inodes(port);
    if inodes.is_empty() {
        return None;
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    let dir = fs::read_dir("/proc").ok()?;
    let members = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| ProcStat::read(pid).is_some_and(|s| s.pgrp == pgid && s.is_alive()));
    for pid in members {
        let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = fs::read_link(fd.path()) {
                if wanted.iter().any(|w| target.as_os_str() == w.as_str()) {
                    return Some(true);
                }
            }
        }
    }
    Some(false)
}

/// How the server ended.
#[derive(Clone, Debug, PartialEq)]
pub enum ExitCause {
    Status(WaitStatus),
    /// An adopted server is not our child: its status cannot be read.
    Unknown,
}

impl fmt::Display for ExitCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitCause::Status(WaitStatus::Exited(code)) => {
                write!(f, "process exited with status {code}")
            }
            ExitCause::Status(WaitStatus::Signaled(sig)) => match signal_name(*sig) {
                Some(name) => write!(f, "killed by signal {sig} ({name})"),
                None => write!(f, "killed by signal {sig}"),
            },
            ExitCause::Unknown => f.write_str("process exited (status unknown: adopted process)"),
        }
    }
}

fn signal_name(sig: i32) -> Option<&'static str> {
    Some(match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        _ => return None,
    })
}

/// A running server, started by this monitor or adopted from an earlier one.
#[derive(Debug)]
pub struct Server {
    pub pid: u32,
    pub pgid: u32,
    /// True when this process is its parent (it can be reaped, its status read).
    pub is_child: bool,
    pidfd: OwnedFd,
    start_time: u64,
    /// The command line `server.pid` holds now.
    recorded: Vec<String>,
    /// Set once the exit is seen.
    exited: Option<ExitCause>,
    /// The log writers of a server we started (none for an adopted one).
    writers: Vec<LogWriter>,
}

/// One log-writer process and a copy of the read end of its pipe, so that a
/// writer that dies (OOM kill, a stray signal) can be replaced on the same
/// pipe. The copy is harmless while the monitor is down: it dies with the
/// monitor, the writer goes on.
#[derive(Debug)]
struct LogWriter {
    path: std::path::PathBuf,
    max_bytes: u64,
    backups: u32,
    read: OwnedFd,
    pid: u32,
    /// Readable once the writer has ended; None once that was seen.
    pidfd: Option<OwnedFd>,
    replaced: Option<Instant>,
}

/// A log writer that ended while its pipe was still in use, and what
/// replacing it gave.
#[derive(Debug)]
pub struct WriterReplaced {
    pub path: std::path::PathBuf,
    pub old_pid: u32,
    pub new_pid: Result<u32, String>,
}

impl LogWriter {
    fn spawn(&mut self) -> io::Result<u32> {
        let pid = spawn_writer(
            &self.path,
            self.max_bytes,
            self.backups,
            self.read.try_clone()?,
        )?;
        self.pid = pid;
        self.pidfd = sys::pidfd_open(pid).ok();
        Ok(pid)
    }
}

#[derive(Debug)]
pub struct SpawnError(pub String);

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What is needed to start a server.
pub struct Launch<'a> {
    pub command: &'a [String],
    pub workdir: Option<&'a Path>,
    pub log_dir: &'a Path,
    pub log_max_bytes: u64,
    pub log_backups: u32,
}

/// What became of the pid in `server.pid`.
#[derive(Debug)]
pub enum Adoption {
    Adopted(Server),
    /// The process has ended (or is a zombie).
    Gone,
    /// The pid now belongs to another process (start time or command differs).
    Reused {
        now: String,
    },
}

impl Server {
    /// Starts the server in its own process group, stdout and stderr each
    /// through a log-writer process (this binary, `__capture`), and writes
    /// `server.pid`.
    pub fn spawn(launch: &Launch<'_>) -> Result<Server, SpawnError> {
        let program = launch
            .command
            .first()
            .ok_or_else(|| SpawnError("SERVER_COMMAND is empty".into()))?;
        let (out, out_writer) = capture_pipe(launch, STDOUT_LOG)?;
        let (err, err_writer) = capture_pipe(launch, STDERR_LOG)?;
        let mut cmd = Command::new(program);
        scrub_env(&mut cmd);
        cmd.args(&launch.command[1..])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        if let Some(dir) = launch.workdir {
            cmd.current_dir(dir);
        }
        // The Child handle is dropped: reaping is done by pid (sys::reap_children),
        // which also collects orphaned grandchildren.
        let child = cmd
            .spawn()
            .map_err(|e| SpawnError(format!("cannot start `{program}`: {e}")))?;
        let pid = child.id();
        drop(child);
        let pidfd = sys::pidfd_open(pid)
            .map_err(|e| SpawnError(format!("pidfd_open({pid}) failed: {e}")))?;
        // The start time is set at fork, so /proc has it already.
        let stat = ProcStat::read(pid);
        let start_time = stat.map_or(0, |s| s.start_time);
        let record = PidFile {
            pid,
            start_time,
            command: cmdline_after_exec(pid).unwrap_or_else(|| launch.command.to_vec()),
        };
        if let Err(e) = record.write(launch.log_dir) {
            log::error!(pid = pid, error = e.to_string().as_str(); "cannot write {PID_FILE}");
        }
        Ok(Server {
            pid,
            pgid: pid,
            is_child: true,
            pidfd,
            start_time,
            recorded: record.command,
            exited: None,
            writers: vec![out_writer, err_writer],
        })
    }

    /// Adopts the process recorded in `server.pid` if it is the same one.
    pub fn adopt(record: &PidFile) -> Adoption {
        let describe = |s: &ProcStat| {
            let cmd = proc_cmdline(record.pid).unwrap_or_default().join(" ");
            format!(
                "start time {} (recorded {}), command `{cmd}` (recorded `{}`)",
                s.start_time,
                record.start_time,
                record.command.join(" ")
            )
        };
        let Some(stat) = ProcStat::read(record.pid).filter(ProcStat::is_alive) else {
            return Adoption::Gone;
        };
        if stat.start_time != record.start_time
            || proc_cmdline(record.pid).as_deref() != Some(&record.command[..])
        {
            return Adoption::Reused {
                now: describe(&stat),
            };
        }
        let Ok(pidfd) = sys::pidfd_open(record.pid) else {
            return Adoption::Gone;
        };
        // Check again with the pidfd held: it now pins this very process.
        match ProcStat::read(record.pid) {
            Some(s) if s.is_alive() && s.start_time == record.start_time => {
                Adoption::Adopted(Server {
                    pid: record.pid,
                    pgid: s.pgrp,
                    is_child: false,
                    pidfd,
                    start_time: record.start_time,
                    recorded: record.command.clone(),
                    exited: None,
                    writers: Vec::new(),
                })
            }
            Some(s) if s.is_alive() => Adoption::Reused { now: describe(&s) },
            _ => Adoption::Gone,
        }
    }

    /// What `server.pid` records for this server, read again from /proc;
    /// `None` once it is gone.
    pub fn record(&self) -> Option<PidFile> {
        let stat = ProcStat::read(self.pid).filter(|s| s.start_time == self.start_time)?;
        Some(PidFile {
            pid: self.pid,
            start_time: stat.start_time,
            command: proc_cmdline(self.pid)?,
        })
    }

    /// Writes `server.pid` again when the server's command line is no longer
    /// the one recorded: a wrapper (`sh -c 'exec …'`, `env`, `nice`, a start
    /// script ending in `exec`) has exec'd the real server, or it renamed
    /// itself. Without this the next monitor would not recognise it. `None`
    /// when nothing changed (or the server is gone).
    pub fn update_record(&mut self, dir: &Path) -> Option<io::Result<()>> {
        let record = self.record().filter(|r| !r.command.is_empty())?;
        if record.command == self.recorded {
            return None;
        }
        let written = record.write(dir);
        if written.is_ok() {
            self.recorded = record.command;
        }
        Some(written)
    }

    /// Whether the server is still running (not ended, not a zombie).
    pub fn is_running(&self) -> bool {
        self.exited.is_none()
            && ProcStat::read(self.pid)
                .is_some_and(|s| s.is_alive() && s.start_time == self.start_time)
    }

    /// Readable when a log writer has ended (for the loop's wait).
    pub fn writer_pidfds(&self) -> Vec<BorrowedFd<'_>> {
        self.writers
            .iter()
            .filter_map(|w| w.pidfd.as_ref().map(AsFd::as_fd))
            .collect()
    }

    /// Replaces every log writer that ended while its pipe is still in use
    /// (a writer that saw the end of its input is done); at most one
    /// replacement a second per stream, so that a writer that cannot run is
    /// not started in a busy loop.
    pub fn replace_dead_writers(&mut self) -> Vec<WriterReplaced> {
        let mut out = Vec::new();
        for w in &mut self.writers {
            if let Some(fd) = &w.pidfd {
                if sys::poll_readable(&[fd.as_fd()], Duration::ZERO).is_ok_and(|r| r[0]) {
                    w.pidfd = None;
                } else {
                    continue;
                }
            }
            if sys::pipe_finished(w.read.as_fd()) {
                continue;
            }
            if w.replaced
                .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
            {
                continue;
            }
            w.replaced = Some(Instant::now());
            let old_pid = w.pid;
            let new_pid = w.spawn().map_err(|e| e.to_string());
            out.push(WriterReplaced {
                path: w.path.clone(),
                old_pid,
                new_pid,
            });
        }
        out
    }

    /// Readable once the server process has ended.
    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// Looks at the server after its pidfd became readable (or any time):
    /// `Some(cause)` once it has ended. `reaped` holds what
    /// `sys::reap_children` collected since the last call.
    pub fn poll_exit(&mut self, reaped: &[(u32, WaitStatus)]) -> Option<ExitCause> {
        if self.exited.is_some() {
            return self.exited.clone();
        }
        if let Some((_, status)) = reaped.iter().find(|(pid, _)| *pid == self.pid) {
            self.exited = Some(ExitCause::Status(*status));
        } else if !self.is_child {
            let alive = ProcStat::read(self.pid)
                .is_some_and(|s| s.is_alive() && s.start_time == self.start_time);
            if !alive {
                self.exited = Some(ExitCause::Unknown);
            }
        }
        self.exited.clone()
    }

    /// Stops the server: SIGTERM to its process group, up to `timeout` for
    /// the group to go, then SIGKILL to the group, and reap. What is left of
    /// the group is stopped even when the leader already died. Returns how
    /// the leader ended, when known, and whether SIGKILL was needed.
    pub fn stop(&mut self, timeout: Duration) -> Stopped {
        let mut killed = false;
        let mut reap = |server: &mut Server| {
            let reaped = sys::reap_children();
            server.poll_exit(&reaped);
        };
        reap(self);
        if group_alive(self.pgid) {
            let _ = sys::killpg(self.pgid, sys::SIGTERM);
            if !self.wait_group_gone(timeout, &mut reap) {
                killed = true;
                let _ = sys::killpg(self.pgid, sys::SIGKILL);
                // SIGKILL cannot be caught; a second is plenty for the kernel.
                self.wait_group_gone(Duration::from_secs(1), &mut reap);
            }
        }
        reap(self);
        Stopped {
            cause: self.exited.clone(),
            killed,
        }
    }

    fn wait_group_gone(&mut self, timeout: Duration, reap: &mut impl FnMut(&mut Server)) -> bool {
        let deadline = crate::config::instant_after(Instant::now(), timeout);
        loop {
            reap(self);
            if !group_alive(self.pgid) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            // The leader's exit wakes us at once; other members are polled.
            let slice = (deadline - now).min(Duration::from_millis(10));
            if self.exited.is_none() {
                let _ = sys::poll_readable(&[self.pidfd.as_fd()], slice);
            } else {
                std::thread::sleep(slice);
            }
        }
    }
}

/// Stops a server this monitor did not start: runs STOP_COMMAND `cmd` (in a
/// group of its own, killed if it outlasts `timeout`), then asks
/// `refused(deadline)` every 50 ms whether the server's URL now refuses
/// connections, all within `timeout`. `refused` must return by the deadline
/// it is given (the monitor's interruptible probe does). True once it
/// refuses.
pub fn stop_foreign(
    cmd: &[String],
    timeout: Duration,
    mut refused: impl FnMut(Instant) -> bool,
) -> bool {
    let deadline = crate::config::instant_after(Instant::now(), timeout);
    run_stop_command(cmd, deadline);
    while Instant::now() < deadline {
        if refused(deadline) {
            return true;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
    log::warn!("the server still answers after STOP_COMMAND and STOP_TIMEOUT");
    false
}

/// Runs STOP_COMMAND until it ends or `deadline`, when it is killed.
fn run_stop_command(cmd: &[String], deadline: Instant) {
    let Some((program, args)) = cmd.split_first() else {
        return;
    };
    let mut run = Command::new(program);
    scrub_env(&mut run);
    let spawned = run
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            log::error!(error = e.to_string().as_str(); "cannot run STOP_COMMAND");
            return;
        }
    };
    loop {
        match child.try_wait() {
            Ok(Some(status)) if !status.success() => {
                log::error!(status = status.to_string().as_str(); "STOP_COMMAND failed");
                return;
            }
            Ok(Some(_)) => return,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                log::error!("STOP_COMMAND did not finish within STOP_TIMEOUT; killing it");
                let _ = sys::killpg(child.id(), sys::SIGKILL);
                let _ = child.wait();
                return;
            }
        }
    }
}

#[derive(Debug)]
pub struct Stopped {
    pub cause: Option<ExitCause>,
    pub killed: bool,
}

/// A pipe whose read end goes to a new log-writer process for `file`; returns
/// the write end for the server, and the writer.
fn capture_pipe(launch: &Launch<'_>, file: &str) -> Result<(OwnedFd, LogWriter), SpawnError> {
    let fail = |e: io::Error| SpawnError(format!("cannot set up capture of {file}: {e}"));
    let (reader, writer) = io::pipe().map_err(fail)?;
    // Room for bursts while the writer is busy (the default is 64 KiB); at
    // worst the default stays, which is no reason not to start.
    let _ = sys::set_pipe_size(writer.as_fd(), PIPE_BYTES);
    let mut log_writer = LogWriter {
        path: launch.log_dir.join(file),
        max_bytes: launch.log_max_bytes,
        backups: launch.log_backups,
        read: reader.into(),
        pid: 0,
        pidfd: None,
        replaced: None,
    };
    log_writer.spawn().map_err(fail)?;
    Ok((writer.into(), log_writer))
}

/// Starts `server-monitor __capture PATH MAX_BYTES BACKUPS` reading `stdin`.
fn spawn_writer(path: &Path, max_bytes: u64, backups: u32, stdin: OwnedFd) -> io::Result<u32> {
    // /proc/self/exe still runs this binary after it was replaced on disk.
    let mut writer_cmd = Command::new("/proc/self/exe");
    scrub_env(&mut writer_cmd);
    let writer_proc = writer_cmd
        .arg0("server-monitor")
        .arg("__capture")
        .arg(path)
        .arg(max_bytes.to_string())
        .arg(backups.to_string())
        .stdin(stdin)
        .stdout(Stdio::null())
        // Its rare reports (a full disk, at most once a minute) go where the
        // monitor's own go: the journal, nohup.out, the terminal.
        .stderr(Stdio::inherit())
        // Its own group: a ^C in the terminal or a stop of the server's group
        // must not end it before it has written the last lines.
        .process_group(0)
        .spawn()?;
    let pid = writer_proc.id();
    drop(writer_proc); // reaped by pid like every child
    Ok(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_ports_of_health_urls() {
        assert_eq!(local_port("http://127.0.0.1:8000/health"), Some(8000));
        assert_eq!(local_port("HTTP://LocalHost/health"), Some(80));
        assert_eq!(local_port("https://[::1]/h?x=1"), Some(443));
        assert_eq!(local_port("http://[::1]:9000"), Some(9000));
        assert_eq!(local_port("http://u:p@127.0.0.2:81/"), Some(81));
        assert_eq!(local_port("http://example.com:8000/health"), None);
        assert_eq!(local_port("http://10.0.0.1:8000/health"), None);
        assert_eq!(local_port("no url"), None);
    }

    #[test]
    fn pid_file_round_trips() {
        let p = PidFile {
            pid: 4242,
            start_time: 987_654,
            command: vec!["python3".into(), "-m".into(), "a b\"c".into()],
        };
        let text = p.format();
        assert!(text.starts_with("4242\n"), "pid alone on the first line");
        assert_eq!(PidFile::parse(&text), Ok(p));
    }

    #[test]
    fn pid_file_garbage_is_an_error_not_a_panic() {
        for bad in [
            "",
            "abc",
            "1\nstart_time=1\ncommand=[]",
            "12\nstart_time=x\ncommand=[]",
            "12\nstart_time=5\n",
            "12\ncommand=[\"a\"]",
        ] {
            assert!(PidFile::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn proc_stat_parses_names_with_spaces_and_parens() {
        let text = "1234 (my (weird) server) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 55555 1000 100";
        assert_eq!(
            ProcStat::parse(text),
            Some(ProcStat {
                state: 'S',
                pgrp: 1234,
                start_time: 55555
            })
        );
        assert!(ProcStat::parse("garbage").is_none());
    }

    #[test]
    fn own_process_is_alive_and_has_a_cmdline() {
        let me = std::process::id();
        let stat = ProcStat::read(me).unwrap();
        assert!(stat.is_alive());
        assert!(!proc_cmdline(me).unwrap().is_empty());
    }

    #[test]
    fn exit_causes_read_well() {
        assert_eq!(
            ExitCause::Status(WaitStatus::Exited(1)).to_string(),
            "process exited with status 1"
        );
        assert_eq!(
            ExitCause::Status(WaitStatus::Signaled(9)).to_string(),
            "killed by signal 9 (SIGKILL)"
        );
    }
}
