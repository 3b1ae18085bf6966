//! The HTTP client of the health check and the webhook (issue 8, items 5, 6
//! and 9 in part): the URL forms SPEC allows (`HTTP://`, `[::1]`), userinfo
//! refused without echoing the password, HTTPS bounded by HEALTH_TIMEOUT with
//! no thread or socket left behind, HEALTH_CA_FILE, and a stalled webhook
//! POST that does not hold SIGTERM.
//!
//! Every server here binds a loopback address; every wait is bounded; every
//! process is stopped pass or fail (the util guards).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::alerts::fixture::TestCa;
use crate::util::*;

const RUN: Duration = Duration::from_secs(15);

/// Answers every connection on `listener` with one healthy response, until
/// dropped.
struct Healthy {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl Healthy {
    fn on(addr: &str) -> Option<Healthy> {
        let listener = TcpListener::bind(addr).ok()?;
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        thread::spawn(move || {
            while !stopping.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        thread::spawn(move || answer_healthy(stream));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Some(Healthy { port, stop })
    }
}

impl Drop for Healthy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn read_head(stream: &mut impl Read) -> Vec<u8> {
    let (mut head, mut buf) = (Vec::new(), [0u8; 1024]);
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    head
}

fn answer_healthy(mut stream: TcpStream) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    read_head(&mut stream);
    let body = r#"{"status":"healthy"}"#;
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// `server-monitor ARGS` with `env`: (exit code, stdout, stderr).
fn run_cli(name: &str, env: &[(&str, String)], args: &[&str]) -> (Option<i32>, String, String) {
    let dir = TestDir::new(name);
    let out = run(&dir, env, args, RUN);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn scheme_in_any_case_is_checked() {
    let server = Healthy::on("127.0.0.1:0").unwrap();
    let url = format!("HTTP://127.0.0.1:{}/health", server.port);
    let (code, out, err) = run_cli("http-upper-scheme", &[], &["check", "--health-url", &url]);
    assert_eq!(code, Some(0), "stdout: {out}\nstderr: {err}");
    assert!(out.starts_with("OK - "), "{out}");
}

#[test]
fn ipv6_loopback_literal_is_checked() {
    let Some(server) = Healthy::on("[::1]:0") else {
        eprintln!("SKIPPED: no IPv6 loopback on this machine");
        return;
    };
    let url = format!("http://[::1]:{}/health", server.port);
    let (code, out, err) = run_cli("http-ipv6", &[], &["check", "--health-url", &url]);
    assert_eq!(code, Some(0), "stdout: {out}\nstderr: {err}");
    assert!(out.starts_with("OK - "), "{out}");
}

#[test]
fn userinfo_is_refused_naming_the_setting_without_the_password() {
    let url = "http://admin:s3cr3tpw@127.0.0.1:8000/health";
    let (code, out, err) = run_cli("http-userinfo", &[], &["config", "--health-url", url]);
    assert_eq!(code, Some(78), "stdout: {out}\nstderr: {err}");
    assert!(err.contains("HEALTH_URL"), "{err}");
    assert!(err.contains("user:password@"), "{err}");
    assert!(
        !err.contains("s3cr3tpw") && !out.contains("s3cr3tpw"),
        "{err}{out}"
    );
    let (code, out, err) = run_cli(
        "http-userinfo-hook",
        &[(
            "ALERT_WEBHOOK_URL",
            "https://bob:s3cr3tpw@hooks.example.com/x".into(),
        )],
        &["config"],
    );
    assert_eq!(code, Some(78), "stdout: {out}\nstderr: {err}");
    assert!(err.contains("ALERT_WEBHOOK_URL"), "{err}");
    assert!(
        !err.contains("s3cr3tpw") && !out.contains("s3cr3tpw"),
        "{err}{out}"
    );
}

#[test]
fn webhook_url_forms_reach_the_hook() {
    // `HTTP://` and an IPv6 literal: `test-alert` delivers to both.
    let hook = Healthy::on("127.0.0.1:0").unwrap();
    let url = format!("HTTP://127.0.0.1:{}/hook", hook.port);
    let (code, out, err) = run_cli(
        "http-hook-upper",
        &[("ALERT_WEBHOOK_URL", url), ("LOG_DIR", "logs".into())],
        &["test-alert"],
    );
    assert_eq!(code, Some(0), "stdout: {out}\nstderr: {err}");
    let Some(hook6) = Healthy::on("[::1]:0") else {
        eprintln!("SKIPPED (IPv6 part): no IPv6 loopback on this machine");
        return;
    };
    let url = format!("http://[::1]:{}/hook", hook6.port);
    let (code, out, err) = run_cli(
        "http-hook-ipv6",
        &[("ALERT_WEBHOOK_URL", url), ("LOG_DIR", "logs".into())],
        &["test-alert"],
    );
    assert_eq!(code, Some(0), "stdout: {out}\nstderr: {err}");
}

// ---------------------------------------------------------------------------
// HTTPS

/// Accepts TCP connections and never says a word (no TLS handshake):
/// holds every connection until dropped.
struct Silent {
    port: u16,
    /// How many connections it took.
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Silent {
    fn start() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (stopping, count) = (stop.clone(), accepted.clone());
        thread::spawn(move || {
            let mut held = Vec::new();
            while !stopping.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        held.push(stream);
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(_) => thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Silent {
            port,
            accepted,
            stop,
        }
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// (threads, open fds) of a process, from /proc.
fn threads_and_fds(pid: u32) -> (usize, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let threads = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    (threads, fds)
}

#[test]
fn checks_of_a_silent_https_server_time_out_and_leak_no_thread_or_socket() {
    let dir = TestDir::new("http-silent-tls");
    let silent = Silent::start();
    let env = vec![
        ("LOG_DIR", "logs".to_string()),
        (
            "HEALTH_URL",
            format!("https://127.0.0.1:{}/health", silent.port),
        ),
        ("CHECK_INTERVAL", "0.2".into()),
        ("HEALTH_TIMEOUT", "1".into()),
        ("FAILURE_THRESHOLD", "1000".into()),
        ("LOG_LEVEL", "debug".into()),
    ];
    let m = Monitor::start(&dir, &env, &[]);
    let log = m.log_dir().join("server_monitor.log");
    let failed = || {
        json_lines(&log)
            .into_iter()
            .filter(|l| {
                l["message"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("health check failed"))
            })
            .collect::<Vec<_>>()
    };
    m.wait_for(Duration::from_secs(10), "a first timed-out check", || {
        !failed().is_empty()
    });
    let before = threads_and_fds(m.pid());
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(7) {
        thread::sleep(Duration::from_millis(200));
    }
    let after = threads_and_fds(m.pid());
    let lines = failed();
    assert!(
        lines.len() >= 4,
        "{} failed checks\n{}",
        lines.len(),
        m.dump()
    );
    for line in &lines {
        assert_eq!(line["extra"]["reason"], "timed out", "{line}");
        let ms = line["extra"]["latency_ms"].as_f64().unwrap_or(f64::MAX);
        assert!(ms < 1500.0, "{line}");
    }
    assert!(
        after.0 <= before.0 + 1 && after.1 <= before.1 + 1,
        "threads, fds: {before:?} -> {after:?} over {} checks\n{}",
        lines.len(),
        m.dump()
    );
}

/// An https endpoint with the test CA's certificate for 127.0.0.1: answers
/// each connection healthy, until dropped.
struct TlsHealthy {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl TlsHealthy {
    fn start(ca: &TestCa) -> TlsHealthy {
        let config = ca.server_config();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        thread::spawn(move || {
            while !stopping.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((tcp, _)) => {
                        let config = config.clone();
                        thread::spawn(move || {
                            let _ = tcp.set_nonblocking(false);
                            let _ = tcp.set_read_timeout(Some(Duration::from_secs(2)));
                            let Ok(conn) = rustls::ServerConnection::new(config) else {
                                return;
                            };
                            let mut tls = rustls::StreamOwned::new(conn, tcp);
                            read_head(&mut tls);
                            let body = r#"{"status":"healthy"}"#;
                            let _ = write!(
                                tls,
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                                body.len()
                            );
                            let _ = tls.flush();
                            tls.conn.send_close_notify();
                            let _ = tls.flush();
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        TlsHealthy { port, stop }
    }
}

impl Drop for TlsHealthy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

#[test]
fn https_check_trusts_health_ca_file_and_says_why_without_it() {
    let dir = TestDir::new("http-ca-file");
    let ca = TestCa::new(&dir);
    let server = TlsHealthy::start(&ca);
    let url = format!("https://127.0.0.1:{}/health", server.port);
    let ca_file = ca.ca_file.display().to_string();
    let out = run(
        &dir,
        &[("HEALTH_CA_FILE", ca_file)],
        &["check", "--health-url", &url],
        RUN,
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.starts_with("OK - "), "{stdout}");

    let out = run(&dir, &[], &["check", "--health-url", &url], RUN);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(stdout.starts_with("CRITICAL - "), "{stdout}");
    assert!(stdout.contains("certificate not trusted"), "{stdout}");
    assert!(stdout.len() < 200, "{stdout}");
}

// ---------------------------------------------------------------------------
// Webhook

/// Whether the monitor's state file says it runs a verified server.
fn is_running(m: &Monitor) -> bool {
    let state = read_lossy(&m.log_dir().join("server_monitor.state.json"));
    let Ok(state) = serde_json::from_str::<serde_json::Value>(&state) else {
        return false;
    };
    state["phase"] == "running"
        && m.server_pid()
            .is_some_and(|p| state["server_pid"].as_u64() == Some(u64::from(p)))
}

#[test]
fn sigterm_during_a_stalled_webhook_post_ends_the_monitor_at_once() {
    // Issue 8 item 9: the POST used to hold the loop up to SMTP_TIMEOUT.
    let dir = TestDir::new("http-hook-stall");
    let sink = Silent::start();
    let port = free_port();
    let env = vec![
        ("LOG_DIR", "logs".to_string()),
        ("LOG_LEVEL", "debug".into()),
        ("HEALTH_URL", format!("http://127.0.0.1:{port}/health")),
        ("CHECK_INTERVAL", "0.2".into()),
        ("HEALTH_TIMEOUT", "1".into()),
        ("RESTART_COOLDOWN", "0.3".into()),
        ("STARTUP_TIMEOUT", "5".into()),
        ("STOP_TIMEOUT", "1".into()),
        ("SMTP_TIMEOUT", "8".into()),
        (
            "ALERT_WEBHOOK_URL",
            format!("http://127.0.0.1:{}/hook", sink.port),
        ),
    ];
    let mut m = Monitor::start(&dir, &env, &demo_server_args(port, &[]));
    m.wait_for(Duration::from_secs(10), "a verified server", || {
        is_running(&m)
    });
    assert!(signal_pid(m.server_pid().unwrap(), libc::SIGKILL));
    m.wait_for(Duration::from_secs(10), "a POST under way", || {
        sink.accepted.load(Ordering::SeqCst) > 0
    });
    thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    assert!(m.signal(libc::SIGTERM));
    let status = m.wait_exit(Duration::from_secs(10)).expect("it stops");
    let took = t.elapsed();
    assert_eq!(status.code(), Some(0), "{}", m.dump());
    assert!(
        took < Duration::from_millis(1500),
        "took {took:?}\n{}",
        m.dump()
    );
}
