//! The monitor's life cycle, its files and its command line, driving the real
//! `server-monitor` against the real demo server (SPEC "How it behaves" 1, 4,
//! 6; "The server's output"; "Files under LOG_DIR"; "Command line"; "Exit
//! status").
//!
//! Every test has its own directory and a free 127.0.0.1 port, sub-second
//! settings ([`settings`]), bounded waits, and guards that kill what it
//! started, pass or fail. Waits are on what the monitor writes (its JSON log,
//! the state file, `server.pid`) and assert counts and orders rather than
//! tight timings: the tests share two cores with each other.
//!
//! Not here: the restart policy's counting, alerts and planned restarts
//! (other test modules), and the demo server itself (`demo_server`).

use std::fs::{self, File};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

/// The bound on anything that should take well under a second.
const SHORT: Duration = Duration::from_secs(5);
/// The bound on anything that takes a few seconds on a busy machine.
const LONG: Duration = Duration::from_secs(15);
/// One HTTP request of a test.
const GET: Duration = Duration::from_secs(2);
/// STOP_TIMEOUT given to every monitor here, in seconds.
const STOP_TIMEOUT: u64 = 1;
/// How many lines the spewing servers write; each is 100 bytes.
const SPEW_LINES: u64 = 20_000;

// ---------------------------------------------------------------------------
// Helpers local to these tests

/// The monitor's settings for a demo server on `port`: checks every 200 ms,
/// debug logging (every check is a line), `extra` added or replacing.
fn settings(port: u16, extra: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    let env: Vec<(&'static str, String)> = vec![
        ("LOG_DIR", "logs".into()),
        ("HEALTH_URL", format!("http://127.0.0.1:{port}/health")),
        ("CHECK_INTERVAL", "0.2".into()),
        ("HEALTH_TIMEOUT", "1".into()),
        ("FAILURE_THRESHOLD", "2".into()),
        ("RESTART_COOLDOWN", "0".into()),
        ("STOP_TIMEOUT", STOP_TIMEOUT.to_string()),
        ("STARTUP_TIMEOUT", "5".into()),
        ("LOG_LEVEL", "debug".into()),
    ];
    with_overrides(env, extra)
}

/// A monitor of a demo server on `port` started with `demo_args`.
fn start(dir: &TestDir, port: u16, extra: &[(&'static str, &str)], demo_args: &[&str]) -> Monitor {
    Monitor::start(
        dir,
        &settings(port, extra),
        &demo_server_args(port, demo_args),
    )
}

/// `LOG_DIR/server_monitor.state.json`, parsed; None while missing.
fn state(log_dir: &Path) -> Option<serde_json::Value> {
    let text = fs::read_to_string(log_dir.join("server_monitor.state.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// Waits until the monitor `monitor_pid` says it runs a server that
/// `server.pid` names and that answers healthy; returns that server's pid.
fn wait_running(log_dir: &Path, monitor_pid: u32, port: u16, dump: impl FnOnce() -> String) -> u32 {
    let mut server = None;
    wait_or_panic(
        LONG,
        "the monitor to run a healthy server",
        || {
            server = read_pid_file(log_dir);
            let Some(s) = state(log_dir) else {
                return false;
            };
            s["monitor_pid"] == monitor_pid
                && s["phase"] == "running"
                && server.is_some_and(pid_alive)
                && healthy(port)
        },
        dump,
    );
    server.unwrap()
}

/// [`wait_running`] for a [`Monitor`].
fn running(m: &Monitor, port: u16) -> u32 {
    wait_running(m.log_dir(), m.pid(), port, || m.dump())
}

fn healthy(port: u16) -> bool {
    http_get(port, "/health", GET).is_some_and(|(status, _)| status == 200)
}

/// `(level, message extra)` of every complete line of
/// `LOG_DIR/server_monitor.log`: the message, a space, then `extra` as JSON,
/// so that a needle can match the text or a field's value.
fn log_events(log_dir: &Path) -> Vec<(String, String)> {
    json_lines(&log_dir.join("server_monitor.log"))
        .iter()
        .map(|v| {
            let text = |key: &str| v[key].as_str().unwrap_or_default().to_string();
            (text("level"), format!("{} {}", text("message"), v["extra"]))
        })
        .collect()
}

/// How many lines of the monitor's log contain `needle` in their message.
fn count_logged(log_dir: &Path, needle: &str) -> usize {
    log_events(log_dir)
        .iter()
        .filter(|(_, message)| message.contains(needle))
        .count()
}

/// How many health checks the monitor logged as passed (DEBUG lines).
fn checks_passed(log_dir: &Path) -> usize {
    count_logged(log_dir, "health check passed")
}

/// Waits until `n` more checks passed than `before`.
fn wait_checks(log_dir: &Path, before: usize, n: usize, dump: impl FnOnce() -> String) {
    wait_or_panic(
        LONG,
        &format!("{n} more passed checks"),
        || checks_passed(log_dir) >= before + n,
        dump,
    );
}

/// Waits until the monitor `m` has begun (its state file names it; it
/// decides on `server.pid` before that), then asserts that it adopted `server`.
fn assert_adopts(m: &Monitor, server: u32) {
    let log_dir = m.log_dir();
    m.wait_for(LONG, "the monitor to begin", || {
        state(log_dir).is_some_and(|s| s["monitor_pid"] == m.pid())
    });
    let adopted = format!("adopted the server this monitor started earlier {{\"pid\":{server}}}");
    assert_eq!(count_logged(log_dir, &adopted), 1, "{}", m.dump());
    assert_eq!(count_logged(log_dir, "not adopted"), 0, "{}", m.dump());
}

/// State letter and process group from `/proc/PID/stat` (fields 3 and 5,
/// counted after the command name, which may hold anything).
fn proc_stat(pid: u32) -> Option<(char, u32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some((
        fields.first()?.chars().next()?,
        fields.get(2)?.parse().ok()?,
    ))
}

fn is_live(state: char) -> bool {
    !matches!(state, 'Z' | 'X')
}

/// Every live process whose pid `/proc` lists and that `keep` accepts.
fn live_processes(mut keep: impl FnMut(u32, u32) -> bool) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            proc_stat(pid).is_some_and(|(state, pgrp)| is_live(state) && keep(pid, pgrp))
        })
        .collect()
}

/// Live members of process group `pgid` (the server and its children).
fn group_members(pgid: u32) -> Vec<u32> {
    live_processes(|_, pgrp| pgrp == pgid)
}

/// Live log-writer processes (`server-monitor __capture FILE ...`) writing
/// into `log_dir`. Only looked at, never signalled.
fn capture_processes(log_dir: &Path) -> Vec<u32> {
    let prefix = log_dir.as_os_str().as_encoded_bytes().to_vec();
    live_processes(|pid, _| {
        let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
            return false;
        };
        let words: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        words.get(1) == Some(&&b"__capture"[..])
            && words.get(2).is_some_and(|file| file.starts_with(&prefix))
    })
}

/// Whether `sig` is in the `SigIgn` (ignored) or `SigCgt` (caught) mask of
/// `/proc/PID/status` — `field` names which.
fn signal_in_mask(pid: &str, field: &str, sig: i32) -> bool {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (sig - 1)) != 0)
}

/// Sends `signal` to the monitor and waits for it to exit 0; panics with the
/// dump otherwise. Returns how long it took.
fn stop_cleanly(m: &mut Monitor, signal: i32) -> Duration {
    assert!(m.signal(signal), "the monitor is gone\n{}", m.dump());
    let t = Instant::now();
    let Some(status) = m.wait_exit(SHORT) else {
        panic!(
            "the monitor did not exit after signal {signal}\n{}",
            m.dump()
        );
    };
    let took = t.elapsed();
    assert_eq!(
        status.code(),
        Some(0),
        "{}\n{}",
        describe_status(status),
        m.dump()
    );
    took
}

/// The monitor's server is gone for good: pid dead, no live member left in
/// its group, `server.pid` removed, and the log writers have ended.
fn assert_server_gone(m: &Monitor, server: u32) {
    assert!(!pid_alive(server), "server {server} alive\n{}", m.dump());
    assert_eq!(group_members(server), Vec::<u32>::new(), "{}", m.dump());
    assert!(
        !m.log_dir().join("server.pid").exists(),
        "server.pid left behind\n{}",
        m.dump()
    );
    m.wait_for(SHORT, "the log writers to end", || {
        capture_processes(m.log_dir()).is_empty()
    });
}

/// A process of the test's own (`sleep`, `nohup server-monitor`), in its own
/// process group; the group is killed and the leader reaped on drop.
struct Own {
    child: Child,
    status: Option<ExitStatus>,
}

impl Own {
    fn spawn(command: &mut Command) -> Own {
        let child = command
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        Own {
            child,
            status: None,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let (child, mut status) = (&mut self.child, self.status);
        wait_until(timeout, "a process to exit", || {
            status = status.or_else(|| child.try_wait().ok().flatten());
            status.is_some()
        });
        self.status = status;
        status
    }
}

impl Drop for Own {
    fn drop(&mut self) {
        signal_group(self.pid(), libc::SIGKILL);
        if self.status.is_none() {
            let _ = self.child.wait();
        }
    }
}

/// SIGKILLs the server named by `LOG_DIR/server.pid` on drop.
struct KillServerOf(PathBuf);

impl Drop for KillServerOf {
    fn drop(&mut self) {
        kill_server_of(&self.0);
    }
}

/// SIGKILLs process group `.0` on drop: a server that outlives its monitor,
/// which a failing later monitor may not name in `server.pid`.
struct KillGroup(u32);

impl Drop for KillGroup {
    fn drop(&mut self) {
        signal_group(self.0, libc::SIGKILL);
    }
}

// ---------------------------------------------------------------------------
// Stopping the monitor (SPEC "How it behaves" 6)

fn stop_signal_stops_monitor_and_server(signal: i32, name: &str) {
    let dir = TestDir::new(name);
    let port = free_port();
    let mut m = start(&dir, port, &[], &[]);
    let server = running(&m, port);
    let took = stop_cleanly(&mut m, signal);
    // The loop ends within a second; the demo server dies at SIGTERM at once,
    // STOP_TIMEOUT bounds a stubborn one. The rest is slack for a busy machine.
    let bound = Duration::from_secs(1 + STOP_TIMEOUT) + Duration::from_millis(1500);
    assert!(took < bound, "took {took:?}\n{}", m.dump());
    assert_server_gone(&m, server);
    assert!(!healthy(port));
    assert_eq!(count_logged(m.log_dir(), "monitor stopped"), 1);
    assert_eq!(state(m.log_dir()).unwrap()["phase"], "stopped");
}

#[test]
fn sigterm_stops_monitor_and_server() {
    stop_signal_stops_monitor_and_server(libc::SIGTERM, "life-sigterm");
}

#[test]
fn sigint_stops_monitor_and_server() {
    stop_signal_stops_monitor_and_server(libc::SIGINT, "life-sigint");
}

#[test]
fn sigterm_with_keep_server_on_exit_leaves_server_and_pid_file() {
    let dir = TestDir::new("life-keep");
    let port = free_port();
    let mut first = start(&dir, port, &[("KEEP_SERVER_ON_EXIT", "true")], &[]);
    let server = running(&first, port);
    let _server_guard = KillGroup(server);
    stop_cleanly(&mut first, libc::SIGTERM);
    let log_dir = first.log_dir().to_path_buf();
    assert!(pid_alive(server), "{}", first.dump());
    assert!(healthy(port), "{}", first.dump());
    assert_eq!(read_pid_file(&log_dir), Some(server), "{}", first.dump());
    assert_eq!(count_logged(&log_dir, "leaving the server"), 1);

    // The next monitor, same LOG_DIR, without KEEP_SERVER_ON_EXIT.
    let mut second = start(&dir, port, &[], &[]);
    assert_adopts(&second, server);
    let before = checks_passed(&log_dir);
    wait_checks(&log_dir, before, 2, || second.dump());
    assert_eq!(read_pid_file(&log_dir), Some(server), "{}", second.dump());
    // `status` shows the adopted server like one it started.
    let saved = state(&log_dir).unwrap();
    assert_eq!(saved["server_pid"], server, "{}", second.dump());
    assert_eq!(
        count_logged(&log_dir, "server started {"),
        1,
        "{}",
        second.dump()
    );
    let listening = dir
        .read("logs/server.log")
        .matches("demo-server listening")
        .count();
    assert_eq!(
        listening,
        1,
        "a second server was started\n{}",
        second.dump()
    );

    stop_cleanly(&mut second, libc::SIGTERM);
    assert_server_gone(&second, server);
}

/// SPEC 6: "If the monitor is killed outright, the server keeps running, its
/// output is still captured, and the next monitor adopts it"; SPEC 1: an
/// adopted server's death is seen through /proc.
#[test]
fn sigkill_monitor_then_new_monitor_adopts_and_output_still_captured() {
    let dir = TestDir::new("life-sigkill");
    let port = free_port();
    let mut first = start(&dir, port, &[], &[]);
    let server = running(&first, port);
    let _server_guard = KillGroup(server);
    let log_dir = first.log_dir().to_path_buf();
    assert!(first.signal(libc::SIGKILL));
    let status = first.wait_exit(SHORT).expect("SIGKILL ends it");
    assert_eq!(status.signal(), Some(libc::SIGKILL));

    // No monitor runs: the server answers and its output still reaches the files.
    assert!(pid_alive(server) && healthy(port), "{}", first.dump());
    assert_eq!(
        http_get(port, "/stderr?msg=while-down-123", GET).map(|r| r.0),
        Some(200)
    );
    assert_eq!(http_get(port, "/spew?n=10", GET).map(|r| r.0), Some(200));
    first.wait_for(SHORT, "the output written while no monitor ran", || {
        dir.read("logs/server_error.log")
            .contains("while-down-123\n")
            && dir
                .read("logs/server.log")
                .lines()
                .filter(|l| l.starts_with("spew "))
                .count()
                == 10
    });

    let mut second = start(&dir, port, &[], &[]);
    assert_adopts(&second, server);
    let before = checks_passed(&log_dir);
    wait_checks(&log_dir, before, 2, || second.dump());
    assert_eq!(read_pid_file(&log_dir), Some(server), "{}", second.dump());
    // `status` shows the adopted server like one it started.
    let saved = state(&log_dir).unwrap();
    assert_eq!(saved["server_pid"], server, "{}", second.dump());
    assert_eq!(
        count_logged(&log_dir, "server started {"),
        1,
        "{}",
        second.dump()
    );

    // The adopted server is not the new monitor's child.
    assert!(signal_pid(server, libc::SIGKILL));
    second.wait_for(LONG, "the death of the adopted server to be seen", || {
        log_events(&log_dir).iter().any(|(level, message)| {
            level == "ERROR"
                && message.contains("server exited unexpectedly")
                && message.contains("adopted")
        })
    });
    let replacement = running(&second, port);
    assert_ne!(replacement, server);
    assert!(!pid_alive(server));
    assert_eq!(
        count_logged(&log_dir, "server started {"),
        2,
        "{}",
        second.dump()
    );
    stop_cleanly(&mut second, libc::SIGTERM);
    assert_server_gone(&second, replacement);
}

// ---------------------------------------------------------------------------
// One monitor per LOG_DIR (SPEC "How it behaves" 1)

#[test]
fn second_monitor_on_same_log_dir_is_refused() {
    let dir = TestDir::new("life-second");
    let port = free_port();
    let mut first = start(&dir, port, &[], &[]);
    let server = running(&first, port);
    let log_dir = first.log_dir().to_path_buf();

    let words = demo_server_args(port, &[]);
    let mut args = vec!["--"];
    args.extend(words.iter().map(String::as_str));
    let out = run(&dir, &settings(port, &[]), &args, SHORT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("already running"), "{stderr}");
    assert!(
        stderr.contains(&format!("pid {}", first.pid())),
        "the message names the running monitor's pid: {stderr}"
    );

    // The first one goes on untouched.
    let before = checks_passed(&log_dir);
    wait_checks(&log_dir, before, 2, || first.dump());
    assert!(pid_alive(first.pid()));
    assert_eq!(read_pid_file(&log_dir), Some(server));
    assert_eq!(count_logged(&log_dir, "server started {"), 1);
    let lock = fs::read_to_string(log_dir.join("server_monitor.lock")).unwrap();
    assert_eq!(lock.trim(), first.pid().to_string());
    stop_cleanly(&mut first, libc::SIGTERM);
    assert_server_gone(&first, server);
}

// ---------------------------------------------------------------------------
// Log rotation (SPEC "Files under LOG_DIR", "The server's output")

/// `NAME`, `NAME.1`, … as they exist in `dir`: the names that start with
/// `name`, sorted.
fn files_named(dir: &Path, name: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n == name || n.starts_with(&format!("{name}.")))
        .collect();
    names.sort();
    names
}

#[test]
fn monitor_log_rotates_with_backups_kept() {
    let dir = TestDir::new("life-rotate-log");
    let port = free_port();
    let extra = [
        ("LOG_MAX_BYTES", "4096"),
        ("LOG_BACKUPS", "2"),
        ("CHECK_INTERVAL", "0.02"),
    ];
    let mut m = start(&dir, port, &extra, &[]);
    let log_dir = m.log_dir().to_path_buf();
    let oldest = log_dir.join("server_monitor.log.2");
    let first_line = |path: &Path| read_lossy(path).lines().next().unwrap_or("").to_string();
    m.wait_for(LONG, "two rotations", || !first_line(&oldest).is_empty());
    // One more rotation past the last kept backup: it would have made a `.3`.
    let was = first_line(&oldest);
    m.wait_for(LONG, "a third rotation", || {
        let now = first_line(&oldest);
        !now.is_empty() && now != was
    });
    stop_cleanly(&mut m, libc::SIGTERM);

    let names = files_named(&log_dir, "server_monitor.log");
    assert_eq!(
        names,
        [
            "server_monitor.log",
            "server_monitor.log.1",
            "server_monitor.log.2"
        ],
        "{}",
        m.dump()
    );
    let mut timestamps = Vec::new();
    for name in names.iter().rev() {
        let path = log_dir.join(name);
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.ends_with('\n'), "{name} ends mid-line");
        let lines = json_lines(&path);
        assert!(
            text.len() <= 4096 || lines.len() == 1,
            "{name} has {} bytes in {} lines",
            text.len(),
            lines.len()
        );
        for line in &lines {
            for key in [
                "timestamp",
                "level",
                "logger",
                "message",
                "module",
                "line",
                "extra",
            ] {
                assert!(line.get(key).is_some(), "{name}: no {key}: {line}");
            }
            timestamps.push(line["timestamp"].as_str().unwrap().to_string());
        }
    }
    // `.2` is the oldest, the live file the newest.
    assert!(
        timestamps.windows(2).all(|w| w[0] <= w[1]),
        "backups out of order\n{}",
        m.dump()
    );
}

/// The spew lines of `server.log` and its backups, oldest file first, after
/// checking that every rotated file ends with a whole line within the size
/// limit and that every line is one the demo server writes, whole.
fn spew_numbers(log_dir: &Path, max_bytes: usize) -> Vec<u64> {
    let names = files_named(log_dir, "server.log");
    let backup = |name: &String| -> u32 {
        name.strip_prefix("server.log.").map_or(0, |n| {
            n.parse()
                .unwrap_or_else(|_| panic!("unexpected file {name}"))
        })
    };
    let mut ordered: Vec<&String> = names.iter().collect();
    ordered.sort_by_key(|name| std::cmp::Reverse(backup(name)));
    let mut numbers = Vec::new();
    for name in ordered {
        let text = fs::read_to_string(log_dir.join(name)).unwrap();
        if backup(name) > 0 {
            assert!(text.ends_with('\n'), "{name} ends with a partial line");
            assert!(text.len() <= max_bytes, "{name} has {} bytes", text.len());
        }
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("spew ") {
                let (number, pad) = rest.split_once(' ').unwrap_or(("", ""));
                assert!(
                    line.len() == 99 && number.len() == 6 && pad.bytes().all(|b| b == b'x'),
                    "{name}: a broken spew line: {line:?}"
                );
                numbers.push(number.parse().unwrap());
            } else {
                assert!(
                    line.starts_with("GET /") || line.starts_with("demo-server listening on "),
                    "{name}: a line the server did not write: {line:?}"
                );
            }
        }
    }
    numbers
}

/// Starts a monitor of a server that writes [`SPEW_LINES`] numbered lines at
/// start, waits until the last one is in `server.log`, stops the monitor and
/// waits for the log writers to end; returns the monitor and `LOG_DIR`.
fn spew_through_capture(dir: &TestDir, max_bytes: &str, backups: &str) -> (Monitor, PathBuf) {
    let port = free_port();
    let extra = [("LOG_MAX_BYTES", max_bytes), ("LOG_BACKUPS", backups)];
    let spew = SPEW_LINES.to_string();
    let mut m = start(dir, port, &extra, &["--spew", &spew]);
    let server = running(&m, port);
    let last = format!("spew {SPEW_LINES:06} ");
    m.wait_for(LONG, "the last spew line", || {
        dir.read("logs/server.log").contains(&last)
    });
    stop_cleanly(&mut m, libc::SIGTERM);
    assert_server_gone(&m, server);
    let log_dir = m.log_dir().to_path_buf();
    (m, log_dir)
}

#[test]
fn server_output_rotation_loses_no_line() {
    let dir = TestDir::new("life-rotate-output");
    // 2 MB in 64 KiB files: about 31 rotations, all kept.
    let (m, log_dir) = spew_through_capture(&dir, "65536", "60");
    assert!(
        log_dir.join("server.log.20").exists(),
        "the test must rotate many times\n{}",
        m.dump()
    );
    let numbers = spew_numbers(&log_dir, 65536);
    let want: Vec<u64> = (1..=SPEW_LINES).collect();
    if numbers != want {
        let dupes = numbers.len()
            - numbers
                .iter()
                .collect::<std::collections::BTreeSet<_>>()
                .len();
        panic!(
            "{} spew lines, {dupes} duplicated, first out of place at {:?}\n{}",
            numbers.len(),
            numbers.iter().zip(&want).position(|(a, b)| a != b),
            m.dump()
        );
    }
}

#[test]
fn server_output_rotation_keeps_only_log_backups_files() {
    let dir = TestDir::new("life-rotate-output-few");
    let (m, log_dir) = spew_through_capture(&dir, "65536", "2");
    assert_eq!(
        files_named(&log_dir, "server.log"),
        ["server.log", "server.log.1", "server.log.2"],
        "{}",
        m.dump()
    );
    // What is kept is the newest lines, in order, none twice, none missing.
    let numbers = spew_numbers(&log_dir, 65536);
    let first = *numbers.first().expect("spew lines kept");
    let want: Vec<u64> = (first..=SPEW_LINES).collect();
    assert_eq!(numbers, want, "{}", m.dump());
    // Two full backups hold at least 2 × (65536 − 99) bytes of them.
    assert!(numbers.len() >= 1300, "{} lines kept", numbers.len());
}

// ---------------------------------------------------------------------------
// server.pid that is not ours (SPEC "How it behaves" 1)

/// Field 22 of /proc/PID/stat.
fn start_time(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = stat.rsplit_once(')').unwrap().1;
    after.split_whitespace().nth(19).unwrap().parse().unwrap()
}

/// Builds a `server.pid` from a live pid and the demo server's command.
type PidFileText = fn(u32, &[String]) -> String;

#[test]
fn pid_reuse_is_neither_adopted_nor_signalled() {
    // The same live process named with the wrong start time, then with the
    // right start time but another command line: both mean the pid was reused.
    let cases: [(&str, PidFileText); 2] = [
        ("life-reuse-time", |pid, _| {
            format!(
                "{pid}\nstart_time={}\ncommand=[\"sleep\",\"30\"]\n",
                start_time(pid) + 4242
            )
        }),
        ("life-reuse-cmd", |pid, demo| {
            format!(
                "{pid}\nstart_time={}\ncommand={}\n",
                start_time(pid),
                serde_json::to_string(demo).unwrap()
            )
        }),
    ];
    for (name, pid_file) in cases {
        let dir = TestDir::new(name);
        let port = free_port();
        let stranger = Own::spawn(
            Command::new("sleep")
                .arg("30")
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        dir.write(
            "logs/server.pid",
            pid_file(stranger.pid(), &demo_server_args(port, &[])),
        );

        let mut m = start(&dir, port, &[], &[]);
        let server = running(&m, port);
        assert_ne!(
            server,
            stranger.pid(),
            "{name}: adopted a stranger\n{}",
            m.dump()
        );
        let warned = log_events(m.log_dir()).iter().any(|(level, message)| {
            level == "WARNING"
                && message.contains(&format!("\"pid\":{}", stranger.pid()))
                && message.contains("not adopted")
        });
        assert!(
            warned,
            "{name}: no warning about the reused pid\n{}",
            m.dump()
        );
        assert_eq!(count_logged(m.log_dir(), "adopted the server"), 0);

        stop_cleanly(&mut m, libc::SIGTERM);
        assert_server_gone(&m, server);
        // Not signalled, not even at the monitor's own stop.
        let (state, _) = proc_stat(stranger.pid()).expect("the stranger still exists");
        assert!(
            is_live(state) && state != 'T',
            "{name}: the stranger is in state {state}\n{}",
            m.dump()
        );
    }
}

#[test]
fn garbage_pid_file_is_replaced_with_a_warning() {
    let dir = TestDir::new("life-garbage-pid");
    let port = free_port();
    dir.write("logs/server.pid", "not a pid file\n");
    let mut m = start(&dir, port, &[], &[]);
    let server = running(&m, port);
    let warned = log_events(m.log_dir())
        .iter()
        .any(|(level, message)| level == "WARNING" && message.contains("server.pid"));
    assert!(warned, "no warning about the garbage\n{}", m.dump());
    let text = dir.read("logs/server.pid");
    assert!(text.starts_with(&format!("{server}\n")), "{text}");
    stop_cleanly(&mut m, libc::SIGTERM);
    assert_server_gone(&m, server);
}

// ---------------------------------------------------------------------------
// Configuration and command line (SPEC "Settings", "Command line", "Exit status")

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn bad_configuration_exits_78_naming_every_problem() {
    let dir = TestDir::new("life-bad-config");
    let port = free_port();
    let port_text = port.to_string();
    let bad = [
        ("CHECK_INTERVAL", "5x"),
        ("HEALTH_TIMEOUT", "0.5"),
        ("SMTP_PORT", "70000"),
    ];
    let env = settings(port, &bad);
    let args = ["--", DEMO_BIN, "--port", &port_text];
    let out = run(&dir, &env, &args, SHORT);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    for (name, value) in bad {
        assert!(
            stderr
                .lines()
                .any(|l| l.contains(name) && l.contains(&format!("`{value}`"))),
            "{name}={value} not named: {stderr}"
        );
    }
    // Stopped before it did anything: no LOG_DIR, no pid file, no server.
    assert!(!dir.join("logs").exists(), "{stderr}");
    assert!(!healthy(port));

    // Flags are checked the same way, and all at once too.
    let args = [
        "--failure-threshold",
        "0",
        "--log-max-bytes=100",
        "--",
        DEMO_BIN,
    ];
    let out = run(&dir, &settings(port, &[]), &args, SHORT);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("FAILURE_THRESHOLD") && stderr.contains("LOG_MAX_BYTES"),
        "{stderr}"
    );
    assert!(!dir.join("logs").exists(), "{stderr}");

    for (args, needle) in [
        (&["--no-such-flag", "1"][..], "--no-such-flag"),
        (&["frobnicate"][..], "frobnicate"),
        (
            &["check", "--check-intervall", "1"][..],
            "--check-intervall",
        ),
    ] {
        let out = run(&dir, &settings(port, &[]), args, SHORT);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(
            stderr.contains("usage: server-monitor"),
            "{args:?}: {stderr}"
        );
    }
    assert!(!dir.join("logs").exists());
}

/// `server-monitor config` output as NAME -> (value, source).
fn config_values(stdout: &str) -> std::collections::HashMap<String, (String, String)> {
    stdout
        .lines()
        .map(|line| {
            let (name, rest) = line.split_once('=').unwrap_or_else(|| panic!("{line}"));
            let (value, source) = rest.rsplit_once("  # ").unwrap_or_else(|| panic!("{line}"));
            let value = value.trim_end();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            (name.to_string(), (value.to_string(), source.to_string()))
        })
        .collect()
}

#[test]
fn env_file_and_precedence() {
    let dir = TestDir::new("life-env-file");
    dir.write(
        "my.env",
        "# settings for the test\n\
         export CHECK_INTERVAL=7\n\
         FAILURE_THRESHOLD='4'\n\
         SERVICE_NAME=\"From File\"\n\
         STOP_TIMEOUT=3\n\
         SMTP_PASSWORD=file-secret-xyz\n",
    );
    dir.write(".env", "WARN_CPU_PERCENT=61\nSERVICE_NAME=Dot Env\n");
    let env = [
        ("FAILURE_THRESHOLD", "5".to_string()),
        ("STOP_TIMEOUT", "4".to_string()),
        ("SMTP_PASSWORD", "env-secret-abc".to_string()),
    ];
    let args = [
        "config",
        "--env-file",
        "my.env",
        "--stop-timeout",
        "6",
        "--max-restart-attempts=9",
        "--keep-server-on-exit",
    ];
    let out = run(&dir, &env, &args, SHORT);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(!stdout.contains("secret"), "a password is shown: {stdout}");
    let values = config_values(&stdout);
    let get = |name: &str| -> (&str, &str) {
        let (value, source) = values
            .get(name)
            .unwrap_or_else(|| panic!("no {name}: {stdout}"));
        (value.as_str(), source.as_str())
    };
    assert_eq!(get("CHECK_INTERVAL"), ("7", "env file my.env"));
    assert_eq!(get("SERVICE_NAME"), ("From File", "env file my.env"));
    assert_eq!(get("FAILURE_THRESHOLD"), ("5", "environment"));
    assert_eq!(get("STOP_TIMEOUT"), ("6", "flag"));
    assert_eq!(get("MAX_RESTART_ATTEMPTS"), ("9", "flag"));
    assert_eq!(get("KEEP_SERVER_ON_EXIT"), ("true", "flag"));
    assert_eq!(get("WARN_CPU_PERCENT"), ("50", "default"), ".env read too");
    assert_eq!(get("SMTP_PASSWORD").1, "environment");
    assert!(!get("SMTP_PASSWORD").0.is_empty(), "{stdout}");

    // Without --env-file, `.env` in the working directory is the env file.
    let out = run(&dir, &[], &["config"], SHORT);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    let values = config_values(&stdout);
    assert_eq!(values["WARN_CPU_PERCENT"].0, "61", "{stdout}");
    assert_eq!(values["SERVICE_NAME"].0, "Dot Env", "{stdout}");
    assert_eq!(
        values["CHECK_INTERVAL"],
        ("30".to_string(), "default".to_string())
    );
}

#[test]
fn check_subcommand_nagios_codes() {
    let dir = TestDir::new("life-check");
    let server = DemoServer::start(&dir, &[]);
    let check = |port: u16, extra: &[(&'static str, &str)]| -> (Option<i32>, String) {
        let out = run(&dir, &settings(port, extra), &["check"], SHORT);
        let stdout = text(&out.stdout);
        assert_eq!(stdout.lines().count(), 1, "one line: {stdout:?}");
        (out.status.code(), stdout)
    };
    let expect = |got: (Option<i32>, String), code: i32, prefix: &str, needle: &str| {
        assert_eq!(got.0, Some(code), "{}", got.1);
        assert!(got.1.starts_with(prefix), "{}", got.1);
        assert!(got.1.contains(needle), "{}", got.1);
    };
    expect(check(server.port(), &[]), 0, "OK - ", "healthy");
    assert_eq!(server.get("/warn", GET).map(|r| r.0), Some(200));
    expect(check(server.port(), &[]), 1, "WARNING - ", "healthy");
    assert_eq!(server.get("/fail", GET).map(|r| r.0), Some(200));
    expect(check(server.port(), &[]), 2, "CRITICAL - ", "503");
    expect(check(free_port(), &[]), 2, "CRITICAL - ", "refused");
    let bad = [("HEALTH_TIMEOUT", "0.5")];
    expect(
        check(server.port(), &bad),
        3,
        "UNKNOWN - ",
        "HEALTH_TIMEOUT",
    );
}

#[test]
fn status_subcommand() {
    let dir = TestDir::new("life-status");
    let port = free_port();
    let mut m = start(&dir, port, &[], &[]);
    let server = running(&m, port);
    let env = settings(port, &[]);

    let out = run(&dir, &env, &["status"], SHORT);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("running"), "{stdout}");
    assert!(stdout.contains(&format!("pid {}", m.pid())), "{stdout}");
    assert!(stdout.contains(&format!("pid {server}")), "{stdout}");

    let out = run(&dir, &env, &["status", "--json"], SHORT);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    let json: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"));
    assert_eq!(json["phase"], "running", "{stdout}");
    assert_eq!(json["monitor_pid"], m.pid(), "{stdout}");
    assert_eq!(json["server_pid"], server, "{stdout}");
    assert_eq!(json["monitor_running"], true, "{stdout}");
    assert_eq!(json["last_check"]["healthy"], true, "{stdout}");

    stop_cleanly(&mut m, libc::SIGTERM);
    let out = run(&dir, &env, &["status", "--json"], SHORT);
    let stdout = text(&out.stdout);
    let json: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"));
    assert_eq!(json["phase"], "stopped", "{stdout}");
    assert_eq!(json["monitor_running"], false, "{stdout}");
}

// ---------------------------------------------------------------------------
// SIGHUP (SPEC "How it behaves" 6)

#[test]
fn sighup_ignored_under_nohup_is_kept() {
    let dir = TestDir::new("life-nohup");
    let port = free_port();
    let log_dir = dir.join("logs");
    let mut command = Command::new("nohup");
    command
        .arg(MONITOR_BIN)
        .arg("--")
        .args(demo_server_args(port, &[]))
        .env_clear()
        .env(
            "PATH",
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
        )
        .envs(settings(port, &[]))
        .current_dir(dir.path())
        .stdout(File::create(dir.join("nohup.stdout")).unwrap())
        .stderr(File::create(dir.join("nohup.stderr")).unwrap());
    // Dropped last: the monitor first (its group), then its server.
    let _server_guard = KillServerOf(log_dir.clone());
    let mut m = Own::spawn(&mut command);
    let dump = || {
        format!(
            "==== nohup monitor\nlog:\n{}\nstderr:\n{}",
            read_lossy(&log_dir.join("server_monitor.log")),
            read_lossy(&dir.join("nohup.stderr"))
        )
    };
    // nohup execs the monitor: the same pid.
    let server = wait_running(&log_dir, m.pid(), port, dump);
    let pid = m.pid().to_string();
    assert!(signal_in_mask(&pid, "SigIgn:", libc::SIGHUP), "{}", dump());

    let before = checks_passed(&log_dir);
    assert!(signal_pid(m.pid(), libc::SIGHUP));
    // Still checking, five checks (a second) after the signal.
    wait_checks(&log_dir, before, 5, dump);
    assert!(m.status.is_none() && pid_alive(m.pid()), "{}", dump());
    assert!(pid_alive(server));

    assert!(signal_pid(m.pid(), libc::SIGTERM));
    let status = m
        .wait_exit(SHORT)
        .unwrap_or_else(|| panic!("no exit\n{}", dump()));
    assert_eq!(status.code(), Some(0), "{}", dump());
    assert!(!pid_alive(server), "{}", dump());
}

#[test]
fn sighup_not_ignored_stops_the_monitor_cleanly() {
    if signal_in_mask("self", "SigIgn:", libc::SIGHUP) {
        // The monitor would inherit our ignored SIGHUP (the tests run under
        // nohup): there is nothing to test here.
        eprintln!("SIGHUP is ignored by the test process; skipped");
        return;
    }
    let dir = TestDir::new("life-sighup");
    let port = free_port();
    let mut m = start(&dir, port, &[], &[]);
    let server = running(&m, port);
    let pid = m.pid().to_string();
    assert!(
        signal_in_mask(&pid, "SigCgt:", libc::SIGHUP),
        "{}",
        m.dump()
    );
    stop_cleanly(&mut m, libc::SIGHUP);
    assert_server_gone(&m, server);
}
