//! Gateway commands clients send (op 3 presence, 4 voice state, 8 request guild
//! members), recorded per shard, and raw frames for tests of broken input.
//!
//! Discord allows one request for all members of a guild (op 8 with an empty
//! `query`, `limit` 0 and no `user_ids`) per guild every 30 s
//! ([`RestLimits::members_request_interval`](crate::RestLimits)); an excess is
//! answered with a `RATE_LIMITED` dispatch (`opcode`, `retry_after`,
//! `meta.guild_id`, `meta.nonce`) and recorded as rate limited.

use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use crate::Simulator;
use crate::state::{Out, Shared};

/// A gateway command a client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRecord {
    /// Shard of the connection it came on (`None` before IDENTIFY/RESUME).
    pub shard: Option<u32>,
    /// Its opcode (3, 4 or 8).
    pub op: u8,
    /// Its `d`, as JSON text.
    pub d: String,
    /// When it arrived.
    pub at: Instant,
    /// An op 8 for all members of a guild within 30 s of the last one: answered
    /// with a `RATE_LIMITED` dispatch instead of members.
    pub rate_limited: bool,
}

pub(crate) fn record(
    shared: &Shared,
    session: Option<&str>,
    shard: Option<u32>,
    op: u8,
    d: &Value,
) {
    let now = Instant::now();
    let mut st = shared.lock();
    let mut rate_limited = false;
    if op == 8
        && let Some(guild) = all_members_of(d)
    {
        let interval = shared.config.rest_limits.members_request_interval;
        match st.member_requests.get(&guild) {
            Some(last) if now.duration_since(*last) < interval => {
                rate_limited = true;
                let retry_after = interval - now.duration_since(*last);
                let nonce = d.get("nonce").cloned().unwrap_or(Value::Null);
                let dispatch = serde_json::json!({
                    "opcode": 8,
                    "retry_after": retry_after.as_secs_f64(),
                    "meta": {"guild_id": guild.to_string(), "nonce": nonce},
                });
                if let Some(session) = session {
                    shared.append(
                        &mut st,
                        session,
                        "RATE_LIMITED",
                        Arc::from(dispatch.to_string()),
                        None,
                    );
                }
            }
            _ => {
                st.member_requests.insert(guild, now);
            }
        }
    }
    st.commands.push(CommandRecord {
        shard,
        op,
        d: d.to_string(),
        at: now,
        rate_limited,
    });
    drop(st);
    shared.changed.notify_waiters();
}

/// The guild of a request for all its members (empty query, limit 0, no user ids).
fn all_members_of(d: &Value) -> Option<u64> {
    let query_all = d.get("query").and_then(Value::as_str) == Some("");
    let limit_all = d.get("limit").and_then(Value::as_u64) == Some(0);
    let no_ids = d.get("user_ids").is_none_or(Value::is_null);
    if !(query_all && limit_all && no_ids) {
        return None;
    }
    match d.get("guild_id")? {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

impl Simulator {
    /// Every gateway command (op 3, 4, 8) received, in order.
    pub fn gateway_commands(&self) -> Vec<CommandRecord> {
        self.shared().lock().commands.clone()
    }

    /// Writes `text` as one frame on `shard`'s live connection, as it is: not logged
    /// in the session, never replayed (for frames that are not valid events).
    pub fn send_raw(&self, shard: u32, text: impl Into<String>) {
        if let Some(conn) = self.shared().live_conn(shard) {
            conn.send(Out::Text(text.into()));
        }
    }
}
