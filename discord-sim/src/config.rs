//! Simulator configuration.

use std::time::Duration;

use crate::rest::RestLimits;

/// Configuration of a [`Simulator`](crate::Simulator).
///
/// Build one with struct-update syntax so new fields keep old call sites compiling:
///
/// ```
/// let config = shardline_discord_sim::SimConfig {
///     shard_total: 4,
///     ..Default::default()
/// };
/// assert_eq!(config.token, "sim-token");
/// ```
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Bot token that IDENTIFY, RESUME and `GET /gateway/bot` must present (with or without
    /// a leading `Bot `).
    pub token: String,
    /// Number of shards the bot is expected to run (`shard[1]` of IDENTIFY must equal it).
    pub shard_total: u32,
    /// Discord's `max_concurrency`: identify buckets are `shard_id % max_concurrency`.
    pub max_concurrency: u32,
    /// Heartbeat interval announced in HELLO. The simulator does not enforce it.
    pub heartbeat_interval: Duration,
    /// Number of guilds listed (as unavailable) in each shard's READY.
    pub guilds_per_shard: u32,
    /// Whether a GUILD_CREATE follows READY for each of the shard's guilds.
    pub lazy_load_guilds: bool,
    /// How many already-delivered frames a RESUME replays again before the missed ones,
    /// to simulate Discord's duplicate replays.
    pub replay_overlap: u64,
    /// Number of dispatches each session keeps for replay; a RESUME older than that gets
    /// an op 9 (not resumable).
    pub retained_log: usize,
    /// Whether every dispatch is kept for [`Simulator::sent`](crate::Simulator::sent).
    /// Long-running servers (the binary) turn it off to bound memory.
    pub record_sent: bool,
    /// TCP port to listen on at 127.0.0.1 (0 picks a free one).
    pub port: u16,
    /// How long each REST request takes to answer, drawn uniformly per request.
    pub rest_latency: RestLatency,
    /// Discord's REST limits (and gateway op 8's), enforced and recorded.
    pub rest_limits: RestLimits,
}

/// The time Discord's REST API takes to answer one request: uniform between `min` and
/// `max`. Discord answers in about 50-150 ms from a cloud region, which is the
/// default; a simulator that answers at once hides every bug where a client sends
/// one request at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestLatency {
    /// Fastest answer.
    pub min: Duration,
    /// Slowest answer.
    pub max: Duration,
}

impl RestLatency {
    /// Discord-like: 50-150 ms.
    pub const DISCORD: Self = Self::between_ms(50, 150);
    /// Answers at once (micro-benchmarks of the client side only).
    pub const NONE: Self = Self::between_ms(0, 0);

    /// Uniform between `min_ms` and `max_ms` milliseconds.
    pub const fn between_ms(min_ms: u64, max_ms: u64) -> Self {
        Self {
            min: Duration::from_millis(min_ms),
            max: Duration::from_millis(max_ms),
        }
    }

    /// One draw.
    pub fn sample(&self, rng: &mut impl rand::Rng) -> Duration {
        if self.max <= self.min {
            return self.min;
        }
        rng.random_range(self.min..=self.max)
    }
}

impl std::str::FromStr for RestLatency {
    type Err = String;

    /// `"100"` (fixed) or `"50-150"` (uniform), in milliseconds.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ms = |v: &str| {
            v.trim()
                .parse::<u64>()
                .map_err(|_| format!("{s:?} is not a latency in milliseconds (100 or 50-150)"))
        };
        let (min, max) = match s.split_once('-') {
            Some((a, b)) => (ms(a)?, ms(b)?),
            None => (ms(s)?, ms(s)?),
        };
        if min > max {
            return Err(format!("{s:?}: the minimum is above the maximum"));
        }
        Ok(Self::between_ms(min, max))
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            token: "sim-token".to_owned(),
            shard_total: 2,
            max_concurrency: 1,
            heartbeat_interval: Duration::from_millis(41_250),
            guilds_per_shard: 3,
            lazy_load_guilds: true,
            replay_overlap: 0,
            retained_log: 1_000_000,
            record_sent: true,
            port: 0,
            rest_latency: RestLatency::DISCORD,
            rest_limits: RestLimits::default(),
        }
    }
}

impl SimConfig {
    /// Whether `presented` (as sent by a client, maybe prefixed with `Bot `) is the token.
    pub fn token_matches(&self, presented: &str) -> bool {
        let presented = presented.strip_prefix("Bot ").unwrap_or(presented);
        let expected = self.token.strip_prefix("Bot ").unwrap_or(&self.token);
        presented == expected
    }
}

/// First millisecond offset (since the Discord epoch) used for synthetic guild snowflakes.
const GUILD_BASE_MS: u64 = 300_000_000_000;

/// The `k`-th (0-based) synthetic guild id that maps to `shard` out of `total` shards.
///
/// Ids are `(GUILD_BASE_MS + i) << 22`, so `(id >> 22) % total == shard` holds by
/// construction. The first `guilds_per_shard` of them are the shard's READY guilds.
pub fn synthetic_guild(shard: u32, total: u32, k: u64) -> u64 {
    let total = u64::from(total.max(1));
    let first = (u64::from(shard) + total - GUILD_BASE_MS % total) % total;
    (GUILD_BASE_MS + first + k * total) << 22
}

/// Shard that Discord routes `guild_id` to.
pub fn shard_for_guild(guild_id: u64, total: u32) -> u32 {
    ((guild_id >> 22) % u64::from(total.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_guilds_map_to_their_shard() {
        for total in [1, 2, 3, 16] {
            for shard in 0..total {
                for k in 0..10 {
                    assert_eq!(
                        shard_for_guild(synthetic_guild(shard, total, k), total),
                        shard
                    );
                }
            }
        }
    }

    #[test]
    fn rest_latency_parses_fixed_and_ranges() {
        assert_eq!("100".parse(), Ok(RestLatency::between_ms(100, 100)));
        assert_eq!("50-150".parse(), Ok(RestLatency::between_ms(50, 150)));
        assert!("150-50".parse::<RestLatency>().is_err());
        assert!("fast".parse::<RestLatency>().is_err());
        let mut rng = rand::rng();
        for _ in 0..100 {
            let d = RestLatency::DISCORD.sample(&mut rng);
            assert!(d >= Duration::from_millis(50) && d <= Duration::from_millis(150));
        }
        assert_eq!(RestLatency::NONE.sample(&mut rng), Duration::ZERO);
    }

    #[test]
    fn token_accepts_bot_prefix() {
        let c = SimConfig::default();
        assert!(c.token_matches("sim-token"));
        assert!(c.token_matches("Bot sim-token"));
        assert!(!c.token_matches("other"));
    }
}
