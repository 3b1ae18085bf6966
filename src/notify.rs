//! sd_notify, spoken directly: `READY=1` once the server is verified,
//! `STATUS=` lines that say what the monitor is doing, `WATCHDOG=1` at half
//! of `WATCHDOG_USEC` while the loop is alive, `STOPPING=1` on the way out.
//!
//! Without `$NOTIFY_SOCKET` nothing at all happens: no socket is opened and
//! every method returns at once. The socket may be a path (`/run/...`) or an
//! abstract name (`@...`). The variables are read once, at start, and kept
//! away from the server's environment (see `server::CHILD_ENV_REMOVE`), so
//! that the server cannot speak for the monitor.
//!
//! The wording of the STATUS line is here too ([`status_line`], pure): the
//! loop hands over the policy's snapshot once a turn ([`Notifier::tell`]);
//! READY goes out once the first start is settled.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::policy::{PhaseName, Snapshot};

/// How far past a wait's own bound [`Notifier::keep_alive`] still pings: the
/// rest of that loop turn (a log line, the state file). A wait that hangs
/// for longer than that stops the pings, and systemd's watchdog sees it.
pub const KEEPALIVE_MARGIN: Duration = Duration::from_secs(2);

/// Where `$NOTIFY_SOCKET` points.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    Path(String),
    Abstract(Vec<u8>),
}

/// Pure: parses `$NOTIFY_SOCKET`. `@name` is an abstract socket; an absolute
/// path is a socket file; anything else is not usable.
pub fn parse_target(value: &str) -> Option<Target> {
    if let Some(name) = value.strip_prefix('@') {
        (!name.is_empty()).then(|| Target::Abstract(name.as_bytes().to_vec()))
    } else if value.starts_with('/') {
        Some(Target::Path(value.to_string()))
    } else {
        None
    }
}

/// Pure: the watchdog ping interval — half of `WATCHDOG_USEC` — when the
/// watchdog is meant for this process (`WATCHDOG_PID` absent or ours).
pub fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, my_pid: u32) -> Option<Duration> {
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok() != Some(my_pid) {
            return None;
        }
    }
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    Some(Duration::from_micros(usec) / 2)
}

/// Pure: the settings whose waits come near half of the watchdog interval
/// (`ping_every` is that half). The loop does not turn during such a wait;
/// [`Notifier::keep_alive`] pings meanwhile, but only up to the wait's bound
/// plus [`KEEPALIVE_MARGIN`], so a wait that long leaves little room before
/// systemd's watchdog. Each item names the setting, its value and the limit.
pub fn watchdog_risks(ping_every: Duration, waits: &[(&str, Duration)]) -> Vec<String> {
    // "Near": within 80% of the ping interval leaves too little for the rest
    // of the loop turn.
    let limit = ping_every.mul_f64(0.8);
    waits
        .iter()
        .filter(|(_, d)| *d >= limit)
        .map(|(name, d)| {
            format!(
                "{name}={}s comes near half of the systemd watchdog ({}s); raise WatchdogSec to more than {}s",
                d.as_secs_f64(),
                (ping_every * 2).as_secs_f64(),
                (d.mul_f64(2.5)).as_secs_f64().ceil()
            )
        })
        .collect()
}

pub struct Notifier {
    socket: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
    /// Shared with a [`KeepAlive`] thread while one runs.
    next_ping: Arc<Mutex<Option<Instant>>>,
    ready: bool,
    status: String,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`.
    pub fn from_env(now: Instant) -> Notifier {
        let var = |k: &str| std::env::var(k).ok();
        let socket = var("NOTIFY_SOCKET")
            .as_deref()
            .and_then(parse_target)
            .and_then(|t| connect(&t).ok());
        let watchdog = socket.as_ref().and_then(|_| {
            watchdog_interval(
                var("WATCHDOG_USEC").as_deref(),
                var("WATCHDOG_PID").as_deref(),
                std::process::id(),
            )
        });
        Notifier {
            socket,
            next_ping: Arc::new(Mutex::new(watchdog.map(|_| now))),
            watchdog,
            ready: false,
            status: String::new(),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.socket.is_some()
    }

    fn send(&self, message: &str) {
        if let Some((sock, addr)) = &self.socket {
            if let Err(e) = sock.send_to_addr(message.as_bytes(), addr) {
                log::debug!(error = e.to_string().as_str(); "sd_notify failed");
            }
        }
    }

    /// `READY=1` (once) with the current status.
    pub fn ready(&mut self, status: &str) {
        if self.ready || self.socket.is_none() {
            return;
        }
        self.ready = true;
        self.status = status.to_string();
        self.send(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    /// A `STATUS=` line, sent only when it changed.
    pub fn status(&mut self, status: &str) {
        if self.socket.is_none() || self.status == status {
            return;
        }
        self.status = status.to_string();
        self.send(&format!("STATUS={}", one_line(status)));
    }

    /// `WATCHDOG=1` if a ping is due.
    pub fn ping_if_due(&mut self, now: Instant) {
        if let Some((sock, addr)) = &self.socket {
            ping_if_due(sock, addr, &self.next_ping, self.watchdog, now);
        }
    }

    /// Keeps the watchdog fed while the loop is held up by one bounded wait
    /// (a stop, STOP_COMMAND, a delivery) that lasts at most `bound`: a
    /// short-lived thread pings when due, until the returned guard is
    /// dropped or `bound` plus [`KEEPALIVE_MARGIN`] has passed — so a wait
    /// that hangs past its own bound still trips the watchdog. Without a
    /// watchdog, nothing is started.
    pub fn keep_alive(&self, bound: Duration) -> KeepAlive {
        let (Some((sock, addr)), Some(every)) = (&self.socket, self.watchdog) else {
            return KeepAlive::default();
        };
        let Ok(sock) = sock.try_clone() else {
            return KeepAlive::default();
        };
        let addr = addr.clone();
        let next = self.next_ping.clone();
        let end = crate::config::instant_after(Instant::now(), bound + KEEPALIVE_MARGIN);
        let (tx, rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("watchdog".into())
            .spawn(move || loop {
                let now = Instant::now();
                if now >= end {
                    return;
                }
                ping_if_due(&sock, &addr, &next, Some(every), now);
                let due = next.lock().map_or(None, |n| *n).unwrap_or(end);
                let wait = due.min(end).saturating_duration_since(Instant::now());
                match rx.recv_timeout(wait) {
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
            });
        match thread {
            Ok(t) => KeepAlive {
                stop: Some(tx),
                thread: Some(t),
            },
            Err(e) => {
                log::warn!(error = e.to_string().as_str(); "cannot start the watchdog thread for a long wait");
                KeepAlive::default()
            }
        }
    }

    /// The watchdog ping interval, when systemd watches this process.
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog
    }

    /// When the next watchdog ping is due.
    pub fn next_ping(&self) -> Option<Instant> {
        self.next_ping.lock().map_or(None, |n| *n)
    }

    /// Once a loop turn: READY once the first start is settled, STATUS on
    /// every change, WATCHDOG when a ping is due. Nothing without systemd.
    pub fn tell(&mut self, snap: &Snapshot, server_pid: Option<u32>, now: Instant) {
        if !self.is_enabled() {
            return;
        }
        let status = status_line(snap, server_pid);
        if !snap.phase.is_starting() {
            self.ready(&status);
        }
        self.status(&status);
        self.ping_if_due(now);
    }

    pub fn stopping(&mut self) {
        self.send("STOPPING=1\nSTATUS=stopping");
    }
}

/// Pure: the STATUS line for the policy's snapshot.
pub fn status_line(snap: &Snapshot, server_pid: Option<u32>) -> String {
    let last = snap.last_error.as_deref().unwrap_or("none");
    match snap.phase {
        p if p.is_starting() => "starting the server".to_string(),
        PhaseName::Running if snap.failures == 0 => match server_pid {
            Some(pid) => format!("server pid {pid} healthy"),
            None => "server healthy".to_string(),
        },
        PhaseName::Running => format!("{} failed checks in a row (last: {last})", snap.failures),
        PhaseName::RestartPending => {
            format!("restart due, waiting for the cooldown (last: {last})")
        }
        _ => format!(
            "gave up after {} restart attempts: manual intervention required (last: {last})",
            snap.attempts
        ),
    }
}

/// Sends `WATCHDOG=1` when `next` says it is due, and moves `next` on.
fn ping_if_due(
    sock: &UnixDatagram,
    addr: &SocketAddr,
    next: &Mutex<Option<Instant>>,
    every: Option<Duration>,
    now: Instant,
) {
    let Ok(mut next) = next.lock() else { return };
    if let (Some(at), Some(every)) = (*next, every) {
        if now >= at {
            if let Err(e) = sock.send_to_addr(b"WATCHDOG=1", addr) {
                log::debug!(error = e.to_string().as_str(); "sd_notify failed");
            }
            *next = Some(now + every);
        }
    }
}

/// Ends [`Notifier::keep_alive`]'s thread when dropped.
#[derive(Default)]
pub struct KeepAlive {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

fn connect(target: &Target) -> io::Result<(UnixDatagram, SocketAddr)> {
    let addr = match target {
        Target::Path(p) => SocketAddr::from_pathname(p)?,
        Target::Abstract(name) => SocketAddr::from_abstract_name(name)?,
    };
    Ok((UnixDatagram::unbound()?, addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_follow_the_phase() {
        let snap = |phase, failures, attempts, last: Option<&str>| Snapshot {
            phase,
            failures,
            attempts,
            last_error: last.map(String::from),
        };
        let cases = [
            (
                snap(PhaseName::Idle, 0, 0, None),
                None,
                "starting the server",
            ),
            (
                snap(PhaseName::Verifying, 3, 1, None),
                Some(9),
                "starting the server",
            ),
            (
                snap(PhaseName::Running, 0, 0, None),
                Some(9),
                "server pid 9 healthy",
            ),
            (snap(PhaseName::Running, 0, 0, None), None, "server healthy"),
            (
                snap(PhaseName::Running, 2, 0, Some("refused")),
                Some(9),
                "2 failed checks in a row (last: refused)",
            ),
            (
                snap(PhaseName::RestartPending, 3, 1, None),
                None,
                "restart due, waiting for the cooldown (last: none)",
            ),
            (
                snap(PhaseName::GivenUp, 3, 3, Some("HTTP 503")),
                None,
                "gave up after 3 restart attempts: manual intervention required (last: HTTP 503)",
            ),
        ];
        for (s, pid, want) in cases {
            assert_eq!(status_line(&s, pid), want, "{s:?}");
        }
    }

    #[test]
    fn notify_socket_forms() {
        assert_eq!(
            parse_target("/run/systemd/notify"),
            Some(Target::Path("/run/systemd/notify".into()))
        );
        assert_eq!(
            parse_target("@sd-123"),
            Some(Target::Abstract(b"sd-123".to_vec()))
        );
        assert_eq!(parse_target("@"), None);
        assert_eq!(parse_target("relative"), None);
        assert_eq!(parse_target(""), None);
    }

    #[test]
    fn watchdog_pings_at_half_the_interval_for_this_pid_only() {
        let half = Some(Duration::from_secs(15));
        assert_eq!(watchdog_interval(Some("30000000"), None, 7), half);
        assert_eq!(watchdog_interval(Some("30000000"), Some("7"), 7), half);
        assert_eq!(watchdog_interval(Some("30000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("x"), None, 7), None);
        assert_eq!(watchdog_interval(None, None, 7), None);
    }

    #[test]
    fn waits_near_half_the_watchdog_are_named() {
        let half = Duration::from_secs(15);
        let risks = watchdog_risks(
            half,
            &[
                ("STOP_TIMEOUT", Duration::from_secs(15)),
                ("SMTP_TIMEOUT", Duration::from_secs(10)),
            ],
        );
        assert_eq!(risks.len(), 1, "{risks:?}");
        assert!(risks[0].starts_with("STOP_TIMEOUT=15s"), "{risks:?}");
        assert!(risks[0].contains("(30s)"), "{risks:?}");
        let risks = watchdog_risks(half, &[("SMTP_TIMEOUT", Duration::from_secs(12))]);
        assert_eq!(risks.len(), 1, "12 s is 80% of 15 s: {risks:?}");
        assert!(watchdog_risks(half, &[("STOP_TIMEOUT", Duration::from_secs(2))]).is_empty());
    }

    #[test]
    fn speaks_the_protocol_over_a_path_socket() {
        let dir = std::env::temp_dir().join(format!("sm-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        listener
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let now = Instant::now();
        let mut n = Notifier {
            socket: Some(connect(&Target::Path(path.to_str().unwrap().into())).unwrap()),
            watchdog: Some(Duration::from_secs(1)),
            next_ping: Arc::new(Mutex::new(Some(now))),
            ready: false,
            status: String::new(),
        };
        let mut buf = [0u8; 256];
        let mut recv = || {
            let len = listener.recv(&mut buf).unwrap();
            String::from_utf8_lossy(&buf[..len]).into_owned()
        };
        n.ready("running\nserver pid 5");
        assert_eq!(recv(), "READY=1\nSTATUS=running server pid 5");
        n.ready("again");
        n.status("running\nserver pid 5");
        n.status("given up");
        assert_eq!(
            recv(),
            "STATUS=given up",
            "no second READY, no repeated STATUS"
        );
        n.ping_if_due(now);
        assert_eq!(recv(), "WATCHDOG=1");
        n.ping_if_due(now + Duration::from_millis(500));
        assert_eq!(n.next_ping(), Some(now + Duration::from_secs(1)));
        n.stopping();
        assert_eq!(recv(), "STOPPING=1\nSTATUS=stopping");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn keep_alive_pings_during_a_wait_and_stops_past_its_bound() {
        let dir = std::env::temp_dir().join(format!("sm-keepalive-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        listener
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let start = Instant::now();
        let n = Notifier {
            socket: Some(connect(&Target::Path(path.to_str().unwrap().into())).unwrap()),
            watchdog: Some(Duration::from_millis(100)),
            next_ping: Arc::new(Mutex::new(Some(start))),
            ready: false,
            status: String::new(),
        };
        let mut pings = Vec::new();
        let mut buf = [0u8; 64];
        // A wait bounded by 0.3 s that hangs: pings until 0.3 s + the margin.
        let guard = n.keep_alive(Duration::from_millis(300));
        let bound = Duration::from_millis(300) + KEEPALIVE_MARGIN;
        while start.elapsed() < bound + Duration::from_secs(1) {
            if let Ok(len) = listener.recv(&mut buf) {
                assert_eq!(&buf[..len], b"WATCHDOG=1");
                pings.push(start.elapsed());
            }
        }
        drop(guard);
        std::fs::remove_dir_all(&dir).unwrap();
        let last = *pings.last().expect("pings");
        assert!(last <= bound + Duration::from_millis(50), "{pings:?}");
        assert!(last >= bound - Duration::from_millis(300), "{pings:?}");
        for w in pings.windows(2) {
            assert!(w[1] - w[0] < Duration::from_millis(400), "{pings:?}");
        }
        assert!(
            n.next_ping().unwrap() > start + bound - Duration::from_millis(300),
            "the loop's schedule follows the thread's pings"
        );
    }

    #[test]
    fn keep_alive_ends_when_dropped() {
        let n = Notifier {
            socket: Some((
                UnixDatagram::unbound().unwrap(),
                SocketAddr::from_abstract_name(b"sm-none-here").unwrap(),
            )),
            watchdog: Some(Duration::from_millis(100)),
            next_ping: Arc::new(Mutex::new(Some(Instant::now()))),
            ready: false,
            status: String::new(),
        };
        let t = Instant::now();
        drop(n.keep_alive(Duration::from_secs(60)));
        assert!(t.elapsed() < Duration::from_secs(1));
    }
}
