//! The worker loop: pull with bounded concurrency, process, shut down cleanly.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::consumer::PullConsumer;
use shardline_jetstream::{ReconcileOptions, TopologyError};
use shardline_proto::topology::{self, ConsumerSpec, DEAD_LETTER, RetryPolicy};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::{Handlers, metrics as m};

/// Delay before a message a handler asked to retry is redelivered, unless its
/// consumer's [`RetryPolicy`] says otherwise.
pub const DEFAULT_RETRY_DELAY: Duration = topology::DEFAULT_RETRY.initial;
/// How long shutdown lets in-flight handlers finish before returning their messages.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(20);
/// How often consumer lag and ack-pending gauges are refreshed.
const STATS_INTERVAL: Duration = Duration::from_secs(5);

/// Why a worker stopped, or a dead-letter operation failed.
#[derive(Debug)]
pub struct Error(String);

impl Error {
    pub(crate) fn new(message: String) -> Self {
        Self(message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<TopologyError> for Error {
    fn from(e: TopologyError) -> Self {
        Self(e.to_string())
    }
}

/// What a worker runs with; shared by every in-flight message.
pub(crate) struct Settings {
    pub(crate) consumer: &'static ConsumerSpec,
    pub(crate) handlers: Handlers,
    pub(crate) retry: RetryPolicy,
    pub(crate) max_deliver: i64,
    pub(crate) shutdown_grace: Duration,
    pub(crate) stream_replicas: usize,
    /// Set when the worker runs (a recorder may be installed after `Worker::new`).
    pub(crate) metrics: Option<m::ConsumerMetrics>,
}

/// A worker: one durable consumer and the handlers for its subjects.
pub struct Worker {
    settings: Settings,
}

impl Worker {
    /// A worker on `consumer` (from `shardline_proto::topology`), with the consumer's
    /// retry policy and delivery limit.
    pub fn new(consumer: &'static ConsumerSpec, handlers: Handlers) -> Self {
        Self {
            settings: Settings {
                consumer,
                handlers,
                retry: consumer.retry,
                max_deliver: consumer.max_deliver.max(1),
                shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
                stream_replicas: 1,
                metrics: None,
            },
        }
    }

    /// Replaces the consumer's retry policy.
    pub fn retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.settings.retry = retry;
        self
    }

    /// Replicas of a stream this worker finds missing and creates (3 on a cluster).
    /// An existing stream is never changed: the gateway owns stream settings.
    pub fn stream_replicas(mut self, replicas: usize) -> Self {
        self.settings.stream_replicas = replicas.max(1);
        self
    }

    /// How long SIGTERM lets in-flight handlers run before their messages are
    /// returned to the stream (nak) for another worker.
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.settings.shutdown_grace = grace;
        self
    }

    /// Reconciles the consumer's stream, the dead-letter stream and the consumer, then
    /// handles messages until `shutdown` is cancelled; then stops pulling, lets
    /// in-flight handlers finish within the grace period and returns the rest.
    ///
    /// # Errors
    ///
    /// Fails if the topology cannot be reconciled or the consumer cannot be read.
    pub async fn run(
        self,
        client: async_nats::Client,
        shutdown: CancellationToken,
    ) -> Result<(), Error> {
        let spec = self.settings.consumer;
        let js = jetstream::new(client.clone());
        let replicas = self.settings.stream_replicas;
        let consumer = declare(&js, spec, replicas).await?;
        m::register(spec.durable);
        let mut settings = self.settings;
        settings.metrics = Some(m::ConsumerMetrics::new(spec.durable));
        let concurrency = usize::try_from(spec.max_ack_pending).unwrap_or(1).max(1);
        let stats = tokio::spawn(poll_stats(consumer.clone(), shutdown.clone()));
        let permits = Arc::new(Semaphore::new(concurrency));
        let tasks = TaskTracker::new();
        let abandon = CancellationToken::new();
        let settings = Arc::new(settings);
        tracing::info!(consumer = spec.durable, concurrency, "worker running");

        let pulling = crate::pull::Pulling {
            settings: settings.clone(),
            js: js.clone(),
            permits,
            concurrency,
            tasks: tasks.clone(),
            abandon: abandon.clone(),
        };
        let redeclare = || async {
            declare(&js, spec, replicas)
                .await
                .inspect_err(|error| {
                    tracing::warn!(consumer = spec.durable, %error, "declaring the consumer failed");
                })
                .ok()
        };
        pulling.run(consumer, &shutdown, redeclare).await;
        stats.abort();
        tracing::info!(
            consumer = spec.durable,
            in_flight = tasks.len(),
            "stopping: finishing in-flight messages"
        );
        tasks.close();
        if tokio::time::timeout(settings.shutdown_grace, tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                consumer = spec.durable,
                in_flight = tasks.len(),
                "grace period over: returning unfinished messages to the stream"
            );
            abandon.cancel();
            tasks.wait().await;
        }
        // Acks and naks are written to the client's buffer: send them before returning,
        // or a process that exits next would lose them.
        if let Err(error) = client.flush().await {
            tracing::warn!(consumer = spec.durable, %error, "flushing acks failed");
        }
        Ok(())
    }
}

/// Creates the consumer's stream and the dead-letter stream if missing, declares the
/// consumer, and opens it.
async fn declare(
    js: &jetstream::Context,
    spec: &'static ConsumerSpec,
    replicas: usize,
) -> Result<PullConsumer, Error> {
    let stream_spec = topology::stream(spec.stream).ok_or_else(|| {
        Error(format!(
            "consumer {} names no declared stream",
            spec.durable
        ))
    })?;
    // Create-only: a worker never changes a stream the gateway declared (an R3 stream
    // stays R3 whatever this worker was told).
    let options = ReconcileOptions { replicas };
    shardline_jetstream::ensure_stream(js, stream_spec, options).await?;
    shardline_jetstream::ensure_stream(js, &DEAD_LETTER, options).await?;
    shardline_jetstream::reconcile_consumer(js, spec).await?;
    js.get_stream_no_info(spec.stream)
        .await
        .map_err(|e| Error(format!("stream {}: {e}", spec.stream)))?
        .get_consumer(spec.durable)
        .await
        .map_err(|e| Error(format!("consumer {}: {e}", spec.durable)))
}

/// Publishes the consumer's lag (messages not yet delivered) and ack-pending count.
async fn poll_stats(consumer: PullConsumer, shutdown: CancellationToken) {
    let durable = consumer.cached_info().name.clone();
    let mut tick = tokio::time::interval(STATS_INTERVAL);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match consumer.get_info().await {
            Ok(info) => {
                metrics::gauge!(m::LAG, "consumer" => durable.clone()).set(info.num_pending as f64);
                metrics::gauge!(m::ACK_PENDING, "consumer" => durable.clone())
                    .set(info.num_ack_pending as f64);
            }
            Err(error) => tracing::debug!(consumer = %durable, %error, "consumer info failed"),
        }
    }
}
