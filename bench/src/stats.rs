//! Latency histograms and summaries of repeated runs.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// A shared latency recorder in nanoseconds, corrected for coordinated omission.
///
/// `expected_interval` is the open-loop arrival interval (1 / rate): a sample of `k`
/// intervals also records the `k - 1` samples a stalled closed-loop sender would have
/// missed (HdrHistogram's `record_correct`, in bounded steps). Zero turns it off.
#[derive(Clone)]
pub struct Recorder {
    histogram: Arc<Mutex<Histogram<u64>>>,
    expected_interval: u64,
}

/// Percentiles of a [`Recorder`], in microseconds.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Latency {
    /// Samples recorded (corrections excluded).
    pub count: u64,
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest.
    pub max_us: f64,
}

impl Recorder {
    /// A recorder for arrivals every `expected_interval`.
    pub fn new(expected_interval: Duration) -> Self {
        let histogram =
            Histogram::new_with_bounds(1_000, 120_000_000_000, 3).expect("valid histogram bounds");
        Self {
            histogram: Arc::new(Mutex::new(histogram)),
            expected_interval: u64::try_from(expected_interval.as_nanos()).unwrap_or(u64::MAX),
        }
    }

    /// Records the time from `since` (unix nanoseconds, e.g. a `Shardline-Received-At`
    /// header) to now.
    pub fn record_since_unix_nanos(&self, since: u64) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        self.record(now.saturating_sub(since));
    }

    /// Records one latency in nanoseconds.
    pub fn record(&self, nanos: u64) {
        let mut h = self.histogram.lock().unwrap_or_else(|e| e.into_inner());
        let value = nanos.clamp(1_000, 120_000_000_000);
        let interval = self.expected_interval;
        let _ = h.record(value);
        if interval == 0 || value <= interval {
            return;
        }
        // HdrHistogram's record_correct adds one sample per missed interval: value /
        // interval of them, millions when an overloaded run lags by seconds. Add them
        // in at most MAX_STEPS groups of equal count instead (same distribution, each
        // group recorded at its smallest value, so percentiles err low by < 1/MAX_STEPS).
        const MAX_STEPS: u64 = 1_000;
        let missed = value / interval - u64::from(value.is_multiple_of(interval));
        let per_step = missed.div_ceil(MAX_STEPS).max(1);
        let mut left = missed;
        let mut at = value - interval;
        while left > 0 {
            let n = per_step.min(left);
            let lowest = at.saturating_sub(interval * (n - 1)).max(1_000);
            let _ = h.record_n(lowest, n);
            left -= n;
            at = at.saturating_sub(interval * n);
        }
    }

    /// Forgets every sample (a new measurement starts).
    pub fn reset(&self) {
        self.histogram
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .reset();
    }

    /// The percentiles so far; `count` is the number of raw samples.
    pub fn summary(&self, raw_count: u64) -> Latency {
        let h = self.histogram.lock().unwrap_or_else(|e| e.into_inner());
        let us = |q: f64| h.value_at_quantile(q) as f64 / 1_000.0;
        Latency {
            count: raw_count,
            p50_us: us(0.5),
            p99_us: us(0.99),
            p999_us: us(0.999),
            max_us: h.max() as f64 / 1_000.0,
        }
    }
}

/// Median, minimum and maximum of repeated measurements.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Spread {
    /// Median (mean of the middle two for an even count).
    pub median: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
}

impl Spread {
    /// The spread of `values` (all zero when empty).
    pub fn of(values: &[f64]) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Self {
            median,
            min: v[0],
            max: v[n - 1],
        }
    }
}

impl Spread {
    /// `median (min-max)` with three decimals, for ratios.
    pub fn fmt_ratio(&self) -> String {
        format!("{:.3} ({:.3}-{:.3})", self.median, self.min, self.max)
    }
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.1} (min {:.1}, max {:.1})",
            self.median, self.min, self.max
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_of_odd_and_even() {
        let s = Spread::of(&[3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(Spread::of(&[1.0, 2.0, 3.0, 4.0]).median, 2.5);
    }

    #[test]
    fn correction_adds_missed_samples() {
        let r = Recorder::new(Duration::from_millis(1));
        for _ in 0..99 {
            r.record(100_000);
        }
        r.record(10_000_000);
        let mut exact = Histogram::<u64>::new_with_bounds(1_000, 120_000_000_000, 3).unwrap();
        for _ in 0..99 {
            exact.record(100_000).unwrap();
        }
        exact.record_correct(10_000_000, 1_000_000).unwrap();
        let ours = r.histogram.lock().unwrap();
        assert_eq!(ours.len(), exact.len());
        assert_eq!(ours.value_at_quantile(0.95), exact.value_at_quantile(0.95));
        drop(ours);
        // A minute late at 20,000/s: bounded work, same count as the exact correction.
        let lag = Recorder::new(Duration::from_micros(50));
        lag.record(60_000_000_000);
        assert_eq!(lag.histogram.lock().unwrap().len(), 1_200_000);
        // Ten intervals late: nine missed arrivals are filled in, so p99 moves up.
        assert!(r.summary(100).p99_us > 1_000.0);
        let plain = Recorder::new(Duration::ZERO);
        for _ in 0..99 {
            plain.record(100_000);
        }
        plain.record(10_000_000);
        assert!(plain.summary(100).p99_us < 200.0);
    }
}
