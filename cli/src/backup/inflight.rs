//! Publishing a restore with bounded, ordered acks, and waiting out the duplicate
//! window for a repeated `Nats-Msg-Id`.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use async_nats::jetstream::context::PublishAckFuture;

use crate::{Error, ErrorKind};

/// Publishes awaiting their ack at most.
const IN_FLIGHT: usize = 256;
/// Payload bytes awaiting their ack at most (1 MiB messages must not pile up).
const IN_FLIGHT_BYTES: usize = 32 * 1024 * 1024;

/// How long a repeated `Nats-Msg-Id` waits after its first publish: the window
/// plus a margin for the server's clock being read a little later than ours.
pub(super) const DUPLICATE_WAIT: Duration = Duration::from_millis(150);

/// `Nats-Msg-Id`s published within the last [`DUPLICATE_WAIT`], as hashes (a
/// collision only costs a needless wait).
#[derive(Default)]
pub(super) struct RecentIds {
    at: HashMap<u64, Instant>,
    order: VecDeque<(Instant, u64)>,
}

impl RecentIds {
    fn hash(id: &str) -> u64 {
        use std::hash::{BuildHasher, BuildHasherDefault};
        BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(id)
    }

    fn prune(&mut self, now: Instant) {
        while let Some(&(at, hash)) = self.order.front() {
            if now.duration_since(at) < DUPLICATE_WAIT {
                break;
            }
            self.order.pop_front();
            if self.at.get(&hash) == Some(&at) {
                self.at.remove(&hash);
            }
        }
    }

    /// How long to wait before `id` may be published again, if at all.
    pub(super) fn wait_for(&mut self, id: &str) -> Option<Duration> {
        let now = Instant::now();
        self.prune(now);
        let at = self.at.get(&Self::hash(id))?;
        Some(DUPLICATE_WAIT.saturating_sub(now.duration_since(*at)))
    }

    pub(super) fn published(&mut self, id: &str) {
        let now = Instant::now();
        let hash = Self::hash(id);
        self.at.insert(hash, now);
        self.order.push_back((now, hash));
    }
}

/// Acks awaited in publish order, bounded by count and bytes.
#[derive(Default)]
pub(super) struct InFlight {
    queue: VecDeque<(u64, usize, PublishAckFuture)>,
    bytes: usize,
}

impl InFlight {
    pub(super) async fn push(
        &mut self,
        stream: &str,
        expected: u64,
        bytes: usize,
        ack: PublishAckFuture,
    ) -> Result<(), Error> {
        self.queue.push_back((expected, bytes, ack));
        self.bytes += bytes;
        while self.queue.len() >= IN_FLIGHT || self.bytes >= IN_FLIGHT_BYTES {
            self.pop(stream).await?;
        }
        Ok(())
    }

    async fn pop(&mut self, stream: &str) -> Result<(), Error> {
        let Some((expected, bytes, ack)) = self.queue.pop_front() else {
            return Ok(());
        };
        self.bytes -= bytes;
        let ack = ack
            .await
            .map_err(|e| Error::request(format!("publishing into {stream}"), e))?;
        if ack.duplicate || ack.sequence != expected {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "{stream}: a restored message got sequence {} (expected {expected}{}): is something else publishing into it? Stop its publishers and restore again with --force",
                    ack.sequence,
                    if ack.duplicate {
                        ", dropped as a duplicate"
                    } else {
                        ""
                    }
                ),
            ));
        }
        Ok(())
    }

    pub(super) async fn drain(&mut self, stream: &str) -> Result<(), Error> {
        while !self.queue.is_empty() {
            self.pop(stream).await?;
        }
        Ok(())
    }
}
