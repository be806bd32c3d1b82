//! Shard sessions stored in a NATS KV bucket, so a restarted gateway resumes.
//!
//! Each shard's session id, ack floor ([`Progress`]) and resume URL are written to
//! [`SESSIONS_BUCKET`] every [`SAVE_INTERVAL`] while they change (so after a
//! SIGKILL the stored floor is at most about a second old: the replay covers the gap
//! and `Nats-Msg-Id` drops the overlap), and once more after a clean shutdown has
//! drained every ack. A stored session is used only by a gateway with the same shard
//! total and only while younger than `SESSION_MAX_AGE`.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::kv::{Config as KvConfig, Store};
use async_nats::jetstream::{self, stream::StorageType};
use shardline_proto::gateway::{SESSIONS_BUCKET, session_key};
use tokio_util::sync::CancellationToken;

use crate::progress::{Progress, Snapshot};

/// How often changed sessions are written.
pub const SAVE_INTERVAL: Duration = Duration::from_secs(1);

pub use shardline_proto::gateway::{StoredSession, Unusable};

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// When each shard's session began, so every write carries it: kept while the
/// session id stays the same, read back from the bucket after a restart.
#[derive(Debug, Default)]
struct Starts(HashMap<u32, (String, u64)>);

impl Starts {
    async fn started_at(&mut self, store: &Store, shard: u32, session_id: &str) -> u64 {
        if let Some((id, at)) = self.0.get(&shard)
            && id == session_id
        {
            return *at;
        }
        let stored = match store.get(session_key(shard)).await {
            Ok(Some(bytes)) => serde_json::from_slice::<StoredSession>(&bytes).ok(),
            _ => None,
        };
        let at = stored
            .filter(|s| s.session_id == session_id)
            .and_then(|s| s.started_at_ms)
            .unwrap_or_else(now_ms);
        self.0.insert(shard, (session_id.to_owned(), at));
        at
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

/// Writes `snapshot` (or deletes the key when the shard has no session), with the
/// writing process and when the session began, for `shardline status`.
///
/// # Errors
///
/// If NATS refuses the write.
async fn save(
    store: &Store,
    shard: u32,
    shard_total: u32,
    snapshot: Option<&Snapshot>,
    starts: &mut Starts,
) -> Result<(), async_nats::Error> {
    let Some(snapshot) = snapshot else {
        store.delete(session_key(shard)).await?;
        return Ok(());
    };
    let started_at_ms = starts.started_at(store, shard, &snapshot.session_id).await;
    let stored = StoredSession {
        session_id: snapshot.session_id.clone(),
        sequence: snapshot.sequence,
        resume_url: snapshot.resume_url.clone(),
        shard_total,
        saved_at_ms: now_ms(),
        process: Some(crate::health::process_label().to_owned()),
        started_at_ms: Some(started_at_ms),
    };
    let bytes = serde_json::to_vec(&stored)?;
    store.put(session_key(shard), bytes.into()).await?;
    Ok(())
}

/// Writes each shard's session every [`SAVE_INTERVAL`] while it changes, and every
/// `refresh` while it does not and nothing awaits an ack, until `stop` is cancelled.
/// A failed write is retried at the next tick.
pub async fn save_periodically(
    store: Store,
    shard_total: u32,
    shards: Vec<(u32, Progress)>,
    refresh: Duration,
    stop: CancellationToken,
) {
    let mut starts = Starts::default();
    let mut saved_at: HashMap<u32, Instant> = HashMap::new();
    let mut tick = tokio::time::interval(SAVE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        for (shard, progress) in &shards {
            // A quiet shard's session does not change, but it must not look older than
            // SESSION_MAX_AGE to the next start either: with nothing awaiting an ack,
            // a resume replays nothing already stored, so rewriting it is safe. A floor
            // held back by a publish that is still retried is not refreshed: its age
            // is the age of what a resume would replay.
            let snapshot = match progress.take_changed() {
                Ok(snapshot) => snapshot,
                Err(()) => {
                    let due = saved_at.get(shard).is_none_or(|at| at.elapsed() >= refresh);
                    match progress.snapshot() {
                        Some(snapshot) if due && progress.settled() => Some(snapshot),
                        _ => continue,
                    }
                }
            };
            match save(&store, *shard, shard_total, snapshot.as_ref(), &mut starts).await {
                Ok(()) => {
                    saved_at.insert(*shard, Instant::now());
                }
                Err(error) => {
                    tracing::warn!(shard, %error, "cannot store the session; retrying");
                    progress.mark_changed();
                }
            }
        }
    }
}

/// Writes every shard's final session after a clean shutdown.
pub async fn save_all(store: &Store, shard_total: u32, shards: &[(u32, Progress)]) {
    let mut starts = Starts::default();
    for (shard, progress) in shards {
        let snapshot = progress.snapshot();
        match save(store, *shard, shard_total, snapshot.as_ref(), &mut starts).await {
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
