//! From a frame to a message: subject, headers, payload.

use std::time::{SystemTime, UNIX_EPOCH};

use async_nats::{HeaderMap, HeaderName, HeaderValue};
use bytes::Bytes;
use shardline_proto::{GuildTracker, Route, headers, route, topology};

use crate::frame::{self, Frame, FrameErrorKind};

/// A message ready to publish.
#[derive(Clone, Debug)]
pub struct Outgoing {
    /// Subject from proto's mapping.
    pub subject: String,
    /// The stream that captures `subject` (for metrics).
    pub stream: &'static str,
    /// Shardline's headers, as values (see [`Outgoing::header_map`]).
    pub headers: Headers,
    /// `d`, byte for byte.
    pub payload: Bytes,
    /// The dispatch name.
    pub event: String,
    /// The dispatch's sequence number in its session (`s`).
    pub sequence: u64,
}

/// The values of a message's headers. The map is built for each publish attempt by
/// [`Outgoing::header_map`]: building one costs less than cloning one, and a retry
/// needs its own (a profile showed cloning maps at a fifth of the gateway's CPU).
#[derive(Clone, Debug)]
pub struct Headers {
    /// `Nats-Msg-Id`: `<session>:<sequence>`.
    pub msg_id: String,
    /// `Discord-Shard-Id`.
    pub shard_id: u32,
    /// `Discord-Guild-Id`, when the payload has a guild.
    pub guild_id: Option<u64>,
    /// `Shardline-Received-At`, nanoseconds since the Unix epoch.
    pub received_at_nanos: u128,
    /// `Shardline-Encoding`, when the payload is compressed.
    pub encoding: Option<&'static str>,
}

impl Outgoing {
    /// The message's NATS headers.
    pub fn header_map(&self) -> HeaderMap {
        let h = &self.headers;
        let mut map = HeaderMap::new();
        let mut put = |name: &'static str, value: String| {
            map.insert(HeaderName::from_static(name), HeaderValue::from(value));
        };
        put(headers::MSG_ID, h.msg_id.clone());
        put(headers::EVENT_TYPE, self.event.clone());
        put(headers::SHARD_ID, h.shard_id.to_string());
        put(headers::SEQUENCE, self.sequence.to_string());
        if let Some(guild) = h.guild_id {
            put(headers::GUILD_ID, guild.to_string());
        }
        put(headers::RECEIVED_AT, h.received_at_nanos.to_string());
        if let Some(encoding) = h.encoding {
            put(headers::ENCODING, encoding.to_owned());
        }
        map
    }
}

/// What one frame turned into.
#[derive(Debug)]
pub enum Routed {
    /// Publish this.
    Publish(Outgoing),
    /// A shard lifecycle dispatch: nothing to publish. `"identify"` for READY (a
    /// new session), `"resume"` for RESUMED.
    Lifecycle(&'static str),
    /// A non-dispatch opcode: twilight handles it.
    Control,
}

/// Why a dispatch was not published.
#[derive(Debug, PartialEq, Eq)]
pub enum Rejected {
    /// The frame is broken.
    Frame(FrameErrorKind),
    /// A dispatch arrived with no session (never happens with a real gateway).
    NoSession,
}

/// Routing state of one shard: its id and which guilds are known.
#[derive(Debug)]
pub struct ShardRouter {
    shard_id: u32,
    guilds: GuildTracker,
}

impl ShardRouter {
    /// A router for shard `shard_id`.
    pub fn new(shard_id: u32) -> Self {
        Self {
            shard_id,
            guilds: GuildTracker::new(),
        }
    }

    /// The shard's id.
    pub fn shard_id(&self) -> u32 {
        self.shard_id
    }

    /// Routes one decompressed frame. `session_id` is the shard's current session
    /// (twilight updates it before yielding READY).
    ///
    /// # Errors
    ///
    /// A frame that cannot be routed; the caller counts and logs it.
    pub fn route(
        &mut self,
        text: String,
        session_id: Option<&str>,
        received_at: SystemTime,
    ) -> Result<Routed, Rejected> {
        let (event, sequence, data, facts) = match frame::parse(&text).map_err(Rejected::Frame)? {
            Frame::Control(_) => return Ok(Routed::Control),
            Frame::Dispatch(d) => (d.event.into_owned(), d.sequence, d.data, d.facts),
        };
        if event == "READY" {
            self.guilds.ready(frame::ready_guilds(&text[data.clone()]));
        }
        let transition = match (event.as_str(), facts.guild_id) {
            ("GUILD_CREATE", Some(id)) => Some(self.guilds.guild_create(id)),
            ("GUILD_DELETE", Some(id)) => Some(self.guilds.guild_delete(id, facts.unavailable)),
            _ => None,
        };
        let subject = match route(&event, transition) {
            Route::Lifecycle if event == "READY" => return Ok(Routed::Lifecycle("identify")),
            Route::Lifecycle => return Ok(Routed::Lifecycle("resume")),
            Route::Publish(subject) => subject.into_owned(),
        };
        let session_id = session_id.ok_or(Rejected::NoSession)?;
        let stream = topology::stream_for_subject(&subject).map_or("none", |s| s.name);

        let headers = Headers {
            msg_id: headers::msg_id(session_id, sequence),
            shard_id: self.shard_id,
            guild_id: facts.guild_id,
            received_at_nanos: received_at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
            encoding: None,
        };

        // Zero-copy: the payload is a slice of the frame's own buffer.
        let payload = Bytes::from(text).slice(data);
        Ok(Routed::Publish(Outgoing {
            subject,
            stream,
            headers,
            payload,
            event,
            sequence,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(router: &mut ShardRouter, frame: &str) -> Outgoing {
        match router
            .route(frame.to_owned(), Some("sess"), UNIX_EPOCH)
            .unwrap()
        {
            Routed::Publish(out) => out,
            other => panic!("not published: {other:?}"),
        }
    }

    fn header(out: &Outgoing, name: &str) -> Option<String> {
        out.header_map().get(name).map(|v| v.as_str().to_owned())
    }

    #[test]
    fn headers_and_payload() {
        let mut router = ShardRouter::new(3);
        let out = publish(
            &mut router,
            r#"{"op":0,"s":9,"t":"MESSAGE_CREATE","d":{"guild_id":"77","x":1}}"#,
        );
        assert_eq!(out.subject, "events.message.create");
        assert_eq!(out.stream, "EVENTS");
        assert_eq!(&out.payload[..], br#"{"guild_id":"77","x":1}"#);
        assert_eq!(header(&out, "Nats-Msg-Id").as_deref(), Some("sess:9"));
        assert_eq!(
            header(&out, "Discord-Event-Type").as_deref(),
            Some("MESSAGE_CREATE")
        );
        assert_eq!(header(&out, "Discord-Shard-Id").as_deref(), Some("3"));
        assert_eq!(header(&out, "Discord-Sequence").as_deref(), Some("9"));
        assert_eq!(header(&out, "Discord-Guild-Id").as_deref(), Some("77"));
        assert_eq!(header(&out, "Shardline-Received-At").as_deref(), Some("0"));
    }

    #[test]
    fn no_guild_header_without_a_guild() {
        let mut router = ShardRouter::new(0);
        let out = publish(
            &mut router,
            r#"{"op":0,"s":2,"t":"USER_UPDATE","d":{"id":"1"}}"#,
        );
        assert_eq!(header(&out, "Discord-Guild-Id"), None);
        assert_eq!(header(&out, "Shardline-Encoding"), None);
    }

    #[test]
    fn join_versus_available() {
        let mut router = ShardRouter::new(0);
        let ready = r#"{"op":0,"s":1,"t":"READY","d":{"session_id":"sess","guilds":[{"id":"10","unavailable":true}]}}"#;
        assert!(matches!(
            router.route(ready.to_owned(), Some("sess"), UNIX_EPOCH),
            Ok(Routed::Lifecycle("identify"))
        ));
        let create = |id: u32, s: u32| {
            format!(r#"{{"op":0,"s":{s},"t":"GUILD_CREATE","d":{{"id":"{id}"}}}}"#)
        };
        assert_eq!(
            publish(&mut router, &create(10, 2)).subject,
            "events.guild.available"
        );
        assert_eq!(
            publish(&mut router, &create(11, 3)).subject,
            "events.guild.join"
        );
        let gone = r#"{"op":0,"s":4,"t":"GUILD_DELETE","d":{"id":"10","unavailable":true}}"#;
        assert_eq!(
            publish(&mut router, gone).subject,
            "events.guild.unavailable"
        );
        assert_eq!(
            publish(&mut router, &create(10, 5)).subject,
            "events.guild.available"
        );
        let left = r#"{"op":0,"s":6,"t":"GUILD_DELETE","d":{"id":"10"}}"#;
        assert_eq!(publish(&mut router, left).subject, "events.guild.leave");
    }

    #[test]
    fn rejects_broken_frames() {
        let mut router = ShardRouter::new(0);
        assert_eq!(
            router
                .route("{".to_owned(), Some("s"), UNIX_EPOCH)
                .unwrap_err(),
            Rejected::Frame(FrameErrorKind::Malformed)
        );
        assert_eq!(
            router
                .route(
                    r#"{"op":0,"s":1,"t":"X","d":{}}"#.to_owned(),
                    None,
                    UNIX_EPOCH
                )
                .unwrap_err(),
            Rejected::NoSession
        );
    }
}
