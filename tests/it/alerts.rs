//! Alert delivery end to end: the real binary, the demo server, and real
//! SMTP servers (mailin-embedded, with a CA made at test time) or a tiny HTTP
//! endpoint on 127.0.0.1. SMTP_TIMEOUT is 1–2 s here; two tests wait out the
//! 5 s first retry (the webhook's 500, the mail server coming up), the rest
//! take a few seconds or less.

pub mod fixture;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fixture::{ClosedPort, Hook, MailServer, TarPit, TestCa};

use crate::util::*;

const USER: &str = "monitor@example.com";
const PASSWORD: &str = "app-password-4e1f9c";
const RECIPIENTS: &str = "ops@example.com,oncall@example.com";
const SUBJECT_RESTARTED: &str = "[Chatbot Server Alert] Server Restarted Successfully";
const SUBJECT_DOWN: &str = "[Chatbot Server Alert] Server Down - Manual Intervention Required";
const SUBJECT_TEST: &str = "[Chatbot Server Alert] Test Alert";

/// A fast monitor on the demo server at `port`.
fn monitor_env(port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("LOG_DIR", "logs".into()),
        ("LOG_LEVEL", "debug".into()),
        ("HEALTH_URL", format!("http://127.0.0.1:{port}/health")),
        ("CHECK_INTERVAL", "0.2".into()),
        ("HEALTH_TIMEOUT", "1".into()),
        ("RESTART_COOLDOWN", "0.3".into()),
        ("STARTUP_TIMEOUT", "5".into()),
        ("STOP_TIMEOUT", "1".into()),
    ]
}

/// Email through `smtp_port` with `security`, trusting the test CA.
fn email_env(
    ca: &TestCa,
    smtp_port: u16,
    security: &str,
    password: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("SMTP_SERVER", "127.0.0.1".into()),
        ("SMTP_PORT", smtp_port.to_string()),
        ("SMTP_SECURITY", security.into()),
        ("SMTP_USERNAME", USER.into()),
        ("SMTP_PASSWORD", password.into()),
        ("SMTP_CA_FILE", ca.ca_file.display().to_string()),
        ("SMTP_TIMEOUT", "2".into()),
        ("ALERT_EMAIL", RECIPIENTS.into()),
    ]
}

fn with(
    mut a: Vec<(&'static str, String)>,
    b: Vec<(&'static str, String)>,
) -> Vec<(&'static str, String)> {
    a.extend(b);
    a
}

fn log_of(log_dir: &Path) -> Vec<serde_json::Value> {
    json_lines(&log_dir.join("server_monitor.log"))
}

fn messages<'a>(log: &'a [serde_json::Value], message: &str) -> Vec<&'a serde_json::Value> {
    log.iter().filter(|l| l["message"] == message).collect()
}

fn outbox_files(log_dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(log_dir.join("outbox"))
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                // Not a `.json.tmp` of a write in progress.
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Every file under `dir`, recursively, with its contents (lossy).
fn all_files(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            out.extend(all_files(&path));
        } else {
            out.push((path.clone(), read_lossy(&path)));
        }
    }
    out
}

/// SIGKILLs a process group when dropped.
struct KillGroupOnDrop(u32);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        signal_group(self.0, libc::SIGKILL);
    }
}

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

/// Waits until the monitor has verified its server (not merely until the
/// server answers: a kill during the first verification is another story).
fn wait_running(m: &Monitor) {
    m.wait_for(Duration::from_secs(10), "a verified server", || {
        is_running(m)
    });
}

/// SIGKILLs the server the monitor runs and waits until the monitor has
/// restarted and verified a new one.
fn kill_server_and_wait_for_restart(m: &Monitor) {
    let old = m.server_pid().expect("a server pid");
    assert!(signal_pid(old, libc::SIGKILL));
    m.wait_for(Duration::from_secs(10), "the restarted server", || {
        m.server_pid().is_some_and(|p| p != old) && is_running(m)
    });
}

#[test]
fn starttls_with_auth_delivers_the_restart_and_down_alerts() {
    let dir = TestDir::new("alert-starttls");
    let ca = TestCa::new(&dir);
    let mail = MailServer::starttls(&ca, 0, USER, PASSWORD);
    let port = free_port();
    let fault = dir.write("fault", "ok\n");
    let mut env = with(
        monitor_env(port),
        email_env(&ca, mail.port, "starttls", PASSWORD),
    );
    env.push(("MAX_RESTART_ATTEMPTS", "1".into()));
    env.push(("ALERT_FROM", "alerts@example.com".into()));
    let m = Monitor::start(
        &dir,
        &env,
        &demo_server_args(port, &["--fault-file", fault.to_str().unwrap()]),
    );
    wait_running(&m);

    kill_server_and_wait_for_restart(&m);
    m.wait_for(Duration::from_secs(10), "the restart alert", || {
        !mail.mail().is_empty()
    });
    let restarted = mail.mail()[0].clone();
    assert_eq!(
        restarted.header("Subject").as_deref(),
        Some(SUBJECT_RESTARTED)
    );
    let body = restarted.body();
    assert!(
        body.starts_with(
            "Server was down for 0 checks.\nAutomatic restart successful.\nServer is now healthy.\n"
        ),
        "{body}"
    );
    assert!(body.contains("Cause: killed by signal 9"), "{body}");
    assert_eq!(restarted.from, "alerts@example.com");
    assert_eq!(restarted.to, vec!["ops@example.com", "oncall@example.com"]);
    let to = restarted.header("To").unwrap();
    assert!(
        to.contains("ops@example.com") && to.contains("oncall@example.com"),
        "{to}"
    );
    assert!(restarted.header("Date").is_some());
    assert!(restarted.header("Message-ID").is_some());
    assert_eq!(
        mail.inbox.auth_tries(),
        vec![(USER.to_string(), true)],
        "one AUTH, accepted"
    );

    // Let the attempt counter reset (RESTART_COOLDOWN of health), then make
    // the one allowed restart fail: the server crashes at start.
    std::thread::sleep(Duration::from_millis(800));
    dir.write("fault", "crash\n");
    assert!(signal_pid(m.server_pid().unwrap(), libc::SIGKILL));
    m.wait_for(Duration::from_secs(10), "the down alert", || {
        mail.mail().len() >= 2
    });
    let down = mail.mail()[1].clone();
    assert_eq!(down.header("Subject").as_deref(), Some(SUBJECT_DOWN));
    let body = down.body();
    assert!(
        body.starts_with("Server has failed ")
            && body.contains("\nRestart attempts: 1/1\nLast error: "),
        "{body}"
    );
    assert!(
        body.contains("\n\nManual intervention required.\n"),
        "{body}"
    );

    m.wait_for(
        Duration::from_secs(5),
        "two `alert delivered` lines",
        || messages(&log_of(m.log_dir()), "alert delivered").len() == 2,
    );
    let log = log_of(m.log_dir());
    let delivered = messages(&log, "alert delivered");
    assert_eq!(delivered[0]["level"], "INFO");
    assert_eq!(delivered[0]["extra"]["channel"], "email");
    assert_eq!(delivered[0]["extra"]["subject"], SUBJECT_RESTARTED);
    assert_eq!(delivered[0]["extra"]["attempt"], 1);
    assert!(outbox_files(m.log_dir()).is_empty(), "{}", m.dump());
    assert!(
        !m.log_dir().join("alerts").exists(),
        "email configured: no .eml files"
    );
    for (path, text) in all_files(m.log_dir()) {
        assert!(!text.contains(PASSWORD), "password in {}", path.display());
    }
}

#[test]
fn implicit_tls_delivers_the_test_alert() {
    let dir = TestDir::new("alert-implicit-tls");
    let ca = TestCa::new(&dir);
    let mail = MailServer::implicit_tls(&ca, USER, PASSWORD);
    let env = email_env(&ca, mail.port, "tls", PASSWORD);
    let out = run(&dir, &env, &["test-alert"], Duration::from_secs(10));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("email: ok ("), "{stdout}");
    let got = mail.mail();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].header("Subject").as_deref(), Some(SUBJECT_TEST));
    assert_eq!(got[0].to, vec!["ops@example.com", "oncall@example.com"]);
    assert_eq!(got[0].from, USER, "ALERT_FROM defaults to SMTP_USERNAME");
    assert!(
        !dir.join("logs/outbox").exists(),
        "test-alert bypasses the outbox"
    );
}

#[test]
fn a_wrong_password_is_reported_and_never_written_or_printed() {
    let dir = TestDir::new("alert-wrong-password");
    let ca = TestCa::new(&dir);
    let mail = MailServer::starttls(&ca, 0, USER, PASSWORD);
    let wrong = "wrong-secret-77d2a0";

    let env = email_env(&ca, mail.port, "starttls", wrong);
    let out = run(&dir, &env, &["test-alert"], Duration::from_secs(10));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    let reason =
        "authentication failed (check SMTP_USERNAME/SMTP_PASSWORD; Gmail needs an app password)";
    assert!(
        stdout.contains(&format!("email: FAILED: {reason}")),
        "{stdout}"
    );
    assert!(stderr.contains(reason), "{stderr}");
    assert!(!stdout.contains(wrong) && !stderr.contains(wrong));
    assert!(mail.mail().is_empty());
    assert_eq!(mail.inbox.auth_tries()[0], (USER.to_string(), false));

    // The monitor: the alert waits in the outbox, the failure is logged, and
    // the password is in no file and no output.
    let port = free_port();
    let m = Monitor::start(
        &dir,
        &with(monitor_env(port), env.clone()),
        &demo_server_args(port, &[]),
    );
    wait_running(&m);
    kill_server_and_wait_for_restart(&m);
    m.wait_for(Duration::from_secs(10), "the failed delivery", || {
        !messages(&log_of(m.log_dir()), "alert delivery failed").is_empty()
    });
    let log = log_of(m.log_dir());
    let failed = messages(&log, "alert delivery failed")[0];
    assert_eq!(failed["level"], "WARNING");
    assert_eq!(failed["extra"]["channel"], "email");
    assert_eq!(failed["extra"]["error"], reason);
    assert_eq!(failed["extra"]["attempt"], 1);
    assert_eq!(failed["extra"]["retry_in_s"], 5);
    assert!(failed["extra"]["next_retry"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    assert_eq!(outbox_files(m.log_dir()).len(), 1, "{}", m.dump());
    let config = run(&dir, &env, &["config"], Duration::from_secs(10));
    for (what, text) in [
        ("monitor stdout", m.stdout()),
        ("monitor stderr", m.stderr()),
        (
            "config",
            String::from_utf8_lossy(&config.stdout).into_owned(),
        ),
    ] {
        assert!(!text.contains(wrong), "password in {what}");
    }
    for (path, text) in all_files(m.log_dir()) {
        assert!(!text.contains(wrong), "password in {}", path.display());
    }
}

#[test]
fn an_untrusted_certificate_is_refused() {
    let dir = TestDir::new("alert-untrusted");
    let ca = TestCa::new(&dir);
    let mail = MailServer::starttls(&ca, 0, USER, PASSWORD);
    let env: Vec<_> = email_env(&ca, mail.port, "starttls", PASSWORD)
        .into_iter()
        .filter(|(k, _)| *k != "SMTP_CA_FILE")
        .collect();
    let out = run(&dir, &env, &["test-alert"], Duration::from_secs(10));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("email: FAILED: certificate not trusted (set SMTP_CA_FILE?)"),
        "{stdout}"
    );
    assert!(mail.mail().is_empty());
    assert!(
        mail.inbox.auth_tries().is_empty(),
        "no credentials before trust"
    );
}

#[test]
fn starttls_is_required_and_none_sends_in_clear_text_only_when_named() {
    let dir = TestDir::new("alert-plain");
    let mail = MailServer::plain();
    let env = |security: &str| {
        vec![
            ("SMTP_SERVER", "127.0.0.1".to_string()),
            ("SMTP_PORT", mail.port.to_string()),
            ("SMTP_SECURITY", security.to_string()),
            ("SMTP_TIMEOUT", "2".to_string()),
            ("ALERT_EMAIL", "ops@example.com".to_string()),
        ]
    };
    let out = run(
        &dir,
        &env("starttls"),
        &["test-alert"],
        Duration::from_secs(10),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("email: FAILED: the server does not offer STARTTLS"),
        "{stdout}"
    );
    assert!(mail.mail().is_empty(), "no fallback to clear text");

    let out = run(&dir, &env("none"), &["test-alert"], Duration::from_secs(10));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert_eq!(mail.mail().len(), 1);
    assert_eq!(
        mail.mail()[0].header("Subject").as_deref(),
        Some(SUBJECT_TEST)
    );
}

#[test]
fn alerts_wait_in_the_outbox_until_the_mail_server_is_up_also_across_restarts() {
    let dir = TestDir::new("alert-outbox");
    let ca = TestCa::new(&dir);
    let port = free_port();
    let closed = ClosedPort::new(); // the mail server is down: refused
    let env = with(
        monitor_env(port),
        email_env(&ca, closed.port, "starttls", PASSWORD),
    );
    let m = Monitor::start(&dir, &env, &demo_server_args(port, &[]));
    wait_running(&m);

    kill_server_and_wait_for_restart(&m);
    m.wait_for(Duration::from_secs(10), "the alert in the outbox", || {
        outbox_files(m.log_dir()).len() == 1
            && !messages(&log_of(m.log_dir()), "alert delivery failed").is_empty()
    });
    let entry: serde_json::Value =
        serde_json::from_str(&read_lossy(&outbox_files(m.log_dir())[0])).unwrap();
    assert_eq!(entry["subject"], SUBJECT_RESTARTED);
    assert_eq!(entry["attempts"]["email"], 1);
    assert_eq!(entry["delivered"], serde_json::json!([]));
    let log = log_of(m.log_dir());
    let failed = &messages(&log, "alert delivery failed")[0]["extra"];
    assert_eq!(failed["error"], "connection refused");

    // The monitor goes on mending the server meanwhile.
    kill_server_and_wait_for_restart(&m);
    m.wait_for(
        Duration::from_secs(10),
        "the second alert in the outbox",
        || outbox_files(m.log_dir()).len() == 2,
    );

    // The mail server comes up: both go out on their retry (5 s after the
    // first failure), and leave the outbox.
    let mail = MailServer::starttls(&ca, closed.open(), USER, PASSWORD);
    m.wait_for(Duration::from_secs(15), "both alerts delivered", || {
        mail.mail().len() == 2 && outbox_files(m.log_dir()).is_empty()
    });
    assert!(mail
        .mail()
        .iter()
        .all(|x| x.header("Subject").as_deref() == Some(SUBJECT_RESTARTED)));
    let delivered = messages(&log_of(m.log_dir()), "alert delivered").len();
    assert_eq!(delivered, 2);
    let mut m = m;
    assert!(m.signal(libc::SIGTERM));
    m.wait_exit(Duration::from_secs(10))
        .expect("the monitor stops");
    drop(m);

    // Across a restart: an alert left by a monitor killed outright goes out
    // when the next monitor starts.
    let closed = ClosedPort::new();
    let env = with(
        monitor_env(port),
        email_env(&ca, closed.port, "starttls", PASSWORD),
    );
    let mut m = Monitor::start(&dir, &env, &demo_server_args(port, &[]));
    wait_running(&m);
    kill_server_and_wait_for_restart(&m);
    m.wait_for(
        Duration::from_secs(10),
        "the third alert in the outbox",
        || outbox_files(m.log_dir()).len() == 1,
    );
    let file = outbox_files(m.log_dir())[0].clone();
    let entry: serde_json::Value = serde_json::from_str(&read_lossy(&file)).unwrap();
    // The next monitor should adopt this server, and its Drop stop it; should
    // adoption fail, this still stops it.
    let _server = KillGroupOnDrop(m.server_pid().unwrap());
    assert!(m.signal(libc::SIGKILL));
    m.wait_exit(Duration::from_secs(5)).expect("killed");
    let mail = MailServer::starttls(&ca, closed.open(), USER, PASSWORD);
    let t = Instant::now();
    let m = Monitor::start(&dir, &env, &demo_server_args(port, &[]));
    m.wait_for(Duration::from_secs(10), "the left alert delivered", || {
        mail.mail().len() == 1 && !file.exists()
    });
    assert!(t.elapsed() < Duration::from_secs(5), "due at once at start");
    let got = &mail.mail()[0];
    assert_eq!(got.header("Subject").as_deref(), Some(SUBJECT_RESTARTED));
    assert_eq!(
        got.header("Message-ID"),
        Some(format!("<{}>", entry["message_id"].as_str().unwrap())),
        "the retry is the same message"
    );
}

#[test]
fn a_mail_server_that_never_answers_costs_at_most_smtp_timeout() {
    let dir = TestDir::new("alert-tarpit");
    let ca = TestCa::new(&dir);
    let pit = TarPit::start();
    let port = free_port();
    let mut env = with(
        monitor_env(port),
        email_env(&ca, pit.port, "starttls", PASSWORD),
    );
    env.push(("SMTP_TIMEOUT", "1".into()));
    let m = Monitor::start(&dir, &env, &demo_server_args(port, &[]));
    wait_running(&m);
    kill_server_and_wait_for_restart(&m);
    let start = Instant::now();
    // The first attempt at once, the retry 5 s later: both time out.
    m.wait_for(Duration::from_secs(12), "two timed-out attempts", || {
        messages(&log_of(m.log_dir()), "alert delivery failed").len() >= 2
    });
    let window = start.elapsed();
    let log = log_of(m.log_dir());
    for failed in messages(&log, "alert delivery failed") {
        assert_eq!(failed["extra"]["error"], "timed out after 1s");
        let ms = failed["extra"]["ms"].as_f64().unwrap();
        assert!((900.0..1500.0).contains(&ms), "an attempt took {ms} ms");
    }
    assert!(pit.accepted.lock().unwrap().len() >= 2);
    // Checks go on: never a gap much longer than SMTP_TIMEOUT + CHECK_INTERVAL.
    let times: Vec<f64> = messages(&log, "health check passed")
        .iter()
        .map(|l| parse_millis(l["timestamp"].as_str().unwrap()))
        .collect();
    assert!(
        times.len() as f64 >= window.as_secs_f64() / 0.2 * 0.5,
        "{} checks in {window:?}",
        times.len()
    );
    let widest = times.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    assert!(widest < 1900.0, "checks {widest} ms apart\n{}", m.dump());
    assert_eq!(outbox_files(m.log_dir()).len(), 1);
}

#[test]
fn stopping_the_monitor_does_not_wait_for_a_slow_mail_server() {
    let dir = TestDir::new("alert-stop");
    let ca = TestCa::new(&dir);
    let pit = TarPit::start();
    let port = free_port();
    let mut env = with(
        monitor_env(port),
        email_env(&ca, pit.port, "starttls", PASSWORD),
    );
    env.push(("SMTP_TIMEOUT", "30".into()));
    let mut m = Monitor::start(&dir, &env, &demo_server_args(port, &[]));
    wait_running(&m);
    assert!(signal_pid(m.server_pid().unwrap(), libc::SIGKILL));
    m.wait_for(Duration::from_secs(10), "a delivery under way", || {
        !pit.accepted.lock().unwrap().is_empty()
    });
    let t = Instant::now();
    assert!(m.signal(libc::SIGTERM));
    let status = m.wait_exit(Duration::from_secs(5)).expect("it stops");
    assert_eq!(status.code(), Some(0));
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(
        outbox_files(m.log_dir()).len(),
        1,
        "kept for the next start"
    );
}

/// Milliseconds of the day of an ISO 8601 timestamp `…THH:MM:SS.mmmZ`.
fn parse_millis(ts: &str) -> f64 {
    let time = ts.split('T').nth(1).unwrap().trim_end_matches('Z');
    let parts: Vec<f64> = time.split(':').map(|p| p.parse().unwrap()).collect();
    ((parts[0] * 60.0 + parts[1]) * 60.0 + parts[2]) * 1000.0
}

#[test]
fn the_webhook_gets_the_json_and_is_retried_without_repeating_the_email() {
    let dir = TestDir::new("alert-webhook");
    let ca = TestCa::new(&dir);
    let mail = MailServer::starttls(&ca, 0, USER, PASSWORD);
    let hook = Hook::start(&[500, 200]);
    let port = free_port();
    let url = format!("http://127.0.0.1:{}/hooks/T0/secret-7c1b", hook.port);
    let mut env = with(
        monitor_env(port),
        email_env(&ca, mail.port, "starttls", PASSWORD),
    );
    env.push(("ALERT_WEBHOOK_URL", url.clone()));
    let m = Monitor::start(&dir, &env, &demo_server_args(port, &[]));
    wait_running(&m);
    kill_server_and_wait_for_restart(&m);

    // First round: email taken, the hook answers 500; the entry says so.
    m.wait_for(Duration::from_secs(10), "the first round", || {
        hook.requests().len() == 1
            && outbox_files(m.log_dir())
                .first()
                .is_some_and(|f| read_lossy(f).contains("\"email\""))
    });
    assert_eq!(mail.mail().len(), 1);
    // The retry 5 s later: only the webhook.
    m.wait_for(Duration::from_secs(10), "the retry", || {
        hook.requests().len() == 2 && outbox_files(m.log_dir()).is_empty()
    });
    assert_eq!(mail.mail().len(), 1, "the email is not sent again");

    let requests = hook.requests();
    let r = &requests[1];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/hooks/T0/secret-7c1b");
    assert_eq!(r.content_type.as_deref(), Some("application/json"));
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["event"], "restarted");
    assert_eq!(v["subject"], SUBJECT_RESTARTED);
    assert!(v["body"]
        .as_str()
        .unwrap()
        .starts_with("Server was down for 0 checks."));
    assert_eq!(
        v["text"].as_str().unwrap(),
        format!("{SUBJECT_RESTARTED}\n\n{}", v["body"].as_str().unwrap())
    );
    assert!(v["host"].is_string() && v["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(requests[0].body, r.body, "the same alert both times");

    let log = log_of(m.log_dir());
    let failed = messages(&log, "alert delivery failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["extra"]["channel"], "webhook");
    assert_eq!(failed[0]["extra"]["error"], "HTTP 500");
    assert_eq!(failed[0]["extra"]["retry_in_s"], 5);
    let delivered = messages(&log, "alert delivered");
    let channels: Vec<(&str, u64)> = delivered
        .iter()
        .map(|l| {
            (
                l["extra"]["channel"].as_str().unwrap(),
                l["extra"]["attempt"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(channels, vec![("email", 1), ("webhook", 2)]);
    for (path, text) in all_files(m.log_dir()) {
        assert!(
            !text.contains("secret-7c1b"),
            "webhook secret in {}",
            path.display()
        );
    }
}

#[test]
fn test_alert_reports_a_failing_webhook() {
    let dir = TestDir::new("alert-test-webhook");
    let hook = Hook::start(&[500]);
    let env = vec![(
        "ALERT_WEBHOOK_URL",
        format!("http://127.0.0.1:{}/hook/secret-path", hook.port),
    )];
    let out = run(&dir, &env, &["test-alert"], Duration::from_secs(10));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert_eq!(
        stdout.trim(),
        format!(
            "webhook: FAILED: HTTP 500 (http://127.0.0.1:{}/********)",
            hook.port
        )
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("webhook: HTTP 500"));
    let v: serde_json::Value = serde_json::from_str(&hook.requests()[0].body).unwrap();
    assert_eq!(v["subject"], SUBJECT_TEST);
}

#[test]
fn without_a_channel_test_alert_writes_an_eml_file() {
    let dir = TestDir::new("alert-test-eml");
    let out = run(
        &dir,
        &[("LOG_DIR", "logs".into())],
        &["test-alert"],
        Duration::from_secs(10),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let files: Vec<PathBuf> = fs::read_dir(dir.join("logs/alerts"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(files.len(), 1);
    assert!(files[0].to_str().unwrap().ends_with("-test.eml"));
    assert!(stdout.contains(files[0].to_str().unwrap()), "{stdout}");
    assert!(read_lossy(&files[0]).contains("Subject: [Chatbot Server Alert] Test Alert"));
}

/// Issue 8, item 9: one loop turn spends at most one SMTP_TIMEOUT on
/// deliveries, however many alerts it makes. A planned restart that fails
/// verification with the attempts used up makes two alerts in one turn
/// ("Planned Restart Failed" and "Server Down"); against a mail server that
/// never answers, the checks must not stop for two SMTP_TIMEOUTs.
#[test]
fn two_alerts_in_one_loop_turn_cost_at_most_one_smtp_timeout() {
    let dir = TestDir::new("alert-turn-budget");
    let ca = TestCa::new(&dir);
    let pit = TarPit::start();
    let port = free_port();
    let fault = dir.write("fault", "ok\n");
    let mut env = with(
        monitor_env(port),
        email_env(&ca, pit.port, "starttls", PASSWORD),
    );
    env = with(
        env,
        vec![
            ("SMTP_TIMEOUT", "2".into()),
            ("MAX_RESTART_ATTEMPTS", "1".into()),
            ("RESTART_COOLDOWN", "600".into()),
            ("STARTUP_TIMEOUT", "1.5".into()),
        ],
    );
    let fault_arg = fault.to_str().unwrap().to_string();
    let m = Monitor::start(
        &dir,
        &env,
        &demo_server_args(port, &["--fault-file", &fault_arg]),
    );
    wait_running(&m);
    // The one attempt allowed is used (and stays used: a long cooldown).
    kill_server_and_wait_for_restart(&m);
    dir.write("fault", "fail\n");
    let out = run(&dir, &env, &["restart"], Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(1), "{}", m.dump());
    m.wait_for(Duration::from_secs(15), "both alerts made", || {
        let log = log_of(m.log_dir());
        let queued = messages(&log, "alert queued");
        queued.iter().any(|l| l["extra"]["subject"] == SUBJECT_DOWN)
            && messages(&log, "health check failed").len() >= 5
    });
    let log = log_of(m.log_dir());
    let requested = messages(&log, "planned restart requested")[0]["timestamp"]
        .as_str()
        .unwrap()
        .to_string();
    let after = parse_millis(&requested);
    let times: Vec<f64> = log
        .iter()
        .filter(|l| {
            [
                "health check failed",
                "startup probe failed",
                "health check passed",
            ]
            .contains(&l["message"].as_str().unwrap_or_default())
        })
        .map(|l| parse_millis(l["timestamp"].as_str().unwrap()))
        .filter(|&t| t >= after)
        .collect();
    let widest = times.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    assert!(
        widest < 3300.0,
        "checks {widest} ms apart: two SMTP_TIMEOUTs in one turn\n{}",
        m.dump()
    );
}

/// Issue 8, item 12: after a long outage the waiting alerts go out "Server
/// Down" first, and stale ones of one kind are folded into one summary that
/// lists each (none dropped). Left in the outbox by an earlier run: five
/// "Restarted" three hours old and one "Down" two hours old.
#[test]
fn stale_alerts_are_folded_and_down_goes_first() {
    let dir = TestDir::new("alert-fold");
    let port = free_port();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let hour = 3_600_000;
    let mut waiting = Vec::new();
    for i in 0..5u64 {
        waiting.push((
            format!("2026-01-01T00-00-0{i}-000Z-restarted"),
            "restarted",
            SUBJECT_RESTARTED,
            now_ms - 3 * hour + i * 1000,
            format!("Server was down for 1 checks.\nCause: crash number {i}\nhost"),
        ));
    }
    waiting.push((
        "2026-01-01T01-00-00-000Z-down".into(),
        "down",
        SUBJECT_DOWN,
        now_ms - 2 * hour,
        "Server has failed 9 health checks.\nCause: HTTP 503\nhost".into(),
    ));
    for (id, event, subject, ms, body) in &waiting {
        let entry = serde_json::json!({
            "event": event, "subject": subject, "body": body, "host": "h",
            "time": format!("t{ms}"), "time_unix_ms": ms,
            "message_id": format!("{ms}.1.1@h"), "attempts": {}, "delivered": [],
        });
        dir.write(format!("logs/outbox/{id}.json"), entry.to_string());
    }
    let m = Monitor::start(&dir, &monitor_env(port), &demo_server_args(port, &[]));
    m.wait_for(
        Duration::from_secs(10),
        "the waiting alerts written",
        || {
            outbox_files(m.log_dir()).is_empty()
                && messages(&log_of(m.log_dir()), "alert written").len() >= 3
        },
    );
    std::thread::sleep(Duration::from_millis(500));
    let log = log_of(m.log_dir());
    let written: Vec<String> = messages(&log, "alert written")
        .iter()
        .map(|l| l["extra"]["subject"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(written.len(), 3, "{written:?}\n{}", m.dump());
    assert_eq!(written[0], SUBJECT_DOWN, "Down first: {written:?}");
    assert!(
        written.contains(&format!("{SUBJECT_RESTARTED} (4 alerts, folded)")),
        "{written:?}"
    );
    assert!(
        written.contains(&SUBJECT_RESTARTED.to_string()),
        "{written:?}"
    );
    let folds = messages(
        &log,
        "waiting alerts of one kind folded into one summary (each is listed in it; none dropped)",
    );
    assert_eq!(folds.len(), 1, "{}", m.dump());
    // The summary lists each folded alert with its cause.
    let summary = all_files(&m.log_dir().join("alerts"))
        .into_iter()
        .find(|(_, text)| text.contains("folded into this one"))
        .expect("the summary's .eml");
    // Quoted-printable: soft line breaks out.
    let text = summary.1.replace("=\r\n", "").replace("=\n", "");
    for i in 0..4 {
        let line = format!("{SUBJECT_RESTARTED}: crash number {i}");
        assert!(text.contains(&line), "{text}");
    }
}
