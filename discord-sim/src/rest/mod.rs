//! HTTP side: the gateway upgrade at `/` and the REST endpoints a bot uses, behind
//! Discord's REST limits ([`limits`]) and its response time.

mod limits;
mod records;
mod routes;

pub(crate) use limits::RestState;
pub use limits::{BucketSpec, RestFault, RestLimits, Violation};
pub(crate) use records::RestCounts;
pub use records::{RestRecord, busiest_second, busiest_window};
pub use routes::{MessageRecord, RoleChange};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use axum::extract::{Path, Query, Request, State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post, put};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::compress::TransportCompression;
use crate::state::{CallbackRecord, Shared};

#[derive(Clone)]
pub(crate) struct App {
    shared: Arc<Shared>,
    cancel: CancellationToken,
}

/// The simulator's routes.
pub(crate) fn router(shared: Arc<Shared>, cancel: CancellationToken) -> Router {
    let app = App { shared, cancel };
    let api = Router::new()
        .route("/api/v10/gateway/bot", get(gateway_bot))
        .route(
            "/api/v10/interactions/{id}/{token}/callback",
            post(interaction_callback),
        )
        .route("/api/v10/webhooks/{app}/{token}", post(followup))
        .route(
            "/api/v10/webhooks/{app}/{token}/messages/{message}",
            patch(edit_message),
        )
        .route(
            "/api/v10/channels/{channel}/messages",
            post(routes::create_message),
        )
        .route(
            "/api/v10/guilds/{guild}/members/{user}/roles/{role}",
            put(routes::member_role).delete(routes::member_role),
        )
        .fallback(|| async { routes::not_found() })
        .layer(middleware::from_fn_with_state(
            app.clone(),
            records::enforce,
        ))
        .layer(middleware::from_fn_with_state(app.clone(), latency));
    Router::new()
        .route("/", get(gateway))
        .route("/api/v10/stats", get(stats))
        .route("/sim/shards/{shard}/reconnect", post(reconnect))
        .merge(api)
        .with_state(app)
}

/// Discord's response time: the request is handled (and recorded) when it arrives,
/// and its answer leaves `config.rest_latency` later.
async fn latency(State(app): State<App>, request: Request, next: Next) -> Response {
    use std::sync::atomic::Ordering;
    /// Counts the request out however it ends (a client may hang up mid-wait).
    struct InFlight<'a>(&'a Shared);
    impl Drop for InFlight<'_> {
        fn drop(&mut self) {
            self.0.rest_in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }
    let shared = &app.shared;
    let now = shared.rest_in_flight.fetch_add(1, Ordering::Relaxed) + 1;
    shared.rest_in_flight_max.fetch_max(now, Ordering::Relaxed);
    let _counted = InFlight(shared);
    let response = next.run(request).await;
    let delay = shared.config.rest_latency.sample(&mut rand::rng());
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    response
}

async fn gateway(
    State(app): State<App>,
    Query(query): Query<HashMap<String, String>>,
    ws: WebSocketUpgrade,
) -> Response {
    let Some(mode) = TransportCompression::from_query(query.get("compress").map(String::as_str))
    else {
        return (StatusCode::BAD_REQUEST, "unknown compress").into_response();
    };
    if query.get("encoding").is_some_and(|e| e != "json") {
        return (StatusCode::BAD_REQUEST, "only encoding=json").into_response();
    }
    app.shared.lock().compressions.push(mode);
    ws.on_upgrade(move |socket| crate::connection::run(app.shared, socket, mode, app.cancel))
}

async fn gateway_bot(State(app): State<App>, headers: HeaderMap) -> Response {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let ok = auth
        .strip_prefix("Bot ")
        .is_some_and(|t| app.shared.config.token_matches(t));
    if !ok {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"message": "401: Unauthorized", "code": 0})),
        )
            .into_response();
    }
    let c = &app.shared.config;
    axum::Json(json!({
        "url": app.shared.gateway_url(),
        "shards": c.shard_total,
        "session_start_limit": {
            "total": 1000,
            "remaining": 1000,
            "reset_after": 0,
            "max_concurrency": c.max_concurrency,
        }
    }))
    .into_response()
}

fn record(app: &App, id: String, token: String, body: String, kind: &'static str) {
    push(app, id, token, body, kind, 200);
}

fn push(app: &App, id: String, token: String, body: String, kind: &'static str, status: u16) {
    app.shared.lock().callbacks.push(CallbackRecord {
        interaction_id: id,
        token,
        body,
        kind,
        received_at: SystemTime::now(),
        status,
    });
}

/// The first response to an interaction: 204, or 400 with code 40060 if the
/// interaction was already answered, as Discord does.
async fn interaction_callback(
    State(app): State<App>,
    Path((id, token)): Path<(String, String)>,
    body: String,
) -> Response {
    let answered = app
        .shared
        .lock()
        .callbacks
        .iter()
        .any(|c| c.kind == "callback" && c.status == 204 && c.interaction_id == id);
    if answered {
        push(&app, id, token, body, "callback", 400);
        let error = json!({"message": "Interaction has already been acknowledged.", "code": 40060});
        return (StatusCode::BAD_REQUEST, axum::Json(error)).into_response();
    }
    push(&app, id, token, body, "callback", 204);
    // Discord names a bucket on every answer, this route included. A client that keys
    // its queues by bucket and top-level resource (twilight-http's limiter) then puts
    // every interaction's callback in one queue, one request in flight: the answer
    // must carry the header for a test to see that.
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        ("x-ratelimit-bucket", "a8cbbb2c2ea0c4b3b98cbd4a7b2c1f0e"),
        ("x-ratelimit-limit", "50"),
        ("x-ratelimit-remaining", "49"),
        ("x-ratelimit-reset-after", "1.000"),
    ] {
        headers.insert(name, axum::http::HeaderValue::from_static(value));
    }
    response
}

/// Not Discord's: sends op 7 RECONNECT on a shard's live connection, so a process
/// outside the test (the dashboard check) can make a shard resume. 404 without one.
async fn reconnect(State(app): State<App>, Path(shard): Path<u32>) -> StatusCode {
    match app.shared.live_conn(shard) {
        Some(conn) => {
            conn.send(crate::state::Out::Raw(crate::connection::RECONNECT));
            StatusCode::NO_CONTENT
        }
        None => StatusCode::NOT_FOUND,
    }
}

/// A minimal message that twilight-model's `Message` deserializes.
pub(crate) fn message_json(body: &str) -> serde_json::Value {
    let content = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("content").cloned())
        .unwrap_or(json!(""));
    json!({
        "id": "1200000000000000001",
        "channel_id": "1200000000000000002",
        "author": {"id": "1000000000000000001", "username": "shardline-sim", "discriminator": "0",
                   "global_name": null, "avatar": null, "bot": true},
        "content": content,
        "timestamp": "2025-01-01T00:00:00.000000+00:00",
        "edited_timestamp": null,
        "tts": false,
        "mention_everyone": false,
        "mentions": [],
        "mention_roles": [],
        "attachments": [],
        "embeds": [],
        "pinned": false,
        "type": 0,
        "flags": 0,
    })
}

async fn followup(
    State(app): State<App>,
    Path((app_id, token)): Path<(String, String)>,
    body: String,
) -> Response {
    let reply = message_json(&body);
    record(&app, app_id, token, body, "followup");
    axum::Json(reply).into_response()
}

async fn edit_message(
    State(app): State<App>,
    Path((app_id, token, _message)): Path<(String, String, String)>,
    body: String,
) -> Response {
    let reply = message_json(&body);
    record(&app, app_id, token, body, "edit");
    axum::Json(reply).into_response()
}

async fn stats(State(app): State<App>) -> Response {
    let mut st = app.shared.lock();
    let invalid = st.rest.invalid_in_window(&app.shared.config.rest_limits);
    let live = st.sessions.values().filter(|s| s.conn.is_some()).count();
    axum::Json(json!({
        "dispatches": st.sent_count,
        "identifies": st.identifies.len(),
        "identify_rate_violations": st.identify_violations,
        "resumes": st.resumes.len(),
        "callbacks": st.callbacks.len(),
        "sessions": st.sessions.len(),
        "live_sessions": live,
        "rest_requests": st.rest_counts.requests,
        "rest_violations": st.rest_counts.violations,
        "rest_invalid_requests": invalid,
        "rest_banned": st.rest.banned(),
    }))
    .into_response()
}
