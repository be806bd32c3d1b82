//! The handler contract and the table of handlers by subject.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::HeaderMap;
use serde::de::DeserializeOwned;
use shardline_proto::headers;
use shardline_proto::topology::subject_matches;

use crate::Outcome;

/// What a handler knows about the message besides its payload.
#[derive(Clone, Debug)]
pub struct Meta {
    /// The subject it was published on.
    pub subject: String,
    /// Its headers (see `shardline_proto::headers`).
    pub headers: HeaderMap,
    /// How many times it has been delivered, this one included (1 on first delivery).
    pub delivered: i64,
    /// Its sequence in the stream.
    pub stream_sequence: u64,
}

impl Meta {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.as_str())
    }

    /// The Discord event name (`Discord-Event-Type`).
    pub fn event_type(&self) -> Option<&str> {
        self.header(headers::EVENT_TYPE)
    }

    /// The shard that received it.
    pub fn shard_id(&self) -> Option<u32> {
        self.header(headers::SHARD_ID)?.parse().ok()
    }

    /// The guild it belongs to.
    pub fn guild_id(&self) -> Option<u64> {
        self.header(headers::GUILD_ID)?.parse().ok()
    }

    /// When the gateway read the frame.
    pub fn received_at(&self) -> Option<SystemTime> {
        let nanos: u64 = self.header(headers::RECEIVED_AT)?.parse().ok()?;
        Some(UNIX_EPOCH + Duration::from_nanos(nanos))
    }
}

/// A message handler. Implement it once per kind of message and register it with
/// [`Handlers::on`].
///
/// ```
/// use shardline_worker::{Handler, Meta, Outcome};
/// use shardline_proto::payload::MemberAdd;
///
/// struct Welcome;
///
/// impl Handler for Welcome {
///     type Payload = MemberAdd;
///
///     async fn handle(&self, member: MemberAdd, _meta: &Meta) -> Outcome {
///         tracing::info!(user = %member.user.id, "welcome");
///         Outcome::Success
///     }
/// }
/// ```
pub trait Handler: Send + Sync + 'static {
    /// The payload type, deserialized from the message body (JSON).
    type Payload: DeserializeOwned + Send + 'static;

    /// Handles one message.
    fn handle(&self, payload: Self::Payload, meta: &Meta) -> impl Future<Output = Outcome> + Send;
}

type BoxFuture = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// A handler with its payload type erased: bytes in, outcome out.
trait Erased: Send + Sync {
    fn call(self: Arc<Self>, payload: &[u8], meta: Meta) -> BoxFuture;
}

struct Typed<H>(H);

impl<H: Handler> Erased for Typed<H> {
    fn call(self: Arc<Self>, payload: &[u8], meta: Meta) -> BoxFuture {
        match serde_json::from_slice::<H::Payload>(payload) {
            Ok(payload) => Box::pin(async move { self.0.handle(payload, &meta).await }),
            Err(e) => {
                let reason = format!(
                    "payload on {} is not a {}: {e}",
                    meta.subject,
                    std::any::type_name::<H::Payload>()
                );
                Box::pin(std::future::ready(Outcome::Terminal { reason }))
            }
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

    /// Decodes and handles one message; `None` if no handler takes its subject.
    pub(crate) fn dispatch(&self, payload: &[u8], meta: Meta) -> Option<BoxFuture> {
        let (_, handler) = self
            .routes
            .iter()
            .find(|(pattern, _)| subject_matches(pattern, &meta.subject))?;
        Some(handler.clone().call(payload, meta))
    }
}
