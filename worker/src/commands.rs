//! The reference command worker: defer every interaction first (Discord allows 3 s),
//! then run the command by name, and tell the user if it failed.
//!
//! A command is one small type implementing [`Command`], registered by name in
//! [`Commands`].

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_nats::jetstream::{self, kv};
use shardline_proto::kv::DEFERRED_INTERACTIONS;
use shardline_proto::payload::Interaction;
use shardline_proto::subject;
use shardline_proto::topology::COMMAND_WORKER;
use twilight_http::api_error::ApiError;
use twilight_http::error::ErrorType;
use twilight_model::application::interaction::{InteractionData, InteractionType};
use twilight_model::http::interaction::{InteractionResponse, InteractionResponseType};

use crate::{Context, Handler, Handlers, Outcome};

/// Discord's "Interaction has already been acknowledged".
const ALREADY_ACKNOWLEDGED: u64 = 40060;
/// After this long, Discord no longer accepts the first response.
const DEFER_DEADLINE: Duration = Duration::from_secs(3);
/// A failed defer is retried this soon: the consumer's deliveries spread over 90% of
/// the deadline. Spaced closer, a refusal lasting a second (the REST proxy taking
/// its lease over while NATS elects a leader) used every delivery up and
/// dead-lettered interactions that Discord still would have accepted.
pub(crate) const DEFER_RETRY: Duration = Duration::from_millis(
    DEFER_DEADLINE.as_millis() as u64 * 9 / 10 / (COMMAND_WORKER.max_deliver as u64 - 1),
);

/// What a command answers once it is done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Replace the deferred "thinking…" response with this text.
    Message(String),
    /// Leave the response as the command left it.
    Nothing,
}

/// Why a command did not reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandError {
    /// It failed for good: the text is sent to the user in a follow-up message, and
    /// the interaction is dead-lettered.
    Failed(String),
    /// It failed for now: run it again later (the interaction is not deferred again).
    Retry,
}

/// A slash command. Implement it once per command and register it with
/// [`Commands::command`].
pub trait Command: Send + Sync + 'static {
    /// Runs the command; the interaction has been deferred already.
    fn run(
        &self,
        interaction: &Interaction,
        cx: &Context,
    ) -> impl Future<Output = Result<Reply, CommandError>> + Send;
}

type BoxReply<'a> = Pin<Box<dyn Future<Output = Result<Reply, CommandError>> + Send + 'a>>;

trait ErasedCommand: Send + Sync {
    fn run<'a>(&'a self, interaction: &'a Interaction, cx: &'a Context) -> BoxReply<'a>;
}

impl<C: Command> ErasedCommand for C {
    fn run<'a>(&'a self, interaction: &'a Interaction, cx: &'a Context) -> BoxReply<'a> {
        Box::pin(Command::run(self, interaction, cx))
    }
}

/// Commands by name.
#[derive(Clone, Default)]
pub struct Commands {
    by_name: HashMap<String, Arc<dyn ErasedCommand>>,
}

impl Commands {
    /// No commands.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `command` under `name` (the slash command's name).
    pub fn command<C: Command>(mut self, name: &str, command: C) -> Self {
        self.by_name.insert(name.to_owned(), Arc::new(command));
        self
    }
}

/// `/ping`: answers "pong".
pub struct Ping;

impl Command for Ping {
    async fn run(&self, _: &Interaction, _: &Context) -> Result<Reply, CommandError> {
        Ok(Reply::Message("pong".to_owned()))
    }
}

/// The reference commands.
pub fn reference() -> Commands {
    Commands::new().command("ping", Ping)
}

/// `commands.interaction`: defers, runs the command, reports failures to the user.
pub struct InteractionHandler {
    discord: DiscordHttp,
    commands: Commands,
    deferred: kv::Store,
}

impl InteractionHandler {
    /// A handler answering through `discord`; creates (or opens) the bucket that
    /// remembers which interactions were deferred.
    ///
    /// # Errors
    ///
    /// Fails if the KV bucket cannot be created.
    pub async fn new(
        js: &jetstream::Context,
        discord: DiscordHttp,
        commands: Commands,
    ) -> Result<Self, jetstream::context::CreateKeyValueError> {
        let deferred = js
            .create_key_value(kv::Config {
                bucket: DEFERRED_INTERACTIONS.bucket.to_owned(),
                max_age: DEFERRED_INTERACTIONS.max_age,
                storage: shardline_jetstream::storage(DEFERRED_INTERACTIONS.storage),
                history: 1,
                ..Default::default()
            })
            .await?;
        Ok(Self {
            discord,
            commands,
            deferred,
        })
    }

    /// Sends the deferred response unless an earlier delivery did.
    async fn defer(&self, interaction: &Interaction, cx: &Context) -> Result<(), Outcome> {
        let key = interaction.id.to_string();
        if cx.is_redelivery() && matches!(self.deferred.get(&key).await, Ok(Some(_))) {
            return Ok(());
        }
        let kind = match interaction.kind {
            InteractionType::MessageComponent | InteractionType::ModalSubmit => {
                InteractionResponseType::DeferredUpdateMessage
            }
            _ => InteractionResponseType::DeferredChannelMessageWithSource,
        };
        let response = InteractionResponse { kind, data: None };
        let sent = self
            .discord
            .callbacks
            .interaction(interaction.application_id)
            .create_response(interaction.id, &interaction.token, &response)
            .await;
        match sent {
            Ok(_) => {}
            Err(e) if already_acknowledged(e.kind()) => {}
            Err(e) => {
                let age = cx
                    .received_at()
                    .and_then(|at| SystemTime::now().duration_since(at).ok())
                    .unwrap_or_default();
                return Err(if age > DEFER_DEADLINE {
                    Outcome::terminal(format!("defer failed after Discord's 3 s deadline: {e}"))
                } else {
                    tracing::warn!(interaction = %interaction.id, error = %e, "defer failed; retrying");
                    Outcome::retry_after(DEFER_RETRY)
                });
            }
        }
        if let Err(error) = self.deferred.put(&key, bytes::Bytes::new()).await {
            tracing::warn!(interaction = %interaction.id, %error, "could not record the defer; a redelivery would defer again");
        }
        Ok(())
    }

    async fn follow_up(&self, interaction: &Interaction, text: &str) -> Result<(), Outcome> {
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

fn already_acknowledged(kind: &ErrorType) -> bool {
    matches!(kind, ErrorType::Response { error: ApiError::General(e), .. } if e.code == ALREADY_ACKNOWLEDGED)
}

impl Handler for InteractionHandler {
    type Payload = Interaction;

    async fn handle(&self, interaction: Interaction, cx: &Context) -> Outcome {
        if interaction.kind == InteractionType::Ping {
            return Outcome::Success;
        }
        if let Err(outcome) = self.defer(&interaction, cx).await {
            return outcome;
        }
        let name = match &interaction.data {
            Some(InteractionData::ApplicationCommand(data)) => data.name.as_str(),
            _ => return Outcome::Success,
        };
        let Some(command) = self.commands.by_name.get(name) else {
            let reason = format!("no command named {name:?}");
            return match self
                .follow_up(&interaction, "This command is not available.")
                .await
            {
                Ok(()) => Outcome::terminal(reason),
                Err(outcome) => outcome,
            };
        };
        match command.run(&interaction, cx).await {
            Ok(Reply::Nothing) => Outcome::Success,
            Ok(Reply::Message(text)) => {
                let edited = self
                    .discord
                    .api
                    .interaction(interaction.application_id)
                    .update_response(&interaction.token)
                    .content(Some(&text))
                    .await;
                match edited {
                    Ok(_) => Outcome::Success,
                    Err(e) => {
                        tracing::warn!(interaction = %interaction.id, command = name, error = %e, "editing the response failed; retrying");
                        crate::rest_refusal::outcome(&e).unwrap_or_else(Outcome::retry)
                    }
                }
            }
            Err(CommandError::Retry) => Outcome::retry(),
            Err(CommandError::Failed(message)) => {
                let reason = format!("command {name} failed: {message}");
                match self.follow_up(&interaction, &message).await {
                    Ok(()) => Outcome::terminal(reason),
                    Err(outcome) => outcome,
                }
            }
        }
    }
}

/// The command worker's handler table: every interaction to `handler`.
pub fn handlers(handler: InteractionHandler) -> Handlers {
    Handlers::new().on(subject::COMMANDS_INTERACTION, handler)
}

/// The command worker's clients of Discord's API.
///
/// Interaction callbacks go through a client without twilight's rate limiter. Discord
/// does not bind them to the global limit, and the limiter keys its queues by bucket
/// and top-level resource, of which a callback path has none: once Discord's answers
/// name the callback bucket, every interaction's callback waits in one queue with one
/// request in flight, so a worker defers only 1/latency interactions a second (6.7 a
/// second at 150 ms) however many it holds. Without it, callbacks run as concurrently
/// as the worker runs handlers: the consumer's pending limit bounds them.
#[derive(Clone)]
pub struct DiscordHttp {
    /// Follow-ups, edits and any other call a command makes, with twilight's rate
    /// limiter (webhook limits are per interaction token, so interactions do not wait
    /// for each other).
    pub api: Arc<twilight_http::Client>,
    callbacks: Arc<twilight_http::Client>,
}

impl DiscordHttp {
    /// Clients for Discord's API at `base` (`https://discord.com` when `None`;
    /// `http://host:port` for a proxy or the simulator) with an optional bot token
    /// (interaction responses need none).
    pub fn new(base: Option<&str>, token: Option<String>) -> Self {
        let callbacks = builder(base, None).ratelimiter(None).build();
        Self {
            api: Arc::new(builder(base, token).build()),
            callbacks: Arc::new(callbacks),
        }
    }
}

/// A twilight-http client for Discord's API at `base` (`https://discord.com` when
/// `None`; `http://host:port` for a proxy or the simulator) with an optional bot token
/// (interaction responses need none), with twilight's rate limiter.
pub fn http_client(base: Option<&str>, token: Option<String>) -> twilight_http::Client {
    builder(base, token).build()
}

fn builder(base: Option<&str>, token: Option<String>) -> twilight_http::client::ClientBuilder {
    let mut builder = twilight_http::Client::builder();
    if let Some(token) = token {
        builder = builder.token(token);
    }
    if let Some(base) = base {
        let (plain, rest) = match base.strip_prefix("http://") {
            Some(rest) => (true, rest),
            None => (false, base.strip_prefix("https://").unwrap_or(base)),
        };
        builder = builder.proxy(rest.trim_end_matches('/').to_owned(), plain);
    }
    builder
}
