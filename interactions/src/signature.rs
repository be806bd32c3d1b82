//! Discord's request signature: Ed25519 over `X-Signature-Timestamp` + the raw body.
//!
//! Checked before anything reads the body. Every failure is a 401 with no detail;
//! the reason only reaches a metric label and a debug log.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;
use ed25519_dalek::{Signature, VerifyingKey};

/// Header with the signature, 64 bytes in hex (Discord's name).
pub const SIGNATURE_HEADER: &str = "x-signature-ed25519";
/// Header with the Unix time in seconds the signature covers (Discord's name).
pub const TIMESTAMP_HEADER: &str = "x-signature-timestamp";

/// An application's Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(self.0.as_bytes()))
    }
}

impl FromStr for PublicKey {
    type Err = String;

    /// 64 hex digits, as the Developer Portal shows the key.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes: [u8; 32] = unhex(s.trim())
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| "expected 64 hex digits".to_owned())?;
        VerifyingKey::from_bytes(&bytes)
            .map(Self)
            .map_err(|_| "not an Ed25519 public key".to_owned())
    }
}

/// Why a request's signature was refused (a metric label; never sent to the client).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// No `X-Signature-Ed25519`.
    MissingSignature,
    /// Not 128 hex digits.
    MalformedSignature,
    /// No `X-Signature-Timestamp`.
    MissingTimestamp,
    /// A timestamp that is not a Unix time in seconds, or too far from our clock.
    StaleTimestamp,
    /// The signature does not verify.
    BadSignature,
}

impl Rejection {
    /// Every rejection, for registering metrics.
    pub const ALL: [Rejection; 5] = [
        Self::MissingSignature,
        Self::MalformedSignature,
        Self::MissingTimestamp,
        Self::StaleTimestamp,
        Self::BadSignature,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MissingSignature => "missing_signature",
            Self::MalformedSignature => "malformed_signature",
            Self::MissingTimestamp => "missing_timestamp",
            Self::StaleTimestamp => "stale_timestamp",
            Self::BadSignature => "bad_signature",
        }
    }
}

/// Checks the request's signature against `key`: the timestamp must be within
/// `max_skew` of `now` either way, and the signature must verify (strictly: no
/// malleable or small-order encodings) over the timestamp's bytes followed by `body`.
///
/// # Errors
///
/// Why it was refused.
pub fn verify(
    key: &PublicKey,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
    max_skew: Duration,
) -> Result<(), Rejection> {
    let signature = headers
        .get(SIGNATURE_HEADER)
        .ok_or(Rejection::MissingSignature)?;
    let signature: [u8; 64] = unhex(signature.to_str().unwrap_or(""))
        .and_then(|b| b.try_into().ok())
        .ok_or(Rejection::MalformedSignature)?;
    let timestamp = headers
        .get(TIMESTAMP_HEADER)
        .ok_or(Rejection::MissingTimestamp)?
        .as_bytes();
    let seconds: u64 = std::str::from_utf8(timestamp)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or(Rejection::StaleTimestamp)?;
    let signed_at = UNIX_EPOCH + Duration::from_secs(seconds);
    let skew = now
        .duration_since(signed_at)
        .unwrap_or_else(|e| e.duration());
    if skew > max_skew {
        return Err(Rejection::StaleTimestamp);
    }
    let mut message = Vec::with_capacity(timestamp.len() + body.len());
    message.extend_from_slice(timestamp);
    message.extend_from_slice(body);
    key.0
        .verify_strict(&message, &Signature::from_bytes(&signature))
        .map_err(|_| Rejection::BadSignature)
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

/// The bytes of a hex string (either case); `None` for an odd length or a non-digit.
fn unhex(s: &str) -> Option<Vec<u8>> {
    fn digit(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let s = s.as_bytes();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.chunks_exact(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    const SKEW: Duration = Duration::from_secs(60);

    fn signing_key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn public(seed: u8) -> PublicKey {
        hex(signing_key(seed).verifying_key().as_bytes())
            .parse()
            .unwrap()
    }

    fn signed(seed: u8, timestamp: &str, body: &[u8]) -> HeaderMap {
        let mut message = timestamp.as_bytes().to_vec();
        message.extend_from_slice(body);
        let signature = signing_key(seed).sign(&message);
        let mut headers = HeaderMap::new();
        headers.insert(
            SIGNATURE_HEADER,
            hex(&signature.to_bytes()).parse().unwrap(),
        );
        headers.insert(TIMESTAMP_HEADER, timestamp.parse().unwrap());
        headers
    }

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn a_good_signature_verifies() {
        let headers = signed(1, "1700000000", b"{\"type\":1}");
        let ok = verify(
            &public(1),
            &headers,
            b"{\"type\":1}",
            at(1_700_000_030),
            SKEW,
        );
        assert_eq!(ok, Ok(()));
    }

    #[test]
    fn every_kind_of_bad_request_is_refused() {
        let body = b"{\"type\":1}";
        let now = at(1_700_000_000);
        let check = |headers: &HeaderMap, body: &[u8]| verify(&public(1), headers, body, now, SKEW);
        let good = signed(1, "1700000000", body);

        assert_eq!(
            check(&signed(2, "1700000000", body), body),
            Err(Rejection::BadSignature)
        );
        assert_eq!(check(&good, b"{\"type\":2}"), Err(Rejection::BadSignature));
        let mut flipped = good.clone();
        let mut sig = flipped[SIGNATURE_HEADER].to_str().unwrap().to_owned();
        let last = if sig.ends_with('0') { "1" } else { "0" };
        sig.replace_range(127.., last);
        flipped.insert(SIGNATURE_HEADER, sig.parse().unwrap());
        assert_eq!(check(&flipped, body), Err(Rejection::BadSignature));
        for stale in ["1699999000", "1700001000", "soon", ""] {
            let headers = signed(1, stale, body);
            assert_eq!(
                check(&headers, body),
                Err(Rejection::StaleTimestamp),
                "{stale}"
            );
        }
        let mut no_timestamp = good.clone();
        no_timestamp.remove(TIMESTAMP_HEADER);
        assert_eq!(check(&no_timestamp, body), Err(Rejection::MissingTimestamp));
        let mut no_signature = good.clone();
        no_signature.remove(SIGNATURE_HEADER);
        assert_eq!(check(&no_signature, body), Err(Rejection::MissingSignature));
        for malformed in ["abc", "zz", &"0".repeat(126)] {
            let mut headers = good.clone();
            headers.insert(SIGNATURE_HEADER, malformed.parse().unwrap());
            assert_eq!(check(&headers, body), Err(Rejection::MalformedSignature));
        }
    }

    #[test]
    fn keys_parse_from_hex_only() {
        let key = hex(signing_key(3).verifying_key().as_bytes());
        assert!(key.parse::<PublicKey>().is_ok());
        assert!(key.to_uppercase().parse::<PublicKey>().is_ok());
        assert!(key[2..].parse::<PublicKey>().is_err());
        assert!("g".repeat(64).parse::<PublicKey>().is_err());
        assert_eq!(format!("{:?}", public(3)), key);
    }
}
