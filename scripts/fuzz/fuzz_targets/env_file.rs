//! Fuzzes `config::parse_env_file`, and the round trip through
//! `Config::render` (the output of `server-monitor config`, documented as
//! valid env-file syntax).
//!
//! Properties beyond "no panic", on the input as an env file:
//! - every problem names a line that exists (1 <= N <= lines);
//! - every key it returns is non-empty;
//! - the entries, written back (`KEY="..."` with `\\`, `\"`, `\n` escaped;
//!   in single quotes when the value holds `${`), parse to the same entries.
//!
//! And on the input cut at NUL bytes into setting values (SERVICE_NAME,
//! SERVER_COMMAND words, STOP_COMMAND, SERVER_WORKDIR, ..., and the env
//! file's path): when `config::resolve` accepts them, `render()` parses as an
//! env file, and resolving that text gives the same Config.
#![no_main]

use std::collections::HashMap;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use server_monitor::config::{is_valid_key, parse_env_file, resolve, Config};

/// Settings fed from the input, in order; the rest keep their defaults.
const FED: &[&str] = &[
    "SERVICE_NAME",
    "STOP_COMMAND",
    "SERVER_WORKDIR",
    "HEALTHY_STATUSES",
    "ALERT_EMAIL",
    "SMTP_USERNAME",
    "CHECK_INTERVAL",
    "LOG_DIR",
    "WARN_MEMORY_PERCENT",
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    as_env_file(text);
    through_render(text);
});

fn as_env_file(text: &str) {
    let lines = text.split('\n').count();
    let environment = |name: &str| (name == "X").then(|| "from env".to_string());
    let file = parse_env_file(text, environment);
    for p in &file.problems {
        assert!((1..=lines).contains(&p.line), "line {} of {lines}: {p:?}", p.line);
    }
    // A first blank line: a key may start with U+FEFF, not a BOM there.
    let mut again = String::from("\n");
    let mut kept = Vec::new();
    for e in &file.entries {
        assert!(!e.key.is_empty(), "empty key");
        let key = if is_valid_key(&e.key) {
            e.key.clone()
        } else {
            assert!(!e.key.contains('\''), "key {:?}", e.key);
            format!("'{}'", e.key)
        };
        match &e.value {
            None => again.push_str(&format!("{key}\n")),
            // Cannot be written back (a literal line break in single quotes).
            Some(v) if v.contains("${") && v.contains("\r\n") => continue,
            Some(v) if v.contains("${") => {
                let escaped = v.replace('\\', "\\\\").replace('\'', "\\'");
                again.push_str(&format!("{key}='{escaped}'\n"));
            }
            Some(v) => {
                let escaped = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                again.push_str(&format!("{key}=\"{escaped}\"\n"));
            }
        }
        kept.push((e.key.clone(), e.value.clone()));
    }
    let reread = parse_env_file(&again, environment);
    assert!(reread.problems.is_empty(), "rewritten as {again:?}");
    let pairs: Vec<_> = reread
        .entries
        .into_iter()
        .map(|e| (e.key, e.value))
        .collect();
    assert_eq!(pairs, kept, "rewritten as {again:?}");
}

fn through_render(text: &str) {
    let mut fields = text.split('\0');
    let env_path = fields.next().unwrap_or_default();
    // SERVER_COMMAND as the words after `--`, cut at 0x01.
    let argv: Vec<String> = fields
        .next()
        .unwrap_or_default()
        .split('\u{1}')
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect();
    let argv = (!argv.is_empty()).then_some(argv);
    let env: HashMap<String, String> = FED
        .iter()
        .zip(fields)
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    let cwd = Path::new("/srv/app");
    let Ok(first) = resolve(&[], &env, None, argv, "box1", cwd) else {
        return;
    };
    // A second hop through an env file, so that the file's path shows up
    // in the `# env file PATH` comments of the rendering.
    let path = Path::new(if env_path.is_empty() {
        ".env"
    } else {
        env_path
    });
    let rendered = first.render();
    let second = round_trip(&first, &rendered, path);
    round_trip(&second, &second.render(), Path::new("/etc/x.env"));
}

/// Parses `rendered` as the env file at `path`, resolves it, and checks that
/// it is the same configuration as `c`.
fn round_trip(c: &Config, rendered: &str, path: &Path) -> Config {
    let cwd = Path::new("/srv/app");
    let problems = parse_env_file(rendered, |_| None).problems;
    if !problems.is_empty() {
        panic!("render() is not a valid env file: {problems:?}\n{rendered}");
    }
    let again = resolve(
        &[],
        &HashMap::new(),
        Some((path, rendered)),
        None,
        "box1",
        cwd,
    )
    .unwrap_or_else(|e| panic!("render() does not resolve: {e}\n{rendered}"));
    assert_eq!(again.health, c.health, "{rendered}");
    assert_eq!(again.server, c.server, "{rendered}");
    assert_eq!(again.policy, c.policy, "{rendered}");
    assert_eq!(again.log, c.log, "{rendered}");
    assert_eq!(again.alert, c.alert, "{rendered}");
    again
}
