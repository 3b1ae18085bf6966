//! `server_monitor.state.json`: what the monitor is doing, for `status` and
//! for people. Written atomically (a temporary file and a rename) after every
//! change and every check; fsynced only when the counters or the phase change,
//! since a lost "last check" line costs nothing.
//!
//! The monitor never reads its state back to decide anything: a state file
//! that is truncated or garbage is reported by `status` and rebuilt by the
//! next write.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

pub const STATE_FILE: &str = "server_monitor.state.json";

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub monitor_pid: u32,
    pub service_name: String,
    pub health_url: String,
    /// idle, starting, verifying, running, restart-pending, given-up, stopped
    pub phase: String,
    pub server_pid: Option<u32>,
    pub consecutive_failures: u32,
    pub restart_attempts: u32,
    pub max_restart_attempts: u32,
    pub restarts_total: u64,
    pub last_check: Option<LastCheck>,
    pub last_error: Option<String>,
    pub last_restart: Option<String>,
    pub started: String,
    pub updated: String,
    /// The last planned restart (`server-monitor restart`) and its outcome.
    #[serde(default)]
    pub planned_restart: Option<PlannedRestart>,
}

/// What `server-monitor restart` waits for: its request id and the outcome.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PlannedRestart {
    /// The ids of the requests this restart answers.
    pub ids: Vec<String>,
    pub by: String,
    pub requested: String,
    /// `in progress`, `ok` or `failed`.
    pub outcome: String,
    pub detail: Option<String>,
    pub server_pid: Option<u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LastCheck {
    pub time: String,
    pub healthy: bool,
    pub latency_ms: f64,
    pub reason: Option<String>,
}

/// Writes the state file atomically.
pub fn write(dir: &Path, state: &State, durable: bool) -> io::Result<()> {
    let mut json = serde_json::to_vec_pretty(state).map_err(io::Error::other)?;
    json.push(b'\n');
    crate::files::write_atomic(&dir.join(STATE_FILE), &json, durable)
}

#[derive(Debug)]
pub enum ReadError {
    Missing,
    Io(io::Error),
    Invalid(String),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Missing => f.write_str("no state file (has a monitor run with this LOG_DIR?)"),
            ReadError::Io(e) => write!(f, "cannot read the state file: {e}"),
            ReadError::Invalid(e) => write!(f, "the state file is damaged ({e}); the running monitor rewrites it at its next check"),
        }
    }
}

pub fn read(dir: &Path) -> Result<State, ReadError> {
    let bytes = match fs::read(dir.join(STATE_FILE)) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ReadError::Missing),
        Err(e) => return Err(ReadError::Io(e)),
    };
    serde_json::from_slice(&bytes).map_err(|e| ReadError::Invalid(e.to_string()))
}

/// The readable form `server-monitor status` prints.
pub fn render(s: &State, monitor_running: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "service:        {}", s.service_name);
    let _ = writeln!(out, "health URL:     {}", s.health_url);
    let monitor = if monitor_running {
        "running"
    } else {
        "not running"
    };
    let _ = writeln!(out, "monitor:        pid {} ({monitor})", s.monitor_pid);
    let _ = writeln!(out, "state:          {}", s.phase);
    let server = s
        .server_pid
        .map_or("none".to_string(), |p| format!("pid {p}"));
    let _ = writeln!(out, "server:         {server}");
    if let Some(c) = &s.last_check {
        let result = match (&c.healthy, &c.reason) {
            (true, _) => "healthy".to_string(),
            (false, Some(r)) => format!("failed: {r}"),
            (false, None) => "failed".to_string(),
        };
        let _ = writeln!(
            out,
            "last check:     {} {result} ({:.1} ms)",
            c.time, c.latency_ms
        );
    }
    let _ = writeln!(out, "failures:       {} in a row", s.consecutive_failures);
    let _ = writeln!(
        out,
        "restarts:       {}/{} attempts, {} in total",
        s.restart_attempts, s.max_restart_attempts, s.restarts_total
    );
    if let Some(r) = &s.last_restart {
        let _ = writeln!(out, "last restart:   {r}");
    }
    if let Some(e) = &s.last_error {
        let _ = writeln!(out, "last error:     {e}");
    }
    if let Some(p) = &s.planned_restart {
        let detail = p
            .detail
            .as_deref()
            .map(|d| format!(": {d}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "planned restart: {} by {}, {}{detail}",
            p.requested, p.by, p.outcome
        );
    }
    let _ = writeln!(out, "since:          {}", s.started);
    let _ = writeln!(out, "updated:        {}", s.updated);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reports_damage() {
        let dir = std::env::temp_dir().join(format!("sm-state-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        assert!(matches!(read(&dir), Err(ReadError::Missing)));
        let s = State {
            monitor_pid: 7,
            phase: "running".into(),
            last_check: Some(LastCheck {
                time: "t".into(),
                healthy: false,
                latency_ms: 1.5,
                reason: Some("refused".into()),
            }),
            ..State::default()
        };
        write(&dir, &s, true).unwrap();
        assert_eq!(read(&dir).unwrap(), s);
        assert!(render(&s, true).contains("failed: refused"));
        fs::write(dir.join(STATE_FILE), b"{\"monitor_pid\": 7, \"pha").unwrap();
        assert!(matches!(read(&dir), Err(ReadError::Invalid(_))));
        fs::remove_dir_all(&dir).unwrap();
    }
}
