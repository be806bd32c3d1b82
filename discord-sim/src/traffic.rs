//! Generated traffic: event mixes, plans and pacing.

use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

use crate::fixtures::FUTURE_EVENT;

/// Which events a [`TrafficPlan`] generates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mix {
    /// Roughly Discord's mix for a busy bot: 55% MESSAGE_CREATE, 15% GUILD_MEMBER_UPDATE,
    /// 10% INTERACTION_CREATE, 8% MESSAGE_REACTION_ADD, 5% TYPING_START,
    /// 3% GUILD_MEMBER_ADD, 2% GUILD_MEMBER_REMOVE, 1% PRESENCE_UPDATE,
    /// 0.5% [`FUTURE_EVENT`], 0.5% big GUILD_CREATE (50-300 KiB).
    Realistic,
    /// Only this event name (payload from [`sample`](crate::sample)).
    Only(String),
}

impl Mix {
    /// Picks the next event name.
    pub fn pick(&self, rng: &mut impl Rng) -> &str {
        match self {
            Self::Only(name) => name,
            Self::Realistic => realistic_event(rng),
        }
    }
}

/// Draws an event name from the realistic mix (per-mille weights).
pub fn realistic_event(rng: &mut impl Rng) -> &'static str {
    const TABLE: &[(u32, &str)] = &[
        (550, "MESSAGE_CREATE"),
        (150, "GUILD_MEMBER_UPDATE"),
        (100, "INTERACTION_CREATE"),
        (80, "MESSAGE_REACTION_ADD"),
        (50, "TYPING_START"),
        (30, "GUILD_MEMBER_ADD"),
        (20, "GUILD_MEMBER_REMOVE"),
        (10, "PRESENCE_UPDATE"),
        (5, FUTURE_EVENT),
        (5, "GUILD_CREATE"),
    ];
    let mut x = rng.random_range(0..1000);
    for (w, name) in TABLE {
        if x < *w {
            return name;
        }
        x -= w;
    }
    "MESSAGE_CREATE"
}

/// A batch of generated dispatches for [`Simulator::play`](crate::Simulator::play).
#[derive(Debug, Clone)]
pub struct TrafficPlan {
    /// Shards to play on (each must have had a session).
    pub shards: Vec<u32>,
    /// Dispatches per shard; shards are interleaved round-robin.
    pub events_per_shard: usize,
    /// Total rate across shards; `None` = as fast as backpressure allows.
    pub rate_per_second: Option<u32>,
    /// Event mix.
    pub mix: Mix,
    /// Seed of the deterministic generator (`StdRng::seed_from_u64`).
    pub seed: u64,
}

impl Default for TrafficPlan {
    fn default() -> Self {
        Self {
            shards: vec![0],
            events_per_shard: 100,
            rate_per_second: None,
            mix: Mix::Realistic,
            seed: 1,
        }
    }
}

/// Paces a stream of events at a fixed average rate without a timer per event: event `k`
/// is due at `start + k / rate`; the pacer sleeps only when more than a millisecond ahead.
#[derive(Debug)]
pub struct Pacer {
    start: Instant,
    count: u64,
    rate: Option<u32>,
}

impl Pacer {
    /// A pacer for `rate` events per second (`None` or 0 = unpaced).
    pub fn new(rate: Option<u32>) -> Self {
        Self {
            start: Instant::now(),
            count: 0,
            rate: rate.filter(|r| *r > 0),
        }
    }

    /// Waits until the next event is due.
    pub async fn tick(&mut self) {
        if let Some(rate) = self.rate {
            let due = self.start + Duration::from_secs_f64(self.count as f64 / f64::from(rate));
            if due > Instant::now() + Duration::from_millis(1) {
                tokio::time::sleep_until(due).await;
            }
        }
        self.count += 1;
    }
}
