//! The REST proxy's contract: the headers a caller may send and receive, the body
//! of an answer the proxy makes itself, and the KV buckets its replicas share.
//!
//! Every answer `shardline-rest` generates itself (never Discord's) carries
//! [`REFUSED_HEADER`] with a [`RefusalKind`] and a JSON [`Refusal`] body shaped like
//! Discord's 429 body (`message`, `retry_after` in seconds, `global`) plus
//! `shardline_refused`, so a Discord client library parses it as an API error and a
//! caller that knows the proxy can tell it from Discord's own answer.
//!
//! A refusal to retry later is a 503 with `Retry-After`, never a 429: Discord
//! client libraries retry a 429 by themselves (twilight-http 0.18 at once and
//! without end), so a 429 would never reach the code that should answer Retry.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::kv::KvSpec;
use crate::topology::Storage;

/// Request header: the longest the caller is willing to wait for a rate limit, in
/// milliseconds. A request that would wait longer is refused at once with
/// [`RefusalKind::WaitBudget`] and the time to retry.
pub const MAX_WAIT_HEADER: &str = "x-shardline-max-wait-ms";

/// Response header on every answer the proxy made itself: the [`RefusalKind`].
pub const REFUSED_HEADER: &str = "x-shardline-refused";

/// Request header a standby sets when it forwards a request to the instance that
/// holds the lease; the holder never forwards such a request again.
pub const FORWARDED_HEADER: &str = "x-shardline-forwarded";

/// Why the proxy answered a request itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalKind {
    /// 503: the rate limit would make the request wait longer than its budget.
    WaitBudget,
    /// 503: the invalid-request guard tripped (too many 401/403/429 in 10 minutes);
    /// nothing is sent until the window drops below the threshold.
    InvalidRequests,
    /// 401: Discord answered 401 for this token; nothing is sent with it again.
    TokenRejected,
    /// 503: no instance holds the lease right now (a takeover is under way); retry.
    NoHolder,
    /// 503: this instance is shutting down; retry on another.
    ShuttingDown,
    /// 400: not a Discord API path (`/api/v{n}/...` with well-formed segments).
    MalformedPath,
    /// 413: the body exceeds Discord's request size limit.
    BodyTooLarge,
    /// 504: Discord did not answer in time; the request may or may not have taken
    /// effect.
    UpstreamTimeout,
    /// 502: Discord could not be reached.
    UpstreamUnreachable,
}

impl RefusalKind {
    /// Every kind, for metrics registered at zero.
    pub const ALL: [RefusalKind; 9] = [
        Self::WaitBudget,
        Self::InvalidRequests,
        Self::TokenRejected,
        Self::NoHolder,
        Self::ShuttingDown,
        Self::MalformedPath,
        Self::BodyTooLarge,
        Self::UpstreamTimeout,
        Self::UpstreamUnreachable,
    ];

    /// The header value and metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::WaitBudget => "wait_budget",
            Self::InvalidRequests => "invalid_requests",
            Self::TokenRejected => "token_rejected",
            Self::NoHolder => "no_holder",
            Self::ShuttingDown => "shutting_down",
            Self::MalformedPath => "malformed_path",
            Self::BodyTooLarge => "body_too_large",
            Self::UpstreamTimeout => "upstream_timeout",
            Self::UpstreamUnreachable => "upstream_unreachable",
        }
    }

    /// The HTTP status the proxy answers with.
    pub const fn status(self) -> u16 {
        match self {
            Self::TokenRejected => 401,
            Self::WaitBudget | Self::InvalidRequests | Self::NoHolder | Self::ShuttingDown => 503,
            Self::MalformedPath => 400,
            Self::BodyTooLarge => 413,
            Self::UpstreamTimeout => 504,
            Self::UpstreamUnreachable => 502,
        }
    }

    /// Whether the same request may succeed later (everything but bad input and a
    /// rejected token).
    pub const fn retryable(self) -> bool {
        !matches!(
            self,
            Self::MalformedPath | Self::BodyTooLarge | Self::TokenRejected
        )
    }
}

/// The JSON body of an answer the proxy made itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Refusal {
    /// What happened, for people.
    pub message: String,
    /// Seconds until the request may succeed (0 when unknown or never).
    pub retry_after: f64,
    /// Always false: Discord's field, kept so clients parse the body as a 429.
    pub global: bool,
    /// Why the proxy answered: the same as [`REFUSED_HEADER`].
    pub shardline_refused: RefusalKind,
}

impl Refusal {
    /// A refusal of `kind` with `message`, retryable after `retry_after`.
    pub fn new(kind: RefusalKind, message: impl Into<String>, retry_after: Duration) -> Self {
        Self {
            message: message.into(),
            // Milliseconds, as Discord rounds them.
            retry_after: (retry_after.as_millis() as f64) / 1000.0,
            global: false,
            shardline_refused: kind,
        }
    }

    /// The refusal in a response body, or `None` when the body is Discord's own.
    pub fn from_body(body: &[u8]) -> Option<Self> {
        serde_json::from_slice(body).ok()
    }

    /// [`retry_after`](Self::retry_after) as a duration (never negative).
    pub fn retry_after(&self) -> Duration {
        Duration::try_from_secs_f64(self.retry_after.max(0.0)).unwrap_or(Duration::ZERO)
    }
}

/// The lease the active proxy instance holds: one key, [`LEASE_KEY`], created by
/// whoever takes it and refreshed by revision. Its `max_age` is the lease's life
/// (the proxy sets it from `REST_LEASE_TTL_MS`; this is the default).
pub const LEASE: KvSpec = KvSpec {
    bucket: "shardline-rest-lease",
    max_age: Duration::from_secs(6),
    storage: Storage::Memory,
};

/// The key of the lease in [`LEASE`].
pub const LEASE_KEY: &str = "holder";

/// The holder's replicated rate-limit state (buckets, global window, invalid-request
/// window), so a successor starts where it left off. Kept as long as the
/// invalid-request window (10 minutes) plus a margin.
pub const STATE: KvSpec = KvSpec {
    bucket: "shardline-rest-state",
    max_age: Duration::from_secs(15 * 60),
    storage: Storage::Memory,
};

/// The key of the replicated state in [`STATE`].
pub const STATE_KEY: &str = "limits";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_reads_as_discords_429_and_as_the_proxys() {
        let refusal = Refusal::new(
            RefusalKind::WaitBudget,
            "would wait 1.5 s",
            Duration::from_millis(1500),
        );
        let json = serde_json::to_string(&refusal).unwrap();
        assert_eq!(
            json,
            r#"{"message":"would wait 1.5 s","retry_after":1.5,"global":false,"shardline_refused":"wait_budget"}"#
        );
        let back = Refusal::from_body(json.as_bytes()).unwrap();
        assert_eq!(back.retry_after(), Duration::from_millis(1500));
        // Discord's own 429 is not a refusal.
        let discord =
            br#"{"message":"You are being rate limited.","retry_after":0.5,"global":false}"#;
        assert_eq!(Refusal::from_body(discord), None);
    }

    #[test]
    fn kinds_name_their_status_and_label() {
        for kind in RefusalKind::ALL {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert!((400..600).contains(&kind.status()));
        }
        assert!(!RefusalKind::MalformedPath.retryable());
        assert!(RefusalKind::NoHolder.retryable());
    }
}
