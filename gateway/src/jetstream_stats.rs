//! JetStream's own state as metrics: stream depth and size, consumer lag, and how
//! many JetStream servers hold Shardline's streams. The gateway polls these so a
//! dashboard needs no extra exporter.
//!
//! Workers also export `nats_consumer_lag` and `nats_consumer_ack_pending` for their
//! own consumer. Both read the same server counter (`num_pending`, `num_ack_pending`),
//! so the series agree up to the polling moment; dashboards and alerts aggregate them
//! with `max by (consumer)`.

use std::collections::BTreeSet;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use futures_util::TryStreamExt;
use shardline_proto::topology::STREAMS;
use tokio_util::sync::CancellationToken;

use crate::metrics as m;

/// What one poll saw.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// `(stream, messages, bytes, configured replicas)` for each topology stream found.
    pub streams: Vec<(String, u64, u64, usize)>,
    /// `(consumer, pending, ack pending)` for every consumer on those streams.
    pub consumers: Vec<(String, u64, usize)>,
    /// Distinct servers that lead or hold a current replica of those streams (0 when
    /// no stream could be read).
    pub nodes: usize,
}

/// Reads every topology stream and its consumers once: what could be read, and how
/// many reads failed. A stream that is missing or cannot be read is left out.
pub async fn snapshot(js: &jetstream::Context) -> (Snapshot, usize) {
    let mut snap = Snapshot::default();
    let mut nodes = BTreeSet::new();
    let mut errors = 0;
    for spec in STREAMS {
        let stream = match js.get_stream(spec.name).await {
            Ok(stream) => stream,
            Err(error) => {
                tracing::debug!(stream = spec.name, %error, "stream info failed");
                errors += 1;
                continue;
            }
        };
        let info = stream.cached_info();
        snap.streams.push((
            spec.name.to_owned(),
            info.state.messages,
            info.state.bytes,
            info.config.num_replicas.max(1),
        ));
        nodes.extend(servers(info));
        let consumers: Result<Vec<consumer::Info>, _> = stream.consumers().try_collect().await;
        match consumers {
            Ok(consumers) => snap.consumers.extend(
                consumers
                    .into_iter()
                    .map(|c| (c.name, c.num_pending, c.num_ack_pending)),
            ),
            Err(error) => {
                tracing::debug!(stream = spec.name, %error, "consumer list failed");
                errors += 1;
            }
        }
    }
    snap.nodes = nodes.len();
    (snap, errors)
}

/// The servers that hold a live copy of a stream: its leader and every replica that
/// is current and not offline. A standalone server reports itself as the leader.
fn servers(info: &stream::Info) -> impl Iterator<Item = String> + '_ {
    let cluster = info.cluster.as_ref();
    let leader = cluster.and_then(|c| c.leader.clone());
    let replicas = cluster
        .into_iter()
        .flat_map(|c| c.replicas.iter())
        .filter(|peer| peer.current && !peer.offline)
        .map(|peer| peer.name.clone());
    leader.into_iter().chain(replicas)
}

/// Sets the gauges from a snapshot.
pub fn record(snap: &Snapshot) {
    for (stream, messages, bytes, replicas) in &snap.streams {
        metrics::gauge!(m::STREAM_MESSAGES, "stream" => stream.clone()).set(*messages as f64);
        metrics::gauge!(m::STREAM_BYTES, "stream" => stream.clone()).set(*bytes as f64);
        metrics::gauge!(m::STREAM_REPLICAS, "stream" => stream.clone()).set(*replicas as f64);
    }
    for (consumer, pending, ack_pending) in &snap.consumers {
        metrics::gauge!(m::CONSUMER_LAG, "consumer" => consumer.clone()).set(*pending as f64);
        metrics::gauge!(m::CONSUMER_ACK_PENDING, "consumer" => consumer.clone())
            .set(*ack_pending as f64);
    }
    metrics::gauge!(m::CLUSTER_NODES).set(snap.nodes as f64);
}

/// Polls JetStream every `interval` until `stop` is cancelled.
///
/// # Cancel safety
///
/// Stops at the next await once `stop` is cancelled; gauges keep their last values.
pub async fn poll(js: jetstream::Context, interval: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let (snap, errors) = tokio::select! {
            () = stop.cancelled() => return,
            read = snapshot(&js) => read,
        };
        record(&snap);
        if errors > 0 {
            metrics::counter!(m::JETSTREAM_STATS_ERRORS).increment(errors as u64);
        }
    }
}
