//! One message: decode, run the handler with in-progress acks, then ack, nak, or
//! dead-letter and term.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, AckKind};
use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;

use crate::deadletter::{self, DeadKind};
use crate::handler::Dispatch;
use crate::runtime::Settings;
use crate::{Context, Outcome, metrics as m};

/// How a handler run ended.
enum Ran {
    /// The handler returned.
    Done(Outcome),
    /// The handler panicked: treated as a retry.
    Panicked(String),
    /// Shutdown ran out of grace: the message goes back to the stream at once.
    Abandoned,
}

/// What happens to the message, decided from how it ran and its delivery count.
enum Verdict {
    Ack,
    Nak(Duration),
    DeadLetter(DeadKind, String),
}

pub(crate) async fn process(
    settings: &Settings,
    js: &jetstream::Context,
    mut message: jetstream::Message,
    abandon: &CancellationToken,
) {
    let durable = settings.consumer.durable;
    // Shared by the handler's context and a dead letter, never copied.
    let headers = Arc::new(message.message.headers.take().unwrap_or_default());
    let cx = Context::new(&message, Arc::clone(&headers), durable, js.clone());
    let delivered = cx.delivered;
    let subject = cx.subject.clone();

    // More deliveries than allowed: the worker holding the last one died, or its nak
    // was lost. Never run a message that may crash workers again; dead-letter it.
    if delivered > settings.max_deliver {
        let reason = format!(
            "delivered {delivered} times, over the limit of {}: the last delivery was never answered (worker crash?)",
            settings.max_deliver
        );
        finish(
            settings,
            js,
            &message,
            &headers,
            delivered,
            Verdict::DeadLetter(DeadKind::MaxDeliveries, reason),
        )
        .await;
        return;
    }

    let started = Instant::now();
    let ran = match settings.handlers.dispatch(&message.payload, cx) {
        Dispatch::Unrouted => {
            tracing::debug!(consumer = durable, %subject, "no handler for subject; acking");
            Ran::Done(Outcome::Success)
        }
        Dispatch::Undecodable(reason) => {
            count(settings, "terminal", started);
            let verdict = Verdict::DeadLetter(DeadKind::Undecodable, reason);
            finish(settings, js, &message, &headers, delivered, verdict).await;
            return;
        }
        Dispatch::Run(future) => run(settings, &message, future, abandon).await,
    };

    let last = delivered >= settings.max_deliver;
    let verdict = match ran {
        Ran::Abandoned => {
            tracing::info!(consumer = durable, %subject, "shutdown: returning unfinished message");
            if let Err(error) = message.ack_with(AckKind::Nak(None)).await {
                tracing::warn!(consumer = durable, %error, "nak failed; redelivered after the ack wait");
            }
            return;
        }
        Ran::Done(Outcome::Success) => {
            count(settings, "success", started);
            Verdict::Ack
        }
        Ran::Done(Outcome::Terminal { reason }) => {
            count(settings, "terminal", started);
            Verdict::DeadLetter(DeadKind::Terminal, reason)
        }
        Ran::Done(Outcome::Retry { delay }) => {
            count(settings, "retry", started);
            if last {
                let reason =
                    format!("handler asked to retry on delivery {delivered}, the last allowed");
                Verdict::DeadLetter(DeadKind::MaxDeliveries, reason)
            } else {
                Verdict::Nak(delay.unwrap_or_else(|| settings.retry.delay(delivered)))
            }
        }
        Ran::Panicked(panic) => {
            count(settings, "retry", started);
            tracing::error!(consumer = durable, %subject, delivered, %panic, "handler panicked");
            if last {
                let reason =
                    format!("handler panicked on delivery {delivered}, the last allowed: {panic}");
                Verdict::DeadLetter(DeadKind::MaxDeliveries, reason)
            } else {
                Verdict::Nak(settings.retry.delay(delivered))
            }
        }
    };
    finish(settings, js, &message, &headers, delivered, verdict).await;
}

/// Runs the handler, catching its panic (a panic must not take the worker down) and
/// sending in-progress acks so a long handler is not redelivered while it still runs.
/// It runs in the message's own task: a second task per message cost a sixth of the
/// worker's CPU in a profile.
async fn run(
    settings: &Settings,
    message: &jetstream::Message,
    future: std::pin::Pin<Box<dyn std::future::Future<Output = Outcome> + Send>>,
    abandon: &CancellationToken,
) -> Ran {
    let mut handler = AssertUnwindSafe(future).catch_unwind();
    let period = (settings.consumer.ack_wait / 3).max(Duration::from_millis(100));
    let mut progress = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tokio::select! {
            biased;
            ran = &mut handler => {
                return match ran {
                    Ok(outcome) => Ran::Done(outcome),
                    Err(panic) => Ran::Panicked(panic_message(panic.as_ref())),
                };
            }
            _ = progress.tick() => {
                if let Err(error) = message.ack_with(AckKind::Progress).await {
                    tracing::warn!(consumer = settings.consumer.durable, %error, "in-progress ack failed");
                }
            }
            () = abandon.cancelled() => return Ran::Abandoned,
        }
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a non-string payload");
    format!("panicked: {text}")
}

fn count(settings: &Settings, status: &'static str, started: Instant) {
    if let Some(metrics) = &settings.metrics {
        metrics.processed(status, started.elapsed().as_secs_f64());
    }
}

async fn finish(
    settings: &Settings,
    js: &jetstream::Context,
    message: &jetstream::Message,
    original: &HeaderMap,
    delivered: i64,
    verdict: Verdict,
) {
    let durable = settings.consumer.durable;
    let ack = match verdict {
        // A plain ack: one buffered write, flushed with the connection's next write (and
        // by the runtime before exit). A double ack costs a round trip, a fresh inbox
        // subscription per message and as much again on the server; losing an
        // ack only means a redelivery, which at-least-once handlers already expect.
        Verdict::Ack => message.ack().await,
        Verdict::Nak(delay) => message.ack_with(AckKind::Nak(Some(delay))).await,
        Verdict::DeadLetter(kind, reason) => {
            let (subject, headers) =
                deadletter::letter(message, original, durable, kind, &reason, delivered);
            let stored = match js
                .publish_with_headers(subject, headers, message.payload.clone())
                .await
            {
                Ok(ack) => ack.await.map(drop).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match stored {
                Ok(()) => {
                    tracing::warn!(consumer = durable, subject = %message.subject, kind = kind.as_str(), reason, delivered, "dead-lettered");
                    metrics::counter!(m::DEAD_LETTERS, "consumer" => durable, "reason" => kind.as_str())
                        .increment(1);
                    message.double_ack_with(AckKind::Term).await
                }
                Err(error) => {
                    // Not stored as a dead letter: keep it in its stream and try again.
                    let delay = settings.retry.delay(delivered);
                    tracing::error!(consumer = durable, %error, ?delay, "dead-letter publish failed; message returned to its stream");
                    message.ack_with(AckKind::Nak(Some(delay))).await
                }
            }
        }
    };
    if let Err(error) = ack {
        tracing::warn!(consumer = durable, %error, "ack failed; JetStream will redeliver");
    }
}
