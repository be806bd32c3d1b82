//! Per shard: the sequence up to which JetStream has acknowledged every dispatch.
//!
//! twilight's `Session::sequence` advances when a frame is *received*. Resuming from
//! it after a crash would skip every frame received but not yet stored. A shard's
//! [`Progress`] instead tracks the *ack floor*: the highest sequence `s` such that
//! every dispatch of the session up to `s` is acknowledged by the stream (or was
//! never to be published: READY, RESUMED, a broken frame, an event given up on with
//! a counted reason). That floor is what the session store saves, so a resume
//! replays exactly what might be missing and `Nats-Msg-Id` drops the overlap.
//!
//! A [`Receipt`] lets the floor pass its sequence only when completed. One dropped
//! without completing (a publish abandoned at shutdown while the broker is away, a
//! task that panicked) holds the floor below it for the rest of the session, so the
//! next start resumes before it and Discord replays it: an accident costs a replay,
//! never an event.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// What a stored session needs: id, ack floor, resume URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Discord session id.
    pub session_id: String,
    /// Every dispatch up to this sequence is stored (or was never to be).
    pub sequence: u64,
    /// Where to resume, as READY said.
    pub resume_url: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    /// Bumped whenever the session changes, so late acks of an old one are ignored.
    generation: u64,
    session_id: Option<String>,
    resume_url: Option<String>,
    /// Highest sequence received in this session.
    received: u64,
    /// Sequences handed to the publisher and not yet acked (a replay may repeat one).
    pending: BTreeMap<u64, u32>,
    /// Whether the snapshot changed since [`Progress::take_changed`] last looked.
    changed: bool,
}

impl State {
    fn floor(&self) -> u64 {
        match self.pending.first_key_value() {
            Some((&first, _)) => first.saturating_sub(1).min(self.received),
            None => self.received,
        }
    }
}

/// One shard's ack floor. Cheap to clone; the clones share state.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    state: Arc<Mutex<State>>,
}

impl Progress {
    /// Progress that starts in `session_id` at `sequence` (a stored session about to
    /// be resumed), or empty.
    pub fn new(start: Option<&Snapshot>) -> Self {
        let progress = Self::default();
        if let Some(start) = start {
            let mut st = progress.lock();
            st.session_id = Some(start.session_id.clone());
            st.resume_url = start.resume_url.clone();
            st.received = start.sequence;
        }
        progress
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records what the shard knows after a frame: its session (`None` once Discord
    /// invalidated it), the session's received sequence and resume URL.
    pub fn observe(&self, session: Option<(&str, u64)>, resume_url: Option<&str>) {
        let mut st = self.lock();
        let Some((id, sequence)) = session else {
            if st.session_id.take().is_some() {
                st.generation += 1;
                st.pending.clear();
                st.received = 0;
                st.changed = true;
            }
            return;
        };
        if st.session_id.as_deref() != Some(id) {
            st.generation += 1;
            st.session_id = Some(id.to_owned());
            st.pending.clear();
            st.received = 0;
            st.changed = true;
        }
        if st.resume_url.as_deref() != resume_url && resume_url.is_some() {
            st.resume_url = resume_url.map(str::to_owned);
            st.changed = true;
        }
        if sequence > st.received {
            st.received = sequence;
            st.changed = true;
        }
    }

    /// Marks dispatch `sequence` of session `session_id` as handed to the publisher;
    /// the floor stays below it until the returned [`Receipt`] is completed.
    pub fn begin(&self, session_id: &str, sequence: u64) -> Receipt {
        self.observe(Some((session_id, sequence.saturating_sub(1))), None);
        let mut st = self.lock();
        *st.pending.entry(sequence).or_default() += 1;
        if sequence > st.received {
            st.received = sequence;
        }
        Receipt {
            progress: self.clone(),
            generation: st.generation,
            sequence,
        }
    }

    /// The session and its ack floor, if the shard has a session.
    pub fn snapshot(&self) -> Option<Snapshot> {
        let st = self.lock();
        Some(Snapshot {
            session_id: st.session_id.clone()?,
            sequence: st.floor(),
            resume_url: st.resume_url.clone(),
        })
    }

    /// The snapshot (or `None` for "no session") if anything changed since the last
    /// call; `Err(())` if nothing did.
    #[allow(clippy::result_unit_err)]
    pub fn take_changed(&self) -> Result<Option<Snapshot>, ()> {
        let changed = std::mem::take(&mut self.lock().changed);
        if changed {
            Ok(self.snapshot())
        } else {
            Err(())
        }
    }

    /// Whether every dispatch handed to the publisher is acknowledged: the floor is
    /// the last sequence received, so a resume from it replays nothing stored.
    pub fn settled(&self) -> bool {
        self.lock().pending.is_empty()
    }

    /// Marks the snapshot as changed again (its write failed).
    pub fn mark_changed(&self) {
        self.lock().changed = true;
    }

    fn complete(&self, generation: u64, sequence: u64) {
        let mut st = self.lock();
        if st.generation != generation {
            return;
        }
        if let Some(count) = st.pending.get_mut(&sequence) {
            *count -= 1;
            if *count == 0 {
                st.pending.remove(&sequence);
            }
            st.changed = true;
        }
    }
}

/// A dispatch handed to the publisher. [`complete`](Self::complete) it once it is
/// stored (or given up on with a counted reason); dropping it without that keeps the
/// floor below its sequence, so a later resume replays it.
#[derive(Debug)]
#[must_use = "an uncompleted receipt holds the session's floor below its sequence"]
pub struct Receipt {
    progress: Progress,
    generation: u64,
    sequence: u64,
}

impl Receipt {
    /// The dispatch is stored, or given up on: the floor may pass its sequence.
    pub fn complete(self) {
        self.progress.complete(self.generation, self.sequence);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn floor(p: &Progress) -> u64 {
        p.snapshot().unwrap().sequence
    }

    #[test]
    fn floor_waits_for_the_oldest_unacked() {
        let p = Progress::default();
        p.observe(Some(("s", 1)), Some("ws://r"));
        let a = p.begin("s", 2);
        let b = p.begin("s", 3);
        p.observe(Some(("s", 4)), None); // a frame that is not published
        assert_eq!(floor(&p), 1);
        b.complete();
        assert_eq!(floor(&p), 1);
        a.complete();
        assert_eq!(floor(&p), 4);
        assert_eq!(p.snapshot().unwrap().resume_url.as_deref(), Some("ws://r"));
    }

    #[test]
    fn a_new_session_forgets_the_old_one() {
        let p = Progress::default();
        let old = p.begin("old", 5);
        p.observe(Some(("new", 1)), None);
        old.complete();
        let snap = p.snapshot().unwrap();
        assert_eq!((snap.session_id.as_str(), snap.sequence), ("new", 1));
        p.observe(None, None);
        assert_eq!(p.snapshot(), None);
        assert_eq!(p.take_changed(), Ok(None));
        assert_eq!(p.take_changed(), Err(()));
    }

    #[test]
    fn a_replayed_sequence_counts_twice() {
        let p = Progress::new(Some(&Snapshot {
            session_id: "s".into(),
            sequence: 10,
            resume_url: None,
        }));
        let first = p.begin("s", 11);
        let replay = p.begin("s", 11);
        first.complete();
        assert_eq!(floor(&p), 10);
        replay.complete();
        assert_eq!(floor(&p), 11);
    }

    #[test]
    fn settled_means_nothing_awaits_an_ack() {
        let p = Progress::default();
        p.observe(Some(("s", 1)), None);
        assert!(p.settled());
        let r = p.begin("s", 2);
        assert!(!p.settled());
        r.complete();
        assert!(p.settled());
    }

    #[test]
    fn an_abandoned_receipt_holds_the_floor_below_it() {
        let p = Progress::default();
        p.observe(Some(("s", 1)), None);
        let abandoned = p.begin("s", 2);
        let stored = p.begin("s", 3);
        drop(abandoned);
        stored.complete();
        p.observe(Some(("s", 5)), None);
        assert_eq!(floor(&p), 1, "a resume replays from the abandoned dispatch");
    }
}
