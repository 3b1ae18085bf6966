//! History and `report` (issue 12) with the real monitor and demo server: a
//! crash and a hang on a schedule give the incidents and downtime the
//! schedule made; a monitor killed with SIGKILL leaves a gap that is not
//! observed (not downtime); a pause is paused time, not downtime, even with
//! the server dead meanwhile; a 400-day synthetic history is reported in under
//! a second.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use crate::util::*;

const QUICK: Duration = Duration::from_secs(5);
const SLOW: Duration = Duration::from_secs(20);

fn settings(port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("LOG_DIR", "logs".into()),
        ("HEALTH_URL", format!("http://127.0.0.1:{port}/health")),
        ("CHECK_INTERVAL", "0.2".into()),
        ("HEALTH_TIMEOUT", "1".into()),
        ("STARTUP_TIMEOUT", "5".into()),
        ("RESTART_COOLDOWN", "0.5".into()),
        ("STOP_TIMEOUT", "1".into()),
        ("FAILURE_THRESHOLD", "3".into()),
        ("MAX_RESTART_ATTEMPTS", "5".into()),
        ("LOG_LEVEL", "debug".into()),
    ]
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Every state line of the history so far.
fn states(log_dir: &Path) -> Vec<Value> {
    let mut out = Vec::new();
    if let Ok(entries) = fs::read_dir(log_dir.join("history")) {
        let mut paths: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for p in paths {
            out.extend(json_lines(&p).into_iter().filter(|v| v["e"] == "state"));
        }
    }
    out
}

fn last_state(log_dir: &Path) -> String {
    states(log_dir)
        .last()
        .and_then(|v| v["s"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// How many state lines say one of `what`.
fn count(log_dir: &Path, what: &[&str]) -> usize {
    states(log_dir)
        .iter()
        .filter(|v| what.iter().any(|w| v["s"] == *w))
        .count()
}

fn report_json(dir: &TestDir, env: &[(&str, String)], extra: &[&str]) -> Value {
    let mut args = vec!["report", "--json"];
    args.extend_from_slice(extra);
    let out = run(dir, env, &args, Duration::from_secs(30));
    assert!(
        out.status.success(),
        "report failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "report --json is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Parses the report's `2026-12-01T08:28:39.123Z`.
fn iso_ms(s: &str) -> i64 {
    let day = server_monitor::history::parse_day(&s[..10]).unwrap();
    let h: i64 = s[11..13].parse().unwrap();
    let m: i64 = s[14..16].parse().unwrap();
    let sec: i64 = s[17..19].parse().unwrap();
    let ms: i64 = s[20..23].parse().unwrap();
    day * 86_400_000 + ((h * 60 + m) * 60 + sec) * 1000 + ms
}

fn stop(m: &mut Monitor) {
    assert!(m.signal(libc::SIGTERM));
    assert!(
        m.wait_exit(SLOW).is_some(),
        "monitor did not stop\n{}",
        m.dump()
    );
}

#[test]
fn report_counts_a_crash_and_a_hang_as_the_schedule_made_them() {
    let dir = TestDir::new("hist-schedule");
    let port = free_port();
    let env = settings(port);
    let mut m = Monitor::start(&dir, &env, &demo_server_args(port, &[]));
    let logs = m.log_dir().to_path_buf();
    m.wait_for(SLOW, "healthy", || last_state(&logs) == "healthy");
    std::thread::sleep(Duration::from_secs(1));

    // The schedule: a crash, healthy again, then a hang.
    let down = ["failing", "down", "given-up"];
    let crash_at = now_ms();
    let _ = http_get(port, "/crash", Duration::from_millis(500));
    m.wait_for(SLOW, "down after the crash", || count(&logs, &down) == 1);
    m.wait_for(SLOW, "healthy after the crash", || {
        count(&logs, &["healthy"]) == 2 && last_state(&logs) == "healthy"
    });
    let crash_healthy = now_ms();
    std::thread::sleep(Duration::from_secs(1));
    let hang_at = now_ms();
    let _ = http_get(port, "/hang", Duration::from_millis(100));
    m.wait_for(SLOW, "failing after the hang", || count(&logs, &down) == 2);
    m.wait_for(SLOW, "healthy after the hang", || {
        count(&logs, &["healthy"]) == 3 && last_state(&logs) == "healthy"
    });
    let hang_healthy = now_ms();
    std::thread::sleep(Duration::from_millis(500));
    stop(&mut m);

    let r = report_json(&dir, &env, &["--since", "1h"]);
    let incidents = r["incidents"].as_array().unwrap();
    assert_eq!(r["incident_count"], 2, "{r:#}");
    assert_eq!(incidents.len(), 2, "{r:#}");
    let interval = 200;
    let (c, h) = (&incidents[0], &incidents[1]);
    // A crash is seen at once (pidfd): down from the crash, within a check.
    let c_start = iso_ms(c["start"].as_str().unwrap());
    let c_end = iso_ms(c["end"].as_str().unwrap());
    assert!(
        (crash_at - interval..=crash_at + 1000).contains(&c_start),
        "crash at {crash_at}, incident from {c_start}: {r:#}"
    );
    assert!(c_end <= crash_healthy + interval, "{r:#}");
    assert!(c["restarts"].as_u64().unwrap() >= 1, "{r:#}");
    // A hang: down from the first failed check, which ends at HEALTH_TIMEOUT.
    let h_start = iso_ms(h["start"].as_str().unwrap());
    let h_end = iso_ms(h["end"].as_str().unwrap());
    assert!(
        (hang_at..=hang_at + interval + 1000 + 1500).contains(&h_start),
        "hang at {hang_at}, incident from {h_start}: {r:#}"
    );
    assert_eq!(h["cause"], "timed out", "{r:#}");
    assert!(h_end <= hang_healthy + interval, "{r:#}");
    assert!(h["restarts"].as_u64().unwrap() >= 1, "{r:#}");
    // The downtime is the incidents', to the millisecond.
    let sum = c["duration_s"].as_f64().unwrap() + h["duration_s"].as_f64().unwrap();
    let down = r["downtime_s"].as_f64().unwrap();
    assert!((down - sum).abs() < 0.002, "{down} vs {sum}");
    // At least the three failed checks of the hang (2 intervals + a timeout).
    assert!(h["duration_s"].as_f64().unwrap() >= 0.9, "{r:#}");
    assert!(r["availability_percent"].as_f64().unwrap() < 100.0);
    assert!(r["restarts"]["total"].as_u64().unwrap() >= 2, "{r:#}");
    let day = &r["days"][r["days"].as_array().unwrap().len() - 1];
    assert!(day["checks"].as_u64().unwrap() > 5, "{r:#}");
    assert!(day["latency_ms"]["p50"].as_f64().is_some(), "{r:#}");
    assert!(day["memory_percent"]["mean"].as_f64().is_some(), "{r:#}");

    // Text and CSV agree on the count.
    let text = run(&dir, &env, &["report", "--since", "1h"], QUICK);
    let text = String::from_utf8_lossy(&text.stdout).to_string();
    assert!(
        text.contains("incidents") && text.contains("timed out"),
        "{text}"
    );
    let csv = run(&dir, &env, &["report", "--since", "1h", "--csv"], QUICK);
    assert_eq!(String::from_utf8_lossy(&csv.stdout).lines().count(), 3);
    // status shows the availability too.
    let status = run(&dir, &env, &["status"], QUICK);
    let status = String::from_utf8_lossy(&status.stdout).to_string();
    assert!(
        status.contains("(24 h)") && status.contains("(7 d)"),
        "{status}"
    );
}

#[test]
fn a_monitor_killed_with_sigkill_leaves_a_gap_that_is_not_observed() {
    let dir = TestDir::new("hist-sigkill");
    let port = free_port();
    let env = settings(port);
    let mut first = Monitor::start(&dir, &env, &demo_server_args(port, &[]));
    let logs = first.log_dir().to_path_buf();
    first.wait_for(SLOW, "healthy", || last_state(&logs) == "healthy");
    // Long enough for the state file to be rewritten with a check.
    std::thread::sleep(Duration::from_secs(6));
    assert!(first.signal(libc::SIGKILL));
    assert!(first.wait_exit(QUICK).is_some());
    let killed = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let mut second = Monitor::start(&dir, &env, &demo_server_args(port, &[]));
    let gap = killed.elapsed().as_secs_f64();
    second.wait_for(SLOW, "second monitor healthy", || {
        states(&logs).len() >= 2 && last_state(&logs) == "healthy"
    });
    std::thread::sleep(Duration::from_secs(1));
    stop(&mut second);

    let r = report_json(&dir, &env, &["--since", "1h"]);
    assert_eq!(r["downtime_s"], 0.0, "{r:#}");
    assert_eq!(r["incident_count"], 0, "{r:#}");
    assert_eq!(r["availability_percent"], 100.0, "{r:#}");
    assert!(r["up_s"].as_f64().unwrap() > 4.0, "{r:#}");
    // The gap counted is at least the time the monitor was gone, and at most
    // that plus the state file's refresh (5 s) and a check.
    let history_gap = unobserved_between_runs(&logs);
    assert!(
        history_gap >= gap - 0.3 && history_gap <= gap + 5.0 + 1.0,
        "gap {gap:.2}s, not observed between the runs {history_gap:.2}s\n{r:#}"
    );
    drop(first);
}

#[test]
fn a_pause_is_paused_time_in_the_report_not_downtime() {
    let dir = TestDir::new("hist-pause");
    let port = free_port();
    let env = settings(port);
    let mut m = Monitor::start(&dir, &env, &demo_server_args(port, &[]));
    let logs = m.log_dir().to_path_buf();
    m.wait_for(SLOW, "healthy", || last_state(&logs) == "healthy");
    let pid = m.server_pid().expect("server.pid");
    let out = run(&dir, &env, &["pause"], QUICK);
    assert!(out.status.success(), "pause: {}", m.dump());
    m.wait_for(QUICK, "paused in the history", || {
        last_state(&logs) == "paused"
    });
    let paused_at = Instant::now();
    // The server dies while paused, and stays dead for a while.
    assert!(signal_group(pid, libc::SIGKILL));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(last_state(&logs), "paused", "{}", m.dump());
    let out = run(&dir, &env, &["resume"], QUICK);
    assert!(out.status.success(), "resume: {}", m.dump());
    let paused_for = paused_at.elapsed().as_secs_f64();
    let resumed = Instant::now();
    m.wait_for(SLOW, "healthy after the resume", || {
        last_state(&logs) == "healthy"
    });
    let back = resumed.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(500));
    stop(&mut m);

    let s = states(&logs);
    let paused: Vec<&Value> = s.iter().filter(|v| v["s"] == "paused").collect();
    assert_eq!(paused.len(), 1, "{s:#?}");
    assert!(
        paused[0]["cause"]
            .as_str()
            .unwrap_or_default()
            .contains("pid "),
        "paused by whom: {s:#?}"
    );
    let r = report_json(&dir, &env, &["--since", "1h"]);
    let paused_s = r["paused_s"].as_f64().unwrap();
    assert!(
        paused_s >= paused_for - 0.3 && paused_s <= paused_for + 1.0,
        "paused {paused_for:.2}s, the report says {paused_s}: {r:#}"
    );
    assert_eq!(r["pauses"].as_array().map(Vec::len), Some(1), "{r:#}");
    // The dead server counts as down only from the resume until it is back.
    let down = r["downtime_s"].as_f64().unwrap();
    assert!(
        down <= back + 0.3,
        "down {down}s, back {back:.2}s after the resume: {r:#}"
    );
}

/// The not-observed time between the first run's last sign of life (the
/// `prev` of the second `start`) and the second `start`.
fn unobserved_between_runs(log_dir: &Path) -> f64 {
    let mut starts = Vec::new();
    for entry in fs::read_dir(log_dir.join("history")).unwrap().flatten() {
        starts.extend(
            json_lines(&entry.path())
                .into_iter()
                .filter(|v| v["e"] == "start"),
        );
    }
    assert_eq!(starts.len(), 2, "{starts:?}");
    let t = starts[1]["t"].as_i64().unwrap();
    let prev = starts[1]["prev"]
        .as_i64()
        .expect("the second start carries prev");
    (t - prev) as f64 / 1000.0
}

/// Writes a synthetic history: `days` days up to today, each with
/// heartbeats, a day line and `incidents` incidents (failing, restarting,
/// healthy). Returns the bytes written per day.
pub fn synthetic_history(log_dir: &Path, days: i64, incidents: i64) -> u64 {
    use server_monitor::history::{file_name, Change, DaySummary, Record, Status};
    let today = now_ms().div_euclid(86_400_000) - 1;
    let first = today - days + 1;
    let mut records: Vec<Record> = Vec::new();
    let mut push = |r: Record| records.push(r);
    push(Record::Start {
        t: first * 86_400_000,
        pid: 1,
        prev: None,
    });
    for day in first..=today {
        let t0 = day * 86_400_000;
        push(Record::State {
            t: t0,
            change: Change {
                carry: true,
                ..Change::to(Status::Healthy)
            },
        });
        // A heartbeat every 15 minutes (history::recorder::HEARTBEAT).
        for k in 0..96 {
            push(Record::Heartbeat {
                t: t0 + k * 900_000 + 1,
            });
        }
        for i in 0..incidents {
            let at = t0 + 1000 + i * (86_000_000 / incidents.max(1));
            push(Record::State {
                t: at,
                change: Change::to(Status::Failing).because("timed out"),
            });
            push(Record::State {
                t: at + 600,
                change: Change {
                    restart: true,
                    ..Change::to(Status::Restarting)
                        .because("3 failed checks in a row (timed out)")
                        .detail("attempt 1")
                },
            });
            push(Record::State {
                t: at + 2600,
                change: Change::to(Status::Healthy),
            });
        }
        let mut s = DaySummary {
            day,
            checks: 2880,
            failures: 3 * incidents as u64,
            ..DaySummary::default()
        };
        for k in 0..2880 {
            s.latency.add(1.0 + (k % 40) as f64 * 0.3);
            s.memory.add(20.0 + (day % 30) as f64);
            s.cpu.add(5.0);
            s.db.add(40.0);
        }
        push(Record::Day {
            t: t0 + 86_399_999,
            summary: Box::new(s),
        });
    }
    // In time order, as the monitor writes them.
    records.sort_by_key(Record::time);
    let mut files: std::collections::BTreeMap<String, String> = Default::default();
    for r in &records {
        files
            .entry(file_name(r.time()))
            .or_default()
            .push_str(&r.to_line());
    }
    let dir = log_dir.join("history");
    fs::create_dir_all(&dir).unwrap();
    let mut total = 0;
    for (name, text) in files {
        total += text.len() as u64;
        fs::write(dir.join(name), text).unwrap();
    }
    total / days as u64
}

#[test]
fn a_400_day_history_is_reported_in_under_a_second() {
    let dir = TestDir::new("hist-400");
    let env = settings(free_port());
    let logs = dir.join("logs");
    let per_day = synthetic_history(&logs, 400, 2);
    let size: u64 = fs::read_dir(logs.join("history"))
        .unwrap()
        .flatten()
        .map(|e| e.metadata().unwrap().len())
        .sum();
    let t = Instant::now();
    let r = report_json(&dir, &env, &["--since", "401d"]);
    let took = t.elapsed();
    eprintln!(
        "400-day history: {size} bytes in history/ ({per_day} bytes a day, 2 incidents a day); report --json took {took:?}"
    );
    assert_eq!(r["incident_count"], 800, "{}", r["incident_count"]);
    assert_eq!(r["days"].as_array().unwrap().len(), 402);
    let down = r["downtime_s"].as_f64().unwrap();
    assert!((down - 800.0 * 2.6).abs() < 0.01, "{down}");
    assert!(took < Duration::from_secs(1), "report took {took:?}");

    // The figures for the closing note: a healthy day, 50 incidents a day.
    let healthy = TestDir::new("hist-bytes-healthy");
    let busy = TestDir::new("hist-bytes-busy");
    let a = synthetic_history(&healthy.join("logs"), 30, 0);
    let b = synthetic_history(&busy.join("logs"), 30, 50);
    eprintln!("history bytes a day: healthy {a}, 50 incidents a day {b}");
}
