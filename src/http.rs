//! A small blocking HTTP/1.1 client under one deadline: the health check's
//! GET and the webhook's POST.
//!
//! - One deadline covers name lookup's aftermath, connect, the TLS
//!   handshake, the request and every read of the answer: before each read
//!   or write on the socket its timeouts are set to what is left, so a
//!   server that accepts and never answers, or trickles a byte a second,
//!   fails at the deadline, and nothing is left behind (no thread, no
//!   socket: the socket is ours and dropped on return).
//! - HTTPS is rustls (ring) over that same socket, so the handshake is
//!   bounded too. Trust is the caller's [`ClientConfig`] (see `tls`).
//! - The answer: a status line (at most [`MAX_STATUS_LINE`]), headers (at
//!   most [`MAX_HEADERS`] in all), and a body by Content-Length, chunked, or
//!   to the end of the connection, of which at most `body_limit` bytes are
//!   read. `Connection: close` always; redirects are never followed.
//! - URLs: `http` or `https` in any case; a host name, an IPv4 address or a
//!   bracketed IPv6 literal; no userinfo ([`Url::parse`]).
//!
//! NOTE: name lookup (getaddrinfo) has no timeout of its own; callers that
//! must not wait for it run the request on a thread of theirs (`health`'s
//! checker, the webhook's POST).
//!
//! - Failures: [`Error`], and [`io_class`] for what an I/O error means
//!   (refused, timed out, reset, closed early); each caller words its own
//!   reason from these.
//!
//! Not here: what a status or body means (`health::classify`), retries.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

/// The longest status line read.
pub const MAX_STATUS_LINE: usize = 8 * 1024;
/// The most header bytes read, all lines together.
pub const MAX_HEADERS: usize = 64 * 1024;

/// A parsed `http://` or `https://` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    pub https: bool,
    /// A name or an IP address; an IPv6 literal without its brackets.
    pub host: String,
    pub port: u16,
    /// The authority as written (brackets kept): the Host header.
    pub authority: String,
    /// Path and query, at least `/`; the fragment dropped.
    pub target: String,
}

impl Url {
    /// `Err` says what is wrong, never repeating the URL.
    pub fn parse(text: &str) -> Result<Url, String> {
        let (scheme, after) = text
            .split_once("://")
            .ok_or("not an http:// or https:// URL")?;
        let https = match scheme.to_ascii_lowercase().as_str() {
            "http" => false,
            "https" => true,
            _ => return Err("the scheme is not http or https".into()),
        };
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("the URL holds a space or a control character".into());
        }
        let end = after.find(['/', '?', '#']).unwrap_or(after.len());
        let (authority, rest) = after.split_at(end);
        if authority.contains('@') {
            return Err("a user:password@ in the URL is not supported".into());
        }
        let (host, port, v6) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or("an unclosed `[`")?;
            host.parse::<Ipv6Addr>()
                .map_err(|_| "not an IPv6 address inside `[]`")?;
            match after {
                "" => (host, None, true),
                _ => (
                    host,
                    Some(after.strip_prefix(':').ok_or("junk after `]`")?),
                    true,
                ),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port), false),
                None => (authority, None, false),
            }
        };
        if host.is_empty() || (!v6 && host.contains([':', '[', ']'])) {
            return Err("no host, or a bad one".into());
        }
        let port = match port {
            None => {
                if https {
                    443
                } else {
                    80
                }
            }
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|n| *n >= 1 && p.bytes().all(|b| b.is_ascii_digit()))
                .ok_or("a bad port")?,
        };
        let rest = rest.split('#').next().unwrap_or("");
        let target = if rest.starts_with('/') {
            rest.to_string()
        } else {
            format!("/{rest}")
        };
        Ok(Url {
            https,
            host: host.to_string(),
            port,
            authority: authority.to_string(),
            target,
        })
    }
}

/// What the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub location: Option<String>,
    /// At most the `body_limit` asked for.
    pub body: Vec<u8>,
}

/// Why there is no answer.
#[derive(Debug)]
pub enum Error {
    /// Connect, read or write failed (refused, reset, timed out: see `kind`).
    Io(io::Error),
    HostNotFound,
    /// The connection closed before a status line, or what came was not HTTP.
    NoAnswer,
    /// The connection closed in the middle of the answer.
    ClosedEarly,
    /// The TLS handshake or session failed.
    Tls(rustls::Error),
    /// The answer broke a limit or the protocol: what, in a few words.
    Protocol(String),
    /// HTTPS asked for but no TLS configuration could be had: why.
    NoTls(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "{e}"),
            Error::HostNotFound => f.write_str("host not found"),
            Error::NoAnswer => f.write_str("no HTTP answer (connection closed or not HTTP)"),
            Error::ClosedEarly => f.write_str("connection closed early"),
            Error::Tls(e) => f.write_str(&tls_reason(e)),
            Error::Protocol(s) | Error::NoTls(s) => f.write_str(s),
        }
    }
}

/// What an I/O failure of a request means to its caller: the one place that
/// says which error kinds are a refusal, a timeout or a reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoClass {
    Refused,
    /// The deadline passed (connect, read or write).
    TimedOut,
    /// Reset, aborted, or a broken pipe.
    Reset,
    /// End of input before the answer was complete.
    ClosedEarly,
    /// Anything else: the error's own words.
    Other,
}

/// Pure: the [`IoClass`] of `err`.
pub fn io_class(err: &io::Error) -> IoClass {
    use io::ErrorKind::*;
    match err.kind() {
        ConnectionRefused => IoClass::Refused,
        TimedOut | WouldBlock => IoClass::TimedOut,
        ConnectionReset | ConnectionAborted | BrokenPipe => IoClass::Reset,
        UnexpectedEof => IoClass::ClosedEarly,
        _ => IoClass::Other,
    }
}

/// A rustls error in words a person can act on.
pub fn tls_reason(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => "TLS: certificate not trusted".into(),
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                "TLS: certificate is not valid for this host".into()
            }
            C::Expired
            | C::ExpiredContext { .. }
            | C::NotValidYet
            | C::NotValidYetContext { .. } => "TLS: certificate expired or not yet valid".into(),
            other => format!("TLS: certificate rejected: {other:?}"),
        },
        rustls::Error::AlertReceived(alert) => format!("TLS: the server sent the alert {alert:?}"),
        other => format!("TLS failed: {other}"),
    }
}

fn from_io(e: io::Error) -> Error {
    if e.get_ref()
        .and_then(|i| i.downcast_ref::<rustls::Error>())
        .is_some()
    {
        let inner = e.into_inner().expect("checked above");
        return Error::Tls(*inner.downcast::<rustls::Error>().expect("checked above"));
    }
    match e.kind() {
        io::ErrorKind::UnexpectedEof => Error::ClosedEarly,
        _ => Error::Io(e),
    }
}

/// A socket whose every read and write ends by `deadline`.
struct Sock {
    tcp: TcpStream,
    deadline: Instant,
}

impl Sock {
    fn left(&self) -> io::Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        Ok(left)
    }
}

impl Read for Sock {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.left()?;
        self.tcp.set_read_timeout(Some(left))?;
        self.tcp.read(buf)
    }
}

impl Write for Sock {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let left = self.left()?;
        self.tcp.set_write_timeout(Some(left))?;
        self.tcp.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

enum Stream {
    Plain(Sock),
    Tls(Box<StreamOwned<ClientConnection, Sock>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// One request.
pub struct Request<'a> {
    pub method: &'a str,
    pub url: &'a Url,
    /// Extra header lines, name and value.
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
    /// The most of the answer's body read (the rest is left unread).
    pub body_limit: usize,
    /// For https; `None` there is an error.
    pub tls: Option<Arc<ClientConfig>>,
}

/// Sends `req` and reads the answer, all of it by `timeout` from now.
pub fn send(req: &Request, timeout: Duration) -> Result<Response, Error> {
    let deadline = crate::deadline::instant_after(Instant::now(), timeout);
    let url = req.url;
    let tcp = connect(url, deadline)?;
    let sock = Sock { tcp, deadline };
    let mut stream = if url.https {
        let config = req
            .tls
            .clone()
            .ok_or_else(|| Error::NoTls("no TLS configuration".into()))?;
        let name = ServerName::try_from(url.host.clone())
            .map_err(|_| Error::Protocol("the host is not a valid TLS server name".into()))?;
        let conn = ClientConnection::new(config, name).map_err(Error::Tls)?;
        Stream::Tls(Box::new(StreamOwned::new(conn, sock)))
    } else {
        Stream::Plain(sock)
    };
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: server-monitor/{}\r\nAccept: */*\r\nConnection: close\r\n",
        req.method,
        url.target,
        url.authority,
        env!("CARGO_PKG_VERSION")
    );
    for (name, value) in req.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !req.body.is_empty() || req.method != "GET" {
        head.push_str(&format!("Content-Length: {}\r\n", req.body.len()));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(req.body);
    stream.write_all(&out).map_err(from_io)?;
    stream.flush().map_err(from_io)?;
    let mut reader = BufReader::with_capacity(16 * 1024, stream);
    read_response(&mut reader, req.body_limit)
}

fn connect(url: &Url, deadline: Instant) -> Result<TcpStream, Error> {
    let addrs: Vec<SocketAddr> = match url.host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, url.port)],
        Err(_) => (url.host.as_str(), url.port)
            .to_socket_addrs()
            .map_err(|_| Error::HostNotFound)?
            .collect(),
    };
    let mut last = Error::HostNotFound;
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::Io(io::ErrorKind::TimedOut.into()));
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(tcp) => {
                let _ = tcp.set_nodelay(true);
                return Ok(tcp);
            }
            Err(e) => last = Error::Io(e),
        }
    }
    Err(last)
}

/// One line of at most `limit` bytes, its line end included: `Ok(None)` when
/// the limit came first, an empty vector at the end of the stream.
fn read_line(r: &mut impl BufRead, limit: usize) -> io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    r.by_ref().take(limit as u64).read_until(b'\n', &mut line)?;
    if !line.ends_with(b"\n") && line.len() >= limit {
        return Ok(None);
    }
    Ok(Some(line))
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// `HTTP/1.x DDD reason` -> DDD.
fn parse_status_line(line: &[u8]) -> Option<u16> {
    let rest = line.strip_prefix(b"HTTP/1.")?;
    let (_minor, rest) = rest.split_first()?;
    let rest = rest.strip_prefix(b" ")?;
    let code = rest.get(..3)?;
    if !code.iter().all(u8::is_ascii_digit) || rest.get(3).is_some_and(|b| *b != b' ') {
        return None;
    }
    std::str::from_utf8(code).ok()?.parse().ok()
}

fn read_response(r: &mut impl BufRead, body_limit: usize) -> Result<Response, Error> {
    let status_line = match read_line(r, MAX_STATUS_LINE) {
        Ok(Some(line)) if line.ends_with(b"\n") => line,
        Ok(Some(_)) => return Err(Error::NoAnswer),
        Ok(None) => {
            return Err(Error::Protocol(format!(
                "the status line length is over {} KiB",
                MAX_STATUS_LINE / 1024
            )))
        }
        Err(e) => {
            return Err(match from_io(e) {
                Error::ClosedEarly => Error::NoAnswer,
                Error::Io(e) if e.kind() == io::ErrorKind::ConnectionReset => Error::NoAnswer,
                other => other,
            })
        }
    };
    let status = parse_status_line(trim_eol(&status_line)).ok_or(Error::NoAnswer)?;
    let too_big = || {
        Error::Protocol(format!(
            "the headers' total size is over {} KiB",
            MAX_HEADERS / 1024
        ))
    };
    let (mut length, mut chunked, mut location) = (None, false, None);
    let mut left = MAX_HEADERS;
    loop {
        let Some(line) = read_line(r, left).map_err(from_io)? else {
            return Err(too_big());
        };
        if !line.ends_with(b"\n") {
            return Err(Error::ClosedEarly);
        }
        left -= line.len();
        let line = trim_eol(&line);
        if line.is_empty() {
            break;
        }
        let line = std::str::from_utf8(line)
            .map_err(|_| Error::Protocol("invalid utf-8 in a response header".into()))?;
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("content-length") {
            let n: u64 = value
                .parse()
                .map_err(|_| Error::Protocol("a bad Content-Length".into()))?;
            if length.is_some_and(|m| m != n) {
                return Err(Error::Protocol("two different Content-Lengths".into()));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
        } else if name.eq_ignore_ascii_case("location") {
            location = Some(value.to_string());
        }
    }
    let mut body = Vec::new();
    let no_body = (100..200).contains(&status) || status == 204 || status == 304;
    if body_limit > 0 && !no_body {
        if chunked {
            read_chunked(r, body_limit, &mut body)?;
        } else if let Some(n) = length {
            let want = n.min(body_limit as u64);
            r.by_ref()
                .take(want)
                .read_to_end(&mut body)
                .map_err(from_io)?;
            if (body.len() as u64) < want {
                return Err(Error::ClosedEarly);
            }
        } else {
            match r.by_ref().take(body_limit as u64).read_to_end(&mut body) {
                Ok(_) => {}
                // A TLS peer that closes without close_notify: the end.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {}
                Err(e) => return Err(from_io(e)),
            }
        }
    }
    Ok(Response {
        status,
        location,
        body,
    })
}

fn read_chunked(r: &mut impl BufRead, limit: usize, body: &mut Vec<u8>) -> Result<(), Error> {
    let bad = || Error::Protocol("a bad chunk in a chunked body".into());
    loop {
        let line = read_line(r, 1024).map_err(from_io)?.ok_or_else(bad)?;
        if !line.ends_with(b"\n") {
            return Err(Error::ClosedEarly);
        }
        let text = std::str::from_utf8(trim_eol(&line)).map_err(|_| bad())?;
        let size = text.split(';').next().unwrap_or("").trim();
        let size = u64::from_str_radix(size, 16).map_err(|_| bad())?;
        if size == 0 {
            return Ok(());
        }
        let want = size.min((limit - body.len()) as u64);
        let before = body.len();
        r.by_ref().take(want).read_to_end(body).map_err(from_io)?;
        if ((body.len() - before) as u64) < want {
            return Err(Error::ClosedEarly);
        }
        if body.len() >= limit {
            return Ok(());
        }
        let end = read_line(r, 2).map_err(from_io)?.ok_or_else(bad)?;
        if trim_eol(&end) != b"" || !end.ends_with(b"\n") {
            return Err(bad());
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn io_errors_are_classed_once_for_every_caller() {
        use super::{io_class, IoClass};
        use std::io::ErrorKind::*;
        for (kind, want) in [
            (ConnectionRefused, IoClass::Refused),
            (TimedOut, IoClass::TimedOut),
            (WouldBlock, IoClass::TimedOut),
            (ConnectionReset, IoClass::Reset),
            (ConnectionAborted, IoClass::Reset),
            (BrokenPipe, IoClass::Reset),
            (UnexpectedEof, IoClass::ClosedEarly),
            (PermissionDenied, IoClass::Other),
        ] {
            assert_eq!(io_class(&kind.into()), want, "{kind:?}");
        }
    }

    use super::*;

    #[test]
    fn urls_in_the_forms_spec_allows_parse() {
        let u = Url::parse("HTTPS://[::1]:8443/health?x=1#frag").unwrap();
        assert!(u.https);
        assert_eq!(u.host, "::1");
        assert_eq!(u.port, 8443);
        assert_eq!(u.authority, "[::1]:8443");
        assert_eq!(u.target, "/health?x=1");
        let u = Url::parse("http://Example.COM").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.target.as_str()),
            ("Example.COM", 80, "/")
        );
        let u = Url::parse("https://h?q").unwrap();
        assert_eq!((u.port, u.target.as_str()), (443, "/?q"));
        assert_eq!(Url::parse("http://[::1]/").unwrap().port, 80);
        for bad in [
            "ftp://h/",
            "http://",
            "http://:80/",
            "http://u:p@h/",
            "http://[::1/",
            "http://[nope]/",
            "http://[::1]x/",
            "http://h:0/",
            "http://h:65536/",
            "http://h:+80/",
            "http://a:b:c/",
            "http://h/ x",
            "127.0.0.1:8000",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }

    fn parse(answer: &[u8], limit: usize) -> Result<Response, Error> {
        read_response(&mut BufReader::new(answer), limit)
    }

    #[test]
    fn answers_are_read_by_length_chunks_or_to_the_end() {
        let r = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokjunk", 100).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"ok"[..]));
        let r = parse(b"HTTP/1.0 200 OK\n\nto the end", 100).unwrap();
        assert_eq!(r.body, b"to the end");
        let r = parse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n1\r\nd\r\n0\r\n\r\n",
            100,
        )
        .unwrap();
        assert_eq!(r.body, b"abcd");
        let r = parse(b"HTTP/1.1 302 Found\r\nLocation: /x\r\n\r\n", 100).unwrap();
        assert_eq!((r.status, r.location.as_deref()), (302, Some("/x")));
        // The limit is a limit.
        let r = parse(
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789",
            4,
        )
        .unwrap();
        assert_eq!(r.body, b"0123");
    }

    #[test]
    fn broken_answers_are_errors_that_say_what() {
        let err = |a: &[u8]| parse(a, 100).unwrap_err().to_string();
        assert_eq!(err(b""), "no HTTP answer (connection closed or not HTTP)");
        assert_eq!(
            err(b"SSH-2.0-x\r\n"),
            "no HTTP answer (connection closed or not HTTP)"
        );
        assert_eq!(
            err(b"HTTP/1.1 20x OK\r\n\r\n"),
            "no HTTP answer (connection closed or not HTTP)"
        );
        assert_eq!(
            err(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort"),
            "connection closed early"
        );
        assert_eq!(
            err(b"HTTP/1.1 200 OK\r\nX-A: 1\r\n"),
            "connection closed early"
        );
        assert!(err(&[b'x'; 9000]).contains("status line length"));
        let flood = format!("HTTP/1.1 200 OK\r\n{}", "X-F: yyyy\r\n".repeat(7000));
        assert!(err(flood.as_bytes()).contains("headers' total size"));
        assert!(err(b"HTTP/1.1 200 OK\r\nX: \xff\r\n\r\n").contains("invalid utf-8"));
        assert!(
            err(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
                .contains("bad chunk")
        );
    }

    #[test]
    fn a_tls_handshake_that_gets_no_answer_ends_at_the_deadline() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let url = Url::parse(&format!("https://127.0.0.1:{port}/health")).unwrap();
        let roots = crate::tls::roots(None, None).unwrap();
        let req = Request {
            method: "GET",
            url: &url,
            headers: &[],
            body: &[],
            body_limit: 100,
            tls: Some(crate::tls::client_config(roots).unwrap()),
        };
        let t = Instant::now();
        // Accepted by the kernel's backlog, never answered.
        let err = send(&req, Duration::from_millis(300)).unwrap_err();
        let took = t.elapsed();
        assert!(
            matches!(&err, Error::Io(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)),
            "{err:?}"
        );
        assert!(
            took >= Duration::from_millis(250) && took < Duration::from_millis(900),
            "{took:?}"
        );
        drop(listener);
    }
}
