//! The gateway's own contract: its KV buckets and the shard command channel.
//!
//! Workers send gateway commands (request guild members, presence update, voice
//! state) to the shard that owns a guild with a core NATS request on
//! [`command_subject_for_guild`]; the owning gateway process sends it on that shard
//! and replies with a [`CommandReply`]. These requests are not stored: no stream
//! captures `internal.gateway.>` (see [`topology::INTERNAL`](crate::topology::INTERNAL)),
//! so the only reply a requester gets is the gateway's.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::shard_for_guild;

mod state;

pub use state::{GatewayStatus, STATUS_SUBJECT, ShardLive, StoredSession, Unusable};

/// KV bucket of stored shard sessions, one key per shard ([`session_key`]), so a
/// restarted gateway resumes instead of identifying.
pub const SESSIONS_BUCKET: &str = "shardline-gateway-sessions";

/// KV bucket of identify leases, one key per identify bucket ([`identify_key`]).
pub const IDENTIFY_BUCKET: &str = "shardline-gateway-identify";

/// How long an identify lease lives: Discord's 5 s per identify bucket, plus a margin
/// for the time between taking the lease and the IDENTIFY reaching Discord.
pub const IDENTIFY_LEASE: Duration = Duration::from_millis(5_250);

/// The key of `shard`'s stored session.
pub fn session_key(shard: u32) -> String {
    format!("shard-{shard}")
}

/// The key of the identify lease of `shard`: its bucket `shard % max_concurrency`.
pub fn identify_key(shard: u32, max_concurrency: u16) -> String {
    format!("bucket-{}", shard % u32::from(max_concurrency.max(1)))
}

/// Prefix of every shard command subject.
pub const COMMAND_PREFIX: &str = "internal.gateway.";

/// `internal.gateway.<shard>.command`: requests for shard `shard`.
pub fn command_subject(shard: u32) -> String {
    format!("{COMMAND_PREFIX}{shard}.command")
}

/// The command subject of the shard that owns `guild_id` out of `shard_total`.
///
/// # Panics
///
/// Panics if `shard_total` is zero.
pub fn command_subject_for_guild(guild_id: u64, shard_total: u32) -> String {
    command_subject(shard_for_guild(guild_id, shard_total))
}

/// Gateway opcodes a worker may send: 3 presence update, 4 voice state update,
/// 8 request guild members.
pub const COMMAND_OPCODES: [u8; 3] = [3, 4, 8];

/// Discord allows one request for all members of a guild (op 8 with an empty
/// `query` and `limit` 0) per guild this often, per bot; an excess gets a
/// `RATE_LIMITED` dispatch ([`subject::RATE_LIMITED`](crate::subject::RATE_LIMITED)).
pub const MEMBERS_REQUEST_INTERVAL: Duration = Duration::from_secs(30);

/// Discord's limit on an outgoing gateway payload, in bytes.
pub const MAX_COMMAND_BYTES: usize = 4096;

/// A command request's payload: the gateway command exactly as Discord takes it,
/// `{"op": 8, "d": {...}}`, with `op` one of [`COMMAND_OPCODES`] and at most
/// [`MAX_COMMAND_BYTES`] bytes. Workers may build it with this type or write the
/// JSON themselves.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShardCommand {
    /// The gateway opcode.
    pub op: u8,
    /// The command's data, as Discord documents it.
    pub d: serde_json::Value,
}

/// Why the gateway did not send a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandErrorKind {
    /// Not JSON, an opcode outside [`COMMAND_OPCODES`], or over [`MAX_COMMAND_BYTES`].
    Invalid,
    /// The shard has no live session right now (connecting, resuming); retry later.
    NotConnected,
    /// The shard used its 120 commands per 60 s, or the guild's members were all
    /// requested less than [`MEMBERS_REQUEST_INTERVAL`] ago; retry after
    /// `retry_after_ms`.
    RateLimited,
    /// The gateway is shutting down.
    ShuttingDown,
}

/// The gateway's reply to a command request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandReply {
    /// The shard the request was for.
    pub shard: u32,
    /// Whether the command was handed to the shard, which sends it within Discord's
    /// rate limit.
    pub ok: bool,
    /// Why not, when `ok` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<CommandErrorKind>,
    /// When rate limited: milliseconds until the shard may send again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl CommandReply {
    /// The command was handed to shard `shard`.
    pub fn sent(shard: u32) -> Self {
        Self {
            shard,
            ok: true,
            error: None,
            retry_after_ms: None,
        }
    }

    /// The command was refused.
    pub fn refused(shard: u32, error: CommandErrorKind, retry_after: Option<Duration>) -> Self {
        Self {
            shard,
            ok: false,
            error: Some(error),
            retry_after_ms: retry_after.map(|d| d.as_millis() as u64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::stream_for_subject;

    #[test]
    fn command_subjects_follow_the_shard_formula() {
        let guild = (5u64 << 22) | 123;
        assert_eq!(
            command_subject_for_guild(guild, 4),
            "internal.gateway.1.command"
        );
        assert_eq!(command_subject(0), "internal.gateway.0.command");
    }

    #[test]
    fn no_stream_swallows_a_command_request() {
        // A stream capturing the subject would answer the request with its PubAck.
        assert_eq!(stream_for_subject(&command_subject(3)), None);
    }

    #[test]
    fn identify_keys_are_buckets() {
        assert_eq!(identify_key(5, 4), "bucket-1");
        assert_eq!(identify_key(5, 0), "bucket-0");
    }

    #[test]
    fn replies_round_trip() {
        let reply = CommandReply::refused(
            2,
            CommandErrorKind::RateLimited,
            Some(Duration::from_millis(1500)),
        );
        let json = serde_json::to_string(&reply).unwrap();
        assert_eq!(
            json,
            r#"{"shard":2,"ok":false,"error":"rate_limited","retry_after_ms":1500}"#
        );
        assert_eq!(serde_json::from_str::<CommandReply>(&json).unwrap(), reply);
        // A JetStream PubAck is not a reply.
        assert!(serde_json::from_str::<CommandReply>(r#"{"stream":"X","seq":1}"#).is_err());
    }
}
