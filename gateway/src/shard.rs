//! One shard's loop: read a frame, route it, hand it to the publisher.

use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;
use twilight_gateway::error::ReceiveMessageErrorType;
use twilight_gateway::{CloseFrame, Message, Shard};

use crate::metrics as m;
use crate::publisher::Publisher;
use crate::router::{Rejected, Routed, ShardRouter};

/// How long a shard waits for Discord to echo its close frame on shutdown.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How a shard's loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardExit {
    /// Shutdown was requested; the session was closed resumably.
    Shutdown,
    /// Discord closed the session with a code that forbids reconnecting.
    Fatal {
        /// The shard.
        shard: u32,
        /// The close code, if Discord sent one.
        code: Option<u16>,
    },
}

/// Runs `shard` until `shutdown` is cancelled or Discord closes it for good.
pub async fn run_shard(
    mut shard: Shard,
    publisher: Publisher,
    shutdown: CancellationToken,
) -> ShardExit {
    let id = shard.id().number();
    let shard_label = id.to_string();
    let mut router = ShardRouter::new(id);
    let mut last_close = None;
    loop {
        let item = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            item = shard.next() => item,
        };
        let Some(item) = item else {
            metrics::gauge!(m::SHARD_CONNECTED, "shard" => shard_label.clone()).set(0.0);
            tracing::error!(shard = id, code = ?last_close, "shard closed by Discord with a code that forbids reconnecting");
            return ShardExit::Fatal {
                shard: id,
                code: last_close,
            };
        };
        match item {
            Ok(Message::Text(text)) => {
                handle_text(&mut shard, &mut router, &publisher, text, &shard_label).await;
            }
            Ok(Message::Close(frame)) => {
                last_close = frame.as_ref().map(|f| f.code);
                metrics::gauge!(m::SHARD_CONNECTED, "shard" => shard_label.clone()).set(0.0);
                tracing::info!(shard = id, code = ?last_close, "gateway connection closed");
            }
            Err(error) => {
                if let ReceiveMessageErrorType::Deserializing { .. } = error.kind() {
                    metrics::counter!(m::EVENTS_DROPPED, "reason" => "malformed_frame")
                        .increment(1);
                }
                tracing::warn!(shard = id, %error, "error receiving from the gateway");
            }
        }
    }

    // A resumable close keeps the Discord session alive for a later resume; 1000
    // would end it. Frames that arrive before the echo are still published.
    shard.close(CloseFrame::RESUME);
    let drained = tokio::time::timeout(CLOSE_TIMEOUT, async {
        while let Some(item) = shard.next().await {
            match item {
                Ok(Message::Text(text)) => {
                    handle_text(&mut shard, &mut router, &publisher, text, &shard_label).await;
                }
                Ok(Message::Close(_)) => break,
                Err(_) => {}
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(shard = id, "gateway did not acknowledge the close in time");
    }
    metrics::gauge!(m::SHARD_CONNECTED, "shard" => shard_label).set(0.0);
    ShardExit::Shutdown
}

async fn handle_text(
    shard: &mut Shard,
    router: &mut ShardRouter,
    publisher: &Publisher,
    text: String,
    shard_label: &str,
) {
    let received_at = SystemTime::now();
    let session = shard.session().map(|s| s.id());
    match router.route(text, session, received_at) {
        Ok(Routed::Publish(out)) => {
            metrics::counter!(m::EVENTS_RECEIVED, "event_type" => out.event.clone()).increment(1);
            publisher.publish(out).await;
        }
        Ok(Routed::Lifecycle(kind)) => {
            metrics::gauge!(m::SHARD_CONNECTED, "shard" => shard_label.to_owned()).set(1.0);
            metrics::counter!(m::SHARD_RECONNECTS, "shard" => shard_label.to_owned(), "kind" => kind)
                .increment(1);
            tracing::info!(shard = router.shard_id(), kind, "shard session live");
        }
        Ok(Routed::Control) => {
            if let Some(latency) = shard.latency().recent().first() {
                metrics::gauge!(m::SHARD_LATENCY, "shard" => shard_label.to_owned())
                    .set(latency.as_secs_f64());
            }
        }
        Err(Rejected::Frame(kind)) => {
            metrics::counter!(m::EVENTS_DROPPED, "reason" => kind.as_str()).increment(1);
            tracing::warn!(
                shard = router.shard_id(),
                reason = kind.as_str(),
                "dropped a dispatch"
            );
        }
        Err(Rejected::NoSession) => {
            metrics::counter!(m::EVENTS_DROPPED, "reason" => "no_session").increment(1);
            tracing::warn!(
                shard = router.shard_id(),
                "dispatch before any session; dropped"
            );
        }
    }
}
