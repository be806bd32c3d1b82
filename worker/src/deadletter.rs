//! Dead letters: messages a worker gave up on, kept in the `DEAD_LETTER` stream with
//! the reason, and put back on their original subject by [`replay`].

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer};
use futures_util::StreamExt;
use shardline_proto::topology::DEAD_LETTER;
use shardline_proto::{headers, subject};

use crate::Error;

/// Why a message was dead-lettered; the `reason` label of
/// `nats_consumer_dead_letters_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeadKind {
    /// The handler returned `Outcome::Terminal`.
    Terminal,
    /// The payload did not deserialize into the handler's type.
    Undecodable,
    /// The last allowed delivery failed (retry, panic, or a worker that died).
    MaxDeliveries,
}

impl DeadKind {
    /// Every kind.
    pub const ALL: [Self; 3] = [Self::Terminal, Self::Undecodable, Self::MaxDeliveries];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Terminal => "terminal",
            Self::Undecodable => "undecodable",
            Self::MaxDeliveries => "max_deliveries",
        }
    }
}

/// Longest reason kept in a header; the rest is cut.
const MAX_REASON: usize = 1024;

/// The dead letter of `message`: its payload and headers, plus who gave up, why and when.
/// Its `Nats-Msg-Id` is derived from the source stream and sequence, so a second
/// attempt (a retried publish, another worker process) is dropped as a duplicate.
pub(crate) fn letter(
    message: &jetstream::Message,
    original: &HeaderMap,
    consumer: &str,
    kind: DeadKind,
    reason: &str,
    delivered: i64,
) -> (String, HeaderMap) {
    let (stream, sequence) = message
        .info()
        .map(|i| (i.stream.to_owned(), i.stream_sequence))
        .unwrap_or_default();
    let mut out = HeaderMap::new();
    for (name, values) in original.iter() {
        let name: &str = name.as_ref();
        for value in values {
            if name == headers::MSG_ID {
                out.insert(headers::DEAD_LETTER_MSG_ID, value.as_str());
            } else {
                out.append(name, value.as_str());
            }
        }
    }
    let mut reason: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if reason.len() > MAX_REASON {
        let cut = (0..=MAX_REASON)
            .rev()
            .find(|&i| reason.is_char_boundary(i))
            .unwrap_or(0);
        reason.truncate(cut);
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    out.insert(
        headers::MSG_ID,
        format!("dl:{consumer}:{stream}:{sequence}").as_str(),
    );
    out.insert(headers::DEAD_LETTER_CONSUMER, consumer);
    out.insert(headers::DEAD_LETTER_KIND, kind.as_str());
    out.insert(headers::DEAD_LETTER_REASON, reason.as_str());
    out.insert(
        headers::DEAD_LETTER_DELIVERED,
        delivered.to_string().as_str(),
    );
    out.insert(headers::DEAD_LETTER_AT, now.to_string().as_str());
    out.insert(headers::DEAD_LETTER_SUBJECT, message.subject.as_str());
    out.insert(
        headers::DEAD_LETTER_SOURCE,
        format!("{stream}:{sequence}").as_str(),
    );
    (subject::dead_letter(consumer, &message.subject), out)
}

/// A dead letter as stored.
#[derive(Clone, Debug)]
pub struct DeadLetter {
    /// Its sequence in `DEAD_LETTER`.
    pub sequence: u64,
    /// The subject it was first published on, where replay puts it back.
    pub original_subject: String,
    /// The consumer that gave up.
    pub consumer: String,
    /// Why, as a kind (`terminal`, `undecodable`, `max_deliveries`).
    pub kind: String,
    /// Why, in words.
    pub reason: String,
    /// Deliveries before it was given up.
    pub delivered: i64,
    /// Headers as first published (the dead-letter headers removed).
    pub headers: HeaderMap,
    /// The payload, unchanged.
    pub payload: bytes::Bytes,
}

fn err(what: &str, e: impl fmt::Display) -> Error {
    Error::new(format!("{what}: {e}"))
}

/// Reads the dead letters of `consumer` (every consumer when `None`), oldest first,
/// at most `limit`.
///
/// # Errors
///
/// Fails if the `DEAD_LETTER` stream cannot be read.
pub async fn list(
    js: &jetstream::Context,
    consumer: Option<&str>,
    limit: usize,
) -> Result<Vec<DeadLetter>, Error> {
    let filter = consumer.map_or_else(|| "deadletter.>".to_owned(), subject::dead_letters_of);
    let stream = js
        .get_stream(DEAD_LETTER.name)
        .await
        .map_err(|e| err("DEAD_LETTER stream", e))?;
    let reader = stream
        .create_consumer(consumer::pull::Config {
            filter_subject: filter,
            ack_policy: consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(30),
            ..Default::default()
        })
        .await
        .map_err(|e| err("dead-letter reader", e))?;
    let mut remaining = usize::try_from(reader.cached_info().num_pending).unwrap_or(usize::MAX);
    let mut out = Vec::new();
    while remaining > 0 && out.len() < limit {
        let want = remaining.min(limit - out.len()).min(256);
        let mut batch = reader
            .batch()
            .max_messages(want)
            .expires(Duration::from_secs(2))
            .messages()
            .await
            .map_err(|e| err("reading dead letters", e))?;
        let before = out.len();
        while let Some(message) = batch.next().await {
            let message = message.map_err(|e| err("reading dead letters", e))?;
            let info = message.info().map_err(|e| err("dead letter info", e))?;
            remaining = usize::try_from(info.pending).unwrap_or(0);
            out.push(parse(&message, info.stream_sequence));
        }
        if out.len() == before {
            break;
        }
    }
    Ok(out)
}

fn parse(message: &jetstream::Message, sequence: u64) -> DeadLetter {
    let all = message.headers.clone().unwrap_or_default();
    let get = |name: &str| {
        all.get(name)
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default()
    };
    let mut original = HeaderMap::new();
    for (name, values) in all.iter() {
        let name: &str = name.as_ref();
        if name == headers::MSG_ID || headers::DEAD_LETTER_HEADERS.contains(&name) {
            continue;
        }
        for value in values {
            original.append(name, value.as_str());
        }
    }
    DeadLetter {
        sequence,
        original_subject: get(headers::DEAD_LETTER_SUBJECT),
        consumer: get(headers::DEAD_LETTER_CONSUMER),
        kind: get(headers::DEAD_LETTER_KIND),
        reason: get(headers::DEAD_LETTER_REASON),
        delivered: get(headers::DEAD_LETTER_DELIVERED).parse().unwrap_or(0),
        headers: original,
        payload: message.payload.clone(),
    }
}

/// Puts dead letters back on their original subject, oldest first, and removes each
/// from `DEAD_LETTER` once its stream has acknowledged it. Returns how many.
///
/// The replayed message gets `Nats-Msg-Id: replay:<dead-letter sequence>`, so two
/// replays racing each other publish it once, and the original id (still in the
/// stream's duplicate window, perhaps) cannot make the stream drop it.
///
/// # Errors
///
/// Fails on the first dead letter that cannot be published or removed; those before
/// it stay replayed.
pub async fn replay(
    js: &jetstream::Context,
    consumer: Option<&str>,
    limit: usize,
) -> Result<usize, Error> {
    let letters = list(js, consumer, limit).await?;
    let stream = js
        .get_stream_no_info(DEAD_LETTER.name)
        .await
        .map_err(|e| err("DEAD_LETTER stream", e))?;
    for letter in &letters {
        if letter.original_subject.is_empty() {
            return Err(Error::new(format!(
                "dead letter {} has no original subject",
                letter.sequence
            )));
        }
        let mut headers = letter.headers.clone();
        headers.insert(
            headers::MSG_ID,
            format!("replay:{}", letter.sequence).as_str(),
        );
        js.publish_with_headers(
            letter.original_subject.clone(),
            headers,
            letter.payload.clone(),
        )
        .await
        .map_err(|e| err(&letter.original_subject, e))?
        .await
        .map_err(|e| err(&letter.original_subject, e))?;
        stream
            .delete_message(letter.sequence)
            .await
            .map_err(|e| err("removing a replayed dead letter", e))?;
        tracing::info!(sequence = letter.sequence, subject = %letter.original_subject, "dead letter replayed");
    }
    Ok(letters.len())
}
