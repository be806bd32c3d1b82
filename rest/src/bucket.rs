//! One route bucket of one token and top-level resource, as the enforcing instance
//! tracks it.
//!
//! Discord counts a bucket in windows: the first request opens one, `limit`
//! requests fit, and it resets `Reset-After` later. The enforcer is the fleet's only
//! sender for its tokens, so its own count of requests in the current window is
//! exact; Discord's `Remaining` only corrects for requests it did not send. Until a
//! bucket's limit is known, one request at a time goes out and its answer teaches
//! the rest. When a window resets, requests still in flight from the previous one
//! are counted in the new one: one may arrive after the reset.

use std::sync::Arc;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::headers::BucketInfo;

/// Whether a request may go now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ready {
    /// Now.
    Now,
    /// Not before this instant.
    At(Instant),
    /// When an answer in flight says more (the limit or the reset is not known yet).
    Answer,
}

/// A request's place in a bucket's window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket {
    epoch: u64,
    /// Its number among the requests counted in the window.
    seq: u32,
}

/// One bucket.
#[derive(Debug)]
pub struct Bucket {
    /// Requests per window, once known.
    pub limit: Option<u32>,
    /// When the current window ends, once known.
    pub reset_at: Option<Instant>,
    /// Requests counted in the current window (sent or about to be).
    pub used: u32,
    /// Requests Discord counted that this instance did not send.
    pub foreign: u32,
    /// Requests taken and not yet answered.
    pub in_flight: u32,
    /// Nothing goes before this (a 429, or a successor's cautious start).
    pub blocked_until: Option<Instant>,
    epoch: u64,
    /// Woken when an answer changes what is known.
    pub notify: Arc<Notify>,
    /// Last time a request was taken or answered (for forgetting idle buckets).
    pub last_used: Instant,
}

impl Bucket {
    /// A bucket in a fresh window with `limit` (when the bucket id's limit is known
    /// from another resource) or unknown.
    pub fn new(limit: Option<u32>, now: Instant) -> Self {
        Self {
            limit,
            reset_at: None,
            used: 0,
            foreign: 0,
            in_flight: 0,
            blocked_until: None,
            epoch: 0,
            notify: Arc::new(Notify::new()),
            last_used: now,
        }
    }

    /// A bucket as an answer described it: the answered request is in the count.
    pub fn from_info(info: &BucketInfo, reset_at: Instant, now: Instant) -> Self {
        Self {
            used: info.limit.saturating_sub(info.remaining),
            reset_at: Some(reset_at),
            ..Self::new(Some(info.limit), now)
        }
    }

    fn roll(&mut self, now: Instant) {
        if self.reset_at.is_some_and(|r| now >= r) {
            self.used = self.in_flight;
            self.foreign = 0;
            self.reset_at = None;
            self.epoch += 1;
        }
        if self.blocked_until.is_some_and(|b| now >= b) {
            self.blocked_until = None;
        }
    }

    /// Whether a request may be taken at `now`.
    pub fn ready(&mut self, now: Instant) -> Ready {
        self.roll(now);
        if let Some(until) = self.blocked_until {
            return Ready::At(until);
        }
        match self.limit {
            None if self.in_flight == 0 => Ready::Now,
            None => Ready::Answer,
            Some(limit) if self.used + self.foreign < limit => Ready::Now,
            Some(_) => match self.reset_at {
                Some(reset) => Ready::At(reset),
                // Every answer came without the bucket's headers: nothing will say
                // when the window ends, so one request goes to find out.
                None if self.in_flight == 0 => Ready::Now,
                None => Ready::Answer,
            },
        }
    }

    /// Counts a request in the window (call after [`ready`](Self::ready) said `Now`).
    pub fn take(&mut self, now: Instant) -> Ticket {
        self.used += 1;
        self.in_flight += 1;
        self.last_used = now;
        Ticket {
            epoch: self.epoch,
            seq: self.used,
        }
    }

    /// Returns a taken request that was never sent.
    pub fn give_back(&mut self, ticket: Ticket) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if ticket.epoch == self.epoch {
            self.used = self.used.saturating_sub(1);
        }
        self.notify.notify_waiters();
    }

    /// Learns from the answer to `ticket`'s request (`info` when it named this
    /// bucket), or from its failure (`None`: no answer, the count stays).
    pub fn answered(&mut self, ticket: Ticket, info: Option<(&BucketInfo, Instant)>, now: Instant) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.last_used = now;
        if let Some((info, reset_at)) = info {
            self.limit = Some(info.limit);
            if ticket.epoch == self.epoch {
                // Discord's window may end later than believed (never trust the earlier).
                self.reset_at = Some(self.reset_at.map_or(reset_at, |r| r.max(reset_at)));
                let counted = info.limit.saturating_sub(info.remaining);
                self.foreign = self.foreign.max(counted.saturating_sub(ticket.seq));
            }
        }
        self.notify.notify_waiters();
    }

    /// Learns from the answer to a request that was counted in another bucket (its
    /// route's provisional one, before the route's bucket id was known) although
    /// Discord counted it in this one: it counts here too, as one nobody here sent,
    /// in Discord's window (which may end later than this bucket believed).
    pub fn answered_elsewhere(&mut self, info: &BucketInfo, reset_at: Instant, now: Instant) {
        self.roll(now);
        self.limit = Some(info.limit);
        self.reset_at = Some(self.reset_at.map_or(reset_at, |r| r.max(reset_at)));
        let counted = info.limit.saturating_sub(info.remaining);
        self.foreign = self.foreign.max(counted.saturating_sub(self.used)).max(1);
        self.last_used = now;
        self.notify.notify_waiters();
    }

    /// Discord refused a request for this bucket: nothing until `until`.
    pub fn refused_until(&mut self, until: Instant) {
        self.blocked_until = Some(self.blocked_until.map_or(until, |b| b.max(until)));
        self.notify.notify_waiters();
    }

    /// Requests Discord may still take in the current window, as far as known.
    pub fn remaining(&self) -> u32 {
        self.limit
            .map_or(0, |l| l.saturating_sub(self.used + self.foreign))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn info(limit: u32, remaining: u32) -> BucketInfo {
        BucketInfo {
            bucket: "b".into(),
            limit,
            remaining,
            reset_after: Duration::from_secs(1),
            reset_at_unix: None,
        }
    }

    #[test]
    fn an_unknown_bucket_sends_one_at_a_time_until_an_answer_teaches_it() {
        let now = Instant::now();
        let mut b = Bucket::new(None, now);
        assert_eq!(b.ready(now), Ready::Now);
        let t = b.take(now);
        assert_eq!(b.ready(now), Ready::Answer);
        let reset = now + Duration::from_secs(1);
        b.answered(t, Some((&info(3, 2), reset)), now);
        assert_eq!((b.ready(now), b.remaining()), (Ready::Now, 2));
        b.take(now);
        b.take(now);
        assert_eq!(b.ready(now), Ready::At(reset));
        // After the reset, a fresh window.
        assert_eq!(b.ready(reset), Ready::Now);
        assert_eq!(
            b.remaining(),
            1,
            "two still in flight count in the new window"
        );
    }

    #[test]
    fn requests_discord_counted_but_we_did_not_send_are_foreign() {
        let now = Instant::now();
        let reset = now + Duration::from_secs(1);
        let mut b = Bucket::new(Some(5), now);
        let t = b.take(now);
        // Discord says 3 were counted when ours was the first: 2 foreign.
        b.answered(t, Some((&info(5, 2), reset)), now);
        assert_eq!((b.foreign, b.remaining()), (2, 2));
    }

    #[test]
    fn a_request_counted_in_another_bucket_counts_here_too() {
        let now = Instant::now();
        let reset = now + Duration::from_secs(1);
        let mut b = Bucket::new(Some(5), now);
        b.answered_elsewhere(&info(5, 4), reset, now);
        assert_eq!((b.foreign, b.remaining(), b.reset_at), (1, 4, Some(reset)));
        // Discord's count says more were sent than this bucket knows of.
        b.answered_elsewhere(&info(5, 1), reset, now);
        assert_eq!(b.remaining(), 1);
        assert_eq!(b.ready(reset), Ready::Now);
        assert_eq!(b.remaining(), 5, "a new window");
    }

    #[test]
    fn a_full_window_nobody_will_describe_sends_one_to_find_out() {
        let now = Instant::now();
        let mut b = Bucket::new(Some(1), now);
        let t = b.take(now);
        assert_eq!(b.ready(now), Ready::Answer);
        b.answered(t, None, now);
        assert_eq!(b.ready(now), Ready::Now);
    }

    #[test]
    fn a_refusal_blocks_and_a_returned_ticket_frees_its_place() {
        let now = Instant::now();
        let mut b = Bucket::new(Some(1), now);
        let t = b.take(now);
        b.give_back(t);
        assert_eq!(b.ready(now), Ready::Now);
        let later = now + Duration::from_millis(500);
        b.refused_until(later);
        assert_eq!(b.ready(now), Ready::At(later));
        assert_eq!(b.ready(later), Ready::Now);
    }
}
