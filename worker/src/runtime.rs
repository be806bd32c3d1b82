//! The worker loop: pull with bounded concurrency, process, shut down cleanly.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::PullConsumer};
use futures_util::{FutureExt, StreamExt};
use shardline_jetstream::{ReconcileOptions, TopologyError};
use shardline_proto::topology::{self, ConsumerSpec, DEAD_LETTER, RetryPolicy};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::{Handlers, metrics as m};

/// Delay before a message a handler asked to retry is redelivered, unless its
/// consumer's [`RetryPolicy`] says otherwise.
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(5);
/// How long shutdown lets in-flight handlers finish before returning their messages.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(20);
/// How often consumer lag and ack-pending gauges are refreshed.
const STATS_INTERVAL: Duration = Duration::from_secs(5);

/// Why a worker stopped.
#[derive(Debug)]
pub struct Error(String);

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
            },
        }
    }

    /// Replaces the consumer's retry policy.
    pub fn retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.settings.retry = retry;
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
        let js = jetstream::new(client);
        let stream_spec = topology::stream(spec.stream).ok_or_else(|| {
            Error(format!(
                "consumer {} names no declared stream",
                spec.durable
            ))
        })?;
        let options = ReconcileOptions::default();
        shardline_jetstream::reconcile_stream(&js, stream_spec, options).await?;
        shardline_jetstream::reconcile_stream(&js, &DEAD_LETTER, options).await?;
        shardline_jetstream::reconcile_consumer(&js, spec).await?;
        let consumer: PullConsumer = js
            .get_stream_no_info(spec.stream)
            .await
            .map_err(|e| Error(format!("stream {}: {e}", spec.stream)))?
            .get_consumer(spec.durable)
            .await
            .map_err(|e| Error(format!("consumer {}: {e}", spec.durable)))?;

        let concurrency = usize::try_from(spec.max_ack_pending).unwrap_or(1).max(1);
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(concurrency)
            .messages()
            .await
            .map_err(|e| Error(format!("pulling from {}: {e}", spec.durable)))?;
        let stats = tokio::spawn(poll_stats(consumer, shutdown.clone()));
        let permits = Arc::new(Semaphore::new(concurrency));
        let tasks = TaskTracker::new();
        let abandon = CancellationToken::new();
        let settings = Arc::new(self.settings);
        tracing::info!(consumer = spec.durable, concurrency, "worker running");

        let mut ended = false;
        loop {
            // Take a permit before pulling, so at most `concurrency` messages are held.
            let permit = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                permit = permits.clone().acquire_owned() => permit.expect("semaphore never closed"),
            };
            let message = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                message = messages.next() => message,
            };
            match message {
                Some(Ok(message)) => {
                    let (settings, js, abandon) = (settings.clone(), js.clone(), abandon.clone());
                    tasks.spawn(async move {
                        crate::process::process(&settings, &js, message, &abandon).await;
                        drop(permit);
                    });
                }
                Some(Err(error)) => {
                    tracing::warn!(consumer = spec.durable, %error, "pull error; carrying on");
                }
                None => {
                    ended = true;
                    break;
                }
            }
        }

        // Messages already delivered to this client but not started go straight back.
        while let Some(Some(Ok(message))) = messages.next().now_or_never() {
            if let Err(error) = message.ack_with(AckKind::Nak(None)).await {
                tracing::warn!(consumer = spec.durable, %error, "nak on shutdown failed");
            }
        }
        drop(messages);
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
        if ended {
            return Err(Error(format!(
                "the message stream of {} ended unexpectedly",
                spec.durable
            )));
        }
        Ok(())
    }
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
