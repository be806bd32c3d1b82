//! Metric names (Vector's instrumentation spec: `<service>_<noun>_<unit>[_total]`).
//!
//! Labels are low-cardinality only: never a guild, user or session id. The names are
//! part of the contract (dashboards and alerts use them); [`register`] emits every one of them at
//! start, so a scrape shows each even before its first increment.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

/// Dispatches read from Discord, by `event_type`.
pub const EVENTS_RECEIVED: &str = "gateway_events_received_total";
/// Messages JetStream acknowledged, by `stream`.
pub const EVENTS_PUBLISHED: &str = "gateway_events_published_total";
/// Publishes JetStream reported as duplicates (replays after a resume), by `stream`.
pub const EVENTS_DEDUPLICATED: &str = "gateway_events_deduplicated_total";
/// Frames or events not published, by `reason` (see [`DROP_REASONS`]).
pub const EVENTS_DROPPED: &str = "gateway_events_dropped_total";
/// Failed publish attempts (each is retried), by `error_type`.
pub const PUBLISH_ERRORS: &str = "gateway_publish_errors_total";
/// Time from publish to JetStream ack, in seconds.
pub const PUBLISH_DURATION: &str = "gateway_publish_duration_seconds";
/// Publishes awaiting an ack or a retry.
pub const PUBLISH_INFLIGHT: &str = "gateway_publish_inflight";
/// Payload bytes of the publishes awaiting an ack or a retry (held against
/// `MAX_INFLIGHT_BYTES`).
pub const PUBLISH_INFLIGHT_BYTES: &str = "gateway_publish_inflight_bytes";
/// Payloads sent zstd-compressed because they exceed the server's `max_payload`.
pub const PAYLOADS_COMPRESSED: &str = "gateway_payloads_compressed_total";
/// 1 while the shard has a live session, else 0, by `shard`.
pub const SHARD_CONNECTED: &str = "gateway_shard_connected";
/// Heartbeat round trip, in seconds, by `shard`.
pub const SHARD_LATENCY: &str = "gateway_shard_latency_seconds";
/// New sessions and resumes, by `shard` and `kind` (`resume`, `identify`).
pub const SHARD_RECONNECTS: &str = "gateway_shard_reconnects_total";
/// Shard commands from workers, by `result` (`sent` or a refusal kind).
pub const SHARD_COMMANDS: &str = "gateway_shard_commands_total";

/// Messages stored in a stream, by `stream`; polled from JetStream.
pub const STREAM_MESSAGES: &str = "nats_stream_messages";
/// Bytes stored in a stream, by `stream`; polled.
pub const STREAM_BYTES: &str = "nats_stream_bytes";
/// A stream's configured replicas, by `stream`; polled. 1 on a single server.
pub const STREAM_REPLICAS: &str = "nats_stream_replicas";
/// Messages not yet delivered to a consumer (its `num_pending`), by `consumer`; polled.
/// The same name and meaning as the worker's own gauge.
pub const CONSUMER_LAG: &str = "nats_consumer_lag";
/// Messages delivered to a consumer and not yet acknowledged, by `consumer`; polled.
pub const CONSUMER_ACK_PENDING: &str = "nats_consumer_ack_pending";
/// JetStream servers that lead or hold a current replica of Shardline's streams
/// (1 on a single server, 0 when no stream could be read); polled.
pub const CLUSTER_NODES: &str = "nats_cluster_nodes";
/// Failed reads of stream or consumer state while polling JetStream.
pub const JETSTREAM_STATS_ERRORS: &str = "gateway_jetstream_stats_errors_total";
/// Streams the gateway found missing (or changed) after start and put back, by
/// `stream`: a broker that restarted without its memory streams.
pub const TOPOLOGY_REPAIRS: &str = "gateway_topology_repairs_total";

/// Every `reason` of [`EVENTS_DROPPED`]: broken frames, events given up on after
/// the publish retry limit, payloads too large even compressed.
pub const DROP_REASONS: &[&str] = &[
    "malformed_frame",
    "missing_event_name",
    "missing_sequence",
    "missing_data",
    "no_session",
    "publish_failed",
    "oversized",
];

/// Every `error_type` of [`PUBLISH_ERRORS`].
pub const PUBLISH_ERROR_TYPES: &[&str] = &[
    "stream_not_found",
    "timed_out",
    "broken_pipe",
    "max_ack_pending",
    "max_payload_exceeded",
    "expectation",
    "other",
];

/// Publish latency buckets: routing and a local ack are sub-millisecond; a broker
/// in trouble takes seconds.
pub const PUBLISH_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the global Prometheus recorder once per process and returns its handle
/// (several gateways in one test process share it).
///
/// # Errors
///
/// Fails if another recorder is already installed.
pub fn install() -> Result<PrometheusHandle, BuildError> {
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(PUBLISH_DURATION.to_owned()), PUBLISH_BUCKETS)?
        .install_recorder()?;
    Ok(HANDLE.get_or_init(|| handle).clone())
}

/// Describes every metric and emits the label-less or fixed-label ones at zero, and
/// the per-shard ones for `shards`.
pub fn register(shards: &[u32]) {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(EVENTS_RECEIVED, "Dispatches read from Discord");
    describe_counter!(EVENTS_PUBLISHED, "Messages JetStream acknowledged");
    describe_counter!(
        EVENTS_DEDUPLICATED,
        "Publishes JetStream dropped as duplicates"
    );
    describe_counter!(EVENTS_DROPPED, "Frames or events not published, by reason");
    describe_counter!(PUBLISH_ERRORS, "Failed publish attempts (retried)");
    describe_histogram!(PUBLISH_DURATION, Unit::Seconds, "Publish to JetStream ack");
    describe_gauge!(PUBLISH_INFLIGHT, "Publishes awaiting an ack or a retry");
    describe_gauge!(
        PUBLISH_INFLIGHT_BYTES,
        Unit::Bytes,
        "Payload bytes awaiting an ack or a retry"
    );
    describe_gauge!(SHARD_CONNECTED, "1 while the shard has a live session");
    describe_gauge!(SHARD_LATENCY, Unit::Seconds, "Heartbeat round trip");
    describe_counter!(SHARD_RECONNECTS, "Sessions started (identify) or resumed");
    describe_counter!(SHARD_COMMANDS, "Gateway commands from workers, by result");
    describe_counter!(PAYLOADS_COMPRESSED, "Payloads sent zstd-compressed");
    describe_gauge!(STREAM_MESSAGES, "Messages stored in the stream");
    describe_gauge!(STREAM_BYTES, Unit::Bytes, "Bytes stored in the stream");
    describe_gauge!(STREAM_REPLICAS, "Configured replicas of the stream");
    describe_gauge!(CONSUMER_LAG, "Messages not yet delivered to the consumer");
    describe_gauge!(CONSUMER_ACK_PENDING, "Messages delivered, not yet acked");
    describe_gauge!(
        CLUSTER_NODES,
        "JetStream servers holding a live copy of the streams"
    );
    describe_counter!(JETSTREAM_STATS_ERRORS, "Failed JetStream state reads");
    describe_counter!(
        TOPOLOGY_REPAIRS,
        "Streams found missing after start and recreated"
    );

    for reason in DROP_REASONS {
        metrics::counter!(EVENTS_DROPPED, "reason" => *reason).absolute(0);
    }
    for error_type in PUBLISH_ERROR_TYPES {
        metrics::counter!(PUBLISH_ERRORS, "error_type" => *error_type).absolute(0);
    }
    metrics::gauge!(PUBLISH_INFLIGHT).set(0.0);
    metrics::gauge!(PUBLISH_INFLIGHT_BYTES).set(0.0);
    metrics::counter!(PAYLOADS_COMPRESSED).absolute(0);
    metrics::counter!(JETSTREAM_STATS_ERRORS).absolute(0);
    for stream in shardline_proto::topology::STREAMS {
        metrics::counter!(TOPOLOGY_REPAIRS, "stream" => stream.name).absolute(0);
    }
    for shard in shards {
        let shard = shard.to_string();
        metrics::gauge!(SHARD_CONNECTED, "shard" => shard.clone()).set(0.0);
        for kind in ["identify", "resume"] {
            metrics::counter!(SHARD_RECONNECTS, "shard" => shard.clone(), "kind" => kind)
                .absolute(0);
        }
    }
}

/// Handles of the publisher's per-message series, looked up once: the registry lookup
/// behind `metrics::counter!` (key hashing, label allocation, a lock) costs more per
/// message than the update itself.
pub(crate) struct PublishMetrics {
    /// [`PUBLISH_INFLIGHT`].
    pub(crate) inflight: metrics::Gauge,
    /// [`PUBLISH_INFLIGHT_BYTES`].
    pub(crate) inflight_bytes: metrics::Gauge,
    duration: metrics::Histogram,
    /// Per stream: [`EVENTS_PUBLISHED`] and [`EVENTS_DEDUPLICATED`].
    by_stream: Vec<(&'static str, metrics::Counter, metrics::Counter)>,
}

impl PublishMetrics {
    /// The handles (no-ops without a recorder).
    pub(crate) fn new() -> Self {
        let by_stream = shardline_proto::topology::STREAMS
            .iter()
            .map(|s| {
                (
                    s.name,
                    metrics::counter!(EVENTS_PUBLISHED, "stream" => s.name),
                    metrics::counter!(EVENTS_DEDUPLICATED, "stream" => s.name),
                )
            })
            .collect();
        Self {
            inflight: metrics::gauge!(PUBLISH_INFLIGHT),
            inflight_bytes: metrics::gauge!(PUBLISH_INFLIGHT_BYTES),
            duration: metrics::histogram!(PUBLISH_DURATION),
            by_stream,
        }
    }

    /// One message acknowledged by `stream` after `seconds`, or dropped by it as a
    /// duplicate.
    pub(crate) fn acked(&self, stream: &str, seconds: f64, duplicate: bool) {
        self.duration.record(seconds);
        if let Some((_, published, deduplicated)) =
            self.by_stream.iter().find(|(name, _, _)| *name == stream)
        {
            if duplicate {
                deduplicated.increment(1);
            } else {
                published.increment(1);
            }
        }
    }
}
