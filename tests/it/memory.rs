//! MEMORY_LIMIT against the real binary and the real demo server (SPEC.md
//! "How it behaves" 8): a server grown over the limit with `/leak` is
//! restarted after FAILURE_THRESHOLD checks over it, not after one, with the
//! memory cause and the biggest processes in the alert; a spike of one sample
//! restarts nothing; `status --json`, `status` and `check` show the memory
//! and CPU even without a limit.
//!
//! No channel is configured: alerts are `.eml` files under LOG_DIR/alerts/.

use std::fs;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::util::*;

const SLOW: Duration = Duration::from_secs(30);
const RESTARTED: &str = "Server Restarted Successfully";
/// The warning logged at each sample over the limit.
const OVER: &str = "server memory ";
const RESTARTING: &str = "restarting the server";

fn settings(port: u16, overrides: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    let env: Vec<(&'static str, String)> = vec![
        ("LOG_DIR", "logs".into()),
        ("HEALTH_URL", format!("http://127.0.0.1:{port}/health")),
        ("CHECK_INTERVAL", "0.5".into()),
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

fn log_lines(m: &Monitor) -> Vec<Value> {
    json_lines(&m.log_dir().join("server_monitor.log"))
}

fn message(line: &Value) -> String {
    line["message"].as_str().unwrap_or_default().to_string()
}

fn count(m: &Monitor, prefix: &str) -> usize {
    log_lines(m)
        .iter()
        .filter(|l| message(l).starts_with(prefix))
        .count()
}

/// The `.eml` files (whole text, soft line breaks undone), oldest first.
fn emls(dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir.join("alerts")) else {
        return Vec::new();
    };
    let mut paths: Vec<_> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| read_lossy(p).replace("\r\n", "\n").replace("=\n", ""))
        .collect()
}

fn state(m: &Monitor) -> Option<Value> {
    let text = fs::read_to_string(m.log_dir().join("server_monitor.state.json")).ok()?;
    serde_json::from_str(&text).ok()
}

fn running(m: &Monitor) -> bool {
    state(m).is_some_and(|s| s["phase"] == "running") && m.server_pid().is_some()
}

#[test]
fn memory_over_limit_restarts_after_failure_threshold_checks() {
    let dir = TestDir::new("memory-restart");
    let port = free_port();
    let env = settings(port, &[("MEMORY_LIMIT", "100MB")]);
    let m = Monitor::start(&dir, &env, &demo_server_args(port, &[]));
    m.wait_for(SLOW, "the server running", || running(&m));
    let old = m.server_pid().expect("server.pid");
    let (status, body) = http_get(port, "/leak?mb=150", Duration::from_secs(10)).expect("/leak");
    assert_eq!(status, 200, "{body}");

    m.wait_for(SLOW, "a Restarted alert", || {
        emls(m.log_dir()).iter().any(|e| e.contains(RESTARTED))
    });
    // Exactly FAILURE_THRESHOLD samples over the limit before the restart.
    let lines = log_lines(&m);
    let restart_at = lines
        .iter()
        .position(|l| message(l).starts_with(RESTARTING))
        .unwrap_or_else(|| panic!("no restart line\n{}", m.dump()));
    let over_before = lines[..restart_at]
        .iter()
        .filter(|l| message(l).starts_with(OVER))
        .count();
    assert_eq!(over_before, 3, "{}", m.dump());
    let cause = lines[restart_at]["extra"]["cause"].to_string();
    assert!(
        cause.contains("above MEMORY_LIMIT 100 MiB"),
        "{cause}\n{}",
        m.dump()
    );

    let mail = emls(m.log_dir())
        .into_iter()
        .find(|e| e.contains(RESTARTED))
        .unwrap();
    let cause_line = mail
        .lines()
        .find(|l| l.starts_with("Cause: "))
        .unwrap_or_else(|| panic!("no Cause line:\n{mail}"));
    let figure: u64 = cause_line
        .strip_prefix("Cause: memory ")
        .and_then(|r| r.strip_suffix(" MiB above MEMORY_LIMIT 100 MiB"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cause not `memory N MiB above MEMORY_LIMIT 100 MiB`:\n{mail}"));
    assert!(figure >= 150, "{mail}");
    assert!(
        mail.contains("Biggest processes of the group (PSS):"),
        "{mail}"
    );
    assert!(
        mail.contains(&format!("pid {old} demo-server ")),
        "the leaking server named:\n{mail}"
    );
    let new = m.server_pid();
    assert!(new.is_some_and(|p| p != old), "a new server: {new:?}");
}

#[test]
fn one_memory_spike_never_restarts() {
    let dir = TestDir::new("memory-spike");
    let port = free_port();
    let env = settings(port, &[("MEMORY_LIMIT", "100MB"), ("CHECK_INTERVAL", "1")]);
    let m = Monitor::start(&dir, &env, &demo_server_args(port, &[]));
    m.wait_for(SLOW, "the server running", || running(&m));
    let pid = m.server_pid().unwrap();
    http_get(port, "/leak?mb=150", Duration::from_secs(10)).expect("/leak");
    // Freed as soon as one sample has seen it: a spike of one sample.
    m.wait_for(SLOW, "one sample over the limit", || count(&m, OVER) >= 1);
    http_get(port, "/free", Duration::from_secs(10)).expect("/free");
    let measured = count(&m, "measured the server's memory");
    m.wait_for(SLOW, "four more samples", || {
        count(&m, "measured the server's memory") >= measured + 4
    });
    assert_eq!(count(&m, OVER), 1, "{}", m.dump());
    assert_eq!(count(&m, RESTARTING), 0, "{}", m.dump());
    assert!(emls(m.log_dir()).is_empty(), "{}", m.dump());
    assert_eq!(m.server_pid(), Some(pid));
}

#[test]
fn status_and_check_show_memory_and_cpu_without_a_limit() {
    let dir = TestDir::new("memory-status");
    let port = free_port();
    let env = settings(port, &[]);
    let m = Monitor::start(&dir, &env, &demo_server_args(port, &[]));
    m.wait_for(SLOW, "the server running", || running(&m));
    let (_, spawned) = http_get(port, "/spawn?n=2", Duration::from_secs(10)).expect("/spawn");
    let children: Vec<u32> = spawned
        .trim()
        .rsplit(": ")
        .next()
        .unwrap()
        .split(' ')
        .map(|p| p.parse().unwrap_or_else(|_| panic!("{spawned}")))
        .collect();
    assert_eq!(children.len(), 2, "{spawned}");
    m.wait_for(SLOW, "usage in the state file", || {
        state(&m).is_some_and(|s| {
            s["usage"]["memory_bytes"].as_u64().unwrap_or(0) > 0
                && s["usage"]["cpu_percent"].is_number()
        })
    });
    let out = run(&dir, &env, &["status", "--json"], Duration::from_secs(10));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let u = &v["usage"];
    assert!(u["memory_bytes"].as_u64().unwrap() > 0, "{text}");
    assert_eq!(u["memory_kind"], "PSS", "{text}");
    assert!(u["cpu_percent"].as_f64().is_some(), "{text}");
    assert!(u["processes"].as_u64().unwrap() >= 1, "{text}");
    // No limit: nothing is read at each check (one sample a minute, and
    // one more when the first came within a second of the start).
    m.wait_for(SLOW, "8 checks", || count(&m, "health check passed") >= 8);
    let measured = count(&m, "measured the server's memory");
    assert!((1..=2).contains(&measured), "{measured}\n{}", m.dump());

    let out = run(&dir, &env, &["status"], Duration::from_secs(10));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("memory:         "), "{text}");
    assert!(text.contains("MiB (PSS, "), "{text}");

    let out = run(&dir, &env, &["check"], Duration::from_secs(10));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.starts_with("OK - "), "{text}");
    assert!(
        text.contains("; memory ") && text.contains("3 processes") && text.contains("CPU "),
        "the server and its 2 children: {text}"
    );

    // The idle children are of the server's group: they end with it.
    let mut m = m;
    assert!(m.signal(libc::SIGTERM));
    assert!(m.wait_exit(SLOW).is_some(), "{}", m.dump());
    for pid in children {
        wait_or_panic(SLOW, "the idle child gone", || !pid_alive(pid), || m.dump());
    }
}
