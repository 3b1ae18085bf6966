//! The status endpoints (SPEC "Status endpoints", issue 13) of the real
//! monitor driving the real demo server: the four paths, the token, a
//! frozen loop that does not answer `/healthz`, `promtool check metrics`
//! on a scrape, a real Prometheus scraping it, and a slowloris client plus a
//! flood of 1000 connections that delay no check and no restart.
//!
//! Every attacker connection is held by a thread with a bounded lifetime and
//! closed when it ends; Prometheus is stopped by its pid (the guard's
//! `Drop`), pass or fail; the monitor and its server by the util guards.
//! `promtool` and `prometheus` come from Debian's `prometheus` package: a
//! test that needs one fails, saying so, when it is missing.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::util::*;

pub(crate) const QUICK: Duration = Duration::from_secs(5);
const SLOW: Duration = Duration::from_secs(20);

fn settings(
    port: u16,
    status: u16,
    overrides: &[(&'static str, &str)],
) -> Vec<(&'static str, String)> {
    let env: Vec<(&'static str, String)> = vec![
        ("LOG_DIR", "logs".into()),
        ("HEALTH_URL", format!("http://127.0.0.1:{port}/health")),
        ("CHECK_INTERVAL", "0.2".into()),
        ("HEALTH_TIMEOUT", "1".into()),
        ("STARTUP_TIMEOUT", "5".into()),
        ("RESTART_COOLDOWN", "0.2".into()),
        ("STOP_TIMEOUT", "1".into()),
        ("FAILURE_THRESHOLD", "3".into()),
        ("MAX_RESTART_ATTEMPTS", "5".into()),
        ("LOG_LEVEL", "debug".into()),
        ("STATUS_LISTEN", format!("127.0.0.1:{status}")),
    ];
    with_overrides(env, overrides)
}

/// `GET path` with extra header lines; `(status, head, body)` of the
/// answer, None on refusal or when it does not come within `timeout`.
pub(crate) fn get(
    port: u16,
    path: &str,
    headers: &str,
    timeout: Duration,
) -> Option<(u16, String, String)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.set_write_timeout(Some(timeout)).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n").ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, head.to_string(), body.to_string()))
}

fn metrics(port: u16) -> Option<String> {
    get(port, "/metrics", "", QUICK)
        .filter(|r| r.0 == 200)
        .map(|r| r.2)
}

/// The value of the sample `series` (name and labels, exactly) in a scrape.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
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

/// Epoch ms of every "health check passed" / "health check failed" line.
fn check_times(m: &Monitor) -> Vec<i64> {
    json_lines(&m.log_dir().join("server_monitor.log"))
        .iter()
        .filter(|l| {
            let msg = l["message"].as_str().unwrap_or_default();
            msg == "health check passed"
                || msg == "health check failed"
                || msg == "startup probe failed"
        })
        .map(|l| epoch_millis(l["timestamp"].as_str().unwrap()))
        .collect()
}

/// The longest gap between checks logged after `from_ms`.
fn max_gap_after(m: &Monitor, from_ms: i64) -> (usize, i64) {
    let t: Vec<i64> = check_times(m)
        .into_iter()
        .filter(|t| *t >= from_ms)
        .collect();
    let gap = t.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(i64::MAX);
    (t.len(), gap)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A running monitor whose server answers healthy and whose /healthz does.
pub(crate) fn start(dir: &TestDir, overrides: &[(&'static str, &str)]) -> (Monitor, u16, u16) {
    let (port, status) = (free_port(), free_port());
    let m = Monitor::start(
        dir,
        &settings(port, status, overrides),
        &demo_server_args(port, &[]),
    );
    m.wait_for(SLOW, "/healthz to answer and /metrics to show up=1", || {
        metrics(status).is_some_and(|t| sample(&t, "server_monitor_up") == Some(1.0))
    });
    (m, port, status)
}

/// SIGKILLs the server; returns its pid.
fn crash(m: &Monitor) -> u32 {
    let pid = m.server_pid().expect("a server pid");
    assert!(
        signal_pid(pid, libc::SIGKILL),
        "cannot kill the server\n{}",
        m.dump()
    );
    pid
}

/// Crashes the server and returns how long until a new one is healthy
/// (the state file names a new pid and the phase `running`).
fn crash_to_healthy(m: &Monitor) -> Duration {
    let old = crash(m);
    let t = Instant::now();
    let state = m.log_dir().join("server_monitor.state.json");
    m.wait_for(SLOW, "a new server to be healthy after the crash", || {
        let Ok(text) = std::fs::read_to_string(&state) else {
            return false;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
            return false;
        };
        v["phase"] == "running"
            && v["consecutive_failures"] == 0
            && v["server_pid"]
                .as_u64()
                .is_some_and(|p| p != u64::from(old))
    });
    t.elapsed()
}

#[test]
fn the_four_paths_answer_and_a_crash_is_counted() {
    let dir = TestDir::new("status-paths");
    let (m, port, status) = start(&dir, &[]);
    let (code, head, body) = get(status, "/healthz", "", QUICK).expect("/healthz");
    assert_eq!((code, body.as_str()), (200, "ok\n"), "{head}");
    assert!(head.contains("Connection: close"));
    let (code, _, body) = get(status, "/status.json", "", QUICK).expect("/status.json");
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).expect("status.json is JSON");
    assert_eq!(v["phase"], "running");
    assert_eq!(v["monitor_running"], true);
    // The availability windows, from the history kept in memory: the
    // monitor has run (and its server been healthy most of) a few seconds.
    for w in ["24h", "7d", "30d"] {
        let a = v["availability"][w].as_f64();
        assert!(a.is_some_and(|a| a > 0.0 && a <= 100.0), "{w}: {v}");
        assert_eq!(v[format!("availability_{w}_percent")].as_f64(), a, "{v}");
    }
    let (code, _, page) = get(status, "/", "", QUICK).expect("/");
    assert_eq!(code, 200);
    assert!(page.contains("<meta http-equiv=\"refresh\" content=\"10\">"));
    assert!(page.contains("Last checks") && !page.contains("<script"));
    let (code, head, _) = get(status, "/metrics", "", QUICK)
        .map(|r| (r.0, r.1, ()))
        .unwrap();
    assert_eq!(code, 200);
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert_eq!(get(status, "/x", "", QUICK).map(|r| r.0), Some(404));

    let before = metrics(status).unwrap();
    assert_eq!(
        sample(&before, "server_monitor_restarts_total{cause=\"exit\"}"),
        Some(0.0)
    );
    assert!(sample(&before, "server_monitor_checks_total{result=\"healthy\"}").unwrap() >= 1.0);
    crash(&m);
    m.wait_for(SLOW, "restarts_total{cause=\"exit\"} 1 and up 1", || {
        metrics(status).is_some_and(|t| {
            sample(&t, "server_monitor_restarts_total{cause=\"exit\"}") == Some(1.0)
                && sample(&t, "server_monitor_up") == Some(1.0)
        })
    });
    let after = metrics(status).unwrap();
    assert!(sample(&after, "server_monitor_last_restart_timestamp_seconds").unwrap() > 1.7e9);
    assert!(sample(&after, "server_monitor_server_memory_bytes").unwrap() > 0.0);
    assert!(
        sample(
            &after,
            "server_monitor_state_seconds_total{state=\"healthy\"}"
        )
        .unwrap()
            > 0.0
    );
    assert_eq!(
        sample(
            &after,
            "server_monitor_alerts_total{channel=\"file\",result=\"sent\"}"
        ),
        Some(1.0),
        "{after}"
    );
    let (_, _, page) = get(status, "/", "", QUICK).unwrap();
    assert!(
        page.contains("<td>restart</td>"),
        "the crash is an incident on the page\n{page}"
    );
    // `status --json` reads the files, `/status.json` memory: the same
    // figure for the same history. While healthy the figure only grows, so
    // the one read from the files lies between two served around it (give
    // or take a few ms of clock).
    let served = || {
        let (_, _, body) = get(status, "/status.json", "", QUICK).unwrap();
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    };
    let before = served();
    let out = run(
        &dir,
        &settings(port, status, &[]),
        &["status", "--json"],
        QUICK,
    );
    let after = served();
    let read: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in ["availability_24h_percent", "availability_7d_percent"] {
        let f = |v: &serde_json::Value| v[key].as_f64().unwrap();
        let (a, b, r) = (f(&before), f(&after), f(&read));
        assert!(b < 100.0, "the crash is downtime: {key} {b}");
        assert!(
            a - 0.05 <= r && r <= b + 0.05,
            "{key}: served {a} then {b}, status --json {r} between"
        );
    }
}

#[test]
fn a_paused_monitor_shows_the_paused_state() {
    let dir = TestDir::new("status-paused");
    let (m, port, status) = start(&dir, &[]);
    let out = run(&dir, &settings(port, status, &[]), &["pause"], QUICK);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    m.wait_for(SLOW, "state=\"paused\" 1 and paused 1", || {
        metrics(status).is_some_and(|t| {
            sample(&t, "server_monitor_state{state=\"paused\"}") == Some(1.0)
                && sample(&t, "server_monitor_paused") == Some(1.0)
                && sample(&t, "server_monitor_state{state=\"healthy\"}") == Some(0.0)
        })
    });
    let out = run(&dir, &settings(port, status, &[]), &["resume"], QUICK);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    m.wait_for(SLOW, "healthy again after the resume", || {
        metrics(status).is_some_and(|t| {
            sample(&t, "server_monitor_paused") == Some(0.0)
                && sample(&t, "server_monitor_up") == Some(1.0)
        })
    });
}

#[test]
fn promtool_accepts_the_scrape() {
    let dir = TestDir::new("status-promtool");
    let (m, _port, status) = start(&dir, &[]);
    crash_to_healthy(&m);
    let text = metrics(status).expect("a scrape");
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run promtool ({e}): install Debian's `prometheus` package (apt-get install -y prometheus)")
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}\n{}{}\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_token_is_required_and_never_logged() {
    let dir = TestDir::new("status-token");
    let (port, status) = (free_port(), free_port());
    let token = "t0k-Secret-42-abcdef";
    let env = settings(port, status, &[("STATUS_TOKEN", token)]);
    let m = Monitor::start(&dir, &env, &demo_server_args(port, &[]));
    let bearer = format!("Authorization: Bearer {token}\r\n");
    m.wait_for(SLOW, "/healthz with the token", || {
        get(status, "/healthz", &bearer, QUICK).is_some_and(|r| r.0 == 200)
    });
    for path in ["/", "/metrics", "/healthz", "/status.json"] {
        let (code, head, body) = get(status, path, "", QUICK).expect(path);
        assert_eq!(code, 401, "{path}");
        assert!(head.contains("WWW-Authenticate: Bearer"), "{head}");
        assert!(!body.contains("server_monitor_"));
        let wrong = get(
            status,
            path,
            "Authorization: Bearer t0k-Secret-42-abcde\r\n",
            QUICK,
        )
        .unwrap();
        assert_eq!(wrong.0, 401, "{path}");
    }
    // Basic, any user, the token as the password: "me:t0k-Secret-42-abcdef".
    let basic = "Authorization: Basic bWU6dDBrLVNlY3JldC00Mi1hYmNkZWY=\r\n";
    assert_eq!(
        get(status, "/metrics", basic, QUICK).map(|r| r.0),
        Some(200)
    );
    let log = dir.read("logs/server_monitor.log") + &m.stdout() + &m.stderr();
    assert!(!log.contains(token), "the token is in the log");
}

#[test]
fn a_frozen_loop_does_not_answer_healthz() {
    let dir = TestDir::new("status-frozen");
    let (m, _port, status) = start(&dir, &[]);
    assert!(m.signal(libc::SIGSTOP));
    let frozen = get(status, "/healthz", "", Duration::from_millis(1500));
    assert!(m.signal(libc::SIGCONT));
    assert!(
        frozen.is_none(),
        "a stopped monitor answered /healthz: {frozen:?}"
    );
    m.wait_for(QUICK, "/healthz after SIGCONT", || {
        get(status, "/healthz", "", QUICK).is_some_and(|r| r.0 == 200)
    });
}

/// Holds `n` connections to `port` that send one byte a second, each for
/// at most `life`, then closes them.
fn slowloris(
    port: u16,
    n: usize,
    life: Duration,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut conns: Vec<TcpStream> = (0..n)
            .filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok())
            .collect();
        for c in &conns {
            let _ = c.set_write_timeout(Some(Duration::from_millis(100)));
        }
        let end = Instant::now() + life;
        let request = b"GET /metrics HTTP/1.1\r\nHost: x\r\n";
        let mut i = 0;
        let mut reconnects = 0;
        while Instant::now() < end && !stop.load(Ordering::SeqCst) {
            for c in conns.iter_mut() {
                if c.write_all(&request[i % request.len()..][..1]).is_err() {
                    // Cut off at its deadline: come back, like an attacker would.
                    if let Ok(n) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                        let _ = n.set_write_timeout(Some(Duration::from_millis(100)));
                        *c = n;
                        reconnects += 1;
                    }
                }
            }
            i += 1;
            std::thread::sleep(Duration::from_secs(1));
        }
        reconnects
    })
}

/// Opens up to `n` connections to `port` (each connect bounded) and holds
/// them, sending nothing, for at most `life`; returns how many it opened.
fn flood(
    port: u16,
    n: usize,
    life: Duration,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let end = Instant::now() + life;
        let mut held = Vec::with_capacity(n);
        for _ in 0..n {
            if Instant::now() >= end || stop.load(Ordering::SeqCst) {
                break;
            }
            if let Ok(c) = TcpStream::connect_timeout(&addr, Duration::from_millis(50)) {
                held.push(c);
            }
        }
        let opened = held.len();
        while Instant::now() < end && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
        opened
    })
}

#[test]
fn slowloris_and_a_connection_flood_delay_no_check_and_no_restart() {
    let dir = TestDir::new("status-attack");
    let (m, _port, status) = start(&dir, &[]);
    // Baseline: cadence and crash -> healthy without an attack.
    let t0 = now_ms();
    std::thread::sleep(Duration::from_secs(2));
    let (n0, gap0) = max_gap_after(&m, t0);
    let heal0 = crash_to_healthy(&m);

    // The attack: 16 slowloris connections and 1000 more, for at most 12 s.
    let stop = Arc::new(AtomicBool::new(false));
    let life = Duration::from_secs(12);
    let slow = slowloris(status, 16, life, stop.clone());
    // The slowloris clients first, so that they take the slots.
    std::thread::sleep(Duration::from_millis(300));
    let many = flood(status, 1000, life, stop.clone());
    std::thread::sleep(Duration::from_millis(500));
    let t1 = now_ms();
    std::thread::sleep(Duration::from_secs(3));
    let (n1, gap1) = max_gap_after(&m, t1);
    let heal1 = crash_to_healthy(&m);
    let t2 = now_ms();
    std::thread::sleep(Duration::from_secs(2));
    let (n2, gap2) = max_gap_after(&m, t2);
    stop.store(true, Ordering::SeqCst);
    let reconnects = slow.join().unwrap();
    let opened = many.join().unwrap();
    eprintln!(
        "baseline: {n0} checks, max gap {gap0} ms, crash->healthy {heal0:?}; \
         attack ({opened} flood connections, {reconnects} slowloris reconnects): {n1} checks, max gap {gap1} ms, \
         crash->healthy {heal1:?}; after the crash under attack: {n2} checks, max gap {gap2} ms"
    );
    // CHECK_INTERVAL is 0.2 s: the cadence holds (generous bounds for a
    // loaded 2-core machine), and a crash heals about as fast as without.
    assert!(
        n1 >= 8 && gap1 < 1000,
        "checks under attack: {n1}, max gap {gap1} ms\n{}",
        m.dump()
    );
    assert!(
        n2 >= 5 && gap2 < 1000,
        "checks after the crash: {n2}, max gap {gap2} ms\n{}",
        m.dump()
    );
    assert!(
        heal1 < heal0 + Duration::from_secs(2),
        "crash -> healthy {heal1:?} under attack against {heal0:?}\n{}",
        m.dump()
    );
    assert!(
        reconnects > 0,
        "no slowloris connection was cut off at its deadline"
    );
    // The attack is over: the listener serves again within a deadline or two.
    m.wait_for(QUICK, "/healthz after the attack", || {
        get(status, "/healthz", "", QUICK).is_some_and(|r| r.0 == 200)
    });
}

/// Prometheus, stopped by its pid on drop.
struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A Prometheus query's first value, if any.
fn query(port: u16, q: &str) -> Option<f64> {
    let enc: String = q
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let (code, body) = http_get(port, &format!("/api/v1/query?query={enc}"), QUICK)?;
    if code != 200 {
        return None;
    }
    let json = &body[body.find('{')?..=body.rfind('}')?];
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

#[test]
fn a_real_prometheus_scrapes_up_and_a_restart() {
    let dir = TestDir::new("status-prometheus");
    let (m, _port, status) = start(&dir, &[]);
    let web = free_port();
    let config = dir.write(
        "prometheus.yml",
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  \
             - job_name: server-monitor\n    static_configs:\n      - targets: ['127.0.0.1:{status}']\n"
        ),
    );
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{web}"))
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join("prometheus.out")).unwrap())
        .stderr(std::fs::File::create(dir.join("prometheus.err")).unwrap())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run prometheus ({e}): install Debian's `prometheus` package (apt-get install -y prometheus)")
        });
    let _prometheus = Prometheus(child);
    let show = || {
        format!(
            "{}\n==== prometheus.err\n{}",
            m.dump(),
            dir.read("prometheus.err")
        )
    };
    wait_or_panic(
        SLOW,
        "Prometheus to see server_monitor_up 1",
        || query(web, "server_monitor_up") == Some(1.0),
        show,
    );
    crash(&m);
    wait_or_panic(
        SLOW,
        "Prometheus to see restarts_total{cause=\"exit\"} >= 1",
        || query(web, "server_monitor_restarts_total{cause=\"exit\"}").is_some_and(|v| v >= 1.0),
        show,
    );
}

#[test]
fn a_busy_status_address_is_a_runtime_error_naming_it() {
    let dir = TestDir::new("status-busy");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let status = busy.local_addr().unwrap().port();
    let port = free_port();
    let mut m = Monitor::start(
        &dir,
        &settings(port, status, &[]),
        &demo_server_args(port, &[]),
    );
    let exit = m.wait_exit(QUICK);
    assert_eq!(exit.and_then(|s| s.code()), Some(1), "{}", m.dump());
    let err = m.stderr();
    assert!(
        err.contains(&format!("STATUS_LISTEN 127.0.0.1:{status}")),
        "{err}"
    );
    assert!(
        m.server_pid().is_none(),
        "a server was started\n{}",
        m.dump()
    );
    drop(busy);
}

/// A MEMORY_LIMIT restart is counted as `cause="memory"` (the policy's
/// trigger, not the cause's wording), and the memory shown is the group's.
#[test]
fn a_memory_limit_restart_counts_as_memory() {
    let dir = TestDir::new("status-memory");
    let (m, port, status) = start(&dir, &[("MEMORY_LIMIT", "100MB")]);
    let (code, body) = http_get(port, "/leak?mb=150", Duration::from_secs(10)).expect("/leak");
    assert_eq!(code, 200, "{body}");
    m.wait_for(SLOW, "restarts_total{cause=\"memory\"} 1", || {
        metrics(status).is_some_and(|t| {
            sample(&t, "server_monitor_restarts_total{cause=\"memory\"}") == Some(1.0)
        })
    });
    let t = metrics(status).unwrap();
    for cause in ["exit", "health"] {
        let series = format!("server_monitor_restarts_total{{cause=\"{cause}\"}}");
        assert_eq!(sample(&t, &series), Some(0.0), "{t}");
    }
    m.wait_for(SLOW, "the new server's memory shown", || {
        metrics(status).is_some_and(|t| {
            sample(&t, "server_monitor_server_memory_bytes").is_some_and(|b| b > 0.0)
                && sample(&t, "server_monitor_up") == Some(1.0)
        })
    });
}
