//! The count: what the simulator sent against what the streams stored and what the
//! workers answered.
//!
//! At the stream. An event is lost when its `Nats-Msg-Id` was never stored in
//! EVENTS, duplicated when it was stored twice. COMMANDS is a work queue that no
//! second reader may consume, so an interaction counts as stored when the command
//! worker deferred it at the simulator (the only way there is through the stream),
//! and the stream's message count (its last sequence) against the interactions
//! deferred shows duplicates: more messages than distinct interactions.
//!
//! At the handlers. JetStream delivers at least once: a message whose worker died
//! holding it (or whose ack a dying NATS node lost) is delivered again after the ack
//! wait, and its handler may run twice; the applications' writes are idempotent for
//! that reason. So a duplicate at the handlers is a delivery answered twice, or
//! answered only on a redelivery that no nak asked for; each is attributed to the
//! fault whose window (its start, to its end plus the consumer's ack wait and a
//! margin) holds the answer, and one outside every window is unexplained. A message
//! is lost at the handlers when it was stored and, at the end, neither answered nor
//! below its consumer's ack floor.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use crate::audit::{Answer, AnswerKey, Stored};
use crate::traffic::SentRecord;

/// A fault's window, for attributing redeliveries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// The fault, as printed.
    pub label: String,
    /// When it began.
    pub from: Duration,
    /// When the part was back.
    pub to: Duration,
    /// The one consumer it can disturb (a worker's kill), or `None` for all of them
    /// (NATS, PostgreSQL).
    pub affects: Option<String>,
}

/// A message a worker gave up on, as the DEAD_LETTER stream holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The consumer that gave up.
    pub consumer: String,
    /// The original `Nats-Msg-Id`.
    pub msg_id: String,
    /// `terminal`, `undecodable` or `max_deliveries`.
    pub kind: String,
    /// Why, in words.
    pub reason: String,
    /// When (since the soak's epoch).
    pub at: Duration,
}

/// A consumer's state at the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerEnd {
    /// Durable name.
    pub durable: String,
    /// Every stream sequence up to this one is acknowledged.
    pub ack_floor: u64,
    /// Its ack wait.
    pub ack_wait: Duration,
}

/// What the count is made from.
#[derive(Debug)]
pub struct Inputs<'a> {
    /// What the simulator sent.
    pub sent: &'a [SentRecord],
    /// What EVENTS stored.
    pub events: &'a Stored,
    /// COMMANDS' last sequence: messages it ever stored.
    pub commands_stored: u64,
    /// Every answer seen, with when.
    pub answers: &'a HashMap<AnswerKey, Duration>,
    /// `event-worker` and `command-worker` at the end.
    pub consumers: &'a [ConsumerEnd],
    /// Every dead letter.
    pub dead_letters: &'a [DeadLetter],
    /// Interaction callbacks (defers) the simulator received: interaction id, when.
    pub defers: &'a [(u64, Duration)],
    /// The faults.
    pub faults: &'a [Window],
}

/// The handlers' side of one consumer.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HandlerCount {
    /// Durable name.
    pub durable: String,
    /// Messages its stream stored for it.
    pub stored: u64,
    /// Stored and never answered: lost at the handlers.
    pub lost: u64,
    /// Answered with a term (dead-lettered).
    pub terminated: u64,
    /// Answered on a later delivery because a nak asked for it (a retry, not a
    /// duplicate).
    pub retried: u64,
    /// Answered twice, or only on a redelivery no nak asked for: the handler may
    /// have run twice.
    pub duplicated: u64,
    /// Of those, per fault.
    pub explained: BTreeMap<String, u64>,
    /// Of those, outside every fault's window.
    pub unexplained: u64,
    /// Below the ack floor but no answer seen (the audit missed it).
    pub unseen: u64,
}

/// The outcome.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts {
    /// Events (not interactions) sent.
    pub sent_events: u64,
    /// Interactions sent.
    pub sent_interactions: u64,
    /// Sent events never stored (their ids).
    pub lost_events: Vec<String>,
    /// Events stored more than once (id, sequences), sent by the traffic or not.
    pub duplicated_events: Vec<(String, Vec<u64>)>,
    /// Messages in EVENTS the traffic did not send (READY's lazy GUILD_CREATEs).
    pub other_events: u64,
    /// Interactions neither deferred nor dead-lettered (never stored, or stored
    /// and never handled).
    pub lost_interactions: Vec<u64>,
    /// COMMANDS messages beyond one per interaction deferred or dead-lettered.
    pub duplicated_commands: u64,
    /// Interactions deferred more than once (a handler ran twice).
    pub deferred_twice: u64,
    /// Of those, outside every fault's window.
    pub deferred_twice_unexplained: u64,
    /// Per consumer.
    pub handlers: Vec<HandlerCount>,
    /// Dead letters by consumer, kind and the fault that explains them (`None`:
    /// unexplained), with one reason as an example.
    pub dead_letters: BTreeMap<(String, String, Option<String>), (u64, String)>,
}

impl Counts {
    /// Whether nothing was lost or duplicated without an explanation.
    pub fn clean(&self) -> bool {
        self.lost_events.is_empty()
            && self.duplicated_events.is_empty()
            && self.lost_interactions.is_empty()
            && self.duplicated_commands == 0
            && self.deferred_twice_unexplained == 0
            && self
                .dead_letters
                .keys()
                .all(|(_, _, fault)| fault.is_some())
            && self
                .handlers
                .iter()
                .all(|h| h.lost == 0 && h.unexplained == 0)
    }
}

/// Time after a fault's end within which a redelivery is its doing, beyond the
/// consumer's ack wait (a worker's reconnect, the consumer leader's election).
pub const ATTRIBUTION_MARGIN: Duration = Duration::from_secs(15);

/// The fault that explains something seen at `at` on `consumer`: one whose window
/// holds the time its unanswered delivery was made (`at` less the ack wait), else
/// one whose window holds `at` itself.
fn attribute<'a>(
    faults: &'a [Window],
    consumer: &str,
    at: Duration,
    ack_wait: Duration,
) -> Option<&'a str> {
    let relevant = |w: &&Window| w.affects.as_deref().is_none_or(|c| c == consumer);
    let origin = at.saturating_sub(ack_wait);
    faults
        .iter()
        .filter(relevant)
        .rev()
        .find(|w| w.from <= origin && origin <= w.to + ATTRIBUTION_MARGIN)
        .or_else(|| {
            faults
                .iter()
                .filter(relevant)
                .rev()
                .find(|w| w.from <= at && at <= w.to + ack_wait + ATTRIBUTION_MARGIN)
        })
        .map(|w| w.label.as_str())
}

/// Counts.
pub fn count(inputs: &Inputs<'_>) -> Counts {
    let mut counts = Counts::default();
    let wait_of = |durable: &str| {
        inputs
            .consumers
            .iter()
            .find(|c| c.durable == durable)
            .map_or(Duration::ZERO, |c| c.ack_wait)
    };
    for dead in inputs.dead_letters {
        let fault = attribute(
            inputs.faults,
            &dead.consumer,
            dead.at,
            wait_of(&dead.consumer),
        );
        let entry = counts
            .dead_letters
            .entry((
                dead.consumer.clone(),
                dead.kind.clone(),
                fault.map(str::to_owned),
            ))
            .or_insert((0, dead.reason.clone()));
        entry.0 += 1;
    }
    let mut interactions = Vec::new();
    for sent in inputs.sent {
        match sent.interaction {
            Some(id) => interactions.push((id, sent.msg_id.as_str())),
            None => {
                counts.sent_events += 1;
                if !inputs.events.by_id.contains_key(&sent.msg_id) {
                    counts.lost_events.push(sent.msg_id.clone());
                }
            }
        }
    }
    counts.sent_interactions = interactions.len() as u64;
    let sent_ids: HashSet<&str> = inputs.sent.iter().map(|s| s.msg_id.as_str()).collect();
    for (id, seqs) in &inputs.events.by_id {
        if seqs.len() > 1 {
            counts.duplicated_events.push((id.clone(), seqs.clone()));
        }
        if !sent_ids.contains(id.as_str()) {
            counts.other_events += seqs.len() as u64;
        }
    }
    counts.duplicated_events.sort();

    let mut defers: HashMap<u64, Vec<Duration>> = HashMap::new();
    for (id, at) in inputs.defers {
        defers.entry(*id).or_default().push(*at);
    }
    let command_wait = wait_of("command-worker");
    for times in defers.values().filter(|t| t.len() > 1) {
        counts.deferred_twice += 1;
        if attribute(inputs.faults, "command-worker", times[1], command_wait).is_none() {
            counts.deferred_twice_unexplained += 1;
        }
    }
    let dead: HashSet<&str> = inputs
        .dead_letters
        .iter()
        .filter(|d| d.consumer == "command-worker")
        .map(|d| d.msg_id.as_str())
        .collect();
    counts.lost_interactions = interactions
        .iter()
        .filter(|(id, msg_id)| !defers.contains_key(id) && !dead.contains(msg_id))
        .map(|(id, _)| *id)
        .collect();
    let accounted = interactions.len() as u64 - counts.lost_interactions.len() as u64;
    counts.duplicated_commands = inputs.commands_stored.saturating_sub(accounted);

    let events_seqs: Vec<u64> = inputs.events.by_id.values().flatten().copied().collect();
    let commands_seqs: Vec<u64> = (1..=inputs.commands_stored).collect();
    for consumer in inputs.consumers {
        let seqs = match consumer.durable.as_str() {
            "command-worker" => &commands_seqs,
            _ => &events_seqs,
        };
        counts
            .handlers
            .push(handler_count(consumer, seqs, inputs.answers, inputs.faults));
    }
    counts
}

fn handler_count(
    consumer: &ConsumerEnd,
    seqs: &[u64],
    answers: &HashMap<AnswerKey, Duration>,
    faults: &[Window],
) -> HandlerCount {
    let mut by_seq: HashMap<u64, Vec<(u64, Answer, Duration)>> = HashMap::new();
    for (key, at) in answers {
        if key.consumer == consumer.durable {
            by_seq
                .entry(key.stream_seq)
                .or_default()
                .push((key.delivered, key.answer, *at));
        }
    }
    let mut count = HandlerCount {
        durable: consumer.durable.clone(),
        stored: seqs.len() as u64,
        ..HandlerCount::default()
    };
    for seq in seqs {
        let mut seen = by_seq.remove(seq).unwrap_or_default();
        seen.sort();
        let done: Vec<_> = seen.iter().filter(|(_, a, _)| *a != Answer::Nak).collect();
        let Some(&&(delivered, answer, at)) = done.first() else {
            if *seq <= consumer.ack_floor {
                count.unseen += 1;
            } else {
                count.lost += 1;
            }
            continue;
        };
        if answer == Answer::Term {
            count.terminated += 1;
        }
        let nak_before = seen
            .iter()
            .any(|(d, a, _)| *a == Answer::Nak && *d < delivered);
        let twice = done.len() > 1;
        if !twice && delivered > 1 && nak_before {
            count.retried += 1;
        } else if twice || delivered > 1 {
            count.duplicated += 1;
            let at = if twice { done[1].2 } else { at };
            match attribute(faults, &consumer.durable, at, consumer.ack_wait) {
                Some(label) => *count.explained.entry(label.to_owned()).or_default() += 1,
                None => count.unexplained += 1,
            }
        }
    }
    count
}

#[cfg(test)]
#[path = "count_tests.rs"]
mod tests;
