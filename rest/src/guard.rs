//! The invalid-request guard: 401, 403 and non-shared 429 answers over a sliding
//! ten minutes, counted per second of wall-clock time (so the window survives a
//! handover to another instance through the replicated state). At the threshold,
//! nothing is sent until enough of the window has aged out.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Discord's window for invalid requests.
pub const WINDOW: Duration = Duration::from_secs(600);

/// Counts of invalid answers per Unix second.
#[derive(Clone, Debug, Default)]
pub struct Guard {
    limit: u32,
    slots: VecDeque<(u64, u32)>,
    total: u32,
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

impl Guard {
    /// A guard tripping at `limit` invalid answers in the window.
    pub fn new(limit: u32) -> Self {
        Self {
            limit: limit.max(1),
            ..Self::default()
        }
    }

    fn prune(&mut self, now: u64) {
        while let Some(&(second, count)) = self.slots.front() {
            if second + WINDOW.as_secs() > now {
                break;
            }
            self.slots.pop_front();
            self.total -= count;
        }
    }

    /// Counts one invalid answer at Unix second `now`.
    pub fn record(&mut self, now: u64) {
        self.prune(now);
        match self.slots.back_mut() {
            Some((second, count)) if *second >= now => *count += 1,
            _ => self.slots.push_back((now, 1)),
        }
        self.total += 1;
    }

    /// Invalid answers in the window ending at `now`.
    pub fn count(&mut self, now: u64) -> u32 {
        self.prune(now);
        self.total
    }

    /// The guard's threshold.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// When tripped: how long until the window holds fewer than the threshold.
    pub fn tripped(&mut self, now: u64) -> Option<Duration> {
        self.prune(now);
        if self.total < self.limit {
            return None;
        }
        let mut left = self.total;
        for &(second, count) in &self.slots {
            left -= count;
            if left < self.limit {
                let free_at = second + WINDOW.as_secs();
                return Some(Duration::from_secs(free_at.saturating_sub(now).max(1)));
            }
        }
        Some(Duration::from_secs(1))
    }

    /// The per-second counts, for the replicated state.
    pub fn slots(&self) -> Vec<(u64, u32)> {
        self.slots.iter().copied().collect()
    }

    /// Adds counts from the replicated state (a successor's window starts with its
    /// predecessor's).
    pub fn restore(&mut self, slots: &[(u64, u32)], now: u64) {
        let mut merged: Vec<(u64, u32)> = self
            .slots
            .iter()
            .copied()
            .chain(slots.iter().copied())
            .collect();
        merged.sort_unstable();
        merged.dedup_by(|b, a| {
            if a.0 == b.0 {
                a.1 = a.1.max(b.1);
                true
            } else {
                false
            }
        });
        self.total = merged.iter().map(|s| s.1).sum();
        self.slots = merged.into();
        self.prune(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trips_at_the_limit_and_says_when_it_clears() {
        let mut g = Guard::new(3);
        g.record(1000);
        g.record(1000);
        assert_eq!(g.tripped(1000), None);
        g.record(1100);
        assert_eq!(g.count(1100), 3);
        // The two from second 1000 age out at 1600: then 1 is left.
        assert_eq!(g.tripped(1200), Some(Duration::from_secs(400)));
        assert_eq!(g.tripped(1600), None);
        assert_eq!(g.count(1600), 1);
    }

    #[test]
    fn a_successor_keeps_the_window() {
        let mut old = Guard::new(10);
        for _ in 0..4 {
            old.record(2000);
        }
        let mut new = Guard::new(10);
        new.record(2001);
        new.restore(&old.slots(), 2001);
        assert_eq!(new.count(2001), 5);
        new.restore(&old.slots(), 2001);
        assert_eq!(new.count(2001), 5, "restoring twice does not double count");
    }
}
