//! The server process as the operator's setup makes it (issue 8): servers
//! behind a wrapper that execs, servers the monitor did not start, the
//! one-monitor lock against other users' sockets and against a second
//! monitor started at the same instant, what the server inherits from the
//! monitor (environment, file descriptors).

use std::fs;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram, UnixListener};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::*;

const SHORT: Duration = Duration::from_secs(5);
const LONG: Duration = Duration::from_secs(20);
const GET: Duration = Duration::from_secs(2);

fn settings(port: u16, extra: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    let env: Vec<(&'static str, String)> = vec![
        ("LOG_DIR", "logs".into()),
        ("HEALTH_URL", format!("http://127.0.0.1:{port}/health")),
        ("CHECK_INTERVAL", "0.2".into()),
        ("HEALTH_TIMEOUT", "1".into()),
        ("FAILURE_THRESHOLD", "2".into()),
        ("RESTART_COOLDOWN", "0".into()),
        ("STOP_TIMEOUT", "1".into()),
        ("STARTUP_TIMEOUT", "3".into()),
        ("LOG_LEVEL", "debug".into()),
    ];
    with_overrides(env, extra)
}

fn healthy(port: u16) -> bool {
    http_get(port, "/health", GET).is_some_and(|(s, _)| s == 200)
}

fn state(log_dir: &Path) -> Option<Value> {
    serde_json::from_str(&fs::read_to_string(log_dir.join("server_monitor.state.json")).ok()?).ok()
}

fn messages(log_dir: &Path) -> Vec<String> {
    json_lines(&log_dir.join("server_monitor.log"))
        .iter()
        .map(|v| format!("{} {}", v["message"].as_str().unwrap_or(""), v["extra"]))
        .collect()
}

fn count_logged(log_dir: &Path, needle: &str) -> usize {
    messages(log_dir)
        .iter()
        .filter(|m| m.contains(needle))
        .count()
}

/// Waits until monitor `m` runs a verified, healthy server named by server.pid.
fn wait_running(m: &Monitor, port: u16) -> u32 {
    let mut server = None;
    m.wait_for(LONG, "a verified healthy server", || {
        server = m.server_pid();
        state(m.log_dir()).is_some_and(|s| s["monitor_pid"] == m.pid() && s["phase"] == "running")
            && server.is_some_and(pid_alive)
            && healthy(port)
    });
    server.unwrap()
}

fn environ(pid: u32) -> String {
    String::from_utf8_lossy(&fs::read(format!("/proc/{pid}/environ")).unwrap_or_default())
        .replace('\0', "\n")
}

fn cmdline(pid: u32) -> String {
    String::from_utf8_lossy(&fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default())
        .replace('\0', " ")
}

fn alert_files(log_dir: &Path) -> Vec<String> {
    fs::read_dir(log_dir.join("alerts"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Kills a process group on drop (a server a monitor was killed away from).
struct KillGroup(u32);
impl Drop for KillGroup {
    fn drop(&mut self) {
        signal_group(self.0, libc::SIGKILL);
    }
}

// ---------------------------------------------------------------------------
// Item 2: a server behind a wrapper that execs

#[test]
fn exec_wrapper_server_is_adopted_after_monitor_sigkill_and_stopped() {
    let dir = TestDir::new("proc-exec-adopt");
    let port = free_port();
    // A start script that does some work, then execs the server: the pid
    // stays, the command line changes.
    let script = format!("sleep 0.3; exec {DEMO_BIN} --port {port}");
    let server_args = vec!["sh".to_string(), "-c".to_string(), script];
    let env = settings(port, &[]);
    let mut first = Monitor::start(&dir, &env, &server_args);
    let server = wait_running(&first, port);
    let _guard = KillGroup(server);
    assert!(cmdline(server).starts_with(DEMO_BIN), "{}", cmdline(server));
    assert!(first.signal(libc::SIGKILL));
    first.wait_exit(SHORT).expect("SIGKILL ends it");
    assert!(pid_alive(server) && healthy(port));

    let mut second = Monitor::start(&dir, &env, &server_args);
    let log_dir = second.log_dir().to_path_buf();
    second.wait_for(LONG, "the second monitor to begin and check", || {
        state(&log_dir).is_some_and(|s| s["monitor_pid"] == second.pid())
            && count_logged(&log_dir, "health check passed") >= 3
    });
    let adopted = format!("adopted the server this monitor started earlier {{\"pid\":{server}}}");
    assert_eq!(count_logged(&log_dir, &adopted), 1, "{}", second.dump());
    assert_eq!(
        count_logged(&log_dir, "not adopted"),
        0,
        "{}",
        second.dump()
    );
    assert_eq!(
        count_logged(&log_dir, "a healthy server already answers"),
        0,
        "{}",
        second.dump()
    );
    assert_eq!(
        count_logged(&log_dir, "server started {"),
        1,
        "{}",
        second.dump()
    );
    assert_eq!(second.server_pid(), Some(server));

    // It can stop it: SIGTERM to the monitor stops the adopted server.
    assert!(second.signal(libc::SIGTERM));
    second.wait_exit(LONG).expect("the monitor exits");
    assert!(
        wait_until(SHORT, "the adopted server to be gone", || !pid_alive(
            server
        )),
        "{}",
        second.dump()
    );
}

#[test]
fn planned_restart_is_not_verified_by_an_old_server_that_keeps_the_port() {
    let dir = TestDir::new("proc-foreign-verify");
    let foreign = DemoServer::start(&dir, &[]);
    let port = foreign.port();
    // Our own server takes a moment before it binds (and then fails: the
    // port is the foreign one's); meanwhile the foreign one answers.
    let env = settings(
        port,
        &[("RESTART_COOLDOWN", "600"), ("STARTUP_TIMEOUT", "2")],
    );
    let m = Monitor::start(
        &dir,
        &env,
        &demo_server_args(port, &["--startup-delay", "0.3"]),
    );
    m.wait_for(LONG, "the foreign server to be watched", || {
        count_logged(m.log_dir(), "health check passed") >= 2
    });
    let out = run(&dir, &env, &["restart"], LONG);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{text}\n{}", m.dump());
    let s = state(m.log_dir()).unwrap();
    assert_eq!(s["planned_restart"]["outcome"], "failed", "{s}");
    assert!(
        !alert_files(m.log_dir())
            .iter()
            .any(|f| f.contains("restarted")),
        "{:?}",
        alert_files(m.log_dir())
    );
    assert!(pid_alive(foreign.pid()));
}

// ---------------------------------------------------------------------------
// Item 8: a server started by hand after give-up

#[test]
fn server_started_by_hand_after_give_up_is_stopped_with_stop_command() {
    let dir = TestDir::new("proc-hand-started");
    let port = free_port();
    let fault = dir.write("fault", "ok");
    let stop = format!(
        "touch {0}/stopped; kill $(cat {0}/hand.pid)",
        dir.path().display()
    );
    let env = settings(
        port,
        &[
            ("MAX_RESTART_ATTEMPTS", "1"),
            ("SERVER_COMMAND", "sh -c 'exit 1'"),
            ("STOP_COMMAND", &format!("sh -c '{stop}'")),
            ("STARTUP_TIMEOUT", "1"),
        ],
    );
    let m = Monitor::start(&dir, &env, &[]);
    m.wait_for(LONG, "give-up", || {
        state(m.log_dir()).is_some_and(|s| s["phase"] == "given-up")
    });
    let mut hand = DemoServer::spawn(&dir, port, &["--fault-file", fault.to_str().unwrap()]);
    assert!(hand.wait_listening(SHORT), "{}", hand.dump());
    dir.write("hand.pid", hand.pid().to_string());
    m.wait_for(LONG, "the recovery", || {
        state(m.log_dir()).is_some_and(|s| s["phase"] == "running")
    });
    // It hangs later (here: fails): the restart must stop it first.
    fs::write(&fault, "fail").unwrap();
    m.wait_for(LONG, "STOP_COMMAND to stop the hand-started server", || {
        dir.join("stopped").exists()
    });
    assert!(hand.wait_exit(SHORT).is_some(), "{}", m.dump());
    assert!(
        count_logged(m.log_dir(), "stopping the server with STOP_COMMAND") >= 1,
        "{}",
        m.dump()
    );
}

/// Seconds since midnight (UTC) of the first log line whose message holds
/// `needle`, from its `timestamp` (`…T08:28:39.123Z`).
fn logged_at(log_dir: &Path, needle: &str) -> Option<f64> {
    let lines = json_lines(&log_dir.join("server_monitor.log"));
    let line = lines
        .iter()
        .find(|v| v["message"].as_str().is_some_and(|m| m.contains(needle)))?;
    let time = line["timestamp"].as_str()?.split_once('T')?.1;
    let mut parts = time.trim_end_matches('Z').split(':');
    let (h, m, s) = (parts.next()?, parts.next()?, parts.next()?);
    Some(h.parse::<f64>().ok()? * 3600.0 + m.parse::<f64>().ok()? * 60.0 + s.parse::<f64>().ok()?)
}

#[test]
fn stop_command_ends_within_stop_timeout_when_the_health_url_then_hangs() {
    // STOP_COMMAND works, but the server's URL then hangs instead of
    // refusing: waiting for it to refuse must not overrun STOP_TIMEOUT (1 s)
    // by a HEALTH_TIMEOUT (8 s) spent inside one blocking check.
    let dir = TestDir::new("proc-stop-command-hang");
    let port = free_port();
    let fault = dir.write("fault", "ok");
    let stop = format!("echo hang > {}", fault.display());
    let env = settings(
        port,
        &[
            ("MAX_RESTART_ATTEMPTS", "1"),
            ("SERVER_COMMAND", "sh -c 'exit 1'"),
            ("STOP_COMMAND", &format!("sh -c '{stop}'")),
            ("HEALTH_TIMEOUT", "8"),
            ("STOP_TIMEOUT", "1"),
        ],
    );
    let mut foreign = DemoServer::spawn(&dir, port, &["--fault-file", fault.to_str().unwrap()]);
    assert!(foreign.wait_listening(SHORT), "{}", foreign.dump());
    let m = Monitor::start(&dir, &env, &[]);
    m.wait_for(LONG, "the foreign server to be watched", || {
        state(m.log_dir()).is_some_and(|s| s["phase"] == "running")
    });
    fs::write(&fault, "fail").unwrap();
    let gave_up = "the server still answers after STOP_COMMAND and STOP_TIMEOUT";
    m.wait_for(LONG, "STOP_COMMAND's wait to end", || {
        count_logged(m.log_dir(), gave_up) >= 1
    });
    let began = logged_at(m.log_dir(), "stopping the server with STOP_COMMAND").unwrap();
    let ended = logged_at(m.log_dir(), gave_up).unwrap();
    let took = (ended - began).rem_euclid(86_400.0);
    assert!(
        took < 4.0,
        "STOP_COMMAND's wait took {took:.3}s with STOP_TIMEOUT 1s: {}",
        m.dump()
    );
    fs::write(&fault, "ok").unwrap();
    foreign.signal(15);
    let _ = foreign.wait_exit(SHORT);
}

// ---------------------------------------------------------------------------
// Item 10: the one-monitor lock

fn lock_name(log_dir: &Path) -> SocketAddr {
    let canonical = fs::canonicalize(log_dir).unwrap();
    let mut name = b"server-monitor:".to_vec();
    name.extend_from_slice(canonical.as_os_str().as_encoded_bytes());
    assert!(
        name.len() <= 100,
        "the test dir path is too long for this test"
    );
    SocketAddr::from_abstract_name(name).unwrap()
}

fn starts_despite(dir: &TestDir, port: u16, what: &str) {
    let m = Monitor::start(dir, &settings(port, &[]), &demo_server_args(port, &[]));
    let server = wait_running(&m, port);
    assert!(
        !m.stderr().contains("already running"),
        "{what}: {}",
        m.dump()
    );
    drop(m);
    assert!(
        wait_until(SHORT, "the server to go", || !pid_alive(server)),
        "{what}"
    );
}

#[test]
fn another_process_holding_the_abstract_lock_name_does_not_block_the_monitor() {
    let dir = TestDir::new("proc-lock-squat");
    fs::create_dir_all(dir.join("logs")).unwrap();
    let addr = lock_name(&dir.join("logs"));
    let port = free_port();
    {
        let _squat = UnixDatagram::bind_addr(&addr).expect("bind the name");
        starts_despite(&dir, port, "a datagram socket holds the name");
    }
    {
        let _squat = UnixListener::bind_addr(&addr).expect("bind the name");
        starts_despite(&dir, port, "a listening socket holds the name");
    }
}

#[test]
fn two_monitors_at_once_the_loser_names_the_winner() {
    let port = free_port();
    let env = settings(port, &[("LOG_LEVEL", "info")]);
    for round in 0..8 {
        let dir = TestDir::new(&format!("proc-lock-race-{round}"));
        let mut a = Monitor::start(&dir, &env, &[]);
        let mut b = Monitor::start(&dir, &env, &[]);
        let deadline = Instant::now() + LONG;
        let (loser, winner) = loop {
            if a.wait_exit(Duration::from_millis(20)).is_some() {
                break (&mut a, b.pid());
            }
            if b.wait_exit(Duration::from_millis(20)).is_some() {
                break (&mut b, a.pid());
            }
            assert!(Instant::now() < deadline, "neither monitor exited");
        };
        let stderr = loser.stderr();
        assert_eq!(
            loser.wait_exit(SHORT).and_then(|s| s.code()),
            Some(1),
            "{stderr}"
        );
        assert!(
            stderr.contains("already running") && stderr.contains(&format!("(pid {winner})")),
            "round {round}: the loser names the winner {winner}: {stderr}"
        );
    }
}

// ---------------------------------------------------------------------------
// Items 13 and 15: what the server inherits

#[test]
fn secrets_and_systemd_variables_do_not_reach_the_server() {
    let dir = TestDir::new("proc-environ");
    let port = free_port();
    let env = settings(
        port,
        &[
            ("SMTP_PASSWORD", "hunter2-secret"),
            ("SMTP_USERNAME", "mailuser-secret"),
            ("ALERT_WEBHOOK_URL", "http://127.0.0.1:9/hook-secret"),
            ("HEARTBEAT_URL", "http://127.0.0.1:9/beat-secret"),
            ("STATUS_TOKEN", "token-secret-0123456789"),
            ("LISTEN_FDS", "2"),
            ("LISTEN_PID", "1"),
            ("APP_SETTING", "kept-for-the-app"),
        ],
    );
    let m = Monitor::start(&dir, &env, &demo_server_args(port, &[]));
    let server = wait_running(&m, port);
    let seen = environ(server);
    assert!(seen.contains("APP_SETTING=kept-for-the-app"), "{seen}");
    for var in [
        "SMTP_PASSWORD",
        "SMTP_USERNAME",
        "ALERT_WEBHOOK_URL",
        "HEARTBEAT_URL",
        "STATUS_TOKEN",
        "LISTEN_FDS",
        "LISTEN_PID",
    ] {
        assert!(
            !seen.lines().any(|l| l.starts_with(&format!("{var}="))),
            "{var} reached the server: {seen}"
        );
    }
    assert!(!seen.contains("secret"), "{seen}");
}

#[test]
fn file_descriptors_inherited_by_the_monitor_do_not_reach_the_server() {
    let dir = TestDir::new("proc-fds");
    let port = free_port();
    let leaked = dir.join("inherited-fd");
    let mut args = vec![
        "-c".to_string(),
        format!("exec 7>'{}'; exec \"$0\" \"$@\"", leaked.display()),
        MONITOR_BIN.to_string(),
        "--".to_string(),
    ];
    args.extend(demo_server_args(port, &[]));
    let m = Monitor::start_program(&dir, &settings(port, &[]), "sh", &args);
    let server = wait_running(&m, port);
    // The monitor itself got fd 7 (the test's premise) ...
    let target = |pid: u32, fd: &str| fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok();
    assert_eq!(target(m.pid(), "7"), Some(leaked.clone()), "{}", m.dump());
    // ... the server and the log writers hold no descriptor of that file.
    let holders = |pid: u32| -> Vec<String> {
        fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| {
                d.flatten()
                    .filter(|e| fs::read_link(e.path()).ok().as_deref() == Some(leaked.as_path()))
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert!(
        holders(server).is_empty(),
        "server fds {:?}",
        holders(server)
    );
    assert!(target(server, "7").is_none(), "server has fd 7");
    // The log writers: the monitor's other children.
    let children = fs::read_to_string(format!("/proc/{}/task/{}/children", m.pid(), m.pid()))
        .unwrap_or_default();
    let children: Vec<u32> = children
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    assert!(children.len() >= 3, "server and two writers: {children:?}");
    for child in children {
        assert!(
            holders(child).is_empty(),
            "child {child} ({}) holds it",
            cmdline(child)
        );
    }
}

/// Item 15: a panic must not leave the server unmanaged. The monitor's panic
/// hook re-executes it in place (same pid), and the new monitor adopts the
/// server — the same process, still managed: a later crash is restarted.
#[test]
fn a_panic_reexecutes_the_monitor_which_adopts_the_server() {
    let dir = TestDir::new("panic-reexec");
    let port = free_port();
    let env = settings(port, &[("SERVER_MONITOR_TEST_PANIC_AT_CHECK", "5")]);
    let m = Monitor::start(&dir, &env, &demo_server_args(port, &[]));
    let server = wait_running(&m, port);
    m.wait_for(LONG, "the monitor re-executed after the test panic", || {
        count_logged(m.log_dir(), "re-executed after a panic") == 1
            && count_logged(m.log_dir(), "adopted the server") == 1
    });
    assert!(
        pid_alive(m.pid()),
        "the monitor (same pid) runs on\n{}",
        m.dump()
    );
    assert_eq!(m.server_pid(), Some(server), "{}", m.dump());
    assert!(pid_alive(server) && healthy(port), "{}", m.dump());
    assert_eq!(
        count_logged(m.log_dir(), "server started"),
        1,
        "{}",
        m.dump()
    );
    // Still managed: a crash of the adopted server is restarted.
    assert!(signal_pid(server, 9));
    let mut new = None;
    m.wait_for(LONG, "a new server after kill -9", || {
        new = m.server_pid().filter(|&p| p != server);
        new.is_some_and(pid_alive) && healthy(port)
    });
    assert!(pid_alive(m.pid()), "{}", m.dump());
}
