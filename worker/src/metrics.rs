//! Metric names of the worker runtime, fixed: dashboards and alerts use them.

use std::net::SocketAddr;

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder};

/// Messages handled, by `consumer` and `status` (`success`, `retry`, `terminal`).
pub const MESSAGES_PROCESSED: &str = "nats_consumer_messages_processed_total";
/// Handler time, by `consumer`, in seconds.
pub const PROCESSING_DURATION: &str = "nats_consumer_message_processing_duration_seconds";
/// Messages in the stream not yet delivered to the consumer (its pending count), polled.
pub const LAG: &str = "nats_consumer_lag";
/// Messages delivered and not yet acknowledged, polled.
pub const ACK_PENDING: &str = "nats_consumer_ack_pending";
/// Messages dead-lettered, by `consumer` and `reason` (`terminal`, `undecodable`,
/// `max_deliveries`).
pub const DEAD_LETTERS: &str = "nats_consumer_dead_letters_total";

/// Every `status` of [`MESSAGES_PROCESSED`].
pub const STATUSES: [&str; 3] = ["success", "retry", "terminal"];

/// Registers every series of `consumer` at zero, so rates and alerts see each one from
/// the first scrape rather than only after its first use.
pub fn register(consumer: &'static str) {
    for status in STATUSES {
        metrics::counter!(MESSAGES_PROCESSED, "consumer" => consumer, "status" => status)
            .increment(0);
    }
    for kind in crate::deadletter::DeadKind::ALL {
        metrics::counter!(DEAD_LETTERS, "consumer" => consumer, "reason" => kind.as_str())
            .increment(0);
    }
    // A histogram shows once registered, with empty buckets.
    let _ = metrics::histogram!(PROCESSING_DURATION, "consumer" => consumer);
    metrics::gauge!(LAG, "consumer" => consumer).set(0.0);
    metrics::gauge!(ACK_PENDING, "consumer" => consumer).set(0.0);
}

/// Handles of one consumer's per-message series, looked up once: the registry lookup
/// behind `metrics::counter!` (key hashing, label allocation, a lock) costs more per
/// message than the increment itself.
#[derive(Clone)]
pub(crate) struct ConsumerMetrics {
    processed: [metrics::Counter; 3],
    duration: metrics::Histogram,
}

impl ConsumerMetrics {
    /// The handles of `consumer`'s series (no-ops without a recorder).
    pub(crate) fn new(consumer: &'static str) -> Self {
        Self {
            processed: STATUSES.map(|status| {
                metrics::counter!(MESSAGES_PROCESSED, "consumer" => consumer, "status" => status)
            }),
            duration: metrics::histogram!(PROCESSING_DURATION, "consumer" => consumer),
        }
    }

    /// Counts one message handled with `status` (one of [`STATUSES`]) in `seconds`.
    pub(crate) fn processed(&self, status: &str, seconds: f64) {
        self.duration.record(seconds);
        if let Some(i) = STATUSES.iter().position(|s| *s == status) {
            self.processed[i].increment(1);
        }
    }
}

/// Processing buckets: from sub-millisecond handlers to second-scale ones.
pub const PROCESSING_BUCKETS: &[f64] = &[
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0,
];

/// The worker's Prometheus recorder, with its histogram buckets, not yet installed.
///
/// # Errors
///
/// Never in practice: the bucket list is not empty.
pub fn builder() -> Result<PrometheusBuilder, BuildError> {
    PrometheusBuilder::new().set_buckets_for_metric(
        Matcher::Full(PROCESSING_DURATION.to_owned()),
        PROCESSING_BUCKETS,
    )
}

/// Serves `/metrics` on `addr` and installs the global recorder.
///
/// # Errors
///
/// Fails if the address cannot be bound or a recorder is already installed.
pub fn serve(addr: SocketAddr) -> Result<(), BuildError> {
    builder()?.with_http_listener(addr).install()
}
