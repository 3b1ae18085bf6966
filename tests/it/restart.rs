//! The restart behaviour of the real `server-monitor` driving the real demo
//! server (SPEC.md "How it behaves" 1–5, "Alerts"): the first start, a death
//! seen at once, a hang counted to `FAILURE_THRESHOLD`, the attempt limit and
//! the give-up alert, the cooldown between restarts, a crash loop, the
//! server's grandchildren, and watch-only / foreign servers.
//!
//! Every test runs on its own free 127.0.0.1 port with sub-second settings
//! ([`settings`]), waits with generous but bounded deadlines, and asserts
//! orders and counts (log lines, `.eml` files, pids) rather than exact
//! timings. No email channel is configured, so every alert is an `.eml` file
//! under `LOG_DIR/alerts/`. The guards of `tests/util` stop every process,
//! pass or fail; a failed wait or assertion prints the monitor's dump.
//!
//! Not here: adoption by a second monitor, shutdown, planned restarts, log
//! rotation (other files under `tests/it/`).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::util::*;

/// The deadline of a wait for something that takes well under a second
/// when the machine is idle.
const QUICK: Duration = Duration::from_secs(5);
/// The deadline of a wait that spans several checks or restarts.
const SLOW: Duration = Duration::from_secs(15);
/// Five check intervals: long enough for something unwanted to show up.
const A_FEW_CHECKS: Duration = Duration::from_millis(1000);

const RESTARTED: &str = "[Chatbot Server Alert] Server Restarted Successfully";
const DOWN: &str = "[Chatbot Server Alert] Server Down - Manual Intervention Required";
const RECOVERED: &str = "[Chatbot Server Alert] Server Recovered";

// ---------------------------------------------------------------------------
// Helpers

/// Sub-second settings for a server on `port`, then `overrides`.
fn settings(port: u16, overrides: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    let env: Vec<(&'static str, String)> = vec![
        ("LOG_DIR", "logs".into()),
        ("HEALTH_URL", format!("http://127.0.0.1:{port}/health")),
        ("CHECK_INTERVAL", "0.2".into()),
        ("HEALTH_TIMEOUT", "1".into()),
        ("STARTUP_TIMEOUT", "3".into()),
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

/// The monitor's own log, parsed.
fn log_lines(m: &Monitor) -> Vec<Value> {
    json_lines(&m.log_dir().join("server_monitor.log"))
}

fn message(line: &Value) -> &str {
    line["message"].as_str().unwrap_or_default()
}

/// The log lines whose message starts with `prefix`.
fn lines_starting(m: &Monitor, prefix: &str) -> Vec<Value> {
    log_lines(m)
        .into_iter()
        .filter(|l| message(l).starts_with(prefix))
        .collect()
}

fn count_lines(m: &Monitor, prefix: &str) -> usize {
    lines_starting(m, prefix).len()
}

/// "restarting the server", with attempt, max_attempts and cause in extra.
const RESTARTING: &str = "restarting the server";
/// "server started" (pid in extra), the first start and every restart.
const STARTED: &str = "server started";

/// The pids of every "server started" line, in order.
fn started_pids(m: &Monitor) -> Vec<u64> {
    lines_starting(m, STARTED)
        .iter()
        .map(|l| l["extra"]["pid"].as_u64().expect("extra.pid"))
        .collect()
}

/// The state file, if it is there and parses.
fn state(m: &Monitor) -> Option<Value> {
    let text = fs::read_to_string(m.log_dir().join("server_monitor.state.json")).ok()?;
    serde_json::from_str(&text).ok()
}

fn phase(m: &Monitor) -> String {
    state(m)
        .and_then(|s| s["phase"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// One alert written as an `.eml` file.
#[derive(Debug)]
struct Eml {
    path: PathBuf,
    subject: String,
    body: String,
}

/// Every `.eml` under `LOG_DIR/alerts/`, oldest first (the names begin with
/// the time). A `.tmp` being written is not one.
fn alerts(m: &Monitor) -> Vec<Eml> {
    let Ok(entries) = fs::read_dir(m.log_dir().join("alerts")) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    paths.sort();
    paths.into_iter().map(|p| parse_eml(&p)).collect()
}

/// The subject (headers unfolded) and the body (LF line ends) of an `.eml`.
fn parse_eml(path: &Path) -> Eml {
    let text = read_lossy(path).replace("\r\n", "\n");
    let (head, body) = text.split_once("\n\n").unwrap_or_else(|| {
        panic!(
            "{}: no blank line after the headers:\n{text}",
            path.display()
        )
    });
    let unfolded = head.replace("\n ", " ").replace("\n\t", " ");
    let header = |name: &str| {
        unfolded.lines().find_map(|l| {
            let (key, value) = l.split_once(':')?;
            key.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_string())
        })
    };
    let subject =
        header("Subject").unwrap_or_else(|| panic!("{}: no Subject:\n{text}", path.display()));
    // Long lines (a deep path in server_error.log) make it quoted-printable.
    let body = match header("Content-Transfer-Encoding").as_deref() {
        None | Some("7bit" | "8bit") => body.to_string(),
        Some(e) if e.eq_ignore_ascii_case("quoted-printable") => decode_quoted_printable(body),
        Some(other) => panic!("{}: cannot read a {other} body:\n{text}", path.display()),
    };
    Eml {
        path: path.to_path_buf(),
        subject,
        body,
    }
}

/// Undoes quoted-printable (RFC 2045): `=` line ends and `=XX` bytes.
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

fn alerts_with(m: &Monitor, subject: &str) -> Vec<Eml> {
    alerts(m)
        .into_iter()
        .filter(|a| a.subject == subject)
        .collect()
}

/// A short listing of the alerts, for assertion messages.
fn describe_alerts(m: &Monitor) -> String {
    alerts(m)
        .iter()
        .map(|a| format!("{}: {}\n{}\n", a.path.display(), a.subject, a.body))
        .collect()
}

/// Waits until the monitor has started its server and verified it healthy;
/// returns the server's pid.
fn wait_running(m: &Monitor) -> u32 {
    m.wait_for(QUICK, "the server to be started and verified", || {
        phase(m) == "running" && m.server_pid().is_some_and(pid_alive)
    });
    m.server_pid().expect("server.pid")
}

/// Waits until `server.pid` names a live server other than `old`.
fn wait_new_server(m: &Monitor, old: u32, timeout: Duration) -> u32 {
    m.wait_for(timeout, "a new server pid", || {
        m.server_pid().is_some_and(|p| p != old && pid_alive(p))
    });
    m.server_pid().expect("server.pid")
}

/// A pid written by the demo's `--fork-child`, once the file is there.
fn read_grandchild(path: &Path) -> Option<u32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
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
    // Days from civil (Howard Hinnant), for a year after 1970.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    ((days * 24 + hh) * 60 + mm) * 60_000 + ss * 1000 + ms
}

/// Whether `s` is UTC ISO 8601 with milliseconds and `Z`:
/// `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn is_iso8601_millis_z(s: &str) -> bool {
    let pattern = "dddd-dd-ddTdd:dd:dd.dddZ";
    s.len() == pattern.len()
        && s.chars().zip(pattern.chars()).all(|(c, p)| match p {
            'd' => c.is_ascii_digit(),
            _ => c == p,
        })
}

/// Grandchildren a test saw, SIGKILLed at the end if still alive — the
/// monitor's guard only stops the group named by `server.pid`, and a leaked
/// grandchild of an older server is what one of these tests looks for.
struct Grandchildren(Vec<u32>);

impl Drop for Grandchildren {
    fn drop(&mut self) {
        for &pid in &self.0 {
            let ours = fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("--grandchild"));
            if ours && pid_alive(pid) {
                signal_pid(pid, libc::SIGKILL);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Tests

#[test]
fn starts_server_and_reports_healthy() {
    let dir = TestDir::new("restart-start");
    let port = free_port();
    let m = Monitor::start(&dir, &settings(port, &[]), &demo_server_args(port, &[]));
    let pid = wait_running(&m);

    let pid_file = fs::read_to_string(m.log_dir().join("server.pid")).unwrap();
    assert_eq!(pid_file.lines().next(), Some(pid.to_string().as_str()));
    // SPEC: it also holds the command line (for adoption by the next monitor).
    assert!(pid_file.contains(DEMO_BIN), "{pid_file}");
    let s = state(&m).expect("the state file");
    assert_eq!(s["phase"], "running", "{s}");
    assert_eq!(s["server_pid"], pid, "{s}");
    assert_eq!(
        http_get(port, "/health", QUICK).map(|r| r.0),
        Some(200),
        "{}",
        m.dump()
    );

    // The demo's access lines reach server.log through the log writer.
    m.wait_for(QUICK, "access lines in server.log", || {
        read_lossy(&m.log_dir().join("server.log")).contains("GET /health 200 ")
    });
    // A few checks have passed and been logged at DEBUG.
    m.wait_for(QUICK, "a passed check in the log", || {
        count_lines(&m, "health check passed") >= 2
    });

    let lines = log_lines(&m);
    for line in &lines {
        let fields = [
            "timestamp",
            "level",
            "logger",
            "message",
            "module",
            "line",
            "extra",
        ];
        for field in fields {
            assert!(line.get(field).is_some(), "no `{field}` in {line}");
        }
        let timestamp = line["timestamp"].as_str().unwrap_or_default();
        assert!(is_iso8601_millis_z(timestamp), "timestamp of {line}");
        let level = line["level"].as_str().unwrap_or_default();
        assert!(
            ["DEBUG", "INFO", "WARNING", "ERROR"].contains(&level),
            "level of {line}"
        );
        assert!(
            line["logger"].as_str().is_some_and(|s| !s.is_empty()),
            "{line}"
        );
        assert!(line["message"].is_string(), "{line}");
        assert!(
            line["module"].as_str().is_some_and(|s| !s.is_empty()),
            "{line}"
        );
        assert!(line["line"].is_u64() || line["line"].is_null(), "{line}");
        assert!(line["extra"].is_object(), "{line}");
    }
    let started = lines
        .iter()
        .find(|l| message(l).starts_with(STARTED))
        .unwrap_or_else(|| panic!("no start line\n{}", m.dump()));
    assert_eq!(started["level"], "INFO", "{started}");
    assert_eq!(started["extra"]["pid"], pid, "{started}");
    let check = lines
        .iter()
        .find(|l| message(l) == "health check passed")
        .unwrap();
    assert_eq!(check["level"], "DEBUG", "{check}");
    assert!(check["extra"]["latency_ms"].is_number(), "{check}");

    assert!(alerts(&m).is_empty(), "{}", describe_alerts(&m));
    assert_eq!(count_lines(&m, RESTARTING), 0, "{}", m.dump());
}

#[test]
fn crash_kill9_restarts_with_new_pid_and_one_success_alert() {
    let dir = TestDir::new("restart-kill9");
    let port = free_port();
    let m = Monitor::start(&dir, &settings(port, &[]), &demo_server_args(port, &[]));
    let old = wait_running(&m);

    assert!(signal_pid(old, libc::SIGKILL));
    let new = wait_new_server(&m, old, QUICK);
    m.wait_for(QUICK, "the restart to be verified", || {
        alerts_with(&m, RESTARTED).len() == 1 && phase(&m) == "running"
    });
    assert!(!pid_alive(old));
    assert_eq!(http_get(port, "/health", QUICK).map(|r| r.0), Some(200));
    // Time for a second alert or restart to show up, were there one.
    std::thread::sleep(A_FEW_CHECKS);

    let all = alerts(&m);
    assert_eq!(all.len(), 1, "{}\n{}", describe_alerts(&m), m.dump());
    assert_eq!(all[0].subject, RESTARTED);
    assert!(
        all[0].body.starts_with(
            "Server was down for 0 checks.\nAutomatic restart successful.\nServer is now healthy.\n"
        ),
        "{}",
        all[0].body
    );
    assert!(
        all[0].body.contains("\nCause: killed by signal 9"),
        "{}",
        all[0].body
    );
    assert_eq!(count_lines(&m, RESTARTING), 1, "{}", m.dump());
    assert_eq!(m.server_pid(), Some(new), "{}", m.dump());
    let pid_file = fs::read_to_string(m.log_dir().join("server.pid")).unwrap();
    assert!(
        pid_file.contains(DEMO_BIN),
        "the restarted server's command line: {pid_file}"
    );
    let exited = lines_starting(&m, "server exited unexpectedly");
    assert_eq!(exited.len(), 1, "{}", m.dump());
    assert_eq!(exited[0]["level"], "ERROR");
    assert_eq!(exited[0]["extra"]["pid"], old);
    assert_eq!(state(&m).unwrap()["restarts_total"], 1);
}

#[test]
fn hang_restarts_only_after_failure_threshold() {
    let dir = TestDir::new("restart-hang");
    let port = free_port();
    let m = Monitor::start(&dir, &settings(port, &[]), &demo_server_args(port, &[]));
    let old = wait_running(&m);

    assert_eq!(http_get(port, "/hang", QUICK).map(|r| r.0), Some(200));
    // Three checks of HEALTH_TIMEOUT=1 each, then the restart.
    m.wait_for(SLOW, "the restart after the hang", || {
        alerts_with(&m, RESTARTED).len() == 1
    });
    let new = m.server_pid().expect("server.pid");
    assert_ne!(new, old);
    assert!(pid_alive(new) && !pid_alive(old), "{}", m.dump());
    assert_eq!(http_get(port, "/health", QUICK).map(|r| r.0), Some(200));

    let lines = log_lines(&m);
    let restart_at = lines
        .iter()
        .position(|l| message(l).starts_with(RESTARTING))
        .unwrap_or_else(|| panic!("no restart line\n{}", m.dump()));
    let failed: Vec<&Value> = lines[..restart_at]
        .iter()
        .filter(|l| message(l).starts_with("health check failed"))
        .collect();
    assert_eq!(failed.len(), 3, "{}", m.dump());
    for (i, line) in failed.iter().enumerate() {
        assert_eq!(line["level"], "WARNING", "{line}");
        assert_eq!(line["extra"]["failures"], i + 1, "{line}");
        assert_eq!(line["extra"]["reason"], "timed out", "{line}");
    }
    let restart = &lines[restart_at];
    assert_eq!(
        restart["level"], "INFO",
        "SPEC: restarts are INFO: {restart}"
    );
    assert_eq!(restart["extra"]["attempt"], 1, "{restart}");
    assert_eq!(
        restart["extra"]["cause"], "3 failed checks, last: timed out",
        "{restart}"
    );
    let stopped = lines
        .iter()
        .find(|l| message(l) == "server stopped" && l["extra"]["pid"] == old)
        .unwrap_or_else(|| panic!("no stop line for {old}\n{}", m.dump()));
    assert_eq!(
        stopped["extra"]["killed"], false,
        "SIGTERM is enough: {stopped}"
    );

    let restarted = &alerts_with(&m, RESTARTED)[0];
    assert!(
        restarted
            .body
            .starts_with("Server was down for 3 checks.\n"),
        "{}",
        restarted.body
    );
    assert!(
        restarted
            .body
            .contains("\nCause: 3 failed checks, last: timed out\n"),
        "{}",
        restarted.body
    );
    assert_eq!(alerts(&m).len(), 1, "{}", describe_alerts(&m));
}

#[test]
fn stays_broken_gives_up_after_max_attempts_then_recovers() {
    let dir = TestDir::new("restart-give-up");
    let port = free_port();
    let fault = dir.join("fault");
    let m = Monitor::start(
        &dir,
        &settings(port, &[("STARTUP_TIMEOUT", "1.5")]),
        &demo_server_args(port, &["--fault-file", path_str(&fault)]),
    );
    let first = wait_running(&m);

    // Every instance, restarted or not, now answers 503.
    dir.write("fault", "fail\n");
    m.wait_for(SLOW, "the give-up alert", || {
        alerts_with(&m, DOWN).len() == 1 && phase(&m) == "given-up"
    });
    let given_up = m.server_pid();
    // No more restarts once given up, though the checks go on failing.
    let failed_before = count_lines(&m, "health check failed");
    std::thread::sleep(A_FEW_CHECKS);
    assert!(
        count_lines(&m, "health check failed") > failed_before,
        "checks go on\n{}",
        m.dump()
    );
    let restarting = lines_starting(&m, RESTARTING);
    let attempts: Vec<u64> = restarting
        .iter()
        .map(|l| l["extra"]["attempt"].as_u64().unwrap())
        .collect();
    assert_eq!(attempts, [1, 2, 3], "{}", m.dump());
    let mut pids = started_pids(&m);
    assert_eq!(pids.first(), Some(&u64::from(first)));
    pids.dedup();
    assert_eq!(pids.len(), 4, "the first and three restarts\n{}", m.dump());
    // A failed verification leaves the last server running.
    assert_eq!(m.server_pid(), given_up);
    assert!(given_up.is_some_and(pid_alive), "{}", m.dump());
    assert!(
        alerts_with(&m, RESTARTED).is_empty(),
        "{}",
        describe_alerts(&m)
    );

    let down = &alerts_with(&m, DOWN)[0];
    let body: Vec<&str> = down.body.lines().collect();
    assert!(body[0].starts_with("Server has failed "), "{}", down.body);
    assert!(body[0].ends_with(" health checks."), "{}", down.body);
    assert_eq!(body[1], "Restart attempts: 3/3", "{}", down.body);
    assert!(
        body[2].starts_with("Last error: ") && body[2].contains("HTTP 503"),
        "{}",
        down.body
    );
    assert_eq!(body[3], "", "{}", down.body);
    assert_eq!(body[4], "Manual intervention required.", "{}", down.body);

    // Someone fixes it: the running server answers healthy again.
    dir.write("fault", "ok\n");
    m.wait_for(QUICK, "the recovered alert", || {
        alerts_with(&m, RECOVERED).len() == 1
    });
    m.wait_for(QUICK, "the phase to be running", || phase(&m) == "running");
    std::thread::sleep(A_FEW_CHECKS);
    assert_eq!(
        alerts_with(&m, RECOVERED).len(),
        1,
        "{}",
        describe_alerts(&m)
    );
    assert_eq!(alerts_with(&m, DOWN).len(), 1, "{}", describe_alerts(&m));
    assert_eq!(count_lines(&m, RESTARTING), 3, "{}", m.dump());
    assert_eq!(m.server_pid(), given_up, "the same server, not a new one");
    let s = state(&m).unwrap();
    assert_eq!(s["restart_attempts"], 0, "{s}");
    assert_eq!(s["consecutive_failures"], 0, "{s}");
}

#[test]
fn restarts_are_at_least_cooldown_apart() {
    const COOLDOWN_MS: i64 = 1500;
    let dir = TestDir::new("restart-cooldown");
    let port = free_port();
    let m = Monitor::start(
        &dir,
        &settings(
            port,
            &[("RESTART_COOLDOWN", "1.5"), ("MAX_RESTART_ATTEMPTS", "5")],
        ),
        &demo_server_args(port, &[]),
    );
    let mut pid = wait_running(&m);

    // Kill each server as soon as its restart is verified: three restarts.
    for n in 1..=3 {
        assert!(signal_pid(pid, libc::SIGKILL));
        pid = wait_new_server(&m, pid, SLOW);
        m.wait_for(SLOW, "the restart to be verified", || {
            alerts_with(&m, RESTARTED).len() == n && phase(&m) == "running"
        });
    }

    let restarting = lines_starting(&m, RESTARTING);
    assert_eq!(restarting.len(), 3, "{}", m.dump());
    let times: Vec<i64> = restarting
        .iter()
        .map(|l| epoch_millis(l["timestamp"].as_str().unwrap()))
        .collect();
    for pair in times.windows(2) {
        let gap = pair[1] - pair[0];
        // The policy decides on one monotonic clock; the log's wall-clock
        // stamps are taken a moment later and truncated to milliseconds, so
        // allow those few milliseconds. The upper bound says the deferred
        // restart comes when the cooldown allows, not a whole period later.
        assert!(
            gap >= COOLDOWN_MS - 20,
            "restarts {gap} ms apart, cooldown {COOLDOWN_MS} ms\n{}",
            m.dump()
        );
        assert!(
            gap < COOLDOWN_MS + 1500,
            "restarts {gap} ms apart\n{}",
            m.dump()
        );
    }
    // The second and third were held back, and said so.
    assert_eq!(count_lines(&m, "restart due ("), 2, "{}", m.dump());
}

#[test]
fn crash_loop_reaches_give_up() {
    let dir = TestDir::new("restart-crash-loop");
    let port = free_port();
    let fault = dir.join("fault");
    let m = Monitor::start(
        &dir,
        &settings(port, &[("RESTART_COOLDOWN", "0.3")]),
        &demo_server_args(port, &["--fault-file", path_str(&fault)]),
    );
    wait_running(&m);

    // The running server exits 1 at its next /health; every restart exits 1
    // at start-up.
    dir.write("fault", "crash\n");
    m.wait_for(SLOW, "the give-up alert", || {
        alerts_with(&m, DOWN).len() == 1
    });
    std::thread::sleep(A_FEW_CHECKS);

    assert_eq!(count_lines(&m, RESTARTING), 3, "{}", m.dump());
    assert_eq!(count_lines(&m, STARTED), 4, "{}", m.dump());
    let failed = lines_starting(&m, "server failed verification");
    assert_eq!(failed.len(), 3, "{}", m.dump());
    for line in &failed {
        assert_eq!(line["level"], "ERROR", "{line}");
        assert!(
            message(line).contains("process exited with status 1"),
            "{line}"
        );
    }
    assert_eq!(phase(&m), "given-up", "{}", m.dump());
    assert_eq!(m.server_pid(), None, "no server runs\n{}", m.dump());
    // The check that made the running server exit got no answer at all;
    // the demo never answers 503 here.
    let checks = lines_starting(&m, "health check failed");
    let first = checks
        .first()
        .unwrap_or_else(|| panic!("no failed check\n{}", m.dump()));
    assert!(
        first["extra"]["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("no HTTP answer")),
        "{first}"
    );
    for line in &checks {
        assert_ne!(line["extra"]["reason"], "HTTP 503", "{line}");
    }
    assert!(
        alerts_with(&m, RESTARTED).is_empty(),
        "{}",
        describe_alerts(&m)
    );
    let downs = alerts_with(&m, DOWN);
    assert_eq!(downs.len(), 1, "{}", describe_alerts(&m));
    let body = &downs[0].body;
    assert!(body.contains("\nRestart attempts: 3/3\n"), "{body}");
    assert!(
        body.contains("\nLast error: process exited with status 1\n"),
        "{body}"
    );
    assert!(
        body.contains("\nCause: process exited with status 1\n"),
        "{body}"
    );
    // The down alert quotes server_error.log, where the demo said why.
    assert!(body.contains("says `crash`"), "{body}");
}

#[test]
fn grandchild_is_gone_after_restart() {
    let dir = TestDir::new("restart-grandchild");
    let port = free_port();
    let gpid_file = dir.join("grandchild.pid");
    let m = Monitor::start(
        &dir,
        &settings(port, &[]),
        &demo_server_args(port, &["--fork-child", path_str(&gpid_file)]),
    );
    let mut seen = Grandchildren(Vec::new());
    let leader = wait_running(&m);
    let g1 = read_grandchild(&gpid_file).expect("written before the server listens");
    seen.0.push(g1);
    assert!(pid_alive(g1));

    // The leader dies on its own; its grandchild must not outlive it.
    assert!(signal_pid(leader, libc::SIGKILL));
    let second = wait_new_server(&m, leader, QUICK);
    m.wait_for(QUICK, "the restart to be verified", || {
        alerts_with(&m, RESTARTED).len() == 1
    });
    let g2 = read_grandchild(&gpid_file).unwrap();
    seen.0.push(g2);
    assert_ne!(g1, g2, "{}", m.dump());
    m.wait_for(QUICK, "the old grandchild to be stopped", || !pid_alive(g1));
    assert!(pid_alive(g2), "the new server has its own grandchild");

    // The monitor stops a failing server: the whole group goes.
    assert_eq!(http_get(port, "/fail", QUICK).map(|r| r.0), Some(200));
    let third = wait_new_server(&m, second, SLOW);
    m.wait_for(QUICK, "the second restart to be verified", || {
        alerts_with(&m, RESTARTED).len() == 2
    });
    let g3 = read_grandchild(&gpid_file).unwrap();
    seen.0.push(g3);
    assert_ne!(g2, g3, "{}", m.dump());
    assert!(!pid_alive(second), "{}", m.dump());
    m.wait_for(QUICK, "the second grandchild to be stopped", || {
        !pid_alive(g2)
    });
    assert!(pid_alive(third) && pid_alive(g3), "{}", m.dump());
}

#[test]
fn no_restart_when_server_command_missing_watch_only() {
    let dir = TestDir::new("restart-watch-only");
    let server = DemoServer::start(&dir, &[]);
    let port = server.port();
    let m = Monitor::start(&dir, &settings(port, &[]), &[]);
    m.wait_for(QUICK, "checks of the watched server", || {
        count_lines(&m, "health check passed") >= 2
    });

    assert_eq!(http_get(port, "/fail", QUICK).map(|r| r.0), Some(200));
    m.wait_for(QUICK, "the down alert", || alerts_with(&m, DOWN).len() == 1);
    std::thread::sleep(A_FEW_CHECKS);
    let downs = alerts_with(&m, DOWN);
    assert_eq!(downs.len(), 1, "{}", describe_alerts(&m));
    let body: Vec<&str> = downs[0].body.lines().collect();
    assert_eq!(
        body[0], "Server has failed 3 health checks.",
        "{}",
        downs[0].body
    );
    assert_eq!(body[1], "Restart attempts: 0/3", "{}", downs[0].body);
    assert_eq!(body[2], "Last error: HTTP 503", "{}", downs[0].body);

    assert_eq!(http_get(port, "/recover", QUICK).map(|r| r.0), Some(200));
    m.wait_for(QUICK, "the recovered alert", || {
        alerts_with(&m, RECOVERED).len() == 1
    });

    assert_eq!(alerts(&m).len(), 2, "{}", describe_alerts(&m));
    assert_eq!(count_lines(&m, RESTARTING), 0, "{}", m.dump());
    assert_eq!(count_lines(&m, STARTED), 0, "{}", m.dump());
    assert_eq!(m.server_pid(), None, "{}", m.dump());
    assert!(pid_alive(server.pid()), "the watched server was left alone");
}

#[test]
fn healthy_foreign_server_is_watched_not_duplicated() {
    let dir = TestDir::new("restart-foreign");
    let mut foreign = DemoServer::start(&dir, &[]);
    let port = foreign.port();
    let m = Monitor::start(&dir, &settings(port, &[]), &demo_server_args(port, &[]));
    m.wait_for(QUICK, "checks of the foreign server", || {
        count_lines(&m, "health check passed") >= 3
    });

    let watching = lines_starting(&m, "a healthy server already answers");
    assert_eq!(watching.len(), 1, "{}", m.dump());
    assert_eq!(count_lines(&m, STARTED), 0, "{}", m.dump());
    assert_eq!(m.server_pid(), None, "{}", m.dump());
    assert_eq!(phase(&m), "running", "{}", m.dump());
    assert!(
        foreign.stdout().contains("GET /health 200"),
        "the monitor checks it"
    );

    // When it dies, the monitor cannot stop what is left of it (no
    // STOP_COMMAND) but starts its own server in its place.
    assert!(foreign.signal(libc::SIGKILL));
    foreign.wait_exit(QUICK).expect("the foreign server dies");
    m.wait_for(SLOW, "the monitor's own server", || {
        alerts_with(&m, RESTARTED).len() == 1
    });
    let own = m.server_pid().expect("server.pid");
    assert_ne!(own, foreign.pid());
    assert!(pid_alive(own), "{}", m.dump());
    assert_eq!(count_lines(&m, RESTARTING), 1, "{}", m.dump());
    let cannot_stop = lines_starting(&m, "the server was not started by this monitor");
    assert_eq!(cannot_stop.len(), 1, "{}", m.dump());
    assert_eq!(cannot_stop[0]["level"], "ERROR");
}

#[test]
fn quoted_printable_bodies_are_decoded() {
    let cases = [
        ("plain\n", "plain\n"),
        (
            "a long line that was wra=\npped\n",
            "a long line that was wrapped\n",
        ),
        ("x =3D y, 100%=\n\n", "x = y, 100%\n"),
        ("caf=C3=A9 =ZZ\n", "café =ZZ\n"),
    ];
    for (encoded, want) in cases {
        assert_eq!(decode_quoted_printable(encoded), want, "{encoded:?}");
    }
}

/// Issue 8, item 9: a SIGTERM while a restart waits for a server that
/// ignores SIGTERM: the stop is finished, no new server is spawned, and the
/// monitor exits within STOP_TIMEOUT and a second (plus slack for a loaded
/// machine).
#[test]
fn sigterm_during_a_restarts_stop_spawns_no_new_server() {
    let dir = TestDir::new("restart-sigterm-during-stop");
    let port = free_port();
    let fault = dir.join("fault");
    // The group ignores SIGTERM but for the demo itself, which dies at once:
    // the stop then waits the whole STOP_TIMEOUT before SIGKILL.
    let demo = demo_server_args(port, &["--fault-file", path_str(&fault)]).join(" ");
    let script = format!("trap '' TERM; {demo} & while :; do sleep 0.1; done");
    let mut m = Monitor::start(
        &dir,
        &settings(port, &[("STOP_TIMEOUT", "3")]),
        &["sh".to_string(), "-c".to_string(), script],
    );
    wait_running(&m);
    dir.write("fault", "fail\n");
    m.wait_for(SLOW, "the restart to begin", || {
        count_lines(&m, RESTARTING) == 1
    });
    std::thread::sleep(Duration::from_millis(300));
    let t = std::time::Instant::now();
    assert!(m.signal(libc::SIGTERM));
    let status = m.wait_exit(Duration::from_secs(8));
    let took = t.elapsed();
    assert!(status.is_some(), "the monitor did not exit\n{}", m.dump());
    assert_eq!(
        count_lines(&m, STARTED),
        1,
        "no server started after the stop signal\n{}",
        m.dump()
    );
    assert!(
        took < Duration::from_millis(4500),
        "exit took {took:?}\n{}",
        m.dump()
    );
}

/// Issue 8, item 4: a monitor killed (-9) mid-episode and started again
/// resumes its attempt count and its given-up state from the state file: the
/// attempts go on from where they were, one "Down" in total, and a resumed
/// given-up monitor starts no new server and sends no second "Down".
#[test]
fn a_restarted_monitor_resumes_attempts_and_give_up_from_the_state_file() {
    let dir = TestDir::new("restart-resume");
    let port = free_port();
    let fault = dir.join("fault");
    dir.write("fault", "fail\n");
    let env = settings(port, &[("STARTUP_TIMEOUT", "1")]);
    let args = demo_server_args(port, &["--fault-file", path_str(&fault)]);
    let mut m = Monitor::start(&dir, &env, &args);
    m.wait_for(SLOW, "the first restart attempt", || {
        state(&m).is_some_and(|s| s["restart_attempts"] == 1)
    });
    assert!(m.signal(libc::SIGKILL));
    m.wait_exit(QUICK).expect("the killed monitor is gone");

    let mut m2 = Monitor::start(&dir, &env, &args);
    m2.wait_for(SLOW, "the give-up alert", || {
        alerts_with(&m2, DOWN).len() == 1 && phase(&m2) == "given-up"
    });
    let attempts: Vec<u64> = lines_starting(&m2, RESTARTING)
        .iter()
        .map(|l| l["extra"]["attempt"].as_u64().unwrap())
        .collect();
    assert_eq!(attempts, [1, 2, 3], "attempts go on\n{}", m2.dump());
    assert_eq!(state(&m2).unwrap()["restart_attempts"], 3);

    // Killed again while given up: the next one watches, no new server, no
    // second Down.
    let started = started_pids(&m2).len();
    assert!(m2.signal(libc::SIGKILL));
    m2.wait_exit(QUICK).expect("the killed monitor is gone");
    let m3 = Monitor::start(&dir, &env, &args);
    m3.wait_for(SLOW, "checks by the third monitor", || {
        lines_starting(&m3, "health check failed").len() >= 6
            && state(&m3).is_some_and(|s| s["monitor_pid"] == m3.pid())
    });
    std::thread::sleep(A_FEW_CHECKS);
    assert_eq!(phase(&m3), "given-up", "{}", m3.dump());
    assert_eq!(
        started_pids(&m3).len(),
        started,
        "no new server\n{}",
        m3.dump()
    );
    assert_eq!(alerts_with(&m3, DOWN).len(), 1, "{}", describe_alerts(&m3));

    // Fixed: one Recovered.
    dir.write("fault", "ok\n");
    m3.wait_for(SLOW, "the recovered alert", || {
        alerts_with(&m3, RECOVERED).len() == 1
    });
}
