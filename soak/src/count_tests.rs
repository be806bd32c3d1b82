use super::*;

fn sent(id: &str, interaction: Option<u64>) -> SentRecord {
    SentRecord {
        msg_id: id.to_owned(),
        interaction,
    }
}

fn answer(consumer: &str, seq: u64, delivered: u64, answer: Answer) -> AnswerKey {
    AnswerKey {
        consumer: consumer.to_owned(),
        stream_seq: seq,
        delivered,
        answer,
    }
}

fn stored(ids: &[(&str, &[u64])]) -> Stored {
    let mut stored = Stored::default();
    for (id, seqs) in ids {
        stored.by_id.insert((*id).to_owned(), seqs.to_vec());
        stored.count += seqs.len() as u64;
    }
    stored
}

fn consumers(event_floor: u64, command_floor: u64) -> Vec<ConsumerEnd> {
    vec![
        ConsumerEnd {
            durable: "event-worker".to_owned(),
            ack_floor: event_floor,
            ack_wait: Duration::from_secs(15),
        },
        ConsumerEnd {
            durable: "command-worker".to_owned(),
            ack_floor: command_floor,
            ack_wait: Duration::from_secs(2),
        },
    ]
}

const S: fn(u64) -> Duration = Duration::from_secs;

#[test]
fn a_clean_run_counts_nothing_lost_or_duplicated() {
    let sent = [sent("a:1", None), sent("a:2", Some(77)), sent("a:3", None)];
    let events = stored(&[("a:1", &[1]), ("a:3", &[2]), ("b:1", &[3])]);
    let answers: HashMap<_, _> = [
        (answer("event-worker", 1, 1, Answer::Ack), S(1)),
        (answer("event-worker", 2, 1, Answer::Ack), S(1)),
        (answer("event-worker", 3, 1, Answer::Ack), S(1)),
        (answer("command-worker", 1, 1, Answer::Ack), S(1)),
    ]
    .into();
    let counts = count(&Inputs {
        sent: &sent,
        events: &events,
        commands_stored: 1,
        answers: &answers,
        consumers: &consumers(3, 1),
        dead_letters: &[],
        defers: &[(77, S(1))],
        faults: &[],
    });
    assert!(counts.clean(), "{counts:?}");
    assert_eq!((counts.sent_events, counts.sent_interactions), (2, 1));
    assert_eq!(counts.other_events, 1);
    assert_eq!(counts.handlers[0].stored, 3);
}

#[test]
fn lost_and_duplicated_at_the_stream_are_named() {
    let sent = [sent("a:1", None), sent("a:2", None), sent("a:3", Some(5))];
    let events = stored(&[("a:1", &[1, 2])]);
    let counts = count(&Inputs {
        sent: &sent,
        events: &events,
        commands_stored: 2,
        answers: &HashMap::new(),
        consumers: &consumers(2, 2),
        dead_letters: &[],
        defers: &[],
        faults: &[],
    });
    assert_eq!(counts.lost_events, ["a:2"]);
    assert_eq!(counts.duplicated_events, [("a:1".to_owned(), vec![1, 2])]);
    assert_eq!(counts.lost_interactions, [5]);
    assert_eq!(counts.duplicated_commands, 2);
    assert_eq!(counts.handlers[0].unseen, 2);
    assert!(!counts.clean());
}

#[test]
fn redeliveries_are_attributed_to_faults_and_retries_are_not_duplicates() {
    let sent: Vec<_> = (1..=5).map(|i| sent(&format!("a:{i}"), None)).collect();
    let events = stored(&[
        ("a:1", &[1]),
        ("a:2", &[2]),
        ("a:3", &[3]),
        ("a:4", &[4]),
        ("a:5", &[5]),
    ]);
    let kill = Window {
        label: "event-worker-0 SIGKILL".to_owned(),
        from: S(10),
        to: S(12),
        affects: Some("event-worker".to_owned()),
    };
    let answers: HashMap<_, _> = [
        // Redelivered after the kill: within 12 + 15 + margin.
        (answer("event-worker", 1, 2, Answer::Ack), S(27)),
        // Answered twice, long after any fault: unexplained.
        (answer("event-worker", 2, 1, Answer::Ack), S(100)),
        (answer("event-worker", 2, 2, Answer::Ack), S(101)),
        // Nak, then handled on the retry: not a duplicate.
        (answer("event-worker", 3, 1, Answer::Nak), S(50)),
        (answer("event-worker", 3, 2, Answer::Ack), S(55)),
        // Dead-lettered.
        (answer("event-worker", 4, 1, Answer::Term), S(60)),
        // 5: never answered and above the floor: lost.
    ]
    .into();
    let counts = count(&Inputs {
        sent: &sent,
        events: &events,
        commands_stored: 0,
        answers: &answers,
        consumers: &consumers(4, 0),
        dead_letters: &[DeadLetter {
            consumer: "event-worker".to_owned(),
            msg_id: "a:4".to_owned(),
            kind: "terminal".to_owned(),
            reason: "handler gave up".to_owned(),
            at: S(60),
        }],
        defers: &[],
        faults: &[kill],
    });
    let h = &counts.handlers[0];
    assert_eq!(h.duplicated, 2);
    assert_eq!(h.explained.get("event-worker-0 SIGKILL"), Some(&1));
    assert_eq!(h.unexplained, 1);
    assert_eq!(h.retried, 1);
    assert_eq!(h.terminated, 1);
    assert_eq!(h.lost, 1);
    assert!(!counts.clean());
}

#[test]
fn an_interaction_deferred_twice_is_a_duplicate_unless_a_fault_explains_it() {
    let sent = [sent("a:1", Some(1)), sent("a:2", Some(2))];
    let events = Stored::default();
    let kill = Window {
        label: "command-worker-1 SIGKILL".to_owned(),
        from: S(10),
        to: S(11),
        affects: Some("command-worker".to_owned()),
    };
    let defers = [(1, S(9)), (1, S(12)), (2, S(200)), (2, S(201))];
    let counts = count(&Inputs {
        sent: &sent,
        events: &events,
        commands_stored: 2,
        answers: &HashMap::new(),
        consumers: &consumers(0, 2),
        dead_letters: &[],
        defers: &defers,
        faults: &[kill],
    });
    assert_eq!(counts.deferred_twice, 2);
    assert_eq!(counts.deferred_twice_unexplained, 1);
    assert_eq!(counts.duplicated_commands, 0);
    assert!(!counts.clean());
}

#[test]
fn a_dead_lettered_interaction_is_not_lost_and_only_a_fault_that_touches_its_consumer_explains_it()
{
    let sent = [sent("a:1", Some(1)), sent("a:2", Some(2))];
    let faults = [
        Window {
            label: "event-worker-0 SIGKILL".to_owned(),
            from: S(10),
            to: S(11),
            affects: Some("event-worker".to_owned()),
        },
        Window {
            label: "nats-1 SIGKILL, store kept".to_owned(),
            from: S(100),
            to: S(108),
            affects: None,
        },
    ];
    let dead = |msg_id: &str, at| DeadLetter {
        consumer: "command-worker".to_owned(),
        msg_id: msg_id.to_owned(),
        kind: "terminal".to_owned(),
        reason: "defer failed after Discord's 3 s deadline".to_owned(),
        at,
    };
    let counts = count(&Inputs {
        sent: &sent,
        events: &Stored::default(),
        commands_stored: 2,
        answers: &HashMap::new(),
        consumers: &consumers(0, 2),
        dead_letters: &[dead("a:1", S(12)), dead("a:2", S(105))],
        defers: &[],
        faults: &faults,
    });
    assert!(counts.lost_interactions.is_empty());
    assert_eq!(counts.duplicated_commands, 0);
    let by_fault: Vec<_> = counts
        .dead_letters
        .iter()
        .map(|((_, _, fault), (n, _))| (fault.clone(), *n))
        .collect();
    assert_eq!(
        by_fault,
        [
            (None, 1),
            (Some("nats-1 SIGKILL, store kept".to_owned()), 1)
        ]
    );
    assert!(!counts.clean());
}
