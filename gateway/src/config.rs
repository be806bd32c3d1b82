//! Gateway configuration: CLI flags with environment fallbacks.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::Parser;
use shardline_jetstream::{NatsAuth, Secret, SecretError, secret_from_env_or_file};

/// Environment variable holding the bot token itself (never a flag).
pub const DISCORD_TOKEN_ENV: &str = "DISCORD_TOKEN";

/// A Discord bot token. Its `Debug` prints `<redacted>`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The secret itself, for the one place that sends it to Discord.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl FromStr for Token {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let token = s.trim();
        if token.is_empty() {
            return Err("the Discord token is empty".to_owned());
        }
        Ok(Self(token.to_owned()))
    }
}

/// The shards this process runs: a range `0-3` or a list `0,2,5`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardIds(Vec<u32>);

impl ShardIds {
    /// The shard ids, ascending, without repeats.
    pub fn ids(&self) -> &[u32] {
        &self.0
    }
}

impl FromStr for ShardIds {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut ids = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let parse = |n: &str| {
                n.trim()
                    .parse::<u32>()
                    .map_err(|_| format!("`{n}` in SHARD_IDS is not a shard number"))
            };
            match part.split_once('-') {
                Some((first, last)) => {
                    let (first, last) = (parse(first)?, parse(last)?);
                    if first > last {
                        return Err(format!("SHARD_IDS range `{part}` is backwards"));
                    }
                    ids.extend(first..=last);
                }
                None => ids.push(parse(part)?),
            }
        }
        if ids.is_empty() {
            return Err("SHARD_IDS names no shard".to_owned());
        }
        ids.sort_unstable();
        ids.dedup();
        Ok(Self(ids))
    }
}

/// Everything the gateway needs to run.
#[derive(Clone, Debug, Parser)]
#[command(name = "shardline-gateway", version, about)]
pub struct Config {
    /// Discord bot token (never logged): from the DISCORD_TOKEN environment variable
    /// or DISCORD_TOKEN_FILE, never a flag; filled in by [`Config::load`].
    #[arg(skip)]
    pub token: Token,

    /// File holding the Discord bot token (instead of DISCORD_TOKEN).
    #[arg(long, env = "DISCORD_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,

    /// Base WebSocket URL of the gateway, e.g. a simulator `ws://127.0.0.1:7878`.
    /// When set, Discord's REST API is not asked for anything and SHARD_TOTAL is required.
    #[arg(long, env = "DISCORD_GATEWAY_URL")]
    pub gateway_url: Option<String>,

    /// Shards the bot runs in all. Default: Discord's recommendation.
    #[arg(long, env = "SHARD_TOTAL")]
    pub shard_total: Option<u32>,

    /// Shards this process runs (`0-3` or `0,2`). Default: all.
    #[arg(long, env = "SHARD_IDS")]
    pub shard_ids: Option<ShardIds>,

    /// Discord's `max_concurrency` (identifies allowed per 5 s). Default: Discord's
    /// value from `/gateway/bot`, or 1 when SHARD_TOTAL is set.
    #[arg(long, env = "DISCORD_MAX_CONCURRENCY")]
    pub max_concurrency: Option<u16>,

    /// Gateway intents, as Discord's bit field. The default (GUILDS, GUILD_MEMBERS,
    /// GUILD_MESSAGES, GUILD_MESSAGE_REACTIONS = 1539) needs the privileged
    /// GUILD_MEMBERS intent enabled for the bot.
    #[arg(long, env = "DISCORD_INTENTS", default_value_t = 1539)]
    pub intents: u64,

    /// NATS server URL(s), comma separated.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,

    /// NATS credentials and TLS.
    #[command(flatten)]
    pub nats_auth: NatsAuth,

    /// Where to serve Prometheus `/metrics`, `/healthz` and `/readyz`. Default: not served.
    #[arg(long, env = "METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// Most publishes awaiting a JetStream ack; past it, shards stop reading.
    #[arg(long, env = "MAX_INFLIGHT_PUBLISHES", default_value_t = 4096)]
    pub max_inflight: usize,

    /// Most payload bytes awaiting a JetStream ack; past it, shards stop reading.
    /// Bounds memory in a storm of large events (1 MiB `GUILD_CREATE`s) where the
    /// count alone would not. Peak memory is about this plus one event per shard plus
    /// a constant (see docs/gateway.md).
    #[arg(long, env = "MAX_INFLIGHT_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_inflight_bytes: usize,

    /// Replicas of each stream when the gateway creates it (3 on a cluster).
    #[arg(long, env = "STREAM_REPLICAS", default_value_t = 1)]
    pub stream_replicas: usize,

    /// Seconds a stored session stays resumable. After a longer outage the shard
    /// identifies fresh (events in the gap are skipped, with a warning) instead of
    /// replaying a backlog. The default is no longer than the duplicate window of
    /// any stream the gateway publishes to (120 s): a replay is only guaranteed to
    /// be de-duplicated inside it. 0 never resumes across restarts.
    #[arg(long, env = "SESSION_MAX_AGE", default_value_t = 60)]
    pub session_max_age_secs: u64,

    /// Seconds a failed publish is retried (with backoff) before the event is given
    /// up on, counted in `gateway_events_dropped_total{reason="publish_failed"}`.
    #[arg(long, env = "PUBLISH_GIVE_UP_AFTER", default_value_t = 300)]
    pub publish_give_up_after_secs: u64,

    /// Seconds between polls of JetStream's stream and consumer state for `/metrics`
    /// (`nats_stream_*`, `nats_consumer_lag`, `nats_cluster_nodes`). Only with
    /// METRICS_ADDR; 0 turns polling off.
    #[arg(long, env = "JETSTREAM_STATS_INTERVAL", default_value_t = 5)]
    pub jetstream_stats_interval_secs: u64,
}

impl Config {
    /// Parses the flags and environment, then reads the token from DISCORD_TOKEN or
    /// DISCORD_TOKEN_FILE.
    ///
    /// # Errors
    ///
    /// Fails if neither or both are set, or the file cannot be read.
    pub fn load() -> Result<Self, SecretError> {
        let mut config = Self::parse();
        config.token = config.read_token(Secret::from_env(DISCORD_TOKEN_ENV))?;
        Ok(config)
    }

    /// The token from `value` (DISCORD_TOKEN) or [`token_file`](Self::token_file).
    ///
    /// # Errors
    ///
    /// Fails if neither or both are given, or the file cannot be read.
    pub fn read_token(&self, value: Option<Secret>) -> Result<Token, SecretError> {
        match secret_from_env_or_file(DISCORD_TOKEN_ENV, value, self.token_file.as_deref())? {
            Some(secret) => Ok(Token::new(secret.expose())),
            None => Err(SecretError::Missing {
                env: DISCORD_TOKEN_ENV.to_owned(),
            }),
        }
    }

    /// [`session_max_age_secs`](Self::session_max_age_secs) as a duration.
    pub fn session_max_age(&self) -> Duration {
        Duration::from_secs(self.session_max_age_secs)
    }

    /// [`publish_give_up_after_secs`](Self::publish_give_up_after_secs) as a duration.
    pub fn publish_give_up_after(&self) -> Duration {
        Duration::from_secs(self.publish_give_up_after_secs)
    }

    /// A configuration for a gateway against `gateway_url`, other settings at their defaults.
    pub fn for_gateway(token: &str, gateway_url: &str, shard_total: u32, nats_url: &str) -> Self {
        Self {
            token: Token::new(token),
            token_file: None,
            gateway_url: Some(gateway_url.to_owned()),
            shard_total: Some(shard_total),
            shard_ids: None,
            max_concurrency: None,
            intents: 1539,
            nats_url: nats_url.to_owned(),
            nats_auth: NatsAuth::default(),
            metrics_addr: None,
            max_inflight: 4096,
            max_inflight_bytes: 64 * 1024 * 1024,
            stream_replicas: 1,
            session_max_age_secs: 60,
            publish_give_up_after_secs: 300,
            jetstream_stats_interval_secs: 5,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_ids_ranges_and_lists() {
        assert_eq!("0-3".parse::<ShardIds>().unwrap().ids(), &[0, 1, 2, 3]);
        assert_eq!("5, 0,2,2".parse::<ShardIds>().unwrap().ids(), &[0, 2, 5]);
        assert_eq!("0-1,4".parse::<ShardIds>().unwrap().ids(), &[0, 1, 4]);
        assert!("3-1".parse::<ShardIds>().is_err());
        assert!("a".parse::<ShardIds>().is_err());
        assert!("".parse::<ShardIds>().is_err());
    }

    #[test]
    fn token_is_never_printed() {
        let mut config = Config::for_gateway("very-secret", "ws://x", 1, "nats://x");
        config.nats_auth = NatsAuth::user_password("gateway", "nats-secret");
        let printed = format!("{config:?}");
        assert!(!printed.contains("very-secret"), "{printed}");
        assert!(!printed.contains("nats-secret"), "{printed}");
        assert!(printed.contains("<redacted>"), "{printed}");
        assert_eq!(config.token.expose(), "very-secret");
    }

    #[test]
    fn secrets_are_not_flags() {
        for flag in ["--token", "--nats-password", "--discord-token"] {
            let parsed = Config::try_parse_from(["shardline-gateway", flag, "x"]);
            assert!(parsed.is_err(), "{flag} must not be accepted");
        }
    }

    #[test]
    fn token_from_a_file_or_the_environment_not_both() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "file-token\n").unwrap();
        let mut config = Config::try_parse_from(["shardline-gateway"]).unwrap();
        assert!(matches!(
            config.read_token(None),
            Err(SecretError::Missing { .. })
        ));
        assert_eq!(
            config.read_token(Some(Secret::new("env-token"))).unwrap(),
            Token::new("env-token")
        );
        config.token_file = Some(path);
        assert_eq!(config.read_token(None).unwrap(), Token::new("file-token"));
        assert!(matches!(
            config.read_token(Some(Secret::new("env-token"))),
            Err(SecretError::Ambiguous { .. })
        ));
    }
}
