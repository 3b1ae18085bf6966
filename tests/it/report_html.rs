//! `report --html` as a person sees it: the page is rendered by headless
//! Chromium (Debian's `chromium`; installed with apt-get when missing — the
//! test fails, loudly, if that cannot be done) and checked by
//! `tests/scripts/check_report_page.py` with Debian's `python3-html5lib`:
//! no parse errors, a screenshot that is not blank, nothing drawn in the
//! rightmost 40 columns of a 1280-px window (the page keeps to its
//! max-width, the charts to their viewBox), every chart with its data, and
//! the server's text escaped.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::util::*;

fn have(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Installs a Debian package when `present()` is false; panics with a clear
/// message when that fails (never a quiet skip).
fn ensure(package: &str, present: impl Fn() -> bool) {
    if present() {
        return;
    }
    eprintln!("{package} is missing: apt-get install -y {package}");
    let ok = Command::new("apt-get")
        .args(["install", "-y", package])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok && present(),
        "cannot install {package} with apt-get: this test needs it (apt-get install -y {package})"
    );
}

fn evil_incident(log_dir: &Path) {
    use server_monitor::history::{file_name, Change, Record, Status};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let lines = [
        Record::State {
            t: now - 60_000,
            change: Change::to(Status::Failing).because("status \"<script>alert(1)</script>\""),
        },
        Record::State {
            t: now - 50_000,
            change: Change::to(Status::Healthy),
        },
    ];
    let path = log_dir.join("history").join(file_name(now - 60_000));
    let mut text = std::fs::read_to_string(&path).unwrap_or_default();
    for r in lines {
        text.push_str(&r.to_line());
    }
    std::fs::write(path, text).unwrap();
}

/// Screenshots `page` in headless Chromium at 1280×900 and runs the check
/// script on both: no parse error, nothing at the right edge, and at least
/// `min_busy` of the pixels drawn (not blank).
fn check_in_chromium(dir: &TestDir, page: &Path, min_busy: f64) -> Value {
    let shot = dir.join(format!(
        "{}.png",
        page.file_stem().unwrap().to_string_lossy()
    ));
    let status = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--hide-scrollbars",
            "--disable-gpu",
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,900",
            &format!("file://{}", page.display()),
        ])
        .output()
        .expect("run chromium");
    assert!(
        shot.exists(),
        "chromium wrote no screenshot: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scripts/check_report_page.py");
    let out = Command::new("/usr/bin/python3")
        .arg(&script)
        .arg(page)
        .arg(&shot)
        .output()
        .expect("run the check script");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("page check: {v}");
    assert_eq!(v["parse_errors"], Value::Array(vec![]), "{v}");
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(1280), Some(900))
    );
    let busy = v["busy_fraction"].as_f64().unwrap();
    assert!(busy > min_busy, "the screenshot is (nearly) blank: {v}");
    assert_eq!(
        v["right_columns_busy"], 0,
        "something reaches the right edge: {v}"
    );
    v
}

/// The status page `/` of a running monitor, saved as served, as a person
/// sees it: the same checks as the report's page, its three 24-hour charts
/// with their data, and the configured text (SERVICE_NAME) escaped.
#[test]
fn the_status_page_renders_in_chromium_with_its_charts() {
    ensure("chromium", || have("chromium", &["--version"]));
    ensure("python3-html5lib", || {
        have("/usr/bin/python3", &["-c", "import html5lib"])
    });
    let dir = TestDir::new("status-page-html");
    let evil = "<script>alert(1)</script> & \"co\"";
    let (m, _port, status) = super::status::start(&dir, &[("SERVICE_NAME", evil)]);
    // The usage watch samples the server within seconds (once a minute
    // after that): wait for a memory point, and a few latency checks.
    let mut html = String::new();
    m.wait_for(
        Duration::from_secs(30),
        "the page with latency and memory points",
        || {
            let Some((200, _, body)) = super::status::get(status, "/", "", super::status::QUICK)
            else {
                return false;
            };
            html = body;
            html.matches("class=\"point\"").count() >= 2 && !html.contains("no data")
        },
    );
    assert!(!html.contains("<script"), "unescaped text or a script");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;co&quot;"));
    for outside in ["src=", "href=", "@import", "url("] {
        assert!(
            !html.contains(outside),
            "the page refers outside: {outside}"
        );
    }
    assert_eq!(html.matches("<svg").count(), 3);
    assert_eq!(html.matches("class=\"bar\"").count(), 24, "a bar per hour");
    assert_eq!(html.matches("class=\"series\"").count(), 2);
    assert!(html.contains("Last 30 days</th><td>"), "{html}");
    assert!(
        !html.contains("n/a (nothing observed)</td></tr>\n<tr><th>Last 7"),
        "{html}"
    );
    let page = dir.join("status-page.html");
    std::fs::write(&page, &html).unwrap();
    // A monitor seconds old fills one bar of 24 and a few points: a
    // sparser page than a month's report (about 3.5 % of it is drawn).
    check_in_chromium(&dir, &page, 0.02);
}

#[test]
fn the_html_report_renders_in_chromium_with_every_chart_and_nothing_overflowing() {
    ensure("chromium", || have("chromium", &["--version"]));
    ensure("python3-html5lib", || {
        have("/usr/bin/python3", &["-c", "import html5lib"])
    });
    let dir = TestDir::new("report-html");
    let logs = dir.join("logs");
    super::history::synthetic_history(&logs, 40, 2);
    evil_incident(&logs);
    let env = vec![("LOG_DIR", "logs".to_string())];
    let page = dir.join("report.html");
    let out = run(
        &dir,
        &env,
        &["report", "--since", "30d", "--html", page.to_str().unwrap()],
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(&page).unwrap();

    // Self-contained, escaped, every chart with its data.
    assert!(
        !html.contains("<script"),
        "unescaped server text or a script"
    );
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    for outside in ["src=", "href=", "@import", "url("] {
        assert!(
            !html.contains(outside),
            "the page refers outside: {outside}"
        );
    }
    assert_eq!(html.matches("<svg").count(), 3);
    assert_eq!(html.matches("class=\"bar\"").count(), 31, "a bar per day");
    // Latency and memory: a point for each of the 30 full days before today.
    assert!(html.matches("class=\"point\"").count() >= 2 * 29);
    assert_eq!(html.matches("class=\"series\"").count(), 2);
    assert!(!html.contains("no data"));
    assert!(html.matches("<tr><td>").count() >= 61, "the incident table");

    check_in_chromium(&dir, &page, 0.05);
}
