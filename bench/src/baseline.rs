//! Baseline B: the simplest program that does the gateway's job, for comparison.
//!
//! One plain WebSocket client per shard (tokio-tungstenite, no twilight) reads the
//! simulator's frames with the same transport compression, answers heartbeats on
//! time, and publishes each dispatch's `d` bytes with async-nats to the same subject
//! with the same headers and the same cap on in-flight acks. It knows the simulator
//! writes `{"op":0,"s":N,"t":"NAME","d":...}` in that order, so it parses nothing:
//! `s` and `t` are read at fixed places, the guild id by a substring search, and the
//! subject comes from a per-name cache of the contract's mapping. That is the cheapest
//! correct program for this input, not a general router.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use async_nats::HeaderMap;
use async_nats::jetstream::{self, context::PublishAckFuture};
use futures_util::stream::FuturesUnordered;
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use shardline_proto::{headers, route};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::child;
use crate::decompress::Inflater;

/// What the baseline client reports when it stops.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ClientReport {
    /// Dispatches published (READY and RESUMED are not published, as in the gateway).
    pub published: u64,
    /// Publishes or acks that failed.
    pub errors: u64,
}

/// Connection settings of the baseline client.
#[derive(Clone, Debug)]
pub struct ClientArgs {
    /// `ws://127.0.0.1:PORT` of the simulator.
    pub gateway_url: String,
    /// NATS server URL.
    pub nats_url: String,
    /// Bot token.
    pub token: String,
    /// Shards to run (0..total).
    pub shard_total: u32,
    /// Cap on unacknowledged publishes (the gateway's `max_inflight`).
    pub max_inflight: usize,
    /// Ask for zstd-stream (else no transport compression).
    pub zstd: bool,
}

/// Runs the baseline client until stdin closes, then prints its [`ClientReport`].
///
/// # Errors
///
/// If NATS cannot be reached.
pub async fn client(args: ClientArgs) -> anyhow::Result<()> {
    let nats = async_nats::connect(shardline_jetstream::server_urls(&args.nats_url)).await?;
    let js = jetstream::ContextBuilder::new()
        .max_ack_inflight(args.max_inflight)
        .backpressure_on_inflight(true)
        .build(nats.clone());
    let published = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let (acks, rx) = mpsc::unbounded_channel();
    tokio::spawn(drain_acks(rx, errors.clone()));
    for shard in 0..args.shard_total {
        let ctx = ShardCtx {
            js: js.clone(),
            acks: acks.clone(),
            published: published.clone(),
            errors: errors.clone(),
        };
        let args = args.clone();
        tokio::spawn(async move {
            if let Err(e) = shard_loop(&args, shard, ctx).await {
                eprintln!("baseline shard {shard}: {e:#}");
            }
        });
    }
    child::serve_until_stdin_closes(|_| {}).await;
    let _ = nats.flush().await;
    child::report(&ClientReport {
        published: published.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
    });
    Ok(())
}

async fn drain_acks(mut rx: mpsc::UnboundedReceiver<PublishAckFuture>, errors: Arc<AtomicU64>) {
    let mut pending = FuturesUnordered::new();
    let mut open = true;
    loop {
        tokio::select! {
            ack = rx.recv(), if open => match ack {
                Some(ack) => pending.push(ack.into_future()),
                None => open = false,
            },
            Some(result) = pending.next() => {
                if result.is_err() {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            else => break,
        }
    }
}

struct ShardCtx {
    js: jetstream::Context,
    acks: mpsc::UnboundedSender<PublishAckFuture>,
    published: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
}

#[derive(Deserialize)]
struct Hello {
    d: HelloData,
}

#[derive(Deserialize)]
struct HelloData {
    heartbeat_interval: u64,
}

#[derive(Deserialize)]
struct ReadyData {
    session_id: String,
}

async fn shard_loop(args: &ClientArgs, shard: u32, ctx: ShardCtx) -> anyhow::Result<()> {
    let compress = if args.zstd {
        "&compress=zstd-stream"
    } else {
        ""
    };
    let url = format!("{}/?v=10&encoding=json{compress}", args.gateway_url);
    let (ws, _) = tokio_tungstenite::connect_async(url).await?;
    let (mut sink, mut stream) = ws.split();
    let mut inflater = Inflater::new(args.zstd);

    let hello = stream.next().await.context("no HELLO")??;
    let hello: Hello = serde_json::from_slice(&inflater.frame(hello)?.context("HELLO")?)?;
    let identify = serde_json::json!({"op": 2, "d": {
        "token": args.token, "intents": 1539, "compress": false,
        "shard": [shard, args.shard_total],
        "properties": {"os": "linux", "browser": "bench", "device": "bench"},
    }});
    sink.send(Message::text(identify.to_string())).await?;

    let mut heartbeat = tokio::time::interval(Duration::from_millis(hello.d.heartbeat_interval));
    heartbeat.tick().await;
    let shard_text = shard.to_string();
    let mut subjects: HashMap<String, String> = HashMap::new();
    let mut session = String::new();
    let mut last_seq = 0u64;
    loop {
        let message = tokio::select! {
            _ = heartbeat.tick() => {
                sink.send(Message::text(format!(r#"{{"op":1,"d":{last_seq}}}"#))).await?;
                continue;
            }
            message = stream.next() => message,
        };
        let Some(Ok(message)) = message else {
            return Ok(());
        };
        let received_at = unix_nanos();
        let Some(frame) = inflater.frame(message)? else {
            continue;
        };
        let Some(dispatch) = dispatch(&frame) else {
            continue; // op 10 / 11 / 7 / 9: nothing to publish
        };
        last_seq = dispatch.seq;
        let name = dispatch.name.clone();
        let data = frame.slice(dispatch.data);
        match &*name {
            "READY" => {
                session = serde_json::from_slice::<ReadyData>(&data)?.session_id;
                continue;
            }
            "RESUMED" => continue,
            _ => {}
        }
        let subject = subjects
            .entry(name.clone())
            .or_insert_with(|| {
                route(&name, None)
                    .subject()
                    .unwrap_or("events.-")
                    .to_owned()
            })
            .clone();
        let mut map = HeaderMap::new();
        map.insert(
            headers::MSG_ID,
            headers::msg_id(&session, dispatch.seq).as_str(),
        );
        map.insert(headers::EVENT_TYPE, name.as_str());
        map.insert(headers::SHARD_ID, shard_text.as_str());
        map.insert(headers::SEQUENCE, dispatch.seq.to_string().as_str());
        if let Some(guild) = guild_id(&name, &data) {
            map.insert(headers::GUILD_ID, guild);
        }
        map.insert(headers::RECEIVED_AT, received_at.to_string().as_str());
        match ctx.js.publish_with_headers(subject, map, data).await {
            Ok(ack) => {
                ctx.published.fetch_add(1, Ordering::Relaxed);
                let _ = ctx.acks.send(ack);
            }
            Err(_) => {
                ctx.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Unix time in nanoseconds.
pub fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

struct Dispatch {
    seq: u64,
    name: String,
    data: Range<usize>,
}

/// Reads `{"op":0,"s":N,"t":"NAME","d":...}` at fixed places.
fn dispatch(frame: &[u8]) -> Option<Dispatch> {
    const HEAD: &[u8] = br#"{"op":0,"s":"#;
    let rest = frame.strip_prefix(HEAD)?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let seq = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
    let rest = rest[digits..].strip_prefix(br#","t":""#)?;
    let end = memchr::memchr(b'"', rest)?;
    let name = std::str::from_utf8(&rest[..end]).ok()?.to_owned();
    rest[end..].strip_prefix(br#"","d":"#)?;
    let start = frame.len() - rest.len() + end + br#"","d":"#.len();
    Some(Dispatch {
        seq,
        name,
        data: start..frame.len().checked_sub(1)?,
    })
}

/// The first `"guild_id":"…"` (`"id":"…"` for guild payloads), by substring search.
pub(crate) fn guild_id<'a>(name: &str, data: &'a [u8]) -> Option<&'a str> {
    let key: &[u8] = if name.starts_with("GUILD_") && !name.starts_with("GUILD_MEMBER") {
        br#""id":""#
    } else {
        br#""guild_id":""#
    };
    let at = memchr::memmem::find(data, key)? + key.len();
    let len = memchr::memchr(b'"', &data[at..])?;
    std::str::from_utf8(&data[at..at + len]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_simulators_frames() {
        let frame = br#"{"op":0,"s":42,"t":"MESSAGE_CREATE","d":{"a":1,"guild_id":"77"}}"#;
        let d = dispatch(frame).unwrap();
        assert_eq!((d.seq, d.name.as_str()), (42, "MESSAGE_CREATE"));
        assert_eq!(&frame[d.data.clone()], br#"{"a":1,"guild_id":"77"}"#);
        assert_eq!(guild_id("MESSAGE_CREATE", &frame[d.data]), Some("77"));
        assert!(dispatch(br#"{"op":11,"s":null,"t":null,"d":null}"#).is_none());
        assert_eq!(guild_id("GUILD_CREATE", br#"{"id":"5"}"#), Some("5"));
    }
}
