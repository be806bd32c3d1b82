//! Metric names (Vector's instrumentation spec: `<service>_<noun>_<unit>[_total]`).
//!
//! Labels are low-cardinality only: never a guild, user or session id.

use std::net::SocketAddr;

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder};

/// Dispatches read from Discord, by `event_type`.
pub const EVENTS_RECEIVED: &str = "gateway_events_received_total";
/// Messages JetStream acknowledged, by `stream`.
pub const EVENTS_PUBLISHED: &str = "gateway_events_published_total";
/// Publishes JetStream reported as duplicates (replays after a resume), by `stream`.
pub const EVENTS_DEDUPLICATED: &str = "gateway_events_deduplicated_total";
/// Frames or events not published, by `reason`.
pub const EVENTS_DROPPED: &str = "gateway_events_dropped_total";
/// Failed publish attempts (each is retried), by `error_type`.
pub const PUBLISH_ERRORS: &str = "gateway_publish_errors_total";
/// Time from publish to JetStream ack, in seconds.
pub const PUBLISH_DURATION: &str = "gateway_publish_duration_seconds";
/// Publishes awaiting an ack or a retry.
pub const PUBLISH_INFLIGHT: &str = "gateway_publish_inflight";
/// 1 while the shard has a live session, else 0, by `shard`.
pub const SHARD_CONNECTED: &str = "gateway_shard_connected";
/// Heartbeat round trip, in seconds, by `shard`.
pub const SHARD_LATENCY: &str = "gateway_shard_latency_seconds";
/// New sessions and resumes, by `shard` and `kind` (`resume`, `identify`).
pub const SHARD_RECONNECTS: &str = "gateway_shard_reconnects_total";

/// Publish latency buckets: routing and a local ack are sub-millisecond; a broker
/// in trouble takes seconds.
pub const PUBLISH_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Serves `/metrics` on `addr` and installs the global recorder.
///
/// # Errors
///
/// Fails if the address cannot be bound or a recorder is already installed.
pub fn serve(addr: SocketAddr) -> Result<(), BuildError> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(Matcher::Full(PUBLISH_DURATION.to_owned()), PUBLISH_BUCKETS)?
        .install()
}
