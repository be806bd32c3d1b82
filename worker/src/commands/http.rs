//! Interactions that came over HTTP: run the command, offer its reply as the first
//! response to the interactions service, and complete through Discord's API if the
//! service had to defer (see `shardline_proto::interaction`).

use std::time::Duration;

use async_nats::RequestErrorKind;
use shardline_proto::interaction::Answer;
use shardline_proto::payload::Interaction;
use twilight_model::http::interaction::InteractionResponse;

use super::reply::first_response;
use super::{CommandError, InteractionHandler, NOT_AVAILABLE, Reply};
use crate::{Context, Outcome};

/// How long the service may take to answer an offer. It answers at once; silence
/// this long means it is gone or cut off, and its HTTP request with it.
const OFFER_TIMEOUT: Duration = Duration::from_secs(2);

impl InteractionHandler {
    /// `offer_to`: the service's reply subject for this interaction.
    pub(super) async fn handle_http(
        &self,
        interaction: &Interaction,
        cx: &Context,
        offer_to: &str,
    ) -> Outcome {
        let (name, command) = match self.command_for(interaction) {
            Ok(Some(found)) => found,
            Ok(None) => {
                // A component or modal submit no command takes: acknowledge it.
                let deferral = first_response(&Reply::Nothing, interaction.kind);
                return match offer(cx, offer_to, &deferral).await {
                    Ok(_) => Outcome::Success,
                    Err(outcome) => outcome,
                };
            }
            Err(name) => {
                let reason = format!("no command named {name:?}");
                return self
                    .fail(interaction, cx, offer_to, NOT_AVAILABLE, reason)
                    .await;
            }
        };
        match command.run(interaction, cx).await {
            Ok(reply) => {
                let response = first_response(&reply, interaction.kind);
                match offer(cx, offer_to, &response).await {
                    Ok(Answer::Used) => Outcome::Success,
                    Ok(Answer::Deferred) => self.finish_deferred(interaction, name, reply).await,
                    Err(outcome) => outcome,
                }
            }
            // The service defers once its budget runs out; the redelivery finishes.
            Err(CommandError::Retry) => Outcome::retry(),
            Err(CommandError::Failed(message)) => {
                let reason = format!("command {name} failed: {message}");
                self.fail(interaction, cx, offer_to, &message, reason).await
            }
        }
    }

    /// Tells the user `text` (the first response, or a follow-up after a deferral)
    /// and dead-letters the interaction with `reason`.
    async fn fail(
        &self,
        interaction: &Interaction,
        cx: &Context,
        offer_to: &str,
        text: &str,
        reason: String,
    ) -> Outcome {
        let message = first_response(&Reply::Message(text.to_owned()), interaction.kind);
        let told = match offer(cx, offer_to, &message).await {
            Ok(Answer::Used) => Ok(()),
            Ok(Answer::Deferred) => self.follow_up(interaction, text).await,
            Err(outcome) => Err(outcome),
        };
        match told {
            Ok(()) => Outcome::terminal(reason),
            Err(outcome) => outcome,
        }
    }
}

/// Offers `response` as the first response. No service listening (it restarted) or
/// none answering in time counts as deferred: its HTTP request is gone either way.
/// If an answer was lost after the service used the response, the worker's
/// completion repeats it (an edit with the same text), which the user cannot tell.
async fn offer(
    cx: &Context,
    offer_to: &str,
    response: &InteractionResponse,
) -> Result<Answer, Outcome> {
    let payload = serde_json::to_vec(response).expect("an interaction response serializes");
    let request = async_nats::Request::new()
        .payload(payload.into())
        .timeout(Some(OFFER_TIMEOUT));
    let client = cx.jetstream().client();
    match client.send_request(offer_to.to_owned(), request).await {
        Ok(answer) => Ok(Answer::parse(&answer.payload).unwrap_or(Answer::Deferred)),
        Err(e) if e.kind() == RequestErrorKind::NoResponders => Ok(Answer::Deferred),
        Err(e) if e.kind() == RequestErrorKind::TimedOut => {
            tracing::warn!(
                subject = offer_to,
                "the interactions service did not answer an offer; completing as deferred"
            );
            Ok(Answer::Deferred)
        }
        Err(e) => {
            tracing::warn!(subject = offer_to, error = %e, "offering a first response failed; retrying");
            Err(Outcome::retry())
        }
    }
}
