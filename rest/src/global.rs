//! The global limit of one token: at most `limit` requests in any window of a
//! second plus a margin, kept by booking send times.
//!
//! Each request books the earliest time at which the window ending there holds
//! fewer than `limit` booked sends, then waits for it. Booked times never decrease,
//! so the queue is first come, first served, and a request knows at once how long
//! it would wait (and can be refused if that is past its budget) without waking
//! anyone else. A request whose task wakes late (a busy machine) would crowd the
//! window after it, so the actual send times are kept too and checked once more
//! right before sending.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// One token's global limit.
#[derive(Debug)]
pub struct Global {
    limit: usize,
    window: Duration,
    booked: VecDeque<Instant>,
    sent: VecDeque<Instant>,
    blocked_until: Option<Instant>,
}

impl Global {
    /// `limit` requests per `window`.
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit: limit.max(1) as usize,
            window,
            booked: VecDeque::new(),
            sent: VecDeque::new(),
            blocked_until: None,
        }
    }

    fn prune(&mut self, now: Instant) {
        while self.booked.front().is_some_and(|t| *t + self.window <= now) {
            self.booked.pop_front();
        }
    }

    /// The earliest time a request booked now could be sent.
    pub fn next_slot(&mut self, now: Instant) -> Instant {
        self.prune(now);
        let mut slot = now;
        if let Some(until) = self.blocked_until {
            slot = slot.max(until);
        }
        if self.booked.len() >= self.limit {
            slot = slot.max(self.booked[self.booked.len() - self.limit] + self.window);
        }
        slot
    }

    /// Books `slot` (from [`next_slot`](Self::next_slot)).
    pub fn book(&mut self, slot: Instant) {
        self.booked.push_back(slot);
    }

    /// Records a send at `now` if the window ending now has room by actual send
    /// times; otherwise, when it will.
    ///
    /// # Errors
    ///
    /// The instant to try again.
    pub fn send_now(&mut self, now: Instant) -> Result<(), Instant> {
        while self.sent.front().is_some_and(|t| *t + self.window <= now) {
            self.sent.pop_front();
        }
        if let Some(until) = self.blocked_until.filter(|u| *u > now) {
            return Err(until);
        }
        if self.sent.len() >= self.limit {
            return Err(self.sent[self.sent.len() - self.limit] + self.window);
        }
        self.sent.push_back(now);
        Ok(())
    }

    /// Discord answered a global 429: nothing before `until`.
    pub fn refused_until(&mut self, until: Instant) {
        self.blocked_until = Some(self.blocked_until.map_or(until, |b| b.max(until)));
    }

    /// Nothing before `until`, and the window counted as full until then: a
    /// successor that cannot know what its predecessor sent last.
    pub fn fill_until(&mut self, until: Instant) {
        self.refused_until(until);
    }

    /// Sends in the second before `now` over the limit (0 to 1).
    pub fn fill(&mut self, now: Instant) -> f64 {
        self.prune(now);
        let second = Duration::from_secs(1);
        while self.sent.front().is_some_and(|t| *t + self.window <= now) {
            self.sent.pop_front();
        }
        let recent = self
            .sent
            .iter()
            .filter(|t| **t <= now && now.duration_since(**t) < second)
            .count();
        (recent as f64 / self.limit as f64).min(1.0)
    }

    /// Booked send times still inside the window (for the replicated state).
    pub fn booked(&mut self, now: Instant) -> Vec<Instant> {
        self.prune(now);
        self.booked.iter().copied().collect()
    }

    /// Restores booked send times (sorted) from the replicated state; they count as
    /// sent too.
    pub fn restore(&mut self, mut booked: Vec<Instant>) {
        booked.sort_unstable();
        self.sent = booked.iter().copied().collect();
        self.booked = booked.into();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_window_ever_holds_more_than_the_limit() {
        let window = Duration::from_millis(1050);
        let mut g = Global::new(3, window);
        let now = Instant::now();
        let slots: Vec<Instant> = (0..10)
            .map(|_| {
                let s = g.next_slot(now);
                g.book(s);
                s
            })
            .collect();
        assert_eq!(&slots[..3], &[now, now, now]);
        assert_eq!(slots[3], now + window);
        assert_eq!(slots[6], now + 2 * window);
        assert!(
            slots.windows(2).all(|w| w[0] <= w[1]),
            "first come, first served"
        );
        for (i, s) in slots.iter().enumerate() {
            let in_window = slots[i..].iter().filter(|t| **t < *s + window).count();
            assert!(in_window <= 3);
        }
    }

    #[test]
    fn a_global_429_or_a_takeover_holds_everything() {
        let now = Instant::now();
        let mut g = Global::new(50, Duration::from_secs(1));
        let until = now + Duration::from_millis(700);
        g.fill_until(until);
        assert_eq!(g.next_slot(now), until);
        g.book(until);
        assert_eq!(g.send_now(now), Err(until));
        assert_eq!(g.send_now(until), Ok(()));
        assert_eq!(g.fill(until), 1.0 / 50.0);
    }

    #[test]
    fn a_late_send_holds_back_the_ones_booked_after_it() {
        let window = Duration::from_secs(1);
        let mut g = Global::new(2, window);
        let now = Instant::now();
        let late = now + Duration::from_millis(300);
        // Two booked at `now`; the first actually goes 300 ms late.
        assert_eq!(g.send_now(now), Ok(()));
        assert_eq!(g.send_now(late), Ok(()));
        // The third, booked for now + 1 s, must wait for the late one's window.
        assert_eq!(g.send_now(now + window), Ok(()));
        assert_eq!(g.send_now(now + window), Err(late + window));
    }
}
