//! The email channel: one MIME message to every `ALERT_EMAIL` recipient
//! through mail-send, under one deadline.
//!
//! - Security: `starttls` (a plain connection that must upgrade: no
//!   STARTTLS offered is a failure, never a fallback to clear text), `tls`
//!   (implicit, port 465) or `none` (plain; config refuses it together with
//!   a password). AUTH (PLAIN or LOGIN, whichever the server offers) with
//!   `SMTP_USERNAME` / `SMTP_PASSWORD` when they are set.
//! - Trust: certificates are always verified, against the system's CA bundle
//!   (`SSL_CERT_FILE` when it was set at start, else the first bundle found
//!   of the usual distribution paths; none compiled in, see `tls`) plus the
//!   certificates in `SMTP_CA_FILE`. We build our own
//!   rustls `ClientConfig` on the `ring` provider and hand mail-send the
//!   connector, so its platform verifier is never used. The roots are read
//!   per delivery: an idle monitor holds none of them, and a renewed bundle
//!   is seen without a restart.
//! - Time: mail-send is async. Each delivery builds a current-thread tokio
//!   runtime, runs the whole conversation (name lookup, connect, TLS, AUTH,
//!   MAIL, RCPT, DATA, QUIT) under one `tokio::time::timeout` of the given
//!   deadline — with mail-send's own per-command timeout set to the same —
//!   and drops the runtime. An idle monitor has no runtime and no threads.
//!   A name lookup still running at the deadline is abandoned on tokio's
//!   blocking thread (`shutdown_background`), never waited for. A `cancel`
//!   flag (the monitor's shutdown flag) ends a delivery within 50 ms, so a
//!   SIGTERM is not held up by a slow mail server.
//! - Errors: [`classify`] turns mail-send's, rustls' and io errors into a
//!   short [`SmtpError`] a person can act on. None of them holds the password.
//!
//! Not here: retries (the outbox), rendering (the parent module), logging.

use std::fmt;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::Duration;

use mail_send::smtp::message::Message as Envelope;
use mail_send::{Credentials, SmtpClientBuilder};
use rustls::CertificateError;

use crate::alert::one_line;
use crate::config::{AlertSettings, SmtpSecurity};

pub use crate::tls::system_bundle;

/// Why a delivery failed. `Display` is the short reason for the log and
/// `test-alert`: what happened and, where there is one, what to check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SmtpError {
    /// The server rejected the credentials (535 and the like).
    Auth,
    /// The certificate chain does not lead to a trusted root.
    Untrusted,
    /// The certificate is not for the host we connected to.
    WrongName(String),
    Expired,
    /// Another certificate problem, as rustls words it.
    Certificate(String),
    /// The TLS handshake failed for another reason.
    Tls(String),
    Refused,
    TimedOut(Duration),
    HostNotFound(String),
    /// STARTTLS was required but the server does not offer it.
    NoStartTls,
    /// The server offers no AUTH method this client speaks (or none at all).
    NoAuthMethod,
    /// The server answered a command with an error: the code and its text.
    Rejected(String),
    /// The server closed the connection or sent something that is not SMTP.
    Protocol,
    /// SMTP_CA_FILE cannot be used.
    CaFile(PathBuf, String),
    /// Given up because the monitor is stopping.
    Cancelled,
    Other(String),
}

impl fmt::Display for SmtpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SmtpError::Auth => f.write_str(
                "authentication failed (check SMTP_USERNAME/SMTP_PASSWORD; Gmail needs an app password)",
            ),
            SmtpError::Untrusted => f.write_str("certificate not trusted (set SMTP_CA_FILE?)"),
            SmtpError::WrongName(host) => {
                write!(f, "certificate is not valid for {host} (check SMTP_SERVER)")
            }
            SmtpError::Expired => f.write_str("certificate expired or not yet valid"),
            SmtpError::Certificate(s) => write!(f, "certificate rejected: {s}"),
            SmtpError::Tls(s) => write!(f, "TLS failed: {s} (check SMTP_SECURITY and SMTP_PORT)"),
            SmtpError::Refused => f.write_str("connection refused"),
            SmtpError::TimedOut(t) => write!(f, "timed out after {}", seconds(*t)),
            SmtpError::HostNotFound(host) => write!(f, "host not found: {host}"),
            SmtpError::NoStartTls => f.write_str(
                "the server does not offer STARTTLS (port 465 wants SMTP_SECURITY=tls)",
            ),
            SmtpError::NoAuthMethod => {
                f.write_str("the server offers no AUTH method we support (PLAIN, LOGIN)")
            }
            SmtpError::Rejected(s) => write!(f, "the server said: {s}"),
            SmtpError::Protocol => f.write_str(
                "the server closed the connection or did not speak SMTP (check SMTP_SECURITY and SMTP_PORT)",
            ),
            SmtpError::CaFile(path, e) => write!(f, "SMTP_CA_FILE {}: {e}", path.display()),
            SmtpError::Cancelled => f.write_str("interrupted: the monitor is stopping"),
            SmtpError::Other(s) => f.write_str(s),
        }
    }
}

/// `10s`, `0.5s`.
fn seconds(t: Duration) -> String {
    if t.subsec_nanos() == 0 {
        format!("{}s", t.as_secs())
    } else {
        format!("{}s", t.as_secs_f64())
    }
}

/// Turns a mail-send error into the reason a person reads. Pure.
pub fn classify(err: &mail_send::Error, host: &str, timeout: Duration) -> SmtpError {
    use mail_send::Error as E;
    match err {
        E::Io(e) => classify_io(e, host, timeout),
        E::Tls(e) => classify_tls(e, host),
        E::AuthenticationFailed(_) => SmtpError::Auth,
        E::UnsupportedAuthMechanism => SmtpError::NoAuthMethod,
        E::MissingStartTls => SmtpError::NoStartTls,
        E::Timeout => SmtpError::TimedOut(timeout),
        E::UnexpectedReply(r) => {
            let text = one_line(&r.message);
            let text: String = text.chars().take(200).collect();
            SmtpError::Rejected(format!("{} {text}", r.code))
        }
        E::UnparseableReply => SmtpError::Protocol,
        E::InvalidTLSName => SmtpError::Other(format!(
            "SMTP_SERVER `{}` is not a valid TLS server name",
            one_line(host)
        )),
        E::MissingRcptTo => SmtpError::Other("no recipient (ALERT_EMAIL)".into()),
        other => SmtpError::Other(one_line(&other.to_string())),
    }
}

fn classify_io(e: &io::Error, host: &str, timeout: Duration) -> SmtpError {
    // tokio-rustls reports a handshake failure as an io::Error around the
    // rustls error.
    if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return classify_tls(tls, host);
    }
    use io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => SmtpError::Refused,
        TimedOut | WouldBlock => SmtpError::TimedOut(timeout),
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => SmtpError::Protocol,
        _ if e.to_string().contains("lookup address") => SmtpError::HostNotFound(one_line(host)),
        _ => SmtpError::Other(one_line(&e.to_string())),
    }
}

fn classify_tls(e: &rustls::Error, host: &str) -> SmtpError {
    use CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => SmtpError::Untrusted,
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                SmtpError::WrongName(one_line(host))
            }
            C::Expired
            | C::ExpiredContext { .. }
            | C::NotValidYet
            | C::NotValidYetContext { .. } => SmtpError::Expired,
            other => SmtpError::Certificate(format!("{other:?}")),
        },
        rustls::Error::AlertReceived(alert) => {
            SmtpError::Tls(format!("the server sent the alert {alert:?}"))
        }
        other => SmtpError::Tls(one_line(&other.to_string())),
    }
}

/// The email channel's settings. `Debug` masks the password.
#[derive(Clone)]
pub struct Mailer {
    host: String,
    port: u16,
    security: SmtpSecurity,
    credentials: Option<(String, String)>,
    ca_file: Option<PathBuf>,
    system_bundle: Option<PathBuf>,
    helo: String,
}

impl fmt::Debug for Mailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mailer")
            .field("server", &self.describe())
            .field("username", &self.credentials.as_ref().map(|(u, _)| u))
            .field("ca_file", &self.ca_file)
            .field("system_bundle", &self.system_bundle)
            .finish_non_exhaustive()
    }
}

impl Mailer {
    /// The mailer, when email is configured (SMTP_SERVER and ALERT_EMAIL).
    /// `system_bundle`: see [`system_bundle`]; `hostname` is said in EHLO.
    pub fn new(
        settings: &AlertSettings,
        hostname: &str,
        system_bundle: Option<PathBuf>,
    ) -> Option<Mailer> {
        let host = settings.smtp_server.clone()?;
        if settings.alert_email.is_empty() {
            return None;
        }
        let credentials = match (&settings.smtp_username, &settings.smtp_password) {
            (Some(u), Some(p)) => Some((u.clone(), p.clone())),
            _ => None,
        };
        let helo: String = hostname
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || "-.".contains(*c))
            .collect();
        Some(Mailer {
            host,
            port: settings.smtp_port,
            security: settings.smtp_security,
            credentials,
            ca_file: settings.smtp_ca_file.clone(),
            system_bundle,
            helo: if helo.is_empty() {
                "localhost".into()
            } else {
                helo
            },
        })
    }

    /// `smtp.example.com:587 (starttls)`: for logs and `test-alert`.
    pub fn describe(&self) -> String {
        format!("{}:{} ({})", self.host, self.port, self.security)
    }

    fn connector(&self) -> Result<tokio_rustls::TlsConnector, SmtpError> {
        let roots = crate::tls::roots(self.system_bundle.as_deref(), self.ca_file.as_deref())
            .map_err(|crate::tls::CaFileError(path, e)| SmtpError::CaFile(path, e))?;
        let config = crate::tls::client_config(roots).map_err(SmtpError::Tls)?;
        Ok(tokio_rustls::TlsConnector::from(config))
    }

    /// Delivers `mime` from `from` to every address in `to`, all of it within
    /// `timeout`; gives up early when `cancel` is set.
    pub fn send(
        &self,
        from: &str,
        to: &[String],
        mime: &[u8],
        timeout: Duration,
        cancel: Option<&AtomicBool>,
    ) -> Result<(), SmtpError> {
        let connector = self.connector()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| SmtpError::Other(format!("cannot start the SMTP client: {e}")))?;
        let outcome = runtime.block_on(async {
            let delivery = tokio::time::timeout(
                timeout,
                self.conversation(connector, from, to, mime, timeout),
            );
            unless_cancelled(delivery, cancel).await
        });
        // NOTE: a name lookup may still run on tokio's blocking thread when
        // the deadline struck; dropping the runtime would wait for it.
        runtime.shutdown_background();
        match outcome {
            None => Err(SmtpError::Cancelled),
            Some(Err(_elapsed)) => Err(SmtpError::TimedOut(timeout)),
            Some(Ok(result)) => result.map_err(|e| classify(&e, &self.host, timeout)),
        }
    }

    async fn conversation(
        &self,
        connector: tokio_rustls::TlsConnector,
        from: &str,
        to: &[String],
        mime: &[u8],
        timeout: Duration,
    ) -> mail_send::Result<()> {
        let mut builder =
            SmtpClientBuilder::new_with_tls_connector(self.host.as_str(), self.port, connector)
                .implicit_tls(self.security == SmtpSecurity::Tls)
                .helo_host(self.helo.as_str())
                .timeout(timeout);
        if let Some((user, password)) = &self.credentials {
            builder = builder.credentials(Credentials::new(user.as_str(), password.as_str()));
        }
        let envelope = Envelope::new(from, to.iter().map(String::as_str), mime);
        match self.security {
            SmtpSecurity::None => {
                let mut client = builder.connect_plain().await?;
                client.send(envelope).await?;
                // The message is taken once DATA is answered 250; a failed
                // QUIT does not undo that.
                let _ = client.quit().await;
            }
            SmtpSecurity::StartTls | SmtpSecurity::Tls => {
                let mut client = builder.connect().await?;
                client.send(envelope).await?;
                let _ = client.quit().await;
            }
        }
        Ok(())
    }
}

/// `work`'s output, or `None` as soon as `cancel` is set (looked at every
/// 50 ms).
async fn unless_cancelled<F: Future>(work: F, cancel: Option<&AtomicBool>) -> Option<F::Output> {
    let is_set = || cancel.is_some_and(|c| c.load(Ordering::SeqCst));
    let mut work = pin!(work);
    let mut tick = pin!(tokio::time::sleep(Duration::ZERO));
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = work.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        if is_set() {
            return Poll::Ready(None);
        }
        if cancel.is_some() {
            while tick.as_mut().poll(cx).is_ready() {
                tick.set(tokio::time::sleep(Duration::from_millis(50)));
            }
        }
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(10);

    fn reply(code: u16, text: &str) -> smtp_proto::Response<String> {
        smtp_proto::Response::new(code, 5, 7, 8, text.to_string())
    }

    #[test]
    fn errors_are_classified_into_short_reasons() {
        use mail_send::Error as E;
        let tls = |e: rustls::Error| E::Tls(Box::new(e));
        let cert = |c: CertificateError| tls(rustls::Error::InvalidCertificate(c));
        let table: Vec<(E, &str)> = vec![
            (
                E::AuthenticationFailed(reply(535, "5.7.8 Username and Password not accepted")),
                "authentication failed (check SMTP_USERNAME/SMTP_PASSWORD; Gmail needs an app password)",
            ),
            (
                cert(CertificateError::UnknownIssuer),
                "certificate not trusted (set SMTP_CA_FILE?)",
            ),
            (
                cert(CertificateError::NotValidForName),
                "certificate is not valid for mail.example.com (check SMTP_SERVER)",
            ),
            (
                cert(CertificateError::Expired),
                "certificate expired or not yet valid",
            ),
            (
                E::Io(io::Error::new(
                    io::ErrorKind::InvalidData,
                    rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
                )),
                "certificate not trusted (set SMTP_CA_FILE?)",
            ),
            (
                E::Io(io::ErrorKind::ConnectionRefused.into()),
                "connection refused",
            ),
            (E::Timeout, "timed out after 10s"),
            (
                E::Io(io::Error::other(
                    "failed to lookup address information: Name or service not known",
                )),
                "host not found: mail.example.com",
            ),
            (
                E::MissingStartTls,
                "the server does not offer STARTTLS (port 465 wants SMTP_SECURITY=tls)",
            ),
            (
                E::UnsupportedAuthMechanism,
                "the server offers no AUTH method we support (PLAIN, LOGIN)",
            ),
            (
                E::UnexpectedReply(reply(550, "no such\r\nuser")),
                "the server said: 550 no such  user",
            ),
            (
                E::UnparseableReply,
                "the server closed the connection or did not speak SMTP (check SMTP_SECURITY and SMTP_PORT)",
            ),
        ];
        for (err, want) in table {
            let got = classify(&err, "mail.example.com", T).to_string();
            assert_eq!(got, want, "{err:?}");
        }
        assert_eq!(
            SmtpError::TimedOut(Duration::from_millis(1500)).to_string(),
            "timed out after 1.5s"
        );
    }

    #[test]
    fn a_set_cancel_flag_ends_a_delivery_that_would_wait_for_ever() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let flag = AtomicBool::new(false);
        assert_eq!(
            rt.block_on(unless_cancelled(async { 7 }, Some(&flag))),
            Some(7)
        );
        assert_eq!(rt.block_on(unless_cancelled(async { 8 }, None)), Some(8));
        flag.store(true, Ordering::SeqCst);
        let t = std::time::Instant::now();
        let out = rt.block_on(unless_cancelled(std::future::pending::<()>(), Some(&flag)));
        assert_eq!(out, None);
        assert!(t.elapsed() < Duration::from_millis(200));
    }

    #[test]
    fn debug_never_shows_the_password() {
        let settings = AlertSettings {
            service_name: "S".into(),
            smtp_server: Some("smtp.example.com".into()),
            smtp_port: 587,
            smtp_security: SmtpSecurity::StartTls,
            smtp_username: Some("me@example.com".into()),
            smtp_password: Some("hunter2-secret".into()),
            smtp_ca_file: None,
            smtp_timeout: T,
            alert_email: vec!["ops@example.com".into()],
            alert_from: "me@example.com".into(),
            alert_webhook_url: None,
            alert_reminder: None,
            flap_restarts: 0,
            flap_window: T,
        };
        let m = Mailer::new(&settings, "vm 1", None).unwrap();
        assert!(!format!("{m:?}").contains("hunter2"));
        assert_eq!(m.describe(), "smtp.example.com:587 (starttls)");
        assert_eq!(m.helo, "vm1");
        let mut no_rcpt = settings.clone();
        no_rcpt.alert_email.clear();
        assert!(Mailer::new(&no_rcpt, "vm1", None).is_none());
    }
}
