//! Identify coordination across every gateway process of a bot, through NATS.
//!
//! Discord allows `max_concurrency` IDENTIFYs per 5 s, one per bucket
//! `shard_id % max_concurrency`. [`NatsQueue`] implements twilight's
//! [`Queue`]: before a shard identifies, it takes a lease on its bucket's key in the
//! [`IDENTIFY_BUCKET`] KV bucket with `create`, which fails while the key exists. The
//! bucket's `max_age` is [`IDENTIFY_LEASE`], so the server itself expires a lease
//! 5 s (plus a margin) after it was taken, whether its holder is alive or not:
//! a process that dies after taking a lease cannot block the bucket, and however
//! many processes start at once, one identify per bucket per 5 s goes out.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::kv::{Config as KvConfig, CreateErrorKind, Operation, Store};
use async_nats::jetstream::{self, stream::StorageType};
use shardline_proto::gateway::{IDENTIFY_BUCKET, IDENTIFY_LEASE, identify_key};
use tokio::sync::oneshot;
use twilight_gateway::queue::Queue;

/// Wait after a failed KV request, doubled up to [`RETRY_CAP`].
const RETRY_START: Duration = Duration::from_millis(100);
const RETRY_CAP: Duration = Duration::from_secs(5);

/// twilight's identify [`Queue`] backed by a NATS KV lease per identify bucket.
#[derive(Clone, Debug)]
pub struct NatsQueue {
    store: Store,
    max_concurrency: u16,
}

/// Creates the identify bucket if missing (memory storage: leases are seconds long).
///
/// # Errors
///
/// If the bucket can neither be created nor opened.
pub async fn open(js: &jetstream::Context, replicas: usize) -> Result<Store, async_nats::Error> {
    let config = KvConfig {
        bucket: IDENTIFY_BUCKET.to_owned(),
        description: "Shardline gateway: identify leases, one per bucket".to_owned(),
        history: 1,
        max_age: IDENTIFY_LEASE,
        storage: StorageType::Memory,
        num_replicas: replicas,
        ..Default::default()
    };
    match js.create_key_value(config).await {
        Ok(store) => Ok(store),
        Err(_) => Ok(js.get_key_value(IDENTIFY_BUCKET).await?),
    }
}

impl NatsQueue {
    /// A queue on `store` (the identify bucket) for a bot with this `max_concurrency`.
    pub fn new(store: Store, max_concurrency: u16) -> Self {
        Self {
            store,
            max_concurrency: max_concurrency.max(1),
        }
    }

    /// Waits until `shard` holds its bucket's lease, or `granted` is dropped (the
    /// shard disconnected and will enqueue again).
    async fn acquire(self, shard: u32, mut granted: oneshot::Sender<()>) {
        let key = identify_key(shard, self.max_concurrency);
        let mut retry = RETRY_START;
        loop {
            let wait = match self.store.create(&key, shard.to_string().into()).await {
                Ok(_) => {
                    tracing::debug!(shard, bucket = %key, "identify lease taken");
                    let _ = granted.send(());
                    return;
                }
                Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {
                    retry = RETRY_START;
                    self.lease_left(&key).await
                }
                Err(error) => {
                    tracing::warn!(shard, %error, "identify lease request failed; retrying");
                    let wait = retry;
                    retry = (retry * 2).min(RETRY_CAP);
                    wait
                }
            };
            tokio::select! {
                () = granted.closed() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// How long the current lease on `key` has left, by the server's clock; a little
    /// jitter spreads out the waiters of one bucket.
    async fn lease_left(&self, key: &str) -> Duration {
        let jitter = Duration::from_millis(u64::from(rand_jitter()));
        let Ok(Some(entry)) = self.store.entry(key).await else {
            return jitter;
        };
        if entry.operation != Operation::Put {
            return jitter;
        }
        let created_ns = entry.created.unix_timestamp_nanos();
        let now_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        let age = Duration::from_nanos(now_ns.saturating_sub(created_ns).max(0) as u64);
        // Clock skew between this host and the server can only shorten or lengthen
        // the wait: the lease itself is expired by the server, never by us.
        IDENTIFY_LEASE
            .saturating_sub(age)
            .clamp(Duration::from_millis(20), IDENTIFY_LEASE)
            + jitter
    }
}

/// 0-49 ms from the clock's low bits: enough to spread waiters, no RNG dependency.
fn rand_jitter() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_micros())
        % 50
}

impl Queue for NatsQueue {
    fn enqueue(&self, shard: u32) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        tokio::spawn(self.clone().acquire(shard, tx));
        rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The queue must stay usable behind `dyn`, as twilight's own queues are.
    #[allow(dead_code)]
    fn object_safe(_: &dyn Queue) {}
}
