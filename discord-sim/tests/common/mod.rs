//! Test clients for the simulator: a twilight-gateway shard and a raw WebSocket client.
//!
//! twilight-gateway 0.18 with both `zstd` (default) and `zlib` features (as in the
//! workspace) always asks for `compress=zstd-stream`, so `zlib-stream` and uncompressed
//! text frames are exercised with the raw tokio-tungstenite client below.

#![allow(dead_code)]

use std::time::Duration;

use flate2::{Decompress, FlushDecompress};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::value::RawValue;
use shardline_discord_sim::{SimEvent, Simulator};
use tokio::net::TcpStream;
use tokio::sync::broadcast;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite};
use twilight_gateway::queue::InMemoryQueue;
use twilight_gateway::{ConfigBuilder, Intents, Message, Shard, ShardId};

/// Safety net so a broken test fails instead of hanging; never used to synchronise.
pub const LIMIT: Duration = Duration::from_secs(20);

/// A gateway frame as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// op 0.
    Dispatch {
        /// `s`.
        seq: u64,
        /// `t`.
        event: String,
        /// `d`, byte-exact.
        d: String,
    },
    /// Any other opcode, with its raw `d`.
    Op(u8, String),
    /// WebSocket close with code.
    Close(Option<u16>),
}

#[derive(Deserialize)]
struct RawFrame<'a> {
    op: u8,
    s: Option<u64>,
    t: Option<String>,
    #[serde(borrow)]
    d: Option<&'a RawValue>,
}

/// Parses one gateway payload keeping `d` byte-exact.
pub fn parse(text: &str) -> Frame {
    let raw: RawFrame<'_> = serde_json::from_str(text).expect("gateway frame is JSON");
    let d = raw.d.map_or("null", RawValue::get).to_owned();
    if raw.op == 0 {
        Frame::Dispatch {
            seq: raw.s.expect("dispatch has s"),
            event: raw.t.expect("dispatch has t"),
            d,
        }
    } else {
        Frame::Op(raw.op, d)
    }
}

pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A twilight shard pointed at the simulator, with an instant identify queue.
pub fn twilight_shard(sim: &Simulator, shard: u32, token: &str) -> Shard {
    install_crypto();
    let queue = InMemoryQueue::new(0, 1000, Duration::ZERO, 1000);
    let config = ConfigBuilder::new(token.to_owned(), Intents::GUILDS | Intents::GUILD_MESSAGES)
        .proxy_url(sim.gateway_url())
        .queue(queue)
        .build();
    Shard::with_config(ShardId::new(shard, sim.config().shard_total), config)
}

/// Next frame from a twilight shard.
pub async fn next_frame(shard: &mut Shard) -> Frame {
    let item = tokio::time::timeout(LIMIT, shard.next())
        .await
        .expect("frame within limit")
        .expect("shard stream not finished");
    match item {
        Ok(Message::Text(text)) => parse(&text),
        Ok(Message::Close(frame)) => Frame::Close(frame.map(|f| f.code)),
        Err(e) => panic!("shard error: {e}"),
    }
}

/// Next dispatch from a twilight shard (other opcodes skipped, close is a failure).
pub async fn next_dispatch(shard: &mut Shard) -> (u64, String, String) {
    loop {
        match next_frame(shard).await {
            Frame::Dispatch { seq, event, d } => return (seq, event, d),
            Frame::Op(..) => {}
            Frame::Close(code) => panic!("unexpected close {code:?}"),
        }
    }
}

/// Awaits the first simulator event matching `pred`.
pub async fn wait_event(
    rx: &mut broadcast::Receiver<SimEvent>,
    pred: impl Fn(&SimEvent) -> bool,
) -> SimEvent {
    tokio::time::timeout(LIMIT, async {
        loop {
            let e = rx.recv().await.expect("event channel open");
            if pred(&e) {
                return e;
            }
        }
    })
    .await
    .expect("event within limit")
}

enum Inflate {
    None,
    Zlib(Box<Decompress>),
    Zstd(Box<zstd_safe::DCtx<'static>>),
}

/// A raw gateway client (tokio-tungstenite) with its own transport decompression.
pub struct RawClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    inflate: Inflate,
}

impl RawClient {
    /// Connects with `compress` = `""`, `"zlib-stream"` or `"zstd-stream"`.
    pub async fn connect(sim: &Simulator, compress: &str) -> RawClient {
        Self::connect_url(&sim.gateway_url(), compress).await
    }

    /// Connects to a gateway base URL (`ws://host:port`).
    pub async fn connect_url(base: &str, compress: &str) -> RawClient {
        let mut url = format!("{base}/?v=10&encoding=json");
        if !compress.is_empty() {
            url.push_str("&compress=");
            url.push_str(compress);
        }
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("connect");
        let inflate = match compress {
            "zlib-stream" => Inflate::Zlib(Box::new(Decompress::new(true))),
            "zstd-stream" => Inflate::Zstd(Box::new(zstd_safe::DCtx::create())),
            _ => Inflate::None,
        };
        RawClient { ws, inflate }
    }

    /// Sends a JSON payload as text.
    pub async fn send(&mut self, json: &str) {
        self.ws
            .send(tungstenite::Message::Text(json.into()))
            .await
            .expect("send");
    }

    /// Next gateway frame (pings skipped).
    pub async fn next(&mut self) -> Frame {
        loop {
            let msg = tokio::time::timeout(LIMIT, self.ws.next())
                .await
                .expect("frame within limit");
            let Some(Ok(msg)) = msg else {
                return Frame::Close(None);
            };
            let text = match msg {
                tungstenite::Message::Text(t) => {
                    assert!(
                        matches!(self.inflate, Inflate::None),
                        "text frame on compressed stream"
                    );
                    t.as_str().to_owned()
                }
                tungstenite::Message::Binary(b) => self.decompress(&b),
                tungstenite::Message::Close(f) => {
                    return Frame::Close(f.map(|f| u16::from(f.code)));
                }
                _ => continue,
            };
            return parse(&text);
        }
    }

    /// Next dispatch (other opcodes skipped).
    pub async fn next_dispatch(&mut self) -> (u64, String, String) {
        loop {
            match self.next().await {
                Frame::Dispatch { seq, event, d } => return (seq, event, d),
                Frame::Op(..) => {}
                Frame::Close(code) => panic!("unexpected close {code:?}"),
            }
        }
    }

    fn decompress(&mut self, data: &[u8]) -> String {
        match &mut self.inflate {
            Inflate::None => panic!("binary frame without compression"),
            Inflate::Zlib(d) => {
                assert!(
                    data.ends_with(&[0, 0, 0xff, 0xff]),
                    "zlib message ends with sync flush"
                );
                let mut out = Vec::with_capacity(data.len() * 4 + 1024);
                let mut input = data;
                loop {
                    let before = d.total_in();
                    d.decompress_vec(input, &mut out, FlushDecompress::Sync)
                        .expect("inflate");
                    input = &input[(d.total_in() - before) as usize..];
                    if input.is_empty() && out.len() < out.capacity() {
                        break;
                    }
                    out.reserve(out.capacity());
                }
                String::from_utf8(out).expect("utf8")
            }
            Inflate::Zstd(d) => {
                let mut out = Vec::new();
                let mut buf = vec![0u8; 64 * 1024];
                let mut input = zstd_safe::InBuffer::around(data);
                loop {
                    let mut output = zstd_safe::OutBuffer::around(&mut buf[..]);
                    d.decompress_stream(&mut output, &mut input).expect("zstd");
                    let n = output.pos();
                    out.extend_from_slice(&buf[..n]);
                    if input.pos() == data.len() && n < buf.len() {
                        break;
                    }
                }
                String::from_utf8(out).expect("utf8")
            }
        }
    }

    /// Sends RESUME of `session_id` from `seq`.
    pub async fn resume(&mut self, token: &str, session_id: &str, seq: u64) {
        let json = serde_json::json!({"op": 6, "d": {
            "token": token, "session_id": session_id, "seq": seq,
        }});
        self.send(&json.to_string()).await;
    }

    /// Sends IDENTIFY for `shard` of `total`.
    pub async fn identify(&mut self, token: &str, shard: u32, total: u32) {
        let json = serde_json::json!({"op": 2, "d": {
            "token": token, "intents": 513, "compress": false, "large_threshold": 50,
            "properties": {"os": "linux", "browser": "raw", "device": "raw"},
            "shard": [shard, total],
        }});
        self.send(&json.to_string()).await;
    }
}
