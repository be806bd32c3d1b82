//! What the soak watches while it runs, without touching what it watches:
//!
//! - **what EVENTS stored**: an ordered, headers-only consumer reads the stream from
//!   its first message as it fills, keeping each message's `Nats-Msg-Id` and stream
//!   sequence (the stream keeps messages 5 minutes; a 10 minute soak needs them
//!   read as they come). COMMANDS is a work queue: JetStream allows no second
//!   consumer on it, and a mirror would consume it, so its count comes from its
//!   sequence and the handlers' records (see `count`).
//! - **what the workers answered**: every ack, nak and term a worker sends is a
//!   core NATS publish on the delivery's reply subject, `$JS.ACK.<stream>.
//!   <consumer>.<delivered>.<stream seq>...`; a subscriber on each node sees them
//!   (one per node, so a killed node does not blind the audit), the real workers'
//!   own answers, with the delivery count that tells a redelivery.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::DeliverPolicy, consumer::pull::OrderedConfig};
use futures_util::StreamExt;
use shardline_proto::headers;
use shardline_proto::topology::EVENTS;
use tokio::task::JoinHandle;

/// A worker's answer to one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Answer {
    /// Handled (`ack`).
    Ack,
    /// Handed back to be retried (`nak`).
    Nak,
    /// Given up on, after dead-lettering (`term`).
    Term,
}

/// One answer, keyed by the delivery it answers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AnswerKey {
    /// The durable consumer.
    pub consumer: String,
    /// The message's stream sequence.
    pub stream_seq: u64,
    /// Which delivery of it (1 for the first).
    pub delivered: u64,
    /// The answer.
    pub answer: Answer,
}

/// Reads an ack subject and payload; `None` for anything else (in-progress acks,
/// other subjects).
pub fn parse_answer(subject: &str, payload: &[u8]) -> Option<AnswerKey> {
    let rest = subject.strip_prefix("$JS.ACK.")?;
    let tokens: Vec<&str> = rest.split('.').collect();
    // v1: stream.consumer.delivered.sseq.cseq.time.pending; v2 adds the domain and
    // account hash in front (and may add a token at the end).
    let at = match tokens.len() {
        7 => 0,
        n if n >= 9 => 2,
        _ => return None,
    };
    let answer = match payload {
        b"" | b"+ACK" => Answer::Ack,
        p if p.starts_with(b"-NAK") => Answer::Nak,
        p if p.starts_with(b"+TERM") => Answer::Term,
        _ => return None,
    };
    Some(AnswerKey {
        consumer: tokens[at + 1].to_owned(),
        delivered: tokens[at + 2].parse().ok()?,
        stream_seq: tokens[at + 3].parse().ok()?,
        answer,
    })
}

/// What EVENTS stored: stream sequences by `Nats-Msg-Id`.
#[derive(Debug, Default)]
pub struct Stored {
    /// Every sequence a message id was stored at (two: a duplicate).
    pub by_id: HashMap<String, Vec<u64>>,
    /// Messages read.
    pub count: u64,
    /// Highest sequence read.
    pub last_seq: u64,
}

/// The running audit; its tasks end when it is dropped.
#[derive(Debug)]
pub struct Audit {
    stored: Arc<Mutex<Stored>>,
    answers: Arc<Mutex<HashMap<AnswerKey, Duration>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Audit {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Audit {
    /// Subscribes to the workers' answers on every node in `node_urls` as
    /// `operator`. Times are measured from `started`.
    ///
    /// # Errors
    ///
    /// A node refuses the connection or the subscription.
    pub async fn start(node_urls: &[String], started: Instant) -> anyhow::Result<Self> {
        let mut audit = Self {
            stored: Arc::default(),
            answers: Arc::default(),
            tasks: Vec::new(),
        };
        for url in node_urls {
            let client = operator(url).await?;
            let mut subscription = client.subscribe("$JS.ACK.>").await?;
            client.flush().await?;
            let answers = Arc::clone(&audit.answers);
            audit.tasks.push(tokio::spawn(async move {
                let _client = client;
                while let Some(message) = subscription.next().await {
                    if let Some(key) = parse_answer(&message.subject, &message.payload) {
                        let at = started.elapsed();
                        lock(&answers).entry(key).or_insert(at);
                    }
                }
            }));
        }
        Ok(audit)
    }

    /// Starts reading EVENTS from its first message, through `client`.
    pub fn read_events(&mut self, client: async_nats::Client) {
        let stored = Arc::clone(&self.stored);
        self.tasks.push(tokio::spawn(read_events(client, stored)));
    }

    /// Keeps in `ids` only those not yet read from EVENTS.
    pub fn retain_missing(&self, ids: &mut Vec<&str>) {
        let stored = lock(&self.stored);
        ids.retain(|id| !stored.by_id.contains_key(*id));
    }

    /// Takes what EVENTS stored and every answer seen, with when it was first seen.
    pub fn take(&self) -> (Stored, HashMap<AnswerKey, Duration>) {
        (
            std::mem::take(&mut *lock(&self.stored)),
            std::mem::take(&mut *lock(&self.answers)),
        )
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Connects to `url` (one node or several, comma separated) as the `operator` user.
///
/// # Errors
///
/// The server refuses.
pub async fn operator(url: &str) -> anyhow::Result<async_nats::Client> {
    let urls: Vec<String> = url.split(',').map(str::to_owned).collect();
    Ok(async_nats::ConnectOptions::with_user_and_password(
        "operator".to_owned(),
        shardline_testkit::password("operator"),
    )
    .connect(urls)
    .await?)
}

async fn read_events(client: async_nats::Client, stored: Arc<Mutex<Stored>>) {
    let js = jetstream::new(client);
    let mut next = 1;
    loop {
        let messages = match js.get_stream(EVENTS.name).await {
            Ok(stream) => match stream
                .create_consumer(OrderedConfig {
                    headers_only: true,
                    deliver_policy: DeliverPolicy::ByStartSequence {
                        start_sequence: next,
                    },
                    ..OrderedConfig::default()
                })
                .await
            {
                Ok(consumer) => consumer.messages().await.map_err(|e| e.to_string()),
                Err(error) => Err(error.to_string()),
            },
            Err(error) => Err(error.to_string()),
        };
        let mut messages = match messages {
            Ok(messages) => messages,
            Err(error) => {
                // The gateway has not created the stream yet, or the cluster is
                // electing a leader: the schedule's timing, not a condition to await.
                tracing::debug!(%error, "EVENTS reader: not readable yet; again");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        while let Some(message) = messages.next().await {
            let message = match message {
                Ok(message) => message,
                Err(error) => {
                    tracing::debug!(%error, "EVENTS reader: consumer lost; resuming from {next}");
                    break;
                }
            };
            let Ok(info) = message.info() else { continue };
            let seq = info.stream_sequence;
            let id = message
                .headers
                .as_ref()
                .and_then(|h| h.get(headers::MSG_ID))
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default();
            let mut stored = lock(&stored);
            stored.by_id.entry(id).or_default().push(seq);
            stored.count += 1;
            stored.last_seq = stored.last_seq.max(seq);
            next = seq + 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_from_both_reply_subject_formats() {
        let v1 = "$JS.ACK.EVENTS.event-worker.2.4711.4700.1700000000000000000.3";
        assert_eq!(
            parse_answer(v1, b""),
            Some(AnswerKey {
                consumer: "event-worker".to_owned(),
                stream_seq: 4711,
                delivered: 2,
                answer: Answer::Ack,
            })
        );
        let v2 = "$JS.ACK._.ACCHASH.COMMANDS.command-worker.1.9.9.1700000000000000000.0.tok";
        let nak = parse_answer(v2, br#"-NAK {"delay":5000000000}"#).unwrap();
        assert_eq!(
            (nak.consumer.as_str(), nak.stream_seq, nak.delivered),
            ("command-worker", 9, 1)
        );
        assert_eq!(nak.answer, Answer::Nak);
        assert_eq!(
            parse_answer(v1, b"+TERM undecodable").unwrap().answer,
            Answer::Term
        );
        assert_eq!(parse_answer(v1, b"+ACK").unwrap().answer, Answer::Ack);
        assert_eq!(parse_answer(v1, b"+WPI"), None);
        assert_eq!(parse_answer("events.message.create", b""), None);
        assert_eq!(parse_answer("$JS.ACK.EVENTS.x.y", b""), None);
    }
}
