//! The operator's side of dead letters: read them with filters, put them back on
//! their subject, purge them. `shardline dlq` is the command line over these.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::HeaderMap;
use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};
use async_nats::jetstream::{self, ErrorCode, consumer};
use futures_util::StreamExt;
use shardline_proto::topology::{DEAD_LETTER, subject_matches};
use shardline_proto::{headers, subject};

use super::DeadKind;
use crate::Error;

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
    /// When it was dead-lettered: the `Shardline-Dead-At` header, else the time the
    /// stream stored it. The header survives a backup and restore, the stream's
    /// timestamp does not.
    pub at: SystemTime,
    /// The stream and sequence it came from (`STREAM:SEQ`).
    pub source: String,
    /// Headers as first published (the dead-letter headers removed).
    pub headers: HeaderMap,
    /// The payload, unchanged.
    pub payload: bytes::Bytes,
}

impl DeadLetter {
    /// How long ago it was dead-lettered (zero if its time is in the future).
    pub fn age(&self, now: SystemTime) -> Duration {
        now.duration_since(self.at).unwrap_or_default()
    }
}

/// Which dead letters an operation takes. The default takes every one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this consumer's.
    pub consumer: Option<String>,
    /// Only those first published on a subject matching this one (NATS wildcards
    /// `*` and `>` allowed).
    pub subject: Option<String>,
    /// Only those of this kind.
    pub kind: Option<DeadKind>,
    /// Only those dead-lettered at least this long ago.
    pub older_than: Option<Duration>,
    /// Only those dead-lettered at most this long ago.
    pub newer_than: Option<Duration>,
}

impl Filter {
    /// Every dead letter of consumer `durable`.
    pub fn consumer(durable: &str) -> Self {
        Self {
            consumer: Some(durable.to_owned()),
            ..Self::default()
        }
    }

    /// Whether it takes every dead letter.
    pub fn is_everything(&self) -> bool {
        *self == Self::default()
    }

    /// The `DEAD_LETTER` subject filter the server applies; kind and age are
    /// checked on each letter ([`Filter::matches`]).
    pub fn stream_subject(&self) -> String {
        match (&self.consumer, &self.subject) {
            (None, None) => format!("{}>", subject::DEAD_LETTER_PREFIX),
            (Some(consumer), None) => subject::dead_letters_of(consumer),
            (consumer, Some(original)) => {
                subject::dead_letter(consumer.as_deref().unwrap_or("*"), original)
            }
        }
    }

    /// Whether `letter` passes every part of the filter at time `now`.
    pub fn matches(&self, letter: &DeadLetter, now: SystemTime) -> bool {
        let age = letter.age(now);
        self.consumer.as_ref().is_none_or(|c| *c == letter.consumer)
            && self
                .subject
                .as_ref()
                .is_none_or(|s| subject_matches(s, &letter.original_subject))
            && self.kind.is_none_or(|k| k.as_str() == letter.kind)
            && self.older_than.is_none_or(|d| age >= d)
            && self.newer_than.is_none_or(|d| age <= d)
    }
}

fn err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(format!("{what}: {e}"))
}

/// The `DEAD_LETTER` stream, or `None` if it does not exist (no dead letter yet).
async fn dead_letter_stream(js: &jetstream::Context) -> Result<Option<Stream>, Error> {
    match js.get_stream(DEAD_LETTER.name).await {
        Ok(stream) => Ok(Some(stream)),
        Err(e) if matches!(e.kind(), GetStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND) => {
            Ok(None)
        }
        Err(e) => Err(err("DEAD_LETTER stream", e)),
    }
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
    let filter = consumer.map(Filter::consumer).unwrap_or_default();
    list_matching(js, &filter, limit).await
}

/// Reads the dead letters `filter` takes, oldest first, at most `limit`. None when
/// the `DEAD_LETTER` stream does not exist.
///
/// # Errors
///
/// Fails if the `DEAD_LETTER` stream cannot be read.
pub async fn list_matching(
    js: &jetstream::Context,
    filter: &Filter,
    limit: usize,
) -> Result<Vec<DeadLetter>, Error> {
    let Some(stream) = dead_letter_stream(js).await? else {
        return Ok(Vec::new());
    };
    // An ephemeral reader without acks: reading never changes what is stored.
    let reader = stream
        .create_consumer(consumer::pull::Config {
            filter_subject: filter.stream_subject(),
            ack_policy: consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(30),
            ..Default::default()
        })
        .await
        .map_err(|e| err("dead-letter reader", e))?;
    let now = SystemTime::now();
    let mut remaining = usize::try_from(reader.cached_info().num_pending).unwrap_or(usize::MAX);
    let mut out = Vec::new();
    while remaining > 0 && out.len() < limit {
        let mut batch = reader
            .batch()
            .max_messages(remaining.min(256))
            .expires(Duration::from_secs(2))
            .messages()
            .await
            .map_err(|e| err("reading dead letters", e))?;
        let mut read = 0;
        while let Some(message) = batch.next().await {
            let message = message.map_err(|e| err("reading dead letters", e))?;
            let info = message.info().map_err(|e| err("dead letter info", e))?;
            remaining = usize::try_from(info.pending).unwrap_or(0);
            read += 1;
            let letter = parse(
                message.headers.as_ref(),
                message.payload.clone(),
                info.stream_sequence,
                SystemTime::from(info.published),
            );
            if filter.matches(&letter, now) && out.len() < limit {
                out.push(letter);
            }
        }
        if read == 0 {
            break;
        }
    }
    Ok(out)
}

/// The dead letter stored at `sequence`, or `None` if there is none.
///
/// # Errors
///
/// Fails if the `DEAD_LETTER` stream cannot be read.
pub async fn get(js: &jetstream::Context, sequence: u64) -> Result<Option<DeadLetter>, Error> {
    let Some(stream) = dead_letter_stream(js).await? else {
        return Ok(None);
    };
    match stream.get_raw_message(sequence).await {
        Ok(message) => Ok(Some(parse(
            Some(&message.headers),
            message.payload,
            message.sequence,
            SystemTime::from(message.time),
        ))),
        Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => Ok(None),
        Err(e) => Err(err("reading a dead letter", e)),
    }
}

fn parse(
    all: Option<&HeaderMap>,
    payload: bytes::Bytes,
    sequence: u64,
    stored_at: SystemTime,
) -> DeadLetter {
    let all = all.cloned().unwrap_or_default();
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
    let at = get(headers::DEAD_LETTER_AT)
        .parse::<u64>()
        .map_or(stored_at, |nanos| UNIX_EPOCH + Duration::from_nanos(nanos));
    DeadLetter {
        sequence,
        original_subject: get(headers::DEAD_LETTER_SUBJECT),
        consumer: get(headers::DEAD_LETTER_CONSUMER),
        kind: get(headers::DEAD_LETTER_KIND),
        reason: get(headers::DEAD_LETTER_REASON),
        delivered: get(headers::DEAD_LETTER_DELIVERED).parse().unwrap_or(0),
        at,
        source: get(headers::DEAD_LETTER_SOURCE),
        headers: original,
        payload,
    }
}

/// Puts the dead letters `filter` takes back on their original subject, oldest
/// first, at most `limit`, and removes each from `DEAD_LETTER` once its stream has
/// acknowledged it. Returns how many.
///
/// The replayed message gets `Nats-Msg-Id: replay:<dead-letter sequence>`, so two
/// replays racing each other publish it once, and the original id (still in the
/// stream's duplicate window, perhaps) cannot make the stream drop it.
///
/// # Errors
///
/// Fails on the first dead letter that cannot be published or removed; those before
/// it stay replayed, it and those after it stay dead letters.
pub async fn replay(
    js: &jetstream::Context,
    filter: &Filter,
    limit: usize,
) -> Result<usize, Error> {
    let letters = list_matching(js, filter, limit).await?;
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

/// Removes the dead letters `filter` takes, oldest first, at most `limit`, for good.
/// Returns how many.
///
/// # Errors
///
/// Fails on the first dead letter that cannot be removed; those before it are gone.
pub async fn purge(js: &jetstream::Context, filter: &Filter, limit: usize) -> Result<usize, Error> {
    let letters = list_matching(js, filter, limit).await?;
    let stream = js
        .get_stream_no_info(DEAD_LETTER.name)
        .await
        .map_err(|e| err("DEAD_LETTER stream", e))?;
    for letter in &letters {
        stream
            .delete_message(letter.sequence)
            .await
            .map_err(|e| err("removing a dead letter", e))?;
        tracing::info!(sequence = letter.sequence, subject = %letter.original_subject, "dead letter purged");
    }
    Ok(letters.len())
}
