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
/// Unix epoch nanoseconds when the gateway read the frame, in decimal.
pub const RECEIVED_AT: &str = "Shardline-Received-At";

/// The `Nats-Msg-Id` value for a dispatch.
pub fn msg_id(session_id: &str, sequence: u64) -> String {
    format!("{session_id}:{sequence}")
}

/// How the payload is encoded when it is not the dispatch's `d` byte for byte:
/// absent for plain payloads, [`ZSTD`](crate::encoding::ZSTD) for a zstd frame. Read
/// it with [`encoding::decode`](crate::encoding::decode).
pub const ENCODING: &str = "Shardline-Encoding";
