//! Fuzzes `health::classify(status code, body, settings)`.
//!
//! Input: two bytes of status code, one byte of flags, the rest the body.
//! Flags `& 0x0f == 0` (one input in 16) pad the body with spaces to just
//! over 1 MiB — still valid JSON when the body was.
//!
//! Properties beyond "no panic":
//! - healthy means a 2xx code and a body of at most 1 MiB;
//! - a body over 1 MiB is always a failure (BodyTooLarge for a 2xx);
//! - a 2xx body that is not a JSON object is healthy without warnings;
//! - a failure's reason and every warning is one line of bounded length (they go into
//!   log lines and alert bodies).
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use server_monitor::config::HealthSettings;
use server_monitor::health::{classify, CheckOutcome, Reason, MAX_BODY};

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let code = u16::from_le_bytes([data[0], data[1]]);
    let flags = data[2];
    let mut body = data[3..].to_vec();
    if flags & 0x0f == 0 {
        let extra = usize::from(flags >> 4);
        body.resize(MAX_BODY + 1 + extra, b' ');
    }
    let settings = HealthSettings {
        health_url: "http://127.0.0.1:1/health".into(),
        health_timeout: Duration::from_secs(1),
        healthy_statuses: ["healthy", "ok", "pass", "up"].map(String::from).to_vec(),
        warn_memory_percent: f64::from(flags & 0x70),
        warn_cpu_percent: 50.0,
        warn_db_response_ms: if flags & 0x80 != 0 { 0.0 } else { 100.0 },
    };
    let outcome = classify(code, &body, &settings);
    let is_2xx = (200..300).contains(&code);
    match &outcome {
        CheckOutcome::Healthy { warnings } => {
            assert!(is_2xx, "healthy with HTTP {code}");
            assert!(
                body.len() <= MAX_BODY,
                "healthy with a {} byte body",
                body.len()
            );
            for w in warnings {
                assert!(!w.contains(['\n', '\r']) && w.len() < 2000, "warning {w:?}");
            }
            let is_object = matches!(
                serde_json::from_slice::<serde_json::Value>(&body),
                Ok(serde_json::Value::Object(_))
            );
            assert!(
                is_object || warnings.is_empty(),
                "warnings for a non-object"
            );
        }
        CheckOutcome::Failed(reason) => {
            let text = reason.to_string();
            assert!(
                !text.contains(['\n', '\r']) && text.len() < 1100,
                "reason {text:?}"
            );
            if is_2xx && body.len() > MAX_BODY {
                assert_eq!(reason, &Reason::BodyTooLarge);
            }
            if is_2xx && body.len() <= MAX_BODY {
                assert!(
                    matches!(reason, Reason::Status(_)),
                    "2xx failed: {reason:?}"
                );
            }
        }
    }
    if body.len() > MAX_BODY {
        assert!(!outcome.is_healthy(), "a body over 1 MiB passed");
    }
});
