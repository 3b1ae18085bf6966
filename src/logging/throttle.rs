//! Rate limit for reporting failed log writes on stderr.
//!
//! A full disk makes every log record fail; printing each failure would turn
//! one problem into a flood on the console (or the journal). [`Throttle`]
//! admits the first failure, then at most one per period, and counts the ones
//! it held back so the next report can say how many there were.
//!
//! Pure: time is a parameter. [`warn_stderr`] is the one effect here, and it
//! never panics (unlike `eprintln!`, which panics when stderr is closed).

use std::fmt;
use std::io::Write;
use std::time::{Duration, Instant};

/// How often a failing file is reported at most.
pub(crate) const REPORT_PERIOD: Duration = Duration::from_secs(60);

/// Admits at most one report per period; see the module documentation.
#[derive(Debug)]
pub(crate) struct Throttle {
    period: Duration,
    last: Option<Instant>,
    held_back: u64,
}

impl Throttle {
    pub(crate) fn new(period: Duration) -> Throttle {
        Throttle {
            period,
            last: None,
            held_back: 0,
        }
    }

    /// Records one failure at `now`. Returns `Some(n)` when this failure is
    /// to be reported, `n` being the failures held back since the last
    /// report; `None` when it is to be kept quiet.
    pub(crate) fn admit(&mut self, now: Instant) -> Option<u64> {
        let due = match self.last {
            None => true,
            Some(last) => now.saturating_duration_since(last) >= self.period,
        };
        if due {
            self.last = Some(now);
            Some(std::mem::take(&mut self.held_back))
        } else {
            self.held_back += 1;
            None
        }
    }
}

/// Writes one line to stderr, ignoring failure: there is nowhere left to
/// report a broken stderr, and a logger must not panic.
pub(crate) fn warn_stderr(message: fmt::Arguments) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_fmt(format_args!("{message}\n"));
}

/// The text of a report: what failed, the path, the error, and how many
/// failures were held back before it.
pub(crate) fn failure_text(
    what: &str,
    path: &std::path::Path,
    error: &std::io::Error,
    held_back: u64,
) -> String {
    let mut text = format!("{what} {}: {error}", path.display());
    if held_back > 0 {
        text.push_str(&format!(
            " ({held_back} more failure{} since the last report)",
            if held_back == 1 { "" } else { "s" }
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_first_failure_then_once_a_period() {
        let t0 = Instant::now();
        let mut throttle = Throttle::new(Duration::from_secs(60));
        let s = Duration::from_secs;
        let table = [
            (s(0), Some(0)),
            (s(1), None),
            (s(59), None),
            (s(60), Some(2)),
            (s(61), None),
            (s(200), Some(1)),
            (s(260), Some(0)),
        ];
        for (at, want) in table {
            assert_eq!(throttle.admit(t0 + at), want, "at {at:?}");
        }
    }

    #[test]
    fn failure_text_names_path_and_held_back_count() {
        let e = std::io::Error::other("disk full");
        let p = std::path::Path::new("logs/app.log");
        assert_eq!(
            failure_text("cannot write log file", p, &e, 0),
            "cannot write log file logs/app.log: disk full"
        );
        assert_eq!(
            failure_text("cannot write log file", p, &e, 1),
            "cannot write log file logs/app.log: disk full (1 more failure since the last report)"
        );
        assert_eq!(
            failure_text("x", p, &e, 3),
            "x logs/app.log: disk full (3 more failures since the last report)"
        );
    }
}
