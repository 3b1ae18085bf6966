//! One [`Config`], resolved once at start-up from flags, the process
//! environment, the env file and defaults, and passed down in sections.
//!
//! - [`SETTINGS`] is the one table of setting names (with flag metavars,
//!   defaults and help text); `cli` validates flag names against it and
//!   `cli::help` prints it.
//! - [`resolve`] is pure: every input (flags, environment, env-file text,
//!   hostname, working directory) is a parameter. One resolver per settings
//!   section (`Resolver::health`, `server`, `policy`, `log`, `alert`,
//!   `heartbeat`, `status`) looks each setting up through the layers; together
//!   they record where each value came from, check every rule in SPEC.md
//!   "Settings", and report every bad value at once in a [`ConfigError`].
//! - [`load`] is the thin shell that gathers those inputs from the process,
//!   given what the command line said as plain data (flags, `--env-file`, the
//!   words after `--`). This module does not know the command-line parser:
//!   `cli` depends on `config`, never the other way.
//! - [`Config::render`] prints the effective settings for `server-monitor config`,
//!   secrets masked.
//!
//! Precedence: the words after `--` (for SERVER_COMMAND) > flag > process
//! environment > env file > default. A blank value at any layer means "the
//! default" (none, for a setting without one), so `SMTP_SERVER=` in the
//! environment switches off an SMTP_SERVER from the env file.
//!
//! Not done here: nothing checks that paths exist or that hosts resolve (that
//! is the job of the module that uses them, with its own error), and nothing
//! reads the environment after start-up. Unknown keys in the env file and the
//! environment are ignored, whatever their spelling: the `.env` is shared with
//! the application. An env-file line that cannot be parsed is an error only
//! when it is a setting's line; any other is a warning in `Config::warnings`.

mod parse;

pub use parse::{
    format_duration, is_valid_key, join_words, parse_bool, parse_duration, parse_env_file,
    parse_list, split_words, EnvEntry, EnvFile, EnvProblem, ParseError,
};

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One row of the settings table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettingInfo {
    /// The SPEC name, also the environment variable and env-file key.
    pub name: &'static str,
    /// What the flag's value looks like in `--help` (`BOOL` makes a boolean flag).
    pub metavar: &'static str,
    /// The default as the user would write it; [`None`] when there is none or
    /// it is derived (then `default_text` says how).
    pub default: Option<&'static str>,
    /// The default as `--help` shows it (empty: no default worth showing).
    pub default_text: &'static str,
    /// One short line for `--help`.
    pub about: &'static str,
}

impl SettingInfo {
    /// A boolean setting's flag may be given without a value (`--restart-on-exit`).
    pub fn is_bool(&self) -> bool {
        self.metavar == "BOOL"
    }

    /// The flag for this setting: `CHECK_INTERVAL` -> `--check-interval`.
    pub fn flag(&self) -> String {
        format!("--{}", self.name.to_ascii_lowercase().replace('_', "-"))
    }
}

const fn setting(
    name: &'static str,
    metavar: &'static str,
    default: Option<&'static str>,
    default_text: &'static str,
    about: &'static str,
) -> SettingInfo {
    SettingInfo {
        name,
        metavar,
        default,
        default_text,
        about,
    }
}

/// Every setting, in SPEC order. Adding a setting: a row here, a field in its
/// section, a line in `resolve` and one in `Config::values` (a test checks
/// that the last two cover this table).
#[rustfmt::skip]
pub const SETTINGS: &[SettingInfo] = &[
    setting("HEALTH_URL", "URL", Some("http://127.0.0.1:8000/health"), "http://127.0.0.1:8000/health", "what is polled"),
    setting("HEALTH_CA_FILE", "FILE", None, "", "extra trusted CAs (PEM) for https"),
    setting("SERVER_COMMAND", "COMMAND", None, "", "starts the server (shell-like words)"),
    setting("SERVER_WORKDIR", "DIR", None, "cwd", "where the server is started"),
    setting("STOP_COMMAND", "COMMAND", None, "", "stops a server not started by us"),
    setting("CHECK_INTERVAL", "DURATION", Some("30"), "30", "time between checks"),
    setting("HEALTH_TIMEOUT", "SECONDS", Some("5"), "5", "deadline of one check (whole secs)"),
    setting("FAILURE_THRESHOLD", "N", Some("3"), "3", "failed checks in a row -> restart"),
    setting("MAX_RESTART_ATTEMPTS", "N", Some("3"), "3", "failed restarts before giving up"),
    setting("RESTART_COOLDOWN", "DURATION", Some("60"), "60", "least time between restarts"),
    setting("STOP_TIMEOUT", "DURATION", Some("2"), "2", "SIGTERM -> SIGKILL wait"),
    setting("STARTUP_TIMEOUT", "DURATION", Some("10"), "10", "time to answer healthy after start"),
    setting("RETRY_AFTER_GIVE_UP", "DURATION", Some("0"), "0=never", "retry this often after giving up"),
    setting("RESTART_ON_EXIT", "BOOL", Some("true"), "true", "restart at once when it exits"),
    setting("KEEP_SERVER_ON_EXIT", "BOOL", Some("false"), "false", "leave it running when we stop"),
    setting("MEMORY_LIMIT", "SIZE", None, "", "restart above this PSS: 512MB, 80%"),
    setting("SERVICE_NAME", "TEXT", Some("Chatbot Server"), "Chatbot Server", "name in alerts"),
    setting("HEALTHY_STATUSES", "LIST", Some("healthy,ok,pass,up"), "healthy,ok,pass,up", "accepted JSON `status`"),
    setting("WARN_MEMORY_PERCENT", "PERCENT", Some("80"), "80", "warn above this memory use"),
    setting("WARN_CPU_PERCENT", "PERCENT", Some("50"), "50", "warn above this CPU use"),
    setting("WARN_DB_RESPONSE_MS", "MS", Some("100"), "100", "warn above this DB response time"),
    setting("LOG_DIR", "DIR", Some("logs"), "logs", "logs, pid, lock and state files"),
    setting("LOG_LEVEL", "LEVEL", Some("info"), "info", "debug, info, warning or error"),
    setting("LOG_MAX_BYTES", "BYTES", Some("10485760"), "10485760", "rotate a log at this size"),
    setting("LOG_BACKUPS", "N", Some("5"), "5", "rotated files kept per log"),
    setting("LOG_RETENTION_DAYS", "DAYS", Some("30"), "30", "delete old logs/alerts; 0 keeps all"),
    setting("SMTP_SERVER", "HOST", None, "", "SMTP host (email needs ALERT_EMAIL)"),
    setting("SMTP_PORT", "PORT", Some("587"), "587", "SMTP port"),
    setting("SMTP_SECURITY", "MODE", None, "tls on 465, else starttls", "starttls|tls|none"),
    setting("SMTP_USERNAME", "USER", None, "", "SMTP AUTH user"),
    setting("SMTP_PASSWORD", "SECRET", None, "", "SMTP AUTH password"),
    setting("SMTP_CA_FILE", "FILE", None, "", "extra trusted CAs (PEM)"),
    setting("SMTP_TIMEOUT", "DURATION", Some("10"), "10", "deadline of one delivery"),
    setting("ALERT_EMAIL", "LIST", None, "", "recipients, comma-separated"),
    setting("ALERT_FROM", "ADDRESS", None, "SMTP_USERNAME", "sender"),
    setting("ALERT_WEBHOOK_URL", "URL", None, "", "also POST alerts as JSON here"),
    setting("ALERT_REMINDER", "DURATION", Some("1h"), "1h", "first reminder while down; 0=never"),
    setting("FLAP_RESTARTS", "N", Some("4"), "4", "restarts in FLAP_WINDOW; 0=off"),
    setting("FLAP_WINDOW", "DURATION", Some("30m"), "30m", "window for FLAP_RESTARTS"),
    setting("HEARTBEAT_URL", "URL", None, "", "GET this while healthy (secret)"),
    setting("HEARTBEAT_INTERVAL", "DURATION", Some("60"), "60", "time between heartbeats"),
    setting("HISTORY_DAYS", "DAYS", Some("400"), "400", "keep history this long; 0 keeps all"),
    setting("STATUS_LISTEN", "HOST:PORT", None, "", "serve /, /metrics, /status.json here"),
    setting("STATUS_TOKEN", "SECRET", None, "", "token the status endpoints require"),
];

/// The table row for a setting name.
pub fn setting_info(name: &str) -> Option<&'static SettingInfo> {
    SETTINGS.iter().find(|s| s.name == name)
}

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    EnvFile(PathBuf),
    Environment,
    Flag,
    ArgsAfterDashDash,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::EnvFile(path) => write!(f, "env file {}", path.display()),
            Source::Environment => f.write_str("environment"),
            Source::Flag => f.write_str("flag"),
            Source::ArgsAfterDashDash => f.write_str("after --"),
        }
    }
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// Plain connect, then STARTTLS (required, not opportunistic).
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No TLS at all; refused together with a password.
    None,
}

impl fmt::Display for SmtpSecurity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SmtpSecurity::StartTls => "starttls",
            SmtpSecurity::Tls => "tls",
            SmtpSecurity::None => "none",
        })
    }
}

/// What a check is and how its body is judged. `Debug` masks a password in
/// the URL.
#[derive(Clone, PartialEq)]
pub struct HealthSettings {
    pub health_url: String,
    /// Whole seconds, at least 1 (SPEC; the client itself is not so bound).
    pub health_timeout: Duration,
    /// Lowercased; compared with the body's `status` lowercased.
    pub healthy_statuses: Vec<String>,
    pub warn_memory_percent: f64,
    pub warn_cpu_percent: f64,
    pub warn_db_response_ms: f64,
    /// Extra trusted CAs for an https HEALTH_URL, beside the system roots.
    pub health_ca_file: Option<PathBuf>,
}

impl fmt::Debug for HealthSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthSettings")
            .field("health_url", &mask_url_password(&self.health_url))
            .field("health_timeout", &self.health_timeout)
            .field("healthy_statuses", &self.healthy_statuses)
            .field("warn_memory_percent", &self.warn_memory_percent)
            .field("warn_cpu_percent", &self.warn_cpu_percent)
            .field("warn_db_response_ms", &self.warn_db_response_ms)
            .field("health_ca_file", &self.health_ca_file)
            .finish()
    }
}

/// How the server is started and stopped.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSettings {
    /// `None`: watch and alert only.
    pub server_command: Option<Vec<String>>,
    /// Absolute; `None`: the monitor's working directory.
    pub server_workdir: Option<PathBuf>,
    pub stop_command: Option<Vec<String>>,
    pub stop_timeout: Duration,
    pub keep_server_on_exit: bool,
}

/// The restart policy's numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicySettings {
    pub check_interval: Duration,
    pub failure_threshold: u32,
    pub max_restart_attempts: u32,
    pub restart_cooldown: Duration,
    /// How long a started server has to pass its first check (the policy's
    /// Verifying phase; also what `server-monitor restart` waits for).
    pub startup_timeout: Duration,
    /// `None` for `0`: after giving up, wait for a person.
    pub retry_after_give_up: Option<Duration>,
    pub restart_on_exit: bool,
    /// MEMORY_LIMIT; `None`: memory is not watched.
    pub memory_limit: Option<MemoryLimit>,
}

/// MEMORY_LIMIT as given: a size, or a share of the host's memory (resolved
/// against `/proc/meminfo` by the monitor at start).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MemoryLimit {
    /// Bytes (`512MB`: units are binary, 1 MB = 1 MiB, as in monit and PM2).
    Bytes(u64),
    /// Percent of the host's total memory, above 0 and at most 100.
    Percent(f64),
}

impl MemoryLimit {
    /// The limit in bytes on a host with `total_memory` bytes.
    pub fn bytes(&self, total_memory: u64) -> u64 {
        match *self {
            MemoryLimit::Bytes(n) => n,
            MemoryLimit::Percent(p) => (total_memory as f64 * p / 100.0) as u64,
        }
    }
}

impl fmt::Display for MemoryLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MemoryLimit::Bytes(n) => f.write_str(&format_bytes(n)),
            MemoryLimit::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// A byte count as a person writes it: `512MiB`, `1.5GiB`, `4096` (whole
/// bytes below 1 KiB or when no unit divides it into a short figure).
pub fn format_bytes(n: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1 << 40, "TiB"),
        (1 << 30, "GiB"),
        (1 << 20, "MiB"),
        (1 << 10, "KiB"),
    ];
    for (size, unit) in UNITS {
        if n >= size {
            let value = n as f64 / size as f64;
            if n.is_multiple_of(size) {
                return format!("{}{unit}", n / size);
            }
            if (value * 10.0).fract() == 0.0 {
                return format!("{value:.1}{unit}");
            }
        }
    }
    n.to_string()
}

/// The dead man's switch (HEARTBEAT_URL). `Debug` masks the URL: it is a secret.
#[derive(Clone, PartialEq)]
pub struct HeartbeatSettings {
    pub heartbeat_url: Option<String>,
    pub heartbeat_interval: Duration,
}

impl fmt::Debug for HeartbeatSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeartbeatSettings")
            .field(
                "heartbeat_url",
                &self.heartbeat_url.as_deref().map(mask_secret_url),
            )
            .field("heartbeat_interval", &self.heartbeat_interval)
            .finish()
    }
}

/// The status endpoints (STATUS_LISTEN). `Debug` masks the token.
#[derive(Clone, PartialEq)]
pub struct StatusSettings {
    /// `None`: no listener.
    pub status_listen: Option<std::net::SocketAddr>,
    pub status_token: Option<String>,
}

impl fmt::Debug for StatusSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatusSettings")
            .field("status_listen", &self.status_listen)
            .field("status_token", &self.status_token.as_ref().map(|_| MASK))
            .finish()
    }
}

/// Where logs go and how they rotate.
#[derive(Debug, Clone, PartialEq)]
pub struct LogSettings {
    /// Absolute (made so against the working directory at load).
    pub log_dir: PathBuf,
    pub log_level: log::LevelFilter,
    pub log_max_bytes: u64,
    pub log_backups: u32,
    /// 0 keeps everything.
    pub log_retention_days: u32,
    /// HISTORY_DAYS: how long `history/` is kept; 0 keeps everything.
    pub history_days: u32,
}

/// Alert channels. `Debug` masks the password and the webhook URL.
#[derive(Clone, PartialEq)]
pub struct AlertSettings {
    pub service_name: String,
    pub smtp_server: Option<String>,
    pub smtp_port: u16,
    pub smtp_security: SmtpSecurity,
    pub smtp_username: Option<String>,
    pub smtp_password: Option<String>,
    /// Absolute when set.
    pub smtp_ca_file: Option<PathBuf>,
    pub smtp_timeout: Duration,
    pub alert_email: Vec<String>,
    /// Resolved: ALERT_FROM, else SMTP_USERNAME when it is an address, else
    /// `server-monitor@HOSTNAME`.
    pub alert_from: String,
    pub alert_webhook_url: Option<String>,
    /// ALERT_REMINDER; `None` for `0`: no reminders.
    pub alert_reminder: Option<Duration>,
    /// FLAP_RESTARTS; 0: flap detection off.
    pub flap_restarts: u32,
    pub flap_window: Duration,
}

impl fmt::Debug for AlertSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlertSettings")
            .field("service_name", &self.service_name)
            .field("smtp_server", &self.smtp_server)
            .field("smtp_port", &self.smtp_port)
            .field("smtp_security", &self.smtp_security)
            .field("smtp_username", &self.smtp_username)
            .field("smtp_password", &self.smtp_password.as_ref().map(|_| MASK))
            .field("smtp_ca_file", &self.smtp_ca_file)
            .field("smtp_timeout", &self.smtp_timeout)
            .field("alert_email", &self.alert_email)
            .field("alert_from", &self.alert_from)
            .field(
                "alert_webhook_url",
                &self.alert_webhook_url.as_deref().map(mask_webhook_url),
            )
            .field("alert_reminder", &self.alert_reminder)
            .field("flap_restarts", &self.flap_restarts)
            .field("flap_window", &self.flap_window)
            .finish()
    }
}

/// The effective configuration, in sections.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub health: HealthSettings,
    pub server: ServerSettings,
    pub policy: PolicySettings,
    pub log: LogSettings,
    pub alert: AlertSettings,
    pub heartbeat: HeartbeatSettings,
    pub status: StatusSettings,
    /// Not a setting: this machine's name, for alert bodies and the default sender.
    pub hostname: String,
    /// Where each setting's value came from, in [`SETTINGS`] order.
    sources: Vec<(&'static str, Source)>,
    /// Env-file lines that were ignored, each naming the file and the line:
    /// found before logging is set up, so the caller logs them (`run`) or
    /// prints them (`config`).
    pub warnings: Vec<String>,
}

/// Every bad setting, reported at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.problems.join("\n"))
    }
}

impl std::error::Error for ConfigError {}

const MASK: &str = "********";

/// Resolves the configuration from inputs given as data. Pure.
///
/// `flags` are `(SETTING_NAME, value)` in command-line order (a later one
/// wins); `env` is the process environment (settings are looked up in it,
/// and any variable may be named by a `${VAR}` in the env file); `env_file` is the file's path (for messages and sources) and text;
/// `server_argv` are the words after `--`; `cwd` makes relative paths absolute.
pub fn resolve(
    flags: &[(String, String)],
    env: &HashMap<String, String>,
    env_file: Option<(&Path, &str)>,
    server_argv: Option<Vec<String>>,
    hostname: &str,
    cwd: &Path,
) -> Result<Config, ConfigError> {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let file = env_file.map(|(path, text)| {
        let pairs = env_file_pairs(path, text, env, &mut problems, &mut warnings);
        (path, pairs)
    });
    for (name, _) in flags {
        if setting_info(name).is_none() {
            problems.push(format!("unknown setting `{name}`"));
        }
    }
    let mut r = Resolver {
        flags,
        env,
        file,
        sources: Vec::new(),
        problems,
    };
    let hostname = match hostname.trim() {
        "" => "localhost".to_string(),
        name => name.to_string(),
    };

    // NOTE: a fallback after `.unwrap_or` in a section resolver is only there
    // to build the struct; any problem makes this function return Err, so it
    // is never seen.
    let health = r.health(cwd);
    let server = r.server(cwd, server_argv);
    let policy = r.policy();
    let log = r.log(cwd);
    let alert = r.alert(cwd, &hostname);
    let heartbeat = r.heartbeat();
    let status = r.status();

    if !r.problems.is_empty() {
        return Err(ConfigError {
            problems: r.problems,
        });
    }
    let sources = r.sources_in_table_order();
    Ok(Config {
        health,
        server,
        policy,
        log,
        alert,
        heartbeat,
        status,
        hostname,
        sources,
        warnings,
    })
}

/// The `(key, value)` pairs of an env file's text, in file order. A line
/// that cannot be parsed is a problem when it is a setting's line (its value
/// is unknown), else a warning: the file is shared with the application.
fn env_file_pairs(
    path: &Path,
    text: &str,
    env: &HashMap<String, String>,
    problems: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Vec<(String, String)> {
    let parsed = parse_env_file(text, |name| env.get(name).cloned());
    for p in parsed.problems {
        let place = format!("env file {}: line {}", path.display(), p.line);
        match p.key.as_deref().filter(|k| setting_info(k).is_some()) {
            Some(_) => problems.push(format!("{place}: {}", p.message)),
            None => warnings.push(format!("{place}: {}; line ignored", p.message)),
        }
    }
    parsed
        .entries
        .into_iter()
        .map(|e| (e.key, e.value.unwrap_or_default()))
        .collect()
}

/// Gathers the inputs of [`resolve`] from the process: the environment, the
/// env file (`--env-file PATH` must be readable; the default `.env` in the
/// working directory is read only when it exists), the hostname and the cwd.
///
/// `flags`, `env_file` and `server_argv` are what the command line gave
/// (see [`resolve`]); this module knows nothing of how it was parsed.
pub fn load(
    flags: &[(String, String)],
    env_file: Option<&Path>,
    server_argv: Option<Vec<String>>,
) -> Result<Config, ConfigError> {
    let mut problems = Vec::new();
    let mut env = HashMap::new();
    for (key, value) in std::env::vars_os() {
        // Every variable may be named by a `${VAR}` in the env file; a
        // non-UTF-8 value is an error for a setting, of anything else none
        // of our business.
        let Some(key) = key.to_str() else {
            continue;
        };
        match value.into_string() {
            Ok(value) => {
                env.insert(key.to_string(), value);
            }
            Err(_) if setting_info(key).is_some() => {
                problems.push(format!("the environment variable {key} is not valid UTF-8"))
            }
            Err(_) => {}
        }
    }
    let cwd = match std::env::current_dir() {
        Ok(cwd) => cwd,
        Err(e) => {
            problems.push(format!("cannot determine the working directory: {e}"));
            PathBuf::from("/")
        }
    };
    let (file_path, file_text) = match env_file {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => (Some(path.to_path_buf()), text),
            Err(e) => {
                problems.push(format!("cannot read env file {}: {e}", path.display()));
                (None, String::new())
            }
        },
        None => match std::fs::read_to_string(cwd.join(".env")) {
            Ok(text) => (Some(PathBuf::from(".env")), text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (None, String::new()),
            Err(e) => {
                problems.push(format!("cannot read env file .env: {e}"));
                (None, String::new())
            }
        },
    };
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let resolved = resolve(
        flags,
        &env,
        file_path.as_deref().map(|p| (p, file_text.as_str())),
        server_argv,
        &hostname,
        &cwd,
    );
    match resolved {
        Ok(config) if problems.is_empty() => Ok(config),
        Ok(_) => Err(ConfigError { problems }),
        Err(e) => {
            problems.extend(e.problems);
            Err(ConfigError { problems })
        }
    }
}

impl Config {
    /// Some connection will use TLS: an https health, webhook or heartbeat
    /// URL, or email over starttls / tls.
    pub fn uses_tls(&self) -> bool {
        [self.health.health_url.as_str()]
            .into_iter()
            .chain(self.alert.alert_webhook_url.as_deref())
            .chain(self.heartbeat.heartbeat_url.as_deref())
            .any(|url| url.starts_with("https://"))
            || (self.email_enabled() && self.alert.smtp_security != SmtpSecurity::None)
    }

    /// Alerts go by email: SMTP_SERVER and ALERT_EMAIL are both set.
    pub fn email_enabled(&self) -> bool {
        self.alert.smtp_server.is_some() && !self.alert.alert_email.is_empty()
    }

    /// Where a setting's value came from; `None` for an unknown name.
    pub fn source(&self, name: &str) -> Option<&Source> {
        self.sources
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, source)| source)
    }

    /// The env file that holds SMTP_PASSWORD, with its mode, when other
    /// users can read it (it should be its owner's and group's only): the
    /// monitor says so at start.
    pub fn readable_secret_file(&self) -> Option<(&Path, u32)> {
        use std::os::unix::fs::PermissionsExt;
        let Some(Source::EnvFile(path)) = self.source("SMTP_PASSWORD") else {
            return None;
        };
        let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
        (mode & 0o004 != 0).then_some((path.as_path(), mode))
    }

    /// The effective settings for `server-monitor config`: one
    /// `NAME=value  # source` line per setting, in [`SETTINGS`] order, aligned,
    /// secrets masked. The lines are valid env-file syntax.
    pub fn render(&self) -> String {
        let lines: Vec<(String, &Source)> = self
            .values()
            .into_iter()
            .map(|(name, value)| {
                let source = self.source(name).expect("every setting has a source");
                (format!("{name}={}", env_quote(&value)), source)
            })
            .collect();
        // Cap the alignment so that one long command does not push every
        // comment off the screen.
        let width = lines
            .iter()
            .map(|(line, _)| line.chars().count())
            .filter(|&n| n <= 50)
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        for (line, source) in lines {
            // An env file's path may hold a line break: escaped, so that the
            // comment stays on its line and the output a valid env file.
            let source = source.to_string().replace('\n', "\\n").replace('\r', "\\r");
            out.push_str(&format!("{line:width$}  # {source}\n"));
        }
        out
    }

    /// Every setting's effective value as text, masked, in [`SETTINGS`] order.
    fn values(&self) -> Vec<(&'static str, String)> {
        let (h, s, p, l, a) = (
            &self.health,
            &self.server,
            &self.policy,
            &self.log,
            &self.alert,
        );
        let (hb, st) = (&self.heartbeat, &self.status);
        let masked = |t: &Option<String>| t.as_ref().map(|_| MASK.to_string()).unwrap_or_default();
        let words = |w: &Option<Vec<String>>| w.as_deref().map(join_words).unwrap_or_default();
        let path = |p: &Option<PathBuf>| {
            p.as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        };
        let text = |t: &Option<String>| t.clone().unwrap_or_default();
        let level = match l.log_level {
            log::LevelFilter::Warn => "warning".to_string(),
            other => other.to_string().to_ascii_lowercase(),
        };
        vec![
            ("HEALTH_URL", mask_url_password(&h.health_url)),
            ("HEALTH_CA_FILE", path(&h.health_ca_file)),
            ("SERVER_COMMAND", words(&s.server_command)),
            ("SERVER_WORKDIR", path(&s.server_workdir)),
            ("STOP_COMMAND", words(&s.stop_command)),
            ("CHECK_INTERVAL", format_duration(p.check_interval)),
            ("HEALTH_TIMEOUT", format_duration(h.health_timeout)),
            ("FAILURE_THRESHOLD", p.failure_threshold.to_string()),
            ("MAX_RESTART_ATTEMPTS", p.max_restart_attempts.to_string()),
            ("RESTART_COOLDOWN", format_duration(p.restart_cooldown)),
            ("STOP_TIMEOUT", format_duration(s.stop_timeout)),
            ("STARTUP_TIMEOUT", format_duration(p.startup_timeout)),
            (
                "RETRY_AFTER_GIVE_UP",
                format_duration(p.retry_after_give_up.unwrap_or_default()),
            ),
            ("RESTART_ON_EXIT", p.restart_on_exit.to_string()),
            ("KEEP_SERVER_ON_EXIT", s.keep_server_on_exit.to_string()),
            (
                "MEMORY_LIMIT",
                p.memory_limit.map(|m| m.to_string()).unwrap_or_default(),
            ),
            ("SERVICE_NAME", a.service_name.clone()),
            ("HEALTHY_STATUSES", h.healthy_statuses.join(",")),
            ("WARN_MEMORY_PERCENT", h.warn_memory_percent.to_string()),
            ("WARN_CPU_PERCENT", h.warn_cpu_percent.to_string()),
            ("WARN_DB_RESPONSE_MS", h.warn_db_response_ms.to_string()),
            ("LOG_DIR", l.log_dir.display().to_string()),
            ("LOG_LEVEL", level),
            ("LOG_MAX_BYTES", l.log_max_bytes.to_string()),
            ("LOG_BACKUPS", l.log_backups.to_string()),
            ("LOG_RETENTION_DAYS", l.log_retention_days.to_string()),
            ("SMTP_SERVER", text(&a.smtp_server)),
            ("SMTP_PORT", a.smtp_port.to_string()),
            ("SMTP_SECURITY", a.smtp_security.to_string()),
            ("SMTP_USERNAME", text(&a.smtp_username)),
            (
                "SMTP_PASSWORD",
                a.smtp_password
                    .as_ref()
                    .map(|_| MASK.to_string())
                    .unwrap_or_default(),
            ),
            ("SMTP_CA_FILE", path(&a.smtp_ca_file)),
            ("SMTP_TIMEOUT", format_duration(a.smtp_timeout)),
            ("ALERT_EMAIL", a.alert_email.join(",")),
            ("ALERT_FROM", a.alert_from.clone()),
            (
                "ALERT_WEBHOOK_URL",
                a.alert_webhook_url
                    .as_deref()
                    .map(mask_webhook_url)
                    .unwrap_or_default(),
            ),
            (
                "ALERT_REMINDER",
                format_duration(a.alert_reminder.unwrap_or_default()),
            ),
            ("FLAP_RESTARTS", a.flap_restarts.to_string()),
            ("FLAP_WINDOW", format_duration(a.flap_window)),
            (
                "HEARTBEAT_URL",
                hb.heartbeat_url
                    .as_deref()
                    .map(mask_secret_url)
                    .unwrap_or_default(),
            ),
            ("HEARTBEAT_INTERVAL", format_duration(hb.heartbeat_interval)),
            ("HISTORY_DAYS", l.history_days.to_string()),
            (
                "STATUS_LISTEN",
                st.status_listen.map(|a| a.to_string()).unwrap_or_default(),
            ),
            ("STATUS_TOKEN", masked(&st.status_token)),
        ]
    }
}

/// Looks settings up through the layers, recording sources and problems.
struct Resolver<'a> {
    flags: &'a [(String, String)],
    env: &'a HashMap<String, String>,
    file: Option<(&'a Path, Vec<(String, String)>)>,
    sources: Vec<(&'static str, Source)>,
    problems: Vec<String>,
}

impl Resolver<'_> {
    /// The highest-precedence text given for `name`, and where from.
    fn lookup(&self, name: &str) -> Option<(&str, Source)> {
        if let Some((_, value)) = self.flags.iter().rev().find(|(n, _)| n == name) {
            return Some((value, Source::Flag));
        }
        if let Some(value) = self.env.get(name) {
            return Some((value, Source::Environment));
        }
        let (path, pairs) = self.file.as_ref()?;
        let (_, value) = pairs.iter().rev().find(|(n, _)| n == name)?;
        Some((value, Source::EnvFile(path.to_path_buf())))
    }

    /// Resolves one setting: the given text (or the table default when none
    /// or blank) through `parse`. `None` when the setting has no value, or
    /// when it is bad (then a problem is recorded).
    fn get<T>(
        &mut self,
        name: &'static str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let info = setting_info(name).expect("resolve asks only for known settings");
        let (given, source) = match self.lookup(name) {
            Some((text, source)) if !text.trim().is_empty() => (Some(text.to_string()), source),
            Some((_, source)) => (None, source),
            None => (None, Source::Default),
        };
        self.sources.push((name, source));
        let text = given.or(info.default.map(str::to_string))?;
        match parse(text.trim()) {
            Ok(value) => Some(value),
            Err(expected) => {
                let shown = match name {
                    "SMTP_PASSWORD" | "STATUS_TOKEN" => MASK.to_string(),
                    "ALERT_WEBHOOK_URL" => mask_webhook_url(&text),
                    "HEARTBEAT_URL" => mask_secret_url(&text),
                    _ => mask_url_password(&text),
                };
                self.problems
                    .push(format!("invalid value `{shown}` for {name}: {expected}"));
                None
            }
        }
    }
}

impl Resolver<'_> {
    /// Where each setting's value came from, in [`SETTINGS`] order.
    fn sources_in_table_order(&self) -> Vec<(&'static str, Source)> {
        SETTINGS
            .iter()
            .map(|info| {
                let source = self
                    .sources
                    .iter()
                    .find(|(name, _)| *name == info.name)
                    .map(|(_, source)| source.clone())
                    .expect("resolve looks up every setting");
                (info.name, source)
            })
            .collect()
    }
}

/// One resolver per settings section, in the order of SPEC.md "Settings".
impl Resolver<'_> {
    /// The health check: what is fetched and how its body is judged.
    fn health(&mut self, cwd: &Path) -> HealthSettings {
        HealthSettings {
            health_url: self.get("HEALTH_URL", http_url).unwrap_or_default(),
            health_timeout: self
                .get("HEALTH_TIMEOUT", whole_seconds_at_least_one)
                .unwrap_or_default(),
            healthy_statuses: self.get("HEALTHY_STATUSES", statuses).unwrap_or_default(),
            warn_memory_percent: self.get("WARN_MEMORY_PERCENT", percent).unwrap_or_default(),
            warn_cpu_percent: self.get("WARN_CPU_PERCENT", percent).unwrap_or_default(),
            warn_db_response_ms: self
                .get("WARN_DB_RESPONSE_MS", milliseconds)
                .unwrap_or_default(),
            health_ca_file: self.get("HEALTH_CA_FILE", |s| ca_file(&cwd.join(s))),
        }
    }

    /// The server: how it is started and stopped. The words after `--` win over SERVER_COMMAND.
    fn server(&mut self, cwd: &Path, server_argv: Option<Vec<String>>) -> ServerSettings {
        let server_command = match server_argv.filter(|words| !words.is_empty()) {
            Some(words) => {
                self.sources
                    .push(("SERVER_COMMAND", Source::ArgsAfterDashDash));
                Some(words)
            }
            None => self.get("SERVER_COMMAND", command),
        };
        ServerSettings {
            server_command,
            server_workdir: self.get("SERVER_WORKDIR", |s| Ok(cwd.join(s))),
            stop_command: self.get("STOP_COMMAND", command),
            stop_timeout: self.get("STOP_TIMEOUT", duration).unwrap_or_default(),
            keep_server_on_exit: self.get("KEEP_SERVER_ON_EXIT", boolean).unwrap_or_default(),
        }
    }

    /// The restart policy's numbers.
    fn policy(&mut self) -> PolicySettings {
        PolicySettings {
            check_interval: self
                .get("CHECK_INTERVAL", duration_above_zero)
                .unwrap_or_default(),
            failure_threshold: self
                .get("FAILURE_THRESHOLD", count_at_least_one)
                .unwrap_or(1),
            max_restart_attempts: self
                .get("MAX_RESTART_ATTEMPTS", count_at_least_one)
                .unwrap_or(1),
            restart_cooldown: self.get("RESTART_COOLDOWN", duration).unwrap_or_default(),
            startup_timeout: self
                .get("STARTUP_TIMEOUT", duration_above_zero)
                .unwrap_or_default(),
            retry_after_give_up: self
                .get("RETRY_AFTER_GIVE_UP", duration)
                .filter(|d| !d.is_zero()),
            restart_on_exit: self.get("RESTART_ON_EXIT", boolean).unwrap_or_default(),
            memory_limit: self.get("MEMORY_LIMIT", memory_limit),
        }
    }

    /// Where and how much the monitor logs.
    fn log(&mut self, cwd: &Path) -> LogSettings {
        LogSettings {
            log_dir: self.get("LOG_DIR", |s| Ok(cwd.join(s))).unwrap_or_default(),
            log_level: self
                .get("LOG_LEVEL", level)
                .unwrap_or(log::LevelFilter::Info),
            log_max_bytes: self.get("LOG_MAX_BYTES", log_max_bytes).unwrap_or_default(),
            log_backups: self.get("LOG_BACKUPS", count_at_least_one).unwrap_or(1),
            log_retention_days: self.get("LOG_RETENTION_DAYS", days).unwrap_or_default(),
            history_days: self.get("HISTORY_DAYS", days).unwrap_or_default(),
        }
    }

    /// Alert channels and what an alert says; the SMTP rules that need several settings at once.
    fn alert(&mut self, cwd: &Path, hostname: &str) -> AlertSettings {
        let service_name = self.get("SERVICE_NAME", plain_text).unwrap_or_default();
        let smtp_server = self.get("SMTP_SERVER", smtp_host);
        let smtp_port = self.get("SMTP_PORT", port).unwrap_or(587);
        let smtp_security = self
            .get("SMTP_SECURITY", security)
            .unwrap_or(if smtp_port == 465 {
                SmtpSecurity::Tls
            } else {
                SmtpSecurity::StartTls
            });
        let smtp_username = self.get("SMTP_USERNAME", |s| Ok(s.to_string()));
        let smtp_password = self.get("SMTP_PASSWORD", |s| Ok(s.to_string()));
        self.problems.extend(smtp_auth_problems(
            smtp_server.is_some(),
            smtp_security,
            smtp_username.is_some(),
            smtp_password.is_some(),
        ));
        let smtp_ca_file = self.get("SMTP_CA_FILE", |s| Ok(cwd.join(s)));
        let smtp_timeout = self
            .get("SMTP_TIMEOUT", timeout_above_zero)
            .unwrap_or_default();
        let alert_email = self.get("ALERT_EMAIL", addresses).unwrap_or_default();
        let alert_from = self.get("ALERT_FROM", |s| address(s).map(str::to_string));
        let alert_from = alert_from
            .or_else(|| {
                smtp_username
                    .as_deref()
                    .filter(|user| address(user).is_ok())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| format!("server-monitor@{hostname}"));
        let alert_webhook_url = self.get("ALERT_WEBHOOK_URL", http_url);
        AlertSettings {
            service_name,
            smtp_server,
            smtp_port,
            smtp_security,
            smtp_username,
            smtp_password,
            smtp_ca_file,
            smtp_timeout,
            alert_email,
            alert_from,
            alert_webhook_url,
            alert_reminder: self
                .get("ALERT_REMINDER", duration)
                .filter(|d| !d.is_zero()),
            flap_restarts: self.get("FLAP_RESTARTS", count).unwrap_or_default(),
            flap_window: self
                .get("FLAP_WINDOW", duration_above_zero)
                .unwrap_or_default(),
        }
    }

    /// The dead man's switch.
    fn heartbeat(&mut self) -> HeartbeatSettings {
        HeartbeatSettings {
            heartbeat_url: self.get("HEARTBEAT_URL", http_url),
            heartbeat_interval: self
                .get("HEARTBEAT_INTERVAL", duration_above_zero)
                .unwrap_or_default(),
        }
    }

    /// The status page; a non-loopback address needs a token.
    fn status(&mut self) -> StatusSettings {
        let status_listen = self.get("STATUS_LISTEN", listen_address);
        let status_token = self.get("STATUS_TOKEN", token);
        if let (Some(addr), None) = (status_listen, &status_token) {
            if !addr.ip().is_loopback() {
                self.problems.push(format!(
                    "STATUS_LISTEN={addr} is not a loopback address: set STATUS_TOKEN too, or \
                     listen on 127.0.0.1 and reach the page through an SSH tunnel"
                ));
            }
        }
        StatusSettings {
            status_listen,
            status_token,
        }
    }
}

/// The SMTP rules that take several settings at once. Pure.
fn smtp_auth_problems(
    has_server: bool,
    security: SmtpSecurity,
    has_username: bool,
    has_password: bool,
) -> Vec<String> {
    let mut problems = Vec::new();
    if security == SmtpSecurity::None && has_password {
        problems.push(
            "SMTP_SECURITY=none is refused while SMTP_PASSWORD is set: the password would \
             cross the network in clear text; use `starttls` or `tls`"
                .to_string(),
        );
    }
    // Only when email is configured at all: a half-filled template in a
    // shared .env should not stop a monitor that does not send mail.
    match (has_server, has_username, has_password) {
        (true, true, false) => problems
            .push("SMTP_USERNAME is set but SMTP_PASSWORD is not: AUTH needs both".to_string()),
        (true, false, true) => problems
            .push("SMTP_PASSWORD is set but SMTP_USERNAME is not: AUTH needs both".to_string()),
        _ => {}
    }
    problems
}

// ---- value checks: each returns the value or what is allowed ----

/// The longest duration a setting may have (SPEC: 10 years of 365 days).
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 86_400);
/// The longest HEALTH_TIMEOUT and SMTP_TIMEOUT: one hour.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
/// The most FAILURE_THRESHOLD, MAX_RESTART_ATTEMPTS and LOG_BACKUPS may be.
pub const MAX_COUNT: u32 = 1000;
/// The largest LOG_MAX_BYTES: 1 GiB.
pub const MAX_LOG_BYTES: u64 = 1 << 30;
/// The largest LOG_RETENTION_DAYS: 100 years.
pub const MAX_RETENTION_DAYS: u32 = 36_500;
/// The largest WARN_MEMORY_PERCENT and WARN_CPU_PERCENT.
pub const MAX_WARN_PERCENT: f64 = 1000.0;
/// The largest WARN_DB_RESPONSE_MS: one hour.
pub const MAX_WARN_MS: f64 = 3_600_000.0;

/// `now + d`, never a panic (see [`crate::deadline`]).
pub use crate::deadline::instant_after;

/// A duration from 0 up to `max`; `max_text` says the bound as a user reads it.
fn bounded_duration(text: &str, max: Duration, max_text: &str) -> Result<Duration, String> {
    let too_large = || format!("expected a duration of at most {max_text}");
    match parse_duration(text) {
        Ok(d) if d > max => Err(too_large()),
        Ok(d) => Ok(d),
        Err(e) if e.0.starts_with("too large") => Err(too_large()),
        Err(e) => Err(e.0),
    }
}

fn duration(text: &str) -> Result<Duration, String> {
    bounded_duration(text, MAX_DURATION, "10 years (315360000 s)")
}

fn above_zero(d: Duration) -> Result<Duration, String> {
    match d {
        d if d.is_zero() => {
            Err("expected a duration above zero, like `30`, `0.5` or `500ms`".to_string())
        }
        d => Ok(d),
    }
}

fn duration_above_zero(text: &str) -> Result<Duration, String> {
    above_zero(duration(text)?)
}

/// SMTP_TIMEOUT: above zero, at most an hour.
fn timeout_above_zero(text: &str) -> Result<Duration, String> {
    above_zero(bounded_duration(text, MAX_TIMEOUT, "1 hour (3600 s)")?)
}

/// HEALTH_TIMEOUT: whole seconds as SPEC has them, so `0.5` is refused, not rounded; at most an hour.
fn whole_seconds_at_least_one(text: &str) -> Result<Duration, String> {
    let expected = "expected whole seconds, at least 1 and at most 1 hour (3600), like `5` or `2s`";
    match parse_duration(text) {
        Ok(d) if d.as_secs() >= 1 && d.subsec_nanos() == 0 && d <= MAX_TIMEOUT => Ok(d),
        _ => Err(expected.to_string()),
    }
}

fn unsigned<T: std::str::FromStr>(text: &str) -> Option<T> {
    // Digits only: `+3`, `3.0` and ` 3` are not whole numbers as a user writes them.
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A whole number in `min..=max` (digits only; a number too large for any
/// integer type is simply out of range).
fn whole_in(text: &str, min: u64, max: u64, what: &str) -> Result<u64, String> {
    let out_of_range = || format!("expected a whole number{what} from {min} to {max}");
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    if !digits {
        return Err(out_of_range());
    }
    match text.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(out_of_range()),
    }
}

fn count(text: &str) -> Result<u32, String> {
    whole_in(text, 0, u64::from(MAX_COUNT), "").map(|n| n as u32)
}

fn count_at_least_one(text: &str) -> Result<u32, String> {
    whole_in(text, 1, u64::from(MAX_COUNT), "").map(|n| n as u32)
}

fn days(text: &str) -> Result<u32, String> {
    whole_in(text, 0, u64::from(MAX_RETENTION_DAYS), " of days").map(|n| n as u32)
}

fn log_max_bytes(text: &str) -> Result<u64, String> {
    whole_in(text, 4096, MAX_LOG_BYTES, " of bytes")
}

fn port(text: &str) -> Result<u16, String> {
    unsigned(text)
        .filter(|&n| n >= 1)
        .ok_or_else(|| "expected a port number from 1 to 65535".to_string())
}

/// A number from 0 to `max`, like `80` or `12.5`.
fn number_up_to(text: &str, max: f64) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(n) if n.is_finite() && (0.0..=max).contains(&n) => Ok(n),
        _ => Err(format!(
            "expected a number from 0 to {max}, like `80` or `12.5`"
        )),
    }
}

fn percent(text: &str) -> Result<f64, String> {
    number_up_to(text, MAX_WARN_PERCENT)
}

fn milliseconds(text: &str) -> Result<f64, String> {
    number_up_to(text, MAX_WARN_MS)
}

fn boolean(text: &str) -> Result<bool, String> {
    parse_bool(text).map_err(|e| e.0)
}

fn level(text: &str) -> Result<log::LevelFilter, String> {
    match text.to_ascii_lowercase().as_str() {
        "debug" => Ok(log::LevelFilter::Debug),
        "info" => Ok(log::LevelFilter::Info),
        "warning" | "warn" => Ok(log::LevelFilter::Warn),
        "error" => Ok(log::LevelFilter::Error),
        _ => Err("expected debug, info, warning or error".to_string()),
    }
}

fn security(text: &str) -> Result<SmtpSecurity, String> {
    match text.to_ascii_lowercase().as_str() {
        "starttls" => Ok(SmtpSecurity::StartTls),
        "tls" => Ok(SmtpSecurity::Tls),
        "none" => Ok(SmtpSecurity::None),
        _ => Err("expected starttls, tls or none".to_string()),
    }
}

fn command(text: &str) -> Result<Vec<String>, String> {
    let words = split_words(text).map_err(|e| e.0)?;
    match words.first() {
        Some(program) if program.is_empty() => Err("the program name is empty".to_string()),
        _ => Ok(words),
    }
}

fn statuses(text: &str) -> Result<Vec<String>, String> {
    let list: Vec<String> = parse_list(text)
        .into_iter()
        .map(|s| s.to_lowercase())
        .collect();
    if list.is_empty() {
        return Err("expected comma-separated statuses like `healthy,ok`".to_string());
    }
    Ok(list)
}

fn has_control(text: &str) -> bool {
    text.chars().any(char::is_control)
}

/// SERVICE_NAME goes into a mail header: no line breaks or other controls.
fn plain_text(text: &str) -> Result<String, String> {
    if has_control(text) {
        return Err("expected text without line breaks or control characters".to_string());
    }
    Ok(text.to_string())
}

fn smtp_host(text: &str) -> Result<String, String> {
    if text.contains("://") || text.contains('/') || has_control(text) || text.contains(' ') {
        return Err(
            "expected a host name like `smtp.gmail.com` (the port goes in SMTP_PORT)".to_string(),
        );
    }
    Ok(text.to_string())
}

/// A bare address `local@domain`. Display names (`Name <a@b>`) are not
/// accepted: the alert module writes the header.
fn address(text: &str) -> Result<&str, String> {
    let fine = match text.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !text
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || "<>,;\"()[]\\".contains(c))
        }
        None => false,
    };
    if fine {
        Ok(text)
    } else {
        Err("expected an email address like `ops@example.com`".to_string())
    }
}

fn addresses(text: &str) -> Result<Vec<String>, String> {
    let list = parse_list(text);
    if list.is_empty() || list.iter().any(|a| address(a).is_err()) {
        return Err("expected comma-separated email addresses like `ops@example.com`".to_string());
    }
    Ok(list)
}

/// Splits `scheme://authority/rest` into (scheme with `://`, authority, rest).
fn split_url(url: &str) -> Option<(&str, &str, &str)> {
    let after = url.find("://")? + 3;
    let authority_end = url[after..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| after + i);
    Some((
        &url[..after],
        &url[after..authority_end],
        &url[authority_end..],
    ))
}

/// HEALTH_CA_FILE: a PEM file with at least one certificate, read now, so
/// that a typo is a refusal to start rather than every https check failing
/// (and a healthy server restarted).
fn ca_file(path: &Path) -> Result<PathBuf, String> {
    let expected = "expected a readable PEM file with at least one CA certificate";
    let pem = std::fs::read(path).map_err(|e| format!("{expected} ({e})"))?;
    if crate::tls::pem_certificates(&pem).is_empty() {
        return Err(format!("{expected} (no certificate in it)"));
    }
    Ok(path.to_path_buf())
}

/// An `http://` or `https://` URL (the scheme in any case, given back in
/// lower case) with a host: a name, an IPv4 address or a bracketed IPv6
/// literal, and an optional port. No `user:password@`: neither client sends
/// it, and the password would be shown wherever the URL is.
fn http_url(text: &str) -> Result<String, String> {
    let bad =
        || "expected an http:// or https:// URL with a host, like `http://127.0.0.1:8000/health`";
    let (scheme, authority, rest) = split_url(text).ok_or_else(|| bad().to_string())?;
    let scheme = scheme.to_ascii_lowercase();
    let scheme_ok = matches!(scheme.as_str(), "http://" | "https://");
    if !scheme_ok || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad().to_string());
    }
    if authority.contains('@') {
        return Err(
            "expected a URL without `user:password@` (not supported, and the password \
             would show wherever the URL is shown): remove it"
                .to_string(),
        );
    }
    if crate::http::Url::parse(text).is_err() {
        return Err(bad().to_string());
    }
    Ok(format!("{scheme}{authority}{rest}"))
}

/// MEMORY_LIMIT: `536870912`, `512MB`, `512MiB`, `2G`, `1.5GiB`, or `80%`.
/// Units are binary (K, KB, KiB = 1024), as in monit and PM2; at least 1 MiB.
fn memory_limit(text: &str) -> Result<MemoryLimit, String> {
    let expected = "expected a size like `512MB`, `2GiB` (1 MB = 1 MiB, at least 1 MiB) \
                    or a percentage of the host's memory above 0 and at most 100, like `80%`";
    if let Some(number) = text.strip_suffix('%') {
        return match number.trim().parse::<f64>() {
            Ok(p) if p.is_finite() && p > 0.0 && p <= 100.0 => Ok(MemoryLimit::Percent(p)),
            _ => Err(expected.to_string()),
        };
    }
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = (&text[..split], text[split..].trim());
    let scale: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(expected.to_string()),
    };
    match number.parse::<f64>() {
        Ok(n)
            if n.is_finite()
                && n * scale as f64 >= (1u64 << 20) as f64
                && n * (scale as f64) < 1e18 =>
        {
            Ok(MemoryLimit::Bytes((n * scale as f64) as u64))
        }
        _ => Err(expected.to_string()),
    }
}

/// STATUS_LISTEN: `127.0.0.1:9100`, `[::1]:9100`, `localhost:9100`,
/// `0.0.0.0:9100`; a port from 1 to 65535.
fn listen_address(text: &str) -> Result<std::net::SocketAddr, String> {
    let expected = "expected HOST:PORT with an IP address (or `localhost`) and a port from 1 \
                    to 65535, like `127.0.0.1:9100` or `[::1]:9100`";
    let text = match text.strip_prefix("localhost:") {
        Some(port) => format!("127.0.0.1:{port}"),
        None => text.to_string(),
    };
    match text.parse::<std::net::SocketAddr>() {
        Ok(addr) if addr.port() != 0 => Ok(addr),
        _ => Err(expected.to_string()),
    }
}

/// STATUS_TOKEN: printable, no spaces (it travels in an HTTP header), at
/// least 16 characters (it guards a port that may be open to the network).
fn token(text: &str) -> Result<String, String> {
    if text.len() < 16 || !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(
            "expected at least 16 printable ASCII characters without spaces (for example \
             the output of `openssl rand -hex 16`)"
                .to_string(),
        );
    }
    Ok(text.to_string())
}

/// A URL whose path and query may be its secret (HEARTBEAT_URL: the
/// healthchecks.io UUID, Uptime Kuma's push token): only scheme and host show.
pub fn mask_secret_url(url: &str) -> String {
    mask_webhook_url(url)
}

/// `https://user:secret@host/` -> `https://user:********@host/`.
pub fn mask_url_password(url: &str) -> String {
    let Some((scheme, authority, rest)) = split_url(url) else {
        return url.to_string();
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split_once(':').map_or("", |(u, _)| u);
            format!("{scheme}{user}:{MASK}@{host}{rest}")
        }
        _ => url.to_string(),
    }
}

/// A webhook URL's path and query are usually its secret (Slack, Discord,
/// Teams): show only where it goes. `https://hooks.slack.com/********`.
pub fn mask_webhook_url(url: &str) -> String {
    let masked = mask_url_password(url);
    match split_url(&masked) {
        Some((scheme, authority, rest)) if !rest.is_empty() && rest != "/" => {
            format!("{scheme}{authority}/{MASK}")
        }
        Some(_) => masked,
        // Not a URL at all: still hide whatever might follow a host.
        None => match masked.split_once('/') {
            Some((head, _)) => format!("{head}/{MASK}"),
            None => masked,
        },
    }
}

/// Quotes a value for an env file when it would not survive unquoted.
///
/// A value with `${` goes in single quotes (the only quotes that are not
/// expanded; `\\` and `\'` are their escapes); NOTE: a line break there is
/// literal, so a `\r` right before a `\n` in such a value would be read back
/// as a plain line end. Any other value that needs quotes goes in double
/// quotes with `\\`, `\"` and `\n` escaped.
fn env_quote(value: &str) -> String {
    if value.contains("${") {
        return format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"));
    }
    let needs_quotes = value != value.trim()
        || value.starts_with(['\'', '"'])
        || value.contains(" #")
        || value.contains("\t#")
        || value.contains(['\n', '\r']);
    if !needs_quotes {
        return value.to_string();
    }
    let escaped = value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    format!("\"{escaped}\"")
}

#[cfg(test)]
mod tests;
