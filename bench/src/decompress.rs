//! The baseline's transport decompression: one zstd context per connection.

use bytes::Bytes;
use tokio_tungstenite::tungstenite::Message;
use zstd_safe::{DCtx, InBuffer, OutBuffer};

/// Turns WebSocket messages into gateway frames.
pub struct Inflater {
    zstd: Option<DCtx<'static>>,
}

impl Inflater {
    /// A decoder for zstd-stream (`zstd`) or plain text.
    pub fn new(zstd: bool) -> Self {
        Self {
            zstd: zstd.then(DCtx::create),
        }
    }

    /// The frame in `message`; `None` for pings, pongs and close frames.
    ///
    /// # Errors
    ///
    /// If a zstd message does not decompress.
    pub fn frame(&mut self, message: Message) -> anyhow::Result<Option<Bytes>> {
        match (message, &mut self.zstd) {
            (Message::Text(text), _) => Ok(Some(Bytes::from(text))),
            (Message::Binary(bytes), Some(ctx)) => inflate(ctx, &bytes).map(Some),
            (Message::Binary(bytes), None) => Ok(Some(bytes)),
            _ => Ok(None),
        }
    }
}

fn inflate(ctx: &mut DCtx<'static>, input: &[u8]) -> anyhow::Result<Bytes> {
    // A flushed zstd block decompresses completely; grow until the output is not full.
    let mut out = vec![0u8; (input.len() * 4).max(4096)];
    let mut written = 0;
    let mut inb = InBuffer::around(input);
    loop {
        let mut outb = OutBuffer::around_pos(&mut out[..], written);
        ctx.decompress_stream(&mut outb, &mut inb)
            .map_err(|c| anyhow::anyhow!("zstd: {}", zstd_safe::get_error_name(c)))?;
        written = outb.pos();
        if inb.pos() == input.len() && written < out.len() {
            out.truncate(written);
            return Ok(Bytes::from(out));
        }
        let grow = out.len() * 2;
        out.resize(grow, 0);
    }
}
