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
//! The POST is `crate::http`'s, under SMTP_TIMEOUT, on a thread of its own
//! so that a stop signal does not wait for a stalled hook (see
//! [`Webhook::post`]). Trust for https: the system's roots.
//!
//! Not here: retries (the outbox), logging.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::mask_webhook_url;
use crate::http::{self, IoClass, Url};

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
    /// Given up because the monitor is stopping.
    Cancelled,
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
            WebhookError::TimedOut(t) if t.subsec_nanos() == 0 => {
                write!(f, "timed out after {}s", t.as_secs())
            }
            WebhookError::TimedOut(t) => write!(f, "timed out after {}s", t.as_secs_f64()),
            WebhookError::HostNotFound => f.write_str("host not found"),
            WebhookError::Cancelled => f.write_str("interrupted: the monitor is stopping"),
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

    /// POSTs `json` within `timeout`; gives up within [`CANCEL_POLL`] when
    /// `cancel` is set.
    ///
    /// NOTE: the POST runs on a thread of its own, so that a stop signal
    /// need not wait for a hook that stalls (or for a name lookup, which has
    /// no timeout). A POST given up on ends at its own deadline on that
    /// thread, holding its socket until then; there is at most the one. A
    /// POST still running a second past its deadline (a name lookup that
    /// hangs) is given up on as timed out.
    pub fn post(
        &self,
        json: &str,
        timeout: Duration,
        cancel: Option<&AtomicBool>,
    ) -> Result<(), WebhookError> {
        let (url, body) = (self.url.clone(), json.to_string());
        let (tx, rx) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("webhook-post".into())
            .spawn(move || {
                let _ = tx.send(post_now(&url, &body, timeout));
            });
        if spawned.is_err() {
            // No thread to be had: POST here, uncancellably.
            return post_now(&self.url, json, timeout);
        }
        let overdue = crate::config::instant_after(Instant::now(), timeout + OVERDUE_GRACE);
        loop {
            if cancel.is_some_and(|c| c.load(Ordering::SeqCst)) {
                return Err(WebhookError::Cancelled);
            }
            if Instant::now() > overdue {
                // Only a name lookup (no timeout of its own) holds a POST
                // past its deadline; the thread ends when the lookup does.
                return Err(WebhookError::TimedOut(timeout));
            }
            match rx.recv_timeout(CANCEL_POLL) {
                Ok(result) => return result,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(WebhookError::Other("the HTTP client failed".into()))
                }
            }
        }
    }
}

/// How long past its deadline a POST is waited for.
const OVERDUE_GRACE: Duration = Duration::from_secs(1);

/// How often a POST in progress looks at the cancel flag.
pub const CANCEL_POLL: Duration = Duration::from_millis(50);

/// The POST itself, here and now.
fn post_now(url: &str, json: &str, timeout: Duration) -> Result<(), WebhookError> {
    let url = Url::parse(url).map_err(WebhookError::Other)?;
    let tls = match url.https {
        false => None,
        true => Some(
            crate::tls::default_client_config(None).map_err(|e| match e {
                crate::tls::SetupError::CaFile(e) => WebhookError::Other(e.1),
                crate::tls::SetupError::Rustls(e) => WebhookError::Other(e),
            })?,
        ),
    };
    let request = http::Request {
        method: "POST",
        url: &url,
        headers: &[("Content-Type", "application/json")],
        body: json.as_bytes(),
        body_limit: 0,
        tls,
    };
    match http::send(&request, timeout) {
        Ok(r) if (200..300).contains(&r.status) => Ok(()),
        Ok(r) => Err(WebhookError::Status(r.status)),
        Err(e) => Err(from_http(e, timeout)),
    }
}

fn from_http(err: http::Error, timeout: Duration) -> WebhookError {
    match err {
        http::Error::Io(e) => from_io(&e, timeout),
        http::Error::HostNotFound => WebhookError::HostNotFound,
        http::Error::NoAnswer | http::Error::ClosedEarly => {
            WebhookError::Other("the connection was closed before an answer".into())
        }
        // The others name what was wrong with the answer, never the URL.
        other => WebhookError::Other(crate::alert::one_line(&other.to_string())),
    }
}

fn from_io(err: &io::Error, timeout: Duration) -> WebhookError {
    match http::io_class(err) {
        IoClass::Refused => WebhookError::Refused,
        IoClass::TimedOut => WebhookError::TimedOut(timeout),
        IoClass::Reset | IoClass::ClosedEarly => {
            WebhookError::Other("the connection was closed before an answer".into())
        }
        IoClass::Other => WebhookError::Other(crate::alert::one_line(&err.to_string())),
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
            (from_http(http::Error::HostNotFound, t), "host not found"),
            (
                from_io(&io::ErrorKind::TimedOut.into(), Duration::from_millis(1500)),
                "timed out after 1.5s",
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
