//! The enforcing instance's limits: route buckets per token and top-level resource,
//! the global limit per token, the invalid-request guard and rejected tokens, under
//! one lock, with waiting outside it.
//!
//! [`Limiter::acquire`] decides at once whether a request can go before its
//! deadline (the caller's wait budget) and refuses it with the time to retry if
//! not; otherwise it waits for its bucket, books its global slot and returns a
//! [`Permit`] to send at [`Permit::send_at`]. [`Limiter::complete`] learns from the
//! answer.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use crate::bucket::{Bucket, Ready, Ticket};
use crate::guard::unix_now;
use crate::headers::RateLimitInfo;
use crate::route::{Route, RouteClass};
pub(crate) use crate::table::{BucketKey, BucketLimit, Quarantine, State};

/// How long an idle bucket is remembered after its window.
const FORGET_AFTER: Duration = Duration::from_secs(120);

/// Why a request is not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// It would wait longer than its budget; retry after this long.
    WaitBudget(Duration),
    /// The invalid-request guard is tripped for this long.
    InvalidRequests(Duration),
    /// Discord rejected the token (401); nothing is sent with it again.
    TokenRejected,
}

/// Leave to send one request.
#[derive(Debug)]
pub struct Permit {
    identity: String,
    route_key: String,
    major: String,
    bucket: Option<(BucketKey, Ticket)>,
    /// Whether the global limit applies.
    global: bool,
    /// When to send it.
    pub send_at: Instant,
}

/// What became of a permitted request.
#[derive(Debug)]
pub struct Answer<'a> {
    /// Discord's status.
    pub status: u16,
    /// What the answer said about limits.
    pub info: &'a RateLimitInfo,
    /// When the request was sent.
    pub sent: Instant,
    /// Whether it carried a bot token (a 401 then means the token is bad).
    pub with_token: bool,
}

/// The limits of every token the fleet sends with.
#[derive(Debug)]
pub struct Limiter {
    state: Mutex<State>,
}

impl Limiter {
    /// Limits with `global_limit` per `window` per token and the guard at
    /// `invalid_limit`.
    pub fn new(global_limit: u32, window: Duration, invalid_limit: u32) -> Self {
        Self {
            state: Mutex::new(State::new(global_limit, window, invalid_limit)),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until `route` may be sent for `identity`, or refuses at once when that
    /// would be after `deadline`.
    ///
    /// # Errors
    ///
    /// [`Refused`] with the reason and the time to retry.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe until it returns: nothing is counted before then.
    pub async fn acquire(
        &self,
        identity: &str,
        route: &Route,
        deadline: Instant,
    ) -> Result<Permit, Refused> {
        loop {
            let (until, notified) = {
                let mut st = self.lock();
                let now = Instant::now();
                if st.revoked.contains(identity) {
                    return Err(Refused::TokenRejected);
                }
                if let Some(after) = st.guard.tripped(unix_now()) {
                    return Err(Refused::InvalidRequests(after));
                }
                let key = st.bucket_key(identity, route);
                // Discord binds neither callbacks nor the token-authorized webhook
                // routes (interaction edits and follow-ups) to the global limit.
                let global = route.class == RouteClass::Bot;
                let slot = global.then(|| st.global(identity).next_slot(now));
                let ready = match &key {
                    Some(key) => st.bucket(key, now).ready(now),
                    None => Ready::Now,
                };
                match ready {
                    Ready::Now => {
                        let send_at = slot.unwrap_or(now);
                        // What can go now always goes, whatever the budget.
                        if send_at > now && send_at > deadline {
                            return Err(Refused::WaitBudget(send_at - now));
                        }
                        if global {
                            st.global(identity).book(send_at);
                        }
                        let bucket = key.map(|key| {
                            let ticket = st.bucket(&key, now).take(now);
                            (key, ticket)
                        });
                        return Ok(Permit {
                            identity: identity.to_owned(),
                            route_key: route.key.clone(),
                            major: route.major.clone(),
                            bucket,
                            global,
                            send_at,
                        });
                    }
                    Ready::At(at) => {
                        let at = slot.map_or(at, |s| s.max(at));
                        if at > deadline {
                            return Err(Refused::WaitBudget(at - now));
                        }
                        let notify = st
                            .bucket(key.as_ref().expect("a bucket"), now)
                            .notify
                            .clone();
                        (at, notify.notified_owned())
                    }
                    Ready::Answer => {
                        if now >= deadline {
                            // The answer that would tell is in flight: a guess.
                            return Err(Refused::WaitBudget(Duration::from_millis(100)));
                        }
                        let notify = st
                            .bucket(key.as_ref().expect("a bucket"), now)
                            .notify
                            .clone();
                        (deadline, notify.notified_owned())
                    }
                }
            };
            // Registered before the lock was released: no answer is missed.
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep_until(until) => {}
            }
        }
    }

    /// Waits, if need be, until the global window has room by actual send times,
    /// and records the send; call right before sending (nothing for callbacks).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the send is recorded only when this returns.
    pub async fn confirm_send(&self, permit: &Permit) {
        if !permit.global {
            return;
        }
        loop {
            let retry = {
                let mut st = self.lock();
                match st.global(&permit.identity).send_now(Instant::now()) {
                    Ok(()) => return,
                    Err(at) => at,
                }
            };
            tokio::time::sleep_until(retry).await;
        }
    }

    /// Returns a permit whose request was never sent.
    pub fn release(&self, permit: Permit) {
        let mut st = self.lock();
        if let Some((key, ticket)) = permit.bucket
            && let Some(bucket) = st.buckets.get_mut(&key)
        {
            bucket.give_back(ticket);
        }
    }

    /// Learns from the answer to a permitted request (`None`: no answer came).
    pub fn complete(&self, permit: Permit, answer: Option<Answer<'_>>) {
        let now = Instant::now();
        let mut st = self.lock();
        let Some(answer) = answer else {
            if let Some((key, ticket)) = permit.bucket
                && let Some(bucket) = st.buckets.get_mut(&key)
            {
                bucket.answered(ticket, None, now);
            }
            return;
        };
        let info = answer.info;
        let mut learned = None;
        if let Some(b) = &info.bucket {
            let reset_at = b.reset_instant(answer.sent, now);
            // Learned once per route and bucket id; after that only looked up.
            if st.routes.get(&permit.route_key).and_then(Option::as_ref) != Some(&b.bucket) {
                st.routes
                    .insert(permit.route_key.clone(), Some(b.bucket.clone()));
            }
            match st.limits.get_mut(&b.bucket) {
                Some(known) => {
                    known.limit = b.limit;
                    known.period = known.period.max(b.reset_after);
                }
                None => {
                    let limit = BucketLimit {
                        limit: b.limit,
                        period: b.reset_after,
                    };
                    st.limits.insert(b.bucket.clone(), limit);
                }
            }
            let key = BucketKey {
                identity: permit.identity.clone(),
                bucket: b.bucket.clone(),
                major: permit.major.clone(),
            };
            learned = Some((key, b, reset_at));
        } else if (200..300).contains(&answer.status) {
            st.routes.entry(permit.route_key.clone()).or_insert(None);
        }
        match (&permit.bucket, &learned) {
            (Some((key, ticket)), Some((learned_key, b, reset_at))) if key == learned_key => {
                if let Some(bucket) = st.buckets.get_mut(key) {
                    bucket.answered(*ticket, Some((b, *reset_at)), now);
                }
            }
            (taken, _) => {
                if let Some((key, ticket)) = taken
                    && let Some(bucket) = st.buckets.get_mut(key)
                {
                    bucket.answered(*ticket, None, now);
                }
                if let Some((key, b, reset_at)) = &learned {
                    match st.buckets.get_mut(key) {
                        Some(bucket) => bucket.answered_elsewhere(b, *reset_at, now),
                        // First answer for this bucket id and resource: it starts here.
                        None => {
                            let bucket = Bucket::from_info(b, *reset_at, now);
                            st.buckets.insert(key.clone(), bucket);
                        }
                    }
                }
            }
        }
        if answer.status == 429 {
            let until = now + info.retry_after.unwrap_or(Duration::from_secs(1));
            if info.global {
                st.global(&permit.identity).refused_until(until);
            } else if let Some((key, _, _)) = &learned {
                if let Some(bucket) = st.buckets.get_mut(key) {
                    bucket.refused_until(until);
                }
            } else if let Some((key, _)) = &permit.bucket
                && let Some(bucket) = st.buckets.get_mut(key)
            {
                bucket.refused_until(until);
            }
        }
        if info.is_invalid(answer.status) {
            st.guard.record(unix_now());
        }
        if answer.status == 401 && answer.with_token && st.revoked.insert(permit.identity.clone()) {
            tracing::error!(
                token = %permit.identity,
                "Discord answered 401 Unauthorized: the bot token is invalid or was reset; \
                 nothing more is sent with it (set a new token and restart the proxy)"
            );
        }
    }

    /// Forgets every bucket and global window (before a takeover restores its
    /// predecessor's); what was learned about routes, the guard's window and
    /// rejected tokens stay.
    pub fn reset(&self) {
        let mut st = self.lock();
        st.buckets.clear();
        st.globals.clear();
        st.quarantine = None;
    }

    /// Invalid answers in the guard's window, and its threshold.
    pub fn invalid_requests(&self) -> (u32, u32) {
        let mut st = self.lock();
        let limit = st.guard.limit();
        (st.guard.count(unix_now()), limit)
    }

    /// How full `identity`'s global window is (0 to 1).
    pub fn global_fill(&self, identity: &str) -> f64 {
        let mut st = self.lock();
        st.global(identity).fill(Instant::now())
    }

    /// Forgets buckets idle past their window and empty global windows.
    pub fn forget_idle(&self) {
        let now = Instant::now();
        let mut st = self.lock();
        st.buckets.retain(|_, b| {
            b.in_flight > 0
                || b.reset_at.is_some_and(|r| r + FORGET_AFTER > now)
                || b.blocked_until.is_some_and(|u| u > now)
                || b.last_used + FORGET_AFTER > now
        });
        st.globals
            .retain(|_, g| g.next_slot(now) > now || !g.booked(now).is_empty());
        if st
            .quarantine
            .is_some_and(|q| q.since + q.default + FORGET_AFTER < now)
        {
            st.quarantine = None;
        }
    }
}

#[cfg(test)]
#[path = "limiter_tests.rs"]
mod tests;
