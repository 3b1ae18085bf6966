//! Support for the integration tests: run the real binaries, sealed from the
//! world, and clean up after them whatever happens.
//!
//! - [`TestDir`]: one fresh directory per test under `CARGO_TARGET_TMPDIR`,
//!   removed when the test passed, kept (and its path printed) when it failed.
//! - [`Monitor`]: `server-monitor` in its own process group, with a cleared
//!   environment (PATH plus what the test gives), cwd = the test dir, stdout
//!   and stderr to files. Its `Drop` kills the monitor's group and then the
//!   server's group named by the first line of `LOG_DIR/server.pid`.
//! - [`run`]: a one-shot subcommand (`check`, `config`, `status`) under a deadline.
//! - [`DemoServer`]: the demo server standalone, ready when it says it listens.
//! - [`wait_until`] / [`wait_or_panic`]: every wait is bounded and polls.
//! - [`http_get`], [`json_lines`], [`read_pid_file`], [`pid_alive`], [`free_port`].
//!
//! Output goes to files, never pipes: a server's grandchild may hold a pipe
//! open for ever, and a full pipe would block the process under test.
//!
//! It does not know the monitor's settings or log format beyond SPEC.md's
//! names (`LOG_DIR`, `server.pid`'s first line); it never signals a process it
//! did not start or that the pid file does not name, and never kills by name.
#![allow(dead_code)] // each test module uses a different part of this

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const MONITOR_BIN: &str = env!("CARGO_BIN_EXE_server-monitor");
pub const DEMO_BIN: &str = env!("CARGO_BIN_EXE_demo-server");

/// How often every wait polls.
pub const POLL: Duration = Duration::from_millis(10);
/// Lines of each file that a dump shows.
const DUMP_LINES: usize = 40;

// ---------------------------------------------------------------------------
// Test directories

/// A fresh directory for one test; see the module docs for its lifetime.
pub struct TestDir {
    path: PathBuf,
}

impl TestDir {
    /// `CARGO_TARGET_TMPDIR/NAME-PID-N`, empty.
    pub fn new(name: &str) -> TestDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("{name}-{}-{n}", std::process::id()));
        // A leftover of an earlier run with the same pid is not ours to keep.
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        TestDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, relative: impl AsRef<Path>) -> PathBuf {
        self.path.join(relative)
    }

    /// Writes a file (creating its parents) and returns its path.
    pub fn write(&self, relative: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.join(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// A file's text (lossy), or "" when it does not exist.
    pub fn read(&self, relative: impl AsRef<Path>) -> String {
        read_lossy(&self.join(relative))
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("test failed: kept {}", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

// ---------------------------------------------------------------------------
// Waiting

/// Polls `cond` every [`POLL`] until it holds (true) or `timeout` passes
/// (false, with a line on stderr naming `what`). `cond` runs at least once.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            eprintln!("timed out after {timeout:?} waiting for {what}");
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// [`wait_until`], panicking with `dump()` (e.g. [`Monitor::dump`]) on timeout.
pub fn wait_or_panic(
    timeout: Duration,
    what: &str,
    cond: impl FnMut() -> bool,
    dump: impl FnOnce() -> String,
) {
    if !wait_until(timeout, what, cond) {
        panic!("timed out after {timeout:?} waiting for {what}\n{}", dump());
    }
}

// ---------------------------------------------------------------------------
// Processes

/// Whether `pid` is a live process; a zombie counts as dead (process 1 here
/// does not reap orphans, so a killed server's zombie may stay for ever).
pub fn pid_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(proc_stat_state(&stat), Some('Z' | 'X') | None),
        Err(_) => false,
    }
}

/// The state letter of a `/proc/PID/stat` line: the first field after the
/// last `)` (the command name in parentheses may contain anything).
fn proc_stat_state(stat: &str) -> Option<char> {
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// The first line of `LOG_DIR/server.pid` as a pid, if there is one. The
/// other lines are the monitor's business.
pub fn read_pid_file(log_dir: &Path) -> Option<u32> {
    let text = fs::read_to_string(log_dir.join("server.pid")).ok()?;
    text.lines().next()?.trim().parse().ok()
}

/// Sends `signal` to one process. False if it is gone.
pub fn signal_pid(pid: u32, signal: i32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    assert!(pid > 1, "refusing to signal pid {pid}");
    // SAFETY: kill(2) takes plain integers; the pid is a single process > 1.
    unsafe { libc::kill(pid, signal) == 0 }
}

/// Sends `signal` to the process group `pgid`. Refuses (false) pgid ≤ 1 and
/// the test binary's own group, so a bad pid file cannot take the tests down.
pub fn signal_group(pgid: u32, signal: i32) -> bool {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return false;
    };
    // SAFETY: getpgrp and killpg take and return plain integers.
    unsafe {
        if pgid <= 1 || pgid == libc::getpgrp() {
            return false;
        }
        libc::killpg(pgid, signal) == 0
    }
}

/// SIGKILLs the process group of the server named by `LOG_DIR/server.pid`,
/// if the file names one. What [`Monitor`]'s `Drop` does after killing the
/// monitor.
pub fn kill_server_of(log_dir: &Path) {
    if let Some(pid) = read_pid_file(log_dir) {
        if pid > 1 && signal_group(pid, libc::SIGKILL) {
            reap_group(pid);
        }
    }
}

/// Makes this test binary the reaper of the orphans of the processes it
/// starts (`PR_SET_CHILD_SUBREAPER`), once. Process 1 here does not reap, so
/// without this every killed server and grandchild would stay a zombie for
/// ever; with it, [`reap_group`] collects them. Nothing else changes for the
/// processes under test: a zombie is dead to [`pid_alive`] either way.
fn become_subreaper() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: prctl with integer arguments only; it affects this process.
        unsafe {
            libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        }
    });
}

/// Reaps every child of ours in process group `pgid` — orphans handed to us
/// as subreaper — waiting up to 1 s after a SIGKILL for them to die.
/// NOTE: the guards reap their own `Child` through std first; should a
/// leader that is our `Child` be reaped here instead (a test passing a
/// `DemoServer`'s pid to [`kill_server_of`]), its `wait` reports ECHILD,
/// which the guards tolerate.
fn reap_group(pgid: u32) {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let mut status = 0;
        // SAFETY: waitpid on a process group (negative pid) with a valid
        // out-pointer; WNOHANG keeps it from blocking.
        let reaped = unsafe { libc::waitpid(-pgid, &mut status, libc::WNOHANG) };
        match reaped {
            0 if Instant::now() < deadline => std::thread::sleep(POLL),
            // A pid: look for more. 0 past the deadline or -1 (ECHILD: none
            // left in that group): done.
            pid if pid > 0 => {}
            _ => return,
        }
    }
}

/// A child in its own process group with stdout and stderr in files.
struct Proc {
    child: Child,
    status: Option<ExitStatus>,
    command: Vec<String>,
    env: Vec<(String, String)>,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
}

impl Proc {
    /// Starts `program args` with a cleared environment (PATH plus `env`),
    /// cwd `dir`, stdin null, output to `dir/STEM[-N].stdout|stderr`.
    fn spawn(
        dir: &Path,
        stem: &str,
        program: &str,
        args: &[String],
        env: &[(String, String)],
    ) -> Proc {
        become_subreaper();
        let (stdout_path, stdout) = create_unique(dir, stem, "stdout");
        let stderr_path = stdout_path.with_extension("stderr");
        let stderr = File::create(&stderr_path).unwrap();
        let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".to_string());
        let mut command = Command::new(program);
        command
            .args(args)
            .env_clear()
            .env("PATH", path)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        let mut words = vec![program.to_string()];
        words.extend(args.iter().cloned());
        Proc {
            child,
            status: None,
            command: words,
            env: env.to_vec(),
            stdout_path,
            stderr_path,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = &mut self.child;
        let mut status = self.status;
        wait_until(timeout, "a process to exit", || {
            if status.is_none() {
                status = child.try_wait().ok().flatten();
            }
            status.is_some()
        });
        self.status = status;
        status
    }

    /// SIGKILLs the whole group (the leader may be gone while its children
    /// live on) and reaps the leader. Idempotent.
    fn kill_and_reap(&mut self) {
        // NOTE: after the leader was reaped its pid is still the group id
        // while members remain; pids are not reused that fast, so the worst
        // case is an ESRCH.
        let signalled = signal_group(self.pid(), libc::SIGKILL);
        if self.status.is_none() {
            self.status = self.child.wait().ok();
        }
        if signalled {
            reap_group(self.pid());
        }
    }

    fn stdout(&self) -> String {
        read_lossy(&self.stdout_path)
    }

    fn stderr(&self) -> String {
        read_lossy(&self.stderr_path)
    }

    fn describe(&self) -> String {
        let mut out = format!("command: {}\n", shell_words(&self.command));
        for (key, value) in &self.env {
            out.push_str(&format!("env: {key}={value}\n"));
        }
        out
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill_and_reap();
    }
}

/// Creates `dir/STEM.EXT`, or `STEM-2.EXT`, … whichever is free first, so a
/// test may start the same program several times.
fn create_unique(dir: &Path, stem: &str, ext: &str) -> (PathBuf, File) {
    for n in 1.. {
        let name = if n == 1 {
            format!("{stem}.{ext}")
        } else {
            format!("{stem}-{n}.{ext}")
        };
        let path = dir.join(name);
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => return (path, file),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => panic!("create {}: {e}", path.display()),
        }
    }
    unreachable!()
}

// ---------------------------------------------------------------------------
// The monitor

/// A running `server-monitor`; see the module docs.
pub struct Monitor {
    proc: Proc,
    log_dir: PathBuf,
}

impl Monitor {
    /// `server-monitor [-- SERVER_ARGS...]` with `env` (LOG_DIR etc.).
    pub fn start(dir: &TestDir, env: &[(&str, String)], server_args: &[String]) -> Monitor {
        let mut args = Vec::new();
        if !server_args.is_empty() {
            args.push("--".to_string());
            args.extend(server_args.iter().cloned());
        }
        Monitor::start_args(dir, env, &args)
    }

    /// `server-monitor ARGS...` (flags, a subcommand, `--`, as given).
    pub fn start_args(dir: &TestDir, env: &[(&str, String)], args: &[String]) -> Monitor {
        let env = owned_env(env);
        let log_dir = log_dir_of(dir, &env);
        Monitor {
            proc: Proc::spawn(dir.path(), "monitor", MONITOR_BIN, args, &env),
            log_dir,
        }
    }

    /// `PROGRAM ARGS...` that ends up exec-ing the monitor (a wrapper such as
    /// `sh -c '...; exec server-monitor ...'`), with the guards of [`Monitor`].
    pub fn start_program(
        dir: &TestDir,
        env: &[(&str, String)],
        program: &str,
        args: &[String],
    ) -> Monitor {
        let env = owned_env(env);
        let log_dir = log_dir_of(dir, &env);
        Monitor {
            proc: Proc::spawn(dir.path(), "monitor", program, args, &env),
            log_dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// LOG_DIR as the monitor sees it (the env's, relative to the test dir;
    /// else `logs`).
    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// The server pid from `LOG_DIR/server.pid`.
    pub fn server_pid(&self) -> Option<u32> {
        read_pid_file(&self.log_dir)
    }

    /// Sends `signal` to the monitor process alone, as `kill` would.
    pub fn signal(&self, signal: i32) -> bool {
        signal_pid(self.pid(), signal)
    }

    /// The exit status, once it has exited within `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.proc.wait_exit(timeout)
    }

    pub fn stdout(&self) -> String {
        self.proc.stdout()
    }

    pub fn stderr(&self) -> String {
        self.proc.stderr()
    }

    /// [`wait_or_panic`] with this monitor's [`dump`](Monitor::dump).
    pub fn wait_for(&self, timeout: Duration, what: &str, cond: impl FnMut() -> bool) {
        wait_or_panic(timeout, what, cond, || self.dump());
    }

    /// Everything needed to understand a failure: the command, the env, the
    /// LOG_DIR listing with sizes, the tail of every file in it, and the
    /// monitor's stdout and stderr.
    pub fn dump(&self) -> String {
        let mut out = String::from("==== monitor\n");
        out.push_str(&self.proc.describe());
        if let Some(status) = self.proc.status {
            out.push_str(&format!("exit: {}\n", describe_status(status)));
        }
        out.push_str(&dump_dir(&self.log_dir));
        out.push_str(&dump_file("monitor stdout", &self.proc.stdout_path));
        out.push_str(&dump_file("monitor stderr", &self.proc.stderr_path));
        out
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        // The monitor first, so that it cannot start another server.
        self.proc.kill_and_reap();
        kill_server_of(&self.log_dir);
    }
}

/// `env` with each of `overrides` replacing the setting of its name, or added.
pub fn with_overrides<V: AsRef<str>>(
    mut env: Vec<(&'static str, String)>,
    overrides: &[(&'static str, V)],
) -> Vec<(&'static str, String)> {
    for (name, value) in overrides {
        env.retain(|(n, _)| n != name);
        env.push((name, value.as_ref().to_string()));
    }
    env
}

/// Runs a one-shot `server-monitor ARGS...` (`check`, `config`, `status`, …)
/// like [`Monitor::start_args`]; panics, after killing it, if it takes
/// longer than `timeout`.
pub fn run(dir: &TestDir, env: &[(&str, String)], args: &[&str], timeout: Duration) -> Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let mut proc = Proc::spawn(dir.path(), "run", MONITOR_BIN, &args, &owned_env(env));
    let Some(status) = proc.wait_exit(timeout) else {
        proc.kill_and_reap();
        panic!(
            "did not finish within {timeout:?}; killed\n{}{}{}",
            proc.describe(),
            dump_file("stdout", &proc.stdout_path),
            dump_file("stderr", &proc.stderr_path)
        );
    };
    Output {
        status,
        stdout: fs::read(&proc.stdout_path).unwrap_or_default(),
        stderr: fs::read(&proc.stderr_path).unwrap_or_default(),
    }
}

fn owned_env(env: &[(&str, String)]) -> Vec<(String, String)> {
    env.iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn log_dir_of(dir: &TestDir, env: &[(String, String)]) -> PathBuf {
    let value = env
        .iter()
        .rev()
        .find(|(k, _)| k == "LOG_DIR")
        .map(|(_, v)| v.as_str())
        .unwrap_or("logs");
    dir.join(value) // an absolute value replaces the dir
}

// ---------------------------------------------------------------------------
// The demo server

/// The demo server on its own, in its own process group, killed on `Drop`.
pub struct DemoServer {
    proc: Proc,
    port: u16,
}

impl DemoServer {
    /// Starts it on a free port with `args` and waits (up to 5 s) until it
    /// says it listens; panics with its output if it does not.
    pub fn start(dir: &TestDir, args: &[&str]) -> DemoServer {
        let mut server = DemoServer::spawn(dir, free_port(), args);
        if !server.wait_listening(Duration::from_secs(5)) {
            panic!("demo server did not start\n{}", server.dump());
        }
        server
    }

    /// Starts it on `port` without waiting (for a server expected to die).
    pub fn spawn(dir: &TestDir, port: u16, args: &[&str]) -> DemoServer {
        let args = demo_server_args(port, args);
        DemoServer {
            proc: Proc::spawn(dir.path(), "demo", DEMO_BIN, &args[1..], &[]),
            port,
        }
    }

    /// Waits until the "listening" line is on stdout; false if it exited or
    /// the time ran out. No probe connection is made.
    pub fn wait_listening(&mut self, timeout: Duration) -> bool {
        let proc = &mut self.proc;
        wait_until(timeout, "the demo server to listen", || {
            proc.stdout().contains("demo-server listening on")
                || proc.child.try_wait().ok().flatten().is_some()
        }) && proc.stdout().contains("demo-server listening on")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// [`http_get`] on this server.
    pub fn get(&self, path: &str, timeout: Duration) -> Option<(u16, String)> {
        http_get(self.port, path, timeout)
    }

    pub fn signal(&self, signal: i32) -> bool {
        signal_pid(self.pid(), signal)
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.proc.wait_exit(timeout)
    }

    pub fn stdout(&self) -> String {
        self.proc.stdout()
    }

    pub fn stderr(&self) -> String {
        self.proc.stderr()
    }

    pub fn dump(&self) -> String {
        let mut out = String::from("==== demo server\n");
        out.push_str(&self.proc.describe());
        out.push_str(&dump_file("stdout", &self.proc.stdout_path));
        out.push_str(&dump_file("stderr", &self.proc.stderr_path));
        out
    }
}

/// The demo server's command words, for `SERVER_COMMAND` or `Monitor::start`:
/// `[DEMO_BIN, --port, PORT, EXTRA...]`.
pub fn demo_server_args(port: u16, extra: &[&str]) -> Vec<String> {
    let mut words = vec![DEMO_BIN.to_string(), "--port".to_string(), port.to_string()];
    words.extend(extra.iter().map(|w| w.to_string()));
    words
}

// ---------------------------------------------------------------------------
// Network and files

/// A port that was free a moment ago (bind 127.0.0.1:0, read it, close).
/// NOTE: another test may take it before the server binds; the kernel hands
/// out ephemeral ports in turn, so that is rare.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// `GET path` on 127.0.0.1:`port`, the whole exchange within `timeout`:
/// `Some((status, body))`, or None on refusal, timeout or a short body.
pub fn http_get(port: u16, path: &str, timeout: Duration) -> Option<(u16, String)> {
    let deadline = Instant::now() + timeout;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, timeout).ok()?;
    stream.set_write_timeout(Some(left(deadline)?)).ok()?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        stream.set_read_timeout(Some(left(deadline)?)).ok()?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    parse_response(&raw)
}

/// Time left until `deadline`, None when none is.
fn left(deadline: Instant) -> Option<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    (!left.is_zero()).then_some(left)
}

/// Status and body of a whole HTTP/1.x response; None if it is cut short of
/// its Content-Length or malformed.
fn parse_response(raw: &[u8]) -> Option<(u16, String)> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let body = &raw[end + 4..];
    let mut lines = head.split("\r\n");
    let mut status_line = lines.next()?.split_whitespace();
    if !status_line.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status: u16 = status_line.next()?.parse().ok()?;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                let length: usize = value.trim().parse().ok()?;
                if body.len() < length {
                    return None;
                }
            }
        }
    }
    Some((status, String::from_utf8_lossy(body).into_owned()))
}

/// Every complete line of a JSON-lines file, parsed; a missing file is empty.
/// Panics on a line that is not JSON, showing it. NOTE: a last line without
/// its newline is a write in progress, not a broken line: it is left out.
pub fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    let text = match fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes)
            .unwrap_or_else(|e| panic!("{} is not UTF-8: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("read {}: {e}", path.display()),
    };
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => return Vec::new(),
    };
    complete
        .split('\n')
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line).unwrap_or_else(|e| {
                panic!("{} line {}: not JSON ({e}): {line}", path.display(), i + 1)
            })
        })
        .collect()
}

/// A file's text, lossy; "" when it cannot be read.
pub fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

/// The last `n` lines of `text`, each cut to 500 characters.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::new();
    for line in &lines[lines.len().saturating_sub(n)..] {
        match line.char_indices().nth(500) {
            Some((cut, _)) => out.push_str(&format!("{}…\n", &line[..cut])),
            None => out.push_str(&format!("{line}\n")),
        }
    }
    out
}

fn dump_file(title: &str, path: &Path) -> String {
    format!(
        "---- {title} ({}), last {DUMP_LINES} lines:\n{}",
        path.display(),
        tail(&read_lossy(path), DUMP_LINES)
    )
}

/// A listing of `dir` (recursive, with sizes) and the tail of every file in
/// it, sub-directories included.
fn dump_dir(dir: &Path) -> String {
    let mut files = Vec::new();
    list_files(dir, &mut files);
    files.sort();
    let mut out = format!("---- {} listing:\n", dir.display());
    if files.is_empty() {
        out.push_str("(empty or missing)\n");
    }
    for (path, size) in &files {
        let name = path.strip_prefix(dir).unwrap_or(path);
        out.push_str(&format!("{size:>10}  {}\n", name.display()));
    }
    for (path, _) in &files {
        let name = path.strip_prefix(dir).unwrap_or(path).display().to_string();
        out.push_str(&dump_file(&name, path));
    }
    out
}

fn list_files(dir: &Path, out: &mut Vec<(PathBuf, u64)>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.metadata() {
            Ok(meta) if meta.is_dir() => list_files(&path, out),
            Ok(meta) => out.push((path, meta.len())),
            Err(_) => {}
        }
    }
}

fn shell_words(words: &[String]) -> String {
    words
        .iter()
        .map(|w| {
            if !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,".contains(c))
            {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `exit status 1` / `killed by signal 9`.
pub fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => format!("{status}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_state_follows_the_last_paren() {
        let cases = [
            ("42 (demo-server) S 1 42 42", Some('S')),
            ("42 (a) b) Z 1 42 42", Some('Z')),
            ("42 (x)", None),
            ("garbage", None),
        ];
        for (stat, want) in cases {
            assert_eq!(proc_stat_state(stat), want, "{stat:?}");
        }
    }

    #[test]
    fn responses_cut_short_of_content_length_are_none() {
        type Case = (&'static [u8], Option<(u16, &'static str)>);
        let cases: [Case; 4] = [
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                Some((200, "ok")),
            ),
            (b"HTTP/1.1 503 X\r\n\r\n", Some((503, ""))),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nok", None),
            (b"SSH-2.0\r\n\r\n", None),
        ];
        for (raw, want) in cases {
            let got = parse_response(raw);
            assert_eq!(
                got.as_ref().map(|(s, b)| (*s, b.as_str())),
                want,
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn json_lines_leaves_out_a_line_still_being_written() {
        let dir = TestDir::new("json-lines");
        let path = dir.write("a.log", "{\"a\":1}\n{\"b\":2}\n{\"c\":");
        let lines = json_lines(&path);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["b"], 2);
        assert!(json_lines(&dir.join("missing.log")).is_empty());
    }

    #[test]
    fn signal_group_refuses_init_and_our_own_group() {
        assert!(!signal_group(0, 0));
        assert!(!signal_group(1, 0));
        // SAFETY: getpgrp has no preconditions.
        let own = unsafe { libc::getpgrp() } as u32;
        assert!(!signal_group(own, 0));
    }
}
