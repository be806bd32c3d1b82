//! The gateway process: connect, reconcile, run shards, shut down cleanly.

use std::fmt;
use std::time::Duration;

use shardline_jetstream::{ConnectOptions, ReconcileOptions, TopologyError};
use shardline_proto::topology::STREAMS;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use twilight_gateway::queue::InMemoryQueue;
use twilight_gateway::{ConfigBuilder, Intents, Shard, ShardId};

use crate::publisher::Publisher;
use crate::shard::{ShardExit, run_shard};
use crate::{Config, metrics};

/// How long shutdown waits for outstanding publish acks.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);

/// What stopped the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The configuration is inconsistent.
    Config,
    /// NATS could not be reached at start.
    Nats,
    /// The JetStream topology could not be reconciled.
    Topology,
    /// Discord's REST API (shard count lookup) failed.
    Discord,
    /// Every shard was closed by Discord with a code that forbids reconnecting.
    AllShardsFailed,
    /// The metrics endpoint could not be served.
    Metrics,
}

/// A gateway error with its [`ErrorKind`].
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// What kind of error this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<TopologyError> for Error {
    fn from(e: TopologyError) -> Self {
        Self::new(
            ErrorKind::Topology,
            format!("{e}: {:?}", std::error::Error::source(&e)),
        )
    }
}

struct Plan {
    shard_total: u32,
    shard_ids: Vec<u32>,
    max_concurrency: u16,
}

/// Runs the gateway until `shutdown` is cancelled (then closes every shard
/// resumably and waits for outstanding acks) or every shard has failed.
///
/// # Errors
///
/// See [`ErrorKind`].
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    if let Some(addr) = config.metrics_addr {
        metrics::serve(addr)
            .map_err(|e| Error::new(ErrorKind::Metrics, format!("metrics on {addr}: {e}")))?;
        tracing::info!(%addr, "serving /metrics");
    }
    let plan = plan(&config).await?;
    let client = shardline_jetstream::connect(&ConnectOptions {
        url: config.nats_url.clone(),
        name: "shardline-gateway".to_owned(),
    })
    .await
    .map_err(|e| {
        Error::new(
            ErrorKind::Nats,
            format!("connecting to {}: {e}", config.nats_url),
        )
    })?;
    let js = async_nats::jetstream::new(client.clone());
    let options = ReconcileOptions {
        replicas: config.stream_replicas,
    };
    shardline_jetstream::reconcile_streams(&js, &STREAMS, options).await?;

    let (publisher, drain) = Publisher::new(client.clone(), config.max_inflight);
    let queue = InMemoryQueue::new(plan.max_concurrency, 1000, Duration::ZERO, 1000);
    let intents = Intents::from_bits_retain(config.intents);
    let mut shards = JoinSet::new();
    tracing::info!(shards = ?plan.shard_ids, total = plan.shard_total, "starting shards");
    for &id in &plan.shard_ids {
        let mut builder =
            ConfigBuilder::new(config.token.expose().to_owned(), intents).queue(queue.clone());
        if let Some(url) = &config.gateway_url {
            builder = builder.proxy_url(url.trim_end_matches('/').to_owned());
        }
        let shard = Shard::with_config(ShardId::new(id, plan.shard_total), builder.build());
        shards.spawn(run_shard(shard, publisher.clone(), shutdown.child_token()));
    }
    drop(publisher);

    let mut fatal = Vec::new();
    while let Some(exit) = shards.join_next().await {
        match exit {
            Ok(ShardExit::Shutdown) => {}
            Ok(ShardExit::Fatal { shard, code }) => fatal.push((shard, code)),
            Err(e) => tracing::error!(error = %e, "shard task panicked"),
        }
    }
    tracing::info!("shards stopped; waiting for outstanding publish acks");
    if tokio::time::timeout(DRAIN_TIMEOUT, drain.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "publish acks still outstanding after {DRAIN_TIMEOUT:?}; Discord will replay them on resume"
        );
    }
    let _ = client.flush().await;
    if !shutdown.is_cancelled() && fatal.len() == plan.shard_ids.len() {
        return Err(Error::new(
            ErrorKind::AllShardsFailed,
            format!("every shard was closed by Discord for good (shard, close code): {fatal:?}"),
        ));
    }
    Ok(())
}

async fn plan(config: &Config) -> Result<Plan, Error> {
    let (shard_total, max_concurrency) = match (config.shard_total, &config.gateway_url) {
        (Some(total), _) => (total, 1),
        (None, Some(_)) => {
            return Err(Error::new(
                ErrorKind::Config,
                "SHARD_TOTAL is required when DISCORD_GATEWAY_URL is set",
            ));
        }
        (None, None) => recommended(config).await?,
    };
    if shard_total == 0 {
        return Err(Error::new(
            ErrorKind::Config,
            "SHARD_TOTAL must be at least 1",
        ));
    }
    let shard_ids = match &config.shard_ids {
        Some(ids) => ids.ids().to_vec(),
        None => (0..shard_total).collect(),
    };
    if let Some(bad) = shard_ids.iter().find(|&&id| id >= shard_total) {
        return Err(Error::new(
            ErrorKind::Config,
            format!("shard {bad} is not below SHARD_TOTAL {shard_total}"),
        ));
    }
    Ok(Plan {
        shard_total,
        shard_ids,
        max_concurrency: config.max_concurrency.unwrap_or(max_concurrency).max(1),
    })
}

async fn recommended(config: &Config) -> Result<(u32, u16), Error> {
    let client = twilight_http::Client::new(config.token.expose().to_owned());
    let info = client
        .gateway()
        .authed()
        .await
        .map_err(|e| Error::new(ErrorKind::Discord, format!("GET /gateway/bot: {e}")))?
        .model()
        .await
        .map_err(|e| Error::new(ErrorKind::Discord, format!("GET /gateway/bot body: {e}")))?;
    let concurrency = info.session_start_limit.max_concurrency;
    tracing::info!(
        shards = info.shards,
        max_concurrency = concurrency,
        "Discord's recommendation"
    );
    Ok((info.shards, concurrency))
}
