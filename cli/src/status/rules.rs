//! The health rules: what makes `status` exit 1. Each finding is a [`Reason`] with a
//! kind and the thing it is about, so scripts (and tests) branch on the kind.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;
use shardline_proto::topology::{CONSUMERS, STREAMS};

use super::{NodeRow, Observed, Report, ShardRow};

/// The thresholds, from `status`'s flags.
#[derive(Clone, Debug)]
pub struct Thresholds {
    /// Shards 0..N must each be held and connected; `None`: those seen.
    pub shard_total: Option<u32>,
    /// Most messages a consumer may have waiting.
    pub max_lag: u64,
    /// Longest a consumer with messages waiting may go without a delivery.
    pub max_idle: Duration,
    /// Dead letters newer than this are new.
    pub dead_letter_window: Duration,
    /// Most new dead letters.
    pub max_new_dead_letters: u64,
    /// A replica not heard from for longer is offline (the server does not always
    /// mark a killed peer `offline`; it only stops hearing from it).
    pub max_node_silence: Duration,
}

/// What a finding is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonKind {
    /// No gateway answered and no session is stored: nothing to check shards by.
    NoGateway,
    /// A shard's gateway answers that it has no live session.
    ShardDisconnected,
    /// No gateway process answers for a shard.
    ShardUnheld,
    /// Two processes answer for one shard: two Discord sessions, every event twice.
    ShardHeldTwice,
    /// A declared stream does not exist.
    StreamMissing,
    /// A replicated stream has no leader: it takes no messages.
    StreamNoLeader,
    /// A stream's replica is offline or behind.
    ReplicaLagging,
    /// A server is offline in the streams' clusters.
    NodeOffline,
    /// A consumer has more messages waiting than the threshold.
    ConsumerLagging,
    /// A consumer has messages waiting and has delivered nothing for too long.
    ConsumerStalled,
    /// More dead letters than the threshold within the window.
    DeadLettersNew,
    /// A part of the state could not be read (a request failed or timed out): what
    /// it would show is unknown.
    Unreadable,
    /// A declared consumer does not exist (its worker never ran): a warning.
    ConsumerMissing,
}

/// One finding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Reason {
    /// What kind.
    pub kind: ReasonKind,
    /// What it is about: `shard 3`, a stream, a consumer, a node.
    pub target: String,
    /// In words.
    pub detail: String,
}

pub(crate) fn reason(
    kind: ReasonKind,
    target: impl Into<String>,
    detail: impl Into<String>,
) -> Reason {
    Reason {
        kind,
        target: target.into(),
        detail: detail.into(),
    }
}

/// Applies the rules to what was observed at `now_ms`.
pub fn evaluate(mut observed: Observed, t: &Thresholds, now_ms: u64) -> Report {
    let silence = u64::try_from(t.max_node_silence.as_millis()).unwrap_or(u64::MAX);
    for s in &mut observed.streams {
        s.lagging = s
            .peers
            .iter()
            .filter(|p| !p.current || p.offline || p.seen_ms_ago > silence)
            .map(|p| p.name.clone())
            .collect();
    }
    let mut reasons = observed.unreadable.clone();
    let mut warnings = Vec::new();
    let shards = shard_rows(&observed, t, &mut reasons);

    let live: BTreeSet<&str> = observed.streams.iter().map(|s| s.name.as_str()).collect();
    let streams_read = !observed.unreadable.iter().any(|r| r.target == "streams");
    for spec in STREAMS.iter().filter(|_| streams_read) {
        if !live.contains(spec.name) {
            reasons.push(reason(
                ReasonKind::StreamMissing,
                spec.name,
                "declared, not on the server",
            ));
        }
    }
    for s in &observed.streams {
        if s.leader.is_none() {
            reasons.push(reason(
                ReasonKind::StreamNoLeader,
                &s.name,
                "no leader: it takes no messages",
            ));
        }
        if !s.lagging.is_empty() {
            reasons.push(reason(
                ReasonKind::ReplicaLagging,
                &s.name,
                format!("replicas offline or behind: {}", s.lagging.join(", ")),
            ));
        }
    }
    let nodes = node_rows(&observed, silence);
    for n in nodes.iter().filter(|n| n.state == "offline") {
        reasons.push(reason(
            ReasonKind::NodeOffline,
            &n.name,
            "offline in the streams' clusters",
        ));
    }

    for c in &observed.consumers {
        let target = format!("{}/{}", c.stream, c.name);
        if c.lag > t.max_lag {
            reasons.push(reason(
                ReasonKind::ConsumerLagging,
                &target,
                format!("{} messages waiting (more than {})", c.lag, t.max_lag),
            ));
        }
        let idle_since = c.last_active_ms.unwrap_or(c.created_ms);
        let idle = Duration::from_millis(now_ms.saturating_sub(idle_since));
        if c.lag > 0 && idle > t.max_idle {
            reasons.push(reason(
                ReasonKind::ConsumerStalled,
                &target,
                format!(
                    "{} messages waiting, nothing delivered for {}s",
                    c.lag,
                    idle.as_secs()
                ),
            ));
        }
    }
    for spec in &CONSUMERS {
        let exists = observed
            .consumers
            .iter()
            .any(|c| c.stream == spec.stream && c.name == spec.durable);
        if live.contains(spec.stream) && !exists {
            warnings.push(reason(
                ReasonKind::ConsumerMissing,
                format!("{}/{}", spec.stream, spec.durable),
                "declared; created when its worker first starts",
            ));
        }
    }
    if observed.new_dead_letters > t.max_new_dead_letters {
        reasons.push(reason(
            ReasonKind::DeadLettersNew,
            "DEAD_LETTER",
            format!(
                "{} dead letters in the last {}s (more than {})",
                observed.new_dead_letters,
                t.dead_letter_window.as_secs(),
                t.max_new_dead_letters
            ),
        ));
    }
    reasons.sort_by(|a, b| (a.kind, &a.target).cmp(&(b.kind, &b.target)));
    Report {
        healthy: reasons.is_empty(),
        reasons,
        warnings,
        checked_at_ms: now_ms,
        shards,
        streams: observed.streams,
        consumers: observed.consumers,
        dead_letters: observed.dead_letters,
        new_dead_letters: observed.new_dead_letters,
        nodes,
    }
}

fn shard_rows(observed: &Observed, t: &Thresholds, reasons: &mut Vec<Reason>) -> Vec<ShardRow> {
    let mut holders: BTreeMap<u32, Vec<(&str, bool, u64)>> = BTreeMap::new();
    for g in &observed.gateways {
        for s in &g.shards {
            holders
                .entry(s.shard)
                .or_default()
                .push((g.process.as_str(), s.connected, s.since_ms));
        }
    }
    let expected: BTreeSet<u32> = match t.shard_total {
        Some(total) => (0..total).collect(),
        None => holders
            .keys()
            .chain(observed.sessions.keys())
            .copied()
            .collect(),
    };
    if expected.is_empty() && t.shard_total.is_none() {
        reasons.push(reason(
            ReasonKind::NoGateway,
            "gateways",
            "no gateway answered and no session is stored (pass --shard-total to name the shards)",
        ));
    }
    let mut rows = Vec::new();
    for shard in expected {
        let held = holders.get(&shard).map(Vec::as_slice).unwrap_or_default();
        let stored = observed.sessions.get(&shard);
        let target = format!("shard {shard}");
        match held {
            [] => reasons.push(reason(
                ReasonKind::ShardUnheld,
                &target,
                "no gateway process answers for it",
            )),
            [(process, false, _)] => reasons.push(reason(
                ReasonKind::ShardDisconnected,
                &target,
                format!("{process} holds it without a live session"),
            )),
            [_] => {}
            many => reasons.push(reason(
                ReasonKind::ShardHeldTwice,
                &target,
                format!(
                    "held by {}: two Discord sessions publish every event twice",
                    many.iter().map(|h| h.0).collect::<Vec<_>>().join(" and ")
                ),
            )),
        }
        rows.push(ShardRow {
            shard,
            connected: held.len() == 1 && held[0].1,
            processes: held.iter().map(|h| h.0.to_owned()).collect(),
            since_ms: held.first().map(|h| h.2),
            session_started_ms: stored.and_then(|s| s.started_at_ms),
            acked_sequence: stored.map(|s| s.sequence),
            saved_at_ms: stored.map(|s| s.saved_at_ms),
            stored_by: stored.and_then(|s| s.process.clone()),
        });
    }
    rows
}

fn node_rows(observed: &Observed, silence: u64) -> Vec<NodeRow> {
    #[derive(Default)]
    struct Seen {
        leads: usize,
        replicas: usize,
        up: bool,
        lagging: bool,
        offline: bool,
    }
    let mut nodes: BTreeMap<String, Seen> = BTreeMap::new();
    if !observed.connected_server.is_empty() {
        nodes
            .entry(observed.connected_server.clone())
            .or_default()
            .up = true;
    }
    for s in &observed.streams {
        if let Some(leader) = &s.leader {
            let n = nodes.entry(leader.clone()).or_default();
            n.leads += 1;
            n.up = true;
        }
        for p in &s.peers {
            let n = nodes.entry(p.name.clone()).or_default();
            n.replicas += 1;
            if p.offline || p.seen_ms_ago > silence {
                n.offline = true;
            } else if p.current {
                n.up = true;
            } else {
                n.lagging = true;
            }
        }
    }
    nodes
        .into_iter()
        .map(|(name, n)| NodeRow {
            name,
            state: if n.offline && !n.up {
                "offline"
            } else if n.lagging || n.offline {
                "lagging"
            } else {
                "up"
            }
            .to_owned(),
            leads: n.leads,
            replicas: n.replicas,
        })
        .collect()
}

#[cfg(test)]
mod tests;
