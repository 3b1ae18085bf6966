//! The logging library: JSON lines in size-rotated files, plus readable
//! console lines, behind the `log` crate's macros.
//!
//! This is the crate's public library API. The monitor uses it for its own
//! log, and any Rust service can use it to get the layout of the monitored
//! chatbot server:
//!
//! | file | what goes there |
//! | --- | --- |
//! | `app.log` | every record at or above the level |
//! | `errors.log` | `ERROR` records only |
//! | one file per route, e.g. `api.log` | records whose target is the route's name or starts with `name::` |
//! | `server_monitor.log` | the monitor's layout ([`init_monitor`]): everything, in one file |
//!
//! Every file holds one JSON object a line (see [`json`] for the fields:
//! `timestamp`, `level`, `logger`, `message`, `module`, `line`, `extra`), is
//! rotated by size (`NAME.1` newest … `NAME.N` oldest, see [`rotate`]), and is
//! created again if deleted while the program runs. Key-values given to the
//! `log` macros end up in `extra`, typed (numbers stay numbers). The console
//! (stderr) gets the same records as
//! `08:28:39 [WARN] health check failed (reason=refused, failures=2)`.
//!
//! ```
//! use server_monitor::logging::{self, Settings};
//!
//! let dir = std::env::temp_dir().join(format!("logging-doc-{}", std::process::id()));
//! let settings = Settings {
//!     level: log::LevelFilter::Debug,
//!     console: false,
//!     ..Settings::new(&dir)
//! };
//! logging::init_service(&settings, &[("api", "api.log"), ("agents", "agents.log")])?;
//!
//! log::info!(target: "api", path = "/chat", status = 200, latency_ms = 12.5; "request served");
//! log::error!(target: "agents::planner", attempt = 3; "plan failed");
//! logging::flush();
//!
//! let app = std::fs::read_to_string(dir.join("app.log"))?;
//! assert_eq!(app.lines().count(), 2);
//! assert!(app.contains(r#""extra":{"latency_ms":12.5,"path":"/chat","status":200}"#));
//! assert!(std::fs::read_to_string(dir.join("errors.log"))?.contains("plan failed"));
//! assert!(std::fs::read_to_string(dir.join("agents.log"))?.contains(r#""logger":"agents::planner""#));
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Failure handling: a file that cannot be written does not stop the program
//! and never panics. The failure is reported on stderr at most once a minute
//! per file (with a count of the failures held back), the record is lost for
//! that file, and every later record tries again (the rotator reopens).
//! Opening fails loudly only at set-up, so that an unusable directory is
//! seen at start.
//!
//! What it does not do: no buffering (a record is in the kernel when the
//! macro returns, so nothing is lost if the process is killed), no fsync, no
//! deletion of old backups by age unless the program asks for it
//! ([`sweep_rotated_logs`], e.g. once an hour), no
//! filtering per module. It takes one lock per record; it is meant for
//! programs that log tens of records a second, not millions.
//!
//! The parts: [`json`] (pure line formatting, and the UTC timestamp
//! formatter [`utc_iso8601_millis`] the rest of the crate and the demo server
//! use too), [`rotate`] (the size rotator), [`retention`] (age-based removal
//! of backups, on the program's call), a private console writer and a
//! stderr throttle for failures. Self-contained: nothing here uses the rest
//! of the crate (no settings, no alerts), so that any Rust service can take
//! it as it is.

#![deny(missing_docs)]

mod console;
pub mod json;
pub mod retention;
pub mod rotate;
pub(crate) mod throttle;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Instant, SystemTime};

use log::{Level, LevelFilter, Log, Metadata, Record};

use console::Console;
pub use json::{round_ms, unix_millis, utc_iso8601_millis};
pub use retention::sweep_rotated_logs;
pub use rotate::{backup_path, RotatingFile};
use throttle::Throttle;

/// The monitor's own log file.
pub const MONITOR_LOG: &str = "server_monitor.log";
/// The services' file for every record.
pub const APP_LOG: &str = "app.log";
/// The services' file for `ERROR` records.
pub const ERRORS_LOG: &str = "errors.log";

/// Where and how much to log. Field meanings follow the SPEC settings
/// `LOG_DIR`, `LOG_LEVEL`, `LOG_MAX_BYTES` and `LOG_BACKUPS`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The directory of the log files (created 0750 if missing).
    pub dir: PathBuf,
    /// Records below this level are dropped everywhere.
    pub level: LevelFilter,
    /// A file is rotated before a line would make it pass this size.
    pub max_bytes: u64,
    /// Rotated files kept per log (`NAME.1` newest).
    pub backups: u32,
    /// Also write readable lines to stderr.
    pub console: bool,
}

impl Settings {
    /// The SPEC defaults in `dir`: level `info`, 10 MiB, 5 backups, console on.
    pub fn new(dir: impl AsRef<Path>) -> Settings {
        Settings {
            dir: dir.as_ref().to_path_buf(),
            level: LevelFilter::Info,
            max_bytes: 10 * 1024 * 1024,
            backups: 5,
            console: true,
        }
    }
}

/// Why the logger could not be set up.
#[derive(Debug)]
pub enum LogError {
    /// A log file (or its directory) could not be created or opened.
    Open {
        /// The file (or directory) that failed.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// Another logger is already installed for the `log` crate.
    AlreadyInstalled,
}

impl fmt::Display for LogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogError::Open { path, source } => {
                write!(f, "cannot open log file {}: {source}", path.display())
            }
            LogError::AlreadyInstalled => f.write_str("a logger is already installed"),
        }
    }
}

impl std::error::Error for LogError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LogError::Open { source, .. } => Some(source),
            LogError::AlreadyInstalled => None,
        }
    }
}

/// The monitor's logger: everything to `DIR/server_monitor.log`, plus
/// readable console lines when `settings.console`.
pub fn init_monitor(settings: &Settings) -> Result<(), LogError> {
    JsonLogger::monitor(settings)?.install()
}

/// The layout for Rust services: `DIR/app.log` (everything), `DIR/errors.log`
/// (`ERROR` only), and for each `(target, file)` route, e.g.
/// `("api", "api.log")`, records whose target is that name or starts with
/// `name::` also go to that file. Plus console lines when `settings.console`.
pub fn init_service(settings: &Settings, routes: &[(&str, &str)]) -> Result<(), LogError> {
    JsonLogger::service(settings, routes)?.install()
}

/// Flushes the installed logger (the console; files are not buffered).
pub fn flush() {
    log::logger().flush();
}

/// The `log::Log` implementation behind [`init_monitor`] and
/// [`init_service`]; build one yourself to combine it with another logger.
pub struct JsonLogger {
    level: LevelFilter,
    /// The monitor's layout: other crates' records (rustls, mail-send, …)
    /// only from WARNING up, whatever LOG_LEVEL says.
    own_crate: Option<&'static str>,
    // One lock for all files: records arrive one at a time in our programs,
    // and one lock keeps a record's lines in the same order in every file.
    sinks: Mutex<Vec<Sink>>,
    console: Option<Console<io::Stderr>>,
}

struct Sink {
    route: Route,
    file: RotatingFile,
    throttle: Throttle,
}

/// Which records a file takes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    All,
    Errors,
    Target(String),
}

impl Route {
    fn accepts(&self, record: &Record) -> bool {
        match self {
            Route::All => true,
            Route::Errors => record.level() == Level::Error,
            Route::Target(name) => is_routed(record.target(), name),
        }
    }
}

/// `target` belongs to the route `name` when it is `name` or starts with
/// `name::` (so `api` takes `api::v1` but not `apis`).
fn is_routed(target: &str, name: &str) -> bool {
    target
        .strip_prefix(name)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
}

impl JsonLogger {
    /// The monitor's layout; the file is created (opened) now.
    pub fn monitor(settings: &Settings) -> Result<JsonLogger, LogError> {
        let mut logger = JsonLogger::build(settings, vec![(Route::All, MONITOR_LOG.to_owned())])?;
        logger.own_crate = Some(env!("CARGO_CRATE_NAME"));
        Ok(logger)
    }

    /// The services' layout; every file is created (opened) now.
    pub fn service(settings: &Settings, routes: &[(&str, &str)]) -> Result<JsonLogger, LogError> {
        let mut files = vec![
            (Route::All, APP_LOG.to_owned()),
            (Route::Errors, ERRORS_LOG.to_owned()),
        ];
        for (target, file) in routes {
            files.push((Route::Target((*target).to_owned()), (*file).to_owned()));
        }
        JsonLogger::build(settings, files)
    }

    fn build(settings: &Settings, files: Vec<(Route, String)>) -> Result<JsonLogger, LogError> {
        let mut sinks = Vec::with_capacity(files.len());
        for (route, name) in files {
            let path = settings.dir.join(name);
            let mut file = RotatingFile::new(path.clone(), settings.max_bytes, settings.backups);
            file.open()
                .map_err(|source| LogError::Open { path, source })?;
            sinks.push(Sink {
                route,
                file,
                throttle: Throttle::new(throttle::REPORT_PERIOD),
            });
        }
        Ok(JsonLogger {
            level: settings.level,
            own_crate: None,
            sinks: Mutex::new(sinks),
            console: settings.console.then(|| Console::new(io::stderr())),
        })
    }

    /// Installs this logger for the `log` crate's macros and sets the
    /// global maximum level.
    pub fn install(self) -> Result<(), LogError> {
        let level = self.level;
        log::set_boxed_logger(Box::new(self)).map_err(|_| LogError::AlreadyInstalled)?;
        log::set_max_level(level);
        Ok(())
    }
}

impl Log for JsonLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        let foreign = self
            .own_crate
            .is_some_and(|own| !is_routed(metadata.target(), own));
        metadata.level() <= self.level && (!foreign || metadata.level() <= Level::Warn)
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = json::format_record(record, SystemTime::now());
        {
            // A panic elsewhere while holding the lock must not silence the
            // log: take the files back from a poisoned lock.
            let mut sinks = self.sinks.lock().unwrap_or_else(|e| e.into_inner());
            for sink in sinks.iter_mut().filter(|s| s.route.accepts(record)) {
                if let Err(e) = sink.file.write_lines(line.as_bytes()) {
                    if let Some(held_back) = sink.throttle.admit(Instant::now()) {
                        throttle::warn_stderr(format_args!(
                            "logging: {}",
                            throttle::failure_text(
                                "cannot write log file",
                                sink.file.path(),
                                &e,
                                held_back
                            )
                        ));
                    }
                }
            }
        }
        if let Some(console) = &self.console {
            console.log(record);
        }
    }

    fn flush(&self) {
        if let Some(console) = &self.console {
            console.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::rotate::tests::TempDir;
    use super::*;
    use serde_json::Value;

    #[test]
    fn routes_take_their_name_and_its_children_only() {
        let table = [
            ("api", "api", true),
            ("api::v1", "api", true),
            ("api::v1::chat", "api", true),
            ("apis", "api", false),
            ("chatbot::api", "api", false),
            ("agents:planner", "agents", false),
            ("", "api", false),
        ];
        for (target, name, want) in table {
            assert_eq!(is_routed(target, name), want, "{target} in {name}");
        }
    }

    fn lines(path: &Path) -> Vec<Value> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn messages(path: &Path) -> Vec<String> {
        lines(path)
            .iter()
            .map(|v| v["message"].as_str().unwrap().to_owned())
            .collect()
    }

    fn settings(dir: &Path) -> Settings {
        // The macros check the global maximum (Off until a logger is
        // installed) before they call the logger passed with `logger:`.
        log::set_max_level(LevelFilter::Trace);
        Settings {
            level: LevelFilter::Debug,
            console: false,
            ..Settings::new(dir)
        }
    }

    #[test]
    fn service_layout_routes_records_to_their_files() {
        let dir = TempDir::new("service");
        let logs = dir.join("logs");
        let logger = JsonLogger::service(
            &settings(&logs),
            &[("api", "api.log"), ("agents", "agents.log")],
        )
        .unwrap();
        // Every file exists from the start.
        for name in ["app.log", "errors.log", "api.log", "agents.log"] {
            assert!(logs.join(name).exists(), "{name}");
        }
        log::info!(logger: logger, target: "api", status = 200; "served");
        log::error!(logger: logger, target: "agents::planner", "plan failed");
        log::warn!(logger: logger, target: "apis", "not api");
        log::error!(logger: logger, "own error");
        log::trace!(logger: logger, "below the level");
        assert_eq!(
            messages(&logs.join("app.log")),
            ["served", "plan failed", "not api", "own error"]
        );
        assert_eq!(
            messages(&logs.join("errors.log")),
            ["plan failed", "own error"]
        );
        assert_eq!(messages(&logs.join("api.log")), ["served"]);
        assert_eq!(messages(&logs.join("agents.log")), ["plan failed"]);
        let served = &lines(&logs.join("api.log"))[0];
        assert_eq!(served["extra"]["status"], 200);
        assert_eq!(served["logger"], "api");
        assert_eq!(served["level"], "INFO");
        let own = &lines(&logs.join("errors.log"))[1];
        assert_eq!(own["logger"], "server_monitor");
        assert_eq!(own["module"], "tests");
    }

    #[test]
    fn monitor_layout_keeps_other_crates_below_warning_out() {
        let dir = TempDir::new("monitor-foreign");
        let logger = JsonLogger::monitor(&settings(&dir.0)).unwrap();
        log::debug!(logger: logger, target: "rustls::client", "handshake detail");
        log::warn!(logger: logger, target: "rustls::client", "a real problem");
        log::debug!(logger: logger, "our own debug line");
        assert_eq!(
            messages(&dir.join(MONITOR_LOG)),
            ["a real problem", "our own debug line"]
        );
    }

    #[test]
    fn monitor_layout_writes_one_file_and_honours_the_level() {
        let dir = TempDir::new("monitor");
        let s = Settings {
            level: LevelFilter::Info,
            ..settings(&dir.0)
        };
        let logger = JsonLogger::monitor(&s).unwrap();
        log::debug!(logger: logger, "check ok");
        log::info!(logger: logger, pid = 42; "server started");
        let file = dir.join("server_monitor.log");
        assert_eq!(messages(&file), ["server started"]);
        assert_eq!(lines(&file)[0]["extra"]["pid"], 42);
        assert!(!logger.enabled(&Metadata::builder().level(Level::Debug).build()));
    }

    #[test]
    fn files_rotate_with_the_settings() {
        let dir = TempDir::new("rotating");
        let s = Settings {
            max_bytes: 4096,
            backups: 2,
            ..settings(&dir.0)
        };
        let logger = JsonLogger::monitor(&s).unwrap();
        for i in 0..200 {
            log::info!(logger: logger, i = i; "record number {i:04}");
        }
        let file = dir.join("server_monitor.log");
        let mut all = messages(&backup_path(&file, 2));
        all.extend(messages(&backup_path(&file, 1)));
        all.extend(messages(&file));
        assert!(!backup_path(&file, 3).exists());
        // The oldest were dropped; what is kept is in order and complete.
        let first: usize = all[0]["record number ".len()..].parse().unwrap();
        let want: Vec<String> = (first..200)
            .map(|i| format!("record number {i:04}"))
            .collect();
        assert_eq!(all, want);
    }

    #[test]
    fn an_unusable_directory_fails_at_set_up_with_the_path() {
        let dir = TempDir::new("unusable");
        std::fs::write(dir.join("logs"), "a file, not a directory").unwrap();
        let err = JsonLogger::monitor(&settings(&dir.join("logs")))
            .err()
            .expect("must fail");
        let text = err.to_string();
        assert!(
            text.starts_with("cannot open log file ") && text.contains("logs/server_monitor.log"),
            "{text}"
        );
    }

    #[test]
    fn a_failing_file_does_not_stop_logging() {
        let dir = TempDir::new("failing");
        let logs = dir.join("logs");
        let logger = JsonLogger::monitor(&settings(&logs)).unwrap();
        // The directory is replaced by a file: writes fail, nothing panics.
        std::fs::remove_dir_all(&logs).unwrap();
        std::fs::write(&logs, "").unwrap();
        log::info!(logger: logger, "lost");
        log::info!(logger: logger, "lost too");
        // Once the directory can be made again, records are written again.
        std::fs::remove_file(&logs).unwrap();
        log::info!(logger: logger, "back");
        assert_eq!(messages(&logs.join("server_monitor.log")), ["back"]);
    }

    #[test]
    fn log_error_display_names_what_failed() {
        let e = LogError::Open {
            path: PathBuf::from("logs/app.log"),
            source: io::Error::from(io::ErrorKind::PermissionDenied),
        };
        assert_eq!(
            e.to_string(),
            "cannot open log file logs/app.log: permission denied"
        );
        assert_eq!(
            LogError::AlreadyInstalled.to_string(),
            "a logger is already installed"
        );
    }
}
