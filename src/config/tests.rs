//! Tests of `resolve` and `render`: precedence, sources, every validation
//! rule, masking. (The parsers' tables are in `parse.rs`.)

use super::*;

const CWD: &str = "/srv/app";

/// Inputs to `resolve`, built up per test.
#[derive(Default)]
struct Input {
    flags: Vec<(String, String)>,
    env: HashMap<String, String>,
    file: Option<String>,
    argv: Option<Vec<String>>,
}

impl Input {
    fn flag(mut self, name: &str, value: &str) -> Self {
        self.flags.push((name.to_string(), value.to_string()));
        self
    }
    fn env(mut self, name: &str, value: &str) -> Self {
        self.env.insert(name.to_string(), value.to_string());
        self
    }
    fn file(mut self, text: &str) -> Self {
        self.file = Some(text.to_string());
        self
    }
    fn argv(mut self, words: &[&str]) -> Self {
        self.argv = Some(words.iter().map(|w| w.to_string()).collect());
        self
    }
    fn resolve(&self) -> Result<Config, ConfigError> {
        resolve(
            &self.flags,
            &self.env,
            self.file
                .as_deref()
                .map(|t| (Path::new("/srv/app/.env"), t)),
            self.argv.clone(),
            "box1",
            Path::new(CWD),
        )
    }
    fn ok(&self) -> Config {
        self.resolve().unwrap_or_else(|e| panic!("{e}"))
    }
    fn problems(&self) -> Vec<String> {
        match self.resolve() {
            Ok(c) => panic!("resolved: {c:?}"),
            Err(e) => e.problems,
        }
    }
}

fn one(name: &str, value: &str) -> Input {
    Input::default().env(name, value)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn defaults_match_spec() {
    let c = Input::default().ok();
    assert_eq!(c.health.health_url, "http://127.0.0.1:8000/health");
    assert_eq!(c.health.health_timeout, secs(5));
    assert_eq!(
        c.health.healthy_statuses,
        strings(&["healthy", "ok", "pass", "up"])
    );
    assert_eq!(c.health.warn_memory_percent, 80.0);
    assert_eq!(c.health.warn_cpu_percent, 50.0);
    assert_eq!(c.health.warn_db_response_ms, 100.0);
    assert_eq!(c.server.server_command, None);
    assert_eq!(c.server.server_workdir, None);
    assert_eq!(c.server.stop_command, None);
    assert_eq!(c.server.stop_timeout, secs(2));
    assert_eq!(c.policy.startup_timeout, secs(10));
    assert!(!c.server.keep_server_on_exit);
    assert_eq!(c.policy.check_interval, secs(30));
    assert_eq!(c.policy.failure_threshold, 3);
    assert_eq!(c.policy.max_restart_attempts, 3);
    assert_eq!(c.policy.restart_cooldown, secs(60));
    assert_eq!(c.policy.startup_timeout, secs(10));
    assert_eq!(c.policy.retry_after_give_up, None);
    assert!(c.policy.restart_on_exit);
    assert_eq!(c.log.log_dir, PathBuf::from("/srv/app/logs"));
    assert_eq!(c.log.log_level, log::LevelFilter::Info);
    assert_eq!(c.log.log_max_bytes, 10_485_760);
    assert_eq!(c.log.log_backups, 5);
    assert_eq!(c.log.log_retention_days, 30);
    assert_eq!(c.alert.service_name, "Chatbot Server");
    assert_eq!(c.alert.smtp_server, None);
    assert_eq!(c.alert.smtp_port, 587);
    assert_eq!(c.alert.smtp_security, SmtpSecurity::StartTls);
    assert_eq!(c.alert.smtp_username, None);
    assert_eq!(c.alert.smtp_password, None);
    assert_eq!(c.alert.smtp_ca_file, None);
    assert_eq!(c.alert.smtp_timeout, secs(10));
    assert!(c.alert.alert_email.is_empty());
    assert_eq!(c.alert.alert_from, "server-monitor@box1");
    assert_eq!(c.alert.alert_webhook_url, None);
    assert_eq!(c.hostname, "box1");
    assert!(!c.email_enabled());
}

#[test]
fn precedence_flag_beats_env_beats_file_beats_default() {
    let file = "CHECK_INTERVAL=1\nFAILURE_THRESHOLD=11\nLOG_BACKUPS=21\n";
    let input = Input::default()
        .file(file)
        .env("CHECK_INTERVAL", "2")
        .env("FAILURE_THRESHOLD", "12")
        .flag("CHECK_INTERVAL", "3");
    let c = input.ok();
    assert_eq!(c.policy.check_interval, secs(3));
    assert_eq!(c.policy.failure_threshold, 12);
    assert_eq!(c.log.log_backups, 21);
    assert_eq!(c.policy.max_restart_attempts, 3);
}

#[test]
fn sources_are_recorded() {
    let c = Input::default()
        .file("LOG_BACKUPS=2\nCHECK_INTERVAL=1\n")
        .env("CHECK_INTERVAL", "2")
        .env("FAILURE_THRESHOLD", "4")
        .flag("CHECK_INTERVAL", "3")
        .argv(&["app"])
        .ok();
    let table = [
        ("CHECK_INTERVAL", Source::Flag),
        ("FAILURE_THRESHOLD", Source::Environment),
        (
            "LOG_BACKUPS",
            Source::EnvFile(PathBuf::from("/srv/app/.env")),
        ),
        ("MAX_RESTART_ATTEMPTS", Source::Default),
        ("ALERT_FROM", Source::Default),
        ("SERVER_COMMAND", Source::ArgsAfterDashDash),
    ];
    for (name, want) in table {
        assert_eq!(c.source(name), Some(&want), "{name}");
    }
    for info in SETTINGS {
        assert!(c.source(info.name).is_some(), "{}", info.name);
    }
    assert_eq!(c.source("NOPE"), None);
}

#[test]
fn later_flag_and_later_file_line_win() {
    let c = Input::default()
        .file("LOG_BACKUPS=2\nLOG_BACKUPS=3\n")
        .flag("CHECK_INTERVAL", "1")
        .flag("CHECK_INTERVAL", "4")
        .ok();
    assert_eq!(c.log.log_backups, 3);
    assert_eq!(c.policy.check_interval, secs(4));
}

#[test]
fn blank_value_means_the_default() {
    let c = Input::default()
        .file("SMTP_SERVER=smtp.example.com\nCHECK_INTERVAL=7\n")
        .env("SMTP_SERVER", "")
        .env("CHECK_INTERVAL", "  ")
        .flag("SERVER_COMMAND", "")
        .ok();
    assert_eq!(c.alert.smtp_server, None);
    assert_eq!(c.policy.check_interval, secs(30));
    assert_eq!(c.server.server_command, None);
    assert_eq!(c.source("SMTP_SERVER"), Some(&Source::Environment));
}

#[test]
fn dash_dash_words_beat_server_command() {
    let c = Input::default()
        .flag("SERVER_COMMAND", "python old.py")
        .env("SERVER_COMMAND", "python env.py")
        .argv(&["python", "new app.py"])
        .ok();
    assert_eq!(
        c.server.server_command,
        Some(strings(&["python", "new app.py"]))
    );
    // No words after `--` is the same as not giving them.
    let c = Input::default()
        .env("SERVER_COMMAND", "python env.py")
        .argv(&[])
        .ok();
    assert_eq!(
        c.server.server_command,
        Some(strings(&["python", "env.py"]))
    );
    assert_eq!(c.source("SERVER_COMMAND"), Some(&Source::Environment));
}

#[test]
fn commands_are_split_like_a_shell() {
    let c = Input::default()
        .env("SERVER_COMMAND", "python -c 'print(1)' \"a b\"")
        .env("STOP_COMMAND", "systemctl stop app")
        .ok();
    assert_eq!(
        c.server.server_command,
        Some(strings(&["python", "-c", "print(1)", "a b"]))
    );
    assert_eq!(
        c.server.stop_command,
        Some(strings(&["systemctl", "stop", "app"]))
    );
    // A double-quoted env-file value is unescaped first, then split.
    let c = Input::default()
        .file("SERVER_COMMAND=\"sh -c \\\"echo hi\\\"\"\n")
        .ok();
    assert_eq!(
        c.server.server_command,
        Some(strings(&["sh", "-c", "echo hi"]))
    );
}

#[test]
fn stop_command_without_server_command_is_fine() {
    let c = one("STOP_COMMAND", "kill-app").ok();
    assert_eq!(c.server.server_command, None);
    assert_eq!(c.server.stop_command, Some(strings(&["kill-app"])));
}

#[test]
fn unparsable_command_names_setting_and_problem() {
    assert_eq!(
        one("SERVER_COMMAND", "python 'app.py").problems(),
        ["invalid value `python 'app.py` for SERVER_COMMAND: unclosed single quote"]
    );
    assert_eq!(
        one("STOP_COMMAND", "stop \\").problems(),
        ["invalid value `stop \\` for STOP_COMMAND: trailing backslash"]
    );
    assert_eq!(
        one("SERVER_COMMAND", "'' app").problems(),
        ["invalid value `'' app` for SERVER_COMMAND: the program name is empty"]
    );
}

#[test]
fn paths_are_made_absolute_against_cwd() {
    let c = Input::default()
        .env("LOG_DIR", "var/log")
        .env("SERVER_WORKDIR", "srv")
        .env("SMTP_CA_FILE", "/etc/ca.pem")
        .ok();
    assert_eq!(c.log.log_dir, PathBuf::from("/srv/app/var/log"));
    assert_eq!(c.server.server_workdir, Some(PathBuf::from("/srv/app/srv")));
    assert_eq!(c.alert.smtp_ca_file, Some(PathBuf::from("/etc/ca.pem")));
}

/// For each setting, values that pass with what they become (via a probe),
/// and values that fail.
#[test]
fn durations_are_checked_per_setting() {
    // (setting, good values, bad values)
    let table: &[(&str, &[&str], &[&str])] = &[
        (
            "CHECK_INTERVAL",
            &["30", "0.5", "500ms", "2m"],
            &["0", "0ms", "-1", "5x", "inf"],
        ),
        ("STARTUP_TIMEOUT", &["10", "0.1"], &["0", "-5", "NaN"]),
        ("SMTP_TIMEOUT", &["10", "1h"], &["0", "0.0", "x"]),
        (
            "HEALTH_TIMEOUT",
            &["1", "5", "2s", "2000ms", "1m"],
            &["0", "0.5", "1.5", "1500ms", "-1", "x"],
        ),
        ("STOP_TIMEOUT", &["0", "2", "0.25"], &["-1", "soon"]),
        ("RESTART_COOLDOWN", &["0", "60", "1.5m"], &["-60", ""]),
        ("RETRY_AFTER_GIVE_UP", &["0", "1h"], &["-1", "never"]),
    ];
    check_table(table);
}

#[test]
fn numbers_are_checked_per_setting() {
    let table: &[(&str, &[&str], &[&str])] = &[
        (
            "FAILURE_THRESHOLD",
            &["1", "3", "100"],
            &["0", "-1", "1.5", "+3", "x", "4294967296"],
        ),
        ("MAX_RESTART_ATTEMPTS", &["1", "10"], &["0", "two"]),
        ("LOG_BACKUPS", &["1", "5"], &["0", "-5"]),
        (
            "LOG_MAX_BYTES",
            &["4096", "10485760"],
            &["4095", "0", "10MB", "1e6"],
        ),
        ("LOG_RETENTION_DAYS", &["0", "30"], &["-1", "30d", "1.5"]),
        (
            "SMTP_PORT",
            &["1", "25", "465", "65535"],
            &["0", "65536", "-1", "smtp"],
        ),
        (
            "WARN_MEMORY_PERCENT",
            &["0", "80", "12.5", "150"],
            &["-1", "NaN", "inf", "x"],
        ),
        ("WARN_CPU_PERCENT", &["0", "50"], &["-0.1", "fifty"]),
        (
            "WARN_DB_RESPONSE_MS",
            &["0", "100", "2.5"],
            &["-100", "100ms"],
        ),
    ];
    check_table(table);
}

#[test]
fn other_values_are_checked_per_setting() {
    let table: &[(&str, &[&str], &[&str])] = &[
        (
            "RESTART_ON_EXIT",
            &["true", "FALSE", "yes", "no", "on", "off", "1", "0"],
            &["maybe", "2"],
        ),
        ("KEEP_SERVER_ON_EXIT", &["Yes", "0"], &["y"]),
        (
            "LOG_LEVEL",
            &["debug", "INFO", "warning", "warn", "Error"],
            &["trace", "critical", "verbose"],
        ),
        (
            "HEALTH_URL",
            &[
                "http://127.0.0.1:8000/health",
                "https://example.com",
                "HTTP://host:1/x?y#z",
                "http://[::1]:8080/health",
                // Issue 8 item 6: userinfo is now refused; see
                // userinfo_in_a_url_is_refused_with_the_password_masked.
            ],
            &[
                "http://[::1/health",
                "http://[nope]:80/",
                "127.0.0.1:8000/health",
                "ftp://host/x",
                "http://",
                "http:///health",
                "http://host:0/",
                "http://host:99999/",
                "http://host:/",
                "http://host:port/",
                "http://ho st/",
                "http://[::1/",
            ],
        ),
        (
            "ALERT_WEBHOOK_URL",
            &["https://hooks.example.com/T/B/X"],
            &["hooks.example.com/x", "mailto:a@b"],
        ),
        (
            "SMTP_SECURITY",
            &["starttls", "TLS", "none"],
            &["ssl", "true"],
        ),
        (
            "SMTP_SERVER",
            &["smtp.gmail.com", "10.0.0.1", "::1"],
            &["smtp://smtp.gmail.com", "smtp.gmail.com/x", "a b"],
        ),
        (
            "ALERT_EMAIL",
            &["a@x.org", "a@x.org, b@y.org", "a@x.org,"],
            &["nobody", "a@x.org, b", "Name <a@x.org>", ","],
        ),
        (
            "ALERT_FROM",
            &["mon@x.org"],
            &["monitor", "Mon <mon@x.org>", "@x.org", "a@"],
        ),
        ("HEALTHY_STATUSES", &["ok", "OK, Up"], &[",", " , "]),
        ("SERVICE_NAME", &["My App", "Café ☕"], &["a\nBcc: x@y.org"]),
    ];
    check_table(table);
}

fn check_table(table: &[(&str, &[&str], &[&str])]) {
    for (name, good, bad) in table {
        for value in *good {
            if let Err(e) = one(name, value).resolve() {
                panic!("{name}={value:?} should pass: {e}");
            }
        }
        for value in *bad {
            if value.trim().is_empty() {
                // Blank means the default; fine by definition.
                assert!(one(name, value).resolve().is_ok(), "{name}={value:?}");
                continue;
            }
            let problems = one(name, value).problems();
            assert_eq!(problems.len(), 1, "{name}={value:?}: {problems:?}");
            let p = &problems[0];
            let shown = match *name {
                "ALERT_WEBHOOK_URL" => mask_webhook_url(value),
                _ => value.to_string(),
            };
            assert!(
                p.starts_with(&format!("invalid value `{shown}` for {name}: expected ")),
                "{name}={value:?}: {p}"
            );
        }
    }
}

#[test]
fn parsed_values_are_what_was_given() {
    let c = Input::default()
        .env("HEALTH_TIMEOUT", "2000ms")
        .env("CHECK_INTERVAL", "500ms")
        .env("RETRY_AFTER_GIVE_UP", "2m")
        .env("RESTART_ON_EXIT", "off")
        .env("KEEP_SERVER_ON_EXIT", "YES")
        .env("LOG_LEVEL", "WARN")
        .env("HEALTHY_STATUSES", " OK , Up,,")
        .env("ALERT_EMAIL", "a@x.org, b@y.org")
        .env("WARN_CPU_PERCENT", "12.5")
        .ok();
    assert_eq!(c.health.health_timeout, secs(2));
    assert_eq!(c.policy.check_interval, Duration::from_millis(500));
    assert_eq!(c.policy.retry_after_give_up, Some(secs(120)));
    assert!(!c.policy.restart_on_exit);
    assert!(c.server.keep_server_on_exit);
    assert_eq!(c.log.log_level, log::LevelFilter::Warn);
    assert_eq!(c.health.healthy_statuses, strings(&["ok", "up"]));
    assert_eq!(c.alert.alert_email, strings(&["a@x.org", "b@y.org"]));
    assert_eq!(c.health.warn_cpu_percent, 12.5);
}

#[test]
fn message_names_setting_value_and_what_is_allowed() {
    assert_eq!(
        one("CHECK_INTERVAL", "5x").problems(),
        ["invalid value `5x` for CHECK_INTERVAL: expected seconds like `30`, `0.5` or `500ms`"]
    );
    assert_eq!(
        one("HEALTH_TIMEOUT", "0.5").problems(),
        // Issue 8 item 11: the message says the upper bound too.
        ["invalid value `0.5` for HEALTH_TIMEOUT: expected whole seconds, at least 1 and at most 1 hour (3600), like `5` or `2s`"]
    );
    assert_eq!(
        one("SMTP_PORT", "70000").problems(),
        ["invalid value `70000` for SMTP_PORT: expected a port number from 1 to 65535"]
    );
}

#[test]
fn all_problems_are_reported_at_once() {
    let input = Input::default()
        // Issue 8: a bad line is an error only when it is a setting's line.
        .file("LOG_BACKUPS=0\nSMTP_SERVER smtp.x.org\n")
        .env("CHECK_INTERVAL", "5x")
        .env("SMTP_PORT", "0")
        .flag("LOG_LEVEL", "loud")
        .flag("HEALTH_URL", "localhost:8000");
    let problems = input.problems();
    assert_eq!(
        problems,
        [
            "env file /srv/app/.env: line 2: expected KEY=value",
            "invalid value `localhost:8000` for HEALTH_URL: expected an http:// or https:// URL with a host, like `http://127.0.0.1:8000/health`",
            "invalid value `5x` for CHECK_INTERVAL: expected seconds like `30`, `0.5` or `500ms`",
            "invalid value `loud` for LOG_LEVEL: expected debug, info, warning or error",
            // Issue 8: the good lines of a file with a bad line count too.
            "invalid value `0` for LOG_BACKUPS: expected a whole number from 1 to 1000",
            "invalid value `0` for SMTP_PORT: expected a port number from 1 to 65535",
        ]
    );
    let shown = input.resolve().unwrap_err().to_string();
    assert_eq!(shown.lines().count(), 6);
    assert!(!shown.ends_with('\n'));
}

#[test]
fn unknown_keys_are_ignored_unknown_flags_are_not() {
    let c = Input::default()
        .file("DATABASE_URL=postgres://x\nOPENAI_API_KEY=sk\n")
        .env("PATH", "/bin")
        .ok();
    assert_eq!(c.policy.check_interval, secs(30));
    assert_eq!(
        Input::default().flag("NOPE", "1").problems(),
        ["unknown setting `NOPE`"]
    );
}

#[test]
fn smtp_security_defaults_by_port() {
    let table = [
        (None, None, SmtpSecurity::StartTls),
        (Some("465"), None, SmtpSecurity::Tls),
        (Some("25"), None, SmtpSecurity::StartTls),
        (Some("465"), Some("starttls"), SmtpSecurity::StartTls),
        (Some("587"), Some("tls"), SmtpSecurity::Tls),
        (Some("25"), Some("none"), SmtpSecurity::None),
    ];
    for (port, security, want) in table {
        let mut input = Input::default();
        if let Some(port) = port {
            input = input.env("SMTP_PORT", port);
        }
        if let Some(security) = security {
            input = input.env("SMTP_SECURITY", security);
        }
        assert_eq!(
            input.ok().alert.smtp_security,
            want,
            "{port:?} {security:?}"
        );
    }
}

#[test]
fn smtp_security_none_with_password_is_refused() {
    let problems = Input::default()
        .env("SMTP_SECURITY", "none")
        .env("SMTP_USERNAME", "me@x.org")
        .env("SMTP_PASSWORD", "hunter2")
        .problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].starts_with("SMTP_SECURITY=none is refused while SMTP_PASSWORD is set"));
    assert!(!problems[0].contains("hunter2"));
    // Without a password, `none` is allowed (a relay on localhost).
    assert!(one("SMTP_SECURITY", "none").resolve().is_ok());
}

#[test]
fn smtp_username_and_password_go_together() {
    let with_server = |name: &str, value: &str| one("SMTP_SERVER", "smtp.x.org").env(name, value);
    assert_eq!(
        with_server("SMTP_PASSWORD", "hunter2").problems(),
        ["SMTP_PASSWORD is set but SMTP_USERNAME is not: AUTH needs both"]
    );
    assert_eq!(
        with_server("SMTP_USERNAME", "me").problems(),
        ["SMTP_USERNAME is set but SMTP_PASSWORD is not: AUTH needs both"]
    );
    // Without SMTP_SERVER no mail is sent, so a half-filled template is fine.
    assert!(one("SMTP_USERNAME", "me").resolve().is_ok());
}

#[test]
fn no_secret_in_any_message() {
    let problems = Input::default()
        .env("SMTP_SERVER", "smtp.x.org")
        .env("SMTP_SECURITY", "none")
        .env("SMTP_PASSWORD", "hunter2")
        .env("HEALTH_URL", "ftp://user:hunter2@host/")
        .env(
            "ALERT_WEBHOOK_URL",
            "hooks.slack.com/services/T0/B0/hunter2",
        )
        .problems();
    assert_eq!(problems.len(), 4, "{problems:?}");
    for p in &problems {
        assert!(!p.contains("hunter2"), "{p}");
    }
    assert!(problems
        .iter()
        .any(|p| p.contains("ftp://user:********@host/")));
    assert!(problems
        .iter()
        .any(|p| p.contains("`hooks.slack.com/********`")));
}

#[test]
fn alert_from_falls_back_to_username_then_hostname() {
    let with_user = |user: &str| {
        Input::default()
            .env("SMTP_USERNAME", user)
            .env("SMTP_PASSWORD", "pw")
    };
    assert_eq!(
        with_user("me@gmail.com").ok().alert.alert_from,
        "me@gmail.com"
    );
    // A user name that is not an address cannot be a sender.
    assert_eq!(
        with_user("apikey").ok().alert.alert_from,
        "server-monitor@box1"
    );
    assert_eq!(
        with_user("me@gmail.com")
            .env("ALERT_FROM", "mon@x.org")
            .ok()
            .alert
            .alert_from,
        "mon@x.org"
    );
    let c = resolve(&[], &HashMap::new(), None, None, " \n", Path::new("/")).unwrap();
    assert_eq!(c.alert.alert_from, "server-monitor@localhost");
    assert_eq!(c.hostname, "localhost");
}

#[test]
fn email_enabled_needs_server_and_recipients() {
    let table = [
        (None, None, false),
        (Some("smtp.x.org"), None, false),
        (None, Some("a@x.org"), false),
        (Some("smtp.x.org"), Some("a@x.org"), true),
    ];
    for (server, email, want) in table {
        let mut input = Input::default();
        if let Some(server) = server {
            input = input.env("SMTP_SERVER", server);
        }
        if let Some(email) = email {
            input = input.env("ALERT_EMAIL", email);
        }
        assert_eq!(input.ok().email_enabled(), want, "{server:?} {email:?}");
    }
}

#[test]
fn env_file_problems_name_path_and_line() {
    assert_eq!(
        // Issue 8: a bad line is an error only when it is a setting's line.
        Input::default()
            .file("A=1\n\nCHECK_INTERVAL 30\n")
            .problems(),
        ["env file /srv/app/.env: line 3: expected KEY=value"]
    );
}

#[test]
fn render_lists_every_setting_with_its_source() {
    let c = Input::default()
        .file("LOG_BACKUPS=2\n")
        .env("SERVICE_NAME", "My App")
        .flag("CHECK_INTERVAL", "500ms")
        .argv(&["python", "my app.py"])
        .ok();
    let text = c.render();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), SETTINGS.len());
    for (line, info) in lines.iter().zip(SETTINGS) {
        assert!(line.starts_with(&format!("{}=", info.name)), "{line}");
    }
    let find = |prefix: &str| {
        *lines
            .iter()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in\n{text}"))
    };
    assert!(find("CHECK_INTERVAL=0.5 ").ends_with("# flag"));
    assert!(find("SERVICE_NAME=My App ").ends_with("# environment"));
    assert!(find("LOG_BACKUPS=2 ").ends_with("# env file /srv/app/.env"));
    assert!(find("SERVER_COMMAND=python 'my app.py' ").ends_with("# after --"));
    assert!(find("HEALTH_URL=http://127.0.0.1:8000/health ").ends_with("# default"));
    assert!(find("LOG_DIR=/srv/app/logs ").ends_with("# default"));
    // Aligned: every `#` in the same column.
    let columns: Vec<usize> = lines.iter().map(|l| l.find("  # ").unwrap()).collect();
    assert!(columns.windows(2).all(|w| w[0] == w[1]), "{text}");
}

#[test]
fn render_values_cover_settings_in_order() {
    let c = Input::default().ok();
    let names: Vec<&str> = c.values().into_iter().map(|(n, _)| n).collect();
    let want: Vec<&str> = SETTINGS.iter().map(|s| s.name).collect();
    assert_eq!(names, want);
}

#[test]
fn userinfo_in_a_url_is_refused_with_the_password_masked() {
    let problems = Input::default()
        .env("HEALTH_URL", "https://admin:hunter2@app.example.com/health")
        .env("ALERT_WEBHOOK_URL", "https://u:hunter2@hooks.example.com/x")
        .problems();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].starts_with(
        "invalid value `https://admin:********@app.example.com/health` for HEALTH_URL: expected a URL without `user:password@`"
    ), "{problems:?}");
    assert!(
        problems[1].contains("for ALERT_WEBHOOK_URL: expected a URL without `user:password@`"),
        "{problems:?}"
    );
    assert!(!problems.concat().contains("hunter2"), "{problems:?}");
}

#[test]
fn url_scheme_in_any_case_is_kept_in_lower_case() {
    let c = Input::default()
        .env("HEALTH_URL", "HTTPS://App.example.com:8443/Health")
        .env("ALERT_WEBHOOK_URL", "Http://[::1]:9/hook")
        .ok();
    assert_eq!(c.health.health_url, "https://App.example.com:8443/Health");
    assert_eq!(
        c.alert.alert_webhook_url.as_deref(),
        Some("http://[::1]:9/hook")
    );
}

#[test]
fn health_ca_file_must_be_a_pem_file_with_a_certificate() {
    let dir = std::env::temp_dir().join(format!("sm-ca-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let good = dir.join("ca.pem");
    std::fs::write(&good, cert.cert.pem()).unwrap();
    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "not pem").unwrap();
    let c = Input::default()
        .env("HEALTH_CA_FILE", good.to_str().unwrap())
        .ok();
    assert_eq!(c.health.health_ca_file.as_deref(), Some(good.as_path()));
    assert_eq!(Input::default().ok().health.health_ca_file, None);
    for (path, why) in [
        (empty.clone(), "(no certificate in it)"),
        (dir.join("missing.pem"), "(No such file or directory"),
    ] {
        let problems = Input::default()
            .env("HEALTH_CA_FILE", path.to_str().unwrap())
            .problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with(&format!(
                "invalid value `{}` for HEALTH_CA_FILE: expected a readable PEM file",
                path.display()
            )) && problems[0].contains(why),
            "{problems:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn render_masks_secrets() {
    let c = Input::default()
        .env("SMTP_USERNAME", "me@x.org")
        .env("SMTP_PASSWORD", "hunter2")
        .env(
            "ALERT_WEBHOOK_URL",
            "https://hooks.slack.com/services/T0/B0/hunter2",
        )
        .ok();
    let text = c.render();
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("SMTP_PASSWORD=********"));
    assert!(text.contains("ALERT_WEBHOOK_URL=https://hooks.slack.com/********"));
    assert!(!format!("{c:?}").contains("hunter2"));
    // Unset secrets stay empty rather than looking set.
    assert!(Input::default().ok().render().contains("SMTP_PASSWORD= "));
}

#[test]
fn render_output_is_a_valid_env_file_that_resolves_the_same() {
    let c = Input::default()
        .env("SERVICE_NAME", " padded # name ")
        .env("SERVER_COMMAND", "sh -c 'echo \"hi\" # not a comment'")
        .env("STOP_COMMAND", "'my stop' now")
        .env("CHECK_INTERVAL", "1.25")
        .env("LOG_LEVEL", "warn")
        .env("ALERT_EMAIL", "a@x.org,b@x.org")
        .env("SMTP_PORT", "465")
        .ok();
    let again = Input::default().file(&c.render()).ok();
    assert_eq!(again.health, c.health);
    assert_eq!(again.server, c.server);
    assert_eq!(again.policy, c.policy);
    assert_eq!(again.log, c.log);
    assert_eq!(again.alert, c.alert);
}

#[test]
fn render_keeps_a_line_break_in_the_env_file_path_in_its_comment() {
    // Found by the env_file fuzzer (scripts/fuzz): the path went into the
    // `# env file PATH` comment as it was, and its second line became a
    // statement of its own.
    let path = Path::new("/tmp/a\nSERVICE_NAME=injected\r\n.env");
    let c = resolve(
        &[],
        &HashMap::new(),
        Some((path, "LOG_BACKUPS=2\n")),
        None,
        "box1",
        Path::new(CWD),
    )
    .unwrap();
    let text = c.render();
    assert_eq!(text.lines().count(), SETTINGS.len(), "{text}");
    assert!(text.contains(r"# env file /tmp/a\nSERVICE_NAME=injected\r\n.env"));
    let again = Input::default().file(&text).ok();
    assert_eq!(again.alert, c.alert);
    assert_eq!(again.log, c.log);
}

#[test]
fn mask_url_password_table() {
    let table = [
        ("http://host/x", "http://host/x"),
        ("http://user@host/x", "http://user@host/x"),
        ("http://user:pw@host/x", "http://user:********@host/x"),
        (
            "https://u:p@ss@host:1/x?q#f",
            "https://u:********@host:1/x?q#f",
        ),
        ("http://:pw@host", "http://:********@host"),
        ("not a url", "not a url"),
    ];
    for (url, want) in table {
        assert_eq!(mask_url_password(url), want, "{url}");
    }
}

#[test]
fn mask_webhook_url_table() {
    let table = [
        (
            "https://hooks.slack.com/services/T/B/X",
            "https://hooks.slack.com/********",
        ),
        ("https://host.example.com", "https://host.example.com"),
        ("https://host.example.com/", "https://host.example.com/"),
        (
            "http://127.0.0.1:9000/?token=x",
            "http://127.0.0.1:9000/********",
        ),
        ("https://u:pw@host/x", "https://u:********@host/********"),
        ("host/secret", "host/********"),
    ];
    for (url, want) in table {
        assert_eq!(mask_webhook_url(url), want, "{url}");
    }
}

#[test]
fn settings_table_is_consistent() {
    for (i, info) in SETTINGS.iter().enumerate() {
        assert!(is_valid_key(info.name), "{}", info.name);
        assert!(
            SETTINGS[..i].iter().all(|s| s.name != info.name),
            "{} twice",
            info.name
        );
    }
    let bools: Vec<&str> = SETTINGS
        .iter()
        .filter(|s| s.is_bool())
        .map(|s| s.name)
        .collect();
    assert_eq!(bools, ["RESTART_ON_EXIT", "KEEP_SERVER_ON_EXIT"]);
    assert_eq!(
        setting_info("CHECK_INTERVAL").unwrap().flag(),
        "--check-interval"
    );
}

#[test]
fn load_names_an_unreadable_env_file() {
    let path = PathBuf::from("/nonexistent/server-monitor-test.env");
    let e = load(&[], Some(&path), None).unwrap_err();
    assert!(
        e.problems[0].starts_with("cannot read env file /nonexistent/server-monitor-test.env: "),
        "{e}"
    );
}

// ---- issue 8 item 1: the env file parses what python-dotenv parses ----

/// The warnings of a file that resolves.
fn warnings_of(text: &str) -> Vec<String> {
    Input::default().file(text).ok().warnings
}

#[test]
fn env_file_bare_key_is_not_an_error_and_means_unset() {
    let c = Input::default()
        .file("DEBUG\nCHECK_INTERVAL=5\nLOG_BACKUPS=2\nLOG_BACKUPS\nexport VERBOSE # comment\n")
        .ok();
    assert_eq!(c.policy.check_interval, secs(5));
    // A bare setting key is blank: the default.
    assert_eq!(c.log.log_backups, 5);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn env_file_keys_of_any_spelling_are_ignored() {
    let c = Input::default()
        .file(
            "spring.datasource.url=jdbc:postgresql://db/x\nmy-key=1\nKEY-DASH=y\n1BAD=x\n\
             app:port=1\nCHECK_INTERVAL=7\n",
        )
        .ok();
    assert_eq!(c.policy.check_interval, secs(7));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn env_file_escaped_single_quote_inside_single_quotes() {
    let c = Input::default()
        .file("GREETING='it\\'s'\nSERVICE_NAME='Bob\\'s app'\n")
        .ok();
    assert_eq!(c.alert.service_name, "Bob's app");
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn env_file_leading_bom_is_skipped() {
    let c = Input::default().file("\u{feff}CHECK_INTERVAL=9\n").ok();
    assert_eq!(c.policy.check_interval, secs(9));
    assert_eq!(
        c.source("CHECK_INTERVAL"),
        Some(&Source::EnvFile("/srv/app/.env".into()))
    );
}

#[test]
fn env_file_export_spaces_crlf_multiline_comments() {
    let c = Input::default()
        .file(
            "export CHECK_INTERVAL = 11\r\nSERVICE_NAME = My App # the name\r\n\
             SERVER_COMMAND=\"python\r\n  app.py\"\r\nLOG_BACKUPS=3 #x\r\n",
        )
        .ok();
    assert_eq!(c.policy.check_interval, secs(11));
    assert_eq!(c.alert.service_name, "My App");
    assert_eq!(
        c.server.server_command,
        Some(strings(&["python", "app.py"]))
    );
    assert_eq!(c.log.log_backups, 3);
    // `#` after no blank is part of the value: LOG_BACKUPS=`3#x` is bad.
    let problems = Input::default().file("LOG_BACKUPS=3#x\n").problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("invalid value `3#x` for LOG_BACKUPS: "),
        "{problems:?}"
    );
}

#[test]
fn env_file_expands_variables_from_earlier_lines_and_the_environment() {
    let c = Input::default()
        .env("APP_PORT", "8123")
        .file(
            "HOST=127.0.0.1\n\
             HEALTH_URL=http://${HOST}:${APP_PORT}/health\n\
             SERVICE_NAME=\"${NAME:-Default App} on ${HOST}\"\n\
             SERVER_COMMAND='echo ${HOST}'\n\
             LOG_DIR=${LATER}/logs\nLATER=x\n",
        )
        .ok();
    assert_eq!(c.health.health_url, "http://127.0.0.1:8123/health");
    assert_eq!(c.alert.service_name, "Default App on 127.0.0.1");
    // Not in single quotes.
    assert_eq!(c.server.server_command, Some(strings(&["echo", "${HOST}"])));
    // Only earlier lines.
    assert_eq!(c.log.log_dir, PathBuf::from("/logs"));
}

#[test]
fn env_file_environment_wins_in_expansion() {
    let c = Input::default()
        .env("HOST", "10.0.0.1")
        .file("HOST=127.0.0.1\nHEALTH_URL=http://${HOST}/health\n")
        .ok();
    assert_eq!(c.health.health_url, "http://10.0.0.1/health");
}

#[test]
fn env_file_bad_lines_of_other_keys_are_warnings_with_file_and_line() {
    let c = Input::default()
        .file("A=1\njust words\nQ='a' trailing\nOPEN=\"never closed\nCHECK_INTERVAL=4\n=novalue\n")
        .ok();
    assert_eq!(c.policy.check_interval, secs(4));
    assert_eq!(
        c.warnings,
        [
            "env file /srv/app/.env: line 2: expected KEY=value; line ignored",
            "env file /srv/app/.env: line 3: unexpected text after the closing quote of Q; line ignored",
            "env file /srv/app/.env: line 4: unclosed double quote; line ignored",
            "env file /srv/app/.env: line 6: expected KEY=value; line ignored",
        ]
    );
}

#[test]
fn env_file_bad_line_of_a_setting_stays_an_error() {
    assert_eq!(
        Input::default()
            .file("A=1\nSERVICE_NAME='x' y\nLOG_BACKUPS 2\nCHECK_INTERVAL='5\n")
            .problems(),
        [
            "env file /srv/app/.env: line 2: unexpected text after the closing quote of SERVICE_NAME",
            "env file /srv/app/.env: line 3: expected KEY=value",
            "env file /srv/app/.env: line 4: unclosed single quote",
        ]
    );
    // A good file that resolves has no warnings.
    assert!(warnings_of("CHECK_INTERVAL=5\n").is_empty());
}

#[test]
fn render_keeps_a_literal_dollar_brace_literal() {
    let c = Input::default()
        .env("SERVICE_NAME", "cost ${X} it's \\ ${Y:-z}")
        .env("SERVER_COMMAND", "sh -c 'echo ${HOME}'")
        .ok();
    let again = Input::default().env("X", "expanded").file(&c.render()).ok();
    assert_eq!(again.alert.service_name, "cost ${X} it's \\ ${Y:-z}");
    assert_eq!(again.server, c.server);
}

// ---- issue 8 item 11: every setting has an upper bound ----

#[test]
fn every_setting_has_an_upper_bound() {
    let two_63 = "9223372036854775808";
    let table: &[(&str, &[&str], &[&str])] = &[
        (
            "CHECK_INTERVAL",
            &["315360000", "87600h"],
            &[two_63, "315360001", "87601h"],
        ),
        (
            "STARTUP_TIMEOUT",
            &["315360000"],
            &[two_63, "18446744073709551615"],
        ),
        ("STOP_TIMEOUT", &["315360000"], &[two_63, "5256001m"]),
        ("RESTART_COOLDOWN", &["315360000"], &[two_63]),
        (
            "RETRY_AFTER_GIVE_UP",
            &["315360000"],
            &[two_63, "99999999999999999999999"],
        ),
        ("HEALTH_TIMEOUT", &["3600", "60m"], &["3601", two_63]),
        (
            "SMTP_TIMEOUT",
            &["3600", "1h"],
            &["3600.001", "61m", two_63],
        ),
        (
            "FAILURE_THRESHOLD",
            &["1000"],
            &["1001", "18446744073709551616"],
        ),
        ("MAX_RESTART_ATTEMPTS", &["1000"], &["1001"]),
        ("LOG_BACKUPS", &["1000"], &["1001", "1000000"]),
        (
            "LOG_MAX_BYTES",
            &["1073741824"],
            &["1073741825", "18446744073709551615"],
        ),
        ("LOG_RETENTION_DAYS", &["36500"], &["36501", "4294967296"]),
        ("WARN_MEMORY_PERCENT", &["1000"], &["1000.1", "1e300"]),
        ("WARN_CPU_PERCENT", &["1000"], &["1001"]),
        ("WARN_DB_RESPONSE_MS", &["3600000"], &["3600001", "1e300"]),
    ];
    check_table(table);
}

#[test]
fn bound_messages_name_setting_value_and_the_bound() {
    let table = [
        (
            "CHECK_INTERVAL",
            "9223372036854775808",
            "expected a duration of at most 10 years (315360000 s)",
        ),
        (
            "SMTP_TIMEOUT",
            "2h",
            "expected a duration of at most 1 hour (3600 s)",
        ),
        (
            "LOG_MAX_BYTES",
            "18446744073709551615",
            "expected a whole number of bytes from 4096 to 1073741824",
        ),
        (
            "LOG_BACKUPS",
            "1000000",
            "expected a whole number from 1 to 1000",
        ),
        (
            "LOG_RETENTION_DAYS",
            "36501",
            "expected a whole number of days from 0 to 36500",
        ),
        (
            "WARN_CPU_PERCENT",
            "5000",
            "expected a number from 0 to 1000, like `80` or `12.5`",
        ),
    ];
    for (name, value, allowed) in table {
        assert_eq!(
            one(name, value).problems(),
            [format!("invalid value `{value}` for {name}: {allowed}")],
        );
    }
}

#[test]
fn instant_after_never_panics() {
    let now = std::time::Instant::now();
    assert_eq!(instant_after(now, secs(5)), now + secs(5));
    let far = instant_after(now, Duration::MAX);
    assert!(far > now + MAX_DURATION, "{far:?}");
}

#[test]
fn on_call_settings_have_their_defaults() {
    let c = Input::default().ok();
    assert_eq!(c.policy.memory_limit, None);
    assert_eq!(c.alert.alert_reminder, Some(secs(3600)));
    assert_eq!(c.alert.flap_restarts, 4);
    assert_eq!(c.alert.flap_window, secs(1800));
    assert_eq!(c.heartbeat.heartbeat_url, None);
    assert_eq!(c.heartbeat.heartbeat_interval, secs(60));
    assert_eq!(c.log.history_days, 400);
    assert_eq!(c.status.status_listen, None);
    assert_eq!(c.status.status_token, None);
    assert_eq!(one("ALERT_REMINDER", "0").ok().alert.alert_reminder, None);
    assert_eq!(one("FLAP_RESTARTS", "0").ok().alert.flap_restarts, 0);
}

#[test]
fn memory_limit_takes_sizes_and_percentages() {
    const MIB: u64 = 1 << 20;
    for (text, limit) in [
        ("512MB", MemoryLimit::Bytes(512 * MIB)),
        ("512MiB", MemoryLimit::Bytes(512 * MIB)),
        ("512m", MemoryLimit::Bytes(512 * MIB)),
        ("2GiB", MemoryLimit::Bytes(2048 * MIB)),
        ("1.5G", MemoryLimit::Bytes(1536 * MIB)),
        ("1048576", MemoryLimit::Bytes(MIB)),
        ("80%", MemoryLimit::Percent(80.0)),
        ("12.5%", MemoryLimit::Percent(12.5)),
    ] {
        assert_eq!(
            one("MEMORY_LIMIT", text).ok().policy.memory_limit,
            Some(limit),
            "{text}"
        );
    }
    for bad in ["0%", "101%", "-5%", "512XB", "1KB", "lots", "0", "%"] {
        let problems = one("MEMORY_LIMIT", bad).problems();
        assert!(
            problems[0].contains("MEMORY_LIMIT") && problems[0].contains("512MB"),
            "{bad}: {problems:?}"
        );
    }
    assert_eq!(MemoryLimit::Percent(50.0).bytes(1000 * MIB), 500 * MIB);
    assert_eq!(MemoryLimit::Bytes(512 * MIB).to_string(), "512MiB");
    assert_eq!(format_bytes(1536 * MIB), "1.5GiB");
}

#[test]
fn status_listen_off_loopback_needs_a_token() {
    let c = one("STATUS_LISTEN", "127.0.0.1:9100").ok();
    assert_eq!(
        c.status.status_listen,
        Some("127.0.0.1:9100".parse().unwrap())
    );
    assert_eq!(
        one("STATUS_LISTEN", "localhost:9100")
            .ok()
            .status
            .status_listen,
        Some("127.0.0.1:9100".parse().unwrap())
    );
    assert!(one("STATUS_LISTEN", "[::1]:9100")
        .ok()
        .status
        .status_listen
        .is_some());
    let problems = one("STATUS_LISTEN", "0.0.0.0:9100").problems();
    assert!(problems[0].contains("STATUS_TOKEN"), "{problems:?}");
    let token = "0123456789abcdef0123";
    let c = one("STATUS_LISTEN", "0.0.0.0:9100")
        .env("STATUS_TOKEN", token)
        .ok();
    assert_eq!(c.status.status_token.as_deref(), Some(token));
    assert!(!c.render().contains(token));
    assert!(!format!("{c:?}").contains(token));
    for bad in [
        "9100",
        "127.0.0.1",
        "127.0.0.1:0",
        "example.com:80",
        "127.0.0.1:99999",
    ] {
        let problems = one("STATUS_LISTEN", bad).problems();
        assert!(problems[0].contains("HOST:PORT"), "{bad}: {problems:?}");
    }
    let problems = one("STATUS_TOKEN", "short").problems();
    assert!(
        problems[0].contains("STATUS_TOKEN") && !problems[0].contains("short"),
        "{problems:?}"
    );
}

#[test]
fn heartbeat_url_is_masked_like_a_secret() {
    let url = "https://hc-ping.com/5e1f0a7c-secret-uuid";
    let c = one("HEARTBEAT_URL", url).ok();
    assert_eq!(c.heartbeat.heartbeat_url.as_deref(), Some(url));
    assert!(!c.render().contains("secret-uuid"), "{}", c.render());
    assert!(c.render().contains("https://hc-ping.com/********"));
    assert!(!format!("{c:?}").contains("secret-uuid"));
    let problems = one("HEARTBEAT_URL", "ftp://hc-ping.com/secret-uuid").problems();
    assert!(!problems[0].contains("secret-uuid"), "{problems:?}");
    assert!(one("HEARTBEAT_INTERVAL", "0").problems()[0].contains("HEARTBEAT_INTERVAL"));
    assert!(one("FLAP_WINDOW", "0").problems()[0].contains("FLAP_WINDOW"));
    assert!(one("FLAP_RESTARTS", "1001").problems()[0].contains("FLAP_RESTARTS"));
    assert!(one("HISTORY_DAYS", "-1").problems()[0].contains("HISTORY_DAYS"));
}

#[test]
fn uses_tls_when_any_url_is_https_or_mail_is_encrypted() {
    assert!(!Input::default().ok().uses_tls());
    assert!(one("HEALTH_URL", "https://127.0.0.1/health")
        .ok()
        .uses_tls());
    assert!(one("HEARTBEAT_URL", "https://hc-ping.com/x")
        .ok()
        .uses_tls());
    let mail = one("SMTP_SERVER", "smtp.example.com").env("ALERT_EMAIL", "ops@example.com");
    assert!(mail.ok().uses_tls());
    assert!(!mail.env("SMTP_SECURITY", "none").ok().uses_tls());
}
