//! The limit table behind the limiter's lock: what is known about routes and
//! bucket ids, every bucket and global window, the guard, rejected tokens, and the
//! quarantine of a successor that took over uncleanly.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio::time::Instant;

use crate::bucket::Bucket;
use crate::global::Global;
use crate::guard::Guard;
use crate::route::Route;

/// A bucket of one token (identity) and top-level resource.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct BucketKey {
    pub identity: String,
    /// Discord's bucket id, or `?METHOD template` while the route's is unknown.
    pub bucket: String,
    pub major: String,
}

/// Marks the bucket of a route whose bucket id is not known yet: `?METHOD template`.
const PROVISIONAL: char = '?';

/// The provisional bucket of the route with key `route_key`.
fn provisional(route_key: &str) -> String {
    format!("{PROVISIONAL}{route_key}")
}

/// What is known about a bucket id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BucketLimit {
    pub limit: u32,
    /// The longest `Reset-After` seen: the window's length.
    pub period: Duration,
}

/// A successor that could not know what its predecessor sent last: everything
/// waits as if the predecessor had used every limit right before `since`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Quarantine {
    pub since: Instant,
    /// For buckets whose window length is not known.
    pub default: Duration,
}

#[derive(Debug)]
pub(crate) struct State {
    /// Route key -> bucket id (`None`: the route has no bucket).
    pub routes: HashMap<String, Option<String>>,
    pub limits: HashMap<String, BucketLimit>,
    pub buckets: HashMap<BucketKey, Bucket>,
    pub globals: HashMap<String, Global>,
    pub guard: Guard,
    pub revoked: HashSet<String>,
    pub quarantine: Option<Quarantine>,
    global_limit: u32,
    window: Duration,
}

impl State {
    /// An empty table: `global_limit` requests per `window` per token, the guard at
    /// `invalid_limit`.
    pub(crate) fn new(global_limit: u32, window: Duration, invalid_limit: u32) -> Self {
        Self {
            routes: HashMap::new(),
            limits: HashMap::new(),
            buckets: HashMap::new(),
            globals: HashMap::new(),
            guard: Guard::new(invalid_limit),
            revoked: HashSet::new(),
            quarantine: None,
            global_limit,
            window,
        }
    }
    pub(crate) fn bucket_key(&self, identity: &str, route: &Route) -> Option<BucketKey> {
        let bucket = match self.routes.get(&route.key) {
            Some(None) => return None,
            Some(Some(hash)) => hash.clone(),
            None => provisional(&route.key),
        };
        Some(BucketKey {
            identity: identity.to_owned(),
            bucket,
            major: route.major.clone(),
        })
    }

    /// The bucket of `key`, created as a fresh window (with the bucket id's limit,
    /// when known) and held back during a quarantine.
    pub(crate) fn bucket(&mut self, key: &BucketKey, now: Instant) -> &mut Bucket {
        if !self.buckets.contains_key(key) {
            let known = self.limits.get(&key.bucket).copied();
            let mut bucket = Bucket::new(known.map(|l| l.limit), now);
            // Requests still in flight on a provisional bucket of a route that turned
            // out to be this bucket id are in Discord's count of this one.
            bucket.foreign = self.provisional_in_flight(key);
            if let Some(q) = self.quarantine {
                let until = q.since + known.map_or(q.default, |l| l.period);
                if until > now {
                    bucket.blocked_until = Some(until);
                }
            }
            self.buckets.insert(key.clone(), bucket);
        }
        self.buckets.get_mut(key).expect("inserted")
    }

    /// Requests in flight on the provisional buckets (`?route`) of `key`'s resource
    /// for the routes known to share its bucket id.
    fn provisional_in_flight(&self, key: &BucketKey) -> u32 {
        if key.bucket.starts_with(PROVISIONAL) {
            return 0;
        }
        self.routes
            .iter()
            .filter(|(_, id)| id.as_deref() == Some(key.bucket.as_str()))
            .filter_map(|(route, _)| {
                self.buckets.get(&BucketKey {
                    identity: key.identity.clone(),
                    bucket: provisional(route),
                    major: key.major.clone(),
                })
            })
            .map(|b| b.in_flight)
            .sum()
    }

    /// The global window of `identity`, created empty (full during a quarantine).
    pub(crate) fn global(&mut self, identity: &str) -> &mut Global {
        if !self.globals.contains_key(identity) {
            let mut global = Global::new(self.global_limit, self.window);
            if let Some(q) = self.quarantine {
                global.fill_until(q.since + self.window);
            }
            self.globals.insert(identity.to_owned(), global);
        }
        self.globals.get_mut(identity).expect("inserted")
    }
}
