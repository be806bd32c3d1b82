//! One shard's loop: read a frame, route it, hand it to the publisher; send the
//! commands workers ask for; close resumably on shutdown.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use twilight_gateway::error::ReceiveMessageErrorType;
use twilight_gateway::queue::Queue;
use twilight_gateway::{CloseFrame, Message, Shard};

use crate::commands::{CommandRequest, send_on};
use crate::health::Health;
use crate::metrics as m;
use crate::progress::Progress;
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

/// What Discord's close codes that forbid reconnecting mean.
pub fn fatal_close_reason(code: Option<u16>) -> &'static str {
    match code {
        Some(4004) => "authentication failed: the token is wrong",
        Some(4010) => "invalid shard: SHARD_IDS/SHARD_TOTAL do not fit the bot",
        Some(4011) => "sharding required: the bot needs more shards (raise SHARD_TOTAL)",
        Some(4012) => "invalid API version",
        Some(4013) => "invalid intents",
        Some(4014) => {
            "disallowed intents: enable the privileged intents for the bot or remove them from DISCORD_INTENTS"
        }
        _ => "closed for good",
    }
}

/// Everything a shard's loop works with besides the shard.
pub struct ShardContext {
    /// Where routed dispatches go.
    pub publisher: Publisher,
    /// The shard's ack floor, read by the session store.
    pub progress: Progress,
    /// Readiness, per shard.
    pub health: Health,
    /// Checked commands from workers.
    pub commands: mpsc::Receiver<CommandRequest>,
    /// Cancelled on shutdown.
    pub shutdown: CancellationToken,
}

/// Runs `shard` until `shutdown` is cancelled or Discord closes it for good.
pub async fn run_shard<Q: Queue + Unpin>(mut shard: Shard<Q>, mut ctx: ShardContext) -> ShardExit {
    let id = shard.id().number();
    let mut reader = Reader::new(id);
    let mut last_close = None;
    loop {
        // Frames come first: a command waits until the shard has flushed what twilight
        // queued, so the limiter's count of free permits is current.
        let item = tokio::select! {
            biased;
            () = ctx.shutdown.cancelled() => break,
            item = shard.next() => item,
            Some(request) = ctx.commands.recv() => {
                let _ = request.reply.send(send_on(&shard, request.json));
                continue;
            }
        };
        let Some(item) = item else {
            ctx.health.set_connected(id, false);
            ctx.progress.observe(None, None);
            tracing::error!(
                shard = id,
                code = ?last_close,
                reason = fatal_close_reason(last_close),
                "Discord closed the shard with a code that forbids reconnecting; the shard stops"
            );
            return ShardExit::Fatal {
                shard: id,
                code: last_close,
            };
        };
        match item {
            Ok(Message::Text(text)) => {
                let stop = Some(&ctx.shutdown);
                handle_text(&mut shard, &mut reader, &ctx, text, stop).await;
            }
            Ok(Message::Close(frame)) => {
                last_close = frame.as_ref().map(|f| f.code);
                ctx.health.set_connected(id, false);
                tracing::info!(shard = id, code = ?last_close, "gateway connection closed");
            }
            Err(error) => receive_error(id, &error),
        }
    }

    // A resumable close keeps the Discord session alive for a later resume; 1000
    // would end it. Frames that arrive before the echo are still published, within
    // CLOSE_TIMEOUT: a publish still waiting then (the broker is away) is abandoned
    // with its receipt, so the stored floor stays below it and the resume replays it.
    shard.close(CloseFrame::RESUME);
    let drained = tokio::time::timeout(CLOSE_TIMEOUT, async {
        while let Some(item) = shard.next().await {
            match item {
                Ok(Message::Text(text)) => {
                    handle_text(&mut shard, &mut reader, &ctx, text, None).await;
                }
                Ok(Message::Close(_)) => break,
                Err(error) => receive_error(id, &error),
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(shard = id, "gateway did not acknowledge the close in time");
    }
    ctx.health.set_connected(id, false);
    ShardExit::Shutdown
}

/// What one shard's loop keeps between frames.
struct Reader {
    router: ShardRouter,
    label: String,
    /// `gateway_events_received_total` by event type, looked up once per type: the
    /// registry lookup costs more per frame than the increment.
    received: HashMap<String, metrics::Counter>,
}

impl Reader {
    fn new(shard: u32) -> Self {
        Self {
            router: ShardRouter::new(shard),
            label: shard.to_string(),
            received: HashMap::new(),
        }
    }
}

/// The `gateway_events_received_total` counter of `event`, registered on first use.
fn counter_for<'a>(
    received: &'a mut HashMap<String, metrics::Counter>,
    event: &str,
) -> &'a metrics::Counter {
    if !received.contains_key(event) {
        let counter = metrics::counter!(m::EVENTS_RECEIVED, "event_type" => event.to_owned());
        received.insert(event.to_owned(), counter);
    }
    &received[event]
}

fn receive_error(shard: u32, error: &twilight_gateway::error::ReceiveMessageError) {
    if let ReceiveMessageErrorType::Deserializing { .. } = error.kind() {
        // twilight could not read the envelope (not JSON, no opcode): the frame is
        // skipped and the shard keeps going. The body is not logged (it may be huge).
        metrics::counter!(m::EVENTS_DROPPED, "reason" => "malformed_frame").increment(1);
        tracing::warn!(
            shard,
            reason = "malformed_frame",
            "dropped a frame that is not a gateway event"
        );
    } else {
        tracing::warn!(shard, %error, "error receiving from the gateway");
    }
}

/// Routes and publishes one frame. With `stop`, a publish still waiting for room
/// when it is cancelled is abandoned (its receipt uncompleted: the resume replays it),
/// so a shard blocked on a full publisher still shuts down at once.
async fn handle_text<Q: Queue>(
    shard: &mut Shard<Q>,
    reader: &mut Reader,
    ctx: &ShardContext,
    text: String,
    stop: Option<&CancellationToken>,
) {
    let received_at = SystemTime::now();
    let session = shard.session().map(|s| (s.id().to_owned(), s.sequence()));
    let Reader {
        router,
        label: shard_label,
        received,
    } = reader;
    let routed = router.route(text, session.as_ref().map(|s| s.0.as_str()), received_at);
    match routed {
        Ok(Routed::Publish(out)) => {
            counter_for(received, &out.event).increment(1);
            let (session_id, _) = session.as_ref().expect("routed with a session");
            let receipt = ctx.progress.begin(session_id, out.sequence);
            let publish = ctx.publisher.publish(out, receipt);
            match stop {
                Some(stop) => tokio::select! {
                    biased;
                    () = publish => {}
                    () = stop.cancelled() => tracing::info!(
                        shard = router.shard_id(),
                        "shutdown while the publisher is full; the event is left for the resume to replay"
                    ),
                },
                None => publish.await,
            }
        }
        Ok(Routed::Lifecycle(kind)) => {
            ctx.health.set_connected(router.shard_id(), true);
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
    // Frames that are not published (READY, RESUMED, broken ones) move the floor too.
    ctx.progress.observe(
        session.as_ref().map(|(id, seq)| (id.as_str(), *seq)),
        shard.resume_url(),
    );
}
