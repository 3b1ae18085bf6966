//! Running as a system service: sd_notify against a socket the test holds
//! (playing systemd), planned restarts through `server-monitor restart`, the
//! install script into a temporary DESTDIR, and `systemd-analyze verify` on
//! the unit files.

use std::fs;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::*;

const SHORT: Duration = Duration::from_secs(5);
const LONG: Duration = Duration::from_secs(15);

fn settings(port: u16, extra: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    let env: Vec<(&'static str, String)> = vec![
        ("LOG_DIR", "logs".into()),
        ("HEALTH_URL", format!("http://127.0.0.1:{port}/health")),
        ("CHECK_INTERVAL", "0.2".into()),
        ("HEALTH_TIMEOUT", "1".into()),
        ("STOP_TIMEOUT", "1".into()),
        ("STARTUP_TIMEOUT", "3".into()),
        ("LOG_LEVEL", "debug".into()),
    ];
    with_overrides(env, extra)
}

fn healthy(port: u16) -> bool {
    http_get(port, "/health", Duration::from_secs(2)).is_some_and(|(s, _)| s == 200)
}

/// Receives datagrams until `want` has been seen or `timeout` passes;
/// returns everything received.
fn receive_until(
    sock: &UnixDatagram,
    timeout: Duration,
    mut want: impl FnMut(&str) -> bool,
) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            let done = want(&msg);
            got.push(msg);
            if done {
                return got;
            }
        }
    }
    got
}

fn environ(pid: u32) -> String {
    String::from_utf8_lossy(&fs::read(format!("/proc/{pid}/environ")).unwrap_or_default())
        .replace('\0', "\n")
}

/// Plays systemd: READY=1 only once the server answers healthy, STATUS lines,
/// WATCHDOG=1 at half of WATCHDOG_USEC, STOPPING=1 on SIGTERM; the server
/// does not inherit the notify socket.
fn plays_systemd(socket: UnixDatagram, notify_socket: String, dir: &TestDir) {
    let port = free_port();
    let env = settings(
        port,
        &[
            ("NOTIFY_SOCKET", notify_socket),
            ("WATCHDOG_USEC", "200000".into()),
            // A slow server: READY must wait for it.
        ],
    );
    let mut m = Monitor::start(
        dir,
        &env,
        &demo_server_args(port, &["--startup-delay", "0.5"]),
    );
    let got = receive_until(&socket, LONG, |msg| msg.contains("READY=1"));
    let ready = got.iter().find(|m| m.contains("READY=1"));
    assert!(ready.is_some(), "no READY=1: {got:?}\n{}", m.dump());
    assert!(
        healthy(port),
        "READY=1 before the server was healthy\n{}",
        m.dump()
    );
    assert!(ready.unwrap().contains("STATUS="), "{got:?}");
    let server = m.server_pid().expect("server.pid");
    let env_of_server = environ(server);
    assert!(!env_of_server.contains("NOTIFY_SOCKET"), "{env_of_server}");
    assert!(!env_of_server.contains("WATCHDOG_USEC"), "{env_of_server}");

    // Pings every ~100 ms: at least 5 in a second.
    let t = Instant::now();
    let mut pings = 0;
    let got = receive_until(&socket, Duration::from_secs(1), |msg| {
        if msg == "WATCHDOG=1" {
            pings += 1;
        }
        false
    });
    assert!(
        pings >= 5 && t.elapsed() >= Duration::from_millis(900),
        "{pings} pings in {:?}: {got:?}",
        t.elapsed()
    );

    // A crash shows up as STATUS changes and nothing else breaks the pings.
    assert!(m.signal(libc::SIGTERM));
    let got = receive_until(&socket, SHORT, |msg| msg.contains("STOPPING=1"));
    assert!(
        got.iter().any(|m| m.contains("STOPPING=1")),
        "{got:?}\n{}",
        m.dump()
    );
    let status = m.wait_exit(SHORT).expect("the monitor exits on SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", m.dump());
}

#[test]
fn sd_notify_over_a_path_socket() {
    let dir = TestDir::new("notify-path");
    let path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    plays_systemd(socket, path.to_str().unwrap().to_string(), &dir);
}

#[test]
fn sd_notify_over_an_abstract_socket() {
    let dir = TestDir::new("notify-abstract");
    let name = format!("server-monitor-test-{}-{}", std::process::id(), free_port());
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let socket = UnixDatagram::bind_addr(&addr).unwrap();
    plays_systemd(socket, format!("@{name}"), &dir);
}

fn state(log_dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(log_dir.join("server_monitor.state.json")).unwrap_or_default())
        .unwrap_or_default()
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

#[test]
fn restart_subcommand_restarts_verified_without_alert_or_attempt() {
    let dir = TestDir::new("planned-restart");
    let port = free_port();
    // A long cooldown: a planned restart ignores it.
    let env = settings(port, &[("RESTART_COOLDOWN", "600".into())]);
    let m = Monitor::start(&dir, &env, &demo_server_args(port, &[]));
    m.wait_for(LONG, "a verified server", || {
        state(m.log_dir())["phase"] == "running" && healthy(port)
    });
    let old = m.server_pid().unwrap();

    let out = run(&dir, &env, &["restart"], LONG);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", m.dump());
    let new = m.server_pid().expect("a new server.pid");
    assert_ne!(new, old, "{}", m.dump());
    assert!(stdout.contains(&format!("pid {new}")), "{stdout}");
    assert!(!pid_alive(old), "the old server is gone");
    assert!(healthy(port));

    // A second planned restart right away: the cooldown does not apply.
    let out = run(&dir, &env, &["restart"], LONG);
    assert_eq!(out.status.code(), Some(0), "{}", m.dump());
    assert_ne!(m.server_pid(), Some(new));

    let s = state(m.log_dir());
    assert_eq!(s["restart_attempts"], 0, "not an attempt: {s}");
    assert_eq!(s["planned_restart"]["outcome"], "ok", "{s}");
    assert!(
        alert_files(m.log_dir()).is_empty(),
        "no alert: {:?}",
        alert_files(m.log_dir())
    );
    let log = read_lossy(&m.log_dir().join("server_monitor.log"));
    let asked: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("planned restart requested"))
        .collect();
    assert_eq!(asked.len(), 2, "{log}");
    assert!(
        asked[0].contains("(uid "),
        "who asked is logged: {}",
        asked[0]
    );
}

#[test]
fn restart_subcommand_without_monitor_exits_3() {
    let dir = TestDir::new("planned-restart-none");
    let out = run(&dir, &[("LOG_DIR", "logs".into())], &["restart"], SHORT);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no monitor is running"));
}

#[test]
fn failed_planned_restart_exits_1_and_alerts() {
    let dir = TestDir::new("planned-restart-fail");
    let port = free_port();
    let fault = dir.write("fault", "ok");
    let env = settings(
        port,
        &[
            ("STARTUP_TIMEOUT", "1".into()),
            ("RESTART_COOLDOWN", "600".into()),
            // The old server fails its checks too once the fault file says
            // so: no automatic restart may get in before the planned one.
            ("FAILURE_THRESHOLD", "1000".into()),
        ],
    );
    let m = Monitor::start(
        &dir,
        &env,
        &demo_server_args(port, &["--fault-file", fault.to_str().unwrap()]),
    );
    m.wait_for(LONG, "a verified server", || {
        state(m.log_dir())["phase"] == "running" && healthy(port)
    });
    fs::write(&fault, "fail").unwrap();
    let out = run(&dir, &env, &["restart"], LONG);
    assert_eq!(out.status.code(), Some(1), "{out:?}\n{}", m.dump());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("failed"),
        "{out:?}"
    );
    m.wait_for(SHORT, "the Planned Restart Failed alert", || {
        alert_files(m.log_dir())
            .iter()
            .any(|f| f.contains("planned-restart-failed"))
    });
}

#[test]
fn env_file_with_password_readable_by_others_is_warned_about() {
    let dir = TestDir::new("env-file-mode");
    let port = free_port();
    let env_file = dir.write(
        "monitor.env",
        "SMTP_SERVER=127.0.0.1\nSMTP_USERNAME=u@example.com\nSMTP_PASSWORD=made-up-secret\nALERT_EMAIL=a@example.com\n",
    );
    fs::set_permissions(&env_file, fs::Permissions::from_mode(0o644)).unwrap();
    let env = settings(port, &[]);
    let args: Vec<String> = ["--env-file", env_file.to_str().unwrap(), "--"]
        .iter()
        .map(|s| s.to_string())
        .chain(demo_server_args(port, &[]))
        .collect();
    let m = Monitor::start_args(&dir, &env, &args);
    // Until the server is recorded in server.pid, the guard could not stop it.
    m.wait_for(LONG, "the warning and a verified server", || {
        read_lossy(&m.log_dir().join("server_monitor.log")).contains("other users can read it")
            && state(m.log_dir())["phase"] == "running"
    });
    let log = read_lossy(&m.log_dir().join("server_monitor.log"));
    assert!(
        !log.contains("made-up-secret"),
        "the password leaked into the log"
    );
}

#[test]
fn install_script_into_a_destdir() {
    let dir = TestDir::new("install");
    let dest = dir.join("root");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/install.sh");
    let install = || {
        Command::new("bash")
            .args([
                script,
                "--destdir",
                dest.to_str().unwrap(),
                "--prefix",
                "/opt/sm",
            ])
            .args(["--binary", MONITOR_BIN])
            .output()
            .unwrap()
    };
    let out = install();
    assert!(out.status.success(), "{out:?}");
    let mode = |p: &str| fs::metadata(dest.join(p)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("opt/sm/bin/server-monitor"), 0o755);
    assert_eq!(mode("etc/server-monitor/server-monitor.env"), 0o600);
    assert_eq!(mode("etc/systemd/system/server-monitor.service"), 0o644);
    let unit = fs::read_to_string(dest.join("etc/systemd/system/server-monitor@.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/opt/sm/bin/server-monitor --env-file /etc/server-monitor/%i.env"),
        "{unit}"
    );
    // The installed binary runs, and the example env file is valid.
    let cfg = Command::new(dest.join("opt/sm/bin/server-monitor"))
        .args(["config", "--env-file"])
        .arg(dest.join("etc/server-monitor/server-monitor.env"))
        .env_clear()
        .output()
        .unwrap();
    assert!(cfg.status.success(), "{cfg:?}");
    assert!(String::from_utf8_lossy(&cfg.stdout)
        .contains("SERVER_COMMAND=/srv/chatbot/.venv/bin/uvicorn"));
    // A second install keeps the operator's env file.
    fs::write(
        dest.join("etc/server-monitor/server-monitor.env"),
        "CHECK_INTERVAL=5\n",
    )
    .unwrap();
    let out = install();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        fs::read_to_string(dest.join("etc/server-monitor/server-monitor.env")).unwrap(),
        "CHECK_INTERVAL=5\n"
    );
}

/// `systemd-analyze verify` on both units, with ExecStart pointing at the
/// binary under test (verify checks that it exists); any message fails.
#[test]
fn systemd_units_verify_cleanly() {
    let dir = TestDir::new("units");
    let found = Command::new("systemd-analyze").arg("--version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "systemd-analyze is missing: install the `systemd` package (Debian) to run this test"
    );
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts");
    let mut units = Vec::new();
    for (from, to) in [
        ("server-monitor.service", "server-monitor.service"),
        ("server-monitor@.service", "server-monitor@api.service"),
    ] {
        let text = fs::read_to_string(format!("{src}/{from}")).unwrap();
        let path = dir.write(
            to,
            text.replace("/usr/local/bin/server-monitor", MONITOR_BIN),
        );
        units.push(path);
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&units)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && text.trim().is_empty(), "{text}");
}

/// LOG_RETENTION_DAYS: rotated logs and alert files older than that are
/// removed at start; live logs, fresh backups and other files stay.
#[test]
fn retention_removes_old_rotated_logs_and_alerts_at_start() {
    let dir = TestDir::new("retention");
    let port = free_port();
    let old = std::time::SystemTime::now() - Duration::from_secs(40 * 86_400);
    let age = |rel: &str| {
        let f = fs::File::options().write(true).open(dir.join(rel)).unwrap();
        f.set_modified(old).unwrap();
    };
    for rel in [
        "logs/server.log.3",
        "logs/server_monitor.log.2",
        "logs/alerts/2025-01-01T00-00-00-000Z-down.eml",
        "logs/notes.txt",
    ] {
        dir.write(rel, "old\n");
        age(rel);
    }
    dir.write("logs/server.log.1", "fresh\n");
    let env = settings(port, &[("LOG_RETENTION_DAYS", "30".into())]);
    let m = Monitor::start(&dir, &env, &demo_server_args(port, &[]));
    // The sweep logs once it is done.
    m.wait_for(LONG, "the sweep", || {
        read_lossy(&m.log_dir().join("server_monitor.log")).contains("LOG_RETENTION_DAYS")
    });
    assert!(!dir.join("logs/server.log.3").exists());
    assert!(!dir.join("logs/server_monitor.log.2").exists());
    assert!(!dir
        .join("logs/alerts/2025-01-01T00-00-00-000Z-down.eml")
        .exists());
    assert!(
        dir.join("logs/server.log.1").exists(),
        "a fresh backup stays"
    );
    assert!(dir.join("logs/notes.txt").exists(), "not ours: stays");
}

/// Issue 8, item 4: the watchdog is fed during a long stop. A server whose
/// process group ignores SIGTERM makes a planned restart wait the whole
/// STOP_TIMEOUT (3 s) before SIGKILL; with WATCHDOG_USEC=1s systemd would
/// kill a monitor that went 1 s without WATCHDOG=1.
#[test]
fn watchdog_is_fed_during_a_long_stop() {
    let dir = TestDir::new("watchdog-stop");
    let path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    let port = free_port();
    let env = settings(
        port,
        &[
            ("NOTIFY_SOCKET", path.to_str().unwrap().to_string()),
            ("WATCHDOG_USEC", "1000000".into()),
            ("STOP_TIMEOUT", "3".into()),
        ],
    );
    // The demo server puts SIGTERM back to the default for itself; the shell
    // and its `sleep` (the group's leader and a member) ignore it.
    let script = format!("trap '' TERM; {} --port {port} & exec sleep 600", DEMO_BIN);
    let m = Monitor::start(&dir, &env, &["sh".into(), "-c".into(), script]);
    m.wait_for(LONG, "a verified server", || {
        state(m.log_dir())["phase"] == "running" && healthy(port)
    });
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let listener = std::thread::spawn(move || {
        let mut pings = Vec::new();
        let mut buf = [0u8; 4096];
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        while !flag.load(std::sync::atomic::Ordering::SeqCst) {
            if let Ok(n) = socket.recv(&mut buf) {
                if &buf[..n] == b"WATCHDOG=1" {
                    pings.push(Instant::now());
                }
            }
        }
        pings
    });
    let t = Instant::now();
    let out = run(&dir, &env, &["restart"], Duration::from_secs(30));
    let took = t.elapsed();
    std::thread::sleep(Duration::from_millis(700));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let pings = listener.join().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", m.dump());
    assert!(
        took >= Duration::from_secs(3),
        "the stop waited STOP_TIMEOUT: {took:?}"
    );
    let log = read_lossy(&m.log_dir().join("server_monitor.log"));
    assert!(log.contains("after STOP_TIMEOUT"), "{log}");
    let gaps: Vec<Duration> = pings.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(pings.len() >= 6, "{} pings in {took:?}", pings.len());
    let worst = gaps.iter().max().copied().unwrap_or_default();
    assert!(
        worst < Duration::from_millis(900),
        "a gap of {worst:?} between WATCHDOG=1 pings during the stop (gaps {gaps:?})\n{}",
        m.dump()
    );
}
