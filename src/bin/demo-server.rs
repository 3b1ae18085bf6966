//! demo-server: the demo for `make demo` and the server under test in every
//! integration test.
//!
//! It answers `GET /health` with the JSON shape of SPEC.md "The demo", and can
//! be told to crash, hang, fail or misbehave — by a request (`/crash`, `/hang`,
//! `/fail`, `/unhealthy`, `/warn`, `/recover`, `/spew`, `/stderr`) or by a
//! fault file that is read at start-up and again at each `/health` request, so
//! that a fault survives a restart and a test can "fix" the server by
//! rewriting one file.
//!
//! It serves one request at a time on one thread, on purpose: a hang hangs
//! everything, like a wedged real server. Each connection gets a 2 s read
//! timeout and one HTTP/1.1 answer with `Content-Length` and
//! `Connection: close`. Every request writes an access line to stdout
//! (`GET /health 200 0.3ms`); errors go to stderr.
//!
//! It does not do keep-alive, chunked bodies, request bodies, TLS, or anything
//! but `GET`; it does not handle SIGTERM (the default action ends it, and it
//! makes sure that action is not ignored or blocked). Std only, plus `libc` for
//! signals and `serde_json`/`log`.
#![deny(unsafe_code)]

use std::io::{self, BufWriter, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime};

use server_monitor::logging;

const USAGE: &str = "usage: demo-server [--host 127.0.0.1] [--port 8000] [--fault-file PATH] \
[--startup-delay SECS] [--spew N] [--fork-child PID_FILE] [--log-dir DIR]";

const HELP: &str = "\
A small HTTP server that answers GET /health and can be told to misbehave.

Endpoints (GET): /health, /crash[?signal=N], /hang, /fail, /unhealthy, /warn,
/recover, /spew?n=N, /stderr?msg=TEXT, /elsewhere (a healthy /health, the
target of the `redirect` fault).

Fault file (read at start and at each /health): ok | fail | unhealthy | warn |
hang | crash | trickle | redirect | big | slow-start=SECS";

/// How long one connection may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one write may block on a client that stopped reading (a `big`
/// body to a client that gave up must not wedge the server for ever).
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a `hang` from the fault file looks at the file again.
const HANG_POLL: Duration = Duration::from_millis(100);
/// Largest request head we read; anything longer is answered 431.
const MAX_REQUEST_HEAD: usize = 8192;
/// The `big` fault's body size: well over the monitor's 1 MiB limit.
const BIG_BODY_BYTES: usize = 10 * 1024 * 1024;
/// Every spew line is this long including its newline.
const SPEW_LINE_BYTES: usize = 100;

fn main() -> ExitCode {
    let started = Instant::now();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match parse_args(&args) {
        Ok(Cli::Run(options)) => options,
        Ok(Cli::Help) => {
            println!("{USAGE}\n\n{HELP}");
            return ExitCode::SUCCESS;
        }
        Ok(Cli::Grandchild) => {
            default_sigterm();
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        Err(message) => {
            eprintln!("demo-server: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Some(warning) = default_sigterm() {
        eprintln!("demo-server: warning: {warning}");
    }
    init_logging(options.log_dir.as_deref());

    match run(&options, started) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("demo-server: {message}");
            ExitCode::from(1)
        }
    }
}

/// Sets up the demo's own logger: with `--log-dir`, the services' layout of
/// `server_monitor::logging` (app.log, errors.log, api.log); without it the
/// `log::` events go nowhere. The access lines on stdout are written
/// directly and do not depend on it.
fn init_logging(log_dir: Option<&Path>) {
    let Some(dir) = log_dir else { return };
    let settings = logging::Settings {
        console: false,
        ..logging::Settings::new(dir)
    };
    if let Err(e) = logging::init_service(&settings, &[("api", "api.log")]) {
        eprintln!(
            "demo-server: cannot set up logging in {}: {e}",
            dir.display()
        );
    }
}

/// Makes SIGTERM end the process whatever the parent left us; returns what it
/// had to repair, so a test of the monitor can see a leaked disposition.
fn default_sigterm() -> Option<String> {
    let repaired = server_monitor::sys::restore_default_signal(libc::SIGTERM);
    if repaired.is_empty() {
        return None;
    }
    let what: Vec<String> = repaired
        .iter()
        .map(|r| format!("SIGTERM was {r}"))
        .collect();
    Some(format!(
        "{} by the parent; reset to the default action",
        what.join(" and ")
    ))
}

/// Start-up, then the accept loop; returns only on a start-up error.
fn run(options: &Options, started: Instant) -> Result<(), String> {
    let fault = match &options.fault_file {
        Some(path) => read_fault(path)?,
        None => Fault::Ok,
    };
    match fault {
        Fault::Crash => {
            return Err(format!(
                "fault file {} says `crash`: exiting at start-up",
                options
                    .fault_file
                    .as_deref()
                    .unwrap_or(Path::new(""))
                    .display()
            ))
        }
        Fault::SlowStart(delay) => std::thread::sleep(delay),
        _ => {}
    }
    std::thread::sleep(options.startup_delay);

    if let Some(pid_file) = &options.fork_child {
        fork_grandchild(pid_file)?;
    }
    if options.spew > 0 {
        spew(options.spew);
    }

    // std sets SO_REUSEADDR on Unix, so a restarted server rebinds at once
    // even with the old connections in TIME_WAIT.
    let listener = TcpListener::bind((options.host.as_str(), options.port))
        .map_err(|e| format!("cannot listen on {}:{}: {e}", options.host, options.port))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    say(&format!(
        "demo-server listening on http://{}:{port} (pid {})",
        options.host,
        std::process::id()
    ));

    let mut server = Server {
        started,
        mode: Mode::Normal,
        fault_file: options.fault_file.clone(),
    };
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => server.serve(stream),
            Err(e) => {
                eprintln!("demo-server: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Command line

#[derive(Debug, Clone, PartialEq)]
struct Options {
    host: String,
    port: u16,
    fault_file: Option<PathBuf>,
    startup_delay: Duration,
    spew: u64,
    fork_child: Option<PathBuf>,
    log_dir: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            host: "127.0.0.1".to_string(),
            port: 8000,
            fault_file: None,
            startup_delay: Duration::ZERO,
            spew: 0,
            fork_child: None,
            log_dir: None,
        }
    }
}

#[derive(Debug, PartialEq)]
enum Cli {
    Run(Options),
    Help,
    /// The hidden `--grandchild` mode of `--fork-child`: sleep for ever.
    Grandchild,
}

/// Parses the arguments after the program name; `--flag VALUE` and
/// `--flag=VALUE` both work. The error names the flag and the value.
fn parse_args(args: &[String]) -> Result<Cli, String> {
    let mut options = Options::default();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_string())),
            _ => (arg.as_str(), None),
        };
        let takes_value = match flag {
            "--help" | "-h" | "--grandchild" => false,
            "--host" | "--port" | "--fault-file" | "--startup-delay" | "--spew"
            | "--fork-child" | "--log-dir" => true,
            _ if flag.starts_with('-') => return Err(format!("unknown option `{flag}`")),
            _ => return Err(format!("unexpected argument `{flag}`")),
        };
        let value = if takes_value {
            match inline {
                Some(value) => value,
                None => match rest.next() {
                    Some(value) => value.clone(),
                    None => return Err(format!("{flag} needs a value")),
                },
            }
        } else if inline.is_some() {
            return Err(format!("{flag} takes no value"));
        } else {
            String::new()
        };
        match flag {
            "--help" | "-h" => return Ok(Cli::Help),
            "--grandchild" => return Ok(Cli::Grandchild),
            "--host" if !value.is_empty() => options.host = value,
            "--port" => {
                options.port = value
                    .parse()
                    .map_err(|_| format!("invalid --port `{value}`: expected 0-65535"))?
            }
            "--fault-file" => options.fault_file = Some(PathBuf::from(value)),
            "--startup-delay" => {
                options.startup_delay = parse_seconds(&value).ok_or_else(|| {
                    format!("invalid --startup-delay `{value}`: expected seconds like `2` or `0.5`")
                })?
            }
            "--spew" => {
                options.spew = value
                    .parse()
                    .map_err(|_| format!("invalid --spew `{value}`: expected a line count"))?
            }
            "--fork-child" => options.fork_child = Some(PathBuf::from(value)),
            "--log-dir" => options.log_dir = Some(PathBuf::from(value)),
            "--host" => return Err("invalid --host ``: expected an address".to_string()),
            _ => unreachable!("every flag was matched above"),
        }
    }
    Ok(Cli::Run(options))
}

/// Seconds as a non-negative decimal number: `2`, `0.5`.
fn parse_seconds(text: &str) -> Option<Duration> {
    let seconds: f64 = text.trim().parse().ok()?;
    if seconds.is_finite() && (0.0..=1e9).contains(&seconds) {
        Some(Duration::from_secs_f64(seconds))
    } else {
        None
    }
}

// ---------------------------------------------------------------------------
// Faults and modes

/// What the fault file asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    Ok,
    Fail,
    Unhealthy,
    Warn,
    Hang,
    Crash,
    Trickle,
    Redirect,
    Big,
    /// Only read at start-up; answers like `Ok` afterwards.
    SlowStart(Duration),
}

/// Parses the (trimmed) fault file; empty means `ok`.
fn parse_fault(text: &str) -> Result<Fault, String> {
    let text = text.trim();
    let fault = match text {
        "" | "ok" => Fault::Ok,
        "fail" => Fault::Fail,
        "unhealthy" => Fault::Unhealthy,
        "warn" => Fault::Warn,
        "hang" => Fault::Hang,
        "crash" => Fault::Crash,
        "trickle" => Fault::Trickle,
        "redirect" => Fault::Redirect,
        "big" => Fault::Big,
        _ => match text.strip_prefix("slow-start=").and_then(parse_seconds) {
            Some(delay) => Fault::SlowStart(delay),
            None => {
                return Err(format!(
                    "unknown fault `{text}`: expected ok, fail, unhealthy, warn, hang, crash, \
                     trickle, redirect, big or slow-start=SECS"
                ))
            }
        },
    };
    Ok(fault)
}

/// Reads the fault file; a missing file means `ok`.
fn read_fault(path: &Path) -> Result<Fault, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_fault(&text).map_err(|e| format!("fault file {}: {e}", path.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Fault::Ok),
        Err(e) => Err(format!("cannot read fault file {}: {e}", path.display())),
    }
}

/// What the control endpoints set; the fault file, when not `ok`, wins.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Normal,
    Fail,
    Unhealthy,
    Warn,
}

/// The numbers a /health body reports.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Health {
    Normal,
    Unhealthy,
    Warn,
}

/// The body of a 2xx /health answer, as in SPEC.md "The demo".
fn health_body(health: Health, uptime: f64, timestamp: &str) -> String {
    // Warn passes every WARN_* default: memory 90% (> 80), cpu 75 (> 50),
    // database 250 ms (> 100).
    let (status, memory_status, used, cpu, db_status, db_ms) = match health {
        Health::Normal => ("healthy", "healthy", 150, 5.2, "healthy", 45),
        Health::Unhealthy => ("unhealthy", "healthy", 150, 5.2, "unhealthy", 45),
        Health::Warn => ("healthy", "warning", 14746, 75.0, "slow", 250),
    };
    serde_json::json!({
        "status": status,
        "timestamp": timestamp,
        "uptime": (uptime * 1000.0).round() / 1000.0,
        "memory": {"status": memory_status, "used": used, "total": 16384},
        "system": {"platform": "linux", "cpuUsage": {"percent": cpu}},
        "services": {"database": {"status": db_status, "responseTime": db_ms}},
    })
    .to_string()
}

// ---------------------------------------------------------------------------
// Serving

struct Server {
    started: Instant,
    mode: Mode,
    fault_file: Option<PathBuf>,
}

/// One answer. `trickle` sends the body one byte a second.
struct Response {
    status: u16,
    content_type: &'static str,
    location: Option<&'static str>,
    body: Vec<u8>,
    trickle: bool,
}

impl Response {
    fn text(status: u16, body: impl Into<String>) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            location: None,
            body: body.into().into_bytes(),
            trickle: false,
        }
    }

    fn json(status: u16, body: String) -> Response {
        Response {
            content_type: "application/json",
            ..Response::text(status, body)
        }
    }
}

/// What to do once the answer is sent.
enum After {
    Nothing,
    Exit(u8),
    Signal(i32),
    HangForever,
}

impl Server {
    fn serve(&mut self, mut stream: TcpStream) {
        let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
        let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
        let head = match read_head(&mut stream) {
            Ok(Some(head)) => head,
            // A connection closed without a request: a port probe. Not an error.
            Ok(None) => return,
            Err(e) => {
                eprintln!("demo-server: reading a request failed: {e}");
                return;
            }
        };
        let t0 = Instant::now();
        let (method, target) = match parse_request_line(&head) {
            Some(parts) => parts,
            None => {
                let response = Response::text(400, "bad request\n");
                let _ = write_response(&mut stream, &response);
                access_line("-", "-", 400, t0);
                return;
            }
        };
        let (path, query) = target.split_once('?').unwrap_or((target.as_str(), ""));
        let (response, after) = if method != "GET" {
            (Response::text(405, "only GET\n"), After::Nothing)
        } else {
            self.route(path, query)
        };
        if let Err(e) = write_response(&mut stream, &response) {
            eprintln!("demo-server: writing the answer to {method} {path} failed: {e}");
        }
        drop(stream);
        access_line(&method, path, response.status, t0);
        match after {
            After::Nothing => {}
            After::Exit(code) => std::process::exit(i32::from(code)),
            After::Signal(signal) => {
                server_monitor::sys::raise_default(signal);
                // The signal's default action is to ignore (or stop); end anyway.
                eprintln!("demo-server: signal {signal} did not end the process; exiting 1");
                std::process::exit(1);
            }
            After::HangForever => loop {
                // The listener stays open, so connections queue up unanswered.
                std::thread::sleep(Duration::from_secs(3600));
            },
        }
    }

    fn route(&mut self, path: &str, query: &str) -> (Response, After) {
        let ok = |text: &str| (Response::text(200, format!("{text}\n")), After::Nothing);
        match path {
            "/health" => (self.health(), After::Nothing),
            "/elsewhere" => (self.health_of(Health::Normal), After::Nothing),
            "/crash" => match query_param(query, "signal") {
                None => (Response::text(200, "crashing: exit 1\n"), After::Exit(1)),
                Some(text) => match text.parse::<i32>() {
                    Ok(signal) if (1..=64).contains(&signal) => (
                        Response::text(200, format!("crashing: signal {signal}\n")),
                        After::Signal(signal),
                    ),
                    _ => (
                        Response::text(400, format!("invalid signal `{text}`: expected 1-64\n")),
                        After::Nothing,
                    ),
                },
            },
            "/hang" => (Response::text(200, "hanging\n"), After::HangForever),
            "/fail" => {
                self.mode = Mode::Fail;
                ok("failing")
            }
            "/unhealthy" => {
                self.mode = Mode::Unhealthy;
                ok("unhealthy")
            }
            "/warn" => {
                self.mode = Mode::Warn;
                ok("warning")
            }
            "/recover" => {
                self.mode = Mode::Normal;
                ok("recovered")
            }
            "/spew" => match query_param(query, "n").map(|n| n.parse::<u64>()) {
                Some(Ok(n)) => {
                    spew(n);
                    ok(&format!("spewed {n} lines"))
                }
                _ => (
                    Response::text(400, "expected /spew?n=LINES\n"),
                    After::Nothing,
                ),
            },
            "/stderr" => {
                let message = query_param(query, "msg").unwrap_or_default();
                let mut err = io::stderr().lock();
                let _ = writeln!(err, "{message}");
                let _ = err.flush();
                ok("written to stderr")
            }
            "/" => ok(HELP),
            _ => (Response::text(404, "not found\n"), After::Nothing),
        }
    }

    /// The /health answer: the fault file first (re-read now), then the mode.
    fn health(&mut self) -> Response {
        let mut fault = self.current_fault();
        // NOTE: holding the connection unanswered is the point: the client
        // must time out, and nothing else is served meanwhile.
        while fault == Fault::Hang {
            std::thread::sleep(HANG_POLL);
            fault = self.current_fault();
        }
        match fault {
            Fault::Ok | Fault::SlowStart(_) => match self.mode {
                Mode::Normal => self.health_of(Health::Normal),
                Mode::Fail => Response::json(503, r#"{"status":"unhealthy"}"#.to_string()),
                Mode::Unhealthy => self.health_of(Health::Unhealthy),
                Mode::Warn => self.health_of(Health::Warn),
            },
            Fault::Fail => Response::json(503, r#"{"status":"unhealthy"}"#.to_string()),
            Fault::Unhealthy => self.health_of(Health::Unhealthy),
            Fault::Warn => self.health_of(Health::Warn),
            Fault::Hang => unreachable!("waited out above"),
            Fault::Crash => {
                // The file was changed to `crash` while running: die like the
                // next start will, without an answer.
                eprintln!("demo-server: fault file says `crash`: exiting");
                std::process::exit(1);
            }
            Fault::Trickle => Response {
                trickle: true,
                ..self.health_of(Health::Normal)
            },
            Fault::Redirect => Response {
                location: Some("/elsewhere"),
                ..Response::text(302, "see /elsewhere\n")
            },
            Fault::Big => Response::json(200, big_body(BIG_BODY_BYTES)),
        }
    }

    fn health_of(&self, health: Health) -> Response {
        let uptime = self.started.elapsed().as_secs_f64();
        Response::json(
            200,
            health_body(
                health,
                uptime,
                &logging::utc_iso8601_millis(SystemTime::now()),
            ),
        )
    }

    /// The fault file now; an unreadable or unknown one is reported and
    /// answered as `fail`, so a typo in a test shows up as a failure.
    fn current_fault(&self) -> Fault {
        match &self.fault_file {
            None => Fault::Ok,
            Some(path) => read_fault(path).unwrap_or_else(|e| {
                eprintln!("demo-server: {e}; answering 503");
                Fault::Fail
            }),
        }
    }
}

/// Reads up to the blank line that ends a request head. `Ok(None)` when the
/// client closed without sending anything.
fn read_head(stream: &mut TcpStream) -> io::Result<Option<String>> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            if head.is_empty() {
                return Ok(None);
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed mid-request",
            ));
        }
        head.extend_from_slice(&buf[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            return Ok(Some(String::from_utf8_lossy(&head).into_owned()));
        }
        if head.len() > MAX_REQUEST_HEAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request head over 8 KiB",
            ));
        }
    }
}

/// `GET /path?x HTTP/1.1` → (`GET`, `/path?x`).
fn parse_request_line(head: &str) -> Option<(String, String)> {
    let line = head.lines().next()?;
    let mut words = line.split_whitespace();
    let method = words.next()?;
    let target = words.next()?;
    let version = words.next()?;
    if !version.starts_with("HTTP/") || words.next().is_some() || !target.starts_with('/') {
        return None;
    }
    Some((method.to_string(), target.to_string()))
}

/// The decoded value of `name` in a query string (`+` is a space, `%XX` a byte).
fn query_param(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| percent_decode(value))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        302 => "Found",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

fn write_response(stream: &mut TcpStream, response: &Response) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        response.status,
        reason(response.status),
        response.content_type,
        response.body.len()
    );
    if let Some(location) = response.location {
        head.push_str(&format!("Location: {location}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    if response.trickle {
        stream.flush()?;
        for byte in &response.body {
            std::thread::sleep(Duration::from_secs(1));
            // A client that gave up makes this fail within a write or two.
            stream.write_all(std::slice::from_ref(byte))?;
        }
    } else {
        stream.write_all(&response.body)?;
    }
    stream.flush()
}

/// A valid, healthy JSON object of exactly `size` bytes (for `size` ≥ 40).
fn big_body(size: usize) -> String {
    let open = r#"{"status":"healthy","padding":""#;
    let close = r#""}"#;
    let mut body = String::with_capacity(size);
    body.push_str(open);
    body.extend(std::iter::repeat_n(
        'x',
        size.saturating_sub(open.len() + close.len()),
    ));
    body.push_str(close);
    body
}

// ---------------------------------------------------------------------------
// Output

/// One line to stdout, flushed at once (stdout may be a file or a pipe).
/// Errors are dropped: a server whose log reader died keeps serving.
fn say(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn access_line(method: &str, path: &str, status: u16, t0: Instant) {
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    say(&format!("{method} {path} {status} {ms:.1}ms"));
    log::info!(target: "api", method = method, path = path, status = status, ms = ms; "request");
}

/// Line `i` (from 1) of a spew: `spew 000001 xxxx…`, 100 bytes with the newline.
fn spew_line(i: u64) -> String {
    let mut line = format!("spew {i:06} ");
    while line.len() < SPEW_LINE_BYTES - 1 {
        line.push('x');
    }
    line.push('\n');
    line
}

/// Writes `n` spew lines to stdout as fast as the reader takes them.
fn spew(n: u64) {
    let mut out = BufWriter::with_capacity(64 * 1024, io::stdout().lock());
    for i in 1..=n {
        if out.write_all(spew_line(i).as_bytes()).is_err() {
            break;
        }
    }
    let _ = out.flush();
}

// ---------------------------------------------------------------------------
// Process set-up

/// Starts this binary again with `--grandchild`, in our process group, and
/// writes its pid to `pid_file` (whole, via a rename). Its stdout and stderr
/// are ours, so it also keeps our output pipes open.
fn fork_grandchild(pid_file: &Path) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own binary: {e}"))?;
    let child = Command::new(exe)
        .arg("--grandchild")
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the grandchild: {e}"))?;
    let tmp = pid_file.with_extension("tmp");
    std::fs::write(&tmp, format!("{}\n", child.id()))
        .and_then(|()| std::fs::rename(&tmp, pid_file))
        .map_err(|e| format!("cannot write {}: {e}", pid_file.display()))?;
    // The Child is dropped without waiting: it lives as long as we do.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn args_parse_every_flag_in_both_spellings() {
        let cases: &[(&[&str], Options)] = &[
            (&[], Options::default()),
            (
                &[
                    "--host",
                    "0.0.0.0",
                    "--port=9001",
                    "--fault-file",
                    "f",
                    "--startup-delay",
                    "0.5",
                ],
                Options {
                    host: "0.0.0.0".into(),
                    port: 9001,
                    fault_file: Some("f".into()),
                    startup_delay: Duration::from_millis(500),
                    ..Options::default()
                },
            ),
            (
                &["--spew=10", "--fork-child", "p", "--log-dir=logs"],
                Options {
                    spew: 10,
                    fork_child: Some("p".into()),
                    log_dir: Some("logs".into()),
                    ..Options::default()
                },
            ),
        ];
        for (words, want) in cases {
            assert_eq!(
                parse_args(&args(words)),
                Ok(Cli::Run(want.clone())),
                "{words:?}"
            );
        }
        assert_eq!(parse_args(&args(&["--help"])), Ok(Cli::Help));
        assert_eq!(parse_args(&args(&["--grandchild"])), Ok(Cli::Grandchild));
    }

    #[test]
    fn bad_args_are_errors_that_name_the_flag() {
        let cases: &[(&[&str], &str)] = &[
            (&["--port", "70000"], "--port `70000`"),
            (&["--port"], "--port needs a value"),
            (&["--startup-delay", "-1"], "--startup-delay `-1`"),
            (&["--startup-delay", "soon"], "--startup-delay `soon`"),
            (&["--spew", "many"], "--spew `many`"),
            (&["--verbose", "x"], "unknown option `--verbose`"),
            (&["serve"], "unexpected argument `serve`"),
            (&["--help=yes"], "--help takes no value"),
            (&["--host="], "--host"),
        ];
        for (words, want) in cases {
            let err = parse_args(&args(words)).unwrap_err();
            assert!(err.contains(want), "{words:?}: {err}");
        }
    }

    #[test]
    fn fault_file_words_map_to_faults() {
        let cases = [
            ("", Fault::Ok),
            ("ok\n", Fault::Ok),
            ("  fail  ", Fault::Fail),
            ("unhealthy", Fault::Unhealthy),
            ("warn", Fault::Warn),
            ("hang", Fault::Hang),
            ("crash", Fault::Crash),
            ("trickle", Fault::Trickle),
            ("redirect", Fault::Redirect),
            ("big", Fault::Big),
            (
                "slow-start=1.5",
                Fault::SlowStart(Duration::from_millis(1500)),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parse_fault(text), Ok(want), "{text:?}");
        }
        for bad in ["FAIL", "slow-start=", "slow-start=x", "explode"] {
            assert!(parse_fault(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn health_body_has_the_spec_shape_and_warn_passes_every_default_threshold() {
        let body: serde_json::Value =
            serde_json::from_str(&health_body(Health::Normal, 1.23456, "T")).unwrap();
        assert_eq!(body["status"], "healthy");
        assert_eq!(body["uptime"], 1.235);
        assert_eq!(body["memory"]["used"], 150);
        assert_eq!(body["system"]["cpuUsage"]["percent"], 5.2);
        assert_eq!(body["services"]["database"]["responseTime"], 45);

        let warn: serde_json::Value =
            serde_json::from_str(&health_body(Health::Warn, 0.0, "T")).unwrap();
        assert_eq!(warn["status"], "healthy");
        let used = warn["memory"]["used"].as_f64().unwrap();
        let total = warn["memory"]["total"].as_f64().unwrap();
        assert!(used / total * 100.0 > 80.0);
        assert!(warn["system"]["cpuUsage"]["percent"].as_f64().unwrap() > 50.0);
        assert!(
            warn["services"]["database"]["responseTime"]
                .as_f64()
                .unwrap()
                > 100.0
        );

        let sick: serde_json::Value =
            serde_json::from_str(&health_body(Health::Unhealthy, 0.0, "T")).unwrap();
        assert_eq!(sick["status"], "unhealthy");
    }

    #[test]
    fn timestamps_are_utc_iso8601_with_millis() {
        let cases = [
            (0, "1970-01-01T00:00:00.000Z"),
            (951_782_400_123, "2000-02-29T00:00:00.123Z"),
            (1_709_251_199_999, "2024-02-29T23:59:59.999Z"),
            (4_102_444_800_000, "2100-01-01T00:00:00.000Z"),
        ];
        for (millis, want) in cases {
            let time = std::time::UNIX_EPOCH + Duration::from_millis(millis);
            assert_eq!(logging::utc_iso8601_millis(time), want);
        }
    }

    #[test]
    fn request_line_needs_method_target_and_version() {
        assert_eq!(
            parse_request_line("GET /health?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"),
            Some(("GET".into(), "/health?x=1".into()))
        );
        for bad in [
            "",
            "GET /health",
            "GET health HTTP/1.1",
            "GET / FTP/1",
            "GET / HTTP/1.1 x",
        ] {
            assert_eq!(parse_request_line(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn query_params_are_percent_decoded() {
        let cases = [
            ("msg=hello%20world", "msg", Some("hello world")),
            ("a=1&msg=a+b", "msg", Some("a b")),
            ("msg=100%", "msg", Some("100%")),
            ("msg=%zz", "msg", Some("%zz")),
            ("msg", "msg", Some("")),
            ("signal=9", "msg", None),
        ];
        for (query, name, want) in cases {
            assert_eq!(query_param(query, name).as_deref(), want, "{query:?}");
        }
    }

    #[test]
    fn spew_lines_are_numbered_and_100_bytes() {
        assert!(spew_line(1).starts_with("spew 000001 x"));
        assert_eq!(spew_line(1).len(), SPEW_LINE_BYTES);
        assert_eq!(spew_line(1_234_567).len(), SPEW_LINE_BYTES);
        assert!(spew_line(1_234_567).starts_with("spew 1234567 x"));
    }

    #[test]
    fn big_body_is_valid_json_of_the_exact_size() {
        let body = big_body(4096);
        assert_eq!(body.len(), 4096);
        let value: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(value["status"], "healthy");
    }
}
