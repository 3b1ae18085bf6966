//! Test support for the alert tests: a test CA made at test time (rcgen), real
//! SMTP servers on 127.0.0.1, a mail server that never answers, and a tiny
//! HTTP endpoint for the webhook.
//!
//! - [`MailServer::starttls`]: mailin-embedded, a complete SMTP server we did
//!   not write, with STARTTLS and AUTH PLAIN/LOGIN, on a port of our choosing
//!   (so that a test can start it "later", on a port the monitor already
//!   uses). It cannot be stopped: its threads block in `accept` until the
//!   test binary ends, and hold nothing else.
//! - [`MailServer::implicit_tls`]: mailin's SMTP session (the protocol state
//!   machine of the same project) behind a small rustls acceptor, because
//!   mailin-embedded speaks only STARTTLS. Stopped on `Drop`.
//! - [`TarPit`]: accepts connections and never says a word. Stopped on `Drop`.
//! - [`Hook`]: answers each POST with the next status of a script (the last
//!   one repeats) and records the requests. Stopped on `Drop`.
//!
//! Every server binds 127.0.0.1 only; the accept loops of the stoppable ones
//! poll a stop flag, so `Drop` ends them within 50 ms.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use mailin_embedded::{AuthMechanism, Handler, Response, SslConfig};

use crate::util::TestDir;

const ACCEPT_POLL: Duration = Duration::from_millis(20);

/// The CA and the server certificate (for `127.0.0.1` and `localhost`) as
/// PEM files in the test directory.
pub struct TestCa {
    /// What SMTP_CA_FILE points at.
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    cert_der: Vec<u8>,
    key_der: Vec<u8>,
}

impl TestCa {
    pub fn new(dir: &TestDir) -> TestCa {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose, SanType,
        };
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "server-monitor test CA");
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);

        let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        leaf.subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        leaf.distinguished_name
            .push(DnType::CommonName, "localhost");
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        leaf.use_authority_key_identifier_extension = true;
        let leaf_key = KeyPair::generate().unwrap();
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();

        TestCa {
            ca_file: dir.write("tls/ca.pem", ca_cert.pem()),
            cert_file: dir.write("tls/server.pem", leaf_cert.pem()),
            key_file: dir.write("tls/server.key", leaf_key.serialize_pem()),
            cert_der: leaf_cert.der().to_vec(),
            key_der: leaf_key.serialize_der(),
        }
    }

    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(self.cert_der.clone())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone())),
            )
            .unwrap();
        Arc::new(config)
    }
}

/// One message as the server received it.
#[derive(Clone, Debug)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    /// The whole message, headers and body, as sent.
    pub data: String,
}

impl Mail {
    /// A header's value (the first of that name), unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next()?;
        let mut value: Option<String> = None;
        for line in head.split("\r\n") {
            if line.starts_with([' ', '\t']) {
                if let Some(v) = value.as_mut() {
                    v.push_str(line);
                }
                continue;
            }
            if value.is_some() {
                break;
            }
            if let Some((n, v)) = line.split_once(':') {
                if n.eq_ignore_ascii_case(name) {
                    value = Some(v.trim().to_string());
                }
            }
        }
        value
    }

    /// The body (after the blank line), soft line breaks of
    /// quoted-printable joined, CRLF made LF.
    pub fn body(&self) -> String {
        let body = self.data.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        body.replace("=\r\n", "").replace("\r\n", "\n")
    }
}

/// What every test mail server shares: the received mail and the AUTH tries.
#[derive(Clone, Default)]
pub struct Inbox {
    mail: Arc<Mutex<Vec<Mail>>>,
    auth_tries: Arc<Mutex<Vec<(String, bool)>>>,
}

impl Inbox {
    pub fn mail(&self) -> Vec<Mail> {
        self.mail.lock().unwrap().clone()
    }

    /// (user, accepted) for each AUTH.
    pub fn auth_tries(&self) -> Vec<(String, bool)> {
        self.auth_tries.lock().unwrap().clone()
    }
}

/// mailin's handler: accepts any sender and recipient, checks AUTH against
/// one user, keeps every message.
#[derive(Clone)]
struct Recorder {
    inbox: Inbox,
    user: String,
    password: String,
    current: Option<Mail>,
}

impl Recorder {
    fn check(&mut self, user: &str, password: &str) -> Response {
        let ok = user == self.user && password == self.password;
        self.inbox
            .auth_tries
            .lock()
            .unwrap()
            .push((user.to_string(), ok));
        if ok {
            mailin_embedded::response::AUTH_OK
        } else {
            mailin_embedded::response::INVALID_CREDENTIALS
        }
    }
}

impl Handler for Recorder {
    fn data_start(&mut self, _domain: &str, from: &str, _is8bit: bool, to: &[String]) -> Response {
        self.current = Some(Mail {
            from: from.to_string(),
            to: to.to_vec(),
            data: String::new(),
        });
        mailin_embedded::response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if let Some(m) = self.current.as_mut() {
            m.data.push_str(&String::from_utf8_lossy(buf));
        }
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        if let Some(m) = self.current.take() {
            self.inbox.mail.lock().unwrap().push(m);
        }
        mailin_embedded::response::OK
    }

    fn auth_plain(&mut self, _authz: &str, user: &str, password: &str) -> Response {
        self.check(user, password)
    }

    fn auth_login(&mut self, user: &str, password: &str) -> Response {
        self.check(user, password)
    }
}

/// Makes the process-wide rustls provider `ring`: mailin-embedded builds its
/// server config with the default provider, and the test build has both.
fn install_ring() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A port held closed: bound but not listening, so a connection to it is
/// refused and no other test can take it, until [`ClosedPort::open`] frees
/// it for a server to bind (a moment later, the window of a few
/// microseconds in which another bind could take it is all that is left).
pub struct ClosedPort {
    fd: std::os::fd::OwnedFd,
    pub port: u16,
}

impl ClosedPort {
    pub fn new() -> ClosedPort {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        // SAFETY: socket, bind and getsockname on a descriptor we own, with
        // a zeroed sockaddr_in of the size we pass.
        unsafe {
            let raw = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            assert!(raw >= 0, "socket: {}", std::io::Error::last_os_error());
            let fd = OwnedFd::from_raw_fd(raw);
            let mut addr: libc::sockaddr_in = std::mem::zeroed();
            addr.sin_family = libc::AF_INET as libc::sa_family_t;
            addr.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
            let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            let sa = &mut addr as *mut libc::sockaddr_in as *mut libc::sockaddr;
            assert_eq!(libc::bind(fd.as_raw_fd(), sa, len), 0, "bind");
            assert_eq!(libc::getsockname(fd.as_raw_fd(), sa, &mut len), 0);
            ClosedPort {
                fd,
                port: u16::from_be(addr.sin_port),
            }
        }
    }

    /// Frees the port; returns it.
    pub fn open(self) -> u16 {
        drop(self.fd);
        self.port
    }
}

/// A running SMTP server and what it received.
pub struct MailServer {
    pub port: u16,
    pub inbox: Inbox,
    stop: Arc<AtomicBool>,
}

impl MailServer {
    /// mailin-embedded with STARTTLS (certificate of `ca`) and AUTH
    /// PLAIN/LOGIN for `user`/`password`, on `port` (0: any).
    pub fn starttls(ca: &TestCa, port: u16, user: &str, password: &str) -> MailServer {
        install_ring();
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the SMTP port");
        let port = listener.local_addr().unwrap().port();
        let inbox = Inbox::default();
        let handler = Recorder {
            inbox: inbox.clone(),
            user: user.to_string(),
            password: password.to_string(),
            current: None,
        };
        let mut server = mailin_embedded::Server::new(handler);
        server
            .with_name("mail.test")
            .with_ssl(SslConfig::SelfSigned {
                cert_path: ca.cert_file.display().to_string(),
                key_path: ca.key_file.display().to_string(),
            })
            .expect("TLS set-up")
            .with_auth(AuthMechanism::Plain)
            .with_auth(AuthMechanism::Login)
            .with_num_threads(2)
            .with_tcp_listener(listener);
        thread::spawn(move || {
            let _ = server.serve();
        });
        MailServer {
            port,
            inbox,
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    /// mailin-embedded in clear text: no STARTTLS, no AUTH.
    pub fn plain() -> MailServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let inbox = Inbox::default();
        let handler = Recorder {
            inbox: inbox.clone(),
            user: String::new(),
            password: String::new(),
            current: None,
        };
        let mut server = mailin_embedded::Server::new(handler);
        server
            .with_name("mail.test")
            .with_num_threads(2)
            .with_tcp_listener(listener);
        thread::spawn(move || {
            let _ = server.serve();
        });
        MailServer {
            port,
            inbox,
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Implicit TLS (as on port 465): a rustls acceptor in front of a mailin
    /// session with AUTH PLAIN/LOGIN.
    pub fn implicit_tls(ca: &TestCa, user: &str, password: &str) -> MailServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let inbox = Inbox::default();
        let handler = Recorder {
            inbox: inbox.clone(),
            user: user.to_string(),
            password: password.to_string(),
            current: None,
        };
        let config = ca.server_config();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        thread::spawn(move || {
            accept_until(&listener, &stopping, |stream, peer| {
                let (config, handler) = (config.clone(), handler.clone());
                thread::spawn(move || {
                    let _ = implicit_tls_session(stream, peer, config, handler);
                });
            })
        });
        MailServer { port, inbox, stop }
    }

    pub fn mail(&self) -> Vec<Mail> {
        self.inbox.mail()
    }
}

impl Drop for MailServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Accepts on a non-blocking listener until `stop`; each connection goes to
/// `serve` in blocking mode.
fn accept_until(
    listener: &TcpListener,
    stop: &AtomicBool,
    mut serve: impl FnMut(TcpStream, SocketAddr),
) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, peer)) => {
                stream.set_nonblocking(false).unwrap();
                serve(stream, peer);
            }
            Err(_) => thread::sleep(ACCEPT_POLL),
        }
    }
}

/// One SMTP session over TLS from the first byte: the handshake, the
/// greeting, then each line through mailin's state machine.
fn implicit_tls_session(
    tcp: TcpStream,
    peer: SocketAddr,
    config: Arc<rustls::ServerConfig>,
    handler: Recorder,
) -> std::io::Result<()> {
    tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
    let conn = rustls::ServerConnection::new(config).map_err(std::io::Error::other)?;
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    let mut builder = mailin::SessionBuilder::new("mail.test");
    builder
        .enable_auth(mailin::AuthMechanism::Plain)
        .enable_auth(mailin::AuthMechanism::Login);
    let mut session = builder.build(peer.ip(), handler);
    session.tls_active();
    session.greeting().write_to(&mut stream)?;
    stream.flush()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(end) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            let res = session.process(&line);
            match res.action {
                mailin::Action::Reply => res.write_to(&mut stream)?,
                mailin::Action::Close => {
                    res.write_to(&mut stream)?;
                    stream.flush()?;
                    return Ok(());
                }
                mailin::Action::NoReply | mailin::Action::UpgradeTls => {}
            }
            stream.flush()?;
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Accepts TCP connections and never answers: a dead or tar-pitting mail
/// server. Holds every connection until dropped.
pub struct TarPit {
    pub port: u16,
    /// How many connections it took.
    pub accepted: Arc<Mutex<Vec<Instant>>>,
    stop: Arc<AtomicBool>,
}

impl TarPit {
    pub fn start() -> TarPit {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log, stopping) = (accepted.clone(), stop.clone());
        thread::spawn(move || {
            let mut held = Vec::new();
            accept_until(&listener, &stopping, |stream, _| {
                log.lock().unwrap().push(Instant::now());
                held.push(stream);
            });
        });
        TarPit {
            port,
            accepted,
            stop,
        }
    }
}

impl Drop for TarPit {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// One request the hook received.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub content_type: Option<String>,
    pub body: String,
}

/// A tiny HTTP endpoint: the n-th request gets `script[n]` (the last status
/// repeats), with `Connection: close`.
pub struct Hook {
    pub port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
}

impl Hook {
    pub fn start(script: &[u16]) -> Hook {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log, stopping, script) = (requests.clone(), stop.clone(), script.to_vec());
        thread::spawn(move || {
            accept_until(&listener, &stopping, |mut stream, _| {
                let Some(req) = read_request(&mut stream) else {
                    return;
                };
                let n = {
                    let mut log = log.lock().unwrap();
                    log.push(req);
                    log.len()
                };
                let status = script[(n - 1).min(script.len() - 1)];
                let body = if status < 300 { "ok" } else { "no" };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        });
        Hook {
            port,
            requests,
            stop,
        }
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for Hook {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Reads one HTTP/1.1 request with a Content-Length body (within 5 s).
fn read_request(stream: &mut TcpStream) -> Option<Request> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut raw = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        raw.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split_whitespace();
    let (method, path) = (first.next()?.to_string(), first.next()?.to_string());
    let mut length = 0;
    let mut content_type = None;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok()?;
            } else if name.eq_ignore_ascii_case("content-type") {
                content_type = Some(value.trim().to_string());
            }
        }
    }
    let mut body = raw[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Request {
        method,
        path,
        content_type,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}
