//! Pull requests, bounded by the worker's permits, two open at a time.
//!
//! One request at a time leaves a busy consumer idle for a round trip after every
//! batch, and its next batch is only as large as the permits free at that instant:
//! at 20,000 events/s the stream's messages waited 16-188 ms (p99) for a handler
//! while the broker sat on them. So a second request is opened as soon as half the
//! permits are free, while the first is still filling, as async-nats's own
//! `stream()` does; unlike `stream()`, every message a request may bring already
//! holds a permit, so at most `concurrency` messages are held, ever.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::consumer::PullConsumer;
use futures_util::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::runtime::Settings;

/// How long one pull request stays open; also the longest shutdown waits for it.
const PULL_EXPIRES: Duration = Duration::from_secs(2);
/// How long past its expiry a pull request may stay silent before it is given up.
const PULL_MARGIN: Duration = Duration::from_secs(1);
/// Requests open at once: one filling, the next already waiting at the server.
const MAX_OPEN: usize = 2;

/// What a pull needs besides its consumer and permits.
pub(crate) struct Pulling {
    pub(crate) settings: Arc<Settings>,
    pub(crate) js: jetstream::Context,
    pub(crate) permits: Arc<Semaphore>,
    pub(crate) concurrency: usize,
    /// Where handlers run.
    pub(crate) tasks: TaskTracker,
    /// Cancelled when the grace period is over: handlers return their messages.
    pub(crate) abandon: CancellationToken,
}

impl Pulling {
    /// Pulls until `shutdown`, redeclaring the consumer (via `redeclare`) after a
    /// failed request. Returns once every open request has ended and its messages
    /// are with handlers: on shutdown no request is made, and those open run to their
    /// end (at most [`PULL_EXPIRES`]) with their messages handled, because there is no
    /// way to withdraw one and a nak would hand the message straight back to it, each
    /// time raising its delivery count until the successor dead-letters it.
    pub(crate) async fn run<F, Fut>(
        self,
        mut consumer: PullConsumer,
        shutdown: &CancellationToken,
        mut redeclare: F,
    ) where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<PullConsumer>>,
    {
        let this = Arc::new(self);
        let durable = this.settings.consumer.durable;
        let readers = TaskTracker::new();
        let (ended, mut ends) = mpsc::unbounded_channel();
        let mut open = 0usize;
        let mut failures = 0u32;
        loop {
            // The first request goes out for any free permit, so a quiet consumer
            // answers at once; a second one waits for half the budget, so a busy one
            // pipelines large batches rather than many tiny ones.
            let wanted = if open == 0 {
                1
            } else {
                (this.concurrency / 2).max(1)
            };
            let wanted = u32::try_from(wanted).unwrap_or(u32::MAX);
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                Some(outcome) = ends.recv() => {
                    open -= 1;
                    match outcome {
                        Ok(()) => failures = 0,
                        Err(error) => {
                            failures += 1;
                            let backoff = Duration::from_millis(100 * 2u64.pow(failures.min(6)));
                            tracing::warn!(consumer = durable, %error, ?backoff, "pull failed; retrying");
                            tokio::select! {
                                () = shutdown.cancelled() => break,
                                () = tokio::time::sleep(backoff) => {}
                            }
                            // The server may have restarted without the consumer.
                            if let Some(again) = redeclare().await {
                                consumer = again;
                            }
                        }
                    }
                }
                permit = this.permits.clone().acquire_many_owned(wanted), if open < MAX_OPEN => {
                    let mut held = permit.expect("semaphore never closed");
                    let free = this.permits.available_permits();
                    let free = u32::try_from(free).unwrap_or(u32::MAX);
                    if let Ok(more) = this.permits.clone().try_acquire_many_owned(free) {
                        held.merge(more);
                    }
                    open += 1;
                    let (this, consumer, ended, shutdown) =
                        (this.clone(), consumer.clone(), ended.clone(), shutdown.clone());
                    readers.spawn(async move {
                        let outcome = this.read(&consumer, held, &shutdown).await;
                        let _ = ended.send(outcome);
                    });
                }
            }
        }
        readers.close();
        readers.wait().await;
    }

    /// One request for as many messages as `held` has permits; each message takes one
    /// to its handler. `Ok` once the request is full or has expired.
    async fn read(
        self: &Arc<Self>,
        consumer: &PullConsumer,
        mut held: OwnedSemaphorePermit,
        shutdown: &CancellationToken,
    ) -> Result<(), String> {
        // The request ends by itself after PULL_EXPIRES; a server that vanished never
        // says so, hence our own deadline.
        let deadline = tokio::time::Instant::now() + PULL_EXPIRES + PULL_MARGIN;
        let mut batch = consumer
            .batch()
            .max_messages(held.num_permits())
            .expires(PULL_EXPIRES)
            .messages()
            .await
            .map_err(|e| e.to_string())?;
        loop {
            match tokio::time::timeout_at(deadline, batch.next()).await {
                Ok(Some(Ok(message))) => {
                    let permit = held.split(1).expect("a batch never exceeds its permits");
                    let this = self.clone();
                    self.tasks.spawn(async move {
                        crate::process::process(&this.settings, &this.js, message, &this.abandon)
                            .await;
                        drop(permit);
                    });
                }
                Ok(Some(Err(error))) => return Err(error.to_string()),
                Ok(None) => return Ok(()),
                Err(_) if shutdown.is_cancelled() => return Ok(()),
                Err(_) => return Err("pull request unanswered (server gone?)".to_owned()),
            }
        }
    }
}
