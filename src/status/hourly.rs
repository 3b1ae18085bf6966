//! [`Hourly`]: the status page's 24-hour figures kept in memory, one small
//! bucket per UTC hour: check latency (a [`Histogram`], for the p95 and the
//! max) and the server's memory (the largest usage sample of the hour).
//! Pure: the caller gives every time (UTC milliseconds).

use std::collections::VecDeque;

use crate::history::Histogram;

pub const HOUR_MS: i64 = 3_600_000;
/// Buckets kept: the last 24 hours and the current one.
const HOURS: usize = 25;

#[derive(Clone, Debug, Default)]
struct Hour {
    start: i64,
    latency: Histogram,
    memory_max: Option<u64>,
}

#[derive(Clone, Debug, Default)]
pub struct Hourly {
    hours: VecDeque<Hour>,
}

impl Hourly {
    fn hour(&mut self, t: i64) -> Option<&mut Hour> {
        let start = t.div_euclid(HOUR_MS) * HOUR_MS;
        // A wall clock gone back by more than a bucket: not recorded.
        if self.hours.back().is_some_and(|h| h.start > start) {
            return None;
        }
        if self.hours.back().is_none_or(|h| h.start < start) {
            self.hours.push_back(Hour {
                start,
                ..Hour::default()
            });
        }
        while self.hours.len() > HOURS
            || self
                .hours
                .front()
                .is_some_and(|h| h.start + (HOURS as i64) * HOUR_MS <= start)
        {
            self.hours.pop_front();
        }
        self.hours.back_mut()
    }

    /// A check's latency at `t`.
    pub fn latency(&mut self, t: i64, ms: f64) {
        if let Some(h) = self.hour(t) {
            h.latency.add(ms);
        }
    }

    /// A memory sample of the server at `t`.
    pub fn memory(&mut self, t: i64, bytes: u64) {
        if let Some(h) = self.hour(t) {
            h.memory_max = Some(h.memory_max.map_or(bytes, |m| m.max(bytes)));
        }
    }

    /// `(middle of the hour, p95 ms)` of the hours since `from`.
    pub fn latency_p95(&self, from: i64) -> Vec<(i64, f64)> {
        (self.hours.iter())
            .filter(|h| h.start + HOUR_MS > from)
            .filter_map(|h| Some((h.start + HOUR_MS / 2, h.latency.quantile(0.95)?)))
            .collect()
    }

    /// `(middle of the hour, max MiB)` of the hours since `from`.
    pub fn memory_mib(&self, from: i64) -> Vec<(i64, f64)> {
        (self.hours.iter())
            .filter(|h| h.start + HOUR_MS > from)
            .filter_map(|h| Some((h.start + HOUR_MS / 2, h.memory_max? as f64 / 1048576.0)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_bucket_per_hour_the_last_24_only() {
        let mut h = Hourly::default();
        for i in 0..48 {
            let t = i * HOUR_MS + 10;
            h.latency(t, 1.0 + i as f64);
            h.latency(t + 1000, 2.0);
            h.memory(t, (i as u64 + 1) << 20);
            h.memory(t + 5, 1 << 20);
        }
        assert!(h.hours.len() <= HOURS);
        let now = 48 * HOUR_MS;
        let lat = h.latency_p95(now - 24 * HOUR_MS);
        assert_eq!(lat.len(), 24);
        assert_eq!(lat[0].0, 24 * HOUR_MS + HOUR_MS / 2);
        // p95 of {25, 2}: the larger, as a histogram bucket capped at the max.
        assert!((lat[0].1 - 25.0).abs() < 3.0, "{lat:?}");
        let mem = h.memory_mib(now - 24 * HOUR_MS);
        assert_eq!(mem.len(), 24);
        assert_eq!(mem.last().unwrap().1, 48.0, "the hour's largest sample");
        // A clock gone back: not recorded, nothing breaks.
        let before = h.latency_p95(0);
        h.latency(0, 1.0);
        assert_eq!(h.latency_p95(0), before);
    }

    #[test]
    fn hours_without_a_figure_have_no_point() {
        let mut h = Hourly::default();
        h.latency(0, 3.0);
        h.latency(5 * HOUR_MS, 3.0);
        assert_eq!(h.latency_p95(0).len(), 2);
        assert!(h.memory_mib(0).is_empty());
    }
}
