//! The heartbeat (issue 14; SPEC `HEARTBEAT_URL`, `HEARTBEAT_INTERVAL`)
//! with the real monitor and the real demo server: a local HTTP sink on
//! 127.0.0.1:0 (a thread of the test) records the arrival time of each ping.
//!
//! Pings come at the interval while the server is healthy; none from the
//! first failed check of an outage until the server is verified again; none
//! while the monitor is paused; none after the monitor is SIGKILLed; a sink that never answers delays no check
//! and no restart, and SIGTERM still ends the monitor at once; the URL's
//! secret path shows in no file and no output.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::util::*;

const QUICK: Duration = Duration::from_secs(5);
const SLOW: Duration = Duration::from_secs(20);

/// The secret part of the heartbeat URL; it must show nowhere.
const SECRET: &str = "hb-0f6a2c9e-secret-key";

/// Milliseconds of the UTC day (the tests run for seconds; a midnight in
/// between only makes a gap look negative).
fn day_millis_now() -> i64 {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    (ms % 86_400_000) as i64
}

/// A log line's `...THH:MM:SS.mmmZ` timestamp as milliseconds of the day.
fn day_millis(v: &Value) -> i64 {
    let t = v["timestamp"].as_str().unwrap_or_default();
    let field = |r: std::ops::Range<usize>| -> i64 {
        t.get(r)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad timestamp {t:?}"))
    };
    ((field(11..13) * 60 + field(14..16)) * 60 + field(17..19)) * 1000 + field(20..23)
}

/// The local HTTP sink: records when each request arrived (day millis) and
/// its target; answers `status` (0: accepts, reads, and never answers).
struct Sink {
    port: u16,
    hits: Arc<Mutex<Vec<(i64, String)>>>,
    status: Arc<AtomicU16>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Sink {
    fn start(status: u16) -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the sink");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let hits = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(AtomicU16::new(status));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s, st) = (hits.clone(), status.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut held: Vec<TcpStream> = Vec::new();
            while !st.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut c, _)) => {
                        let _ = c.set_nonblocking(false);
                        let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
                        let target = read_target(&mut c);
                        h.lock().unwrap().push((day_millis_now(), target));
                        match s.load(Ordering::SeqCst) {
                            0 => held.push(c),
                            code => {
                                let _ = c.write_all(
                                    format!(
                                        "HTTP/1.1 {code} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK"
                                    )
                                    .as_bytes(),
                                );
                            }
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Sink {
            port,
            hits,
            status,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/ping/{SECRET}?k={SECRET}", self.port)
    }

    /// The arrival times of the pings so far.
    fn times(&self) -> Vec<i64> {
        self.hits.lock().unwrap().iter().map(|(t, _)| *t).collect()
    }

    fn count(&self) -> usize {
        self.hits.lock().unwrap().len()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The request line's target, once the head has come.
fn read_target(c: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match c.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&head);
    text.split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

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
        ("MAX_RESTART_ATTEMPTS", "5".into()),
        ("HEARTBEAT_INTERVAL", "0.5".into()),
        ("LOG_LEVEL", "debug".into()),
    ];
    with_overrides(env, overrides)
}

fn logged(log_dir: &Path, prefix: &str) -> Vec<Value> {
    json_lines(&log_dir.join("server_monitor.log"))
        .into_iter()
        .filter(|v| {
            v["message"]
                .as_str()
                .unwrap_or_default()
                .starts_with(prefix)
        })
        .collect()
}

fn state(log_dir: &Path) -> Value {
    fs::read_to_string(log_dir.join("server_monitor.state.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null)
}

/// Waits until the monitor's server answers healthy and it says so.
fn wait_verified(m: &Monitor, n: usize) {
    let dir = m.log_dir().to_path_buf();
    m.wait_for(SLOW, "the server verified", || {
        logged(&dir, "server verified healthy").len() >= n
    });
}

#[test]
fn no_ping_while_paused() {
    let dir = TestDir::new("heartbeat-paused");
    let sink = Sink::start(200);
    let port = free_port();
    let url = sink.url();
    let env = settings(port, &[("HEARTBEAT_URL", &url)]);
    let m = Monitor::start(&dir, &env, &demo_server_args(port, &[]));
    wait_verified(&m, 1);
    m.wait_for(SLOW, "a first ping", || sink.count() >= 1);
    let out = run(&dir, &env, &["pause"], QUICK);
    assert!(out.status.success(), "pause: {}", m.dump());
    m.wait_for(QUICK, "the pause taken", || {
        !logged(m.log_dir(), "paused by ").is_empty()
    });
    // A ping already on its way may still land; none after it.
    std::thread::sleep(Duration::from_millis(300));
    let before = sink.count();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        sink.count(),
        before,
        "pings while paused (the server is healthy, HEARTBEAT_INTERVAL 0.5): {:?}\n{}",
        sink.times(),
        m.dump()
    );
    let out = run(&dir, &env, &["resume"], QUICK);
    assert!(out.status.success(), "resume: {}", m.dump());
    m.wait_for(QUICK, "pings again after the resume", || {
        sink.count() > before
    });
}

#[test]
fn pings_at_the_interval_while_healthy() {
    let dir = TestDir::new("heartbeat-interval");
    let sink = Sink::start(200);
    let port = free_port();
    let url = sink.url();
    let env = settings(port, &[("HEARTBEAT_URL", &url)]);
    let m = Monitor::start(&dir, &env, &demo_server_args(port, &[]));
    wait_verified(&m, 1);
    let verified = day_millis(&logged(m.log_dir(), "server verified healthy")[0]);
    m.wait_for(SLOW, "7 pings", || sink.count() >= 7);
    let times = sink.times();
    assert!(
        times[0] >= verified - 5,
        "the first ping ({}) came before the server was verified ({verified})",
        times[0]
    );
    assert!(
        times[0] - verified < 1000,
        "the first ping came {} ms after the server was verified",
        times[0] - verified
    );
    for pair in times.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            (400..=1500).contains(&gap),
            "{gap} ms between pings (HEARTBEAT_INTERVAL 0.5): {times:?}\n{}",
            m.dump()
        );
    }
    let hits = sink.hits.lock().unwrap().clone();
    assert!(hits
        .iter()
        .all(|(_, t)| t == &format!("/ping/{SECRET}?k={SECRET}")));
    // The state file and `status` show the last ping and its result.
    let log_dir = m.log_dir().to_path_buf();
    m.wait_for(QUICK, "the last ping in the state file", || {
        state(&log_dir)["last_heartbeat"]["ok"] == true
    });
    let out = run(&dir, &env, &["status"], QUICK);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("last heartbeat:") && l.contains(" ok")),
        "{text}"
    );
}

#[test]
fn no_ping_from_the_first_failed_check_until_verified_again() {
    let dir = TestDir::new("heartbeat-outage");
    let sink = Sink::start(200);
    let port = free_port();
    let url = sink.url();
    // Five failed checks 0.3 s apart and a restart: about 2 s of outage,
    // four heartbeat intervals.
    let env = settings(
        port,
        &[
            ("HEARTBEAT_URL", &url),
            ("CHECK_INTERVAL", "0.3"),
            ("FAILURE_THRESHOLD", "5"),
        ],
    );
    let m = Monitor::start(&dir, &env, &demo_server_args(port, &[]));
    wait_verified(&m, 1);
    m.wait_for(SLOW, "3 pings", || sink.count() >= 3);
    assert_eq!(http_get(port, "/fail", QUICK).map(|r| r.0), Some(200));
    wait_verified(&m, 2);
    let log_dir = m.log_dir().to_path_buf();
    let first_failed = day_millis(&logged(&log_dir, "health check failed")[0]);
    let verified = day_millis(&logged(&log_dir, "server verified healthy")[1]);
    assert!(verified - first_failed > 1000, "{}", m.dump());
    m.wait_for(SLOW, "a ping after the restart", || {
        sink.times().iter().any(|t| *t >= verified)
    });
    let times = sink.times();
    // A ping that went out just before the failed check may arrive a few ms
    // after its log line.
    let during: Vec<_> = times
        .iter()
        .filter(|t| (first_failed + 50..verified).contains(*t))
        .collect();
    assert!(
        during.is_empty(),
        "pings at {during:?} during the outage {first_failed}..{verified}: {times:?}\n{}",
        m.dump()
    );
    let after = times.iter().find(|t| **t >= verified).copied().unwrap();
    assert!(
        after - verified < 1000,
        "the first ping came {} ms after the new server was verified",
        after - verified
    );
}

#[test]
fn no_ping_after_the_monitor_is_killed() {
    let dir = TestDir::new("heartbeat-sigkill");
    let sink = Sink::start(200);
    let port = free_port();
    let url = sink.url();
    let env = settings(port, &[("HEARTBEAT_URL", &url)]);
    let mut m = Monitor::start(&dir, &env, &demo_server_args(port, &[]));
    wait_verified(&m, 1);
    m.wait_for(SLOW, "2 pings", || sink.count() >= 2);
    assert!(m.signal(libc::SIGKILL));
    assert!(m.wait_exit(QUICK).is_some(), "{}", m.dump());
    let killed = day_millis_now();
    std::thread::sleep(Duration::from_millis(2000));
    let late: Vec<_> = sink
        .times()
        .into_iter()
        .filter(|t| *t > killed + 50)
        .collect();
    assert!(late.is_empty(), "pings after SIGKILL at {killed}: {late:?}");
    // The server still runs (it is not the pinger) ...
    assert_eq!(http_get(port, "/health", QUICK).map(|r| r.0), Some(200));
    // ... and the next monitor adopts it: pings again after its first
    // healthy check.
    let seen = sink.count();
    let next = Monitor::start(&dir, &env, &demo_server_args(port, &[]));
    next.wait_for(SLOW, "a ping from the adopting monitor", || {
        sink.count() > seen
    });
    let log_dir = next.log_dir().to_path_buf();
    next.wait_for(QUICK, "the ping in its state file", || {
        state(&log_dir)["last_heartbeat"]["ok"] == true
    });
    assert_eq!(
        logged(&log_dir, "server started").len(),
        1,
        "adopted, not started again\n{}",
        next.dump()
    );
}

/// Crashes the monitor's server and returns how long until a new one is
/// verified.
fn crash_to_healthy(m: &Monitor, port: u16) -> Duration {
    let before = logged(m.log_dir(), "server verified healthy").len();
    let t = Instant::now();
    let _ = http_get(port, "/crash", QUICK);
    wait_verified(m, before + 1);
    t.elapsed()
}

/// The longest gap between consecutive passed checks, in ms.
fn longest_check_gap(log_dir: &Path) -> i64 {
    let checks = logged(log_dir, "health check passed");
    checks
        .windows(2)
        .map(|p| day_millis(&p[1]) - day_millis(&p[0]))
        .max()
        .unwrap_or(0)
}

#[test]
fn a_sink_that_never_answers_delays_no_check_no_restart_and_no_stop() {
    // Without a heartbeat first: the figure to compare with.
    let plain = {
        let dir = TestDir::new("heartbeat-hold-plain");
        let port = free_port();
        let env = settings(port, &[("HEALTH_TIMEOUT", "3")]);
        let m = Monitor::start(&dir, &env, &demo_server_args(port, &[]));
        wait_verified(&m, 1);
        crash_to_healthy(&m, port)
    };
    let dir = TestDir::new("heartbeat-hold");
    let sink = Sink::start(0);
    let port = free_port();
    let url = sink.url();
    // Each ping is held for HEALTH_TIMEOUT (3 s): a loop that waited for one
    // would miss 15 checks.
    let env = settings(port, &[("HEARTBEAT_URL", &url), ("HEALTH_TIMEOUT", "3")]);
    let mut m = Monitor::start(&dir, &env, &demo_server_args(port, &[]));
    wait_verified(&m, 1);
    m.wait_for(SLOW, "a ping held", || sink.count() >= 1);
    std::thread::sleep(Duration::from_millis(4000));
    let log_dir = m.log_dir().to_path_buf();
    let gap = longest_check_gap(&log_dir);
    assert!(
        gap < 1000,
        "{gap} ms between checks while pings are held\n{}",
        m.dump()
    );
    assert!(
        sink.count() <= 3,
        "pings are skipped while one is held, not queued: {:?}",
        sink.times()
    );
    let held = crash_to_healthy(&m, port);
    assert!(
        held < plain + Duration::from_millis(1500),
        "crash -> healthy took {held:?} with a held ping, {plain:?} without\n{}",
        m.dump()
    );
    // A failed ping is said once (and the URL only masked).
    m.wait_for(SLOW, "the timed-out ping said", || {
        !logged(&log_dir, "heartbeat ping failed").is_empty()
    });
    // SIGTERM while a ping is held.
    m.wait_for(SLOW, "another ping held", || sink.count() >= 2);
    assert!(m.signal(libc::SIGTERM));
    let t = Instant::now();
    let status = m.wait_exit(SLOW);
    let took = t.elapsed();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", m.dump());
    assert!(
        took < Duration::from_millis(1500),
        "SIGTERM took {took:?}\n{}",
        m.dump()
    );
    assert_eq!(
        logged(&log_dir, "heartbeat ping failed").len(),
        1,
        "one warning until a ping succeeds\n{}",
        m.dump()
    );
}

/// Every file under `dir`, recursively, as bytes.
fn all_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(all_files(&p));
        } else if let Ok(bytes) = fs::read(&p) {
            out.push((p.display().to_string(), bytes));
        }
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn the_secret_path_shows_in_no_file_and_no_output() {
    let dir = TestDir::new("heartbeat-secret");
    let sink = Sink::start(500);
    let port = free_port();
    let url = sink.url();
    let env = settings(port, &[("HEARTBEAT_URL", &url)]);
    let mut m = Monitor::start(&dir, &env, &demo_server_args(port, &[]));
    wait_verified(&m, 1);
    let log_dir = m.log_dir().to_path_buf();
    // Failing pings (HTTP 500), then good ones.
    m.wait_for(SLOW, "4 failed pings", || sink.count() >= 4);
    sink.status.store(200, Ordering::SeqCst);
    m.wait_for(SLOW, "a good ping said", || {
        !logged(&log_dir, "heartbeat ping succeeded again").is_empty()
    });
    let warned = logged(&log_dir, "heartbeat ping failed");
    assert_eq!(warned.len(), 1, "{}", m.dump());
    assert_eq!(warned[0]["level"], "WARNING", "{}", warned[0]);
    assert_eq!(warned[0]["extra"]["reason"], "HTTP 500", "{}", warned[0]);
    assert!(
        warned[0]["extra"]["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("http://127.0.0.1:") && u.contains("****")),
        "{}",
        warned[0]
    );
    let mut outputs = Vec::new();
    for args in [
        &["config"][..],
        &["status"],
        &["status", "--json"],
        &["test-alert"],
    ] {
        let out = run(&dir, &env, args, SLOW);
        outputs.push((args.join(" "), out));
    }
    // test-alert reports the ping like a channel.
    let (_, test_alert) = &outputs[3];
    let text = String::from_utf8_lossy(&test_alert.stdout);
    assert!(text.contains("heartbeat: ok (http://127.0.0.1:"), "{text}");
    assert_eq!(test_alert.status.code(), Some(0), "{text}");
    // ... and fails like one.
    sink.status.store(404, Ordering::SeqCst);
    let out = run(&dir, &env, &["test-alert"], SLOW);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("heartbeat: FAILED: HTTP 404"), "{text}");
    assert_eq!(out.status.code(), Some(1), "{text}");
    outputs.push(("test-alert (404)".into(), out));
    let refused = format!("http://127.0.0.1:{}/ping/{SECRET}", free_port());
    let env_refused = with_overrides(env.clone(), &[("HEARTBEAT_URL", refused.as_str())]);
    let out = run(&dir, &env_refused, &["test-alert"], SLOW);
    assert_eq!(out.status.code(), Some(1));
    outputs.push(("test-alert (refused)".into(), out));
    sink.status.store(200, Ordering::SeqCst);
    assert!(m.signal(libc::SIGTERM));
    assert!(m.wait_exit(SLOW).is_some(), "{}", m.dump());
    for (what, out) in &outputs {
        for (stream, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
            assert!(
                !contains(bytes, SECRET),
                "`{what}` {stream} shows the secret: {}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
    assert!(!contains(m.stdout().as_bytes(), SECRET), "{}", m.stdout());
    assert!(!contains(m.stderr().as_bytes(), SECRET), "{}", m.stderr());
    let files = all_files(&log_dir);
    assert!(files.len() >= 3, "{files:?}");
    for (path, bytes) in files {
        assert!(
            !contains(&bytes, SECRET),
            "{path} holds the secret:\n{}",
            String::from_utf8_lossy(&bytes)
        );
    }
}

#[test]
fn test_alert_reports_a_ping_that_never_answers_at_its_deadline() {
    let dir = TestDir::new("heartbeat-test-alert-hold");
    let sink = Sink::start(0);
    let url = sink.url();
    let env = settings(free_port(), &[("HEARTBEAT_URL", &url)]);
    let t = Instant::now();
    let out = run(&dir, &env, &["test-alert"], SLOW);
    let took = t.elapsed();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("heartbeat: FAILED: timed out"), "{text}");
    assert_eq!(out.status.code(), Some(1), "{text}");
    // HEALTH_TIMEOUT is 1 s.
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert_eq!(sink.count(), 1);
    assert!(!contains(&out.stdout, SECRET) && !contains(&out.stderr, SECRET));
}
