//! Interactions received over HTTP: who gives each one its first response.
//!
//! Discord waits 3 s ([`FIRST_RESPONSE_DEADLINE`]) for an interaction's first
//! response; over HTTP that response is the answer to Discord's request, which only
//! the interactions service holds. The service publishes the interaction on
//! `commands.interaction` with the [`INTERACTION_REPLY`] header naming a core NATS
//! subject of its own, and waits up to its budget:
//!
//! 1. A command worker that has the interaction's first response sends it (the JSON
//!    of a Discord interaction response) as a NATS request to that subject.
//! 2. The service is the arbiter. While the HTTP request still waits, the response
//!    becomes the HTTP answer and the reply is [`ANSWER_USED`]. Once the budget ran
//!    out, the service has already answered [`fallback_response`] itself and the
//!    reply is [`ANSWER_DEFERRED`]: the worker then finishes through Discord's API
//!    (edit the original response, or a follow-up) with the interaction token,
//!    which lives [`TOKEN_LIFETIME`].
//! 3. No responder (the service restarted) means deferred as well: the HTTP request
//!    it held is gone, and with it any chance of a first response over HTTP.
//!
//! Exactly one side removes the interaction from the service's table of waiting
//! requests, so each interaction gets exactly one first response.
//!
//! [`INTERACTION_REPLY`]: crate::headers::INTERACTION_REPLY

use std::time::Duration;

use twilight_model::application::interaction::InteractionType;
use twilight_model::http::interaction::{
    InteractionResponse, InteractionResponseData, InteractionResponseType,
};

/// The `Discord-Event-Type` of an interaction, whether the gateway or the
/// interactions service published it.
pub const INTERACTION_CREATE: &str = "INTERACTION_CREATE";

/// Discord's limit for an interaction's first response.
pub const FIRST_RESPONSE_DEADLINE: Duration = Duration::from_secs(3);

/// How long an interaction token accepts edits and follow-ups after the first
/// response.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(15 * 60);

/// Reply of the service: the offered response is the HTTP answer.
pub const ANSWER_USED: &[u8] = b"used";
/// Reply of the service: it answered the HTTP request itself (a deferral); the
/// worker must finish through Discord's API.
pub const ANSWER_DEFERRED: &[u8] = b"deferred";

/// The service's verdict on an offered first response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// It became the HTTP answer.
    Used,
    /// The interaction was already answered with [`fallback_response`].
    Deferred,
}

impl Answer {
    /// The reply payload.
    pub fn payload(self) -> &'static [u8] {
        match self {
            Self::Used => ANSWER_USED,
            Self::Deferred => ANSWER_DEFERRED,
        }
    }

    /// Reads a reply payload; anything unknown is `None`.
    pub fn parse(payload: &[u8]) -> Option<Self> {
        match payload {
            ANSWER_USED => Some(Self::Used),
            ANSWER_DEFERRED => Some(Self::Deferred),
            _ => None,
        }
    }
}

/// The first response that only acknowledges an interaction of type `kind`:
/// PONG to a PING; a deferred message ("thinking…", type 5) to a command or a
/// modal submit; a deferred update (type 6, nothing shown) to a component; no
/// choices to an autocomplete request, which cannot be deferred.
///
/// What the interactions service answers when no worker did within its budget, and
/// what a command worker sends when a command leaves the response to later.
/// Type 5 is valid for every modal submit, type 6 only for one opened from a
/// component, hence 5.
pub fn fallback_response(kind: InteractionType) -> InteractionResponse {
    let (kind, data) = match kind {
        InteractionType::Ping => (InteractionResponseType::Pong, None),
        InteractionType::MessageComponent => (InteractionResponseType::DeferredUpdateMessage, None),
        InteractionType::ApplicationCommandAutocomplete => (
            InteractionResponseType::ApplicationCommandAutocompleteResult,
            Some(InteractionResponseData {
                choices: Some(Vec::new()),
                ..Default::default()
            }),
        ),
        _ => (
            InteractionResponseType::DeferredChannelMessageWithSource,
            None,
        ),
    };
    InteractionResponse { kind, data }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(kind: InteractionType) -> String {
        serde_json::to_string(&fallback_response(kind)).unwrap()
    }

    #[test]
    fn fallbacks_are_valid_first_responses() {
        assert_eq!(json(InteractionType::Ping), r#"{"type":1}"#);
        assert_eq!(json(InteractionType::ApplicationCommand), r#"{"type":5}"#);
        assert_eq!(json(InteractionType::ModalSubmit), r#"{"type":5}"#);
        assert_eq!(json(InteractionType::MessageComponent), r#"{"type":6}"#);
        assert_eq!(
            json(InteractionType::ApplicationCommandAutocomplete),
            r#"{"type":8,"data":{"choices":[]}}"#
        );
    }

    #[test]
    fn answers_round_trip() {
        for answer in [Answer::Used, Answer::Deferred] {
            assert_eq!(Answer::parse(answer.payload()), Some(answer));
        }
        assert_eq!(Answer::parse(b"maybe"), None);
    }
}
