//! Publishing to JetStream with acks awaited off the shard loop.
//!
//! A shard hands each message to [`Publisher::publish`], which returns once the
//! message is queued on the connection. The ack is awaited by one tracker task that
//! keeps every in-flight ack in a `FuturesUnordered`; a failed publish is retried
//! with backoff by its own task, with the same `Nats-Msg-Id`, so a retry that the
//! stream already has is dropped as a duplicate, never stored twice.
//!
//! The bound on in-flight acks is async-nats' own (`max_ack_inflight` with
//! backpressure): at the bound, `publish` waits, the shard stops reading, and TCP
//! pushes back on Discord instead of memory growing.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use async_nats::jetstream::{self, Context};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

use crate::metrics as m;
use crate::router::Outgoing;

/// Attempts before an event is given up on (about 90 s of backoff).
pub const MAX_ATTEMPTS: u32 = 20;
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_CAP: Duration = Duration::from_secs(5);

struct InFlight {
    ack: PublishAckFuture,
    message: Outgoing,
    started: Instant,
    attempt: u32,
}

/// Publishes messages; cheap to clone, one per shard.
#[derive(Clone)]
pub struct Publisher {
    js: Context,
    acks: mpsc::UnboundedSender<InFlight>,
    retries: TaskTracker,
    inflight: Arc<AtomicI64>,
}

/// Handle to wait for every outstanding publish after the last [`Publisher`] is dropped.
pub struct Drain {
    tracker: JoinHandle<()>,
    retries: TaskTracker,
}

impl Drain {
    /// Waits until every publish is acked or given up on.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future leaves the publishes running.
    pub async fn wait(self) {
        self.retries.close();
        let _ = self.tracker.await;
        self.retries.wait().await;
    }
}

impl Publisher {
    /// A publisher on `client` with at most `max_inflight` unacknowledged publishes.
    pub fn new(client: async_nats::Client, max_inflight: usize) -> (Self, Drain) {
        let js = jetstream::ContextBuilder::new()
            .max_ack_inflight(max_inflight)
            .backpressure_on_inflight(true)
            .build(client);
        let (tx, rx) = mpsc::unbounded_channel();
        let retries = TaskTracker::new();
        let inflight = Arc::new(AtomicI64::new(0));
        let publisher = Self {
            js,
            acks: tx,
            retries: retries.clone(),
            inflight,
        };
        let tracker = tokio::spawn(track_acks(rx, publisher.clone_without_sender()));
        (publisher, Drain { tracker, retries })
    }

    // The tracker must not hold a sender, or the channel never closes.
    fn clone_without_sender(&self) -> RetryContext {
        RetryContext {
            js: self.js.clone(),
            retries: self.retries.clone(),
            inflight: self.inflight.clone(),
        }
    }

    /// Queues `message` for JetStream and returns; its ack is tracked elsewhere.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: cancelling between queueing and handing the ack over loses
    /// track of that message's ack (the message itself is still sent).
    pub async fn publish(&self, message: Outgoing) {
        self.inflight.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!(m::PUBLISH_INFLIGHT).increment(1.0);
        let started = Instant::now();
        match send(&self.js, &message).await {
            Ok(ack) => {
                let entry = InFlight {
                    ack,
                    message,
                    started,
                    attempt: 1,
                };
                if let Err(mpsc::error::SendError(entry)) = self.acks.send(entry) {
                    // The tracker is gone (shutdown raced us): retry on our own.
                    self.clone_without_sender().retry(entry.message, 1);
                }
            }
            Err(PublishErrorKind::MaxPayloadExceeded) => {
                // Retrying cannot help: the server refuses messages this large.
                count_error(PublishErrorKind::MaxPayloadExceeded);
                tracing::error!(
                    subject = %message.subject,
                    bytes = message.payload.len(),
                    "event larger than the server's max_payload; dropped"
                );
                metrics::counter!(m::EVENTS_DROPPED, "reason" => "oversized").increment(1);
                self.clone_without_sender().done();
            }
            Err(kind) => {
                count_error(kind);
                self.clone_without_sender().retry(message, 1);
            }
        }
    }
}

#[derive(Clone)]
struct RetryContext {
    js: Context,
    retries: TaskTracker,
    inflight: Arc<AtomicI64>,
}

impl RetryContext {
    fn retry(&self, message: Outgoing, failed_attempts: u32) {
        let this = self.clone();
        self.retries.spawn(async move {
            let mut attempt = failed_attempts;
            loop {
                if attempt >= MAX_ATTEMPTS {
                    tracing::error!(
                        subject = %message.subject,
                        attempts = attempt,
                        "giving up on an event after repeated publish failures"
                    );
                    metrics::counter!(m::EVENTS_DROPPED, "reason" => "publish_failed").increment(1);
                    this.done();
                    return;
                }
                let backoff = BACKOFF_START
                    .saturating_mul(1 << attempt.min(10))
                    .min(BACKOFF_CAP);
                tokio::time::sleep(backoff).await;
                attempt += 1;
                let started = Instant::now();
                let result = match send(&this.js, &message).await {
                    Ok(ack) => ack.await.map_err(|e| e.kind()),
                    Err(kind) => Err(kind),
                };
                match result {
                    Ok(ack) => {
                        this.acked(&message, started, ack.duplicate);
                        return;
                    }
                    Err(kind) => count_error(kind),
                }
            }
        });
    }

    fn acked(&self, message: &Outgoing, started: Instant, duplicate: bool) {
        metrics::histogram!(m::PUBLISH_DURATION).record(started.elapsed().as_secs_f64());
        if duplicate {
            metrics::counter!(m::EVENTS_DEDUPLICATED, "stream" => message.stream).increment(1);
        } else {
            metrics::counter!(m::EVENTS_PUBLISHED, "stream" => message.stream).increment(1);
        }
        self.done();
    }

    fn done(&self) {
        self.inflight.fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!(m::PUBLISH_INFLIGHT).decrement(1.0);
    }
}

async fn send(js: &Context, message: &Outgoing) -> Result<PublishAckFuture, PublishErrorKind> {
    js.publish_with_headers(
        message.subject.clone(),
        message.headers.clone(),
        message.payload.clone(),
    )
    .await
    .map_err(|e| e.kind())
}

fn count_error(kind: PublishErrorKind) {
    let label = match kind {
        PublishErrorKind::StreamNotFound => "stream_not_found",
        PublishErrorKind::TimedOut => "timed_out",
        PublishErrorKind::BrokenPipe => "broken_pipe",
        PublishErrorKind::MaxAckPending => "max_ack_pending",
        PublishErrorKind::MaxPayloadExceeded => "max_payload_exceeded",
        PublishErrorKind::WrongLastMessageId | PublishErrorKind::WrongLastSequence => "expectation",
        PublishErrorKind::Other => "other",
    };
    tracing::warn!(error_type = label, "publish attempt failed");
    metrics::counter!(m::PUBLISH_ERRORS, "error_type" => label).increment(1);
}

async fn track_acks(mut rx: mpsc::UnboundedReceiver<InFlight>, ctx: RetryContext) {
    let mut pending = FuturesUnordered::new();
    let mut open = true;
    loop {
        tokio::select! {
            entry = rx.recv(), if open => match entry {
                Some(entry) => pending.push(async move {
                    let result = entry.ack.await;
                    (result, entry.message, entry.started, entry.attempt)
                }),
                None => open = false,
            },
            Some((result, message, started, attempt)) = pending.next() => match result {
                Ok(ack) => ctx.acked(&message, started, ack.duplicate),
                Err(e) => {
                    count_error(e.kind());
                    ctx.retry(message, attempt);
                }
            },
            else => break,
        }
    }
}
