//! The request path: check the request, then send it under the limits (on the
//! holder) or forward it to the holder (on a standby).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::Response;
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use shardline_proto::rest::{FORWARDED_HEADER, MAX_WAIT_HEADER, RefusalKind};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::answer::{count, pass, refuse};
use crate::coord::{Coordinator, Role};
use crate::headers::RateLimitInfo;
use crate::limiter::{Answer, Limiter, Refused};
use crate::metrics as m;
use crate::route::{self, Route, RouteClass};
use crate::upstream::{Upstream, UpstreamError, strip_hop_by_hop};

/// Identity of requests sent with no token (webhooks, interactions): Discord limits
/// them per address.
pub const ANONYMOUS: &str = "anonymous";

/// What the handler needs, shared by every request.
#[derive(Clone)]
pub struct App {
    pub(crate) limiter: Arc<Limiter>,
    pub(crate) coord: Coordinator,
    pub(crate) upstream: Upstream,
    pub(crate) peers: Upstream,
    /// `Authorization` value of the proxy's own token and its identity.
    pub(crate) token: Option<(HeaderValue, String)>,
    pub(crate) max_body: usize,
    pub(crate) max_wait: Duration,
    pub(crate) max_wait_interaction: Duration,
    pub(crate) upstream_timeout: Duration,
    pub(crate) retries: u32,
    pub(crate) shutdown: CancellationToken,
}

/// A checked request.
struct Checked {
    parts: Parts,
    route: Route,
    body: Bytes,
    arrived: Instant,
}

/// Every request under `/api/`.
pub async fn handle(State(app): State<App>, request: Request) -> Response {
    let arrived = Instant::now();
    let (parts, body) = request.into_parts();
    let method = parts.method.clone();
    let route = match route::parse(&method, parts.uri.path()) {
        Ok(route) => route,
        Err(e) => {
            return refuse(
                RefusalKind::MalformedPath,
                e.describe(),
                Duration::ZERO,
                "invalid",
                &method,
            );
        }
    };
    let too_large = || {
        let message = format!("the body exceeds {} bytes", app.max_body);
        refuse(
            RefusalKind::BodyTooLarge,
            message,
            Duration::ZERO,
            &route.template,
            &method,
        )
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > app.max_body) {
        return too_large();
    }
    let body = match Limited::new(body, app.max_body).collect().await {
        Ok(body) => body.to_bytes(),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return too_large();
        }
        Err(_) => {
            let message = "the request body could not be read";
            return refuse(
                RefusalKind::UpstreamUnreachable,
                message,
                Duration::ZERO,
                &route.template,
                &method,
            );
        }
    };
    let request = Checked {
        parts,
        route,
        body,
        arrived,
    };
    if !app.coord.accepting() {
        let message = "this instance is shutting down; send to another";
        return refuse_for(
            &request,
            RefusalKind::ShuttingDown,
            message,
            Duration::from_secs(1),
        );
    }
    let forwarded = request.parts.headers.contains_key(FORWARDED_HEADER);
    match app.coord.role() {
        Role::Holder { .. } if app.coord.may_send() => send(&app, request).await,
        Role::Standby { holder: Some(addr) } if !forwarded => {
            crate::forward::forward(&app, addr, request.parts, request.body).await
        }
        _ => {
            let message = "no instance holds the lease right now (a takeover is under way)";
            refuse_for(
                &request,
                RefusalKind::NoHolder,
                message,
                Duration::from_secs(1),
            )
        }
    }
}

fn refuse_for(request: &Checked, kind: RefusalKind, message: &str, after: Duration) -> Response {
    refuse(
        kind,
        message,
        after,
        &request.route.template,
        &request.parts.method,
    )
}

/// The caller's wait budget: its header, else the route class's default.
fn budget(app: &App, headers: &HeaderMap, class: RouteClass) -> Duration {
    let asked = headers
        .get(MAX_WAIT_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match (asked, class) {
        (Some(ms), _) => Duration::from_millis(ms),
        (None, RouteClass::Bot) => app.max_wait,
        (None, _) => app.max_wait_interaction,
    }
}

/// The headers sent to Discord, the identity whose limits apply, and whether the
/// request carries a bot token.
fn identity(app: &App, parts: &Parts, route: &Route) -> (HeaderMap, String, bool) {
    let mut headers = parts.headers.clone();
    strip_hop_by_hop(&mut headers);
    headers.remove(MAX_WAIT_HEADER);
    headers.remove(FORWARDED_HEADER);
    if let Some(own) = headers.get(header::AUTHORIZATION) {
        let id = route::digest(own.to_str().unwrap_or_default());
        return (headers, id, true);
    }
    match &app.token {
        // Token-authorized routes go without the bot token, as Discord's clients send them.
        Some((value, id)) if route.class == RouteClass::Bot => {
            headers.insert(header::AUTHORIZATION, value.clone());
            (headers, id.clone(), true)
        }
        _ => (headers, ANONYMOUS.to_owned(), false),
    }
}

fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
    )
}

/// On the holder: waits for the limits and sends.
async fn send(app: &App, request: Checked) -> Response {
    let Checked {
        parts,
        route,
        body,
        arrived,
    } = request;
    let method = &parts.method;
    let deadline = arrived + budget(app, &parts.headers, route.class);
    let (headers, id, with_token) = identity(app, &parts, &route);
    let target = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let no = |kind, message: String, after| refuse(kind, message, after, &route.template, method);
    let mut attempt = 0;
    loop {
        let acquired = tokio::select! {
            acquired = app.limiter.acquire(&id, &route, deadline) => acquired,
            () = app.shutdown.cancelled() => {
                return no(RefusalKind::ShuttingDown, "shutting down before the request could be sent".into(), Duration::from_secs(1));
            }
        };
        let permit = match acquired {
            Ok(permit) => permit,
            Err(Refused::WaitBudget(after)) => {
                let message = format!(
                    "the rate limit would hold this request {} ms, longer than its budget",
                    after.as_millis()
                );
                return no(RefusalKind::WaitBudget, message, after);
            }
            Err(Refused::InvalidRequests(after)) => {
                let message = "too many invalid requests (401/403/429) in 10 minutes: sending is paused so the address is not banned";
                return no(RefusalKind::InvalidRequests, message.into(), after);
            }
            Err(Refused::TokenRejected) => {
                let message = "Discord rejected this token (401); nothing is sent with it";
                return no(RefusalKind::TokenRejected, message.into(), Duration::ZERO);
            }
        };
        let on_time = tokio::select! {
            () = async {
                // A timer, even one already due, fires on the next millisecond tick.
                if permit.send_at > Instant::now() {
                    tokio::time::sleep_until(permit.send_at).await;
                }
                app.limiter.confirm_send(&permit).await;
            } => true,
            () = app.shutdown.cancelled() => false,
        };
        if !on_time || !app.coord.may_send() {
            app.limiter.release(permit);
            let (kind, message) = if on_time {
                (RefusalKind::NoHolder, "this instance lost the lease")
            } else {
                (
                    RefusalKind::ShuttingDown,
                    "shutting down before the request could be sent",
                )
            };
            return no(kind, message.into(), Duration::from_secs(1));
        }
        metrics::histogram!(m::WAIT, "class" => route.class.as_str())
            .record(arrived.elapsed().as_secs_f64());
        let sent = Instant::now();
        let result = app
            .upstream
            .send(parts.method.clone(), &target, &headers, body.clone())
            .await;
        metrics::histogram!(m::UPSTREAM_DURATION, "class" => route.class.as_str())
            .record(sent.elapsed().as_secs_f64());
        let retry = idempotent(method) && attempt < app.retries;
        match result {
            Ok(answer) => {
                let status = answer.status.as_u16();
                let info = RateLimitInfo::read(status, &answer.headers, &answer.body);
                if status == 429 {
                    let scope = match info.scope.as_deref() {
                        Some("user") => "user",
                        Some("global") => "global",
                        Some("shared") => "shared",
                        _ => "none",
                    };
                    metrics::counter!(m::RATE_LIMITED, "scope" => scope).increment(1);
                    tracing::warn!(route = %route.template, scope, global = info.global, "Discord answered 429");
                }
                app.limiter.complete(
                    permit,
                    Some(Answer {
                        status,
                        info: &info,
                        sent,
                        with_token,
                    }),
                );
                if answer.status.is_server_error() && retry {
                    attempt += 1;
                    metrics::counter!(m::UPSTREAM_RETRIES).increment(1);
                    continue;
                }
                count(&route.template, method, status);
                return pass(answer);
            }
            Err(UpstreamError::Timeout) => {
                app.limiter.complete(permit, None);
                let message = format!(
                    "Discord did not answer within {} ms; the request may have taken effect",
                    app.upstream_timeout.as_millis()
                );
                return no(RefusalKind::UpstreamTimeout, message, Duration::ZERO);
            }
            Err(UpstreamError::Unreachable) => {
                app.limiter.complete(permit, None);
                if retry {
                    attempt += 1;
                    metrics::counter!(m::UPSTREAM_RETRIES).increment(1);
                    continue;
                }
                return no(
                    RefusalKind::UpstreamUnreachable,
                    "Discord could not be reached".into(),
                    Duration::from_secs(1),
                );
            }
        }
    }
}
