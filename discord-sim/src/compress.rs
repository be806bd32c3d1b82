//! Transport compression (`compress=zlib-stream` / `compress=zstd-stream`).
//!
//! Both modes keep ONE compression context for the life of a connection and flush it after
//! every message, exactly like Discord: a zlib message ends with `00 00 ff ff`, a zstd
//! message is a flushed block of one continuous frame.

use axum::extract::ws::Message;
use bytes::Bytes;
use flate2::{Compress, Compression, FlushCompress};
use zstd_safe::{CCtx, InBuffer, OutBuffer, zstd_sys::ZSTD_EndDirective};

/// Transport compression modes a client can ask for in the `compress` query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportCompression {
    /// No compression: every message is a Text WebSocket message.
    None,
    /// `zlib-stream`: one zlib stream per connection, sync-flushed per message.
    ZlibStream,
    /// `zstd-stream`: one zstd frame per connection, flushed per message.
    ZstdStream,
}

impl TransportCompression {
    /// Parses the `compress` query value (`None` when the parameter is absent).
    pub fn from_query(value: Option<&str>) -> Option<Self> {
        match value {
            None | Some("") => Some(Self::None),
            Some("zlib-stream") => Some(Self::ZlibStream),
            Some("zstd-stream") => Some(Self::ZstdStream),
            Some(_) => None,
        }
    }
}

/// Per-connection compressor turning gateway JSON into WebSocket messages.
pub(crate) enum Compressor {
    /// Plain text frames.
    None,
    /// zlib stream context.
    Zlib(Box<Compress>),
    /// zstd stream context.
    Zstd(Box<CCtx<'static>>),
}

impl Compressor {
    /// Creates the connection's compressor.
    pub(crate) fn new(mode: TransportCompression) -> Self {
        match mode {
            TransportCompression::None => Self::None,
            TransportCompression::ZlibStream => {
                Self::Zlib(Box::new(Compress::new(Compression::default(), true)))
            }
            TransportCompression::ZstdStream => Self::Zstd(Box::new(CCtx::create())),
        }
    }

    /// Encodes one gateway payload as the WebSocket message to send.
    pub(crate) fn message(&mut self, text: String) -> std::io::Result<Message> {
        match self {
            Self::None => Ok(Message::Text(text.into())),
            Self::Zlib(c) => zlib(c, text.as_bytes()).map(|b| Message::Binary(Bytes::from(b))),
            Self::Zstd(c) => zstd(c, text.as_bytes()).map(|b| Message::Binary(Bytes::from(b))),
        }
    }
}

fn zlib(c: &mut Compress, mut input: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len() / 2 + 64);
    loop {
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(1024));
        }
        let before = c.total_in();
        c.compress_vec(input, &mut out, FlushCompress::Sync)
            .map_err(std::io::Error::other)?;
        let consumed = usize::try_from(c.total_in() - before).unwrap_or(input.len());
        input = &input[consumed..];
        // Done once all input is in and the flush did not fill the buffer.
        if input.is_empty() && out.len() < out.capacity() {
            return Ok(out);
        }
    }
}

fn zstd(c: &mut CCtx<'static>, input: &[u8]) -> std::io::Result<Vec<u8>> {
    // zstd-safe's `Vec` output needs its `std` feature; a zeroed slice works everywhere.
    let mut out = vec![0u8; zstd_safe::compress_bound(input.len()) + 64];
    let mut written = 0;
    let mut inb = InBuffer::around(input);
    loop {
        let remaining = {
            let mut outb = OutBuffer::around_pos(&mut out[..], written);
            let r = c
                .compress_stream2(&mut outb, &mut inb, ZSTD_EndDirective::ZSTD_e_flush)
                .map_err(|code| std::io::Error::other(zstd_safe::get_error_name(code)))?;
            written = outb.pos();
            r
        };
        if remaining == 0 && inb.pos() == input.len() {
            out.truncate(written);
            return Ok(out);
        }
        let grow = out.len() + remaining.max(4096);
        out.resize(grow, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Decompress, FlushDecompress};

    fn payload(m: Message) -> Vec<u8> {
        match m {
            Message::Binary(b) => b.to_vec(),
            other => panic!("expected binary, got {other:?}"),
        }
    }

    #[test]
    fn zlib_stream_round_trips_with_one_context() {
        let mut c = Compressor::new(TransportCompression::ZlibStream);
        let mut d = Decompress::new(true);
        for i in 0..50 {
            let text = format!("{{\"op\":0,\"s\":{i},\"d\":\"{}\"}}", "x".repeat(i * 997));
            let bytes = payload(c.message(text.clone()).unwrap());
            assert!(bytes.ends_with(&[0, 0, 0xff, 0xff]));
            let mut out = Vec::with_capacity(text.len() + 1024);
            d.decompress_vec(&bytes, &mut out, FlushDecompress::Sync)
                .unwrap();
            assert_eq!(String::from_utf8(out).unwrap(), text);
        }
    }

    #[test]
    fn zstd_stream_round_trips_with_one_context() {
        let mut c = Compressor::new(TransportCompression::ZstdStream);
        let mut d = zstd_safe::DCtx::create();
        for i in 0..50 {
            let text = format!("{{\"op\":0,\"s\":{i},\"d\":\"{}\"}}", "y".repeat(i * 4099));
            let bytes = payload(c.message(text.clone()).unwrap());
            let mut out = vec![0u8; text.len() + 1024];
            let mut inb = InBuffer::around(&bytes);
            let mut outb = OutBuffer::around(&mut out[..]);
            d.decompress_stream(&mut outb, &mut inb).unwrap();
            assert_eq!(inb.pos(), bytes.len());
            let n = outb.pos();
            assert_eq!(std::str::from_utf8(&out[..n]).unwrap(), text);
        }
    }
}
