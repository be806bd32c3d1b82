//! The worker loop: pull, decode, handle, ack, with bounded concurrency.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind, consumer::PullConsumer};
use futures_util::StreamExt;
use shardline_jetstream::{ReconcileOptions, TopologyError};
use shardline_proto::topology::{self, ConsumerSpec};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::{Handlers, Meta, Outcome, metrics as m};

/// Delay before a message a handler asked to retry is redelivered.
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(5);
/// How long shutdown lets in-flight handlers finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

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

/// A worker: one durable consumer and the handlers for its subjects.
#[derive(Clone)]
pub struct Worker {
    consumer: &'static ConsumerSpec,
    handlers: Handlers,
    retry_delay: Duration,
}

impl Worker {
    /// A worker on `consumer` (from `shardline_proto::topology`).
    pub fn new(consumer: &'static ConsumerSpec, handlers: Handlers) -> Self {
        Self {
            consumer,
            handlers,
            retry_delay: DEFAULT_RETRY_DELAY,
        }
    }

    /// Changes the delay for `Outcome::Retry` without a delay of its own.
    pub fn retry_delay(mut self, delay: Duration) -> Self {
        self.retry_delay = delay;
        self
    }

    /// Reconciles the consumer's stream and the consumer, then handles messages
    /// until `shutdown` is cancelled, then lets in-flight handlers finish.
    ///
    /// # Errors
    ///
    /// Fails if the topology cannot be reconciled or the consumer cannot be read.
    pub async fn run(
        self,
        client: async_nats::Client,
        shutdown: CancellationToken,
    ) -> Result<(), Error> {
        let js = jetstream::new(client);
        let stream_spec = topology::stream(self.consumer.stream).ok_or_else(|| {
            Error(format!(
                "consumer {} names no declared stream",
                self.consumer.durable
            ))
        })?;
        shardline_jetstream::reconcile_stream(&js, stream_spec, ReconcileOptions::default())
            .await?;
        shardline_jetstream::reconcile_consumer(&js, self.consumer).await?;
        let consumer: PullConsumer = js
            .get_stream_no_info(self.consumer.stream)
            .await
            .map_err(|e| Error(format!("stream {}: {e}", self.consumer.stream)))?
            .get_consumer(self.consumer.durable)
            .await
            .map_err(|e| Error(format!("consumer {}: {e}", self.consumer.durable)))?;

        let concurrency = usize::try_from(self.consumer.max_ack_pending)
            .unwrap_or(1)
            .max(1);
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(concurrency)
            .messages()
            .await
            .map_err(|e| Error(format!("pulling from {}: {e}", self.consumer.durable)))?;
        let permits = Arc::new(Semaphore::new(concurrency));
        let tasks = TaskTracker::new();
        let this = Arc::new(self);
        tracing::info!(
            consumer = this.consumer.durable,
            concurrency,
            "worker running"
        );

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
                    let this = this.clone();
                    tasks.spawn(async move {
                        this.process(message).await;
                        drop(permit);
                    });
                }
                Some(Err(error)) => {
                    tracing::warn!(consumer = this.consumer.durable, %error, "pull error; carrying on");
                }
                None => {
                    ended = true;
                    break;
                }
            }
        }
        tracing::info!(
            consumer = this.consumer.durable,
            in_flight = tasks.len(),
            "stopping: finishing in-flight messages"
        );
        tasks.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "in-flight handlers still running; JetStream redelivers them after the ack wait"
            );
        }
        if ended {
            return Err(Error(format!(
                "the message stream of {} ended unexpectedly",
                this.consumer.durable
            )));
        }
        Ok(())
    }

    async fn process(&self, message: jetstream::Message) {
        let durable = self.consumer.durable;
        let (delivered, stream_sequence) = message
            .info()
            .map(|i| (i.delivered, i.stream_sequence))
            .unwrap_or((1, 0));
        let meta = Meta {
            subject: message.subject.to_string(),
            headers: message.headers.clone().unwrap_or_default(),
            delivered,
            stream_sequence,
        };
        let started = Instant::now();
        let outcome = match self.handlers.dispatch(&message.payload, meta.clone()) {
            // A panicking handler must not take the worker down: run it in its own task.
            Some(future) => match tokio::spawn(future).await {
                Ok(outcome) => outcome,
                Err(e) => {
                    tracing::error!(consumer = durable, subject = %meta.subject, error = %e, "handler panicked; retrying");
                    Outcome::retry()
                }
            },
            None => {
                tracing::debug!(consumer = durable, subject = %meta.subject, "no handler for subject; acking");
                Outcome::Success
            }
        };
        metrics::histogram!(m::PROCESSING_DURATION, "consumer" => durable)
            .record(started.elapsed().as_secs_f64());
        metrics::counter!(m::MESSAGES_PROCESSED, "consumer" => durable, "status" => outcome.status())
            .increment(1);
        let ack = match &outcome {
            Outcome::Success => message.double_ack().await,
            Outcome::Retry { delay } => {
                let delay = delay.unwrap_or(self.retry_delay);
                message.ack_with(AckKind::Nak(Some(delay))).await
            }
            Outcome::Terminal { reason } => {
                tracing::warn!(consumer = durable, subject = %meta.subject, reason, "terminal: message will not be redelivered");
                message.double_ack_with(AckKind::Term).await
            }
        };
        if let Err(error) = ack {
            tracing::warn!(consumer = durable, %error, "ack failed; JetStream will redeliver");
        }
    }
}
