//! What an on-call person hears (issue 11), against the real binary and the
//! real demo server: reminders while given up, flap control, maintenance
//! pauses, and all three across a monitor that is killed and started again.
//!
//! Every test runs on its own free 127.0.0.1 port with compressed settings
//! (ALERT_REMINDER of a second, FLAP_WINDOW of seconds), waits with bounded
//! deadlines, and counts `.eml` files under `LOG_DIR/alerts/` (no channel is
//! configured) and log lines. The guards of `tests/util` stop every process.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::*;

const QUICK: Duration = Duration::from_secs(10);
const SLOW: Duration = Duration::from_secs(40);

const RESTARTED: &str = "[Chatbot Server Alert] Server Restarted Successfully";
const DOWN: &str = "[Chatbot Server Alert] Server Down - Manual Intervention Required";
const RECOVERED: &str = "[Chatbot Server Alert] Server Recovered";
const STILL_DOWN: &str = "[Chatbot Server Alert] Server Still Down - Manual Intervention Required";
const FLAPPING: &str = "[Chatbot Server Alert] Server Flapping";
const STABLE: &str = "[Chatbot Server Alert] Server Stable Again";

fn settings(port: u16, overrides: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    let env: Vec<(&'static str, String)> = vec![
        ("LOG_DIR", "logs".into()),
        ("HEALTH_URL", format!("http://127.0.0.1:{port}/health")),
        ("CHECK_INTERVAL", "0.2".into()),
        ("HEALTH_TIMEOUT", "1".into()),
        ("STARTUP_TIMEOUT", "5".into()),
        ("RESTART_COOLDOWN", "0.5".into()),
        ("STOP_TIMEOUT", "1".into()),
        ("FAILURE_THRESHOLD", "3".into()),
        ("MAX_RESTART_ATTEMPTS", "3".into()),
        ("LOG_LEVEL", "debug".into()),
    ];
    with_overrides(env, overrides)
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

fn log_lines(log_dir: &Path) -> Vec<Value> {
    json_lines(&log_dir.join("server_monitor.log"))
}

fn count_lines(log_dir: &Path, prefix: &str) -> usize {
    log_lines(log_dir)
        .iter()
        .filter(|l| {
            l["message"]
                .as_str()
                .unwrap_or_default()
                .starts_with(prefix)
        })
        .count()
}

fn state(log_dir: &Path) -> Option<Value> {
    let text = fs::read_to_string(log_dir.join("server_monitor.state.json")).ok()?;
    serde_json::from_str(&text).ok()
}

fn phase(log_dir: &Path) -> String {
    state(log_dir)
        .and_then(|s| s["phase"].as_str().map(str::to_string))
        .unwrap_or_default()
}

#[derive(Debug)]
struct Eml {
    subject: String,
    body: String,
}

/// Every `.eml` under `LOG_DIR/alerts/`, oldest first.
fn alerts(log_dir: &Path) -> Vec<Eml> {
    alerts_with_paths(log_dir)
        .into_iter()
        .map(|(_, e)| e)
        .collect()
}

fn parse_eml(path: &Path) -> Eml {
    let text = read_lossy(path).replace("\r\n", "\n");
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let unfolded = head.replace("\n ", " ").replace("\n\t", " ");
    let header = |name: &str| {
        unfolded.lines().find_map(|l| {
            let (key, value) = l.split_once(':')?;
            key.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_string())
        })
    };
    let qp = header("Content-Transfer-Encoding")
        .is_some_and(|e| e.eq_ignore_ascii_case("quoted-printable"));
    let body = if qp {
        decode_quoted_printable(body)
    } else {
        body.to_string()
    };
    Eml {
        subject: header("Subject").unwrap_or_default(),
        body,
    }
}

fn decode_quoted_printable(text: &str) -> String {
    let joined = text.replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'=', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn with_subject(log_dir: &Path, subject: &str) -> Vec<Eml> {
    alerts(log_dir)
        .into_iter()
        .filter(|a| a.subject == subject)
        .collect()
}

fn describe(log_dir: &Path) -> String {
    alerts(log_dir)
        .iter()
        .map(|a| format!("{}\n{}\n", a.subject, a.body))
        .collect()
}

/// Milliseconds since the epoch of a `2026-11-28T08:44:00.060Z` timestamp.
fn epoch_millis(timestamp: &str) -> i64 {
    let field = |range: std::ops::Range<usize>| -> i64 {
        timestamp
            .get(range)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad timestamp {timestamp:?}"))
    };
    let (y, m, d) = (field(0..4), field(5..7), field(8..10));
    let (hh, mm, ss, ms) = (field(11..13), field(14..16), field(17..19), field(20..23));
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    ((days * 24 + hh) * 60 + mm) * 60_000 + ss * 1000 + ms
}

/// The times (ms since the epoch) of the alerts of `subject`, from the
/// `.eml` names (`2026-12-01T23-58-00-123Z-still-down.eml`: the alert's
/// time), oldest first. Not from the log: a killed monitor's last lines may
/// not have reached it.
fn queued_at(log_dir: &Path, subject: &str) -> Vec<i64> {
    alerts_with_paths(log_dir)
        .into_iter()
        .filter(|(_, a)| a.subject == subject)
        .map(|(p, _)| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            let stamp = &name[..24];
            let iso = format!(
                "{}:{}:{}.{}",
                &stamp[..13],
                &stamp[14..16],
                &stamp[17..19],
                &stamp[20..]
            );
            epoch_millis(&iso)
        })
        .collect()
}

fn alerts_with_paths(log_dir: &Path) -> Vec<(PathBuf, Eml)> {
    let Ok(entries) = fs::read_dir(log_dir.join("alerts")) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| (p.clone(), parse_eml(&p)))
        .collect()
}

fn wait_running(m: &Monitor) -> u32 {
    m.wait_for(QUICK, "the server to be started and verified", || {
        phase(m.log_dir()) == "running" && m.server_pid().is_some_and(pid_alive)
    });
    m.server_pid().expect("server.pid")
}

fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A server of our own that fails its checks, watched by a monitor with no
/// SERVER_COMMAND and ALERT_REMINDER `reminder`.
fn watch_failing(dir: &TestDir, reminder: &str) -> (DemoServer, Vec<(&'static str, String)>) {
    let fault = dir.write("fault", "fail\n");
    let demo = DemoServer::start(dir, &["--fault-file", path_str(&fault)]);
    let env = settings(demo.port(), &[("ALERT_REMINDER", reminder)]);
    (demo, env)
}

// ---------------------------------------------------------------------------
// Reminders

#[test]
fn reminders_arrive_on_time_at_most_five() {
    let dir = TestDir::new("oncall-reminders");
    let (_demo, env) = watch_failing(&dir, "0.5");
    let m = Monitor::start(&dir, &env, &[]);
    let log = m.log_dir().to_path_buf();
    m.wait_for(SLOW, "five reminders", || {
        with_subject(&log, STILL_DOWN).len() >= 5
    });
    // Time for a sixth to show up, if one were (wrongly) coming: the fifth
    // gap would be 16 s; wait well past any loop latency.
    std::thread::sleep(Duration::from_secs(3));
    let down = queued_at(&log, DOWN);
    assert_eq!(down.len(), 1, "{}", describe(&log));
    let at: Vec<i64> = queued_at(&log, STILL_DOWN)
        .iter()
        .map(|t| t - down[0])
        .collect();
    assert_eq!(at.len(), 5, "at most five: {at:?}\n{}", m.dump());
    // 0.5 s, then doubling gaps: 1.5, 3.5, 7.5, 15.5 s after the Down.
    for (got, want) in at.iter().zip([500, 1500, 3500, 7500, 15500]) {
        assert!(
            *got >= want - 20 && *got < want + 1500,
            "reminder at {got} ms, due at {want} ms: {at:?}"
        );
    }
    let r = with_subject(&log, STILL_DOWN);
    assert!(
        r[0].body.starts_with("Server has been down for "),
        "{}",
        r[0].body
    );
    assert!(r[0].body.contains("Reminder 1 of 5"), "{}", r[0].body);
    assert!(r[4]
        .body
        .contains("This is the last reminder: no more follow"));
    assert!(!r[3].body.contains("last reminder"));
    assert!(r[0].body.contains("Host: ") && r[0].body.contains("Health URL: "));
}

#[test]
fn reminders_stop_on_recovery() {
    let dir = TestDir::new("oncall-reminders-recovery");
    let (_demo, env) = watch_failing(&dir, "1");
    let m = Monitor::start(&dir, &env, &[]);
    let log = m.log_dir().to_path_buf();
    m.wait_for(SLOW, "two reminders", || {
        with_subject(&log, STILL_DOWN).len() >= 2
    });
    dir.write("fault", "ok\n");
    m.wait_for(QUICK, "Server Recovered", || {
        !with_subject(&log, RECOVERED).is_empty()
    });
    let n = with_subject(&log, STILL_DOWN).len();
    assert_eq!(n, 2, "{}", describe(&log));
    // The third would have been due 4 s after the second.
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(
        with_subject(&log, STILL_DOWN).len(),
        2,
        "{}",
        describe(&log)
    );
    assert_eq!(with_subject(&log, RECOVERED).len(), 1);
}

#[test]
fn a_killed_monitor_started_again_keeps_the_reminder_schedule() {
    let dir = TestDir::new("oncall-reminders-resume");
    let (_demo, env) = watch_failing(&dir, "1");
    let mut m1 = Monitor::start(&dir, &env, &[]);
    let log = m1.log_dir().to_path_buf();
    m1.wait_for(SLOW, "two reminders", || {
        with_subject(&log, STILL_DOWN).len() >= 2
    });
    // The state file has it too (a monitor killed between an alert and the
    // next state write sends that reminder again: at least once).
    m1.wait_for(QUICK, "two reminders in the state file", || {
        state(&log).is_some_and(|s| s["escalation"]["incident"]["reminders_sent"] == 2)
    });
    let down = queued_at(&log, DOWN)[0];
    assert!(m1.signal(libc::SIGKILL));
    assert!(m1.wait_exit(QUICK).is_some(), "{}", m1.dump());
    let m2 = Monitor::start(&dir, &env, &[]);
    m2.wait_for(SLOW, "the third reminder", || {
        with_subject(&log, STILL_DOWN).len() >= 3
    });
    assert_eq!(
        with_subject(&log, DOWN).len(),
        1,
        "no second Down: {}",
        describe(&log)
    );
    let third = *queued_at(&log, STILL_DOWN).last().unwrap() - down;
    // Due 7 s after the Down (1 + 2 + 4), not 1 s after the new start.
    assert!(
        (6980..9000).contains(&third),
        "third reminder {third} ms after the Down\n{}",
        m2.dump()
    );
    let r = with_subject(&log, STILL_DOWN);
    assert!(r[2].body.contains("Reminder 3 of 5"), "{}", r[2].body);
}

// ---------------------------------------------------------------------------
// Flapping

#[test]
fn a_flapping_server_sends_one_flapping_and_one_stable_again_alert() {
    let dir = TestDir::new("oncall-flapping");
    let port = free_port();
    let env = settings(
        port,
        &[
            ("FLAP_RESTARTS", "3"),
            ("FLAP_WINDOW", "8"),
            ("ALERT_REMINDER", "0"),
        ],
    );
    let m = Monitor::start(&dir, &env, &demo_server_args(port, &[]));
    let log = m.log_dir().to_path_buf();
    let mut pid = wait_running(&m);
    // The server dies five times, a little over a second apart: each death
    // is restarted (and the attempts reset after the 0.5 s cooldown).
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(1200));
        let _ = http_get(port, "/crash", Duration::from_secs(2));
        m.wait_for(QUICK, "the crashed server to be restarted", || {
            phase(&log) == "running" && m.server_pid().is_some_and(|p| p != pid && pid_alive(p))
        });
        pid = m.server_pid().unwrap();
    }
    assert_eq!(with_subject(&log, FLAPPING).len(), 1, "{}", describe(&log));
    assert_eq!(with_subject(&log, STABLE).len(), 0, "not yet");
    // FLAP_WINDOW / 2 = 4 s without a restart: Stable Again.
    m.wait_for(QUICK, "Server Stable Again", || {
        !with_subject(&log, STABLE).is_empty()
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        count_lines(&log, "restarting the server"),
        5,
        "{}",
        m.dump()
    );
    assert_eq!(with_subject(&log, FLAPPING).len(), 1, "{}", describe(&log));
    assert_eq!(with_subject(&log, STABLE).len(), 1, "{}", describe(&log));
    // Two per-restart alerts before the third restart made it flapping;
    // the other three were suppressed, logged and counted.
    assert_eq!(with_subject(&log, RESTARTED).len(), 2, "{}", describe(&log));
    assert_eq!(
        count_lines(
            &log,
            "alert \"Server Restarted Successfully\" not sent (suppressed)"
        ),
        3
    );
    let s = state(&log).unwrap();
    assert_eq!(s["escalation"]["alerts_suppressed_total"], 3, "{s}");
    let flap = &with_subject(&log, FLAPPING)[0];
    assert!(
        flap.body
            .starts_with("Server restarted 3 times in the last 8s.\n  20"),
        "{}",
        flap.body
    );
    assert!(
        flap.body.contains("process exited with status 1"),
        "{}",
        flap.body
    );
    let stable = &with_subject(&log, STABLE)[0];
    assert!(
        stable.body.contains("It was restarted 5 times"),
        "{}",
        stable.body
    );
}

// ---------------------------------------------------------------------------
// Pause

#[test]
fn pause_and_resume_without_a_monitor_exit_3() {
    let dir = TestDir::new("oncall-pause-none");
    let env = settings(free_port(), &[]);
    for args in [&["pause"][..], &["pause", "--for", "5m"], &["resume"]] {
        let out = run(&dir, &env, args, QUICK);
        assert_eq!(
            out.status.code(),
            Some(3),
            "{args:?}: {}",
            output_text(&out)
        );
    }
}

#[test]
fn paused_server_killed_is_not_restarted_until_resume() {
    let dir = TestDir::new("oncall-pause");
    let port = free_port();
    let env = settings(port, &[]);
    let m = Monitor::start(&dir, &env, &demo_server_args(port, &[]));
    let log = m.log_dir().to_path_buf();
    let pid = wait_running(&m);
    let out = run(&dir, &env, &["pause"], QUICK);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        output_text(&out),
        m.dump()
    );
    assert!(
        output_text(&out).contains("paused (until resume, by "),
        "{}",
        output_text(&out)
    );
    let status = run(&dir, &env, &["status"], QUICK);
    let text = output_text(&status);
    assert!(
        text.contains("state:          paused (until resume, by "),
        "{text}"
    );
    // Kill the server: no restart, no alert, checks go on and are logged.
    assert!(signal_group(pid, libc::SIGKILL));
    let checks = count_lines(&log, "health check failed");
    let t = Instant::now();
    m.wait_for(QUICK, "failed checks while paused", || {
        count_lines(&log, "health check failed") >= checks + 10
    });
    std::thread::sleep(Duration::from_secs(1).saturating_sub(t.elapsed()));
    assert_eq!(
        count_lines(&log, "restarting the server"),
        0,
        "{}",
        m.dump()
    );
    assert_eq!(count_lines(&log, "server started"), 1);
    assert!(alerts(&log).is_empty(), "{}", describe(&log));
    assert_eq!(
        count_lines(&log, "restart due ("),
        1,
        "the held restart is logged once"
    );
    // Resume: the exited server is restarted at once.
    let out = run(&dir, &env, &["resume"], QUICK);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        output_text(&out),
        m.dump()
    );
    let new = wait_running(&m);
    assert_ne!(new, pid);
    assert_eq!(count_lines(&log, "server started"), 2);
    assert!(state(&log).unwrap()["pause"].is_null());
    let status = output_text(&run(&dir, &env, &["status"], QUICK));
    assert!(!status.contains("paused"), "{status}");
    // A resume while not paused is taken too (and changes nothing).
    let out = run(&dir, &env, &["resume"], QUICK);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(
        count_lines(&log, "planned restart"),
        0,
        "a pause request is no restart"
    );
}

#[test]
fn a_killed_monitor_started_again_keeps_the_pause_until_it_runs_out() {
    let dir = TestDir::new("oncall-pause-resume");
    let port = free_port();
    let env = settings(port, &[]);
    let mut m1 = Monitor::start(&dir, &env, &demo_server_args(port, &[]));
    let log = m1.log_dir().to_path_buf();
    let pid = wait_running(&m1);
    let out = run(&dir, &env, &["pause", "--for", "6s"], QUICK);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        output_text(&out),
        m1.dump()
    );
    let paused_at = Instant::now();
    assert!(m1.signal(libc::SIGKILL));
    assert!(m1.wait_exit(QUICK).is_some());
    let m2 = Monitor::start(&dir, &env, &demo_server_args(port, &[]));
    m2.wait_for(QUICK, "the pause taken over", || {
        count_lines(&log, "paused (until 20") >= 1
    });
    let text = output_text(&run(&dir, &env, &["status"], QUICK));
    assert!(text.contains("paused (until 20"), "{text}");
    // The adopted server dies while paused: not restarted before the end.
    assert!(signal_group(pid, libc::SIGKILL));
    m2.wait_for(SLOW, "the restart after the pause ran out", || {
        count_lines(&log, "restarting the server") >= 1
    });
    assert!(
        paused_at.elapsed() >= Duration::from_millis(5900),
        "restarted {:?} after the pause began\n{}",
        paused_at.elapsed(),
        m2.dump()
    );
    assert_eq!(count_lines(&log, "the pause has ended"), 1, "{}", m2.dump());
    wait_running(&m2);
    assert!(with_subject(&log, DOWN).is_empty(), "{}", describe(&log));
}

#[test]
fn systemd_status_line_says_paused() {
    use std::os::unix::net::UnixDatagram;
    let dir = TestDir::new("oncall-pause-systemd");
    let path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let port = free_port();
    let env = with_overrides(
        settings(port, &[]),
        &[("NOTIFY_SOCKET", path_str(&path).to_string())],
    );
    let m = Monitor::start(&dir, &env, &demo_server_args(port, &[]));
    wait_running(&m);
    let out = run(&dir, &env, &["pause", "--for", "10m"], QUICK);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        output_text(&out),
        m.dump()
    );
    let deadline = Instant::now() + QUICK;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            if msg.contains("STATUS=paused (until 20") && msg.contains(", by ") {
                return;
            }
            got.push(msg);
        }
    }
    panic!("no paused STATUS line: {got:?}\n{}", m.dump());
}
