//! The env file and the settings' bounds, through the real binary (SPEC
//! "Command line" and "Settings", issue 8 items 1 and 11).
//!
//! - a `.env` written for python-dotenv (bare keys, dotted and dashed keys,
//!   `\'`, a BOM, `${VAR}`, an unclosed quote of a key that is not a
//!   setting) lets the monitor start, and the line it could not read is a
//!   WARNING in its log naming the file and the line; `config` prints it
//!   to stderr;
//! - a bad line of a real setting still stops it with status 78;
//! - values past a setting's upper bound are refused with status 78 and a
//!   message naming the setting, the value and what is allowed.

use std::time::Duration;

use crate::util::*;

const LONG: Duration = Duration::from_secs(15);
const RUN: Duration = Duration::from_secs(10);

/// A `.env` an application shared with python-dotenv could have; line 9 is
/// an unclosed quote of a key that is not a setting.
fn python_dotenv_file(port: u16) -> String {
    format!(
        "\u{feff}# the app's own settings\n\
         DEBUG\n\
         spring.datasource.url=jdbc:postgresql://db:5432/app\n\
         my-key=1\n\
         GREETING='it\\'s'\n\
         APP_HOST=127.0.0.1\n\
         export HEALTH_URL = http://${{APP_HOST}}:{port}/health\n\
         SERVICE_NAME=\"${{APP_NAME:-Env App}}\"\n\
         BROKEN=\"never closed\n\
         CHECK_INTERVAL=0.2\n"
    )
}

fn base_env() -> Vec<(&'static str, String)> {
    vec![
        ("LOG_DIR", "logs".into()),
        ("HEALTH_TIMEOUT", "1".into()),
        ("STOP_TIMEOUT", "1".into()),
        ("STARTUP_TIMEOUT", "5".into()),
    ]
}

#[test]
fn monitor_starts_with_a_python_dotenv_file_and_logs_the_bad_line() {
    let dir = TestDir::new("envfile_python_dotenv");
    let port = free_port();
    dir.write(".env", python_dotenv_file(port));
    let mut env = base_env();
    env.push(("LOG_LEVEL", "debug".into()));
    let m = Monitor::start(&dir, &env, &demo_server_args(port, &[]));
    let log = m.log_dir().join("server_monitor.log");
    // A passed check proves HEALTH_URL came out of `${APP_HOST}` right.
    m.wait_for(LONG, "a passed health check", || {
        json_lines(&log).iter().any(|v| {
            v["message"]
                .as_str()
                .unwrap_or_default()
                .contains("health check passed")
        })
    });
    let warnings: Vec<String> = json_lines(&log)
        .iter()
        .filter(|v| v["level"].as_str().unwrap_or_default().starts_with("WARN"))
        .map(|v| v["message"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("env file .env: line 9: unclosed double quote")),
        "{warnings:?}\n{}",
        m.dump()
    );
}

#[test]
fn config_prints_env_file_warnings_and_refuses_a_bad_setting_line() {
    let dir = TestDir::new("envfile_config");
    dir.write(".env", python_dotenv_file(8123));
    let out = run(&dir, &base_env(), &["config"], RUN);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("HEALTH_URL=http://127.0.0.1:8123/health"),
        "{stdout}"
    );
    assert!(stdout.contains("SERVICE_NAME=Env App"), "{stdout}");
    assert!(
        stderr.contains("warning: env file .env: line 9: unclosed double quote; line ignored"),
        "{stderr}"
    );

    dir.write(".env", "DEBUG\nCHECK_INTERVAL='5\n");
    let out = run(&dir, &base_env(), &["config"], RUN);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("env file .env: line 2: unclosed single quote"),
        "{stderr}"
    );
}

#[test]
fn values_past_an_upper_bound_are_refused_with_78() {
    let dir = TestDir::new("envfile_bounds");
    let table: &[(&'static str, &str, &str)] = &[
        ("CHECK_INTERVAL", "9223372036854775808", "at most 10 years"),
        (
            "RESTART_COOLDOWN",
            "9223372036854775808s",
            "at most 10 years",
        ),
        ("HEALTH_TIMEOUT", "9223372036854775808", "at most 1 hour"),
        (
            "LOG_MAX_BYTES",
            "18446744073709551615",
            "from 4096 to 1073741824",
        ),
        ("LOG_BACKUPS", "1000000", "from 1 to 1000"),
    ];
    for (name, value, allowed) in table {
        let mut env = base_env();
        env.push((name, value.to_string()));
        let out = run(&dir, &env, &["config"], RUN);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{name}={value}: {stderr}");
        assert!(
            stderr.contains(&format!("invalid value `{value}` for {name}: "))
                && stderr.contains(allowed),
            "{name}={value}: {stderr}"
        );
    }
}
