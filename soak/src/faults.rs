//! Doing a fault: kill the part, keep it down for the planned time, start it again,
//! and wait until it is back (a gateway's shards resumed or identified, a NATS
//! node's streams current again), noting what happened.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::GetStreamErrorKind;
use shardline_discord_sim::{SimEvent, Simulator};
use shardline_proto::topology::STREAMS;
use shardline_testkit::{NatsCluster, PgServer, poll_until};

use crate::fleet::{Fleet, shard_range};
use crate::schedule::{Fault, Planned};

/// The parts the schedule acts on.
pub struct Parts {
    /// The gateways, workers and REST proxy.
    pub fleet: Fleet,
    /// The 3-node cluster.
    pub cluster: Arc<Mutex<NatsCluster>>,
    /// PostgreSQL.
    pub pg: Arc<Mutex<PgServer>>,
    /// The simulator.
    pub sim: Simulator,
    /// An operator connection to every node.
    pub operator: async_nats::Client,
    /// Shards in all.
    pub shard_total: u32,
}

/// A fault as it happened.
#[derive(Debug, Clone)]
pub struct Done {
    /// What was planned.
    pub planned: Planned,
    /// When it began (since the soak's epoch).
    pub from: Duration,
    /// When the part was back.
    pub to: Duration,
    /// What was seen.
    pub outcome: String,
    /// Whether the part came back as expected.
    pub ok: bool,
}

/// How long a part may take to come back before the fault counts as failed.
const BACK_WITHIN: Duration = Duration::from_secs(90);

/// Does `planned` now; `epoch` is the soak's clock.
pub async fn inject(parts: &mut Parts, planned: Planned, epoch: Instant) -> Done {
    let from = epoch.elapsed();
    let (outcome, ok) = match planned.fault {
        Fault::GatewayTerm { gateway } | Fault::GatewayKill { gateway } => {
            gateway_fault(parts, gateway, planned).await
        }
        Fault::WorkerKill { role, index } => {
            let proc = parts
                .fleet
                .workers
                .get_mut(&(role, index))
                .expect("two of each");
            proc.kill().await;
            tokio::time::sleep(planned.down).await;
            match proc.start() {
                Ok(()) => (
                    format!("started again after {:.1} s", secs(planned.down)),
                    true,
                ),
                Err(e) => (format!("did not start: {e:#}"), false),
            }
        }
        Fault::NatsKill { node, keep_store } => nats_fault(parts, node, keep_store, planned).await,
        Fault::DatabaseKill => {
            let pg = Arc::clone(&parts.pg);
            let _ = tokio::task::spawn_blocking(move || lock(&pg).kill()).await;
            tokio::time::sleep(planned.down).await;
            let pg = Arc::clone(&parts.pg);
            match tokio::task::spawn_blocking(move || lock(&pg).restart()).await {
                Ok(()) => (format!("up again after {:.1} s", secs(planned.down)), true),
                Err(e) => (format!("did not start: {e}"), false),
            }
        }
    };
    Done {
        planned,
        from,
        to: epoch.elapsed(),
        outcome,
        ok,
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn gateway_fault(parts: &mut Parts, gateway: usize, planned: Planned) -> (String, bool) {
    let gateways = parts.fleet.gateways.len();
    let (first, last) = shard_range(gateway, gateways, parts.shard_total);
    let mut events = parts.sim.events();
    let proc = &mut parts.fleet.gateways[gateway];
    let mut notes = Vec::new();
    if matches!(planned.fault, Fault::GatewayTerm { .. }) {
        match proc.terminate(Duration::from_secs(30)).await {
            Some((status, took)) => notes.push(format!("exited {status} in {:.1} s", secs(took))),
            None => notes.push("did not exit within 30 s (killed)".to_owned()),
        }
    } else {
        proc.kill().await;
    }
    tokio::time::sleep(planned.down).await;
    if let Err(e) = proc.start() {
        return (format!("did not start: {e:#}"), false);
    }
    // Each of its shards resumes (Discord replays what it missed) or identifies
    // anew (what its old session still held is never delivered).
    let mut pending: Vec<u32> = (first..=last).collect();
    let (mut resumed, mut replayed, mut identified) = (0, 0, Vec::new());
    let deadline = tokio::time::Instant::now() + BACK_WITHIN;
    while !pending.is_empty() {
        let event = match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(event)) => event,
            Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => continue,
            _ => break,
        };
        let shard = match event {
            SimEvent::Resumed {
                shard, replayed: n, ..
            } => {
                resumed += 1;
                replayed += n;
                shard
            }
            SimEvent::Identified { shard, .. } => {
                identified.push(shard);
                shard
            }
            _ => continue,
        };
        pending.retain(|s| *s != shard);
    }
    notes.push(format!("{resumed} shards resumed ({replayed} replayed)"));
    if !identified.is_empty() {
        notes.push(format!("shards {identified:?} identified anew"));
    }
    if !pending.is_empty() {
        notes.push(format!("shards {pending:?} not back"));
    }
    (
        notes.join("; "),
        pending.is_empty() && identified.is_empty(),
    )
}

async fn nats_fault(
    parts: &mut Parts,
    node: usize,
    keep_store: bool,
    planned: Planned,
) -> (String, bool) {
    let cluster = Arc::clone(&parts.cluster);
    let _ = tokio::task::spawn_blocking(move || lock(&cluster).kill(node)).await;
    tokio::time::sleep(planned.down).await;
    let cluster = Arc::clone(&parts.cluster);
    let started = tokio::task::spawn_blocking(move || {
        let mut cluster = lock(&cluster);
        if keep_store {
            cluster.restart(node);
        } else {
            cluster.restart_empty(node);
        }
    })
    .await;
    if let Err(e) = started {
        return (format!("did not start: {e}"), false);
    }
    let back = Instant::now();
    let js = async_nats::jetstream::new(parts.operator.clone());
    let current = poll_until(BACK_WITHIN, || all_current(&js)).await;
    match current {
        Some(()) => (
            format!(
                "down {:.1} s; every stream's replicas current {:.1} s after restart",
                secs(planned.down),
                secs(back.elapsed())
            ),
            true,
        ),
        None => (
            format!(
                "replicas not current {} s after restart",
                BACK_WITHIN.as_secs()
            ),
            false,
        ),
    }
}

/// Whether every stream has a leader and two current replicas.
async fn all_current(js: &async_nats::jetstream::Context) -> Option<()> {
    for spec in STREAMS {
        let stream = match tokio::time::timeout(Duration::from_secs(2), js.get_stream(spec.name))
            .await
            .ok()?
        {
            Ok(stream) => stream,
            // A stream this deployment never created (no process that needs it ran).
            Err(e)
                if matches!(e.kind(), GetStreamErrorKind::JetStream(ref j)
                    if j.error_code() == ErrorCode::STREAM_NOT_FOUND) =>
            {
                continue;
            }
            Err(_) => return None,
        };
        let cluster = stream.cached_info().cluster.as_ref()?;
        cluster.leader.as_ref()?;
        let current = cluster.replicas.iter().filter(|r| r.current).count();
        if current < 2 {
            return None;
        }
    }
    Some(())
}
