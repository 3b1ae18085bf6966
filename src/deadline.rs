//! Deadlines made of durations: `now + d` that never panics.
//!
//! Its own module, at the bottom of the crate, so that the low layers
//! (`http`) and the high ones (`policy`, `server`, the loop) share it without
//! an arrow back to `config`. `config` re-exports it, as its settings are
//! what most deadlines are made of. No clock is read here.

use std::time::{Duration, Instant};

/// `now + d`, never a panic: a sum past what an `Instant` can hold is
/// "far in the future" (100 years on), else `now`. Settings are bounded (at
/// most 10 years), so this is a second line of defence for every deadline
/// made of a configured duration.
pub fn instant_after(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(now)
}
