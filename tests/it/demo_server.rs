//! The demo server, driven as a process over HTTP: the SPEC shape of /health,
//! the control endpoints, the fault file, and the process tricks the monitor's
//! tests rely on (`--fork-child`, `--spew`). These are also the first users of
//! `tests/util`. Every test takes well under a second except `trickle` (~1 s).

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use crate::util::*;

const SHORT: Duration = Duration::from_secs(2);

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[test]
fn health_answers_the_spec_shape() {
    let dir = TestDir::new("demo-health");
    let server = DemoServer::start(&dir, &[]);
    let (status, body) = server.get("/health", SHORT).expect("an answer");
    assert_eq!(status, 200, "{body}");
    let body = json(&body);
    assert_eq!(body["status"], "healthy");
    let timestamp = body["timestamp"].as_str().unwrap();
    assert!(
        timestamp.ends_with('Z') && timestamp.len() == 24,
        "{timestamp}"
    );
    assert!(body["uptime"].as_f64().unwrap() >= 0.0);
    assert_eq!(body["memory"]["status"], "healthy");
    assert_eq!(body["memory"]["used"], 150);
    assert_eq!(body["memory"]["total"], 16384);
    assert_eq!(body["system"]["platform"], "linux");
    assert_eq!(body["system"]["cpuUsage"]["percent"], 5.2);
    assert_eq!(body["services"]["database"]["status"], "healthy");
    assert_eq!(body["services"]["database"]["responseTime"], 45);

    let stdout = server.stdout();
    assert!(
        stdout.contains(&format!(
            "listening on http://127.0.0.1:{} (pid {})",
            server.port(),
            server.pid()
        )),
        "{stdout}"
    );
    wait_or_panic(
        SHORT,
        "the access line",
        || server.stdout().contains("GET /health 200 "),
        || server.dump(),
    );
}

#[test]
fn fail_answers_503_until_recover() {
    let dir = TestDir::new("demo-fail");
    let server = DemoServer::start(&dir, &[]);
    assert_eq!(server.get("/fail", SHORT).map(|r| r.0), Some(200));
    assert_eq!(
        server.get("/health", SHORT),
        Some((503, r#"{"status":"unhealthy"}"#.to_string()))
    );
    assert_eq!(server.get("/recover", SHORT).map(|r| r.0), Some(200));
    assert_eq!(server.get("/health", SHORT).map(|r| r.0), Some(200));
}

#[test]
fn unhealthy_and_warn_modes_change_the_body_not_the_status() {
    let dir = TestDir::new("demo-modes");
    let server = DemoServer::start(&dir, &[]);
    server.get("/unhealthy", SHORT).unwrap();
    let (status, body) = server.get("/health", SHORT).unwrap();
    assert_eq!(
        (status, json(&body)["status"].clone()),
        (200, "unhealthy".into())
    );

    server.get("/warn", SHORT).unwrap();
    let (status, body) = server.get("/health", SHORT).unwrap();
    let body = json(&body);
    assert_eq!((status, body["status"].clone()), (200, "healthy".into()));
    assert_eq!(body["system"]["cpuUsage"]["percent"], 75.0);
    assert_eq!(body["services"]["database"]["responseTime"], 250);
}

#[test]
fn crash_exits_with_status_1_after_answering() {
    let dir = TestDir::new("demo-crash");
    let mut server = DemoServer::start(&dir, &[]);
    assert_eq!(server.get("/crash", SHORT).map(|r| r.0), Some(200));
    let status = server.wait_exit(SHORT).expect("it exits");
    assert_eq!(status.code(), Some(1), "{}", describe_status(status));
}

#[test]
fn crash_with_a_signal_dies_of_that_signal() {
    let dir = TestDir::new("demo-crash-signal");
    let mut server = DemoServer::start(&dir, &[]);
    assert_eq!(server.get("/crash?signal=9", SHORT).map(|r| r.0), Some(200));
    let status = server.wait_exit(SHORT).expect("it exits");
    assert_eq!(status.signal(), Some(9), "{}", describe_status(status));
}

#[test]
fn sigterm_ends_it() {
    let dir = TestDir::new("demo-sigterm");
    let mut server = DemoServer::start(&dir, &[]);
    assert!(server.signal(libc::SIGTERM));
    let status = server.wait_exit(SHORT).expect("it exits");
    assert_eq!(
        status.signal(),
        Some(libc::SIGTERM),
        "{}",
        describe_status(status)
    );
    assert!(!server.stderr().contains("warning"), "{}", server.stderr());
}

#[test]
fn hang_stops_answering_anything() {
    let dir = TestDir::new("demo-hang");
    let server = DemoServer::start(&dir, &[]);
    assert_eq!(server.get("/hang", SHORT).map(|r| r.0), Some(200));
    assert_eq!(server.get("/health", Duration::from_millis(300)), None);
    assert!(pid_alive(server.pid()));
}

#[test]
fn fault_file_crash_exits_at_start() {
    let dir = TestDir::new("demo-fault-crash");
    let fault = dir.write("fault", "crash\n");
    let mut server = DemoServer::spawn(
        &dir,
        free_port(),
        &["--fault-file", fault.to_str().unwrap()],
    );
    let status = server.wait_exit(SHORT).expect("it exits at once");
    assert_eq!(status.code(), Some(1), "{}", server.dump());
    assert!(server.stderr().contains("crash"), "{}", server.dump());
    assert!(!server.stdout().contains("listening"), "{}", server.dump());
}

#[test]
fn fault_file_hang_holds_health_until_the_file_says_ok() {
    let dir = TestDir::new("demo-fault-hang");
    let fault = dir.write("fault", "hang");
    let server = DemoServer::start(&dir, &["--fault-file", fault.to_str().unwrap()]);
    assert_eq!(server.get("/health", Duration::from_millis(300)), None);
    dir.write("fault", "ok\n");
    assert_eq!(
        server.get("/health", SHORT).map(|r| r.0),
        Some(200),
        "{}",
        server.dump()
    );
}

#[test]
fn fault_file_is_read_at_each_health_request() {
    let dir = TestDir::new("demo-fault-live");
    let fault = dir.write("fault", "fail");
    let server = DemoServer::start(&dir, &["--fault-file", fault.to_str().unwrap()]);
    assert_eq!(server.get("/health", SHORT).map(|r| r.0), Some(503));
    dir.write("fault", "unhealthy");
    let (status, body) = server.get("/health", SHORT).unwrap();
    assert_eq!(
        (status, json(&body)["status"].clone()),
        (200, "unhealthy".into())
    );
    dir.write("fault", "redirect");
    assert_eq!(server.get("/health", SHORT).map(|r| r.0), Some(302));
    dir.write("fault", "big");
    let (status, body) = server.get("/health", Duration::from_secs(5)).unwrap();
    assert_eq!((status, body.len()), (200, 10 * 1024 * 1024));
    std::fs::remove_file(&fault).unwrap();
    assert_eq!(server.get("/health", SHORT).map(|r| r.0), Some(200));
}

#[test]
fn fault_file_trickle_sends_headers_then_crawls() {
    let dir = TestDir::new("demo-fault-trickle");
    let fault = dir.write("fault", "trickle");
    let server = DemoServer::start(&dir, &["--fault-file", fault.to_str().unwrap()]);
    assert_eq!(server.get("/health", Duration::from_millis(1200)), None);
}

#[test]
fn fork_child_leaves_a_grandchild_in_the_server_group() {
    let dir = TestDir::new("demo-fork-child");
    let pid_file = dir.join("grandchild.pid");
    let server = DemoServer::start(&dir, &["--fork-child", pid_file.to_str().unwrap()]);
    let grandchild: u32 = std::fs::read_to_string(&pid_file)
        .expect("the pid file is written before the server listens")
        .trim()
        .parse()
        .unwrap();
    assert!(pid_alive(grandchild));
    assert_ne!(grandchild, server.pid());

    // What Monitor's Drop does with LOG_DIR/server.pid.
    let log_dir = dir.join("logs");
    dir.write(
        "logs/server.pid",
        format!("{}\n1234567 other lines\n", server.pid()),
    );
    assert_eq!(read_pid_file(&log_dir), Some(server.pid()));
    kill_server_of(&log_dir);
    assert!(wait_until(SHORT, "the grandchild to die", || !pid_alive(
        grandchild
    )));
    assert!(wait_until(SHORT, "the server to die", || !pid_alive(
        server.pid()
    )));
}

#[test]
fn spew_writes_numbered_lines_at_start_and_on_request() {
    let dir = TestDir::new("demo-spew");
    let server = DemoServer::start(&dir, &["--spew", "1000"]);
    assert_eq!(server.get("/spew?n=5", SHORT).map(|r| r.0), Some(200));
    assert_eq!(
        server.get("/stderr?msg=hello%20there", SHORT).map(|r| r.0),
        Some(200)
    );
    let stdout = server.stdout();
    let spew: Vec<&str> = stdout.lines().filter(|l| l.starts_with("spew ")).collect();
    assert_eq!(spew.len(), 1005);
    assert!(spew[0].starts_with("spew 000001 ") && spew[999].starts_with("spew 001000 "));
    assert!(
        spew.iter().all(|l| l.len() == 99),
        "100 bytes with the newline"
    );
    assert!(
        server.stderr().contains("hello there\n"),
        "{}",
        server.dump()
    );
}

#[test]
fn bad_arguments_exit_2() {
    let dir = TestDir::new("demo-bad-args");
    let mut server = DemoServer::spawn(&dir, free_port(), &["--spew", "lots"]);
    let status = server.wait_exit(SHORT).expect("it exits");
    assert_eq!(status.code(), Some(2));
    assert!(
        server.stderr().contains("invalid --spew `lots`"),
        "{}",
        server.dump()
    );
}
