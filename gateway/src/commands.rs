//! Gateway commands from workers: request guild members, presence, voice state.
//!
//! Each shard this process owns listens on `internal.gateway.<shard>.command` (core
//! NATS, queue group `shardline-gateway`: not stored, so a request gets exactly one
//! reply, the gateway's). A request is checked here (JSON, opcode 3, 4 or 8, at most
//! 4096 bytes), then handed to the shard's loop, which sends it on the shard if the
//! shard has a live session and a free permit of Discord's 120 commands per 60 s,
//! and replies with a [`CommandReply`].
//!
//! The per-shard limit is twilight-gateway's own `CommandRatelimiter` (on by
//! default): it holds every outgoing command until a permit is free, keeps room for
//! heartbeats, and never lets the 60 s window exceed 120. The gateway refuses a
//! command with `rate_limited` when no permit is free instead of queueing it behind
//! the limiter, so a flood from workers cannot grow memory.
//!
//! Discord also allows one request for all members of a guild (op 8, empty
//! `query`, `limit` 0, no `user_ids`) per guild every 30 s ([`MembersLimit`]) and
//! answers an excess with a `RATE_LIMITED` dispatch; the gateway refuses it first,
//! with the time to retry. A guild belongs to one shard, so the shard's listener
//! keeps the times.

use std::collections::HashMap;
use std::future::Future;
use std::time::Instant;

use shardline_proto::gateway::{
    COMMAND_OPCODES, CommandErrorKind, CommandReply, MAX_COMMAND_BYTES, MEMBERS_REQUEST_INTERVAL,
    ShardCommand, command_subject,
};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use twilight_gateway::Shard;
use twilight_gateway::queue::Queue;

use crate::metrics as m;

/// Queue group of every gateway process's command subscriptions.
const QUEUE_GROUP: &str = "shardline-gateway";

/// A checked command on its way to the shard loop.
#[derive(Debug)]
pub struct CommandRequest {
    /// The command's JSON, as the worker sent it.
    pub json: String,
    /// Where the shard loop puts the result.
    pub reply: oneshot::Sender<CommandReply>,
}

/// Subscribes to `shard`'s command subject and forwards checked requests to `tx`
/// until `stop` is cancelled.
///
/// # Errors
///
/// If the subscription cannot be made.
pub async fn listen(
    client: async_nats::Client,
    shard: u32,
    tx: mpsc::Sender<CommandRequest>,
    stop: CancellationToken,
) -> Result<(), async_nats::SubscribeError> {
    use futures_util::StreamExt;
    let mut sub = client
        .queue_subscribe(command_subject(shard), QUEUE_GROUP.to_owned())
        .await?;
    let mut members = MembersLimit::default();
    tokio::spawn(async move {
        loop {
            let message = tokio::select! {
                () = stop.cancelled() => break,
                message = sub.next() => match message {
                    Some(message) => message,
                    None => break,
                },
            };
            let reply = match check(&message.payload) {
                Ok(json) => {
                    members
                        .send(shard, json, |json| forward(&tx, shard, json))
                        .await
                }
                Err(kind) => CommandReply::refused(shard, kind, None),
            };
            count(&reply);
            if let Some(to) = message.reply {
                let body = serde_json::to_vec(&reply).expect("a reply serializes");
                if let Err(error) = client.publish(to, body.into()).await {
                    tracing::warn!(shard, %error, "cannot reply to a shard command");
                }
            }
        }
        let _ = sub.unsubscribe().await;
    });
    Ok(())
}

fn check(payload: &[u8]) -> Result<String, CommandErrorKind> {
    if payload.len() > MAX_COMMAND_BYTES {
        return Err(CommandErrorKind::Invalid);
    }
    let command: ShardCommand =
        serde_json::from_slice(payload).map_err(|_| CommandErrorKind::Invalid)?;
    if !COMMAND_OPCODES.contains(&command.op) {
        return Err(CommandErrorKind::Invalid);
    }
    String::from_utf8(payload.to_vec()).map_err(|_| CommandErrorKind::Invalid)
}

async fn forward(tx: &mpsc::Sender<CommandRequest>, shard: u32, json: String) -> CommandReply {
    let (reply, result) = oneshot::channel();
    if tx.send(CommandRequest { json, reply }).await.is_err() {
        return CommandReply::refused(shard, CommandErrorKind::ShuttingDown, None);
    }
    result
        .await
        .unwrap_or_else(|_| CommandReply::refused(shard, CommandErrorKind::ShuttingDown, None))
}

fn count(reply: &CommandReply) {
    let result = match reply.error {
        None => "sent",
        Some(CommandErrorKind::Invalid) => "invalid",
        Some(CommandErrorKind::NotConnected) => "not_connected",
        Some(CommandErrorKind::RateLimited) => "rate_limited",
        Some(CommandErrorKind::ShuttingDown) => "shutting_down",
    };
    tracing::debug!(shard = reply.shard, result, "shard command");
    metrics::counter!(m::SHARD_COMMANDS, "result" => result).increment(1);
}

/// Discord's limit on requests for all members of a guild: one per guild per
/// [`MEMBERS_REQUEST_INTERVAL`].
#[derive(Debug, Default)]
pub struct MembersLimit {
    last: HashMap<u64, Instant>,
}

impl MembersLimit {
    /// Sends `json` with `send` unless it asks for all members of a guild asked for
    /// less than 30 s ago (then refused with the time left); a sent one starts the
    /// guild's 30 s.
    pub async fn send<F, Fut>(&mut self, shard: u32, json: String, send: F) -> CommandReply
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = CommandReply>,
    {
        let Some(guild) = all_members_of(&json) else {
            return send(json).await;
        };
        let now = Instant::now();
        self.last
            .retain(|_, at| now.duration_since(*at) < MEMBERS_REQUEST_INTERVAL);
        if let Some(at) = self.last.get(&guild) {
            let wait = MEMBERS_REQUEST_INTERVAL - now.duration_since(*at);
            return CommandReply::refused(shard, CommandErrorKind::RateLimited, Some(wait));
        }
        let reply = send(json).await;
        if reply.ok {
            self.last.insert(guild, now);
        }
        reply
    }
}

/// The guild of an op 8 that asks for all its members.
fn all_members_of(json: &str) -> Option<u64> {
    let command: ShardCommand = serde_json::from_str(json).ok()?;
    let d = &command.d;
    let all = command.op == 8
        && d.get("query").and_then(|q| q.as_str()) == Some("")
        && d.get("limit").and_then(|l| l.as_u64()) == Some(0)
        && d.get("user_ids").is_none_or(|u| u.is_null());
    if !all {
        return None;
    }
    match d.get("guild_id")? {
        serde_json::Value::String(s) => s.parse().ok(),
        serde_json::Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

/// Sends `json` on `shard` if it has a live session and a free command permit.
pub fn send_on<Q: Queue>(shard: &Shard<Q>, json: String) -> CommandReply {
    let id = shard.id().number();
    if !shard.state().is_identified() {
        return CommandReply::refused(id, CommandErrorKind::NotConnected, None);
    }
    if let Some(limiter) = shard.ratelimiter()
        && limiter.available() == 0
    {
        let wait = limiter.next_available();
        return CommandReply::refused(id, CommandErrorKind::RateLimited, Some(wait));
    }
    shard.send(json);
    CommandReply::sent(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_small_json_commands_with_known_opcodes_pass() {
        let ok = br#"{"op":8,"d":{"guild_id":"1","query":"","limit":0}}"#;
        assert_eq!(check(ok).unwrap().as_bytes(), ok);
        assert_eq!(check(b"nope"), Err(CommandErrorKind::Invalid));
        assert_eq!(check(br#"{"op":2,"d":{}}"#), Err(CommandErrorKind::Invalid));
        let big = format!(r#"{{"op":3,"d":"{}"}}"#, "x".repeat(MAX_COMMAND_BYTES));
        assert_eq!(check(big.as_bytes()), Err(CommandErrorKind::Invalid));
    }

    #[test]
    fn only_requests_for_all_members_are_held_to_30_s() {
        assert_eq!(
            all_members_of(r#"{"op":8,"d":{"guild_id":"42","query":"","limit":0}}"#),
            Some(42)
        );
        for other in [
            r#"{"op":8,"d":{"guild_id":"42","query":"ab","limit":10}}"#,
            r#"{"op":8,"d":{"guild_id":"42","user_ids":["1"],"limit":0}}"#,
            r#"{"op":3,"d":{"guild_id":"42","query":"","limit":0}}"#,
        ] {
            assert_eq!(all_members_of(other), None, "{other}");
        }
    }
}
