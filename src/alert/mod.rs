//! Alerts: pure rendering of subjects and bodies ([`render`]), the MIME
//! message ([`to_mime`]), and the local channel — an `.eml` file under
//! `LOG_DIR/alerts/` — used when no other channel is configured, with its
//! retention ([`sweep_old_alert_files`]).
//!
//! Delivery lives in the submodules: [`smtp`] (email through mail-send),
//! [`webhook`] (a JSON POST), [`outbox`] (the durable queue and its pure retry
//! schedule) and [`dispatch`] (the [`Dispatcher`] the main loop drives, and
//! `server-monitor test-alert`).
//!
//! Subjects are `[SERVICE_NAME Alert] TITLE`. Bodies begin with the lines
//! users of the original monitor know, then a `Cause:` line, then the host,
//! the time (UTC, ISO 8601) and the health URL, and for a down alert the last
//! lines of `server_error.log`.
//!
//! Nothing a server prints or a setting holds can inject a header: the
//! subject is one line with control characters replaced, and mail-builder
//! encodes every header it writes. No secret is ever part of a message.
//!
//! Not here: anything that touches the network.

pub mod dispatch;
pub mod outbox;
pub mod smtp;
pub mod webhook;

pub use dispatch::{test_alert, Dispatcher};

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::logging::utc_iso8601_millis;
use crate::policy::Alert;

/// How many lines of `server_error.log` a down alert quotes.
pub const ERROR_TAIL_LINES: usize = 20;

/// Facts every alert body ends with.
pub struct Context<'a> {
    pub service_name: &'a str,
    pub host: &'a str,
    pub time: SystemTime,
    pub health_url: &'a str,
    /// The last lines of `server_error.log`, for a down alert.
    pub error_tail: &'a [String],
}

#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// A short machine name: `restarted`, `down`, `recovered`, `test`, …
    pub event: &'static str,
    pub subject: String,
    pub body: String,
}

/// One line, no control characters: safe in a header and in a body line.
pub fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

fn subject(ctx: &Context<'_>, title: &str) -> String {
    format!("[{} Alert] {title}", one_line(ctx.service_name))
}

fn footer(ctx: &Context<'_>, with_tail: bool) -> String {
    let mut s = format!(
        "\nService: {}\nHost: {}\nTime: {}\nHealth URL: {}\n",
        one_line(ctx.service_name),
        one_line(ctx.host),
        utc_iso8601_millis(ctx.time),
        one_line(ctx.health_url),
    );
    if with_tail && !ctx.error_tail.is_empty() {
        s.push_str("\nLast lines of server_error.log:\n");
        for line in ctx.error_tail {
            s.push_str("  ");
            s.push_str(&line.replace(|c: char| c.is_control() && c != '\t', " "));
            s.push('\n');
        }
    }
    s
}

/// Whether `alert` quotes the last lines of server_error.log: the one
/// answer, for the monitor (which reads them) and [`render`] (which shows
/// them).
pub fn quotes_error_tail(alert: &Alert) -> bool {
    match alert {
        Alert::Down { .. } | Alert::PlannedRestartFailed { .. } => true,
        Alert::Restarted { .. } | Alert::Recovered { .. } => false,
    }
}

/// The subject and body of a policy alert.
pub fn render(alert: &Alert, ctx: &Context<'_>) -> Message {
    let tail = quotes_error_tail(alert);
    match alert {
        Alert::Restarted { down_checks, cause } => Message {
            event: "restarted",
            subject: subject(ctx, "Server Restarted Successfully"),
            body: format!(
                "Server was down for {down_checks} checks.\nAutomatic restart successful.\nServer is now healthy.\nCause: {}\n{}",
                one_line(cause),
                footer(ctx, tail)
            ),
        },
        Alert::Down {
            failures,
            attempts,
            max_attempts,
            last_error,
            cause,
        } => Message {
            event: "down",
            subject: subject(ctx, "Server Down - Manual Intervention Required"),
            body: format!(
                "Server has failed {failures} health checks.\nRestart attempts: {attempts}/{max_attempts}\nLast error: {}\n\nManual intervention required.\nCause: {}\n{}",
                one_line(last_error),
                one_line(cause),
                footer(ctx, tail)
            ),
        },
        Alert::Recovered { failures } => Message {
            event: "recovered",
            subject: subject(ctx, "Server Recovered"),
            body: format!(
                "Server is healthy again after {failures} failed health checks.\nThe monitor had given up restarting it.\nIt watches and restarts it as usual again.\n{}",
                footer(ctx, tail)
            ),
        },
        Alert::PlannedRestartFailed { by, reason } => Message {
            event: "planned-restart-failed",
            subject: subject(ctx, "Planned Restart Failed"),
            body: format!(
                "A planned restart did not bring the server up healthy.\nRequested by: {}\nLast error: {}\nThe monitor now restarts it by its usual rules.\n{}",
                one_line(by),
                one_line(reason),
                footer(ctx, tail)
            ),
        },
    }
}

/// The message `server-monitor test-alert` sends.
pub fn render_test(ctx: &Context<'_>) -> Message {
    Message {
        event: "test",
        subject: subject(ctx, "Test Alert"),
        body: format!(
            "This is a test alert from server-monitor.\nIf you can read this, alerts reach you.\n{}",
            footer(ctx, false)
        ),
    }
}

/// The full MIME message (CRLF line ends), with Date and Message-ID.
pub fn to_mime(msg: &Message, from: &str, to: &[String], time: SystemTime, host: &str) -> Vec<u8> {
    let parts = MimeParts {
        event: msg.event,
        subject: &msg.subject,
        body: &msg.body,
        time,
        message_id: &message_id(time, host),
    };
    build_mime(&parts, from, to)
}

/// A Message-ID for an alert made at `time` on `host` (without the `<>`).
/// The outbox keeps it, so that every retry of one alert carries the same id
/// and a mail system that saw an earlier try can tell it is the same message.
pub fn message_id(time: SystemTime, host: &str) -> String {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let host: String = one_line(host)
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-.".contains(*c))
        .collect();
    format!(
        "{}.{}.{}@{}",
        since_epoch.as_secs(),
        since_epoch.subsec_nanos(),
        std::process::id(),
        if host.is_empty() { "localhost" } else { &host }
    )
}

/// What a MIME message is made of, borrowed (an outbox entry or a [`Message`]).
pub struct MimeParts<'a> {
    pub event: &'a str,
    pub subject: &'a str,
    pub body: &'a str,
    pub time: SystemTime,
    pub message_id: &'a str,
}

/// The full MIME message (CRLF line ends): From, To (every recipient; the
/// sender when there is none), Subject, Date, Message-ID. mail-builder
/// encodes every header value, so no text can add a header.
pub fn build_mime(parts: &MimeParts<'_>, from: &str, to: &[String]) -> Vec<u8> {
    let since_epoch = parts.time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let to: Vec<String> = if to.is_empty() {
        vec![from.to_string()]
    } else {
        to.to_vec()
    };
    let event: String = parts
        .event
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    mail_builder::MessageBuilder::new()
        .from(from.to_string())
        .to(to)
        .subject(one_line(parts.subject))
        .date(since_epoch.as_secs() as i64)
        .message_id(parts.message_id.to_string())
        .header(
            "X-Server-Monitor-Event",
            mail_builder::headers::raw::Raw::new(event),
        )
        .text_body(parts.body.to_string())
        .write_to_vec()
        .unwrap_or_default()
}

/// Writes the message as `LOG_DIR/alerts/<time>-<event>.eml` (0640, the
/// directory 0750) and returns its path.
pub fn write_eml(
    log_dir: &Path,
    mime: &[u8],
    event: &str,
    time: SystemTime,
) -> io::Result<PathBuf> {
    let dir = log_dir.join("alerts");
    crate::files::create_dir_0750(&dir)?;
    let stamp = utc_iso8601_millis(time).replace([':', '.'], "-");
    let mut path = dir.join(format!("{stamp}-{event}.eml"));
    let mut n = 1;
    while path.exists() {
        n += 1;
        path = dir.join(format!("{stamp}-{event}-{n}.eml"));
    }
    crate::files::write_atomic(&path, mime, true)?;
    Ok(path)
}

/// Retention of the local channel: removes the `.eml` files in
/// `LOG_DIR/alerts` older than `max_age` (nothing else there); returns how many.
pub fn sweep_old_alert_files(log_dir: &Path, max_age: std::time::Duration) -> usize {
    crate::logging::retention::remove_files_older_than(&log_dir.join("alerts"), max_age, |n| {
        n.ends_with(".eml")
    })
}

/// The last `n` lines of a text file (whole lines; at most the last 64 KiB read).
pub fn tail_lines(path: &Path, n: usize) -> Vec<String> {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = fs::File::open(path) else {
        return Vec::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(64 * 1024);
    if f.seek(SeekFrom::Start(start)).is_err() {
        return Vec::new();
    }
    let mut buf = Vec::new();
    if f.read_to_end(&mut buf).is_err() {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&buf);
    let mut lines: Vec<&str> = text.lines().collect();
    if start > 0 && !lines.is_empty() {
        lines.remove(0); // most likely a partial line
    }
    let skip = lines.len().saturating_sub(n);
    lines[skip..].iter().map(|l| l.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ctx<'a>(tail: &'a [String]) -> Context<'a> {
        Context {
            service_name: "Chatbot Server",
            host: "vm1",
            time: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            health_url: "http://127.0.0.1:8000/health",
            error_tail: tail,
        }
    }

    #[test]
    fn restarted_alert_has_the_known_subject_and_lines() {
        let m = render(
            &Alert::Restarted {
                down_checks: 0,
                cause: "killed by signal 9 (SIGKILL)".into(),
            },
            &ctx(&[]),
        );
        assert_eq!(
            m.subject,
            "[Chatbot Server Alert] Server Restarted Successfully"
        );
        assert!(m.body.starts_with(
            "Server was down for 0 checks.\nAutomatic restart successful.\nServer is now healthy.\nCause: killed by signal 9"
        ), "{}", m.body);
        assert!(m.body.contains("Host: vm1\n"));
        assert!(m.body.contains("Time: 2023-11-14T22:13:20.000Z\n"));
        assert!(m
            .body
            .contains("Health URL: http://127.0.0.1:8000/health\n"));
    }

    #[test]
    fn down_alert_has_attempts_last_error_and_error_tail() {
        let tail = vec![
            "Traceback (most recent call last):".to_string(),
            "boom".to_string(),
        ];
        let m = render(
            &Alert::Down {
                failures: 3,
                attempts: 3,
                max_attempts: 3,
                last_error: "HTTP 503".into(),
                cause: "3 failed checks, last: HTTP 503".into(),
            },
            &ctx(&tail),
        );
        assert_eq!(
            m.subject,
            "[Chatbot Server Alert] Server Down - Manual Intervention Required"
        );
        assert!(m.body.starts_with(
            "Server has failed 3 health checks.\nRestart attempts: 3/3\nLast error: HTTP 503\n\nManual intervention required.\n"
        ), "{}", m.body);
        assert!(m.body.contains("  boom\n"));
    }

    #[test]
    fn no_header_injection_through_service_name_or_error() {
        let mut c = ctx(&[]);
        c.service_name = "Evil\r\nBcc: victim@example.com";
        let m = render(
            &Alert::Down {
                failures: 1,
                attempts: 0,
                max_attempts: 3,
                last_error: "bad\r\nX-Injected: 1".into(),
                cause: "x".into(),
            },
            &c,
        );
        assert!(!m.subject.contains('\n') && !m.subject.contains('\r'));
        assert!(m.body.contains("Last error: bad  X-Injected: 1\n"));
        let mime = String::from_utf8(to_mime(
            &m,
            "mon@vm1",
            &["ops@example.com".into()],
            c.time,
            "vm1",
        ))
        .unwrap();
        let headers = mime.split("\r\n\r\n").next().unwrap();
        assert!(!headers.lines().any(|l| l.starts_with("Bcc:")), "{headers}");
        assert!(headers.contains("Subject: "));
        assert!(headers.contains("Date: "));
        assert!(headers.contains("Message-ID: <"));
        assert!(headers.contains("To: <ops@example.com>"), "{headers}");
    }

    #[test]
    fn eml_files_are_written_under_alerts_and_never_overwritten() {
        let dir = std::env::temp_dir().join(format!("sm-alert-test-{}", std::process::id()));
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let a = write_eml(&dir, b"one", "down", t).unwrap();
        let b = write_eml(&dir, b"two", "down", t).unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with(dir.join("alerts")));
        assert_eq!(fs::read(&b).unwrap(), b"two");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sweep_removes_only_old_alert_files() {
        let dir = std::env::temp_dir().join(format!("sm-alert-sweep-{}", std::process::id()));
        fs::create_dir_all(dir.join("alerts")).unwrap();
        for f in ["server.log.1", "alerts/a.eml", "alerts/b.txt"] {
            fs::write(dir.join(f), "x").unwrap();
        }
        assert_eq!(sweep_old_alert_files(&dir, Duration::from_secs(3600)), 0);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(sweep_old_alert_files(&dir, Duration::from_millis(1)), 1);
        assert!(!dir.join("alerts/a.eml").exists());
        assert!(dir.join("alerts/b.txt").exists());
        assert!(dir.join("server.log.1").exists(), "logs are the logger's");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tail_lines_returns_the_last_whole_lines() {
        let dir = std::env::temp_dir().join(format!("sm-tail-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("e.log");
        let text: String = (0..10_000).map(|i| format!("line {i}\n")).collect();
        fs::write(&p, text).unwrap();
        assert_eq!(tail_lines(&p, 2), vec!["line 9998", "line 9999"]);
        assert!(tail_lines(&dir.join("missing"), 5).is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }
}
