//! The gateway process: connect, reconcile, run shards, shut down cleanly.

use std::sync::Arc;
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::{self, kv};
use shardline_jetstream::{Change, ConnectOptions, ReconcileOptions};
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
use crate::publisher::{Drain, Publisher};
use crate::shard::{ShardContext, ShardExit, fatal_close_reason, run_shard};
use crate::{Config, commands, jetstream_stats, metrics, sessions};

/// How long shutdown waits for outstanding publish acks while connected to NATS.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// The same when the connection is down: room for a reconnect that is under way.
const DRAIN_TIMEOUT_DISCONNECTED: Duration = Duration::from_secs(2);
/// How long shutdown waits for the final session writes, and for the last flush.
/// With the shards' close (5 s) and the drain, SIGTERM ends the process within about
/// 23 s whatever the broker does (8 s when it is away); what was not acknowledged by
/// then stays above the stored floors, and the next start resumes it.
const SAVE_TIMEOUT: Duration = Duration::from_secs(5);
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest time between two writes of a quiet shard's unchanged session.
const MAX_REFRESH: Duration = Duration::from_secs(20);

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
    // Any (re)connection, a failed publish too, is reason to check the topology.
    let check_topology = Arc::new(Notify::new());
    let options = ConnectOptions {
        url: config.nats_url.clone(),
        name: "shardline-gateway".to_owned(),
        auth: config.nats_auth.clone(),
    };
    let client = shardline_jetstream::connect_observed(&options, Some(check_topology.clone()))
        .await
        .map_err(|e| {
            Error::new(
                ErrorKind::Nats,
                format!("connecting to {}: {e}", config.nats_url),
            )
        })?;
    health.set_nats(client.clone());
    tokio::spawn(
        health
            .clone()
            .answer_status(client.clone(), background.clone()),
    );
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
    tokio::spawn(repair(
        js.clone(),
        replicas,
        check_topology.clone(),
        background.clone(),
    ));

    let (publisher, drain) = Publisher::new(
        client.clone(),
        config.max_inflight,
        config.max_inflight_bytes,
        config.publish_give_up_after(),
        check_topology,
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
    // A third of the age limit: a quiet shard's stored session never looks too old.
    let refresh = (config.session_max_age() / 3).clamp(sessions::SAVE_INTERVAL, MAX_REFRESH);
    let saver = tokio::spawn(sessions::save_periodically(
        store.clone(),
        plan.shard_total,
        progress.clone(),
        refresh,
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
    wind_down(
        &client,
        drain,
        saver,
        stop_saving,
        &store,
        plan.shard_total,
        &progress,
    )
    .await;
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

/// After the shards stopped: waits for outstanding acks, then stores every shard's
/// session and flushes, each step bounded, the waits shortened while NATS is away.
async fn wind_down(
    client: &async_nats::Client,
    drain: Drain,
    mut saver: tokio::task::JoinHandle<()>,
    stop_saving: CancellationToken,
    store: &kv::Store,
    shard_total: u32,
    progress: &[(u32, Progress)],
) {
    let connected = || client.connection_state() == State::Connected;
    let limit = if connected() {
        DRAIN_TIMEOUT
    } else {
        DRAIN_TIMEOUT_DISCONNECTED
    };
    if tokio::time::timeout(limit, drain.wait()).await.is_err() {
        tracing::warn!(
            limit = ?limit,
            connected = connected(),
            "publish acks still outstanding; the stored sessions resume before them"
        );
    }
    stop_saving.cancel();
    if tokio::time::timeout(Duration::from_secs(1), &mut saver)
        .await
        .is_err()
    {
        saver.abort(); // A write stuck on an absent broker.
    }
    if !connected() {
        tracing::error!(
            "NATS is away: the sessions stored last (at most a second old) stand; the next start resumes from them"
        );
        return;
    }
    let save = sessions::save_all(store, shard_total, progress);
    if tokio::time::timeout(SAVE_TIMEOUT, save).await.is_err() {
        tracing::error!(
            "NATS did not take the final sessions in time; the next start resumes from the last stored ones"
        );
    }
    let _ = tokio::time::timeout(FLUSH_TIMEOUT, client.flush()).await;
}

/// Checks the topology again, creating what is missing, whenever `check` is notified
/// (a reconnection, or a publish that failed in a way a lost topology explains), at
/// most once a second. A broker that restarted without its memory streams shows up as
/// "no stream", or, when a core subscriber listens on the subjects, as timeouts: the
/// subscriber takes every publish and never acknowledges it.
async fn repair(
    js: jetstream::Context,
    replicas: usize,
    check: Arc<Notify>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = check.notified() => {}
        }
        match shardline_jetstream::reconcile_streams(&js, &STREAMS, ReconcileOptions { replicas })
            .await
        {
            Ok(changes) => {
                for (stream, change) in changes {
                    if change != Change::Unchanged {
                        tracing::warn!(stream, ?change, "stream was missing or changed; repaired");
                        ::metrics::counter!(metrics::TOPOLOGY_REPAIRS, "stream" => stream)
                            .increment(1);
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, "checking the topology failed; retrying on the next failure")
            }
        }
        let _ = sessions::open(&js, replicas).await;
        let _ = identify::open(&js, replicas).await;
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
