//! The status listener (STATUS_LISTEN, SPEC "Status endpoints"): `/`,
//! `/status.json`, `/metrics` and `/healthz`, served by the main loop itself
//! over non-blocking std sockets. No thread, no async runtime.
//!
//! The loop drives a [`StatusServer`] with three calls: [`StatusServer::fds`]
//! (what its wait must poll, and in which direction),
//! [`StatusServer::next_deadline`] (the earliest connection deadline), and
//! [`StatusServer::service`] once a turn, which accepts, reads, answers and
//! writes whatever is ready without ever blocking, and drops what is past
//! its deadline. Bodies come from a callback the loop gives, rendered from
//! memory ([`metrics`], [`page`]): no disk I/O on a request (the server's
//! memory and CPU are read from procfs).
//!
//! Bounds, so that no client can delay a check or a restart or grow the
//! monitor's memory:
//! - at most [`MAX_CONNECTIONS`] connections are open; while all are taken
//!   the listener is not polled, and further clients wait in the kernel's
//!   backlog (its length is the kernel's; nothing here grows). A flood costs
//!   the loop nothing beyond the connections it holds;
//! - each whole exchange (request and answer) has [`EXCHANGE_DEADLINE`] from
//!   its accept, then the connection is dropped (a slowloris client holds a
//!   slot 2 s at most);
//! - a request head is at most 8 KiB (431), GET and HEAD only (405), no body
//!   (413), no keep-alive (`Connection: close`);
//! - an unsent rest of an answer is kept and written when the socket is
//!   writable, until the deadline.
//!
//! Auth: with STATUS_TOKEN every path needs `Authorization: Bearer TOKEN` or
//! Basic with the token as the password (any user); compared in constant
//! time; 401 with `WWW-Authenticate` otherwise. The token is never logged.
//! Without a token the address is loopback (the configuration enforces it).
//!
//! `/healthz` is answered by the loop like everything else, so a loop that
//! does not turn (frozen, SIGSTOPped) does not answer it.
//!
//! Not here: what the numbers are (the loop records them into
//! [`metrics::Metrics`] and [`page::Recent`]).

pub(crate) mod hourly;
pub(crate) mod live;
pub(crate) mod metrics;
pub(crate) mod page;
pub mod request;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use request::{Method, Parse};

/// The most connections open at once.
pub const MAX_CONNECTIONS: usize = 8;
/// The time each whole exchange has, from its accept.
pub const EXCHANGE_DEADLINE: Duration = Duration::from_secs(2);
/// How long the listener rests after an accept error (EMFILE, say), so that
/// a listener that stays readable does not spin the loop.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Page,
    StatusJson,
    Metrics,
    Healthz,
}

impl Route {
    fn of_path(path: &str) -> Option<Route> {
        match path {
            "/" => Some(Route::Page),
            "/status.json" => Some(Route::StatusJson),
            "/metrics" => Some(Route::Metrics),
            "/healthz" => Some(Route::Healthz),
            _ => None,
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Route::Page => "text/html; charset=utf-8",
            Route::StatusJson => "application/json",
            Route::Metrics => "text/plain; version=0.0.4; charset=utf-8",
            Route::Healthz => "text/plain; charset=utf-8",
        }
    }
}

struct Conn {
    stream: TcpStream,
    deadline: Instant,
    /// The request received so far (at most `request::MAX_HEAD` bytes).
    input: Vec<u8>,
    /// The answer, once there is one, and how much of it is sent.
    output: Option<(Vec<u8>, usize)>,
}

/// The listener and its connections; see the module docs.
pub struct StatusServer {
    listener: TcpListener,
    addr: SocketAddr,
    token: Option<String>,
    conns: Vec<Conn>,
    /// After an accept error: the listener is not polled until then.
    accept_after: Option<Instant>,
}

impl StatusServer {
    /// Binds `addr` (non-blocking). The error names the address.
    pub fn bind(addr: SocketAddr, token: Option<String>) -> Result<StatusServer, String> {
        let fail = |e: io::Error| format!("cannot listen on STATUS_LISTEN {addr}: {e}");
        let listener = TcpListener::bind(addr).map_err(fail)?;
        listener.set_nonblocking(true).map_err(fail)?;
        let addr = listener.local_addr().map_err(fail)?;
        Ok(StatusServer {
            listener,
            addr,
            token,
            conns: Vec::new(),
            accept_after: None,
        })
    }

    /// The address bound (with the port the kernel chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many connections are open.
    pub fn open_connections(&self) -> usize {
        self.conns.len()
    }

    /// What the loop's wait must poll: `(fd, true)` for writable, `(fd,
    /// false)` for readable. The listener is left out while every slot is
    /// taken (or after an accept error, until [`Self::next_deadline`]).
    pub fn fds(&self) -> Vec<(BorrowedFd<'_>, bool)> {
        let mut fds = Vec::with_capacity(self.conns.len() + 1);
        if self.conns.len() < MAX_CONNECTIONS && self.accept_after.is_none() {
            fds.push((self.listener.as_fd(), false));
        }
        for c in &self.conns {
            fds.push((c.stream.as_fd(), c.output.is_some()));
        }
        fds
    }

    /// The earliest connection deadline (or the end of an accept back-off).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.conns
            .iter()
            .map(|c| c.deadline)
            .chain(self.accept_after)
            .min()
    }

    /// Waits (at most `timeout`, and not past the next deadline) until
    /// something is ready; for tests and tools that have no loop of their own.
    pub fn wait(&self, timeout: Duration, now: Instant) {
        let timeout = self
            .next_deadline()
            .map_or(timeout, |d| timeout.min(d.saturating_duration_since(now)));
        let _ = crate::sys::poll_ready(&self.fds(), timeout);
    }

    /// One turn: accept what is pending (up to the slot limit), read what
    /// is readable, answer complete requests with `render(route)`, write
    /// what can be written, and drop connections past their deadline or
    /// done. Never blocks.
    pub fn service(&mut self, now: Instant, render: &mut dyn FnMut(Route) -> String) {
        if self.accept_after.is_some_and(|t| now >= t) {
            self.accept_after = None;
        }
        // Expired ones first, so that their slots go to the next clients.
        self.conns.retain(|c| {
            let keep = now < c.deadline;
            if !keep {
                log::debug!(
                    "status listener: an exchange passed its 2 s deadline; connection dropped"
                );
            }
            keep
        });
        while self.conns.len() < MAX_CONNECTIONS && self.accept_after.is_none() {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    self.conns.push(Conn {
                        stream,
                        deadline: now + EXCHANGE_DEADLINE,
                        input: Vec::new(),
                        output: None,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::debug!(error = e.to_string().as_str(); "status listener: accept failed; resting");
                    self.accept_after = Some(now + ACCEPT_BACKOFF);
                }
            }
        }
        let token = self.token.as_deref();
        self.conns.retain_mut(|c| {
            if c.output.is_none() {
                match read_request(c) {
                    Read_::Open => {}
                    Read_::Closed => return false,
                    Read_::Answer(status, req) => {
                        c.output = Some((answer(status, req.as_ref(), token, render), 0));
                    }
                }
            }
            match &mut c.output {
                Some((out, sent)) => write_rest(&mut c.stream, out, sent),
                None => true,
            }
        });
    }
}

enum Read_ {
    /// Still waiting for more of the request.
    Open,
    /// The client went away (or the socket failed) before a whole request.
    Closed,
    /// Answer with this status (200 stands for "route it").
    Answer(u16, Option<request::Request>),
}

/// Reads what is there without blocking and parses it.
fn read_request(c: &mut Conn) -> Read_ {
    let mut chunk = [0u8; 2048];
    loop {
        let room = request::MAX_HEAD - c.input.len();
        if room == 0 {
            break;
        }
        let want = room.min(chunk.len());
        match c.stream.read(&mut chunk[..want]) {
            Ok(0) => {
                return match request::parse(&c.input) {
                    Parse::Incomplete => Read_::Closed,
                    Parse::Complete(r) => Read_::Answer(200, Some(r)),
                    Parse::Refused(s) => Read_::Answer(s, None),
                }
            }
            Ok(n) => c.input.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Read_::Closed,
        }
    }
    match request::parse(&c.input) {
        Parse::Incomplete => Read_::Open,
        Parse::Complete(r) => Read_::Answer(200, Some(r)),
        Parse::Refused(s) => Read_::Answer(s, None),
    }
}

/// The whole answer (head and, unless HEAD, body) to a request.
fn answer(
    status: u16,
    req: Option<&request::Request>,
    token: Option<&str>,
    render: &mut dyn FnMut(Route) -> String,
) -> Vec<u8> {
    let Some(req) = req.filter(|_| status == 200) else {
        let extra = if status == 405 {
            "Allow: GET, HEAD\r\n"
        } else {
            ""
        };
        return response(
            status,
            "text/plain; charset=utf-8",
            extra,
            reason(status),
            false,
        );
    };
    let head_only = req.method == Method::Head;
    if let Some(token) = token {
        if !request::authorized(req.authorization.as_deref(), token) {
            log::debug!(path = req.path.as_str(); "status listener: request without the token refused (401)");
            return response(
                401,
                "text/plain; charset=utf-8",
                "WWW-Authenticate: Bearer realm=\"server-monitor\"\r\nWWW-Authenticate: Basic realm=\"server-monitor\"\r\n",
                "401 Unauthorized\n",
                head_only,
            );
        }
    }
    let Some(route) = Route::of_path(&req.path) else {
        return response(
            404,
            "text/plain; charset=utf-8",
            "",
            "404 Not Found\n",
            head_only,
        );
    };
    let body = match route {
        Route::Healthz => "ok\n".to_string(),
        _ => render(route),
    };
    let extra = if route == Route::Page {
        "Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'\r\n"
    } else {
        ""
    };
    response(200, route.content_type(), extra, &body, head_only)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

fn response(status: u16, content_type: &str, extra: &str, body: &str, head_only: bool) -> Vec<u8> {
    let body = if status == 200 || status == 401 || status == 404 {
        body.to_string()
    } else {
        format!("{status} {body}\n")
    };
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
Connection: close\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n{extra}\r\n",
        reason(status),
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

/// Writes what the socket takes now; false once the connection is done
/// (all sent, or failed).
fn write_rest(stream: &mut TcpStream, out: &[u8], sent: &mut usize) -> bool {
    while *sent < out.len() {
        match stream.write(&out[*sent..]) {
            Ok(0) => return false,
            Ok(n) => *sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    let _ = stream.shutdown(Shutdown::Write);
    false
}

/// The resident memory (bytes) and CPU seconds (user and system) of process
/// `pid`, from procfs (memory-only files, no disk).
/// NOTE: /proc/PID/stat counts CPU in USER_HZ, which is 100 on Linux.
pub fn process_usage(pid: u32) -> Option<(u64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    // Fields 14 and 15 of stat; `after` starts at field 3.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some((kb * 1024, ticks as f64 / 100.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(token: Option<&str>) -> StatusServer {
        StatusServer::bind("127.0.0.1:0".parse().unwrap(), token.map(String::from)).unwrap()
    }

    fn render(route: Route) -> String {
        format!("body of {route:?}\n")
    }

    /// Sends `raw`, drives the server until the client sees the end, and
    /// returns what the client received.
    fn exchange(s: &mut StatusServer, raw: &[u8]) -> String {
        let mut client = TcpStream::connect(s.local_addr()).unwrap();
        client.write_all(raw).unwrap();
        client.set_nonblocking(true).unwrap();
        let mut got = Vec::new();
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            s.wait(Duration::from_millis(20), Instant::now());
            s.service(Instant::now(), &mut render);
            let mut buf = [0u8; 65536];
            match client.read(&mut buf) {
                Ok(0) => return String::from_utf8_lossy(&got).into_owned(),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("client read: {e}"),
            }
        }
        panic!(
            "no whole answer within 5 s: {:?}",
            String::from_utf8_lossy(&got)
        );
    }

    #[test]
    fn serves_the_four_paths_and_closes() {
        let mut s = server(None);
        let r = exchange(&mut s, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
        assert!(r.contains("Connection: close\r\n"));
        assert!(r.ends_with("\r\n\r\nbody of Metrics\n"), "{r}");
        assert!(exchange(&mut s, b"GET /healthz HTTP/1.0\r\n\r\n").ends_with("\r\n\r\nok\n"));
        assert!(exchange(&mut s, b"GET /status.json HTTP/1.1\r\n\r\n")
            .ends_with("body of StatusJson\n"));
        let page = exchange(&mut s, b"GET /?x HTTP/1.1\r\n\r\n");
        assert!(
            page.contains("Content-Security-Policy: default-src 'none'"),
            "{page}"
        );
        assert!(page.ends_with("body of Page\n"));
        assert_eq!(s.open_connections(), 0);
    }

    #[test]
    fn refuses_other_methods_paths_and_big_requests() {
        let mut s = server(None);
        let r = exchange(
            &mut s,
            b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        );
        assert!(r.starts_with("HTTP/1.1 405 "), "{r}");
        assert!(r.contains("Allow: GET, HEAD\r\n"));
        assert!(exchange(&mut s, b"GET /nope HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 "));
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.resize(20_000, b'a');
        assert!(exchange(&mut s, &big).starts_with("HTTP/1.1 431 "));
        let r = exchange(&mut s, b"HEAD /healthz HTTP/1.1\r\n\r\n");
        assert!(
            r.contains("Content-Length: 3\r\n") && r.ends_with("\r\n\r\n"),
            "{r}"
        );
    }

    #[test]
    fn a_token_guards_every_path() {
        let mut s = server(Some("tok"));
        for path in ["/", "/metrics", "/healthz", "/status.json", "/nope"] {
            let r = exchange(&mut s, format!("GET {path} HTTP/1.1\r\n\r\n").as_bytes());
            assert!(r.starts_with("HTTP/1.1 401 "), "{path}: {r}");
            assert!(r.contains("WWW-Authenticate: Bearer realm=\"server-monitor\"\r\n"));
            assert!(!r.contains("body of"));
        }
        let wrong = exchange(
            &mut s,
            b"GET /metrics HTTP/1.1\r\nAuthorization: Bearer tok2\r\n\r\n",
        );
        assert!(wrong.starts_with("HTTP/1.1 401 "));
        let ok = exchange(
            &mut s,
            b"GET /metrics HTTP/1.1\r\nAuthorization: Bearer tok\r\n\r\n",
        );
        assert!(ok.starts_with("HTTP/1.1 200 "), "{ok}");
        // user "u", password "tok"
        let basic = exchange(
            &mut s,
            b"GET / HTTP/1.1\r\nAuthorization: Basic dTp0b2s=\r\n\r\n",
        );
        assert!(basic.starts_with("HTTP/1.1 200 "), "{basic}");
    }

    #[test]
    fn holds_at_most_the_slot_limit_and_drops_at_the_deadline() {
        let mut s = server(None);
        let t0 = Instant::now();
        let idle: Vec<TcpStream> = (0..3 * MAX_CONNECTIONS)
            .map(|_| TcpStream::connect(s.local_addr()).unwrap())
            .collect();
        for _ in 0..5 {
            s.service(t0, &mut render);
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(s.open_connections(), MAX_CONNECTIONS);
        // Full: the listener is not polled (no busy loop on a flood).
        assert_eq!(s.fds().len(), MAX_CONNECTIONS);
        assert_eq!(s.next_deadline(), Some(t0 + EXCHANGE_DEADLINE));
        // At the deadline the held ones go and the next ones are accepted.
        s.service(t0 + EXCHANGE_DEADLINE, &mut render);
        assert_eq!(s.open_connections(), MAX_CONNECTIONS);
        s.service(t0 + 2 * EXCHANGE_DEADLINE, &mut render);
        s.service(t0 + 3 * EXCHANGE_DEADLINE, &mut render);
        s.service(t0 + 4 * EXCHANGE_DEADLINE, &mut render);
        assert_eq!(s.open_connections(), 0);
        drop(idle);
        assert!(exchange(&mut s, b"GET /healthz HTTP/1.1\r\n\r\n").ends_with("ok\n"));
    }

    #[test]
    fn a_slow_request_is_answered_when_whole_and_cut_at_the_deadline() {
        let mut s = server(None);
        let t0 = Instant::now();
        let mut slow = TcpStream::connect(s.local_addr()).unwrap();
        for b in b"GET /heal" {
            slow.write_all(&[*b]).unwrap();
            s.wait(Duration::from_millis(10), t0);
            s.service(t0, &mut render);
        }
        assert_eq!(s.open_connections(), 1);
        s.service(t0 + EXCHANGE_DEADLINE, &mut render);
        assert_eq!(s.open_connections(), 0);
        let mut rest = Vec::new();
        slow.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let _ = slow.read_to_end(&mut rest);
        assert!(rest.is_empty(), "no answer to a request cut off");
    }

    #[test]
    fn an_answer_larger_than_the_socket_buffer_is_sent_whole() {
        let mut s = server(None);
        let big = "x".repeat(8 << 20);
        let t0 = Instant::now();
        let mut client = TcpStream::connect(s.local_addr()).unwrap();
        client.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
        client.set_nonblocking(true).unwrap();
        let mut got = 0usize;
        let end = Instant::now() + Duration::from_secs(10);
        let mut turns_with_rest = 0;
        loop {
            assert!(Instant::now() < end, "got {got} bytes");
            // The clock stands still: the exchange's 2 s are not what is tested.
            s.wait(Duration::from_millis(20), t0);
            s.service(t0, &mut |_| big.clone());
            if s.fds().iter().any(|(_, write)| *write) {
                turns_with_rest += 1;
            }
            let mut buf = [0u8; 65536];
            match client.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert!(got > big.len());
        assert!(turns_with_rest > 0, "the answer went out in one write");
    }

    #[test]
    fn bind_error_names_the_address() {
        let s = server(None);
        let e = StatusServer::bind(s.local_addr(), None).err().unwrap();
        assert!(
            e.contains(&format!("STATUS_LISTEN {}", s.local_addr())),
            "{e}"
        );
    }

    #[test]
    fn process_usage_of_this_process() {
        let (rss, cpu) = process_usage(std::process::id()).unwrap();
        assert!(rss > 100_000 && cpu >= 0.0);
    }
}
