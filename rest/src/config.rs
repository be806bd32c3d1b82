//! The proxy's settings: flags with environment fallbacks, validated at start.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use shardline_jetstream::{NatsAuth, Secret, secret_from_env_or_file};

use crate::error::{Error, ErrorKind};

/// Environment variable holding the bot token itself (never a flag).
pub const DISCORD_TOKEN_ENV: &str = "DISCORD_TOKEN";

/// Discord's request size limit ("the maximum request size when sending a message
/// is 25 MiB").
pub const DISCORD_MAX_BODY: usize = 25 * 1024 * 1024;

/// Everything the proxy needs to run.
#[derive(Clone, Debug, Parser)]
#[command(name = "shardline-rest", version, about)]
pub struct Config {
    /// The bot token requests without their own `Authorization` are sent with:
    /// from DISCORD_TOKEN or DISCORD_TOKEN_FILE, never a flag; filled in by
    /// [`Config::load`]. Without one, only requests that bring a token (or need
    /// none: webhooks, interactions) are authorized.
    #[arg(skip)]
    pub token: Option<Secret>,

    /// File holding the bot token (instead of DISCORD_TOKEN).
    #[arg(long, env = "DISCORD_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,

    /// Where to accept requests (`/api/v10/...`, `/metrics`, `/healthz`, `/readyz`).
    #[arg(long, env = "REST_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Where the other replicas reach this one (`host:port`). Default: the listen
    /// address, or, when it is unspecified (`0.0.0.0`), this host's address on the
    /// route to NATS with the listen port.
    #[arg(long, env = "REST_ADVERTISE_ADDR")]
    pub advertise_addr: Option<SocketAddr>,

    /// Discord's API: `https://discord.com`, or `http://host:port` (the simulator).
    #[arg(long, env = "REST_UPSTREAM_URL", default_value = "https://discord.com")]
    pub upstream_url: String,

    /// Requests per second per bot token (Discord's global limit: 50 unless Discord
    /// raised it for the bot). Interaction callbacks are not counted.
    #[arg(long, env = "REST_GLOBAL_LIMIT", default_value_t = 50)]
    pub global_limit: u32,

    /// The global limit is kept over a window this much longer than a second, so
    /// uneven network delays never put more than the limit into one second at Discord.
    #[arg(long, env = "REST_GLOBAL_MARGIN_MS", default_value_t = 50)]
    pub global_margin_ms: u64,

    /// Invalid requests (401, 403, non-shared 429) in 10 minutes, fleet-wide, at which
    /// the proxy stops sending (Cloudflare bans the address past 10,000).
    #[arg(long, env = "REST_INVALID_REQUEST_LIMIT", default_value_t = 5_000)]
    pub invalid_request_limit: u32,

    /// Longest a request waits for a rate limit unless it says otherwise
    /// (`X-Shardline-Max-Wait-Ms`); past it, it is refused at once with the time to retry.
    #[arg(long, env = "REST_MAX_WAIT_MS", default_value_t = 10_000)]
    pub max_wait_ms: u64,

    /// The same for interaction callbacks and webhook requests (follow-ups, edits):
    /// an interaction must not be held past Discord's 3 s.
    #[arg(long, env = "REST_MAX_WAIT_INTERACTION_MS", default_value_t = 2_000)]
    pub max_wait_interaction_ms: u64,

    /// Largest request body accepted, in bytes (Discord's limit: 25 MiB).
    #[arg(long, env = "REST_MAX_BODY_BYTES", default_value_t = DISCORD_MAX_BODY)]
    pub max_body_bytes: usize,

    /// How long Discord may take to answer, in milliseconds; then 504.
    #[arg(long, env = "REST_UPSTREAM_TIMEOUT_MS", default_value_t = 10_000)]
    pub upstream_timeout_ms: u64,

    /// Retries of an idempotent request (GET, HEAD, PUT, DELETE) that Discord answered
    /// with a 5xx. Other methods are never retried by the proxy.
    #[arg(long, env = "REST_UPSTREAM_RETRIES", default_value_t = 2)]
    pub upstream_retries: u32,

    /// Life of the enforcing instance's lease in NATS KV, in milliseconds: how long
    /// the replicas go without an enforcer when it dies. Refreshed every sixth of it,
    /// so the holder keeps sending through the 3-4 s a cluster takes to elect a new
    /// leader for the lease's bucket after a node dies.
    #[arg(long, env = "REST_LEASE_TTL_MS", default_value_t = 6_000)]
    pub lease_ttl_ms: u64,

    /// How often the enforcing instance copies its limit state to NATS KV, in
    /// milliseconds.
    #[arg(long, env = "REST_REPLICATE_INTERVAL_MS", default_value_t = 500)]
    pub replicate_interval_ms: u64,

    /// NATS server URL(s), comma separated.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,

    /// NATS credentials and TLS.
    #[command(flatten)]
    pub nats_auth: NatsAuth,

    /// Replicas of the lease and state KV buckets when created (3 on a cluster).
    #[arg(long, env = "STREAM_REPLICAS", default_value_t = 1)]
    pub stream_replicas: usize,

    /// How long SIGTERM lets requests in flight finish, in seconds.
    #[arg(long, env = "SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,
}

impl Config {
    /// Parses flags and environment, reads the token from DISCORD_TOKEN or
    /// DISCORD_TOKEN_FILE, and validates.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] with the reason.
    pub fn load() -> Result<Self, Error> {
        let mut config = Self::parse();
        config.token = secret_from_env_or_file(
            DISCORD_TOKEN_ENV,
            Secret::from_env(DISCORD_TOKEN_ENV),
            config.token_file.as_deref(),
        )
        .map_err(|e| Error::new(ErrorKind::Config, e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the settings against each other.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] naming the setting.
    pub fn validate(&self) -> Result<(), Error> {
        let fail = |m: &str| Err(Error::new(ErrorKind::Config, m));
        if self.global_limit == 0 {
            return fail("REST_GLOBAL_LIMIT must be at least 1");
        }
        if self.invalid_request_limit == 0 {
            return fail("REST_INVALID_REQUEST_LIMIT must be at least 1");
        }
        if self.lease_ttl_ms < 300 {
            return fail("REST_LEASE_TTL_MS must be at least 300");
        }
        if self.replicate_interval_ms == 0 || self.replicate_interval_ms >= self.lease_ttl_ms {
            return fail("REST_REPLICATE_INTERVAL_MS must be above 0 and below REST_LEASE_TTL_MS");
        }
        if self.upstream_timeout_ms == 0 {
            return fail("REST_UPSTREAM_TIMEOUT_MS must be above 0");
        }
        let upstream = self.upstream_url.trim_end_matches('/');
        let host = upstream
            .strip_prefix("https://")
            .or_else(|| upstream.strip_prefix("http://"));
        if host.is_none_or(|h| h.is_empty() || h.contains('/')) {
            return fail("REST_UPSTREAM_URL must be http(s)://host[:port] without a path");
        }
        Ok(())
    }

    /// A configuration for tests and embedding: `upstream_url` and `nats_url`,
    /// listening on a free loopback port, everything else at its default.
    pub fn new(upstream_url: &str, nats_url: &str) -> Self {
        let mut config = Self::parse_from(["shardline-rest"]);
        config.upstream_url = upstream_url.to_owned();
        config.nats_url = nats_url.to_owned();
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config
    }

    /// The global limit's window: a second plus the margin.
    pub fn global_window(&self) -> Duration {
        Duration::from_secs(1) + Duration::from_millis(self.global_margin_ms)
    }

    /// [`lease_ttl_ms`](Self::lease_ttl_ms) as a duration.
    pub fn lease_ttl(&self) -> Duration {
        Duration::from_millis(self.lease_ttl_ms)
    }

    /// [`replicate_interval_ms`](Self::replicate_interval_ms) as a duration.
    pub fn replicate_interval(&self) -> Duration {
        Duration::from_millis(self.replicate_interval_ms)
    }

    /// [`upstream_timeout_ms`](Self::upstream_timeout_ms) as a duration.
    pub fn upstream_timeout(&self) -> Duration {
        Duration::from_millis(self.upstream_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_never_printed_and_never_a_flag() {
        let mut config = Config::new("http://127.0.0.1:1", "nats://127.0.0.1:4222");
        config.token = Some(Secret::new("very-secret"));
        assert!(!format!("{config:?}").contains("very-secret"));
        for flag in ["--token", "--discord-token"] {
            assert!(Config::try_parse_from(["shardline-rest", flag, "x"]).is_err());
        }
    }

    #[test]
    fn inconsistent_settings_are_refused_by_name() {
        let base = Config::new("http://127.0.0.1:1", "nats://127.0.0.1:4222");
        assert!(base.validate().is_ok());
        type Change = fn(&mut Config);
        let cases: [(&str, Change); 4] = [
            ("REST_GLOBAL_LIMIT", |c| c.global_limit = 0),
            ("REST_REPLICATE_INTERVAL_MS", |c| {
                c.replicate_interval_ms = c.lease_ttl_ms
            }),
            ("REST_UPSTREAM_URL", |c| {
                c.upstream_url = "discord.com".into()
            }),
            ("REST_UPSTREAM_URL", |c| {
                c.upstream_url = "https://x/api".into()
            }),
        ];
        for (name, change) in cases {
            let mut config = base.clone();
            change(&mut config);
            let error = config.validate().unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Config);
            assert!(error.to_string().contains(name), "{error}");
        }
    }
}
