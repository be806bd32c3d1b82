//! A command's reply as a first response, and completing a deferred interaction
//! through Discord's API (the same for both ways an interaction arrives).

use shardline_proto::interaction::fallback_response;
use shardline_proto::payload::Interaction;
use twilight_http::api_error::ApiError;
use twilight_http::error::ErrorType;
use twilight_model::application::interaction::InteractionType;
use twilight_model::http::interaction::{
    InteractionResponse, InteractionResponseData, InteractionResponseType,
};

use super::{InteractionHandler, Reply};
use crate::Outcome;

/// Discord's "Interaction has already been acknowledged".
const ALREADY_ACKNOWLEDGED: u64 = 40060;

/// What the user is told when a modal comes after a deferral.
const MODAL_TOO_LATE: &str = "This command could not open its form in time. Please try again.";

/// `reply` as the first response to an interaction of type `kind`.
pub(super) fn first_response(reply: &Reply, kind: InteractionType) -> InteractionResponse {
    if kind == InteractionType::ApplicationCommandAutocomplete {
        // Suggestions are the only valid answer; anything else offers none.
        let choices = match reply {
            Reply::Choices(choices) => choices.clone(),
            _ => Vec::new(),
        };
        return InteractionResponse {
            kind: InteractionResponseType::ApplicationCommandAutocompleteResult,
            data: Some(InteractionResponseData {
                choices: Some(choices),
                ..Default::default()
            }),
        };
    }
    match reply {
        Reply::Message(text) => InteractionResponse {
            // A component's message is updated in place, as its deferral would be.
            kind: if kind == InteractionType::MessageComponent {
                InteractionResponseType::UpdateMessage
            } else {
                InteractionResponseType::ChannelMessageWithSource
            },
            data: Some(InteractionResponseData {
                content: Some(text.clone()),
                ..Default::default()
            }),
        },
        Reply::Modal {
            custom_id,
            title,
            components,
        } => InteractionResponse {
            kind: InteractionResponseType::Modal,
            data: Some(InteractionResponseData {
                custom_id: Some(custom_id.clone()),
                title: Some(title.clone()),
                components: Some(components.clone()),
                ..Default::default()
            }),
        },
        Reply::Nothing | Reply::Choices(_) => fallback_response(kind),
    }
}

pub(super) fn already_acknowledged(kind: &ErrorType) -> bool {
    matches!(kind, ErrorType::Response { error: ApiError::General(e), .. } if e.code == ALREADY_ACKNOWLEDGED)
}

/// Discord answered 404: the interaction's token is unknown (it never got a first
/// response, or its 15 minutes are over). Retrying cannot help, and Discord restricts
/// clients that keep calling a webhook that answered 404.
fn unknown_interaction(kind: &ErrorType) -> bool {
    matches!(kind, ErrorType::Response { status, .. } if status.get() == 404)
}

impl InteractionHandler {
    /// Completes an interaction whose first response was a deferral: edits it with a
    /// message, tells the user a modal came too late, leaves everything else.
    pub(super) async fn finish_deferred(
        &self,
        interaction: &Interaction,
        name: &str,
        reply: Reply,
    ) -> Outcome {
        match reply {
            Reply::Nothing | Reply::Choices(_) => Outcome::Success,
            Reply::Message(text) => {
                let edited = self
                    .discord
                    .api
                    .interaction(interaction.application_id)
                    .update_response(&interaction.token)
                    .content(Some(&text))
                    .await;
                match edited {
                    Ok(_) => Outcome::Success,
                    Err(e) if unknown_interaction(e.kind()) => Outcome::terminal(format!(
                        "Discord no longer knows the interaction (no first response, or its token expired): {e}"
                    )),
                    Err(e) => {
                        tracing::warn!(interaction = %interaction.id, command = name, error = %e, "editing the response failed; retrying");
                        // The REST proxy says when its limit has room: retry then.
                        crate::rest_refusal::outcome(&e).unwrap_or_else(Outcome::retry)
                    }
                }
            }
            Reply::Modal { .. } => {
                let reason =
                    format!("command {name} answered a modal after the interaction was deferred");
                match self.follow_up(interaction, MODAL_TOO_LATE).await {
                    Ok(()) => Outcome::terminal(reason),
                    Err(outcome) => outcome,
                }
            }
        }
    }

    /// Sends `text` to the user as a follow-up message.
    pub(super) async fn follow_up(
        &self,
        interaction: &Interaction,
        text: &str,
    ) -> Result<(), Outcome> {
        self.discord
            .api
            .interaction(interaction.application_id)
            .create_followup(&interaction.token)
            .content(text)
            .await
            .map(drop)
            .map_err(|e| Outcome::terminal(format!("follow-up failed: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(reply: Reply, kind: InteractionType) -> String {
        serde_json::to_string(&first_response(&reply, kind)).unwrap()
    }

    #[test]
    fn replies_become_valid_first_responses() {
        use InteractionType::*;
        let text = || Reply::Message("hi".into());
        assert_eq!(
            json(text(), ApplicationCommand),
            r#"{"type":4,"data":{"content":"hi"}}"#
        );
        assert_eq!(
            json(text(), MessageComponent),
            r#"{"type":7,"data":{"content":"hi"}}"#
        );
        assert_eq!(json(Reply::Nothing, ApplicationCommand), r#"{"type":5}"#);
        assert_eq!(json(Reply::Nothing, MessageComponent), r#"{"type":6}"#);
        assert_eq!(
            json(text(), ApplicationCommandAutocomplete),
            r#"{"type":8,"data":{"choices":[]}}"#
        );
        let modal = Reply::Modal {
            custom_id: "form".into(),
            title: "Form".into(),
            components: Vec::new(),
        };
        assert_eq!(
            json(modal, ApplicationCommand),
            r#"{"type":9,"data":{"components":[],"custom_id":"form","title":"Form"}}"#
        );
    }
}
