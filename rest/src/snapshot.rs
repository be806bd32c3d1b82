//! The enforcer's limit state as the replicas share it in NATS KV, so a successor
//! starts where its predecessor stopped.
//!
//! A predecessor that stopped cleanly wrote its exact state last (`clean`): the
//! successor takes it as it is. Otherwise the predecessor may have sent after its
//! last copy, so the successor assumes the worst: every bucket used up until a full
//! window of its length after the takeover, and the global window full for one
//! window. Times travel as Unix milliseconds.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::bucket::Bucket;
use crate::limiter::{BucketKey, BucketLimit, Limiter, Quarantine};

/// Most buckets copied (the most recently used): the value must stay well under
/// NATS' 1 MiB payload limit.
const MAX_BUCKETS: usize = 4_000;

/// The longest a successor waits for a bucket whose window length it does not know
/// (and the shortest), after an unclean takeover.
const QUARANTINE_MAX: Duration = Duration::from_secs(60);
const QUARANTINE_MIN: Duration = Duration::from_secs(1);

/// One bucket in an open window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedBucket {
    identity: String,
    bucket: String,
    major: String,
    limit: u32,
    remaining: u32,
    reset_at_ms: Option<u64>,
    blocked_until_ms: Option<u64>,
}

/// One token's global window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedGlobal {
    identity: String,
    booked_ms: Vec<u64>,
}

/// The replicated state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The instance that wrote it.
    pub holder: String,
    /// When, in Unix milliseconds.
    pub written_at_ms: u64,
    /// Written by a holder that had stopped sending: exact.
    pub clean: bool,
    routes: Vec<(String, Option<String>)>,
    limits: Vec<(String, u32, u64)>,
    buckets: Vec<SavedBucket>,
    globals: Vec<SavedGlobal>,
    invalid: Vec<(u64, u32)>,
    revoked: Vec<String>,
}

/// Converts between this process's monotonic clock and Unix milliseconds.
#[derive(Clone, Copy, Debug)]
struct Clock {
    now: Instant,
    unix_ms: u64,
}

impl Clock {
    fn now() -> Self {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self {
            now: Instant::now(),
            unix_ms: unix.as_millis() as u64,
        }
    }

    fn to_unix(self, t: Instant) -> u64 {
        if t >= self.now {
            // Rounded up: a copied reset is never earlier than the original.
            self.unix_ms + t.duration_since(self.now).as_nanos().div_ceil(1_000_000) as u64
        } else {
            self.unix_ms
                .saturating_sub(self.now.duration_since(t).as_millis() as u64)
        }
    }

    fn instant_of(self, ms: u64) -> Instant {
        if ms >= self.unix_ms {
            self.now + Duration::from_millis(ms - self.unix_ms)
        } else {
            self.now
                .checked_sub(Duration::from_millis(self.unix_ms - ms))
                .unwrap_or(self.now)
        }
    }
}

impl Limiter {
    /// The state to replicate, written by `holder`; `clean` when it sends no more.
    pub fn snapshot(&self, holder: &str, clean: bool) -> Snapshot {
        let clock = Clock::now();
        let now = clock.now;
        let mut st = self.lock();
        let mut open: Vec<(&BucketKey, &Bucket)> = st
            .buckets
            .iter()
            .filter(|(_, b)| {
                b.limit.is_some()
                    && (b.reset_at.is_some_and(|r| r > now)
                        || b.blocked_until.is_some_and(|u| u > now))
            })
            .collect();
        open.sort_by_key(|(_, b)| std::cmp::Reverse(b.last_used));
        open.truncate(MAX_BUCKETS);
        let buckets = open
            .into_iter()
            .map(|(key, b)| SavedBucket {
                identity: key.identity.clone(),
                bucket: key.bucket.clone(),
                major: key.major.clone(),
                limit: b.limit.unwrap_or(0),
                remaining: b.remaining(),
                reset_at_ms: b.reset_at.map(|r| clock.to_unix(r)),
                blocked_until_ms: b.blocked_until.map(|u| clock.to_unix(u)),
            })
            .collect();
        let identities: Vec<String> = st.globals.keys().cloned().collect();
        let globals = identities
            .into_iter()
            .map(|identity| {
                let booked = st.global(&identity).booked(now);
                SavedGlobal {
                    booked_ms: booked.into_iter().map(|t| clock.to_unix(t)).collect(),
                    identity,
                }
            })
            .collect();
        Snapshot {
            holder: holder.to_owned(),
            written_at_ms: clock.unix_ms,
            clean,
            routes: st
                .routes
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            limits: st
                .limits
                .iter()
                .map(|(k, l)| (k.clone(), l.limit, l.period.as_millis() as u64))
                .collect(),
            buckets,
            globals,
            invalid: st.guard.slots(),
            revoked: st.revoked.iter().cloned().collect(),
        }
    }

    /// Starts from a predecessor's state (`None`: there was none).
    pub fn restore(&self, snapshot: Option<&Snapshot>) {
        let clock = Clock::now();
        let now = clock.now;
        let mut st = self.lock();
        let Some(snap) = snapshot else {
            return;
        };
        st.routes.extend(snap.routes.iter().cloned());
        for (bucket, limit, period_ms) in &snap.limits {
            st.limits.insert(
                bucket.clone(),
                BucketLimit {
                    limit: *limit,
                    period: Duration::from_millis(*period_ms),
                },
            );
        }
        st.guard.restore(&snap.invalid, clock.unix_ms / 1000);
        st.revoked.extend(snap.revoked.iter().cloned());
        if !snap.clean {
            let longest = st.limits.values().map(|l| l.period).max();
            let default = longest
                .unwrap_or(QUARANTINE_MIN)
                .clamp(QUARANTINE_MIN, QUARANTINE_MAX);
            st.quarantine = Some(Quarantine {
                since: now,
                default,
            });
            // Buckets and global windows are made on first use, held back then.
            return;
        }
        for saved in &snap.buckets {
            let key = BucketKey {
                identity: saved.identity.clone(),
                bucket: saved.bucket.clone(),
                major: saved.major.clone(),
            };
            let mut bucket = Bucket::new(Some(saved.limit), now);
            bucket.used = saved.limit.saturating_sub(saved.remaining);
            bucket.reset_at = saved.reset_at_ms.map(|ms| clock.instant_of(ms));
            bucket.blocked_until = saved.blocked_until_ms.map(|ms| clock.instant_of(ms));
            st.buckets.insert(key, bucket);
        }
        for saved in &snap.globals {
            let booked = saved
                .booked_ms
                .iter()
                .map(|ms| clock.instant_of(*ms))
                .collect();
            st.global(&saved.identity).restore(booked);
        }
    }
}

impl Snapshot {
    /// The state as stored in KV.
    pub fn to_bytes(&self) -> bytes::Bytes {
        serde_json::to_vec(self)
            .expect("a snapshot serializes")
            .into()
    }

    /// The state read from KV (`None` if it does not parse: then there is none).
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}
