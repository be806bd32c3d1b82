//! The routing read's fast path: one pass over a frame that reads `op`, `s`, `t`, the
//! byte range of `d` and `d`'s top-level guild facts.
//!
//! Issue 5's profile put serde_json first in the gateway's CPU: it validated every
//! byte of `d` twice (the envelope, then the guild facts). Here the envelope and `d`'s
//! top level are walked key by key, and every nested value is skipped by
//! [`skip_container`], which classifies 64 bytes at a time into bit masks (quotes,
//! backslashes, brackets) and counts brackets outside strings with popcounts, in the
//! manner of simdjson's stage 1 but in safe, portable code.
//!
//! The grammar inside skipped values is not checked: `d` is published byte for byte,
//! and a worker that cannot deserialize it dead-letters it as undecodable. Anything
//! unusual where a routed value is read (an escaped key, a repeated key, a value of an
//! unexpected type, trailing bytes) returns `None`, and the caller falls back to
//! serde_json, which decides exactly as before.

use std::borrow::Cow;
use std::ops::Range;

use memchr::memchr2;
use wide::u8x16;

/// `d`'s top-level `guild_id`, `id` and `unavailable`, as serde would read them into
/// `Option<&str>`, `Option<&str>` and `Option<bool>`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct RawFacts<'a> {
    pub guild_id: Option<&'a str>,
    pub id: Option<&'a str>,
    pub unavailable: Option<bool>,
}

/// A frame's envelope: `op`, `s`, `t`, the byte range of `d` (`None` for null) and the
/// facts of `d` when it is an object.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Envelope<'a> {
    pub op: u8,
    pub s: Option<u64>,
    pub t: Option<Cow<'a, str>>,
    pub d: Option<Range<usize>>,
    pub facts: RawFacts<'a>,
}

/// Reads a frame in one pass, or `None` where serde_json must decide.
pub(crate) fn envelope(frame: &str) -> Option<Envelope<'_>> {
    let b = frame.as_bytes();
    let (mut op, mut s, mut t, mut d) = (None, None, None, None);
    let mut facts = RawFacts::default();
    let end = object(b, 0, |key, i| {
        let end = match key {
            b"d" if b.get(i) == Some(&b'{') => {
                let end = payload_facts(frame, i, &mut facts)?;
                set(&mut d, Some(Some(i..end)))?;
                return Some(end);
            }
            _ => skip_value(b, i)?,
        };
        let value = &frame[i..end];
        match key {
            b"op" => set(&mut op, digits(value).and_then(|n| u8::try_from(n).ok()))?,
            b"s" => set(&mut s, nullable(value, digits))?,
            b"t" => set(&mut t, nullable(value, plain_string))?,
            b"d" => set(&mut d, Some((value != "null").then_some(i..end)))?,
            _ => {}
        }
        Some(end)
    })?;
    if skip_ws(b, end) != b.len() {
        return None;
    }
    Some(Envelope {
        op: op?,
        s: s.flatten(),
        t: t.flatten().map(Cow::Borrowed),
        d: d.flatten(),
        facts,
    })
}

/// Walks the payload object at `frame[i]`, keeping its top-level guild facts; returns
/// the index after it.
fn payload_facts<'a>(frame: &'a str, i: usize, facts: &mut RawFacts<'a>) -> Option<usize> {
    let b = frame.as_bytes();
    let (mut guild_id, mut id, mut unavailable) = (None, None, None);
    let end = object(b, i, |key, i| {
        let end = skip_value(b, i)?;
        let value = &frame[i..end];
        match key {
            b"guild_id" => set(&mut guild_id, nullable(value, plain_string))?,
            b"id" => set(&mut id, nullable(value, plain_string))?,
            b"unavailable" => set(&mut unavailable, nullable(value, boolean))?,
            _ => {}
        }
        Some(end)
    })?;
    *facts = RawFacts {
        guild_id: guild_id.flatten(),
        id: id.flatten(),
        unavailable: unavailable.flatten(),
    };
    Some(end)
}

/// Walks the object at `b[i]`, calling `on` with each raw key and the index of its
/// value; `on` returns the index after the value. Returns the index after the object.
fn object(b: &[u8], i: usize, mut on: impl FnMut(&[u8], usize) -> Option<usize>) -> Option<usize> {
    let mut i = skip_ws(b, i);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b'}') {
        return Some(i + 1);
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let close = string_end(b, i + 1)?;
        let key = &b[i + 1..close];
        if key.contains(&b'\\') {
            return None;
        }
        i = skip_ws(b, close + 1);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(b, on(key, skip_ws(b, i + 1))?);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => return Some(i + 1),
            _ => return None,
        }
    }
}

/// Stores a read value; an unreadable value (`None`) or a repeated key (an error for
/// serde's derive) hands the decision to serde.
fn set<T>(slot: &mut Option<T>, value: Option<T>) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(value?);
    Some(())
}

fn digits(value: &str) -> Option<u64> {
    if value.is_empty() || !value.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

fn plain_string(value: &str) -> Option<&str> {
    let inner = value.strip_prefix('"')?.strip_suffix('"')?;
    (!inner.contains('\\')).then_some(inner)
}

fn boolean(value: &str) -> Option<bool> {
    match value {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// `null` -> `Some(None)`, a value `read` accepts -> `Some(Some(v))`, else `None`.
fn nullable<'a, T>(value: &'a str, read: impl Fn(&'a str) -> Option<T>) -> Option<Option<T>> {
    if value == "null" {
        Some(None)
    } else {
        read(value).map(Some)
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\n' | b'\r' | b'\t')) {
        i += 1;
    }
    i
}

/// The index of the quote closing the string whose contents start at `j`. Most JSON
/// strings are short keys and ids: a plain loop finds their end sooner than a `memchr`
/// call is set up; long ones (message content) go to `memchr2`.
fn string_end(b: &[u8], mut j: usize) -> Option<usize> {
    let short = (j + 24).min(b.len());
    while j < short {
        match b[j] {
            b'"' => return Some(j),
            b'\\' => j += 2,
            _ => j += 1,
        }
    }
    loop {
        let k = j + memchr2(b'"', b'\\', b.get(j..)?)?;
        if b[k] == b'\\' {
            j = k + 2;
        } else {
            return Some(k);
        }
    }
}

/// The index just after the value starting at `b[i]`.
fn skip_value(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => string_end(b, i + 1).map(|end| end + 1),
        b'{' | b'[' => skip_container(b, i),
        _ => {
            let len = b[i..]
                .iter()
                .position(|c| matches!(c, b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t'))
                .unwrap_or(b.len() - i);
            (len > 0).then_some(i + len)
        }
    }
}

const BLOCK: usize = 64;

/// Bit masks of one block: bit `k` is set where byte `k` is that character.
struct Masks {
    quote: u64,
    backslash: u64,
    open: u64,
    close: u64,
}

/// Classifies up to 64 bytes, 16 at a time with the `wide` crate's portable SIMD
/// (SSE2 on x86-64, NEON on aarch64: a compare and a move-mask per class). A plain
/// byte loop measured 0.2-0.4 GB/s here, `wide` 3.5-5.4 GB/s.
fn classify(block: &[u8]) -> Masks {
    let mut m = Masks {
        quote: 0,
        backslash: 0,
        open: 0,
        close: 0,
    };
    let (quote, backslash) = (u8x16::splat(b'"'), u8x16::splat(b'\\'));
    // `[` | 0x20 is `{` and `]` | 0x20 is `}`; no other byte maps onto them.
    let (open, close, lower) = (u8x16::splat(b'{'), u8x16::splat(b'}'), u8x16::splat(0x20));
    for (i, chunk) in block.chunks(16).enumerate() {
        let v = u8x16::from(<[u8; 16]>::try_from(chunk).unwrap_or_else(|_| {
            let mut lanes = [b' '; 16];
            lanes[..chunk.len()].copy_from_slice(chunk);
            lanes
        }));
        let folded = v | lower;
        let shift = i * 16;
        let bits = |x: u8x16| u64::from(x.to_bitmask()) << shift;
        m.quote |= bits(v.simd_eq(quote));
        m.backslash |= bits(v.simd_eq(backslash));
        m.open |= bits(folded.simd_eq(open));
        m.close |= bits(folded.simd_eq(close));
    }
    m
}

/// Characters escaped by a backslash in this block; `carry` says the block starts
/// with an escaped character and is set when the next one does.
fn escaped(mut backslash: u64, carry: &mut bool) -> u64 {
    let mut escaped = 0;
    if std::mem::take(carry) {
        escaped |= 1;
        backslash &= !1;
    }
    while backslash != 0 {
        let k = backslash.trailing_zeros();
        backslash &= backslash - 1;
        if k == 63 {
            *carry = true;
        } else {
            escaped |= 1 << (k + 1);
            backslash &= !(1 << (k + 1));
        }
    }
    escaped
}

/// Bit `k` is the parity of the bits at `0..=k`: with quote bits, the bytes inside a
/// string (its opening quote included, the closing one not).
fn prefix_xor(mut x: u64) -> u64 {
    x ^= x << 1;
    x ^= x << 2;
    x ^= x << 4;
    x ^= x << 8;
    x ^= x << 16;
    x ^= x << 32;
    x
}

/// The index just after the object or array opening at `b[i]`, found by counting
/// brackets outside strings, 64 bytes at a time. `None` if it never closes.
pub(crate) fn skip_container(b: &[u8], i: usize) -> Option<usize> {
    let mut depth: u32 = 0;
    let mut in_string = 0u64; // all ones while a string runs across blocks
    let mut carry = false;
    let mut at = i;
    while at < b.len() {
        let block = &b[at..(at + BLOCK).min(b.len())];
        let m = classify(block);
        let quote = if m.backslash == 0 && !carry {
            m.quote
        } else {
            m.quote & !escaped(m.backslash, &mut carry)
        };
        let strings = prefix_xor(quote) ^ in_string;
        in_string = 0u64.wrapping_sub(strings >> 63);
        let (open, close) = (m.open & !strings, m.close & !strings);
        let closes = close.count_ones();
        if depth > closes {
            // Cannot reach zero in this block, whatever the order.
            depth += open.count_ones();
            depth -= closes;
        } else {
            let mut brackets = open | close;
            while brackets != 0 {
                let k = brackets.trailing_zeros();
                brackets &= brackets - 1;
                if open >> k & 1 == 1 {
                    depth += 1;
                } else {
                    depth = depth.checked_sub(1)?;
                    if depth == 0 {
                        return Some(at + k as usize + 1);
                    }
                }
            }
        }
        at += BLOCK;
    }
    None
}

#[cfg(test)]
mod tests;
