//! What a handler knows about its message besides the payload, and how it publishes.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::HeaderMap;
use async_nats::jetstream;
use async_nats::jetstream::context::PublishError;
use bytes::Bytes;
use shardline_proto::headers;

/// A message's context: where it came from, how often it was delivered, and a
/// JetStream handle to publish follow-up messages with.
#[derive(Clone, Debug)]
pub struct Context {
    /// The subject it was published on.
    pub subject: String,
    /// Its headers (see `shardline_proto::headers`), shared with the runtime, which
    /// copies them onto a dead letter.
    pub headers: Arc<HeaderMap>,
    /// How many times it has been delivered, this one included (1 on first delivery).
    pub delivered: i64,
    /// Its sequence in the stream.
    pub stream_sequence: u64,
    /// The durable consumer it was delivered to.
    pub consumer: &'static str,
    /// When the stream stored it, by the server's clock (from the delivery's ack subject).
    pub stored_at: Option<SystemTime>,
    js: jetstream::Context,
}

impl Context {
    pub(crate) fn new(
        message: &jetstream::Message,
        headers: Arc<HeaderMap>,
        consumer: &'static str,
        js: jetstream::Context,
    ) -> Self {
        let (delivered, stream_sequence, stored_at) = message
            .info()
            .map(|i| {
                let stored_at = u64::try_from(i.published.unix_timestamp_nanos())
                    .ok()
                    .map(|nanos| UNIX_EPOCH + Duration::from_nanos(nanos));
                (i.delivered, i.stream_sequence, stored_at)
            })
            .unwrap_or((1, 0, None));
        Self {
            subject: message.subject.to_string(),
            headers,
            delivered,
            stream_sequence,
            consumer,
            stored_at,
            js,
        }
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
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

    /// When the gateway read the frame (`Shardline-Received-At`).
    pub fn received_at(&self) -> Option<SystemTime> {
        let nanos: u64 = self.header(headers::RECEIVED_AT)?.parse().ok()?;
        Some(UNIX_EPOCH + Duration::from_nanos(nanos))
    }

    /// Whether this is a redelivery.
    pub fn is_redelivery(&self) -> bool {
        self.delivered > 1
    }

    /// Publishes `payload` on `subject` to JetStream and waits for the stream's ack.
    ///
    /// # Errors
    ///
    /// Fails if no stream captures `subject` or the server does not acknowledge.
    pub async fn publish(
        &self,
        subject: impl Into<String>,
        headers: HeaderMap,
        payload: impl Into<Bytes>,
    ) -> Result<(), PublishError> {
        self.js
            .publish_with_headers(subject.into(), headers, payload.into())
            .await?
            .await
            .map(drop)
    }

    /// The `Nats-Msg-Id` of a message published because of this one: `tag:` + this
    /// message's own `Nats-Msg-Id`, or `tag:<consumer>:<stream sequence>` when it has
    /// none. Every delivery of this message gives the same id, so the stream's
    /// duplicate window (two minutes) stores a follow-up once however often this
    /// message is retried or redelivered; `tag` tells apart the different messages one
    /// cause publishes.
    pub fn follow_up_id(&self, tag: &str) -> String {
        match self.header(headers::MSG_ID) {
            Some(id) => format!("{tag}:{id}"),
            None => format!("{tag}:{}:{}", self.consumer, self.stream_sequence),
        }
    }

    /// Publishes `payload` on `subject` with `Nats-Msg-Id` set to
    /// [`follow_up_id(tag)`](Self::follow_up_id) and waits for the stream's ack: the
    /// way to chain handlers without a redelivery publishing twice.
    ///
    /// # Errors
    ///
    /// Fails if no stream captures `subject` or the server does not acknowledge.
    pub async fn publish_follow_up(
        &self,
        subject: impl Into<String>,
        tag: &str,
        payload: impl Into<Bytes>,
    ) -> Result<(), PublishError> {
        let mut map = HeaderMap::new();
        map.insert(headers::MSG_ID, self.follow_up_id(tag).as_str());
        self.publish(subject, map, payload).await
    }

    /// The JetStream context the worker runs on, for anything [`publish`](Self::publish)
    /// does not cover (KV buckets, core NATS requests through `client()`).
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }
}
