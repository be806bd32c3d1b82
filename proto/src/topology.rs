//! JetStream topology: every stream and durable consumer, declared once.
//!
//! `shardline-jetstream` reconciles these declarations against a server at start-up
//! (create if missing, update if different). Nothing else in the workspace names a
//! stream or a durable consumer.

use std::time::Duration;

/// Where a stream keeps its messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// In memory: fastest, lost if every replica restarts.
    Memory,
    /// On disk.
    File,
}

/// When a stream lets go of messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retention {
    /// Kept until a limit (age, size, count) is reached; many consumers may read.
    Limits,
    /// Removed once acknowledged; one consumer per subject.
    WorkQueue,
}

/// A stream declaration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamSpec {
    /// Stream name.
    pub name: &'static str,
    /// Subjects it captures.
    pub subjects: &'static [&'static str],
    /// Storage backend.
    pub storage: Storage,
    /// Retention policy.
    pub retention: Retention,
    /// Age after which messages are discarded.
    pub max_age: Duration,
}

/// Longest duplicate window any stream uses.
pub const MAX_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

impl StreamSpec {
    /// The de-duplication window: two minutes, or the max age where that is shorter
    /// (JetStream refuses a window longer than the max age).
    pub const fn duplicate_window(&self) -> Duration {
        if self.max_age.as_nanos() < MAX_DUPLICATE_WINDOW.as_nanos() {
            self.max_age
        } else {
            MAX_DUPLICATE_WINDOW
        }
    }
}

/// A durable pull consumer declaration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConsumerSpec {
    /// Durable name.
    pub durable: &'static str,
    /// Stream it reads.
    pub stream: &'static str,
    /// Subjects it receives (a subset of the stream's).
    pub filter_subjects: &'static [&'static str],
    /// Most messages delivered and not yet acknowledged; also the worker's concurrency.
    pub max_ack_pending: i64,
    /// How long the server waits for an ack before redelivering. Handlers that run
    /// longer are kept alive with in-progress acks by the worker runtime.
    pub ack_wait: Duration,
    /// Most deliveries of one message; the last failed one is dead-lettered. Enforced
    /// by the worker runtime, not the server, which would drop the message silently.
    pub max_deliver: i64,
    /// Delay before redelivering a message a handler asked to retry.
    pub retry: RetryPolicy,
}

/// Default [`ConsumerSpec::max_deliver`].
pub const DEFAULT_MAX_DELIVER: i64 = 5;

/// How long a retried message waits before its next delivery: `initial`, doubled on
/// each further delivery, never more than `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay after the first delivery.
    pub initial: Duration,
    /// The cap.
    pub max: Duration,
}

impl RetryPolicy {
    /// The same delay after every delivery.
    pub const fn fixed(delay: Duration) -> Self {
        Self {
            initial: delay,
            max: delay,
        }
    }

    /// `initial`, doubling per delivery up to `max`.
    pub const fn exponential(initial: Duration, max: Duration) -> Self {
        Self { initial, max }
    }

    /// The delay after delivery number `delivered` (1 for the first).
    pub fn delay(&self, delivered: i64) -> Duration {
        let doublings = u32::try_from(delivered.saturating_sub(1).clamp(0, 31)).unwrap_or(31);
        self.initial
            .checked_mul(1u32 << doublings)
            .map_or(self.max, |d| d.min(self.max))
    }
}

/// Five seconds, the runtime's default delay before a retry.
pub const DEFAULT_RETRY: RetryPolicy = RetryPolicy::fixed(Duration::from_secs(5));

/// Interactions. Work queue: each is handled once. Kept for the life of an
/// interaction token (15 minutes): an interaction the HTTP service deferred while no
/// command worker ran is still answerable by the first worker to start within that
/// time; older ones could not be answered any more (the worker dead-letters what the
/// stream still hands it past that age).
pub const COMMANDS: StreamSpec = StreamSpec {
    name: "COMMANDS",
    subjects: &["commands.>"],
    storage: Storage::Memory,
    retention: Retention::WorkQueue,
    max_age: crate::interaction::TOKEN_LIFETIME,
};

/// Every other dispatch.
pub const EVENTS: StreamSpec = StreamSpec {
    name: "EVENTS",
    subjects: &["events.>"],
    storage: Storage::Memory,
    retention: Retention::Limits,
    max_age: Duration::from_secs(5 * 60),
};

/// Shardline's own stored notes (lifecycle). It must not capture
/// `internal.gateway.>`: shard commands are core NATS requests, and a stream that
/// stored them would also answer each request with its PubAck before the gateway's
/// reply (see [`gateway`](crate::gateway)).
pub const INTERNAL: StreamSpec = StreamSpec {
    name: "INTERNAL",
    subjects: &["internal.lifecycle.>"],
    storage: Storage::Memory,
    retention: Retention::Limits,
    max_age: Duration::from_secs(60),
};

/// A week, the age of the on-disk streams.
const WEEK: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// The eligibility pipeline: member checks and role syncs (see
/// [`eligibility`](crate::eligibility)), on disk: a sync waiting out Discord's limits
/// or a database outage must survive a broker restart.
pub const ELIGIBILITY: StreamSpec = StreamSpec {
    name: "ELIGIBILITY",
    subjects: &["eligibility.>"],
    storage: Storage::File,
    retention: Retention::Limits,
    max_age: WEEK,
};

/// Messages a worker gave up on, with the reason (see `headers::DEAD_LETTER_*`), kept
/// on disk for a week so they can be inspected and replayed.
pub const DEAD_LETTER: StreamSpec = StreamSpec {
    name: "DEAD_LETTER",
    subjects: &["deadletter.>"],
    storage: Storage::File,
    retention: Retention::Limits,
    max_age: WEEK,
};

/// Every stream, in reconciliation order.
pub const STREAMS: [StreamSpec; 5] = [COMMANDS, EVENTS, INTERNAL, ELIGIBILITY, DEAD_LETTER];

/// Interactions to the command worker.
///
/// The ack wait is short because an interaction must be deferred within 3 s of
/// Discord sending it: one held by a worker that dies goes to another worker 2 s
/// after its last sign of life, early enough to defer it in time unless its 3 s had
/// nearly run out. A command that runs longer is kept alive by the runtime's
/// in-progress acks (every ack wait / 3).
pub const COMMAND_WORKER: ConsumerSpec = ConsumerSpec {
    durable: "command-worker",
    stream: COMMANDS.name,
    filter_subjects: &["commands.>"],
    max_ack_pending: 50,
    ack_wait: Duration::from_secs(2),
    max_deliver: DEFAULT_MAX_DELIVER,
    // Fixed 5 s: a retried command still answers while the user waits; a growing delay
    // would leave them looking at "thinking…" for minutes.
    retry: DEFAULT_RETRY,
};

/// Events to the event worker.
pub const EVENT_WORKER: ConsumerSpec = ConsumerSpec {
    durable: "event-worker",
    stream: EVENTS.name,
    filter_subjects: &["events.>"],
    max_ack_pending: 100,
    ack_wait: Duration::from_secs(15),
    max_deliver: DEFAULT_MAX_DELIVER,
    // 5, 10, 20, 40 s: the fifth delivery is 75 s after the first, inside the 5 min age.
    retry: RetryPolicy::exponential(Duration::from_secs(5), Duration::from_secs(60)),
};

/// Eligibility checks to the eligibility worker, which evaluates a member against
/// the guild's rules in the database.
///
/// The ack wait is how long the messages of a worker that dies wait for another:
/// a check is a few database round trips, and a longer one is kept alive by the
/// runtime's in-progress acks, so 15 s (not a minute) only shortens the stall.
pub const ELIGIBILITY_WORKER: ConsumerSpec = ConsumerSpec {
    durable: "eligibility-worker",
    stream: ELIGIBILITY.name,
    filter_subjects: &[crate::eligibility::CHECKS],
    max_ack_pending: 200,
    ack_wait: Duration::from_secs(15),
    max_deliver: DEFAULT_MAX_DELIVER,
    retry: RetryPolicy::exponential(Duration::from_secs(5), Duration::from_secs(5 * 60)),
};

/// Role syncs to the sync worker, which applies them through Discord's member-role
/// endpoints (via the REST proxy). Ten at a time: Discord's global limit (50/s) and
/// per-guild role bucket, not concurrency, bound how fast roles change.
///
/// A sync holds its message while the proxy queues its requests (the worker's wait
/// budget, well under the ack wait, and in-progress acks every 10 s); 30 s is how long
/// a dead worker's syncs wait for another, where 5 minutes left a restarted worker
/// idle that long.
pub const SYNC_WORKER: ConsumerSpec = ConsumerSpec {
    durable: "sync-worker",
    stream: ELIGIBILITY.name,
    filter_subjects: &[crate::eligibility::SYNCS],
    max_ack_pending: 10,
    ack_wait: Duration::from_secs(30),
    max_deliver: DEFAULT_MAX_DELIVER,
    retry: RetryPolicy::exponential(Duration::from_secs(5), Duration::from_secs(5 * 60)),
};

/// Every durable consumer.
pub const CONSUMERS: [ConsumerSpec; 4] = [
    COMMAND_WORKER,
    EVENT_WORKER,
    ELIGIBILITY_WORKER,
    SYNC_WORKER,
];

/// Looks a consumer up by durable name.
pub fn consumer(durable: &str) -> Option<&'static ConsumerSpec> {
    CONSUMERS.iter().find(|c| c.durable == durable)
}

/// Looks a stream up by name.
pub fn stream(name: &str) -> Option<&'static StreamSpec> {
    STREAMS.iter().find(|s| s.name == name)
}

/// The stream whose subjects capture `subject`, if any.
pub fn stream_for_subject(subject: &str) -> Option<&'static StreamSpec> {
    STREAMS.iter().find(|s| {
        s.subjects
            .iter()
            .any(|pattern| subject_matches(pattern, subject))
    })
}

/// NATS subject matching of `subject` against `pattern` (`*` one token, `>` the rest).
pub fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut tokens = subject.split('.');
    for want in pattern.split('.') {
        match (want, tokens.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (want, Some(got)) if want == got => {}
            _ => return false,
        }
    }
    tokens.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_window_never_exceeds_max_age() {
        assert_eq!(COMMANDS.duplicate_window(), Duration::from_secs(120));
        assert_eq!(EVENTS.duplicate_window(), Duration::from_secs(120));
        assert_eq!(INTERNAL.duplicate_window(), Duration::from_secs(60));
        assert_eq!(ELIGIBILITY.duplicate_window(), Duration::from_secs(120));
        assert_eq!(DEAD_LETTER.duplicate_window(), Duration::from_secs(120));
    }

    #[test]
    fn retry_delays_double_up_to_the_cap() {
        let policy = RetryPolicy::exponential(Duration::from_secs(5), Duration::from_secs(60));
        let delays: Vec<u64> = (1..=6).map(|n| policy.delay(n).as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 60, 60]);
        assert_eq!(policy.delay(0), Duration::from_secs(5));
        assert_eq!(policy.delay(i64::MAX), Duration::from_secs(60));
        assert_eq!(DEFAULT_RETRY.delay(4), Duration::from_secs(5));
    }

    #[test]
    fn retries_of_every_consumer_fit_in_its_stream_age() {
        for consumer in CONSUMERS {
            let stream = stream(consumer.stream).expect("declared stream");
            let waited: Duration = (1..consumer.max_deliver)
                .map(|n| consumer.retry.delay(n))
                .sum();
            assert!(
                waited < stream.max_age,
                "{} retries outlive {}",
                consumer.durable,
                stream.name
            );
        }
    }

    #[test]
    fn every_consumer_reads_a_declared_stream_and_subset() {
        for consumer in CONSUMERS {
            let stream = stream(consumer.stream).expect("declared stream");
            for filter in consumer.filter_subjects {
                assert!(
                    stream.subjects.iter().any(|s| subject_matches(s, filter)),
                    "{} filter {filter} outside {}",
                    consumer.durable,
                    stream.name
                );
            }
        }
    }

    #[test]
    fn consumers_of_one_stream_never_overlap() {
        for a in CONSUMERS {
            for b in CONSUMERS
                .iter()
                .filter(|b| b.stream == a.stream && b.durable != a.durable)
            {
                for fa in a.filter_subjects {
                    for fb in b.filter_subjects {
                        assert!(
                            !subject_matches(fa, fb) && !subject_matches(fb, fa),
                            "{} and {} both receive {fa} / {fb}",
                            a.durable,
                            b.durable
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn commands_outlive_an_interaction_token() {
        assert_eq!(COMMANDS.max_age, crate::interaction::TOKEN_LIFETIME);
        assert_eq!(COMMANDS.max_age, Duration::from_secs(15 * 60));
    }

    #[test]
    fn no_stream_stores_interaction_replies() {
        // Core NATS requests: a stream capturing them would answer each with a PubAck.
        let subject = crate::subject::interaction_reply("a1b2", 1_234_567_890);
        assert_eq!(stream_for_subject(&subject), None);
        assert!(subject_matches(
            crate::subject::INTERACTION_REPLIES,
            &subject
        ));
        assert!(subject_matches(
            &crate::subject::interaction_replies_of("a1b2"),
            &subject
        ));
        assert!(!subject_matches(
            &crate::subject::interaction_replies_of("other"),
            &subject
        ));
    }

    #[test]
    fn subjects_find_their_stream() {
        assert_eq!(stream_for_subject("commands.interaction"), Some(&COMMANDS));
        assert_eq!(stream_for_subject("events.guild.join"), Some(&EVENTS));
        assert_eq!(stream_for_subject("events"), None);
        assert_eq!(stream_for_subject("other.x"), None);
        assert!(subject_matches("a.*.c", "a.b.c"));
        assert!(!subject_matches("a.*", "a.b.c"));
    }
}
