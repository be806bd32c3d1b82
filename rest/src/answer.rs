//! Answers: the proxy's own (a [`Refusal`] marked with `X-Shardline-Refused`) and
//! Discord's passed through, each counted once.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use shardline_proto::rest::{REFUSED_HEADER, Refusal, RefusalKind};

use crate::metrics as m;
use crate::upstream::UpstreamAnswer;

/// The `method` label: standard methods by name, anything else `other`.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Counts an answer in [`m::REQUESTS`].
pub fn count(route: &str, method: &Method, status: u16) {
    metrics::counter!(
        m::REQUESTS,
        "route" => m::route_label(route),
        "method" => method_label(method),
        "status" => status.to_string(),
    )
    .increment(1);
}

/// The proxy's own answer: `kind`'s status, `X-Shardline-Refused`, `Retry-After`
/// (whole seconds, rounded up) when it may succeed later, and the JSON body.
pub fn refuse(
    kind: RefusalKind,
    message: impl Into<String>,
    retry_after: Duration,
    route: &str,
    method: &Method,
) -> Response {
    let refusal = Refusal::new(kind, message, retry_after);
    let status = StatusCode::from_u16(kind.status()).expect("a valid status");
    metrics::counter!(m::REFUSED, "reason" => kind.as_str()).increment(1);
    count(route, method, kind.status());
    let body = serde_json::to_vec(&refusal).expect("a refusal serializes");
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(REFUSED_HEADER, HeaderValue::from_static(kind.as_str()));
    if kind.retryable() {
        let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    }
    response
}

/// Discord's answer, as it came.
pub fn pass(answer: UpstreamAnswer) -> Response {
    let mut response = Response::new(Body::from(answer.body));
    *response.status_mut() = answer.status;
    *response.headers_mut() = answer.headers;
    // The body was read in full: its length is known again.
    response.headers_mut().remove(header::CONTENT_LENGTH);
    response
}
