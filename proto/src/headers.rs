//! Header names set by the gateway on every published message.

/// JetStream's de-duplication id: `{session_id}:{sequence}`, so a replay after a
/// resume is dropped by the stream's duplicate window.
pub const MSG_ID: &str = "Nats-Msg-Id";
/// The dispatch name as Discord sent it (`t`), e.g. `GUILD_CREATE`.
pub const EVENT_TYPE: &str = "Discord-Event-Type";
/// The shard that received the dispatch, in decimal.
pub const SHARD_ID: &str = "Discord-Shard-Id";
/// The dispatch's sequence number in its session (`s`), in decimal.
pub const SEQUENCE: &str = "Discord-Sequence";
/// The guild the dispatch belongs to, in decimal, when the payload names one.
pub const GUILD_ID: &str = "Discord-Guild-Id";
/// Unix epoch nanoseconds when the gateway read the frame (or the interactions
/// service the HTTP request), in decimal.
pub const RECEIVED_AT: &str = "Shardline-Received-At";
/// On an interaction that arrived over HTTP: the core NATS subject where the
/// interactions service waits for its first response
/// ([`subject::interaction_reply`](crate::subject::interaction_reply)). A command
/// worker sends the response there as a request instead of calling Discord's
/// callback endpoint; see [`interaction`](crate::interaction).
pub const INTERACTION_REPLY: &str = "Shardline-Interaction-Reply";

/// On a dead letter: the durable consumer that gave up.
pub const DEAD_LETTER_CONSUMER: &str = "Shardline-Dead-Consumer";
/// On a dead letter: why, in words (one line).
pub const DEAD_LETTER_REASON: &str = "Shardline-Dead-Reason";
/// On a dead letter: the kind of reason (`terminal`, `undecodable`, `max_deliveries`).
pub const DEAD_LETTER_KIND: &str = "Shardline-Dead-Kind";
/// On a dead letter: how many times the message had been delivered.
pub const DEAD_LETTER_DELIVERED: &str = "Shardline-Dead-Delivered";
/// On a dead letter: Unix epoch nanoseconds when it was dead-lettered.
pub const DEAD_LETTER_AT: &str = "Shardline-Dead-At";
/// On a dead letter: the subject the message was published on.
pub const DEAD_LETTER_SUBJECT: &str = "Shardline-Dead-Subject";
/// On a dead letter: the stream and sequence it came from, `STREAM:SEQ`.
pub const DEAD_LETTER_SOURCE: &str = "Shardline-Dead-Source";
/// On a dead letter: the original `Nats-Msg-Id`, if it had one.
pub const DEAD_LETTER_MSG_ID: &str = "Shardline-Dead-Msg-Id";

/// Every header a dead letter adds; replay removes them.
pub const DEAD_LETTER_HEADERS: [&str; 8] = [
    DEAD_LETTER_CONSUMER,
    DEAD_LETTER_REASON,
    DEAD_LETTER_KIND,
    DEAD_LETTER_DELIVERED,
    DEAD_LETTER_AT,
    DEAD_LETTER_SUBJECT,
    DEAD_LETTER_SOURCE,
    DEAD_LETTER_MSG_ID,
];

/// The `Nats-Msg-Id` value for an interaction received over HTTP: its id, so the
/// same request delivered twice is stored once.
pub fn interaction_msg_id(interaction_id: u64) -> String {
    interaction_id.to_string()
}

/// The `Nats-Msg-Id` value for a dispatch.
pub fn msg_id(session_id: &str, sequence: u64) -> String {
    format!("{session_id}:{sequence}")
}

/// The session part of a dispatch's `Nats-Msg-Id` ([`msg_id`]): `Discord-Sequence`
/// orders dispatches only within one session.
pub fn session_of(msg_id: &str) -> Option<&str> {
    msg_id.rsplit_once(':').map(|(session, _)| session)
}

/// How the payload is encoded when it is not the dispatch's `d` byte for byte:
/// absent for plain payloads, [`ZSTD`](crate::encoding::ZSTD) for a zstd frame. Read
/// it with [`encoding::decode`](crate::encoding::decode).
pub const ENCODING: &str = "Shardline-Encoding";
