//! The gateway process: connect, reconcile, run shards, shut down cleanly.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use shardline_jetstream::{ConnectOptions, ReconcileOptions};
use shardline_proto::topology::STREAMS;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use twilight_gateway::{ConfigBuilder, Intents, Session, Shard, ShardId};

use crate::error::{Error, ErrorKind};
use crate::health::{self, Health};
use crate::identify::{self, NatsQueue};
use crate::plan::plan;
use crate::progress::Progress;
use crate::publisher::Publisher;
use crate::shard::{ShardContext, ShardExit, fatal_close_reason, run_shard};
use crate::{Config, commands, jetstream_stats, metrics, sessions};

/// How long shutdown waits for outstanding publish acks.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs the gateway until `shutdown` is cancelled (then closes every shard
/// resumably, waits for outstanding acks and stores each shard's session) or every
/// shard has failed.
///
/// # Errors
///
/// See [`ErrorKind`].
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    let plan = plan(&config).await?;
    let health = Health::new(&plan.shard_ids);
    // Stops the endpoints, command listeners and repair task when `run` returns.
    let background = CancellationToken::new();
    let _stop_background = background.clone().drop_guard();
    if let Some(addr) = config.metrics_addr {
        let metrics_error =
            |e: String| Error::new(ErrorKind::Metrics, format!("metrics on {addr}: {e}"));
        let handle = metrics::install().map_err(|e| metrics_error(e.to_string()))?;
        metrics::register(&plan.shard_ids);
        let bound = health::serve(addr, health.clone(), handle, background.clone())
            .await
            .map_err(|e| metrics_error(e.to_string()))?;
        tracing::info!(addr = %bound, "serving /metrics, /healthz and /readyz");
    }
    let client = shardline_jetstream::connect(&ConnectOptions {
        url: config.nats_url.clone(),
        name: "shardline-gateway".to_owned(),
        auth: config.nats_auth.clone(),
    })
    .await
    .map_err(|e| {
        Error::new(
            ErrorKind::Nats,
            format!("connecting to {}: {e}", config.nats_url),
        )
    })?;
    health.set_nats(client.clone());
    let js = jetstream::new(client.clone());
    let replicas = config.stream_replicas;
    shardline_jetstream::reconcile_streams(&js, &STREAMS, ReconcileOptions { replicas }).await?;
    let kv_error = |e: async_nats::Error| Error::new(ErrorKind::Kv, e.to_string());
    let store = sessions::open(&js, replicas).await.map_err(kv_error)?;
    let queue = NatsQueue::new(
        identify::open(&js, replicas).await.map_err(kv_error)?,
        plan.max_concurrency,
    );
    if config.metrics_addr.is_some() && config.jetstream_stats_interval_secs > 0 {
        let interval = Duration::from_secs(config.jetstream_stats_interval_secs);
        tokio::spawn(jetstream_stats::poll(
            js.clone(),
            interval,
            background.clone(),
        ));
    }
    let topology_lost = Arc::new(Notify::new());
    tokio::spawn(repair(
        js.clone(),
        replicas,
        topology_lost.clone(),
        background.clone(),
    ));

    let (publisher, drain) = Publisher::new(
        client.clone(),
        config.max_inflight,
        config.publish_give_up_after(),
        topology_lost,
    );
    let intents = Intents::from_bits_retain(config.intents);
    let mut shards = JoinSet::new();
    let mut progress = Vec::with_capacity(plan.shard_ids.len());
    tracing::info!(shards = ?plan.shard_ids, total = plan.shard_total, max_concurrency = plan.max_concurrency, "starting shards");
    for &id in &plan.shard_ids {
        let stored = sessions::load(&store, id, plan.shard_total, config.session_max_age()).await;
        let mut builder =
            ConfigBuilder::new(config.token.expose().to_owned(), intents).queue(queue.clone());
        if let Some(url) = &config.gateway_url {
            builder = builder.proxy_url(url.trim_end_matches('/').to_owned());
        }
        if let Some(stored) = &stored {
            builder = builder.session(Session::new(stored.sequence, stored.session_id.clone()));
            if let Some(url) = &stored.resume_url {
                builder = builder.resume_url(url.clone());
            }
        }
        let shard_progress = Progress::new(stored.as_ref());
        let (tx, commands) = mpsc::channel(1);
        commands::listen(client.clone(), id, tx, background.clone())
            .await
            .map_err(|e| Error::new(ErrorKind::Nats, format!("command subscription: {e}")))?;
        let shard = Shard::with_config(ShardId::new(id, plan.shard_total), builder.build());
        shards.spawn(run_shard(
            shard,
            ShardContext {
                publisher: publisher.clone(),
                progress: shard_progress.clone(),
                health: health.clone(),
                commands,
                shutdown: shutdown.child_token(),
            },
        ));
        progress.push((id, shard_progress));
    }
    drop(publisher);
    let stop_saving = CancellationToken::new();
    let saver = tokio::spawn(sessions::save_periodically(
        store.clone(),
        plan.shard_total,
        progress.clone(),
        stop_saving.clone(),
    ));

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
            "publish acks still outstanding after {DRAIN_TIMEOUT:?}; the stored sessions resume before them"
        );
    }
    stop_saving.cancel();
    let _ = saver.await;
    sessions::save_all(&store, plan.shard_total, &progress).await;
    let _ = client.flush().await;
    if !shutdown.is_cancelled() && fatal.len() == plan.shard_ids.len() {
        let codes: Vec<String> = fatal
            .iter()
            .map(|(shard, code)| {
                let code = code.map_or("none".to_owned(), |c| c.to_string());
                format!(
                    "shard {shard}: close code {code} ({})",
                    fatal_close_reason(code.parse().ok())
                )
            })
            .collect();
        return Err(Error::new(
            ErrorKind::AllShardsFailed,
            format!(
                "no shard can run; Discord closed every one for good: {}",
                codes.join("; ")
            ),
        ));
    }
    Ok(())
}

/// Reconciles the topology again whenever a publish finds no stream (a broker that
/// restarted without its memory streams), at most once a second.
async fn repair(
    js: jetstream::Context,
    replicas: usize,
    lost: Arc<Notify>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = lost.notified() => {}
        }
        tracing::warn!("a stream is missing; reconciling the topology again");
        if let Err(error) =
            shardline_jetstream::reconcile_streams(&js, &STREAMS, ReconcileOptions { replicas })
                .await
        {
            tracing::warn!(%error, "reconciling failed; retrying on the next missing stream");
        }
        let _ = sessions::open(&js, replicas).await;
        let _ = identify::open(&js, replicas).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
