//! Dead letters: messages a worker gave up on, kept in the `DEAD_LETTER` stream with
//! the reason; read, replayed onto their original subject and purged by the
//! operator CLI (`shardline dlq`) through [`list_matching`], [`get`], [`replay`] and
//! [`purge`].

use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use async_nats::HeaderMap;
use async_nats::jetstream;
use shardline_proto::{headers, subject};

mod read;

pub use read::{DeadLetter, Filter, get, list, list_matching, purge, replay};

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

impl FromStr for DeadKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                format!("unknown dead-letter kind {s:?} (terminal, undecodable, max_deliveries)")
            })
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
