//! Answers the fleet's REST proxy (`shardline-rest`) made itself: it refuses a
//! request it cannot send within the caller's wait budget (or while the
//! invalid-request guard holds, or during a takeover) with a 503, the header
//! `X-Shardline-Refused` and a body saying when to retry. A handler turns that into
//! [`Outcome::Retry`] after that time instead of failing the message.

use std::time::Duration;

use shardline_proto::rest::Refusal;
use twilight_http::error::ErrorType;

use crate::Outcome;

/// The proxy's refusal inside a twilight-http error, if the error is one.
pub fn refusal(error: &twilight_http::Error) -> Option<Refusal> {
    match error.kind() {
        ErrorType::Response { body, .. } | ErrorType::Parsing { body } => Refusal::from_body(body),
        _ => None,
    }
}

/// How long to wait before retrying, when the proxy refused a request that may
/// succeed later.
pub fn retry_after(error: &twilight_http::Error) -> Option<Duration> {
    refusal(error)
        .filter(|r| r.shardline_refused.retryable())
        .map(|r| r.retry_after())
}

/// [`Outcome::retry_after`] the proxy's time, when it refused a request that may
/// succeed later.
pub fn outcome(error: &twilight_http::Error) -> Option<Outcome> {
    retry_after(error).map(Outcome::retry_after)
}
