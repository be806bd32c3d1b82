//! The routing read's fast path: one pass over a frame that reads `op`, `s`, `t`, the
//! byte range of `d` and `d`'s top-level guild facts.
//!
//! A profile of the gateway put serde_json first in the gateway's CPU: it validated every
//! byte of `d` twice (the envelope, then the guild facts). Here the envelope is walked
//! key by key, and `d` in one pass over its structure ([`blocks`]: 64 bytes at a time
//! as bit masks), looking only at the strings directly inside it for the guild facts.
//!
//! The grammar inside skipped values is not checked: `d` is published byte for byte,
//! and a worker that cannot deserialize it dead-letters it as undecodable. Anything
//! unusual where a routed value is read (an escaped envelope key, a repeated key, a
//! value of an unexpected type, trailing bytes) returns `None`, and the caller falls
//! back to serde_json, which decides exactly as before.

use std::borrow::Cow;
use std::ops::Range;

use memchr::memchr2;

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

/// Walks the payload object at `frame[i]` to its end in one pass over its structure,
/// keeping its top-level guild facts; returns the index after it.
///
/// Keys are matched byte for byte: a key spelled with escapes (`"guild\u005fid"`,
/// which Discord's encoder never writes) is not recognised.
fn payload_facts<'a>(frame: &'a str, i: usize, facts: &mut RawFacts<'a>) -> Option<usize> {
    let b = frame.as_bytes();
    let (mut guild_id, mut id, mut unavailable) = (None, None, None);
    let end = blocks::top_level_strings(b, i, |quote| {
        let rest = &b[quote + 1..];
        // Most strings are other keys and values: one byte turns them away.
        let key_len = match rest.first() {
            Some(b'g') if rest.starts_with(b"guild_id\"") => 8,
            Some(b'i') if rest.starts_with(b"id\"") => 2,
            Some(b'u') if rest.starts_with(b"unavailable\"") => 11,
            _ => return Some(()),
        };
        let colon = skip_ws(b, quote + key_len + 2);
        if b.get(colon) != Some(&b':') {
            return Some(()); // A string value that happens to read "id".
        }
        let start = skip_ws(b, colon + 1);
        let value = &frame[start..skip_value(b, start)?];
        match key_len {
            8 => set(&mut guild_id, nullable(value, plain_string)),
            2 => set(&mut id, nullable(value, plain_string)),
            _ => set(&mut unavailable, nullable(value, boolean)),
        }
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

/// A string without escapes. Ids and event names are short: a byte loop answers before
/// a `memchr` call is set up.
fn plain_string(value: &str) -> Option<&str> {
    let inner = value.strip_prefix('"')?.strip_suffix('"')?;
    (!inner.bytes().any(|c| c == b'\\')).then_some(inner)
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
        b'{' | b'[' => blocks::skip_container(b, i),
        _ => {
            let len = b[i..]
                .iter()
                .position(|c| matches!(c, b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t'))
                .unwrap_or(b.len() - i);
            (len > 0).then_some(i + len)
        }
    }
}

mod blocks;
#[cfg(test)]
mod tests;
