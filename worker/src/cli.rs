//! What every worker binary shares: flags, logging, signals.

use std::future::Future;
use std::net::SocketAddr;

use clap::Parser;
use shardline_jetstream::{ConnectOptions, NatsAuth};
use tokio_util::sync::CancellationToken;

use crate::Worker;

/// Flags of a worker binary (each with an environment fallback).
#[derive(Clone, Debug, Parser)]
pub struct WorkerArgs {
    /// NATS server URL(s), comma separated.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,

    /// NATS credentials and TLS.
    #[command(flatten)]
    pub nats_auth: NatsAuth,

    /// Replicas of a stream this worker finds missing and creates (3 on a cluster).
    /// Existing streams are never changed: the gateway owns their settings.
    #[arg(long, env = "STREAM_REPLICAS", default_value_t = 1)]
    pub stream_replicas: usize,

    /// Where to serve Prometheus `/metrics` and `/healthz`. Default: not served.
    #[arg(long, env = "METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// How long SIGTERM lets in-flight handlers finish, in seconds, before their
    /// messages are returned to the stream.
    #[arg(long, env = "SHUTDOWN_GRACE_SECS", default_value_t = 20)]
    pub shutdown_grace_secs: u64,
}

/// Runs a worker as a process: logging, metrics, NATS, SIGTERM. `build` makes the
/// worker once NATS is connected (a handler may need a KV bucket).
///
/// # Errors
///
/// Fails if metrics cannot be served, NATS cannot be reached, or the worker fails.
pub async fn main<F, Fut>(name: &str, args: WorkerArgs, build: F) -> anyhow::Result<()>
where
    F: FnOnce(async_nats::Client) -> Fut,
    Fut: Future<Output = anyhow::Result<Worker>>,
{
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    if let Some(addr) = args.metrics_addr {
        let bound = crate::health::serve(addr).await?;
        tracing::info!(addr = %bound, "serving /metrics and /healthz");
    }
    let client = shardline_jetstream::connect(&ConnectOptions {
        url: args.nats_url,
        name: name.to_owned(),
        auth: args.nats_auth,
    })
    .await
    .map_err(|e| anyhow::anyhow!(e))?;
    let worker = build(client.clone())
        .await?
        .shutdown_grace(std::time::Duration::from_secs(args.shutdown_grace_secs))
        .stream_replicas(args.stream_replicas);
    let shutdown = CancellationToken::new();
    tokio::spawn(shutdown_on_signal(shutdown.clone()));
    worker.run(client, shutdown).await?;
    tracing::info!("worker stopped");
    Ok(())
}

async fn shutdown_on_signal(shutdown: CancellationToken) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("ctrl-c: shutting down"),
    }
    shutdown.cancel();
}
