//! Shard sessions stored in a NATS KV bucket, so a restarted gateway resumes.
//!
//! Each shard's session id, ack floor ([`Progress`]) and resume URL are written to
//! [`SESSIONS_BUCKET`] every [`SAVE_INTERVAL`] while they change (so after a
//! SIGKILL the stored floor is at most about a second old: the replay covers the gap
//! and `Nats-Msg-Id` drops the overlap), and once more after a clean shutdown has
//! drained every ack. A stored session is used only by a gateway with the same shard
//! total and only while younger than `SESSION_MAX_AGE`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::kv::{Config as KvConfig, Store};
use async_nats::jetstream::{self, stream::StorageType};
use serde::{Deserialize, Serialize};
use shardline_proto::gateway::{SESSIONS_BUCKET, session_key};
use tokio_util::sync::CancellationToken;

use crate::progress::{Progress, Snapshot};

/// How often changed sessions are written.
pub const SAVE_INTERVAL: Duration = Duration::from_secs(1);

/// What the bucket holds for one shard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSession {
    /// Discord session id.
    pub session_id: String,
    /// Every dispatch up to this sequence is in a stream.
    pub sequence: u64,
    /// Where to resume.
    pub resume_url: Option<String>,
    /// The shard total the session belongs to.
    pub shard_total: u32,
    /// Unix milliseconds of the write.
    pub saved_at_ms: u64,
}

/// Why a stored session is not resumed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unusable {
    /// It belongs to another shard total.
    ShardTotalChanged,
    /// It is older than the limit: identify fresh, the gap is skipped.
    TooOld(Duration),
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
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

/// Creates the sessions bucket if missing (file storage: sessions outlive a broker
/// restart) and returns it.
///
/// # Errors
///
/// If the bucket can neither be created nor opened.
pub async fn open(js: &jetstream::Context, replicas: usize) -> Result<Store, async_nats::Error> {
    let config = KvConfig {
        bucket: SESSIONS_BUCKET.to_owned(),
        description: "Shardline gateway: resumable shard sessions".to_owned(),
        history: 1,
        max_age: Duration::from_secs(24 * 60 * 60),
        storage: StorageType::File,
        num_replicas: replicas,
        ..Default::default()
    };
    match js.create_key_value(config).await {
        Ok(store) => Ok(store),
        Err(_) => Ok(js.get_key_value(SESSIONS_BUCKET).await?),
    }
}

/// The stored session `shard` may resume, if any. Logs why a stored one is not used.
pub async fn load(
    store: &Store,
    shard: u32,
    shard_total: u32,
    max_age: Duration,
) -> Option<Snapshot> {
    let bytes = match store.get(session_key(shard)).await {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return None,
        Err(error) => {
            tracing::warn!(shard, %error, "cannot read the stored session; identifying");
            return None;
        }
    };
    let stored: StoredSession = match serde_json::from_slice(&bytes) {
        Ok(stored) => stored,
        Err(error) => {
            tracing::warn!(shard, %error, "stored session unreadable; identifying");
            return None;
        }
    };
    match stored.usable(shard_total, max_age, now_ms()) {
        Ok(()) => {
            tracing::info!(
                shard,
                sequence = stored.sequence,
                "resuming the stored session"
            );
            Some(Snapshot {
                session_id: stored.session_id,
                sequence: stored.sequence,
                resume_url: stored.resume_url,
            })
        }
        Err(Unusable::ShardTotalChanged) => {
            tracing::info!(
                shard,
                stored_total = stored.shard_total,
                shard_total,
                "stored session belongs to another shard total; dropped, identifying"
            );
            let _ = store.delete(session_key(shard)).await;
            None
        }
        Err(Unusable::TooOld(age)) => {
            tracing::warn!(
                shard,
                age_secs = age.as_secs(),
                max_age_secs = max_age.as_secs(),
                last_stored_sequence = stored.sequence,
                "stored session older than SESSION_MAX_AGE; identifying fresh: events Discord sent in the gap are skipped"
            );
            let _ = store.delete(session_key(shard)).await;
            None
        }
    }
}

/// Writes `snapshot` (or deletes the key when the shard has no session).
///
/// # Errors
///
/// If NATS refuses the write.
pub async fn save(
    store: &Store,
    shard: u32,
    shard_total: u32,
    snapshot: Option<&Snapshot>,
) -> Result<(), async_nats::Error> {
    let Some(snapshot) = snapshot else {
        store.delete(session_key(shard)).await?;
        return Ok(());
    };
    let stored = StoredSession {
        session_id: snapshot.session_id.clone(),
        sequence: snapshot.sequence,
        resume_url: snapshot.resume_url.clone(),
        shard_total,
        saved_at_ms: now_ms(),
    };
    let bytes = serde_json::to_vec(&stored)?;
    store.put(session_key(shard), bytes.into()).await?;
    Ok(())
}

/// Writes each shard's session every [`SAVE_INTERVAL`] while it changes, until
/// `stop` is cancelled. A failed write is retried at the next tick.
pub async fn save_periodically(
    store: Store,
    shard_total: u32,
    shards: Vec<(u32, Progress)>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(SAVE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        for (shard, progress) in &shards {
            let Ok(snapshot) = progress.take_changed() else {
                continue;
            };
            if let Err(error) = save(&store, *shard, shard_total, snapshot.as_ref()).await {
                tracing::warn!(shard, %error, "cannot store the session; retrying");
                progress.mark_changed();
            }
        }
    }
}

/// Writes every shard's final session after a clean shutdown.
pub async fn save_all(store: &Store, shard_total: u32, shards: &[(u32, Progress)]) {
    for (shard, progress) in shards {
        let snapshot = progress.snapshot();
        match save(store, *shard, shard_total, snapshot.as_ref()).await {
            Ok(()) => tracing::info!(
                shard,
                sequence = snapshot.as_ref().map(|s| s.sequence),
                "session stored for the next start"
            ),
            Err(error) => {
                tracing::error!(shard, %error, "cannot store the session; the next start identifies")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(total: u32, saved_at_ms: u64) -> StoredSession {
        StoredSession {
            session_id: "s".into(),
            sequence: 9,
            resume_url: None,
            shard_total: total,
            saved_at_ms,
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
}
