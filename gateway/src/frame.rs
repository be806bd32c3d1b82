//! Reading what routing needs from a gateway frame without building the event.
//!
//! A frame is `{"op":0,"s":42,"t":"MESSAGE_CREATE","d":{...}}` in any field order.
//! Routing needs `op`, `t`, `s`, the exact bytes of `d`, and for a few events a guild
//! id or the `unavailable` flag. `d` is never re-serialized: its byte range in the
//! frame is what gets published.

use std::borrow::Cow;
use std::ops::Range;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::scan;

/// Why a frame could not be routed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameErrorKind {
    /// Not a JSON object with a numeric `op`.
    Malformed,
    /// A dispatch without `t`.
    MissingEventName,
    /// A dispatch without `s`.
    MissingSequence,
    /// A dispatch without `d` (or with `d: null`).
    MissingData,
}

impl FrameErrorKind {
    /// Low-cardinality label for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed_frame",
            Self::MissingEventName => "missing_event_name",
            Self::MissingSequence => "missing_sequence",
            Self::MissingData => "missing_data",
        }
    }
}

/// A dispatch (`op` 0), borrowed from its frame.
#[derive(Debug, PartialEq, Eq)]
pub struct Dispatch<'a> {
    /// The event name, `t`.
    pub event: Cow<'a, str>,
    /// The sequence number, `s`.
    pub sequence: u64,
    /// Byte range of `d` in the frame.
    pub data: Range<usize>,
    /// The guild `d` belongs to, read in the same pass.
    pub facts: GuildFacts,
}

/// A routed view of one frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A dispatch to publish (or a lifecycle event).
    Dispatch(Dispatch<'a>),
    /// Any other opcode (hello, heartbeat ack, reconnect...): handled by twilight.
    Control(u8),
}

#[derive(Deserialize)]
struct RawFrame<'a> {
    op: u8,
    #[serde(default)]
    s: Option<u64>,
    #[serde(default, borrow)]
    t: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    d: Option<&'a RawValue>,
}

/// Parses a frame's envelope and the guild facts of its payload, in one pass over the
/// usual frame (see `scan`), with serde_json deciding anything unusual.
///
/// # Errors
///
/// The [`FrameErrorKind`] says which part is missing or broken.
pub fn parse(frame: &str) -> Result<Frame<'_>, FrameErrorKind> {
    let Some(raw) = scan::envelope(frame) else {
        return parse_with_serde(frame);
    };
    if raw.op != 0 {
        return Ok(Frame::Control(raw.op));
    }
    let event = raw.t.ok_or(FrameErrorKind::MissingEventName)?;
    let sequence = raw.s.ok_or(FrameErrorKind::MissingSequence)?;
    let data = raw.d.ok_or(FrameErrorKind::MissingData)?;
    let f = raw.facts;
    let facts = facts(&event, f.guild_id, f.id, f.unavailable);
    Ok(Frame::Dispatch(Dispatch {
        event,
        sequence,
        data,
        facts,
    }))
}

/// [`parse`] by serde_json alone, which checks every byte: the reference the fast
/// path is tested against, and its fallback.
///
/// # Errors
///
/// As [`parse`].
pub fn parse_with_serde(frame: &str) -> Result<Frame<'_>, FrameErrorKind> {
    let raw: RawFrame<'_> = serde_json::from_str(frame).map_err(|_| FrameErrorKind::Malformed)?;
    if raw.op != 0 {
        return Ok(Frame::Control(raw.op));
    }
    let event = raw.t.ok_or(FrameErrorKind::MissingEventName)?;
    let sequence = raw.s.ok_or(FrameErrorKind::MissingSequence)?;
    let data = raw.d.ok_or(FrameErrorKind::MissingData)?.get();
    let facts = guild_facts(&event, data);
    // `data` borrows from `frame`, so its offset is the distance between the pointers.
    let start = data.as_ptr() as usize - frame.as_ptr() as usize;
    Ok(Frame::Dispatch(Dispatch {
        event,
        sequence,
        data: start..start + data.len(),
        facts,
    }))
}

/// Guild facts of a dispatch payload.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct GuildFacts {
    /// `guild_id`, or `id` for events whose payload is a guild.
    pub guild_id: Option<u64>,
    /// `unavailable: true` (GUILD_DELETE during an outage).
    pub unavailable: bool,
}

#[derive(Deserialize)]
struct RawGuildFacts<'a> {
    #[serde(default, borrow)]
    guild_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default)]
    unavailable: Option<bool>,
}

/// Whether the payload of `event` is a guild object (its `id` is the guild id).
fn payload_is_guild(event: &str) -> bool {
    matches!(event, "GUILD_CREATE" | "GUILD_UPDATE" | "GUILD_DELETE")
}

/// Reads the guild facts of a dispatch payload. A payload that is not an object, or
/// has no guild, gives the default.
pub fn guild_facts(event: &str, data: &str) -> GuildFacts {
    let Ok(raw) = serde_json::from_str::<RawGuildFacts<'_>>(data) else {
        return GuildFacts::default();
    };
    facts(
        event,
        raw.guild_id.as_deref(),
        raw.id.as_deref(),
        raw.unavailable,
    )
}

fn facts(
    event: &str,
    guild_id: Option<&str>,
    id: Option<&str>,
    unavailable: Option<bool>,
) -> GuildFacts {
    let id = if payload_is_guild(event) {
        id
    } else {
        guild_id
    };
    GuildFacts {
        guild_id: id.and_then(|id| id.parse().ok()),
        unavailable: unavailable.unwrap_or(false),
    }
}

#[derive(Deserialize)]
struct ReadyGuilds {
    guilds: Vec<IdOnly>,
}

#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

/// The guild ids listed in a READY payload.
pub fn ready_guilds(data: &str) -> Vec<u64> {
    serde_json::from_str::<ReadyGuilds>(data)
        .map(|ready| {
            ready
                .guilds
                .into_iter()
                .filter_map(|g| g.id.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dispatch(frame: &str) -> (String, u64, &str) {
        let fast = parse(frame).unwrap();
        assert_eq!(fast, parse_with_serde(frame).unwrap(), "{frame}");
        match fast {
            Frame::Dispatch(d) => (d.event.into_owned(), d.sequence, &frame[d.data]),
            Frame::Control(op) => panic!("control {op}"),
        }
    }

    #[test]
    fn reads_a_dispatch_byte_for_byte() {
        let frame = r#"{"t":"MESSAGE_CREATE","s":7,"op":0,"d":{"a": [1, 2],  "b":"\u00e9"}}"#;
        let (event, seq, data) = dispatch(frame);
        assert_eq!(event, "MESSAGE_CREATE");
        assert_eq!(seq, 7);
        assert_eq!(data, r#"{"a": [1, 2],  "b":"\u00e9"}"#);
    }

    #[test]
    fn field_order_does_not_matter() {
        let a = dispatch(r#"{"op":0,"s":1,"t":"X","d":{"k":1}}"#);
        let b = dispatch(r#"{"d":{"k":1},"t":"X","s":1,"op":0}"#);
        assert_eq!(a, b);
    }

    #[test]
    fn control_frames_and_errors() {
        assert_eq!(parse(r#"{"op":11,"d":null}"#), Ok(Frame::Control(11)));
        assert_eq!(parse("not json"), Err(FrameErrorKind::Malformed));
        assert_eq!(parse(r#"{"t":"X"}"#), Err(FrameErrorKind::Malformed));
        assert_eq!(
            parse(r#"{"op":0,"s":1,"d":{}}"#),
            Err(FrameErrorKind::MissingEventName)
        );
        assert_eq!(
            parse(r#"{"op":0,"t":"X","d":{}}"#),
            Err(FrameErrorKind::MissingSequence)
        );
        assert_eq!(
            parse(r#"{"op":0,"t":"X","s":1}"#),
            Err(FrameErrorKind::MissingData)
        );
        assert_eq!(
            parse(r#"{"op":0,"t":"X","s":1,"d":null}"#),
            Err(FrameErrorKind::MissingData)
        );
    }

    #[test]
    fn guild_ids() {
        let facts = guild_facts("MESSAGE_CREATE", r#"{"id":"1","guild_id":"42"}"#);
        assert_eq!(facts.guild_id, Some(42));
        let facts = guild_facts("GUILD_DELETE", r#"{"id":"42","unavailable":true}"#);
        assert_eq!(
            facts,
            GuildFacts {
                guild_id: Some(42),
                unavailable: true
            }
        );
        assert_eq!(guild_facts("TYPING_START", "[]"), GuildFacts::default());
        assert_eq!(guild_facts("DM", r#"{"id":"5"}"#).guild_id, None);
    }

    #[test]
    fn ready_lists_guilds() {
        let ready =
            r#"{"v":10,"guilds":[{"id":"1","unavailable":true},{"id":"2"}],"session_id":"s"}"#;
        assert_eq!(ready_guilds(ready), vec![1, 2]);
    }
}
