//! Metric names (`<service>_<noun>_<unit>[_total]`), fixed: dashboards and alerts use
//! them. Labels are low-cardinality only: never an interaction, guild or user id.
//! [`register`] emits every series at zero at start.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

use crate::signature::Rejection;

/// Requests to `POST /interactions`, by `outcome` (see [`Outcome`]).
pub const REQUESTS: &str = "interactions_requests_total";
/// Time from a request's headers to its first response, in seconds, by `outcome`
/// (`pong`, `inline`, `deferred`).
pub const FIRST_RESPONSE_DURATION: &str = "interactions_first_response_duration_seconds";
/// Interactions waiting for a command worker's first response now.
pub const PENDING: &str = "interactions_pending";
/// Requests refused for their signature, by `reason` (see [`Rejection`]).
pub const SIGNATURE_REJECTIONS: &str = "interactions_signature_rejections_total";
/// First responses command workers offered, by `answer`: `used` (it was the HTTP
/// answer) or `deferred` (too late: the service had answered a deferral).
pub const WORKER_OFFERS: &str = "interactions_worker_offers_total";

/// How a request ended: the `outcome` label of [`REQUESTS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A PING, answered PONG by the service.
    Pong,
    /// Answered with a command worker's first response.
    Inline,
    /// No worker answered within the budget: the service answered a deferral.
    Deferred,
    /// 401: the signature did not verify (or was missing, or stale).
    RejectedSignature,
    /// 413: the body is over the limit.
    TooLarge,
    /// 408: the client was too slow sending its headers or body.
    TimedOut,
    /// 400: signed, but not an interaction (not JSON, no id, unknown type).
    BadRequest,
    /// 409: an interaction this service already took (a replayed request).
    Duplicate,
    /// 503: too many interactions waiting for an answer.
    Overloaded,
    /// 503: NATS is unreachable or did not store the interaction in time.
    Unavailable,
}

impl Outcome {
    /// Every outcome, for registering metrics.
    pub const ALL: [Outcome; 10] = [
        Self::Pong,
        Self::Inline,
        Self::Deferred,
        Self::RejectedSignature,
        Self::TooLarge,
        Self::TimedOut,
        Self::BadRequest,
        Self::Duplicate,
        Self::Overloaded,
        Self::Unavailable,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pong => "pong",
            Self::Inline => "inline",
            Self::Deferred => "deferred",
            Self::RejectedSignature => "rejected_signature",
            Self::TooLarge => "too_large",
            Self::TimedOut => "timed_out",
            Self::BadRequest => "bad_request",
            Self::Duplicate => "duplicate",
            Self::Overloaded => "overloaded",
            Self::Unavailable => "unavailable",
        }
    }

    /// Whether the request got a first response (the ones timed in
    /// [`FIRST_RESPONSE_DURATION`]).
    pub fn is_first_response(self) -> bool {
        matches!(self, Self::Pong | Self::Inline | Self::Deferred)
    }
}

/// First-response buckets: an inline answer takes milliseconds, a deferral the
/// budget (2.5 s), Discord's limit is 3 s.
pub const FIRST_RESPONSE_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 2.5, 2.75, 3.0, 5.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the global Prometheus recorder once per process and returns its handle
/// (several services in one test process share it).
///
/// # Errors
///
/// Fails if another recorder is already installed.
pub fn install() -> Result<PrometheusHandle, BuildError> {
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(FIRST_RESPONSE_DURATION.to_owned()),
            FIRST_RESPONSE_BUCKETS,
        )?
        .install_recorder()?;
    Ok(HANDLE.get_or_init(|| handle).clone())
}

/// Describes every metric and emits every series at zero.
pub fn register() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(REQUESTS, "Requests to POST /interactions, by outcome");
    describe_histogram!(
        FIRST_RESPONSE_DURATION,
        Unit::Seconds,
        "Request headers to first response"
    );
    describe_gauge!(PENDING, "Interactions waiting for a first response");
    describe_counter!(SIGNATURE_REJECTIONS, "Requests refused for their signature");
    describe_counter!(WORKER_OFFERS, "First responses offered by command workers");
    for outcome in Outcome::ALL {
        metrics::counter!(REQUESTS, "outcome" => outcome.as_str()).absolute(0);
        if outcome.is_first_response() {
            let _ = metrics::histogram!(FIRST_RESPONSE_DURATION, "outcome" => outcome.as_str());
        }
    }
    for reason in Rejection::ALL {
        metrics::counter!(SIGNATURE_REJECTIONS, "reason" => reason.as_str()).absolute(0);
    }
    for answer in ["used", "deferred"] {
        metrics::counter!(WORKER_OFFERS, "answer" => answer).absolute(0);
    }
    metrics::gauge!(PENDING).set(0.0);
}

/// Counts a finished request, and times it when it got a first response.
pub(crate) fn record(outcome: Outcome, started: std::time::Instant) {
    metrics::counter!(REQUESTS, "outcome" => outcome.as_str()).increment(1);
    if outcome.is_first_response() {
        metrics::histogram!(FIRST_RESPONSE_DURATION, "outcome" => outcome.as_str())
            .record(started.elapsed().as_secs_f64());
    }
}
