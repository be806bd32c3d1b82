//! The handler contract and the table of handlers by subject.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use shardline_proto::topology::subject_matches;
use shardline_proto::{encoding, headers};

use crate::{Context, Outcome};

/// A message handler. Implement it once per kind of message and register it with
/// [`Handlers::on`].
///
/// ```
/// use shardline_worker::{Context, Handler, Outcome};
/// use shardline_proto::payload::MemberAdd;
///
/// struct Welcome;
///
/// impl Handler for Welcome {
///     type Payload = MemberAdd;
///
///     async fn handle(&self, member: MemberAdd, _cx: &Context) -> Outcome {
///         tracing::info!(user = %member.user.id, "welcome");
///         Outcome::Success
///     }
/// }
/// ```
pub trait Handler: Send + Sync + 'static {
    /// The payload type, deserialized from the message body (JSON).
    type Payload: DeserializeOwned + Send + 'static;

    /// Decodes the message body (after any transport encoding is undone) into the
    /// payload. The default is serde_json. Override it to decode another way, or not
    /// at all for a handler that needs only the headers: a failure dead-letters the
    /// message as undecodable.
    ///
    /// # Errors
    ///
    /// The body is not a [`Self::Payload`].
    fn decode(body: &[u8]) -> Result<Self::Payload, DecodeError> {
        Ok(serde_json::from_slice(body)?)
    }

    /// Handles one message.
    fn handle(&self, payload: Self::Payload, cx: &Context) -> impl Future<Output = Outcome> + Send;
}

/// Why a body could not be decoded (the reason recorded on its dead letter).
pub type DecodeError = Box<dyn std::error::Error + Send + Sync>;

type BoxFuture = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// What the table made of one message.
pub(crate) enum Dispatch {
    /// No handler takes the subject.
    Unrouted,
    /// The payload is not the handler's type: the reason.
    Undecodable(String),
    /// The handler's future.
    Run(BoxFuture),
}

/// A handler with its payload type erased: bytes in, outcome out.
trait Erased: Send + Sync {
    fn call(self: Arc<Self>, payload: &[u8], cx: Context) -> Dispatch;
}

struct Typed<H>(H);

impl<H: Handler> Erased for Typed<H> {
    fn call(self: Arc<Self>, payload: &[u8], cx: Context) -> Dispatch {
        // A payload the gateway compressed (over the server's max_payload) says so in a
        // header; decode it here so no handler ever sees the difference.
        let payload = match encoding::decode(cx.header(headers::ENCODING), payload) {
            Ok(payload) => payload,
            Err(e) => {
                return Dispatch::Undecodable(format!("payload on {} is corrupt: {e}", cx.subject));
            }
        };
        match H::decode(&payload) {
            Ok(payload) => {
                Dispatch::Run(Box::pin(async move { self.0.handle(payload, &cx).await }))
            }
            Err(e) => Dispatch::Undecodable(format!(
                "payload on {} is not a {}: {e}",
                cx.subject,
                std::any::type_name::<H::Payload>()
            )),
        }
    }
}

/// Handlers by subject pattern; the first registered pattern that matches wins.
#[derive(Clone, Default)]
pub struct Handlers {
    routes: Vec<(String, Arc<dyn Erased>)>,
}

impl Handlers {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `handler` for subjects matching `pattern` (NATS wildcards allowed).
    pub fn on<H: Handler>(mut self, pattern: &str, handler: H) -> Self {
        self.routes
            .push((pattern.to_owned(), Arc::new(Typed(handler))));
        self
    }

    /// The patterns registered, in order.
    pub fn patterns(&self) -> impl Iterator<Item = &str> {
        self.routes.iter().map(|(p, _)| p.as_str())
    }

    /// Decodes one message for the handler of its subject.
    pub(crate) fn dispatch(&self, payload: &[u8], cx: Context) -> Dispatch {
        match self
            .routes
            .iter()
            .find(|(pattern, _)| subject_matches(pattern, &cx.subject))
        {
            Some((_, handler)) => handler.clone().call(payload, cx),
            None => Dispatch::Unrouted,
        }
    }
}
