//! JSON-lines formatting of log records: pure functions, no I/O, no clock.
//!
//! Contract (SPEC "Files under LOG_DIR"): one record is one JSON object on one
//! line, ending in `'\n'`, with at least these keys, in this order:
//!
//! | key | value |
//! | --- | --- |
//! | `timestamp` | UTC, ISO 8601 with milliseconds and `Z`: `2026-11-28T08:28:39.123Z` |
//! | `level` | `DEBUG`, `INFO`, `WARNING`, `ERROR` (`Trace` is written as `DEBUG`) |
//! | `logger` | the record's target; the crate name when the target is the default (the module path) |
//! | `message` | the formatted message |
//! | `module` | the last segment of the module path (`monitor`, `main`, `demo_server`) |
//! | `line` | the source line, or `null` when the record has none |
//! | `extra` | an object of the record's key-values (`{}` when there are none) |
//!
//! Key-value values become JSON numbers and booleans when they are numbers or
//! booleans, `null` for `None`/`()`, and strings otherwise (their `Display`).
//! Keys inside `extra` come out sorted (serde_json's map). All text is escaped
//! by serde_json, so a message with newlines or control characters stays on
//! one line.
//!
//! What it does not do: it does not read the clock (the caller passes `now`),
//! it does not write anything, and it does not filter by level.
//!
//! The timestamp is computed by hand (days to civil date, Howard Hinnant's
//! algorithm) so the crate needs no date library for one format; the monitor
//! also uses [`utc_iso8601_millis`] for alert bodies and the state file.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use log::kv::{self, VisitSource, VisitValue};
use serde::Serialize;
use serde_json::{Map, Value};

/// Milliseconds since the Unix epoch (0 before it; saturating).
pub fn unix_millis(t: SystemTime) -> u64 {
    let ms = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// A duration in milliseconds to one decimal, as the monitor's log and
/// state file show a latency (a check's, a stop's, a delivery's, a ping's).
pub fn round_ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

/// Formats `t` as UTC ISO 8601 with milliseconds and `Z`, e.g.
/// `2026-11-28T08:28:39.123Z`. Milliseconds are truncated, not rounded (a
/// timestamp never lies in the future). Times before 1970 work too.
pub fn utc_iso8601_millis(t: SystemTime) -> String {
    let millis: i128 = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i128,
        // Before the epoch: floor towards minus infinity so that the
        // sub-second part stays positive.
        Err(e) => {
            let d = e.duration();
            let whole = d.as_millis() as i128;
            if d.as_nanos() % 1_000_000 == 0 {
                -whole
            } else {
                -whole - 1
            }
        }
    };
    let secs = millis.div_euclid(1000) as i64;
    let ms = millis.rem_euclid(1000) as u32;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (sod / 3600, sod % 3600 / 60, sod % 60);
    if (0..=9999).contains(&y) {
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{ms:03}Z")
    } else {
        // ISO 8601 expanded years carry a sign; nobody should see these.
        format!("{y:+}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{ms:03}Z")
    }
}

/// Days since 1970-01-01 to (year, month 1..=12, day 1..=31) in the proleptic
/// Gregorian calendar. Howard Hinnant's `civil_from_days`: eras of 400 years
/// (146 097 days) starting on March 1st, so the leap day is the last day of
/// the (shifted) year.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // shift the epoch to 0000-03-01
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March = 0
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32; // [1, 12]
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The level names of the JSON lines (Python's names, which the existing
/// dashboards expect): `ERROR`, `WARNING`, `INFO`, `DEBUG`; `Trace` is `DEBUG`.
pub fn level_name(l: log::Level) -> &'static str {
    match l {
        log::Level::Error => "ERROR",
        log::Level::Warn => "WARNING",
        log::Level::Info => "INFO",
        log::Level::Debug | log::Level::Trace => "DEBUG",
    }
}

/// The `logger` field: the record's target, except that the default target
/// (the module path, e.g. `server_monitor::monitor`) is shortened to the crate
/// name, so that a program's own records share one logger name while an
/// explicit `target: "api"` stays as given.
pub fn logger_name<'a>(target: &'a str, module_path: Option<&str>) -> &'a str {
    if target.contains("::") && Some(target) == module_path {
        target.split("::").next().unwrap_or(target)
    } else {
        target
    }
}

/// The `module` field: the last segment of the module path; without one, the
/// last segment of the target.
pub fn module_name<'a>(module_path: Option<&'a str>, target: &'a str) -> &'a str {
    let path = module_path.unwrap_or(target);
    path.rsplit("::").next().unwrap_or(path)
}

/// The field order of a line; `extra` last because it is the longest.
#[derive(Serialize)]
struct Line<'a> {
    timestamp: String,
    level: &'static str,
    logger: &'a str,
    message: &'a str,
    module: &'a str,
    line: Option<u32>,
    extra: Map<String, Value>,
}

/// Formats one record as one JSON object followed by `'\n'`.
pub fn format_record(record: &log::Record, now: SystemTime) -> String {
    let owned_message;
    let message = match record.args().as_str() {
        Some(s) => s,
        None => {
            owned_message = record.args().to_string();
            owned_message.as_str()
        }
    };
    let module_path = record.module_path();
    let line = Line {
        timestamp: utc_iso8601_millis(now),
        level: level_name(record.level()),
        logger: logger_name(record.target(), module_path),
        message,
        module: module_name(module_path, record.target()),
        line: record.line(),
        extra: extra_fields(record.key_values()),
    };
    // Serializing a struct of strings, numbers and a Map cannot fail; the
    // fallback keeps the promise of one line anyway.
    let mut out = serde_json::to_string(&line).unwrap_or_else(|e| {
        format!(
            "{{\"level\":\"ERROR\",\"message\":{}}}",
            Value::String(format!("cannot format log record: {e}"))
        )
    });
    out.push('\n');
    out
}

/// Collects the key-values of a record into a JSON object.
pub fn extra_fields(source: &dyn kv::Source) -> Map<String, Value> {
    struct Collect(Map<String, Value>);
    impl<'kvs> VisitSource<'kvs> for Collect {
        fn visit_pair(
            &mut self,
            key: kv::Key<'kvs>,
            value: kv::Value<'kvs>,
        ) -> Result<(), kv::Error> {
            self.0.insert(key.as_str().to_owned(), json_value(&value));
            Ok(())
        }
    }
    let mut collect = Collect(Map::new());
    // Our visitor never fails; a failing Source keeps what it gave so far.
    let _ = source.visit(&mut collect);
    collect.0
}

/// One key-value value as JSON: numbers and booleans stay typed, `None`/`()`
/// is `null`, everything else is its `Display` text. A float that JSON cannot
/// hold (NaN, infinity) and integers beyond 64 bits become text.
pub fn json_value(value: &kv::Value) -> Value {
    struct ToJson(Value);
    impl<'v> VisitValue<'v> for ToJson {
        fn visit_any(&mut self, value: kv::Value) -> Result<(), kv::Error> {
            self.0 = Value::String(value.to_string());
            Ok(())
        }
        fn visit_null(&mut self) -> Result<(), kv::Error> {
            self.0 = Value::Null;
            Ok(())
        }
        fn visit_u64(&mut self, value: u64) -> Result<(), kv::Error> {
            self.0 = Value::from(value);
            Ok(())
        }
        fn visit_i64(&mut self, value: i64) -> Result<(), kv::Error> {
            self.0 = Value::from(value);
            Ok(())
        }
        fn visit_f64(&mut self, value: f64) -> Result<(), kv::Error> {
            self.0 = serde_json::Number::from_f64(value)
                .map(Value::Number)
                .unwrap_or_else(|| Value::String(value.to_string()));
            Ok(())
        }
        fn visit_bool(&mut self, value: bool) -> Result<(), kv::Error> {
            self.0 = Value::Bool(value);
            Ok(())
        }
        fn visit_str(&mut self, value: &str) -> Result<(), kv::Error> {
            self.0 = Value::String(value.to_owned());
            Ok(())
        }
    }
    let mut visitor = ToJson(Value::Null);
    if value.visit(&mut visitor).is_err() {
        return Value::String(value.to_string());
    }
    visitor.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_are_rounded_to_a_tenth_of_a_millisecond() {
        assert_eq!(round_ms(Duration::from_micros(1234)), 1.2);
        assert_eq!(round_ms(Duration::from_micros(1250)), 1.3);
        assert_eq!(round_ms(Duration::from_secs(2)), 2000.0);
        assert_eq!(round_ms(Duration::ZERO), 0.0);
    }

    fn at(secs: u64, millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(secs * 1000 + millis)
    }

    #[test]
    fn timestamps_are_utc_iso8601_with_millis() {
        let table = [
            (at(0, 0), "1970-01-01T00:00:00.000Z"),
            (at(0, 1), "1970-01-01T00:00:00.001Z"),
            (at(86_399, 999), "1970-01-01T23:59:59.999Z"),
            (at(951_782_400, 0), "2000-02-29T00:00:00.000Z"),
            (at(1_709_164_800, 0), "2024-02-29T00:00:00.000Z"),
            (at(1_709_251_199, 500), "2024-02-29T23:59:59.500Z"),
            (at(1_709_251_200, 0), "2024-03-01T00:00:00.000Z"),
            (at(1_735_689_599, 0), "2024-12-31T23:59:59.000Z"),
            (at(1_795_854_519, 123), "2026-11-28T08:28:39.123Z"),
            (at(2_147_483_647, 0), "2038-01-19T03:14:07.000Z"),
            (at(2_147_483_648, 0), "2038-01-19T03:14:08.000Z"),
            (at(4_107_542_400, 0), "2100-03-01T00:00:00.000Z"),
            (at(253_402_300_799, 999), "9999-12-31T23:59:59.999Z"),
        ];
        for (t, want) in table {
            assert_eq!(utc_iso8601_millis(t), want, "{t:?}");
        }
    }

    #[test]
    fn timestamps_truncate_sub_millisecond_parts() {
        let t = UNIX_EPOCH + Duration::from_nanos(1_999_999);
        assert_eq!(utc_iso8601_millis(t), "1970-01-01T00:00:00.001Z");
    }

    #[test]
    fn timestamps_before_the_epoch_count_backwards() {
        let table = [
            (Duration::from_millis(1), "1969-12-31T23:59:59.999Z"),
            (Duration::from_nanos(1), "1969-12-31T23:59:59.999Z"),
            (Duration::from_secs(86_400), "1969-12-31T00:00:00.000Z"),
            (
                Duration::from_secs(2_208_988_800),
                "1900-01-01T00:00:00.000Z",
            ),
        ];
        for (before, want) in table {
            assert_eq!(utc_iso8601_millis(UNIX_EPOCH - before), want, "{before:?}");
        }
    }

    #[test]
    fn civil_dates_round_trip_every_day_of_four_centuries() {
        // Counting days forward by hand must agree with the closed formula.
        let (mut y, mut m, mut d) = (1970i64, 1u32, 1u32);
        for days in 0..146_097 {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let month_len = match m {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            d += 1;
            if d > month_len {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }

    #[test]
    fn level_names_follow_python() {
        let table = [
            (log::Level::Error, "ERROR"),
            (log::Level::Warn, "WARNING"),
            (log::Level::Info, "INFO"),
            (log::Level::Debug, "DEBUG"),
            (log::Level::Trace, "DEBUG"),
        ];
        for (level, want) in table {
            assert_eq!(level_name(level), want);
        }
    }

    #[test]
    fn logger_is_crate_name_for_default_target() {
        let table = [
            (
                "server_monitor::monitor",
                Some("server_monitor::monitor"),
                "server_monitor",
            ),
            (
                "server_monitor::alert::smtp",
                Some("server_monitor::alert::smtp"),
                "server_monitor",
            ),
            ("demo_server", Some("demo_server"), "demo_server"),
            ("api", Some("chatbot::routes"), "api"),
            (
                "agents::planner",
                Some("chatbot::agents"),
                "agents::planner",
            ),
            ("x::y", None, "x::y"),
        ];
        for (target, module_path, want) in table {
            assert_eq!(logger_name(target, module_path), want, "{target}");
        }
    }

    #[test]
    fn module_is_last_path_segment() {
        let table = [
            (Some("server_monitor::monitor"), "t", "monitor"),
            (Some("server_monitor"), "t", "server_monitor"),
            (Some("demo_server"), "t", "demo_server"),
            (None, "api::v1", "v1"),
        ];
        for (module_path, target, want) in table {
            assert_eq!(module_name(module_path, target), want);
        }
    }

    fn parse(line: &str) -> Value {
        assert!(line.ends_with('\n'), "{line:?}");
        assert_eq!(line.matches('\n').count(), 1, "one line: {line:?}");
        serde_json::from_str(line).unwrap()
    }

    #[test]
    fn record_has_every_field_in_order() {
        let record = log::Record::builder()
            .args(format_args!("health check failed"))
            .level(log::Level::Warn)
            .target("server_monitor::monitor")
            .module_path(Some("server_monitor::monitor"))
            .file(Some("src/monitor.rs"))
            .line(Some(42))
            .build();
        let line = format_record(&record, at(1_795_854_519, 123));
        assert_eq!(
            line,
            "{\"timestamp\":\"2026-11-28T08:28:39.123Z\",\"level\":\"WARNING\",\
             \"logger\":\"server_monitor\",\"message\":\"health check failed\",\
             \"module\":\"monitor\",\"line\":42,\"extra\":{}}\n"
        );
    }

    #[test]
    fn record_without_line_has_null_line() {
        let record = log::Record::builder()
            .args(format_args!("m"))
            .target("api")
            .build();
        let v = parse(&format_record(&record, at(0, 0)));
        assert_eq!(v["line"], Value::Null);
        assert_eq!(v["logger"], "api");
        assert_eq!(v["module"], "api");
    }

    #[test]
    fn escaping_keeps_one_line() {
        let nasty = "two\nlines\r\t\"quoted\" \\ \u{1b}[31m \u{0} é 🙂";
        let kvs = [("body", nasty)];
        let line = format_record(
            &log::Record::builder()
                .args(format_args!("{nasty}"))
                .key_values(&kvs)
                .build(),
            at(0, 0),
        );
        let v = parse(&line);
        assert_eq!(v["message"], nasty);
        assert_eq!(v["extra"]["body"], nasty);
        assert!(!line[..line.len() - 1].chars().any(|c| c.is_control()));
    }

    #[test]
    fn extra_keeps_value_types() {
        let err = std::io::Error::other("boom");
        let kvs: [(&str, log::kv::Value); 13] = [
            ("failures", 2u32.into()),
            ("delta", (-7i64).into()),
            ("big", u64::MAX.into()),
            ("latency_ms", 12.5f64.into()),
            ("whole_float", 3.0f64.into()),
            ("nan", f64::NAN.into()),
            ("healthy", false.into()),
            ("reason", "refused".into()),
            ("grade", 'A'.into()),
            ("none", log::kv::Value::null()),
            ("error", log::kv::Value::from_display(&err)),
            ("debug", log::kv::Value::from_debug(&Some("x"))),
            ("huge", u128::MAX.into()),
        ];
        let record = log::Record::builder()
            .args(format_args!("m"))
            .key_values(&kvs)
            .build();
        let v = parse(&format_record(&record, at(0, 0)));
        let extra = &v["extra"];
        assert_eq!(extra["failures"], Value::from(2));
        assert_eq!(extra["delta"], Value::from(-7));
        assert_eq!(extra["big"], Value::from(u64::MAX));
        assert_eq!(extra["latency_ms"], Value::from(12.5));
        assert_eq!(extra["whole_float"], Value::from(3.0));
        assert_eq!(extra["nan"], "NaN");
        assert_eq!(extra["healthy"], Value::Bool(false));
        assert_eq!(extra["reason"], "refused");
        assert_eq!(extra["grade"], "A");
        assert_eq!(extra["none"], Value::Null);
        assert_eq!(extra["error"], "boom");
        assert_eq!(extra["debug"], "Some(\"x\")");
        assert_eq!(extra["huge"], u128::MAX.to_string());
    }

    #[test]
    fn extra_comes_from_the_kv_macro_syntax() {
        struct Capture(std::sync::Mutex<Vec<String>>);
        impl log::Log for Capture {
            fn enabled(&self, _: &log::Metadata) -> bool {
                true
            }
            fn log(&self, record: &log::Record) {
                self.0.lock().unwrap().push(format_record(record, at(0, 0)));
            }
            fn flush(&self) {}
        }
        // The macros check the global maximum before calling `logger:`.
        log::set_max_level(log::LevelFilter::Trace);
        let capture = Capture(std::sync::Mutex::new(Vec::new()));
        let reason = String::from("refused");
        log::warn!(logger: capture, reason = reason.as_str(), failures = 2; "health check failed");
        let lines = capture.0.lock().unwrap();
        let v = parse(&lines[0]);
        assert_eq!(v["message"], "health check failed");
        assert_eq!(
            v["extra"],
            serde_json::json!({"reason": "refused", "failures": 2})
        );
        assert_eq!(v["logger"], "server_monitor");
        assert_eq!(v["module"], "tests");
    }
}
