//! One function per subcommand. Each does its work, prints its own output
//! (stdout: the check line, the status, the effective settings, the test
//! alert's per-channel lines) and returns an [`Outcome`] or an [`Error`].
//!
//! Not done here: no exit status and no error line. `main` matches the
//! subcommand once, prints an [`Error`] as the one `server-monitor: …` line
//! on stderr, and maps outcomes and errors to 0/1/2/3/78. The work itself
//! lives in the modules these functions call (`monitor`, `health`, `state`,
//! `usage`, `restart`, `pause`, `alert`, `capture`, `report`); this is the layer between them and `main`.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::cli::ReportRequest;
use crate::config::{Config, ConfigError};
use crate::health::{self, CheckOutcome};
use crate::lock::lock_holder;
use crate::state;

/// What a subcommand that did its job ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done (exit 0).
    Done,
    /// `check`'s verdict, in the Nagios convention.
    Check(Nagios),
}

/// The four Nagios plugin states; `main` maps them to 0, 1, 2 and 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nagios {
    Ok,
    Warning,
    Critical,
    Unknown,
}

/// Why a subcommand did not do its job; `Display` is the message `main`
/// prints after `server-monitor: `.
#[derive(Debug)]
pub enum Error {
    /// A bad command line.
    Usage(crate::cli::UsageError),
    /// Bad settings, every one named.
    Config(ConfigError),
    /// What the subcommand talks to is not there: no monitor runs with this
    /// LOG_DIR, or it left no state file.
    Absent(String),
    /// Anything else that went wrong: a fault of the monitor, a failed
    /// planned restart, an undelivered test alert.
    Failed(String),
    /// The log-writer process (`__capture`) could not read its input.
    Capture(String),
    /// A subcommand that is parsed but not built yet.
    NotBuilt(&'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(e) => write!(f, "{e}"),
            Error::Config(e) => write!(f, "bad configuration:\n{e}"),
            Error::Absent(s) | Error::Failed(s) | Error::Capture(s) => f.write_str(s),
            Error::NotBuilt(_) => f.write_str("this subcommand is not built yet"),
        }
    }
}

impl std::error::Error for Error {}

/// `server-monitor --help`.
pub fn help() -> Result<Outcome, Error> {
    print!("{}", crate::cli::help());
    Ok(Outcome::Done)
}

/// `server-monitor --version`.
pub fn version() -> Result<Outcome, Error> {
    println!("server-monitor {}", env!("CARGO_PKG_VERSION"));
    Ok(Outcome::Done)
}

/// `server-monitor __capture FILE MAX_BYTES BACKUPS`: the log-writer process.
pub fn capture(file: PathBuf, max_bytes: u64, backups: u32) -> Result<Outcome, Error> {
    crate::capture::run(file, max_bytes, backups).map_err(Error::Capture)?;
    Ok(Outcome::Done)
}

/// `server-monitor` (no subcommand): the monitor, until SIGINT or SIGTERM.
pub fn run(cfg: &Config) -> Result<Outcome, Error> {
    crate::monitor::run(cfg).map_err(|e| {
        // Into the monitor's log as well as on stderr.
        log::error!("{e}");
        Error::Failed(e.to_string())
    })?;
    Ok(Outcome::Done)
}

/// `server-monitor check`: one check, one line, Nagios states.
pub fn check(cfg: &Config) -> Result<Outcome, Error> {
    // On a thread, so that a panic of the HTTP client is a CRITICAL line;
    // never None, as it never gives up.
    let c = health::Checker::new(&cfg.health)
        .check(|| false)
        .unwrap_or_else(|| health::check(&cfg.health));
    let ms = c.latency.as_secs_f64() * 1000.0;
    let url = &cfg.health.health_url;
    // MEMORY_LIMIT: the server's memory and CPU, if it runs.
    let memory = crate::usage::check_line(&cfg.log.log_dir);
    let state = match c.outcome {
        CheckOutcome::Healthy { warnings } if warnings.is_empty() => {
            println!("OK - {url} healthy in {ms:.1} ms{memory}");
            Nagios::Ok
        }
        CheckOutcome::Healthy { warnings } => {
            println!(
                "WARNING - {url} healthy in {ms:.1} ms, but {}{memory}",
                warnings.join("; ")
            );
            Nagios::Warning
        }
        CheckOutcome::Failed(reason) => {
            println!("CRITICAL - {url} {reason} after {ms:.1} ms{memory}");
            Nagios::Critical
        }
    };
    Ok(Outcome::Check(state))
}

/// `server-monitor check` with bad settings: the Nagios convention makes
/// that UNKNOWN, on stdout like every other verdict.
pub fn check_unconfigured(e: &ConfigError) -> Result<Outcome, Error> {
    println!("UNKNOWN - {}", e.to_string().replace('\n', "; "));
    Ok(Outcome::Check(Nagios::Unknown))
}

/// `server-monitor status [--json]`: the state file, and whether a monitor
/// holds the lock.
pub fn status(cfg: &Config, json: bool) -> Result<Outcome, Error> {
    let dir = &cfg.log.log_dir;
    let running = lock_holder(dir).is_some();
    match state::read(dir) {
        Ok(s) if json => {
            let mut v = serde_json::to_value(&s).unwrap_or_default();
            v["monitor_running"] = serde_json::Value::Bool(running);
            crate::report::status_json(dir, &mut v);
            println!("{v}");
            Ok(Outcome::Done)
        }
        Ok(s) => {
            print!("{}", state::render(&s, running));
            print!("{}", crate::report::status_text(dir));
            Ok(Outcome::Done)
        }
        Err(e) => {
            let text = format!("{e} ({})", dir.join(state::STATE_FILE).display());
            Err(match e {
                state::ReadError::Missing => Error::Absent(text),
                _ => Error::Failed(text),
            })
        }
    }
}

/// `server-monitor config`: the effective settings, and the env-file lines
/// that were ignored (on stderr).
pub fn config(cfg: &Config) -> Result<Outcome, Error> {
    for warning in &cfg.warnings {
        eprintln!("server-monitor: warning: {warning}");
    }
    print!("{}", cfg.render());
    Ok(Outcome::Done)
}

/// `server-monitor restart`: ask the running monitor for a planned restart
/// and wait for its answer.
pub fn restart(cfg: &Config) -> Result<Outcome, Error> {
    crate::restart::run(cfg).map_err(|e| match e {
        crate::restart::ClientError::NoMonitor(_) => Error::Absent(e.to_string()),
        crate::restart::ClientError::Failed(_) => Error::Failed(e.to_string()),
    })?;
    Ok(Outcome::Done)
}

/// `server-monitor test-alert`: one test alert through every channel.
pub fn test_alert(cfg: &Config) -> Result<Outcome, Error> {
    crate::alert::test_alert(cfg).map_err(Error::Failed)?;
    Ok(Outcome::Done)
}

/// `server-monitor pause [--for DURATION]`: ask the running
/// monitor for a maintenance pause and wait until it has taken it.
pub fn pause(cfg: &Config, duration: Option<Duration>) -> Result<Outcome, Error> {
    crate::pause::run(cfg, true, duration).map_err(pause_error)?;
    Ok(Outcome::Done)
}

/// `server-monitor resume`: end a pause.
pub fn resume(cfg: &Config) -> Result<Outcome, Error> {
    crate::pause::run(cfg, false, None).map_err(pause_error)?;
    Ok(Outcome::Done)
}

/// No monitor is exit 3, anything else exit 1 (as for `restart`).
fn pause_error(e: crate::restart::ClientError) -> Error {
    match e {
        crate::restart::ClientError::NoMonitor(_) => Error::Absent(e.to_string()),
        crate::restart::ClientError::Failed(_) => Error::Failed(e.to_string()),
    }
}

/// `server-monitor report`: availability and incidents from
/// LOG_DIR/history, as text, JSON, CSV or an HTML page.
pub fn report(cfg: &Config, request: &ReportRequest) -> Result<Outcome, Error> {
    crate::report::run(cfg, request).map_err(Error::Failed)?;
    Ok(Outcome::Done)
}
