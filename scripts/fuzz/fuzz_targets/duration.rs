//! Fuzzes `config::parse_duration` and `config::format_duration`.
//!
//! Properties beyond "no panic":
//! - a parsed duration, formatted and parsed again, is the same duration;
//! - a plain number with a unit is that number times the unit, give or take
//!   the nanosecond rounding (`X` vs `Xms`, `Xm`, `Xh`; `Xs` exactly);
//! - any Duration (the first 12 bytes as seconds and nanoseconds) survives
//!   format -> parse, and `{n}ms` is exactly n milliseconds.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use server_monitor::config::{format_duration, parse_duration};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(d) = parse_duration(text) {
            let formatted = format_duration(d);
            assert_eq!(
                parse_duration(&formatted),
                Ok(d),
                "{text:?} via {formatted:?}"
            );
        }
        let number = text.trim();
        if let Ok(base) = parse_duration(number) {
            if !number.ends_with(['s', 'm', 'h']) {
                assert_eq!(
                    parse_duration(&format!("{number}s")),
                    Ok(base),
                    "{number:?}s"
                );
                let base = base.as_nanos();
                // X ms: floor(x * 1e6) ns, against floor(x * 1e9) / 1000.
                let ms = parse_duration(&format!("{number}ms")).expect("X ms fits when X s does");
                assert!(ms.as_nanos() * 1000 <= base + 1000, "{number:?}ms");
                assert!(base < ms.as_nanos() * 1000 + 2000, "{number:?}ms");
                // X m and X h: floor(x * unit) against unit * floor(x * 1e9),
                // within one unit's worth of nanoseconds (plus one for the
                // 20-digit cut of long fractions).
                for (suffix, factor) in [("m", 60u128), ("h", 3600)] {
                    if let Ok(d) = parse_duration(&format!("{number}{suffix}")) {
                        let d = d.as_nanos();
                        assert!(base * factor <= d + factor, "{number:?}{suffix}");
                        assert!(d < base * factor + factor + 1, "{number:?}{suffix}");
                    }
                }
            }
        }
    }
    if data.len() >= 12 {
        let secs = u64::from_le_bytes(data[..8].try_into().unwrap());
        let nanos = u32::from_le_bytes(data[8..12].try_into().unwrap()) % 1_000_000_000;
        let d = Duration::new(secs, nanos);
        let formatted = format_duration(d);
        assert_eq!(parse_duration(&formatted), Ok(d), "via {formatted:?}");
        let millis = secs >> 10; // small enough that n ms fits in a Duration
        assert_eq!(
            parse_duration(&format!("{millis}ms")),
            Ok(Duration::from_millis(millis))
        );
    }
});
