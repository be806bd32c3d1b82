//! One enforcer for the fleet: a lease in NATS KV.
//!
//! Whoever creates the [`LEASE_KEY`] (`create` fails while it exists) enforces the
//! limits and sends to Discord; it refreshes the key by revision every sixth of
//! the lease's life, and the bucket's `max_age` expires it when its holder stops.
//! The holder may send only until its lease's life after the refresh was *sent*:
//! the server expires the key later than that, so two instances never send at once.
//! The others stand by and forward requests to the holder's address (in the
//! lease's value). Every [`replicate_interval`](crate::Config::replicate_interval)
//! the holder copies its limit state to the [`STATE_KEY`] (revision-checked, so a
//! holder that lost its lease cannot overwrite its successor's).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::jetstream::kv::{CreateErrorKind, Operation, Store, UpdateErrorKind};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use shardline_proto::rest::{LEASE_KEY, STATE_KEY};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::limiter::Limiter;
use crate::metrics as m;
use crate::snapshot::Snapshot;

/// What this instance does now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Not yet joined.
    Starting,
    /// Enforces and sends, until this instant (its lease's life after the last
    /// refresh it sent).
    Holder {
        /// Sending stops here unless the lease is refreshed.
        until: Instant,
    },
    /// Forwards to the holder at this address (none known: answers 503).
    Standby {
        /// The holder's advertised address.
        holder: Option<SocketAddr>,
    },
}

#[derive(Serialize, Deserialize)]
struct LeaseValue {
    id: String,
    addr: SocketAddr,
}

/// The lease and state buckets and this instance's place.
#[derive(Clone)]
pub struct Coordinator {
    lease: Store,
    state: Store,
    id: String,
    addr: SocketAddr,
    ttl: Duration,
    limiter: Arc<Limiter>,
    role: watch::Sender<Role>,
    accepting: Arc<AtomicBool>,
    state_revision: Arc<std::sync::Mutex<Option<u64>>>,
    lease_revision: Arc<std::sync::Mutex<Option<u64>>>,
}

impl Coordinator {
    /// A coordinator for instance `id` reachable at `addr`.
    pub fn new(
        lease: Store,
        state: Store,
        id: String,
        addr: SocketAddr,
        ttl: Duration,
        limiter: Arc<Limiter>,
    ) -> Self {
        Self {
            lease,
            state,
            id,
            addr,
            ttl,
            limiter,
            role: watch::channel(Role::Starting).0,
            accepting: Arc::new(AtomicBool::new(true)),
            state_revision: Arc::default(),
            lease_revision: Arc::default(),
        }
    }

    /// This instance's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The current role.
    pub fn role(&self) -> Role {
        self.role.borrow().clone()
    }

    fn lease_held(&self) -> bool {
        self.lease_revision
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Whether this instance may send to Discord now.
    pub fn may_send(&self) -> bool {
        matches!(*self.role.borrow(), Role::Holder { until } if Instant::now() < until)
    }

    /// Takes no new requests from now on (those admitted still go out, and the
    /// lease is kept until [`release`](Self::release)).
    pub fn stop_intake(&self) {
        self.accepting.store(false, Ordering::Release);
    }

    /// Whether new requests are taken.
    pub fn accepting(&self) -> bool {
        self.accepting.load(Ordering::Acquire)
    }

    fn set(&self, role: Role) {
        let holder = matches!(role, Role::Holder { .. });
        metrics::gauge!(m::HOLDER).set(if holder { 1.0 } else { 0.0 });
        self.role.send_if_modified(|current| {
            let changed = *current != role;
            *current = role;
            changed
        });
    }

    fn lease_value(&self) -> bytes::Bytes {
        let value = LeaseValue {
            id: self.id.clone(),
            addr: self.addr,
        };
        serde_json::to_vec(&value).expect("serializes").into()
    }

    /// Runs until `stop`: takes the lease when it is free, refreshes and replicates
    /// while holding it.
    pub async fn run(self, replicate_every: Duration, stop: CancellationToken) {
        let mut watch = match self.lease.watch(LEASE_KEY).await {
            Ok(watch) => Some(watch),
            Err(error) => {
                tracing::warn!(%error, "cannot watch the lease; a released lease is taken at the next poll");
                None
            }
        };
        // Often enough that, however late in the interval NATS becomes unreachable, the
        // lease outlives a leader election (3-4 s) of its bucket.
        let refresh_every = self.ttl / 6;
        let mut last_refresh = Instant::now();
        loop {
            if stop.is_cancelled() {
                return;
            }
            let held = *self
                .lease_revision
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let wait = match held {
                // Just taken: the first copy of what it learns goes out as soon as a
                // holder's would, not a poll later; a holder lost in its first
                // seconds leaves its successor more than the takeover's marker.
                None => match self.try_take().await {
                    _ if self.lease_held() => replicate_every.min(refresh_every),
                    wait => wait,
                },
                Some(revision) => {
                    if last_refresh.elapsed() >= refresh_every {
                        last_refresh = Instant::now();
                        self.refresh(revision).await;
                    }
                    self.replicate(false).await;
                    replicate_every.min(refresh_every)
                }
            };
            let standby = self
                .lease_revision
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_none();
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
                // A released lease is taken at once, not at the next poll.
                Some(_) = async { watch.as_mut()?.next().await }, if standby => {}
            }
        }
    }

    /// Tries to create the lease; returns how long to wait before trying again.
    async fn try_take(&self) -> Duration {
        let poll = self.ttl / 3;
        let sent = Instant::now();
        match self.lease.create(LEASE_KEY, self.lease_value()).await {
            Ok(revision) => match self.take_over(sent).await {
                Ok(()) => {
                    *self
                        .lease_revision
                        .lock()
                        .unwrap_or_else(|e| e.into_inner()) = Some(revision);
                    self.set(Role::Holder {
                        until: sent + self.ttl,
                    });
                    poll
                }
                Err(error) => {
                    tracing::warn!(%error, "took the lease but could not load the limit state; giving it back");
                    let _ = self
                        .lease
                        .delete_expect_revision(LEASE_KEY, Some(revision))
                        .await;
                    poll
                }
            },
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {
                let holder = match self.lease.entry(LEASE_KEY).await {
                    Ok(Some(entry)) if entry.operation == Operation::Put => {
                        serde_json::from_slice::<LeaseValue>(&entry.value)
                            .ok()
                            .filter(|v| v.id != self.id)
                            .map(|v| v.addr)
                    }
                    _ => None,
                };
                self.set(Role::Standby { holder });
                poll
            }
            Err(error) => {
                tracing::warn!(%error, "lease request failed");
                self.set(Role::Standby { holder: None });
                poll
            }
        }
    }

    /// Loads the predecessor's state and marks the state as being sent from (not
    /// clean) before anything is sent.
    async fn take_over(&self, sent: Instant) -> Result<(), async_nats::Error> {
        let entry = self.state.entry(STATE_KEY).await?;
        let (previous, revision) = match entry {
            Some(e) if e.operation == Operation::Put => {
                (Snapshot::from_bytes(&e.value), e.revision)
            }
            Some(e) => (None, e.revision),
            None => (None, 0),
        };
        self.limiter.reset();
        self.limiter.restore(previous.as_ref());
        let marker = self.limiter.snapshot(&self.id, false);
        let revision = self
            .state
            .update(STATE_KEY, marker.to_bytes(), revision)
            .await?;
        *self
            .state_revision
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(revision);
        let kind = match &previous {
            Some(p) if p.clean => "clean",
            Some(_) => "unclean",
            None => "fresh",
        };
        metrics::counter!(m::TAKEOVERS, "kind" => kind).increment(1);
        tracing::info!(
            instance = %self.id,
            addr = %self.addr,
            kind,
            previous = previous.as_ref().map(|p| p.holder.as_str()),
            waited_ms = sent.elapsed().as_millis() as u64,
            "took the lease: this instance enforces the limits and sends to Discord"
        );
        Ok(())
    }

    async fn refresh(&self, revision: u64) {
        let sent = Instant::now();
        match self
            .lease
            .update(LEASE_KEY, self.lease_value(), revision)
            .await
        {
            Ok(revision) => {
                *self
                    .lease_revision
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(revision);
                self.set(Role::Holder {
                    until: sent + self.ttl,
                });
            }
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => {
                let ours = |value: &[u8]| {
                    serde_json::from_slice::<LeaseValue>(value).is_ok_and(|l| l.id == self.id)
                };
                match written_by_us(&self.lease, LEASE_KEY, ours).await {
                    // An earlier refresh whose answer was lost (a timeout) did land:
                    // the lease is still ours. Its `until` stays that of the last
                    // refresh we know landed in time; the next one extends it.
                    Some(revision) => {
                        *self
                            .lease_revision
                            .lock()
                            .unwrap_or_else(|e| e.into_inner()) = Some(revision);
                    }
                    None => self.step_down("the lease moved"),
                }
            }
            // Sending stops at the lease's end unless a later refresh succeeds.
            Err(error) => tracing::warn!(%error, "lease refresh failed"),
        }
    }

    fn step_down(&self, why: &str) {
        tracing::error!(instance = %self.id, why, "lost the lease: no longer sending");
        *self
            .lease_revision
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
        self.set(Role::Standby { holder: None });
    }

    /// Copies the limit state to KV (`clean`: nothing more will be sent).
    async fn replicate(&self, clean: bool) {
        let Some(revision) = *self
            .state_revision
            .lock()
            .unwrap_or_else(|e| e.into_inner())
        else {
            return;
        };
        self.limiter.forget_idle();
        let snapshot = self.limiter.snapshot(&self.id, clean).to_bytes();
        match self.state.update(STATE_KEY, snapshot, revision).await {
            Ok(revision) => {
                *self
                    .state_revision
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(revision);
            }
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => {
                let ours =
                    |value: &[u8]| Snapshot::from_bytes(value).is_some_and(|s| s.holder == self.id);
                let revision = written_by_us(&self.state, STATE_KEY, ours).await;
                *self
                    .state_revision
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = revision;
                // Else an earlier write whose answer was lost (a timeout) landed, and
                // the state is still ours.
                if revision.is_none() {
                    self.step_down("another instance wrote the limit state");
                }
            }
            Err(error) => tracing::warn!(%error, "replicating the limit state failed"),
        }
    }

    /// After the last request was answered (`drained`): copies the exact state
    /// (clean) and releases the lease, so a standby takes over at once. Not drained:
    /// the state is left marked unclean, so the successor starts cautiously.
    pub async fn release(&self, drained: bool) {
        let held = *self
            .lease_revision
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let Some(revision) = held else {
            return;
        };
        // Only while the lease is surely still ours: else a successor may be sending
        // (and the state's revision check would refuse the write anyway).
        if self.may_send() {
            self.replicate(drained).await;
        }
        match self
            .lease
            .delete_expect_revision(LEASE_KEY, Some(revision))
            .await
        {
            Ok(()) => tracing::info!(instance = %self.id, "released the lease"),
            Err(error) => {
                tracing::warn!(%error, "could not release the lease; it expires by itself")
            }
        }
        *self
            .lease_revision
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// The revision of `key` if its latest value is one this instance wrote (`ours`): a
/// write refused for a wrong revision may only mean that an earlier write of ours
/// landed although its answer was lost. `None` if another wrote it or it cannot be
/// read (then the caller steps down, the safe side).
async fn written_by_us(store: &Store, key: &str, ours: impl Fn(&[u8]) -> bool) -> Option<u64> {
    match store.entry(key).await {
        Ok(Some(entry)) if entry.operation == Operation::Put && ours(&entry.value) => {
            tracing::info!(key, "a write whose answer was lost had landed; still ours");
            Some(entry.revision)
        }
        _ => None,
    }
}
