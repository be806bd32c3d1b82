//! Publishing to JetStream with acks awaited off the shard loop.
//!
//! A shard hands each message to [`Publisher::publish`], which returns once the
//! message is queued on the connection. The ack is awaited by one tracker task that
//! keeps every in-flight ack in a `FuturesUnordered`; a failed publish is retried
//! with backoff by its own task, with the same `Nats-Msg-Id`, so a retry that the
//! stream already has is dropped as a duplicate, never stored twice.
//!
//! The bounds on in-flight messages are two semaphores, one counting messages and
//! one counting payload bytes: permits are taken before a publish and released only
//! when the message is acked or given up on, retries included. At either bound,
//! `publish` waits, the shard stops reading, and TCP pushes back on Discord: memory
//! holds at most `max_inflight` messages and `max_inflight_bytes` of payload, however
//! long NATS is away. The byte budget is what holds a storm of 1 MiB
//! `GUILD_CREATE`s: counted in messages alone, 4,096 of them would be 4 GiB. A message
//! larger than the whole budget takes all of it and goes alone.
//!
//! Any failed attempt (no stream, a timeout, a broken connection) asks the caller to
//! check the topology: after a broker restart that lost its memory streams, a core
//! subscriber on `events.>` takes the publishes the streams no longer capture, so the
//! publisher sees timeouts, never "no stream".

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use async_nats::jetstream::{self, Context};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use shardline_proto::encoding;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

use crate::metrics as m;
use crate::progress::Receipt;
use crate::router::Outgoing;

const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_CAP: Duration = Duration::from_secs(5);
/// Room left under `max_payload` for the subject and headers.
const HEADER_ROOM: usize = 4 * 1024;

/// A message and what it holds until it is acked or given up on.
struct Held {
    message: Outgoing,
    /// Completed once the message is stored or given up on; an abandoned one (the
    /// process exits first) keeps the session's floor below the message.
    receipt: Option<Receipt>,
    _permit: OwnedSemaphorePermit,
    _bytes: OwnedSemaphorePermit,
    /// When the first attempt started; retries stop `give_up_after` later.
    first: Instant,
    inflight: metrics::Gauge,
    inflight_bytes: metrics::Gauge,
}

impl Held {
    /// The message is stored or given up on: the floor may pass it.
    fn complete(&mut self) {
        if let Some(receipt) = self.receipt.take() {
            receipt.complete();
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.inflight.decrement(1.0);
        self.inflight_bytes
            .decrement(self._bytes.num_permits() as f64);
    }
}

struct InFlight {
    ack: PublishAckFuture,
    held: Held,
    started: Instant,
}

/// Publishes messages; cheap to clone, one per shard.
#[derive(Clone)]
pub struct Publisher {
    ctx: RetryContext,
    acks: mpsc::UnboundedSender<InFlight>,
    permits: Arc<Semaphore>,
    /// Payload bytes; see [`Publisher::new`].
    bytes: Arc<Semaphore>,
    max_inflight_bytes: u32,
    max_payload: usize,
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

#[derive(Clone)]
struct RetryContext {
    js: Context,
    retries: TaskTracker,
    give_up_after: Duration,
    /// Notified when a publish fails in a way a lost topology explains.
    check_topology: Arc<Notify>,
    metrics: Arc<m::PublishMetrics>,
}

impl Publisher {
    /// A publisher on `client` holding at most `max_inflight` messages and
    /// `max_inflight_bytes` of payload (capped at 4 GiB), retrying a failed publish
    /// for `give_up_after`. `check_topology` is notified when a
    /// publish fails in a way a lost topology explains (no stream, a timeout, a
    /// broken connection), so the caller can check the streams exist.
    pub fn new(
        client: async_nats::Client,
        max_inflight: usize,
        max_inflight_bytes: usize,
        give_up_after: Duration,
        check_topology: Arc<Notify>,
    ) -> (Self, Drain) {
        let max_inflight = max_inflight.max(1);
        let max_inflight_bytes = u32::try_from(max_inflight_bytes).unwrap_or(u32::MAX).max(1);
        let max_payload = client.server_info().max_payload;
        let js = jetstream::ContextBuilder::new()
            .max_ack_inflight(max_inflight)
            .backpressure_on_inflight(true)
            .build(client);
        let (tx, rx) = mpsc::unbounded_channel();
        let retries = TaskTracker::new();
        let ctx = RetryContext {
            js,
            retries: retries.clone(),
            give_up_after,
            check_topology,
            metrics: Arc::new(m::PublishMetrics::new()),
        };
        let tracker = tokio::spawn(track_acks(rx, ctx.clone()));
        let publisher = Self {
            ctx,
            acks: tx,
            permits: Arc::new(Semaphore::new(max_inflight)),
            bytes: Arc::new(Semaphore::new(max_inflight_bytes as usize)),
            max_inflight_bytes,
            max_payload,
        };
        (publisher, Drain { tracker, retries })
    }

    /// Queues `message` for JetStream and returns; its ack is tracked elsewhere and
    /// `receipt` is completed once it is acked or given up on. Waits while
    /// `max_inflight` messages, or `max_inflight_bytes` of payload, are outstanding.
    ///
    /// # Cancel safety
    ///
    /// Cancelling drops the message without completing its receipt: it may or may
    /// not reach the stream, and the session's floor stays below it, so the next
    /// resume replays it (and `Nats-Msg-Id` drops it if it was stored after all).
    pub async fn publish(&self, mut message: Outgoing, receipt: Receipt) {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the publisher never closes its semaphore");
        let size = u32::try_from(message.payload.len()).unwrap_or(u32::MAX);
        let bytes = self
            .bytes
            .clone()
            .acquire_many_owned(size.clamp(1, self.max_inflight_bytes))
            .await
            .expect("the publisher never closes its semaphore");
        let held_first = Instant::now();
        if message.payload.len() + HEADER_ROOM > self.max_payload && !self.compress(&mut message) {
            receipt.complete(); // Counted as dropped: the floor may pass it.
            return;
        }
        let inflight = self.ctx.metrics.inflight.clone();
        inflight.increment(1.0);
        let inflight_bytes = self.ctx.metrics.inflight_bytes.clone();
        inflight_bytes.increment(bytes.num_permits() as f64);
        let held = Held {
            message,
            receipt: Some(receipt),
            _permit: permit,
            _bytes: bytes,
            first: held_first,
            inflight,
            inflight_bytes,
        };
        let started = Instant::now();
        match send(&self.ctx.js, &held.message).await {
            Ok(ack) => {
                let entry = InFlight { ack, held, started };
                if let Err(mpsc::error::SendError(entry)) = self.acks.send(entry) {
                    // The tracker is gone (shutdown raced us): retry on our own.
                    self.ctx.retry(entry.held);
                }
            }
            Err(kind) => {
                self.ctx.failed(kind);
                self.ctx.retry(held);
            }
        }
    }

    /// Replaces the payload with its zstd frame and marks it in a header. `false`
    /// (counted, logged) if even that does not fit.
    fn compress(&self, message: &mut Outgoing) -> bool {
        let original = message.payload.len();
        match encoding::encode_zstd(&message.payload) {
            Ok(encoded) if encoded.len() + HEADER_ROOM <= self.max_payload => {
                tracing::debug!(subject = %message.subject, original, compressed = encoded.len(), "payload over max_payload; sent zstd-compressed");
                message.payload = Bytes::from(encoded);
                message.headers.encoding = Some(encoding::ZSTD);
                metrics::counter!(m::PAYLOADS_COMPRESSED).increment(1);
                true
            }
            _ => {
                tracing::error!(
                    subject = %message.subject,
                    bytes = original,
                    max_payload = self.max_payload,
                    "event larger than the server's max_payload even compressed; dropped"
                );
                metrics::counter!(m::EVENTS_DROPPED, "reason" => "oversized").increment(1);
                false
            }
        }
    }
}

impl RetryContext {
    fn retry(&self, mut held: Held) {
        let this = self.clone();
        self.retries.spawn(async move {
            let mut attempt: u32 = 1;
            loop {
                if held.first.elapsed() >= this.give_up_after {
                    tracing::error!(
                        subject = %held.message.subject,
                        attempts = attempt,
                        give_up_after_secs = this.give_up_after.as_secs(),
                        "giving up on an event after repeated publish failures"
                    );
                    metrics::counter!(m::EVENTS_DROPPED, "reason" => "publish_failed").increment(1);
                    held.complete();
                    return;
                }
                let backoff = BACKOFF_START
                    .saturating_mul(1 << attempt.min(10))
                    .min(BACKOFF_CAP);
                tokio::time::sleep(backoff).await;
                attempt += 1;
                let started = Instant::now();
                let result = match send(&this.js, &held.message).await {
                    Ok(ack) => ack.await.map_err(|e| e.kind()),
                    Err(kind) => Err(kind),
                };
                match result {
                    Ok(ack) => {
                        this.acked(&held.message, started, ack.duplicate);
                        held.complete();
                        return;
                    }
                    Err(kind) => this.failed(kind),
                }
            }
        });
    }

    fn acked(&self, message: &Outgoing, started: Instant, duplicate: bool) {
        let seconds = started.elapsed().as_secs_f64();
        self.metrics.acked(message.stream, seconds, duplicate);
    }

    fn failed(&self, kind: PublishErrorKind) {
        count_error(kind);
        let topology_explains = matches!(
            kind,
            PublishErrorKind::StreamNotFound
                | PublishErrorKind::TimedOut
                | PublishErrorKind::BrokenPipe
                | PublishErrorKind::Other
        );
        if topology_explains {
            self.check_topology.notify_one();
        }
    }
}

async fn send(js: &Context, message: &Outgoing) -> Result<PublishAckFuture, PublishErrorKind> {
    js.publish_with_headers(
        message.subject.clone(),
        message.header_map(),
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
    tracing::debug!(error_type = label, "publish attempt failed; retrying");
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
                    (result, entry.held, entry.started)
                }),
                None => open = false,
            },
            Some((result, mut held, started)) = pending.next() => match result {
                Ok(ack) => {
                    ctx.acked(&held.message, started, ack.duplicate);
                    held.complete();
                }
                Err(e) => {
                    ctx.failed(e.kind());
                    ctx.retry(held);
                }
            },
            else => break,
        }
    }
}
