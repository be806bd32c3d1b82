//! Shared harness for the gateway's end-to-end tests: a real nats-server, the
//! Discord simulator, and the gateway running in-process through twilight-gateway.

#![allow(dead_code)]

pub mod gate;
pub mod http;
pub mod process;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_nats::jetstream::{self, message::StreamMessage};
use shardline_discord_sim::{Sent, SimConfig, Simulator};
use shardline_gateway::{Config, Error};
use shardline_proto::{GuildTracker, Route, headers, route};
use shardline_testkit::{NatsServer, init_tracing, poll_until};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A simulator configuration whose `max_concurrency` lets every shard identify at
/// once (the gateway is told the same), so tests do not wait 5 s per shard.
pub fn sim_config() -> SimConfig {
    SimConfig {
        max_concurrency: 16,
        ..SimConfig::default()
    }
}

/// nats-server + simulator + gateway.
pub struct Harness {
    pub nats: NatsServer,
    pub sim: Simulator,
    shutdown: CancellationToken,
    gateway: JoinHandle<Result<(), Error>>,
}

impl Harness {
    /// Starts everything and waits until every shard has a live session.
    pub async fn start(sim_config: SimConfig) -> Self {
        Self::start_with(sim_config, NatsServer::start(), |_| {}).await
    }

    /// [`start`](Self::start) on `nats`, with the gateway's configuration adjusted by
    /// `configure`.
    pub async fn start_with(
        sim_config: SimConfig,
        nats: NatsServer,
        configure: impl FnOnce(&mut Config),
    ) -> Self {
        init_tracing();
        let total = sim_config.shard_total;
        let token = sim_config.token.clone();
        let sim = Simulator::start(sim_config).await.expect("start simulator");
        let mut config = Config::for_gateway(&token, &sim.gateway_url(), total, &nats.url());
        config.max_concurrency = Some(sim.config().max_concurrency as u16);
        configure(&mut config);
        let shutdown = CancellationToken::new();
        let gateway = tokio::spawn(shardline_gateway::run(config, shutdown.clone()));
        for shard in 0..total {
            sim.wait_ready(shard).await;
        }
        Self {
            nats,
            sim,
            shutdown,
            gateway,
        }
    }

    /// Waits until the streams hold as many messages as the simulator has sent
    /// publishable dispatches (frames still queued in the simulator when the gateway
    /// closes would only come back on a resume), then stops.
    pub async fn stop_when_delivered(self) -> (NatsServer, Simulator) {
        let want = expected_subjects(&self.sim.sent()).len() as u64;
        let js = jetstream::new(self.nats.client().await);
        // On timeout, stop anyway: the caller's assertions then name what is missing.
        poll_until(PATIENCE, || async {
            let mut stored = 0;
            for name in ["EVENTS", "COMMANDS"] {
                let mut stream = js.get_stream(name).await.expect("stream");
                stored += stream.info().await.expect("stream info").state.messages;
            }
            (stored >= want).then_some(())
        })
        .await;
        self.stop().await
    }

    /// Shuts the gateway down (resumable close, outstanding acks awaited) and
    /// returns the parts still needed for assertions.
    pub async fn stop(self) -> (NatsServer, Simulator) {
        self.shutdown.cancel();
        self.gateway
            .await
            .expect("gateway task")
            .expect("gateway ran cleanly");
        (self.nats, self.sim)
    }

    /// Waits for the gateway to end on its own and returns its result.
    pub async fn join(self) -> (Result<(), Error>, NatsServer, Simulator) {
        let result = self.gateway.await.expect("gateway task");
        (result, self.nats, self.sim)
    }
}

/// Waits (bounded by [`PATIENCE`]) until EVENTS and COMMANDS hold `want` messages in
/// all; returns how many they hold.
pub async fn wait_stored(nats: &NatsServer, want: u64) -> u64 {
    let js = jetstream::new(nats.client().await);
    let last = std::sync::atomic::AtomicU64::new(0);
    poll_until(PATIENCE, || {
        let js = js.clone();
        let last = &last;
        async move {
            let mut stored = 0;
            for name in ["EVENTS", "COMMANDS"] {
                let mut stream = js.get_stream(name).await.ok()?;
                stored += stream.info().await.ok()?.state.messages;
            }
            last.store(stored, std::sync::atomic::Ordering::Relaxed);
            (stored >= want).then_some(())
        }
    })
    .await;
    last.into_inner()
}

/// A free loopback port (bound, then released) for a metrics address.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .expect("local addr")
        .port()
}

impl Harness {
    /// The gateway's shutdown token (to stop it from a test without consuming the
    /// harness).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

/// Every message a stream holds, in stream order (read with direct gets, so a work
/// queue stream is not consumed).
pub async fn stream_messages(nats: &NatsServer, stream: &str) -> Vec<StreamMessage> {
    let js = jetstream::new(nats.client().await);
    let mut stream = js.get_stream(stream).await.expect("stream exists");
    let state = stream.info().await.expect("stream info").state.clone();
    let mut messages = Vec::with_capacity(state.messages as usize);
    if state.messages == 0 {
        return messages;
    }
    for seq in state.first_sequence..=state.last_sequence {
        messages.push(
            stream
                .get_raw_message(seq)
                .await
                .expect("message by sequence"),
        );
    }
    messages
}

/// Messages of the streams the gateway publishes to.
pub async fn published_messages(nats: &NatsServer) -> Vec<StreamMessage> {
    let mut all = stream_messages(nats, "EVENTS").await;
    all.extend(stream_messages(nats, "COMMANDS").await);
    all
}

/// The subject each published dispatch must land on, computed from what the
/// simulator sent (an oracle independent of the gateway's frame parser).
pub fn expected_subjects(sent: &[Sent]) -> HashMap<String, String> {
    let mut trackers: HashMap<String, GuildTracker> = HashMap::new();
    let mut expected = HashMap::new();
    for s in sent {
        let tracker = trackers.entry(s.session_id.clone()).or_default();
        let d: serde_json::Value = serde_json::from_str(&s.d).expect("sent d is JSON");
        let id = |key: &str| d[key].as_str().and_then(|v| v.parse::<u64>().ok());
        let transition = match s.event.as_str() {
            "READY" => {
                let guilds = d["guilds"].as_array().expect("READY guilds");
                tracker.ready(guilds.iter().filter_map(|g| g["id"].as_str()?.parse().ok()));
                None
            }
            "GUILD_CREATE" => Some(tracker.guild_create(id("id").expect("guild id"))),
            "GUILD_DELETE" => Some(tracker.guild_delete(
                id("id").expect("guild id"),
                d["unavailable"].as_bool() == Some(true),
            )),
            _ => None,
        };
        if let Route::Publish(subject) = route(&s.event, transition) {
            expected.insert(s.msg_id(), subject.into_owned());
        }
    }
    expected
}

fn header<'a>(message: &'a StreamMessage, name: &str) -> Option<&'a str> {
    message.headers.get(name).map(|v| v.as_str())
}

/// Asserts every published dispatch of `sent` is in `messages` exactly once, on the
/// right subject, with the right headers and a byte-exact payload, and nothing else
/// is there. Returns how many were checked.
pub fn assert_exactly_once(sent: &[Sent], messages: &[StreamMessage]) -> usize {
    assert_once_since(sent, 0, messages)
}

/// Like [`assert_exactly_once`], where only `sent[since..]` must all be stored: what
/// came before may be missing (a broker that lost its memory streams took it along),
/// but whatever is stored was sent, is stored once and is byte-exact. Returns how many
/// of `sent[since..]` were checked.
pub fn assert_once_since(sent: &[Sent], since: usize, messages: &[StreamMessage]) -> usize {
    let expected = expected_subjects(sent);
    let required = expected_subjects(&sent[since..]);
    let by_id: HashMap<String, &Sent> = sent.iter().map(|s| (s.msg_id(), s)).collect();
    let mut seen = HashSet::new();
    let mut duplicates = 0;
    for message in messages {
        let id = header(message, headers::MSG_ID)
            .expect("Nats-Msg-Id")
            .to_owned();
        let s = by_id
            .get(&id)
            .unwrap_or_else(|| panic!("{id} was never sent"));
        assert_eq!(
            message.subject.as_str(),
            expected[&id],
            "subject of {id} ({})",
            s.event
        );
        assert_eq!(&message.payload[..], s.d.as_bytes(), "payload of {id}");
        assert_eq!(header(message, headers::EVENT_TYPE), Some(s.event.as_str()));
        assert_eq!(
            header(message, headers::SHARD_ID),
            Some(s.shard.to_string().as_str())
        );
        assert_eq!(
            header(message, headers::SEQUENCE),
            Some(s.seq.to_string().as_str())
        );
        let guild = header(message, headers::GUILD_ID).map(|g| g.parse::<u64>().unwrap());
        if let Some(want) = s.guild_id {
            assert_eq!(guild, Some(want), "guild header of {id} ({})", s.event);
        }
        let received: u128 = header(message, headers::RECEIVED_AT)
            .expect("received-at header")
            .parse()
            .expect("nanoseconds");
        assert!(
            received > 1_600_000_000_000_000_000,
            "received-at is epoch nanoseconds"
        );
        if !seen.insert(id) {
            duplicates += 1;
        }
    }
    let missing: Vec<_> = required.keys().filter(|id| !seen.contains(*id)).collect();
    assert_eq!(duplicates, 0, "duplicated messages");
    assert!(
        missing.is_empty(),
        "{} lost, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    required.len()
}

/// Generous upper bound for waits in these tests (never a timing assertion).
pub const PATIENCE: Duration = Duration::from_secs(60);
