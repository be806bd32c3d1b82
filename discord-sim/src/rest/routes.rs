//! Which REST route a request is, as Discord's rate limiter sees it: its template,
//! its bucket and top-level resource, whether it needs the bot token and whether the
//! global limit applies; and the handlers of the bot endpoints the workers use
//! (messages in a channel, member roles).

use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::App;
use super::limits::{BucketSpec, RestLimits};

/// How a request is authorized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Auth {
    /// `Authorization: Bot <token>` is required.
    Bot,
    /// A token in the path authorizes it (webhooks, interactions); the bot token is
    /// optional.
    PathToken,
}

/// A request, classified.
#[derive(Clone, Debug)]
pub(crate) struct Classified {
    /// Route template, e.g. `/channels/:id/messages`; `unknown` for anything else.
    pub template: &'static str,
    /// The bucket hash Discord reports in `X-RateLimit-Bucket` and its limit.
    pub bucket: Option<(&'static str, BucketSpec)>,
    /// The top-level resource the bucket is kept per (channel, guild, webhook id +
    /// token); the bucket hash does not include it.
    pub major: String,
    /// Whether the global limit applies: not to Discord's interaction endpoints (the
    /// callback, and the webhook routes that edit and follow up with the token).
    pub global: bool,
    pub auth: Auth,
    /// The channel of a channel route, for forbidden channels.
    pub channel: Option<u64>,
}

/// Opaque bucket ids, as Discord's look (stable per route, shared by routes that
/// share a limit).
const MESSAGES_BUCKET: &str = "80c17d2f203122d936070c88c8d10f33";
const ROLES_BUCKET: &str = "c8fbfab84a6a3a0a6ab9d6b0b2d0f43c";
const WEBHOOK_BUCKET: &str = "e5a1e1f07cfbbfcd7d1c3c8c1a6bd6f1";

/// Classifies `path` (after `/api/v10`).
pub(crate) fn classify(limits: &RestLimits, method: &Method, path: &str) -> Classified {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let unknown = Classified {
        template: "unknown",
        bucket: None,
        major: String::new(),
        global: true,
        auth: Auth::Bot,
        channel: None,
    };
    let (template, bucket, major, global, auth) = match (method, segments.as_slice()) {
        (&Method::GET, ["gateway", "bot"]) => ("/gateway/bot", None, "", true, Auth::Bot),
        (&Method::POST, ["interactions", _, _, "callback"]) => (
            "/interactions/:id/:token/callback",
            None,
            "",
            false,
            Auth::PathToken,
        ),
        (&Method::POST, ["webhooks", _, _]) => (
            "/webhooks/:id/:token",
            Some((WEBHOOK_BUCKET, limits.webhooks)),
            "webhook",
            false,
            Auth::PathToken,
        ),
        (&Method::PATCH, ["webhooks", _, _, "messages", _]) => (
            "/webhooks/:id/:token/messages/:id",
            Some((WEBHOOK_BUCKET, limits.webhooks)),
            "webhook",
            false,
            Auth::PathToken,
        ),
        (&Method::POST, ["channels", _, "messages"]) => (
            "/channels/:id/messages",
            Some((MESSAGES_BUCKET, limits.messages)),
            "channel",
            true,
            Auth::Bot,
        ),
        (&Method::PUT | &Method::DELETE, ["guilds", _, "members", _, "roles", _]) => (
            "/guilds/:id/members/:id/roles/:id",
            Some((ROLES_BUCKET, limits.member_roles)),
            "guild",
            true,
            Auth::Bot,
        ),
        _ => return unknown,
    };
    let major = match major {
        "channel" | "guild" => segments[1].to_owned(),
        "webhook" => format!("{}/{}", segments[1], segments[2]),
        _ => String::new(),
    };
    let channel = (segments.first() == Some(&"channels"))
        .then(|| segments[1].parse().ok())
        .flatten();
    Classified {
        template,
        bucket,
        major,
        global,
        auth,
        channel,
    }
}

/// A message the simulator created (or returned again for a repeated nonce).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    /// The channel it was sent to.
    pub channel_id: u64,
    /// Its id.
    pub id: u64,
    /// Its `content`.
    pub content: String,
    /// Its `nonce`, if the request had one.
    pub nonce: Option<String>,
    /// False when `enforce_nonce` found an earlier message with the same nonce and
    /// that one was returned instead of creating another (Discord's de-duplication).
    pub created: bool,
}

/// `POST /channels/{channel}/messages`: creates a message; with `enforce_nonce` a
/// repeated nonce in the channel returns the first message instead, as Discord does.
pub(crate) async fn create_message(
    State(app): State<App>,
    Path(channel): Path<String>,
    body: String,
) -> Response {
    let Ok(channel_id) = channel.parse::<u64>() else {
        return not_found();
    };
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let content = v.get("content").and_then(|c| c.as_str()).unwrap_or("");
    let nonce = match v.get("nonce") {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let enforce = v.get("enforce_nonce").and_then(|e| e.as_bool()) == Some(true);
    let mut st = app.shared.lock();
    let earlier = nonce.as_ref().filter(|_| enforce).and_then(|n| {
        st.messages
            .iter()
            .find(|m| m.created && m.channel_id == channel_id && m.nonce.as_ref() == Some(n))
            .map(|m| m.id)
    });
    let id = earlier.unwrap_or(1_300_000_000_000_000_000 + st.messages.len() as u64);
    st.messages.push(MessageRecord {
        channel_id,
        id,
        content: content.to_owned(),
        nonce: nonce.clone(),
        created: earlier.is_none(),
    });
    drop(st);
    let mut message = super::message_json(&body);
    message["id"] = json!(id.to_string());
    message["channel_id"] = json!(channel.clone());
    if let Some(nonce) = nonce {
        message["nonce"] = json!(nonce);
    }
    axum::Json(message).into_response()
}

/// `PUT`/`DELETE /guilds/{guild}/members/{user}/roles/{role}`: in a guild the
/// simulator keeps members for ([`Simulator::add_guild`](crate::Simulator::add_guild)),
/// Discord's answers: 204 (and a `GUILD_MEMBER_UPDATE` dispatch when the roles
/// changed), 404 Unknown Member or Unknown Role, 403 Missing Permissions for a role
/// the bot may not manage. In any other guild: 204.
pub(crate) async fn member_role(
    State(app): State<App>,
    method: Method,
    Path((guild, user, role)): Path<(String, String, String)>,
) -> Response {
    use crate::members::{RoleAnswer, change_role};
    let parsed = (guild.parse(), user.parse(), role.parse());
    let (Ok(guild_id), Ok(user_id), Ok(role_id)) = parsed else {
        return not_found();
    };
    let added = method == Method::PUT;
    let shared = &app.shared;
    let mut st = shared.lock();
    let (status, body) = match change_role(shared, &mut st, guild_id, user_id, role_id, added) {
        RoleAnswer::Done | RoleAnswer::Unmodelled => (StatusCode::NO_CONTENT, None),
        RoleAnswer::NotFound(code, message) => (
            StatusCode::NOT_FOUND,
            Some(json!({"message": message, "code": code})),
        ),
        RoleAnswer::Forbidden => (
            StatusCode::FORBIDDEN,
            Some(json!({"message": "Missing Permissions", "code": 50013})),
        ),
    };
    st.role_changes.push(RoleChange {
        guild_id,
        user_id,
        role_id,
        added,
        status: status.as_u16(),
        at: std::time::Instant::now(),
    });
    drop(st);
    match body {
        Some(body) => (status, axum::Json(body)).into_response(),
        None => status.into_response(),
    }
}

/// A member role change the REST API received (past the limits), and its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleChange {
    /// Guild.
    pub guild_id: u64,
    /// Member.
    pub user_id: u64,
    /// Role.
    pub role_id: u64,
    /// `PUT` (true) or `DELETE` (false).
    pub added: bool,
    /// The status answered: 204, 404 (unknown member or role) or 403.
    pub status: u16,
    /// When it was answered (for latency from a member's join to its role).
    pub at: std::time::Instant,
}

/// Discord's 404 for an unknown route or resource.
pub(crate) fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({"message": "404: Not Found", "code": 0})),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_kept_per_top_level_resource() {
        let limits = RestLimits::default();
        let c = classify(&limits, &Method::POST, "/channels/42/messages");
        assert_eq!(c.template, "/channels/:id/messages");
        assert_eq!((c.major.as_str(), c.channel), ("42", Some(42)));
        assert_eq!(c.bucket.unwrap().0, MESSAGES_BUCKET);
        let r = classify(&limits, &Method::DELETE, "/guilds/7/members/8/roles/9");
        assert_eq!(
            (r.template, r.major.as_str()),
            ("/guilds/:id/members/:id/roles/:id", "7")
        );
        let w = classify(
            &limits,
            &Method::PATCH,
            "/webhooks/1/tok/messages/@original",
        );
        assert_eq!((w.major.as_str(), w.auth), ("1/tok", Auth::PathToken));
        assert!(!w.global && w.bucket.is_some());
        let cb = classify(&limits, &Method::POST, "/interactions/1/tok/callback");
        assert!(!cb.global && cb.bucket.is_none());
        assert_eq!(classify(&limits, &Method::GET, "/nope").template, "unknown");
    }
}
