//! Gateway commands clients send (op 3 presence, 4 voice state, 8 request guild
//! members), recorded per shard, and raw frames for tests of broken input.

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
}

pub(crate) fn record(shared: &Shared, shard: Option<u32>, op: u8, d: &Value) {
    shared.lock().commands.push(CommandRecord {
        shard,
        op,
        d: d.to_string(),
        at: Instant::now(),
    });
    shared.changed.notify_waiters();
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
