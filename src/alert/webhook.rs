//! The webhook channel: each alert POSTed as one JSON object to
//! `ALERT_WEBHOOK_URL`.
//!
//! The body is `{"event", "subject", "body", "host", "time", "text"}`, where
//! `text` is the subject, a blank line and the body: the one field that
//! Slack, Mattermost, Rocket.Chat and similar incoming webhooks show. Only a
//! 2xx answer is a delivery; a redirect is not followed (it is a failure, as
//! it is for the health check).
//!
//! The URL's path and query are usually the hook's secret: it is shown only
//! masked (`https://hooks.slack.com/********`), and no error message carries it.
//!
//! NOTE: minreq's timeout is whole seconds, and with a timeout it resolves
//! the name on a short-lived helper thread.
//!
//! Not here: retries (the outbox), logging.

use std::fmt;
use std::io;
use std::time::Duration;

use serde::Serialize;

use crate::config::mask_webhook_url;

/// The JSON fields of one alert.
#[derive(Debug, Serialize)]
struct Payload<'a> {
    event: &'a str,
    subject: &'a str,
    body: &'a str,
    host: &'a str,
    time: &'a str,
    text: String,
}

/// The JSON body for one alert. Pure.
pub fn payload(event: &str, subject: &str, body: &str, host: &str, time: &str) -> String {
    let p = Payload {
        event,
        subject,
        body,
        host,
        time,
        text: format!("{subject}\n\n{body}"),
    };
    serde_json::to_string(&p).unwrap_or_default()
}

/// Why a POST did not deliver. `Display` is the short reason the log and
/// `test-alert` show; it never holds the URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WebhookError {
    /// Any non-2xx answer.
    Status(u16),
    Refused,
    TimedOut(Duration),
    HostNotFound,
    Other(String),
}

impl fmt::Display for WebhookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WebhookError::Status(code) if (300..400).contains(code) => {
                write!(f, "HTTP {code} (redirects are not followed)")
            }
            WebhookError::Status(code) => write!(f, "HTTP {code}"),
            WebhookError::Refused => f.write_str("connection refused"),
            WebhookError::TimedOut(t) => write!(f, "timed out after {}s", t.as_secs()),
            WebhookError::HostNotFound => f.write_str("host not found"),
            WebhookError::Other(s) => f.write_str(s),
        }
    }
}

/// `ALERT_WEBHOOK_URL`. `Debug` masks it.
#[derive(Clone)]
pub struct Webhook {
    url: String,
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.describe())
            .finish()
    }
}

impl Webhook {
    pub fn new(url: &str) -> Webhook {
        Webhook {
            url: url.to_string(),
        }
    }

    /// Where it goes, masked: for logs and `test-alert`.
    pub fn describe(&self) -> String {
        mask_webhook_url(&self.url)
    }

    /// POSTs `json` within `timeout`, rounded down to whole seconds, at least 1.
    pub fn post(&self, json: &str, timeout: Duration) -> Result<(), WebhookError> {
        let secs = timeout.as_secs().max(1);
        let response = minreq::post(&self.url)
            .with_header("Content-Type", "application/json")
            .with_header(
                "User-Agent",
                concat!("server-monitor/", env!("CARGO_PKG_VERSION")),
            )
            .with_body(json)
            .with_timeout(secs)
            .with_follow_redirects(false)
            .with_max_headers_size(64 * 1024)
            .with_max_status_line_length(8 * 1024)
            .send()
            .map_err(|e| from_minreq(e, Duration::from_secs(secs)))?;
        match response.status_code {
            200..=299 => Ok(()),
            code => Err(WebhookError::Status(code)),
        }
    }
}

fn from_minreq(err: minreq::Error, timeout: Duration) -> WebhookError {
    match err {
        minreq::Error::IoError(e) => from_io(&e, timeout),
        minreq::Error::AddressNotFound => WebhookError::HostNotFound,
        // minreq's other errors name what was wrong with the answer, never
        // the URL; one line of it is enough.
        other => WebhookError::Other(crate::alert::one_line(&other.to_string())),
    }
}

fn from_io(err: &io::Error, timeout: Duration) -> WebhookError {
    use io::ErrorKind::*;
    match err.kind() {
        ConnectionRefused => WebhookError::Refused,
        TimedOut | WouldBlock => WebhookError::TimedOut(timeout),
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => {
            WebhookError::Other("the connection was closed before an answer".into())
        }
        _ => WebhookError::Other(crate::alert::one_line(&err.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_has_the_fields_and_a_text_that_chat_hooks_show() {
        let json = payload(
            "down",
            "[Chatbot Server Alert] Server Down - Manual Intervention Required",
            "Server has failed 3 health checks.\n\"quoted\" \\ line\n",
            "vm1",
            "2023-11-14T22:13:20.000Z",
        );
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["event"], "down");
        assert_eq!(
            v["subject"],
            "[Chatbot Server Alert] Server Down - Manual Intervention Required"
        );
        assert_eq!(
            v["body"],
            "Server has failed 3 health checks.\n\"quoted\" \\ line\n"
        );
        assert_eq!(v["host"], "vm1");
        assert_eq!(v["time"], "2023-11-14T22:13:20.000Z");
        assert_eq!(
            v["text"],
            "[Chatbot Server Alert] Server Down - Manual Intervention Required\n\nServer has failed 3 health checks.\n\"quoted\" \\ line\n"
        );
        assert_eq!(v.as_object().unwrap().len(), 6);
    }

    #[test]
    fn non_2xx_and_transport_errors_read_as_short_reasons() {
        let t = Duration::from_secs(3);
        let table = [
            (WebhookError::Status(500), "HTTP 500"),
            (
                WebhookError::Status(302),
                "HTTP 302 (redirects are not followed)",
            ),
            (
                from_io(&io::ErrorKind::ConnectionRefused.into(), t),
                "connection refused",
            ),
            (
                from_io(&io::ErrorKind::WouldBlock.into(), t),
                "timed out after 3s",
            ),
            (
                from_minreq(minreq::Error::AddressNotFound, t),
                "host not found",
            ),
        ];
        for (err, want) in table {
            assert_eq!(err.to_string(), want);
        }
    }

    #[test]
    fn describe_masks_the_secret_path() {
        let hook = Webhook::new("https://hooks.example.com/services/T000/B000/XXXX");
        assert_eq!(hook.describe(), "https://hooks.example.com/********");
        assert!(!format!("{hook:?}").contains("XXXX"));
    }
}
