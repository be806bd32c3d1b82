//! Interactions that came over the gateway: defer through Discord's callback
//! endpoint first, then run the command and complete the response.

use std::time::Duration;

use shardline_proto::interaction::{FIRST_RESPONSE_DEADLINE, fallback_response};
use shardline_proto::payload::Interaction;
use shardline_proto::topology::COMMAND_WORKER;
use twilight_model::application::interaction::InteractionType;
use twilight_model::http::interaction::InteractionResponse;

use super::reply::{already_acknowledged, first_response};
use super::{CommandError, InteractionHandler, NOT_AVAILABLE};
use crate::{Context, Outcome};

/// A failed defer is retried this soon: the consumer's deliveries spread over 90% of
/// the deadline. Spaced closer, a refusal lasting a second (the REST proxy taking
/// its lease over while NATS elects a leader) used every delivery up and
/// dead-lettered interactions that Discord still would have accepted.
pub(crate) const DEFER_RETRY: Duration = Duration::from_millis(
    FIRST_RESPONSE_DEADLINE.as_millis() as u64 * 9 / 10 / (COMMAND_WORKER.max_deliver as u64 - 1),
);

impl InteractionHandler {
    /// `age`: how long ago the gateway received the interaction.
    pub(super) async fn handle_gateway(
        &self,
        interaction: &Interaction,
        cx: &Context,
        age: Duration,
    ) -> Outcome {
        if interaction.kind == InteractionType::ApplicationCommandAutocomplete {
            // Suggestions cannot be deferred: the command's answer is the first response.
            return self.autocomplete(interaction, cx, age).await;
        }
        if let Err(outcome) = self.defer(interaction, cx, age).await {
            return outcome;
        }
        let (name, command) = match self.command_for(interaction) {
            Ok(Some(found)) => found,
            Ok(None) => return Outcome::Success,
            Err(name) => {
                let reason = format!("no command named {name:?}");
                return match self.follow_up(interaction, NOT_AVAILABLE).await {
                    Ok(()) => Outcome::terminal(reason),
                    Err(outcome) => outcome,
                };
            }
        };
        match command.run(interaction, cx).await {
            Ok(reply) => self.finish_deferred(interaction, name, reply).await,
            Err(CommandError::Retry) => Outcome::retry(),
            Err(CommandError::Failed(message)) => {
                let reason = format!("command {name} failed: {message}");
                match self.follow_up(interaction, &message).await {
                    Ok(()) => Outcome::terminal(reason),
                    Err(outcome) => outcome,
                }
            }
        }
    }

    /// Sends the deferred response unless an earlier delivery did.
    async fn defer(
        &self,
        interaction: &Interaction,
        cx: &Context,
        age: Duration,
    ) -> Result<(), Outcome> {
        let key = interaction.id.to_string();
        if cx.is_redelivery() && matches!(self.deferred.get(&key).await, Ok(Some(_))) {
            return Ok(());
        }
        match self
            .callback(interaction, &fallback_response(interaction.kind), age)
            .await
        {
            Ok(()) => {}
            Err(outcome) => return Err(outcome),
        }
        if let Err(error) = self.deferred.put(&key, bytes::Bytes::new()).await {
            tracing::warn!(interaction = %interaction.id, %error, "could not record the defer; a redelivery would defer again");
        }
        Ok(())
    }

    /// Runs an autocomplete command and sends its suggestions as the first response.
    async fn autocomplete(
        &self,
        interaction: &Interaction,
        cx: &Context,
        age: Duration,
    ) -> Outcome {
        let reply = match self.command_for(interaction) {
            Ok(Some((_, command))) => match command.run(interaction, cx).await {
                Ok(reply) => reply,
                // Suggestions are only useful now: nothing to retry or report.
                Err(_) => super::Reply::Nothing,
            },
            _ => super::Reply::Nothing,
        };
        let response = first_response(&reply, interaction.kind);
        match self.callback(interaction, &response, age).await {
            Ok(()) => Outcome::Success,
            Err(outcome) => outcome,
        }
    }

    /// Sends `response` as the first response; Discord's "already acknowledged"
    /// counts as sent. A failure is retried soon while Discord's 3 s may still be met,
    /// and is terminal after.
    async fn callback(
        &self,
        interaction: &Interaction,
        response: &InteractionResponse,
        age: Duration,
    ) -> Result<(), Outcome> {
        let sent = self
            .discord
            .callbacks
            .interaction(interaction.application_id)
            .create_response(interaction.id, &interaction.token, response)
            .await;
        match sent {
            Ok(_) => Ok(()),
            Err(e) if already_acknowledged(e.kind()) => Ok(()),
            Err(e) => Err(if age > FIRST_RESPONSE_DEADLINE {
                Outcome::terminal(format!(
                    "first response failed after Discord's 3 s deadline: {e}"
                ))
            } else {
                tracing::warn!(interaction = %interaction.id, error = %e, "first response failed; retrying");
                Outcome::retry_after(DEFER_RETRY)
            }),
        }
    }
}
