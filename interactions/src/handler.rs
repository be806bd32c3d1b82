//! `POST /interactions`: read the body within bounds, verify the signature before
//! anything else looks at it, answer PING, publish the rest and wait for a worker's
//! first response until the budget runs out.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use async_nats::jetstream;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Deserialize;
use shardline_proto::interaction::{INTERACTION_CREATE, fallback_response};
use shardline_proto::{headers as h, subject};
use tokio::sync::Notify;
use tokio::time::Instant;
use twilight_model::application::interaction::InteractionType;

use crate::config::Settings;
use crate::metrics::{self as m, Outcome};
use crate::nats::HEADER_ROOM;
use crate::pending::{Pending, Refused, Settled};
use crate::signature::{self, Rejection};

/// What every request shares.
pub(crate) struct App {
    pub settings: Settings,
    pub pending: Arc<Pending>,
    pub js: jetstream::Context,
    pub instance: String,
    pub max_payload: Arc<AtomicUsize>,
    pub check_topology: Arc<Notify>,
}

/// The fields the service reads; the worker decodes the whole interaction.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type")]
    kind: u8,
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    guild_id: Option<Cow<'a, str>>,
}

pub(crate) async fn interactions(State(app): State<Arc<App>>, request: Request) -> Response {
    let started = std::time::Instant::now();
    let deadline = Instant::now() + app.settings.budget;
    let received_at = SystemTime::now();
    let (parts, body) = request.into_parts();
    let (outcome, response) = handle(&app, &parts.headers, body, deadline, received_at).await;
    m::record(outcome, started);
    response
}

async fn handle(
    app: &App,
    headers: &HeaderMap,
    body: Body,
    deadline: Instant,
    received_at: SystemTime,
) -> (Outcome, Response) {
    let body = match read_body(app, headers, body).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    let signed = signature::verify(
        &app.settings.public_key,
        headers,
        &body,
        received_at,
        app.settings.max_skew,
    );
    if let Err(rejection) = signed {
        return rejected(rejection);
    }
    let Ok(envelope) = serde_json::from_slice::<Envelope>(&body) else {
        return bad_request("the body is not an interaction (JSON with a type)");
    };
    let Ok(kind) = InteractionType::try_from(envelope.kind) else {
        return bad_request("unknown interaction type");
    };
    if kind == InteractionType::Ping {
        return (Outcome::Pong, json(Bytes::from_static(br#"{"type":1}"#)));
    }
    let Some(id) = envelope.id.as_deref().and_then(|id| id.parse::<u64>().ok()) else {
        return bad_request("the interaction has no id");
    };
    let guild = envelope
        .guild_id
        .as_deref()
        .and_then(|g| g.parse::<u64>().ok());

    if app.js.client().connection_state() != async_nats::connection::State::Connected {
        return unavailable("NATS is unreachable");
    }
    let mut waiter = match app.pending.admit(id) {
        Ok(waiter) => waiter,
        Err(Refused::Full) => {
            return plain(
                Outcome::Overloaded,
                StatusCode::SERVICE_UNAVAILABLE,
                "too many interactions waiting",
            );
        }
        Err(Refused::Duplicate) => return duplicate(),
    };
    let mut message = async_nats::HeaderMap::new();
    message.insert(h::MSG_ID, h::interaction_msg_id(id).as_str());
    message.insert(h::EVENT_TYPE, INTERACTION_CREATE);
    if let Some(guild) = guild {
        message.insert(h::GUILD_ID, guild.to_string().as_str());
    }
    let nanos = received_at
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    message.insert(h::RECEIVED_AT, nanos.to_string().as_str());
    message.insert(
        h::INTERACTION_REPLY,
        subject::interaction_reply(&app.instance, id).as_str(),
    );
    let stored = async {
        app.js
            .publish_with_headers(subject::COMMANDS_INTERACTION, message, body)
            .await?
            .await
    };
    match tokio::time::timeout_at(deadline, stored).await {
        Ok(Ok(ack)) if ack.duplicate => {
            waiter.withdraw();
            return duplicate();
        }
        Ok(Ok(_)) => {}
        Ok(Err(error)) => {
            tracing::warn!(%error, "publishing an interaction failed");
            app.check_topology.notify_one();
            return unavailable("the interaction could not be stored");
        }
        Err(_) => {
            tracing::warn!("JetStream did not store an interaction within the budget");
            return unavailable("the interaction could not be stored in time");
        }
    }
    match waiter.settle(deadline).await {
        Settled::Inline(response) => (Outcome::Inline, json(response)),
        Settled::Deferred => {
            let deferral = serde_json::to_vec(&fallback_response(kind))
                .expect("an interaction response serializes");
            (Outcome::Deferred, json(Bytes::from(deferral)))
        }
    }
}

/// The body, within the size limit and the body timeout.
async fn read_body(
    app: &App,
    headers: &HeaderMap,
    body: Body,
) -> Result<Bytes, (Outcome, Response)> {
    let too_large = || {
        let mut response = plain(
            Outcome::TooLarge,
            StatusCode::PAYLOAD_TOO_LARGE,
            "body too large",
        );
        // The rest of the body is not read: the connection cannot be reused.
        close(&mut response.1);
        response
    };
    let limit = body_limit(app.settings.max_body, &app.max_payload);
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(too_large());
    }
    let read = tokio::time::timeout(
        app.settings.body_timeout,
        Limited::new(body, limit).collect(),
    );
    match read.await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Ok(Err(_)) => Err(bad_request("the body could not be read")),
        Err(_) => {
            let mut response = plain(
                Outcome::TimedOut,
                StatusCode::REQUEST_TIMEOUT,
                "body not received in time",
            );
            close(&mut response.1);
            Err(response)
        }
    }
}

/// The body limit: the setting, or less if the NATS server's `max_payload` is smaller.
fn body_limit(setting: usize, max_payload: &AtomicUsize) -> usize {
    match max_payload.load(Ordering::Relaxed) {
        0 => setting,
        max => setting.min(max.saturating_sub(HEADER_ROOM)),
    }
}

fn rejected(rejection: Rejection) -> (Outcome, Response) {
    metrics::counter!(m::SIGNATURE_REJECTIONS, "reason" => rejection.as_str()).increment(1);
    tracing::debug!(reason = rejection.as_str(), "signature rejected");
    let response = Response::builder()
        .status(StatusCode::UNAUTHORIZED)
        .body(Body::empty())
        .expect("a static response");
    (Outcome::RejectedSignature, response)
}

fn bad_request(why: &'static str) -> (Outcome, Response) {
    plain(Outcome::BadRequest, StatusCode::BAD_REQUEST, why)
}

fn duplicate() -> (Outcome, Response) {
    plain(
        Outcome::Duplicate,
        StatusCode::CONFLICT,
        "this interaction was already received",
    )
}

fn unavailable(why: &'static str) -> (Outcome, Response) {
    plain(Outcome::Unavailable, StatusCode::SERVICE_UNAVAILABLE, why)
}

fn plain(outcome: Outcome, status: StatusCode, text: &'static str) -> (Outcome, Response) {
    let response = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::from(text))
        .expect("a static response");
    (outcome, response)
}

fn close(response: &mut Response) {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
}

fn json(body: Bytes) -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .expect("a static response")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_limit_leaves_room_for_headers() {
        let unknown = AtomicUsize::new(0);
        assert_eq!(body_limit(1000, &unknown), 1000);
        let small = AtomicUsize::new(5000);
        assert_eq!(body_limit(100_000, &small), 5000 - HEADER_ROOM);
        assert_eq!(body_limit(100, &small), 100);
    }
}
