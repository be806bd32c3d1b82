//! The reference command worker: every interaction, logged by command name.

use shardline_proto::payload::Interaction;
use shardline_proto::subject;
use twilight_model::application::interaction::InteractionData;

use crate::{Handler, Handlers, Meta, Outcome};

/// `commands.interaction`.
pub struct InteractionLogger;

impl Handler for InteractionLogger {
    type Payload = Interaction;

    async fn handle(&self, interaction: Interaction, meta: &Meta) -> Outcome {
        let command = match &interaction.data {
            Some(InteractionData::ApplicationCommand(data)) => data.name.as_str(),
            _ => "-",
        };
        tracing::info!(
            interaction = %interaction.id,
            kind = ?interaction.kind,
            command,
            delivered = meta.delivered,
            "interaction received"
        );
        Outcome::Success
    }
}

/// The reference command handlers.
pub fn handlers() -> Handlers {
    Handlers::new().on(subject::COMMANDS_INTERACTION, InteractionLogger)
}
