//! Payload encodings: how a payload too large for the server travels compressed.
//!
//! The gateway publishes a dispatch's `d` byte for byte, unless it would not fit the
//! server's `max_payload` (a GUILD_CREATE of a large guild is several MiB). Then it
//! compresses it with zstd and sets the [`ENCODING`](crate::headers::ENCODING) header
//! to [`ZSTD`]. A consumer passes that header's value and the payload to [`decode`]
//! and gets the original bytes back, whatever the encoding was.

use std::borrow::Cow;
use std::fmt;

/// The value of the [`ENCODING`](crate::headers::ENCODING) header for a zstd frame.
pub const ZSTD: &str = "zstd";

/// Largest payload [`decode`] inflates to (64 MiB), so a corrupt or hostile frame
/// cannot make a consumer allocate without limit. Discord payloads are far smaller.
pub const MAX_DECODED_BYTES: u64 = 64 * 1024 * 1024;

/// zstd level: level 3 compresses Discord JSON about tenfold at hundreds of MB/s.
const LEVEL: i32 = 3;

/// Why a payload could not be encoded or decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodingErrorKind {
    /// The header names an encoding this build does not know.
    Unknown,
    /// The payload is not a valid frame of its encoding.
    Corrupt,
    /// The decoded payload would exceed [`MAX_DECODED_BYTES`].
    TooLarge,
}

/// An encoding error with its [`EncodingErrorKind`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodingError {
    kind: EncodingErrorKind,
}

impl EncodingError {
    /// What went wrong.
    pub fn kind(&self) -> EncodingErrorKind {
        self.kind
    }
}

impl fmt::Display for EncodingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            EncodingErrorKind::Unknown => "unknown payload encoding",
            EncodingErrorKind::Corrupt => "payload is not a valid frame of its encoding",
            EncodingErrorKind::TooLarge => "decoded payload would be too large",
        })
    }
}

impl std::error::Error for EncodingError {}

fn error(kind: EncodingErrorKind) -> EncodingError {
    EncodingError { kind }
}

/// Compresses `payload` into one zstd frame (with its content size, which
/// [`decode`] uses to allocate once).
///
/// # Errors
///
/// [`EncodingErrorKind::Corrupt`] if zstd fails (it does not on valid input).
pub fn encode_zstd(payload: &[u8]) -> Result<Vec<u8>, EncodingError> {
    // zstd-safe's `Vec` writer needs its `std` feature; a zeroed slice works everywhere.
    let mut out = vec![0u8; zstd_safe::compress_bound(payload.len())];
    let written = zstd_safe::compress(&mut out[..], payload, LEVEL)
        .map_err(|_| error(EncodingErrorKind::Corrupt))?;
    out.truncate(written);
    Ok(out)
}

/// The original bytes of `payload`, given the value of its
/// [`ENCODING`](crate::headers::ENCODING) header (`None` when the header is absent:
/// the payload is returned as it is, without a copy).
///
/// # Errors
///
/// See [`EncodingErrorKind`].
pub fn decode<'a>(
    encoding: Option<&str>,
    payload: &'a [u8],
) -> Result<Cow<'a, [u8]>, EncodingError> {
    match encoding {
        None | Some("") | Some("identity") => Ok(Cow::Borrowed(payload)),
        Some(ZSTD) => decode_zstd(payload).map(Cow::Owned),
        Some(_) => Err(error(EncodingErrorKind::Unknown)),
    }
}

fn decode_zstd(payload: &[u8]) -> Result<Vec<u8>, EncodingError> {
    let size = zstd_safe::get_frame_content_size(payload)
        .map_err(|_| error(EncodingErrorKind::Corrupt))?;
    let single_frame = zstd_safe::find_frame_compressed_size(payload) == Ok(payload.len());
    match size {
        // The frame says how large it is: allocate once.
        Some(size) if single_frame => {
            if size > MAX_DECODED_BYTES {
                return Err(error(EncodingErrorKind::TooLarge));
            }
            let mut out = vec![0u8; size as usize];
            let written = zstd_safe::decompress(&mut out[..], payload)
                .map_err(|_| error(EncodingErrorKind::Corrupt))?;
            if written != out.len() {
                return Err(error(EncodingErrorKind::Corrupt));
            }
            Ok(out)
        }
        // The content size is optional in a zstd frame (a streaming compressor leaves it
        // out) and a payload may hold several frames: both are valid, so inflate them
        // chunk by chunk, within the same bound.
        _ => decode_zstd_streaming(payload),
    }
}

fn decode_zstd_streaming(payload: &[u8]) -> Result<Vec<u8>, EncodingError> {
    const CHUNK: usize = 64 * 1024;
    let corrupt = |_| error(EncodingErrorKind::Corrupt);
    let mut dctx = zstd_safe::DCtx::try_create().ok_or(error(EncodingErrorKind::Corrupt))?;
    let mut input = zstd_safe::InBuffer::around(payload);
    let mut out = Vec::new();
    let mut chunk = vec![0u8; CHUNK];
    // Whether the last call that made progress ended a frame: a payload that stops
    // mid-frame is corrupt.
    let mut frame_ended = false;
    loop {
        let before = input.pos;
        let mut output = zstd_safe::OutBuffer::around(&mut chunk[..]);
        let hint = dctx
            .decompress_stream(&mut output, &mut input)
            .map_err(corrupt)?;
        let written = output.pos();
        if (out.len() + written) as u64 > MAX_DECODED_BYTES {
            return Err(error(EncodingErrorKind::TooLarge));
        }
        out.extend_from_slice(&chunk[..written]);
        if written > 0 || input.pos > before {
            frame_ended = hint == 0;
        }
        // Done once every byte is read and the output was not full (nothing left to flush).
        if input.pos == payload.len() && written < CHUNK {
            break;
        }
    }
    if frame_ended {
        Ok(out)
    } else {
        Err(error(EncodingErrorKind::Corrupt))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_is_byte_exact() {
        let payload = br#"{"id":"1","members":[{"user":{"id":"2"}}],"name":"\u00e9"}"#.repeat(1000);
        let encoded = encode_zstd(&payload).unwrap();
        assert!(encoded.len() < payload.len() / 5);
        assert_eq!(decode(Some(ZSTD), &encoded).unwrap(), &payload[..]);
    }

    /// A frame from a streaming compressor: no content size in its header.
    fn without_content_size(payload: &[u8]) -> Vec<u8> {
        let mut cctx = zstd_safe::CCtx::create();
        cctx.set_parameter(zstd_safe::CParameter::ContentSizeFlag(false))
            .unwrap();
        let mut out = vec![0u8; zstd_safe::compress_bound(payload.len())];
        let written = cctx.compress2(&mut out[..], payload).unwrap();
        out.truncate(written);
        assert!(matches!(zstd_safe::get_frame_content_size(&out), Ok(None)));
        out
    }

    #[test]
    fn frames_without_a_content_size_and_several_frames_decode() {
        let payload = br#"{"id":"1","members":[{"user":{"id":"2"}}]}"#.repeat(10_000);
        let encoded = without_content_size(&payload);
        assert_eq!(decode(Some(ZSTD), &encoded).unwrap(), &payload[..]);
        let mut two = encode_zstd(b"first,").unwrap();
        two.extend(without_content_size(b"second"));
        assert_eq!(decode(Some(ZSTD), &two).unwrap(), &b"first,second"[..]);
        let cut = &encoded[..encoded.len() - 3];
        assert_eq!(
            decode(Some(ZSTD), cut).unwrap_err().kind(),
            EncodingErrorKind::Corrupt,
            "a frame cut short is corrupt"
        );
    }

    #[test]
    fn streaming_decode_is_bounded_too() {
        let huge = vec![b' '; MAX_DECODED_BYTES as usize + 1];
        let encoded = without_content_size(&huge);
        assert_eq!(
            decode(Some(ZSTD), &encoded).unwrap_err().kind(),
            EncodingErrorKind::TooLarge
        );
    }

    #[test]
    fn plain_payloads_pass_through_without_a_copy() {
        let payload = b"{}";
        assert!(matches!(decode(None, payload), Ok(Cow::Borrowed(p)) if p == payload));
    }

    #[test]
    fn errors_have_kinds() {
        assert_eq!(
            decode(Some("br"), b"x").unwrap_err().kind(),
            EncodingErrorKind::Unknown
        );
        assert_eq!(
            decode(Some(ZSTD), b"not zstd").unwrap_err().kind(),
            EncodingErrorKind::Corrupt
        );
    }
}
