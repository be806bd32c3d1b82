//! What a gateway stores and serves about its shards: the stored session (KV) and
//! the live answer to `shardline status` (core NATS request/reply).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Core NATS subject on which every gateway process answers a status request with
/// a [`GatewayStatus`] (each process answers; the requester collects them for a
/// moment). No stream captures it, so no PubAck answers in a gateway's place.
pub const STATUS_SUBJECT: &str = "internal.gateway.status";

/// One gateway process's live answer on [`STATUS_SUBJECT`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayStatus {
    /// Which process: `host/pid`.
    pub process: String,
    /// Unix milliseconds when it started.
    pub started_at_ms: u64,
    /// Every shard it owns.
    pub shards: Vec<ShardLive>,
}

/// One shard as its gateway process sees it now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardLive {
    /// The shard.
    pub shard: u32,
    /// Whether it has a live Discord session (READY or RESUMED received, not closed
    /// since).
    pub connected: bool,
    /// Unix milliseconds when `connected` last changed (or the process started).
    pub since_ms: u64,
}

/// What the sessions bucket ([`SESSIONS_BUCKET`](super::SESSIONS_BUCKET)) holds for
/// one shard, as JSON. Fields added after the first version have serde defaults, so
/// a value an older gateway wrote still reads, and an older gateway ignores the
/// fields it does not know.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSession {
    /// Discord session id.
    pub session_id: String,
    /// Every dispatch up to this sequence is in a stream (the ack floor).
    pub sequence: u64,
    /// Where to resume.
    pub resume_url: Option<String>,
    /// The shard total the session belongs to.
    pub shard_total: u32,
    /// Unix milliseconds of the write.
    pub saved_at_ms: u64,
    /// The gateway process that wrote it (`host/pid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
    /// Unix milliseconds when the Discord session began (its READY), as first
    /// stored; kept while the session is resumed, also across restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at_ms: Option<u64>,
}

/// Why a stored session is not resumed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unusable {
    /// It belongs to another shard total.
    ShardTotalChanged,
    /// It is older than the limit: identify fresh, the gap is skipped.
    TooOld(Duration),
}

impl StoredSession {
    /// Whether a gateway with `shard_total` shards may resume this session now.
    ///
    /// # Errors
    ///
    /// Why not.
    pub fn usable(&self, shard_total: u32, max_age: Duration, now_ms: u64) -> Result<(), Unusable> {
        if self.shard_total != shard_total {
            return Err(Unusable::ShardTotalChanged);
        }
        let age = Duration::from_millis(now_ms.saturating_sub(self.saved_at_ms));
        // A zero limit never resumes across restarts.
        if max_age.is_zero() || age > max_age {
            return Err(Unusable::TooOld(age));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_of_either_version_read_in_both() {
        // Written before `process` and `started_at_ms` existed.
        let old =
            r#"{"session_id":"s","sequence":9,"resume_url":null,"shard_total":2,"saved_at_ms":5}"#;
        let read: StoredSession = serde_json::from_str(old).unwrap();
        assert_eq!((read.process, read.started_at_ms), (None, None));
        // Written now, read by a gateway that knows only the first five fields.
        #[derive(Deserialize)]
        #[allow(dead_code)]
        struct First {
            session_id: String,
            sequence: u64,
            resume_url: Option<String>,
            shard_total: u32,
            saved_at_ms: u64,
        }
        let new = StoredSession {
            session_id: "s".into(),
            sequence: 9,
            resume_url: Some("wss://r".into()),
            shard_total: 2,
            saved_at_ms: 5,
            process: Some("host/1".into()),
            started_at_ms: Some(1),
        };
        let json = serde_json::to_string(&new).unwrap();
        let first: First = serde_json::from_str(&json).unwrap();
        assert_eq!(first.sequence, 9);
        assert_eq!(serde_json::from_str::<StoredSession>(&json).unwrap(), new);
    }

    fn stored(total: u32, saved_at_ms: u64) -> StoredSession {
        StoredSession {
            session_id: "s".into(),
            sequence: 9,
            resume_url: None,
            shard_total: total,
            saved_at_ms,
            process: None,
            started_at_ms: None,
        }
    }

    #[test]
    fn another_shard_total_is_not_resumed() {
        let max = Duration::from_secs(60);
        assert_eq!(stored(2, 1_000).usable(2, max, 2_000), Ok(()));
        assert_eq!(
            stored(2, 1_000).usable(3, max, 2_000),
            Err(Unusable::ShardTotalChanged)
        );
    }

    #[test]
    fn an_old_session_is_not_resumed() {
        let max = Duration::from_secs(60);
        assert_eq!(stored(1, 0).usable(1, max, 60_000), Ok(()));
        assert_eq!(
            stored(1, 5).usable(1, Duration::ZERO, 5),
            Err(Unusable::TooOld(Duration::ZERO))
        );
        assert_eq!(
            stored(1, 0).usable(1, max, 60_001),
            Err(Unusable::TooOld(Duration::from_millis(60_001)))
        );
    }

    #[test]
    fn no_stream_answers_a_status_request() {
        assert_eq!(crate::topology::stream_for_subject(STATUS_SUBJECT), None);
    }
}
