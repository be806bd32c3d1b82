//! Metric names (`discord_rest_*`), fixed: the dashboard and alerts use them.
//!
//! Labels are bounded: `route` is a template (`/channels/:id/messages`), never a
//! raw path, id or token, and only the first [`MAX_ROUTES`] templates seen get
//! their own label (the rest are `other`); `status` is an HTTP status code;
//! `class`, `scope`, `reason` and `kind` are small fixed sets.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use shardline_proto::rest::RefusalKind;

use crate::route::RouteClass;

/// Requests answered, by `route`, `method` and `status` (Discord's, or the proxy's
/// own for a refusal).
pub const REQUESTS: &str = "discord_rest_requests_total";
/// Time a request waited for its rate limits before it was sent, in seconds, by `class`.
pub const WAIT: &str = "discord_rest_rate_limit_wait_seconds";
/// Discord's answer time, in seconds, by `class`.
pub const UPSTREAM_DURATION: &str = "discord_rest_upstream_duration_seconds";
/// 429s Discord answered, by `scope` (`user`, `global`, `shared`, `none`: no scope
/// header, e.g. Cloudflare).
pub const RATE_LIMITED: &str = "discord_rest_rate_limited_total";
/// Requests the proxy answered itself, by `reason` (a `RefusalKind`).
pub const REFUSED: &str = "discord_rest_refused_total";
/// Invalid answers (401, 403, non-shared 429) in the guard's 10-minute window.
pub const INVALID_REQUESTS: &str = "discord_rest_invalid_requests";
/// The guard's threshold (`REST_INVALID_REQUEST_LIMIT`).
pub const INVALID_REQUESTS_LIMIT: &str = "discord_rest_invalid_requests_limit";
/// Requests booked in the last second over the global limit, for the proxy's own
/// token (0 to 1).
pub const GLOBAL_FILL: &str = "discord_rest_global_fill_ratio";
/// 1 on the instance that holds the lease (enforces and sends), else 0.
pub const HOLDER: &str = "discord_rest_holder";
/// Requests a standby forwarded to the holder, by `result` (`ok`, `failed`).
pub const FORWARDED: &str = "discord_rest_forwarded_total";
/// Leases taken, by `kind` of predecessor state (`clean`, `unclean`, `fresh`).
pub const TAKEOVERS: &str = "discord_rest_takeovers_total";
/// Idempotent requests sent again after Discord answered a 5xx.
pub const UPSTREAM_RETRIES: &str = "discord_rest_upstream_retries_total";

/// Distinct route labels at most; later templates are `other`.
pub const MAX_ROUTES: usize = 200;

/// Wait buckets: most requests do not wait; a bucket's window is seconds long.
pub const WAIT_BUCKETS: &[f64] = &[
    0.0, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Answer-time buckets: Discord answers in 50-150 ms from a cloud region.
pub const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
static ROUTES: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();

/// Installs the Prometheus recorder once per process and returns its handle.
///
/// # Errors
///
/// Fails if another recorder is already installed.
pub fn install() -> Result<PrometheusHandle, BuildError> {
    // Two proxies starting at once in one process (tests) would both find no handle
    // and the second would fail to install: one at a time.
    static INSTALLING: Mutex<()> = Mutex::new(());
    let _one = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(WAIT.to_owned()), WAIT_BUCKETS)?
        .set_buckets_for_metric(
            Matcher::Full(UPSTREAM_DURATION.to_owned()),
            DURATION_BUCKETS,
        )?
        .install_recorder()?;
    Ok(HANDLE.get_or_init(|| handle).clone())
}

/// The installed recorder's handle, if [`install`] ran.
pub fn handle() -> Option<PrometheusHandle> {
    HANDLE.get().cloned()
}

/// The `route` label of `template`.
pub fn route_label(template: &str) -> String {
    let routes = ROUTES.get_or_init(Mutex::default);
    let mut seen = routes.lock().unwrap_or_else(|e| e.into_inner());
    if seen.contains(template) {
        return template.to_owned();
    }
    if seen.len() < MAX_ROUTES {
        seen.insert(template.to_owned());
        return template.to_owned();
    }
    "other".to_owned()
}

/// Describes every metric and emits the fixed-label ones at zero.
pub fn register(invalid_limit: u32) {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        REQUESTS,
        "REST requests answered, by route, method and status"
    );
    describe_histogram!(
        WAIT,
        Unit::Seconds,
        "Time waited for rate limits before sending"
    );
    describe_histogram!(UPSTREAM_DURATION, Unit::Seconds, "Discord's answer time");
    describe_counter!(RATE_LIMITED, "429s from Discord, by scope");
    describe_counter!(REFUSED, "Requests the proxy answered itself, by reason");
    describe_gauge!(INVALID_REQUESTS, "Invalid answers in the last 10 minutes");
    describe_gauge!(
        INVALID_REQUESTS_LIMIT,
        "The invalid-request guard's threshold"
    );
    describe_gauge!(GLOBAL_FILL, "Global limit used in the last second (0-1)");
    describe_gauge!(HOLDER, "1 on the instance that enforces and sends");
    describe_counter!(FORWARDED, "Requests forwarded to the holder, by result");
    describe_counter!(TAKEOVERS, "Leases taken, by predecessor state");
    describe_counter!(UPSTREAM_RETRIES, "Idempotent requests retried after a 5xx");

    for scope in ["user", "global", "shared", "none"] {
        metrics::counter!(RATE_LIMITED, "scope" => scope).absolute(0);
    }
    for kind in RefusalKind::ALL {
        metrics::counter!(REFUSED, "reason" => kind.as_str()).absolute(0);
    }
    for class in RouteClass::ALL {
        // A histogram appears on its first observation; this one makes the series.
        let _ = metrics::histogram!(WAIT, "class" => class.as_str());
        let _ = metrics::histogram!(UPSTREAM_DURATION, "class" => class.as_str());
    }
    for result in ["ok", "failed"] {
        metrics::counter!(FORWARDED, "result" => result).absolute(0);
    }
    for kind in ["clean", "unclean", "fresh"] {
        metrics::counter!(TAKEOVERS, "kind" => kind).absolute(0);
    }
    metrics::counter!(UPSTREAM_RETRIES).absolute(0);
    metrics::gauge!(INVALID_REQUESTS).set(0.0);
    metrics::gauge!(INVALID_REQUESTS_LIMIT).set(f64::from(invalid_limit));
    metrics::gauge!(GLOBAL_FILL).set(0.0);
    metrics::gauge!(HOLDER).set(0.0);
}
