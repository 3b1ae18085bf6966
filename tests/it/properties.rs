//! Property tests of the pure parsers: a few thousand random inputs each,
//! from a small hand-written PRNG with a fixed seed (set `PROPERTY_SEED` to
//! explore others). The same properties, without a bound on time, are the
//! fuzz targets in `scripts/fuzz/` (`make fuzz`).
//!
//! - `split_words`: words or an error, never no words for a non-blank
//!   command; `join_words` -> `split_words` gives back any list of words;
//! - `parse_duration`: what it parses, formatted and parsed again, is the
//!   same duration; any Duration survives `format_duration`;
//! - `classify`: never panics; healthy only for a 2xx with at most 1 MiB of
//!   body; a body over 1 MiB always fails; reasons are one line;
//! - `parse_env_file`: problems name lines that exist; the entries, written
//!   back quoted, parse the same; `Config::render` parses back to the same
//!   Config.
//! - `status::request::parse`: a decision on a prefix is final; only GET and
//!   HEAD are complete; a well-formed head parses to its method and path.
//!
//! Not here: anything with a process or a socket (the other modules).
//! Every test runs well under a second in a debug build.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use server_monitor::config::{
    format_duration, is_valid_key, join_words, parse_duration, parse_env_file, resolve,
    split_words, EnvFile, HealthSettings,
};
use server_monitor::health::{classify, CheckOutcome, Reason, MAX_BODY};

/// splitmix64: tiny, fast, and good enough to spread test inputs.
struct Rng(u64);

impl Rng {
    fn new(test: &str) -> Rng {
        let seed = std::env::var("PROPERTY_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x5eed_2026);
        // A different stream per test, so that tests do not share inputs.
        let salt = test
            .bytes()
            .fold(0u64, |h, b| h.rotate_left(5) ^ u64::from(b));
        Rng(seed ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// 0..n
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    /// Up to `pieces` pieces from `alphabet`, glued together.
    fn text(&mut self, alphabet: &[&str], pieces: usize) -> String {
        let n = self.below(pieces + 1);
        (0..n).map(|_| self.pick(alphabet)).collect()
    }
}

/// Pieces that matter to the parsers: quotes, escapes, blanks of every kind,
/// comment and assignment marks, multi-byte characters.
const SHELLISH: &[&str] = &[
    " ", "\t", "\n", "\r", "'", "\"", "\\", "\\\n", "#", "=", "$", "`", "a", "b", "Z", "_", "0",
    "9", ".", "-", "é", "\u{a0}", "\u{2003}", "\u{85}", "export ", "x y", "''", "\"\"", "|",
];

const CASES: usize = 3000;

fn words(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn split_words_gives_words_or_an_error_and_its_words_round_trip() {
    let mut rng = Rng::new("split_words");
    for case in 0..CASES {
        let text = rng.text(SHELLISH, 12);
        let trimmed = text.trim();
        if let Ok(words) = split_words(trimmed) {
            assert!(
                trimmed.is_empty() || !words.is_empty(),
                "case {case}: no words from non-blank {trimmed:?}"
            );
            let joined = join_words(&words);
            assert_eq!(
                split_words(&joined),
                Ok(words),
                "case {case}: {trimmed:?} via {joined:?}"
            );
        }
        // Untrimmed, only blanks and backslash-newlines (removed, as sh
        // removes them) may give no words.
        if let Ok(words) = split_words(&text) {
            assert!(
                !words.is_empty() || text.replace("\\\n", "").trim().is_empty(),
                "case {case}: no words from {text:?}"
            );
        }
    }
}

#[test]
fn join_words_then_split_words_gives_back_any_words() {
    let mut rng = Rng::new("join_words");
    for case in 0..CASES {
        let list: Vec<String> = (0..rng.below(5)).map(|_| rng.text(SHELLISH, 6)).collect();
        let joined = join_words(&list);
        assert_eq!(
            split_words(&joined),
            Ok(list.clone()),
            "case {case}: {list:?} via {joined:?}"
        );
    }
    assert_eq!(join_words(&words(&["python3", "app.py"])), "python3 app.py");
}

#[test]
fn durations_round_trip_through_format_duration() {
    let mut rng = Rng::new("duration");
    let number = &[
        "0",
        "1",
        "5",
        "9",
        ".",
        "00",
        "30",
        "999999999",
        " ",
        "ms",
        "s",
        "m",
        "h",
        "x",
        "-",
        "e",
    ];
    for case in 0..CASES {
        let text = rng.text(number, 6);
        if let Ok(d) = parse_duration(&text) {
            let formatted = format_duration(d);
            assert_eq!(
                parse_duration(&formatted),
                Ok(d),
                "case {case}: {text:?} via {formatted:?}"
            );
        }
        // Any Duration, from nanoseconds to u64::MAX seconds.
        let secs = rng.next() >> rng.below(64);
        let d = Duration::new(secs, (rng.next() % 1_000_000_000) as u32);
        let formatted = format_duration(d);
        assert_eq!(
            parse_duration(&formatted),
            Ok(d),
            "case {case}: via {formatted:?}"
        );
        let millis = rng.next() >> 12;
        assert_eq!(
            parse_duration(&format!("{millis}ms")),
            Ok(Duration::from_millis(millis)),
            "case {case}"
        );
    }
}

fn health_settings() -> HealthSettings {
    HealthSettings {
        health_url: "http://127.0.0.1:1/health".into(),
        health_timeout: Duration::from_secs(1),
        healthy_statuses: words(&["healthy", "ok", "pass", "up"]),
        warn_memory_percent: 80.0,
        warn_cpu_percent: 50.0,
        warn_db_response_ms: 100.0,
        health_ca_file: None,
    }
}

/// Checks the rules every outcome keeps, whatever the body.
fn check_outcome(code: u16, body: &[u8], outcome: &CheckOutcome, what: &str) {
    match outcome {
        CheckOutcome::Healthy { warnings } => {
            assert!(
                (200..300).contains(&code),
                "{what}: healthy with HTTP {code}"
            );
            assert!(body.len() <= MAX_BODY, "{what}: healthy with a big body");
            for w in warnings {
                assert!(!w.contains('\n'), "{what}: warning {w:?}");
            }
        }
        CheckOutcome::Failed(reason) => {
            let text = reason.to_string();
            assert!(!text.contains(['\n', '\r']), "{what}: reason {text:?}");
            assert!(text.len() < 1100, "{what}: reason {text:?}");
        }
    }
}

#[test]
fn classify_is_healthy_only_for_2xx_and_small_bodies() {
    let mut rng = Rng::new("classify");
    let settings = health_settings();
    let json = &[
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        "\"status\"",
        "\"healthy\"",
        "\"Unhealthy\"",
        "\" UP \"",
        "\"memory\"",
        "\"used\"",
        "\"total\"",
        "\"system\"",
        "\"cpuUsage\"",
        "\"percent\"",
        "0",
        "1e308",
        "-5",
        "99.5",
        "null",
        "true",
        "\"\\u0000\"",
        "\"\\n\"",
        "\u{ff}",
        " ",
    ];
    let codes = [
        0, 99, 100, 199, 200, 204, 299, 300, 302, 399, 400, 503, 599, 600, 65535,
    ];
    for case in 0..CASES {
        let code = if rng.below(4) == 0 {
            rng.next() as u16
        } else {
            codes[rng.below(codes.len())]
        };
        let body = rng.text(json, 20);
        let outcome = classify(code, body.as_bytes(), &settings);
        check_outcome(code, body.as_bytes(), &outcome, &format!("case {case}"));
    }
    // A healthy body padded past 1 MiB (still valid JSON) fails, for any code.
    for code in [200, 204, 299, 302, 503] {
        let mut body = br#"{"status":"healthy"}"#.to_vec();
        body.resize(MAX_BODY + 1, b' ');
        let outcome = classify(code, &body, &settings);
        assert!(!outcome.is_healthy(), "HTTP {code} with a body over 1 MiB");
        check_outcome(code, &body, &outcome, "big body");
        if (200..300).contains(&code) {
            assert_eq!(outcome, CheckOutcome::Failed(Reason::BodyTooLarge));
        }
    }
}

#[test]
fn env_file_problems_name_real_lines_and_pairs_round_trip() {
    let mut rng = Rng::new("env_file");
    let line_pieces = &[
        "A", "KEY", "_x", "1", "=", "==", " = ", "export ", "#", " #", "'", "\"", "\\", "\\n",
        "\\\"", "value", " ", "\t", "\r", "\n", "é", "-", "$X", "${X}", "${A:-d}", "${", "}", ".",
        "\u{feff}", "\\'",
    ];
    for case in 0..CASES {
        let text = rng.text(line_pieces, 24);
        let lines = text.split('\n').count();
        let environment = |name: &str| (name == "X").then(|| "from env".to_string());
        let file = parse_env_file(&text, environment);
        for p in &file.problems {
            assert!(
                (1..=lines).contains(&p.line),
                "case {case}: line {} of {lines} in {text:?}",
                p.line
            );
        }
        // The entries, written back quoted, parse to the same entries. In
        // single quotes when the value holds `${` (not expanded there).
        // A first blank line: a key may start with U+FEFF, not a BOM here.
        let mut again = String::from("\n");
        for e in &file.entries {
            assert!(!e.key.is_empty(), "case {case}: empty key from {text:?}");
            let key = if is_valid_key(&e.key) {
                e.key.clone()
            } else {
                assert!(!e.key.contains('\''), "case {case}: key {:?}", e.key);
                format!("'{}'", e.key)
            };
            let Some(value) = &e.value else {
                again.push_str(&format!("{key}\n"));
                continue;
            };
            if value.contains("${") {
                if value.contains("\r\n") {
                    continue; // cannot be written back; see env_quote
                }
                let escaped = value.replace('\\', "\\\\").replace('\'', "\\'");
                again.push_str(&format!("{key}='{escaped}'\n"));
            } else {
                let escaped = value
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                again.push_str(&format!("{key}=\"{escaped}\"\n"));
            }
        }
        let reread = parse_env_file(&again, environment);
        assert!(reread.problems.is_empty(), "case {case}: {again:?}");
        let pairs = |f: &EnvFile| -> Vec<(String, Option<String>)> {
            f.entries
                .iter()
                .filter(|e| {
                    !e.value
                        .as_deref()
                        .is_some_and(|v| v.contains("${") && v.contains("\r\n"))
                })
                .map(|e| (e.key.clone(), e.value.clone()))
                .collect()
        };
        assert_eq!(
            pairs(&reread),
            pairs(&file),
            "case {case}: {text:?} rewritten as {again:?}"
        );
    }
}

#[test]
fn render_output_parses_back_to_the_same_config() {
    let mut rng = Rng::new("render");
    let cwd = Path::new("/srv/app");
    let mut resolved = 0;
    for case in 0..CASES / 3 {
        let mut env = HashMap::new();
        for name in [
            "SERVICE_NAME",
            "STOP_COMMAND",
            "SERVER_WORKDIR",
            "LOG_DIR",
            "SMTP_USERNAME",
        ] {
            if rng.below(2) == 0 {
                env.insert(name.to_string(), rng.text(SHELLISH, 8));
            }
        }
        env.insert(
            "HEALTHY_STATUSES".into(),
            format!("ok,{}", rng.text(SHELLISH, 4).replace(',', "")),
        );
        let durations = &["0.5", "1", "30", "1.25", "500ms", "2m", "0.000000001"];
        env.insert("CHECK_INTERVAL".into(), rng.pick(durations).into());
        let argv: Vec<String> = (0..rng.below(4))
            .map(|_| format!("w{}", rng.text(SHELLISH, 5)))
            .collect();
        let argv = (!argv.is_empty()).then_some(argv);
        let Ok(first) = resolve(&[], &env, None, argv, "box1", cwd) else {
            continue;
        };
        resolved += 1;
        // The env file's own path, line breaks and all, goes into comments.
        let path = format!("/tmp/{}.env", rng.text(SHELLISH, 4));
        let text = first.render();
        assert!(
            parse_env_file(&text, |_| None).problems.is_empty(),
            "case {case}:\n{text}"
        );
        let again = resolve(
            &[],
            &HashMap::new(),
            Some((Path::new(&path), &text)),
            None,
            "box1",
            cwd,
        )
        .unwrap_or_else(|e| panic!("case {case}: {e}\n{text}"));
        assert_eq!(again.health, first.health, "case {case}:\n{text}");
        assert_eq!(again.server, first.server, "case {case}:\n{text}");
        assert_eq!(again.policy, first.policy, "case {case}:\n{text}");
        assert_eq!(again.log, first.log, "case {case}:\n{text}");
        assert_eq!(again.alert, first.alert, "case {case}:\n{text}");
        let text = again.render();
        assert!(
            parse_env_file(&text, |_| None).problems.is_empty(),
            "case {case}:\n{text}"
        );
        let third = resolve(
            &[],
            &HashMap::new(),
            Some((Path::new(".env"), &text)),
            None,
            "box1",
            cwd,
        )
        .unwrap_or_else(|e| panic!("case {case}: {e}\n{text}"));
        assert_eq!(third.server, first.server, "case {case}:\n{text}");
        assert_eq!(third.alert, first.alert, "case {case}:\n{text}");
    }
    // Most random settings are accepted: the property was really exercised.
    assert!(resolved > CASES / 6, "only {resolved} configs resolved");
}

/// Pieces of HTTP request heads (issue 13: the status listener's parser).
const HTTPISH: &[&str] = &[
    "GET",
    "HEAD",
    "POST",
    " ",
    "/",
    "/metrics",
    "?a=b",
    "#",
    " HTTP/1.1",
    " HTTP/1.0",
    " HTTP/2",
    "\r\n",
    "\n",
    "\r",
    "Host: x",
    "Authorization: Bearer t",
    ":",
    "Content-Length: 1",
    "\t",
    "\0",
    "é",
    "\u{7f}",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
];

/// `status::request::parse`: never panics; a decision on a prefix is final
/// (the listener parses what has come so far); "incomplete" only under the
/// 8 KiB cap; a complete request is a GET or HEAD of a path without its
/// query; a well-formed head parses to its method and path.
#[test]
fn request_parser_decides_once_and_only_for_get_or_head() {
    use server_monitor::status::request::{parse, Method, Parse, MAX_HEAD};
    let mut rng = Rng::new("request_parser");
    for _ in 0..CASES {
        let mut raw: Vec<u8> = rng.text(HTTPISH, 24).into_bytes();
        if rng.below(4) == 0 {
            for _ in 0..rng.below(64) {
                raw.push(rng.next() as u8);
            }
        }
        if rng.below(50) == 0 {
            raw.resize(MAX_HEAD + rng.below(100), b'x');
        }
        let whole = parse(&raw);
        match &whole {
            Parse::Incomplete => assert!(raw.len() < MAX_HEAD, "{raw:?}"),
            Parse::Complete(r) => {
                assert!(matches!(r.method, Method::Get | Method::Head));
                assert!(
                    r.path.starts_with('/') && !r.path.contains(['?', '#', ' ']),
                    "{r:?}"
                );
            }
            Parse::Refused(code) => assert!([400, 405, 413, 431, 505].contains(code), "{code}"),
        }
        // Whatever a prefix decided, the whole says the same.
        let cut = rng.below(raw.len() + 1);
        let prefix = parse(&raw[..cut]);
        if prefix != Parse::Incomplete {
            assert_eq!(prefix, whole, "prefix {:?} of {raw:?}", &raw[..cut]);
        }
        // A well-formed head around random (printable) header values.
        let method = rng.pick(&["GET", "HEAD"]);
        let path = rng.pick(&["/", "/metrics", "/status.json", "/x/y"]);
        let value: String = rng.text(&["a", "b", " ", "=", "é", "\"", ":"], 20);
        let head = format!("{method} {path}?q HTTP/1.1\r\nHost: h\r\nX-V: {value}\r\n\r\n");
        match parse(head.as_bytes()) {
            Parse::Complete(r) => assert_eq!(
                (format!("{:?}", r.method).to_uppercase(), r.path.as_str()),
                (method.to_string(), path),
                "{head:?}"
            ),
            other => panic!("{head:?}: {other:?}"),
        }
    }
}
