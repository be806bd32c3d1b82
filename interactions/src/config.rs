//! Settings: flags with environment fallbacks, validated once at start.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use shardline_jetstream::NatsAuth;
use shardline_proto::interaction::FIRST_RESPONSE_DEADLINE;
use shardline_proto::topology::MAX_DUPLICATE_WINDOW;

use crate::error::{Error, ErrorKind};
use crate::signature::PublicKey;

/// Everything the interactions service needs to run.
#[derive(Clone, Debug, Parser)]
#[command(name = "shardline-interactions", version, about)]
pub struct Config {
    /// Where Discord's requests arrive (`POST /interactions`), with `/healthz` and
    /// `/readyz` for the load balancer.
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:8080")]
    pub listen_addr: SocketAddr,

    /// The application's public key, hex, as the Developer Portal shows it (public by
    /// nature, so a flag is fine). One of this or DISCORD_PUBLIC_KEY_FILE.
    #[arg(long, env = "DISCORD_PUBLIC_KEY", conflicts_with = "public_key_file")]
    pub public_key: Option<String>,

    /// File holding the application's public key (hex).
    #[arg(long, env = "DISCORD_PUBLIC_KEY_FILE")]
    pub public_key_file: Option<PathBuf>,

    /// NATS server URL(s), comma separated.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,

    /// NATS credentials and TLS.
    #[command(flatten)]
    pub nats_auth: NatsAuth,

    /// Replicas of the COMMANDS stream if this service finds it missing and creates it
    /// (3 on a cluster). An existing stream is never changed.
    #[arg(long, env = "STREAM_REPLICAS", default_value_t = 1)]
    pub stream_replicas: usize,

    /// Where to serve Prometheus `/metrics`, `/healthz` and `/readyz` (keep it off the
    /// public listener). Default: not served.
    #[arg(long, env = "METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// Milliseconds an interaction waits for a command worker's first response before
    /// the service answers a deferral itself; counted from the request's headers, so
    /// reading the body and publishing are inside it. At most 2900: the deferral must
    /// still reach Discord within its 3 s.
    #[arg(long, env = "INTERACTION_RESPONSE_BUDGET_MS", default_value_t = 2500)]
    pub response_budget_ms: u64,

    /// Most interactions waiting for a first response at once; more are answered 503.
    #[arg(long, env = "MAX_PENDING_INTERACTIONS", default_value_t = 4096)]
    pub max_pending: usize,

    /// Largest request body accepted, in bytes; larger is 413. Also capped by the NATS
    /// server's `max_payload` (less 4 KiB for headers).
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 256 * 1024)]
    pub max_body_bytes: usize,

    /// Milliseconds a connection may take to send a request's headers (also how long
    /// an idle keep-alive connection stays open); then 408 and the connection closes.
    #[arg(long, env = "HEADER_READ_TIMEOUT_MS", default_value_t = 5000)]
    pub header_read_timeout_ms: u64,

    /// Milliseconds a request may take to send its body once its headers are in; then
    /// 408. Less than the response budget.
    #[arg(long, env = "BODY_READ_TIMEOUT_MS", default_value_t = 2000)]
    pub body_read_timeout_ms: u64,

    /// Seconds `X-Signature-Timestamp` may be away from this host's clock, either way;
    /// further is 401. At most 120, the COMMANDS stream's duplicate window, so a
    /// replayed request that passes is always de-duplicated.
    #[arg(long, env = "SIGNATURE_MAX_AGE_SECS", default_value_t = 60)]
    pub signature_max_age_secs: u64,

    /// Seconds SIGTERM lets requests in flight finish (each is bounded by the budget).
    #[arg(long, env = "SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,
}

/// [`Config`] checked and read: durations, the parsed key.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub public_key: PublicKey,
    pub budget: Duration,
    pub max_pending: usize,
    pub max_body: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub max_skew: Duration,
    pub shutdown_grace: Duration,
}

impl Config {
    /// Settings for tests and embedding: `public_key` (hex), NATS at `nats_url`,
    /// both listeners on free loopback ports, every other setting at its default.
    pub fn new(public_key: &str, nats_url: &str) -> Self {
        let mut config = Self::parse_from(["shardline-interactions"]);
        config.public_key = Some(public_key.to_owned());
        config.nats_url = nats_url.to_owned();
        config.listen_addr = SocketAddr::from(([127, 0, 0, 1], 0));
        config.metrics_addr = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        config
    }

    /// Validates every setting and reads the public key.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`], naming the setting.
    pub(crate) fn settings(&self) -> Result<Settings, Error> {
        let config_error = |message: String| Error::new(ErrorKind::Config, message);
        let hex = match (&self.public_key, &self.public_key_file) {
            (Some(key), None) => key.clone(),
            (None, Some(path)) => std::fs::read_to_string(path).map_err(|e| {
                config_error(format!("DISCORD_PUBLIC_KEY_FILE {}: {e}", path.display()))
            })?,
            (None, None) => {
                return Err(config_error(
                    "DISCORD_PUBLIC_KEY or DISCORD_PUBLIC_KEY_FILE is required".to_owned(),
                ));
            }
            (Some(_), Some(_)) => {
                return Err(config_error(
                    "set one of DISCORD_PUBLIC_KEY and DISCORD_PUBLIC_KEY_FILE".to_owned(),
                ));
            }
        };
        let public_key: PublicKey = hex
            .trim()
            .parse()
            .map_err(|e| config_error(format!("the Discord public key: {e}")))?;
        let budget = Duration::from_millis(self.response_budget_ms);
        let latest = FIRST_RESPONSE_DEADLINE - Duration::from_millis(100);
        if budget < Duration::from_millis(100) || budget > latest {
            return Err(config_error(format!(
                "INTERACTION_RESPONSE_BUDGET_MS must be 100-{}, not {}",
                latest.as_millis(),
                self.response_budget_ms
            )));
        }
        let body_timeout = Duration::from_millis(self.body_read_timeout_ms);
        if body_timeout.is_zero() || body_timeout >= budget {
            return Err(config_error(format!(
                "BODY_READ_TIMEOUT_MS must be above 0 and below the response budget ({} ms)",
                self.response_budget_ms
            )));
        }
        if self.header_read_timeout_ms == 0 {
            return Err(config_error(
                "HEADER_READ_TIMEOUT_MS must be above 0".to_owned(),
            ));
        }
        let max_skew = Duration::from_secs(self.signature_max_age_secs);
        if max_skew.is_zero() || max_skew > MAX_DUPLICATE_WINDOW {
            return Err(config_error(format!(
                "SIGNATURE_MAX_AGE_SECS must be 1-{}",
                MAX_DUPLICATE_WINDOW.as_secs()
            )));
        }
        if self.max_pending == 0 {
            return Err(config_error(
                "MAX_PENDING_INTERACTIONS must be above 0".to_owned(),
            ));
        }
        if self.max_body_bytes < 1024 {
            return Err(config_error(
                "MAX_BODY_BYTES must be at least 1024".to_owned(),
            ));
        }
        Ok(Settings {
            public_key,
            budget,
            max_pending: self.max_pending,
            max_body: self.max_body_bytes,
            header_timeout: Duration::from_millis(self.header_read_timeout_ms),
            body_timeout,
            max_skew,
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

    fn kind(config: &Config) -> Option<ErrorKind> {
        config.settings().err().map(|e| e.kind())
    }

    #[test]
    fn defaults_are_valid() {
        let settings = Config::new(KEY, "nats://x").settings().unwrap();
        assert_eq!(settings.budget, Duration::from_millis(2500));
        assert_eq!(settings.max_skew, Duration::from_secs(60));
    }

    #[test]
    fn bad_settings_are_refused() {
        let base = Config::new(KEY, "nats://x");
        let mut c = base.clone();
        c.response_budget_ms = 3000;
        assert_eq!(kind(&c), Some(ErrorKind::Config));
        let mut c = base.clone();
        c.body_read_timeout_ms = 2500;
        assert_eq!(kind(&c), Some(ErrorKind::Config));
        let mut c = base.clone();
        c.signature_max_age_secs = 600;
        assert_eq!(kind(&c), Some(ErrorKind::Config));
        let mut c = base.clone();
        c.max_pending = 0;
        assert_eq!(kind(&c), Some(ErrorKind::Config));
        let mut c = base.clone();
        c.public_key = Some("not hex".to_owned());
        assert_eq!(kind(&c), Some(ErrorKind::Config));
        let mut c = base;
        c.public_key = None;
        assert_eq!(kind(&c), Some(ErrorKind::Config));
    }

    #[test]
    fn the_key_may_come_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, format!("{KEY}\n")).unwrap();
        let mut c = Config::new(KEY, "nats://x");
        c.public_key = None;
        c.public_key_file = Some(path);
        assert!(c.settings().is_ok());
    }
}
