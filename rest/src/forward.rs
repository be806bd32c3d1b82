//! A standby's path: the request goes to the holder as it came, marked as
//! forwarded (the holder never forwards it again), and the holder's answer comes
//! back as it is.

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::HeaderValue;
use axum::http::request::Parts;
use axum::response::Response;
use bytes::Bytes;
use shardline_proto::rest::{FORWARDED_HEADER, MAX_WAIT_HEADER, RefusalKind};

use crate::answer::{pass, refuse};
use crate::metrics as m;
use crate::proxy::App;
use crate::route::RouteClass;
use crate::upstream::{UpstreamError, strip_hop_by_hop};

/// Sends the request to the holder at `holder`.
pub(crate) async fn forward(app: &App, holder: SocketAddr, parts: Parts, body: Bytes) -> Response {
    let mut headers = parts.headers.clone();
    strip_hop_by_hop(&mut headers);
    headers.insert(FORWARDED_HEADER, HeaderValue::from_static("1"));
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    // The holder may hold the request for its wait budget, then retry upstream.
    let budget = headers
        .get(MAX_WAIT_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(
            app.max_wait.max(app.max_wait_interaction),
            Duration::from_millis,
        );
    let timeout = budget + app.upstream_timeout * (app.retries + 1) + Duration::from_secs(1);
    let url = format!("http://{holder}{target}");
    let result = app
        .peers
        .send_within(parts.method.clone(), &url, &headers, body, timeout)
        .await;
    let template = crate::route::parse(&parts.method, parts.uri.path())
        .map(|r| r.template)
        .unwrap_or_else(|_| RouteClass::Bot.as_str().to_owned());
    match result {
        Ok(answer) => {
            metrics::counter!(m::FORWARDED, "result" => "ok").increment(1);
            pass(answer)
        }
        Err(error) => {
            metrics::counter!(m::FORWARDED, "result" => "failed").increment(1);
            tracing::warn!(%holder, ?error, "forwarding to the lease holder failed");
            let (kind, message) = match error {
                UpstreamError::Timeout => (
                    RefusalKind::UpstreamTimeout,
                    "the lease holder did not answer in time; the request may have been sent",
                ),
                UpstreamError::Unreachable => (
                    RefusalKind::NoHolder,
                    "the lease holder cannot be reached (a takeover may be under way)",
                ),
            };
            refuse(
                kind,
                message,
                Duration::from_secs(1),
                &template,
                &parts.method,
            )
        }
    }
}
