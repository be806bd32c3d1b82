//! `shardline status`: one screen on shards, streams, consumers, dead letters and
//! nodes, and a verdict (healthy or not, with every reason) for deploy gates. The
//! rules are in [`rules`] and docs/ops.md.

mod collect;
mod render;
pub mod rules;

use std::time::Duration;

use serde::Serialize;
use shardline_proto::gateway::{GatewayStatus, StoredSession};

pub use render::render;
pub use rules::{Reason, ReasonKind, Thresholds};

use crate::Error;

/// One shard: what its gateway answers and what it stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ShardRow {
    /// The shard.
    pub shard: u32,
    /// Connected, as its gateway process answered (false when none answered).
    pub connected: bool,
    /// The process(es) that answered for it (`host/pid`); empty when none did.
    pub processes: Vec<String>,
    /// Unix milliseconds when it last connected or disconnected.
    pub since_ms: Option<u64>,
    /// Unix milliseconds when its Discord session began (stored).
    pub session_started_ms: Option<u64>,
    /// The last sequence JetStream acknowledged (stored ack floor).
    pub acked_sequence: Option<u64>,
    /// Unix milliseconds of the last stored write.
    pub saved_at_ms: Option<u64>,
    /// The process that last stored its session.
    pub stored_by: Option<String>,
}

/// One stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StreamRow {
    /// Its name.
    pub name: String,
    /// `memory` or `file`.
    pub storage: String,
    /// Messages held.
    pub messages: u64,
    /// Bytes held.
    pub bytes: u64,
    /// Configured replicas.
    pub replicas: usize,
    /// The server leading it (standalone: the server itself; `None` when leaderless).
    pub leader: Option<String>,
    /// Replicas (the leader not included), as the leader sees them.
    pub peers: Vec<PeerRow>,
    /// Replicas offline or behind (filled in by the rules).
    pub lagging: Vec<String>,
}

/// One replica of a stream, as its leader sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PeerRow {
    /// Server name.
    pub name: String,
    /// Up to date with the leader.
    pub current: bool,
    /// Marked offline by the group.
    pub offline: bool,
    /// Milliseconds since the leader last heard from it.
    pub seen_ms_ago: u64,
}

/// One durable consumer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConsumerRow {
    /// Its stream.
    pub stream: String,
    /// Its durable name.
    pub name: String,
    /// Messages not yet delivered.
    pub lag: u64,
    /// Delivered and not acknowledged.
    pub ack_pending: u64,
    /// Delivered more than once.
    pub redelivered: u64,
    /// Pull requests waiting.
    pub waiting: u64,
    /// Unix milliseconds of the last delivery.
    pub last_active_ms: Option<u64>,
    /// Unix milliseconds when it was created.
    pub created_ms: u64,
}

/// Dead letters of one consumer and original subject.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeadLetterRow {
    /// The consumer that gave up.
    pub consumer: String,
    /// Where the messages were first published.
    pub subject: String,
    /// How many.
    pub messages: u64,
}

/// One NATS server, as the streams' clusters report it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeRow {
    /// Server name.
    pub name: String,
    /// `up`, `lagging` or `offline`.
    pub state: String,
    /// Streams it leads.
    pub leads: usize,
    /// Streams it holds a replica of (not leading).
    pub replicas: usize,
}

/// Everything `status` reports.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// No reason found.
    pub healthy: bool,
    /// Why not.
    pub reasons: Vec<Reason>,
    /// Worth a look, not unhealthy.
    pub warnings: Vec<Reason>,
    /// Unix milliseconds of the check.
    pub checked_at_ms: u64,
    /// Shards.
    pub shards: Vec<ShardRow>,
    /// Streams.
    pub streams: Vec<StreamRow>,
    /// Durable consumers.
    pub consumers: Vec<ConsumerRow>,
    /// Dead letters by consumer and subject.
    pub dead_letters: Vec<DeadLetterRow>,
    /// Dead letters stored within the window.
    pub new_dead_letters: u64,
    /// Servers.
    pub nodes: Vec<NodeRow>,
}

/// Everything gathered, before the rules run.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// Every gateway's answer.
    pub gateways: Vec<GatewayStatus>,
    /// Stored sessions by shard.
    pub sessions: std::collections::BTreeMap<u32, StoredSession>,
    /// Streams.
    pub streams: Vec<StreamRow>,
    /// Durable consumers.
    pub consumers: Vec<ConsumerRow>,
    /// Dead letters by subject.
    pub dead_letters: Vec<DeadLetterRow>,
    /// Dead letters within the window.
    pub new_dead_letters: u64,
    /// The server this client is connected to.
    pub connected_server: String,
    /// Parts that could not be read, as [`ReasonKind::Unreadable`] reasons.
    pub unreadable: Vec<Reason>,
}

/// Asks NATS and the gateways, then applies the rules. A part that cannot be read
/// (a cluster losing a node times requests out) becomes an
/// [`Unreadable`](ReasonKind::Unreadable) reason, not an error: status is what an
/// operator runs when things are broken.
///
/// # Errors
///
/// None at present; kept fallible for callers.
pub async fn check(
    client: &async_nats::Client,
    thresholds: &Thresholds,
    gateway_wait: Duration,
) -> Result<Report, Error> {
    let js = async_nats::jetstream::new(client.clone());
    let server = client.server_info().server_name;
    let (gateways, sessions, streams, dead) = tokio::join!(
        collect::gateways(client, gateway_wait),
        collect::sessions(&js),
        collect::streams(&js, &server),
        collect::dead_letters(&js, thresholds.dead_letter_window),
    );
    let mut unreadable = Vec::new();
    let mut read = |target: &str, e: Error| {
        unreadable.push(rules::reason(ReasonKind::Unreadable, target, e.to_string()));
    };
    let gateways = gateways.unwrap_or_else(|e| {
        read("gateways", e);
        Vec::new()
    });
    let sessions = sessions.unwrap_or_else(|e| {
        read("sessions", e);
        Default::default()
    });
    let (streams, consumers) = streams.unwrap_or_else(|e| {
        read("streams", e);
        Default::default()
    });
    let (dead_letters, new_dead_letters) = dead.unwrap_or_else(|e| {
        read("dead letters", e);
        Default::default()
    });
    let observed = Observed {
        gateways,
        sessions,
        streams,
        consumers,
        dead_letters,
        new_dead_letters,
        connected_server: server,
        unreadable,
    };
    Ok(rules::evaluate(observed, thresholds, collect::now_ms()))
}
