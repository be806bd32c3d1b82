//! The arbiter: interactions waiting for a first response, and the one place that
//! decides whether a worker's response or the service's deferral answers each.
//!
//! An interaction is in the table while its HTTP request may still take a worker's
//! response. Whoever removes it decides: a worker's offer ([`Pending::offer`]) hands
//! the response to the request and is told `used`; the request's deadline
//! ([`Waiter::settle`]) answers the deferral, and any later offer finds nothing and
//! is told `deferred`. Both remove under one lock, so exactly one of them wins.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use shardline_proto::interaction::Answer;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::metrics as m;

/// Interactions waiting for a first response, by interaction id.
pub(crate) struct Pending {
    waiting: Mutex<HashMap<u64, oneshot::Sender<Bytes>>>,
    max: usize,
    gauge: metrics::Gauge,
}

/// Why an interaction was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// `max` interactions are already waiting.
    Full,
    /// This interaction is already waiting (the same request twice).
    Duplicate,
}

/// How a waiting interaction was settled.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Settled {
    /// A worker's first response (JSON), to return as the HTTP answer.
    Inline(Bytes),
    /// The deadline passed first: answer the deferral.
    Deferred,
}

impl Pending {
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            waiting: Mutex::new(HashMap::new()),
            max,
            gauge: metrics::gauge!(m::PENDING),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, oneshot::Sender<Bytes>>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts interaction `id` in the table.
    pub(crate) fn admit(self: &Arc<Self>, id: u64) -> Result<Waiter, Refused> {
        let (tx, rx) = oneshot::channel();
        let mut waiting = self.lock();
        if waiting.contains_key(&id) {
            return Err(Refused::Duplicate);
        }
        if waiting.len() >= self.max {
            return Err(Refused::Full);
        }
        waiting.insert(id, tx);
        self.gauge.set(waiting.len() as f64);
        Ok(Waiter {
            table: self.clone(),
            id,
            rx,
        })
    }

    /// A worker offers `response` as interaction `id`'s first response.
    pub(crate) fn offer(&self, id: u64, response: Bytes) -> Answer {
        let mut waiting = self.lock();
        let Some(tx) = waiting.remove(&id) else {
            return Answer::Deferred;
        };
        self.gauge.set(waiting.len() as f64);
        // Sent under the lock: a waiter that finds its entry gone then finds the
        // response in its channel.
        match tx.send(response) {
            Ok(()) => Answer::Used,
            Err(_) => Answer::Deferred,
        }
    }

    /// How many interactions wait now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn remove(&self, id: u64) -> bool {
        let mut waiting = self.lock();
        let removed = waiting.remove(&id).is_some();
        if removed {
            self.gauge.set(waiting.len() as f64);
        }
        removed
    }
}

/// One waiting interaction. Dropping it (the client went away, an error) takes the
/// interaction out of the table, so a later offer is told `deferred`.
pub(crate) struct Waiter {
    table: Arc<Pending>,
    id: u64,
    rx: oneshot::Receiver<Bytes>,
}

impl Waiter {
    /// Waits for a worker's response until `deadline`, then settles.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future leaves the interaction waiting; dropping the `Waiter`
    /// withdraws it.
    pub(crate) async fn settle(&mut self, deadline: Instant) -> Settled {
        if let Ok(Ok(response)) = tokio::time::timeout_at(deadline, &mut self.rx).await {
            return Settled::Inline(response);
        }
        if self.table.remove(self.id) {
            return Settled::Deferred;
        }
        // An offer removed it first, and sent its response under the lock.
        match self.rx.try_recv() {
            Ok(response) => Settled::Inline(response),
            Err(_) => Settled::Deferred,
        }
    }

    /// Takes the interaction out of the table without answering it (it was not
    /// stored, or was stored before).
    pub(crate) fn withdraw(self) {
        drop(self);
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.table.remove(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[tokio::test]
    async fn an_offer_in_time_is_used() {
        let table = Pending::new(10);
        let mut waiter = table.admit(1).unwrap();
        assert_eq!(table.offer(1, Bytes::from_static(b"{}")), Answer::Used);
        assert_eq!(
            waiter.settle(soon()).await,
            Settled::Inline(Bytes::from_static(b"{}"))
        );
        assert_eq!(table.len(), 0);
    }

    #[tokio::test]
    async fn an_offer_after_the_deadline_is_deferred() {
        let table = Pending::new(10);
        let mut waiter = table.admit(2).unwrap();
        assert_eq!(waiter.settle(Instant::now()).await, Settled::Deferred);
        assert_eq!(table.offer(2, Bytes::new()), Answer::Deferred);
        assert_eq!(
            table.offer(99, Bytes::new()),
            Answer::Deferred,
            "unknown id"
        );
    }

    #[tokio::test]
    async fn a_withdrawn_or_dropped_interaction_is_deferred() {
        let table = Pending::new(10);
        table.admit(3).unwrap().withdraw();
        assert_eq!(table.offer(3, Bytes::new()), Answer::Deferred);
        drop(table.admit(4).unwrap());
        assert_eq!(table.offer(4, Bytes::new()), Answer::Deferred);
        assert_eq!(table.len(), 0);
    }

    #[test]
    fn duplicates_and_overflow_are_refused() {
        let table = Pending::new(2);
        let _a = table.admit(5).unwrap();
        assert_eq!(table.admit(5).err(), Some(Refused::Duplicate));
        let _b = table.admit(6).unwrap();
        assert_eq!(table.admit(7).err(), Some(Refused::Full));
    }

    #[tokio::test]
    async fn a_race_settles_once() {
        // Offers and deadlines racing on many interactions: each is either used and
        // inline, or deferred on both sides, never both.
        let table = Pending::new(10_000);
        let mut tasks = Vec::new();
        for id in 0..2_000u64 {
            let mut waiter = table.admit(id).unwrap();
            let deadline = Instant::now() + Duration::from_micros(id % 50);
            tasks.push(tokio::spawn(async move { waiter.settle(deadline).await }));
        }
        let mut answers = Vec::new();
        for id in 0..2_000u64 {
            if id % 7 == 0 {
                tokio::task::yield_now().await;
            }
            answers.push(table.offer(id, Bytes::from(id.to_string())));
        }
        for (id, task) in tasks.into_iter().enumerate() {
            let settled = task.await.unwrap();
            match answers[id] {
                Answer::Used => assert_eq!(settled, Settled::Inline(Bytes::from(id.to_string()))),
                Answer::Deferred => assert_eq!(settled, Settled::Deferred),
            }
        }
        assert_eq!(table.len(), 0);
    }
}
