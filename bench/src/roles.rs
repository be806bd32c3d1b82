//! The child processes' roles: Shardline's gateway and workers (R) and the
//! baseline's no-op drain (B).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, consumer::PullConsumer};
use futures_util::StreamExt;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use shardline_proto::headers;
use shardline_proto::topology::{COMMAND_WORKER, ConsumerSpec, EVENT_WORKER};
use shardline_worker::commands::{DiscordHttp, InteractionHandler};
use shardline_worker::{Context as Meta, DecodeError, Handler, Handlers, Outcome, Worker};
use tokio_util::sync::CancellationToken;

use crate::child;
use crate::stats::{Latency, Recorder};

/// The gateway's settings in the benchmark.
#[derive(Clone, Debug)]
pub struct GatewayArgs {
    /// Bot token.
    pub token: String,
    /// Simulator URL.
    pub gateway_url: String,
    /// Shards (all run in this process).
    pub shard_total: u32,
    /// NATS server URL.
    pub nats_url: String,
    /// Cap on unacknowledged publishes.
    pub max_inflight: usize,
    /// Replicas of the streams (3 on the cluster), so the gateway keeps what the
    /// benchmark declared.
    pub replicas: usize,
}

/// Runs Shardline's gateway (the library's `run`) until stdin closes.
///
/// # Errors
///
/// If the gateway fails.
pub async fn gateway(args: GatewayArgs) -> anyhow::Result<()> {
    let mut config = shardline_gateway::Config::for_gateway(
        &args.token,
        &args.gateway_url,
        args.shard_total,
        &args.nats_url,
    );
    config.max_concurrency = Some(u16::try_from(args.shard_total).unwrap_or(u16::MAX));
    config.max_inflight = args.max_inflight;
    config.stream_replicas = args.replicas;
    // Every round starts fresh sessions, as the baseline does: no resume of the
    // previous round's stored session.
    config.session_max_age_secs = 0;
    let shutdown = CancellationToken::new();
    let gateway = tokio::spawn(shardline_gateway::run(config, shutdown.clone()));
    child::serve_until_stdin_closes(|_| {}).await;
    shutdown.cancel();
    gateway.await??;
    child::report(&serde_json::json!({}));
    Ok(())
}

/// What a consumer process reports.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ConsumerReport {
    /// Messages handled since `start`.
    pub handled: u64,
    /// Shardline-Received-At -> handler start (or message in hand, for B).
    pub latency: Latency,
    /// Shardline-Received-At -> stored by the stream (server clock), uncorrected.
    #[serde(default)]
    pub to_stored: Latency,
    /// Stored by the stream -> handler start (message in hand, for B), uncorrected.
    #[serde(default)]
    pub from_stored: Latency,
}

/// Settings of a consumer process.
#[derive(Clone, Debug)]
pub struct ConsumerArgs {
    /// NATS server URL.
    pub nats_url: String,
    /// Open-loop arrival interval for coordinated-omission correction (0 = none).
    pub interval: Duration,
    /// Defer every interaction through this Discord REST base (`127.0.0.1:PORT`).
    pub defer_via: Option<String>,
}

#[derive(Clone)]
struct Probe {
    latency: Recorder,
    to_stored: Recorder,
    from_stored: Recorder,
    handled: Arc<AtomicU64>,
}

impl Probe {
    fn new(interval: Duration) -> Self {
        Self {
            latency: Recorder::new(interval),
            to_stored: Recorder::new(Duration::ZERO),
            from_stored: Recorder::new(Duration::ZERO),
            handled: Arc::new(AtomicU64::new(0)),
        }
    }

    /// One message in hand: gateway read and stream store times in unix nanoseconds.
    fn hit(&self, received_at_nanos: Option<u64>, stored_at_nanos: Option<u64>) {
        if let Some(at) = received_at_nanos {
            self.latency.record_since_unix_nanos(at);
        }
        if let Some(stored) = stored_at_nanos {
            self.from_stored.record_since_unix_nanos(stored);
            if let Some(at) = received_at_nanos {
                self.to_stored.record(stored.saturating_sub(at));
            }
        }
        self.handled.fetch_add(1, Ordering::Relaxed);
    }

    fn restart(&self) {
        self.latency.reset();
        self.to_stored.reset();
        self.from_stored.reset();
        self.handled.store(0, Ordering::Relaxed);
    }

    fn report(&self) -> ConsumerReport {
        let handled = self.handled.load(Ordering::Relaxed);
        ConsumerReport {
            handled,
            latency: self.latency.summary(handled),
            to_stored: self.to_stored.summary(handled),
            from_stored: self.from_stored.summary(handled),
        }
    }
}

fn unix_nanos(at: Option<SystemTime>) -> Option<u64> {
    u64::try_from(at?.duration_since(UNIX_EPOCH).ok()?.as_nanos()).ok()
}

fn hit(probe: &Probe, meta: &Meta) {
    probe.hit(unix_nanos(meta.received_at()), unix_nanos(meta.stored_at));
}

/// A handler that does nothing but note when it started.
struct NoOp(Probe);

impl Handler for NoOp {
    type Payload = IgnoredAny;

    /// A no-op handler reads no payload, as the baseline's drain reads none.
    fn decode(_body: &[u8]) -> Result<IgnoredAny, DecodeError> {
        Ok(IgnoredAny)
    }

    async fn handle(&self, _payload: IgnoredAny, meta: &Meta) -> Outcome {
        hit(&self.0, meta);
        Outcome::Success
    }
}

/// Notes when a handler started, then runs it: the real command worker's handler,
/// measured as every other consumer is.
struct Probed<H>(Probe, H);

impl<H: Handler> Handler for Probed<H> {
    type Payload = H::Payload;

    fn decode(body: &[u8]) -> Result<H::Payload, DecodeError> {
        H::decode(body)
    }

    async fn handle(&self, payload: H::Payload, meta: &Meta) -> Outcome {
        hit(&self.0, meta);
        self.1.handle(payload, meta).await
    }
}

/// Runs Shardline's workers (event-worker and command-worker consumers) with no-op
/// handlers until stdin closes. A `start` line restarts the measurement.
///
/// # Errors
///
/// If NATS cannot be reached or a worker fails.
pub async fn worker(args: ConsumerArgs) -> anyhow::Result<()> {
    let probe = Probe::new(args.interval);
    let client = async_nats::connect(shardline_jetstream::server_urls(&args.nats_url)).await?;
    let shutdown = CancellationToken::new();
    let events = Handlers::new().on("events.>", NoOp(probe.clone()));
    // With a REST base, the command worker's own handler: defer through twilight-http
    // (callbacks without its rate limiter), run `/ping`, edit the response.
    let commands = match &args.defer_via {
        Some(base) => {
            let discord = DiscordHttp::new(Some(&format!("http://{base}")), None);
            let js = jetstream::new(client.clone());
            let handler =
                InteractionHandler::new(&js, discord, shardline_worker::commands::reference())
                    .await?;
            Handlers::new().on("commands.>", Probed(probe.clone(), handler))
        }
        None => Handlers::new().on("commands.>", NoOp(probe.clone())),
    };
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(Worker::new(&EVENT_WORKER, events).run(client.clone(), shutdown.clone()));
    tasks.spawn(Worker::new(&COMMAND_WORKER, commands).run(client.clone(), shutdown.clone()));
    child::serve_until_stdin_closes(|line| {
        if line == "start" {
            probe.restart();
        }
    })
    .await;
    let report = probe.report();
    shutdown.cancel();
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    child::report(&report);
    Ok(())
}

/// Baseline B's consumer: pulls from the same durable consumers and acks each
/// message as it arrives, doing nothing else. A `start` line restarts the measurement.
///
/// # Errors
///
/// If NATS cannot be reached or a consumer is missing.
pub async fn drain(args: ConsumerArgs) -> anyhow::Result<()> {
    let probe = Probe::new(args.interval);
    let client = async_nats::connect(shardline_jetstream::server_urls(&args.nats_url)).await?;
    let js = jetstream::new(client);
    for spec in [&EVENT_WORKER, &COMMAND_WORKER] {
        shardline_jetstream::reconcile_consumer(&js, spec).await?;
        let js = js.clone();
        let probe = probe.clone();
        tokio::spawn(async move {
            if let Err(e) = drain_one(&js, spec, probe).await {
                eprintln!("drain {}: {e:#}", spec.durable);
            }
        });
    }
    child::serve_until_stdin_closes(|line| {
        if line == "start" {
            probe.restart();
        }
    })
    .await;
    child::report(&probe.report());
    Ok(())
}

async fn drain_one(
    js: &jetstream::Context,
    spec: &'static ConsumerSpec,
    probe: Probe,
) -> anyhow::Result<()> {
    let consumer: PullConsumer = js
        .get_stream_no_info(spec.stream)
        .await?
        .get_consumer(spec.durable)
        .await
        .map_err(|e| anyhow::anyhow!("consumer {}: {e}", spec.durable))?;
    let batch = usize::try_from(spec.max_ack_pending).unwrap_or(1);
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(batch)
        .messages()
        .await?;
    while let Some(message) = messages.next().await {
        let message = message?;
        let at = message
            .headers
            .as_ref()
            .and_then(|h| h.get(headers::RECEIVED_AT))
            .and_then(|v| v.as_str().parse().ok());
        let stored = message
            .info()
            .ok()
            .and_then(|i| u64::try_from(i.published.unix_timestamp_nanos()).ok());
        probe.hit(at, stored);
        message
            .ack()
            .await
            .map_err(|e| anyhow::anyhow!("ack: {e}"))?;
    }
    Ok(())
}
