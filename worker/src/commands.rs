//! The reference command worker: run each interaction's command by name and give
//! the interaction its responses, whichever way it came from Discord.
//!
//! Over the gateway, the worker defers every interaction first through Discord's
//! callback endpoint (Discord allows 3 s), then runs the command and edits the
//! response with its reply. Over HTTP (the interactions service names a reply
//! subject in the `Shardline-Interaction-Reply` header) it runs the command first and
//! offers the reply as the first response to the service, which answers Discord's
//! request with it unless its budget ran out; then the worker finishes through
//! Discord's API like a deferred gateway interaction. A [`Command`] is the same code
//! either way.
//!
//! A command is one small type implementing [`Command`], registered by name in
//! [`Commands`].

mod gateway;
mod http;
mod reply;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use async_nats::jetstream::{self, kv};
use shardline_proto::headers::INTERACTION_REPLY;
use shardline_proto::interaction::TOKEN_LIFETIME;
use shardline_proto::kv::DEFERRED_INTERACTIONS;
use shardline_proto::payload::Interaction;
use shardline_proto::subject;
use twilight_model::application::command::CommandOptionChoice;
use twilight_model::application::interaction::{InteractionData, InteractionType};
use twilight_model::channel::message::Component;

use crate::{Context, Handler, Handlers, Outcome};

/// What a command answers once it is done.
///
/// Over HTTP the reply is the interaction's first response when the command is done
/// within the interactions service's budget; otherwise (and always over the gateway,
/// where the worker defers first) the interaction was deferred and the reply
/// completes it through Discord's API.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// A message with this text: the first response, or the edit of the deferred
    /// "thinking…" response.
    Message(String),
    /// The deferral ("thinking…", or nothing shown for a component) is the answer:
    /// the command responded its own way (follow-ups through the API) or not at all.
    Nothing,
    /// A modal (a form). Discord takes one only as the first response: over HTTP
    /// within the service's budget. After a deferral (always over the gateway) the
    /// user is told the form could not open, and the interaction is dead-lettered.
    Modal {
        /// The id the modal's submit interaction carries.
        custom_id: String,
        /// The modal's title.
        title: String,
        /// Its rows of text inputs.
        components: Vec<Component>,
    },
    /// Autocomplete suggestions (for an autocomplete interaction, which is never
    /// deferred: one that misses the budget shows no suggestions).
    Choices(Vec<CommandOptionChoice>),
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
    /// Runs the command (for an autocomplete interaction too: answer
    /// [`Reply::Choices`]). Over the gateway the interaction has been deferred
    /// already; over HTTP the reply may still be its first response.
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

/// `commands.interaction`: runs the command and gives the interaction its responses
/// (deferral, reply, or the failure), by REST callback for gateway interactions and
/// through the interactions service for HTTP ones.
pub struct InteractionHandler {
    discord: DiscordHttp,
    commands: Commands,
    deferred: kv::Store,
}

impl InteractionHandler {
    /// A handler answering through `discord`; creates (or opens) the bucket that
    /// remembers which gateway interactions were deferred.
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

    /// The command an application command or autocomplete interaction names, if
    /// registered; `Err` with the name if not; `Ok(None)` for interactions without
    /// a command (components, modal submits).
    fn command_for<'a>(
        &'a self,
        interaction: &'a Interaction,
    ) -> Result<Option<(&'a str, &'a dyn ErasedCommand)>, &'a str> {
        let name = match &interaction.data {
            Some(InteractionData::ApplicationCommand(data)) => data.name.as_str(),
            _ => return Ok(None),
        };
        match self.commands.by_name.get(name) {
            Some(command) => Ok(Some((name, command.as_ref()))),
            None => Err(name),
        }
    }
}

/// What the user is told when no command has the interaction's name.
const NOT_AVAILABLE: &str = "This command is not available.";

impl Handler for InteractionHandler {
    type Payload = Interaction;

    async fn handle(&self, interaction: Interaction, cx: &Context) -> Outcome {
        if interaction.kind == InteractionType::Ping {
            return Outcome::Success;
        }
        let age = cx
            .received_at()
            .and_then(|at| SystemTime::now().duration_since(at).ok())
            .unwrap_or_default();
        if age > TOKEN_LIFETIME {
            // Discord accepts nothing for it any more; the dead letter keeps the record.
            return Outcome::terminal(format!(
                "the interaction token expired: received {}s ago, tokens live {}s",
                age.as_secs(),
                TOKEN_LIFETIME.as_secs()
            ));
        }
        match cx.header(INTERACTION_REPLY) {
            Some(offer_to) => self.handle_http(&interaction, cx, offer_to).await,
            None => self.handle_gateway(&interaction, cx, age).await,
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
