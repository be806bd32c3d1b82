//! The routing read's fast path: the frame envelope and the payload's top-level
//! guild facts, read by walking JSON structure (issue 5's profile: serde_json
//! validating every byte of `d`, twice, was the gateway's largest cost).
//!
//! Strings are skipped with `memchr`, nested objects and arrays by counting brackets
//! outside strings. The grammar inside skipped values is not checked: a payload is
//! published byte for byte and a worker that cannot deserialize it terms it. Anything
//! unusual where a routed value is read (an escaped key, a repeated key, a value of an
//! unexpected type, a missing field, trailing bytes) returns `None`, and the caller
//! falls back to serde_json, which decides exactly as before.

use std::borrow::Cow;
use std::ops::Range;

use memchr::memchr2;

/// A frame's envelope: `op`, `s`, `t` and the byte range of `d` (`None` for null).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Envelope<'a> {
    pub op: u8,
    pub s: Option<u64>,
    pub t: Option<Cow<'a, str>>,
    pub d: Option<Range<usize>>,
}

/// Reads the envelope of a frame, or `None` where serde_json must decide.
pub(crate) fn envelope(frame: &str) -> Option<Envelope<'_>> {
    let b = frame.as_bytes();
    let (mut op, mut s, mut t, mut d) = (None, None, None, None);
    let end = object(b, 0, |key, value| match key {
        b"op" => set(
            &mut op,
            digits(&frame[value]).and_then(|n| u8::try_from(n).ok()),
        ),
        b"s" => set(&mut s, nullable(&frame[value], digits)),
        b"t" => set(&mut t, nullable(&frame[value], plain_string)),
        b"d" => set(
            &mut d,
            Some((&frame[value.clone()] != "null").then_some(value)),
        ),
        _ => Some(()),
    })?;
    if skip_ws(b, end) != b.len() {
        return None;
    }
    Some(Envelope {
        op: op?,
        s: s.flatten(),
        t: t.flatten().map(Cow::Borrowed),
        d: d.flatten(),
    })
}

/// Walks the object at `b[i]`, calling `on` with each raw key and value range;
/// returns the index after it.
fn object(
    b: &[u8],
    i: usize,
    mut on: impl FnMut(&[u8], Range<usize>) -> Option<()>,
) -> Option<usize> {
    let mut i = skip_ws(b, i);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b'}') {
        return Some(i + 1);
    }
    loop {
        let (key, next) = string(b, i)?;
        if key.contains(&b'\\') {
            return None;
        }
        i = skip_ws(b, next);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(b, i + 1);
        let end = skip_value(b, i)?;
        on(key, i..end)?;
        i = skip_ws(b, end);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => return Some(i + 1),
            _ => return None,
        }
    }
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

/// `null` -> `Some(None)`, a value `read` accepts -> `Some(Some(v))`, else `None`.
fn nullable<'a, T>(value: &'a str, read: impl Fn(&'a str) -> Option<T>) -> Option<Option<T>> {
    if value == "null" {
        Some(None)
    } else {
        read(value).map(Some)
    }
}

/// `guild_id`, `id` and `unavailable` of a top-level object, as serde_json would read
/// them into `Option<&str>`, `Option<&str>` and `Option<bool>`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct RawFacts<'a> {
    pub guild_id: Option<&'a str>,
    pub id: Option<&'a str>,
    pub unavailable: Option<bool>,
}

/// Reads the facts of a payload object, or `None` where serde_json must decide.
pub(crate) fn raw_facts(data: &str) -> Option<RawFacts<'_>> {
    let (mut guild_id, mut id, mut unavailable) = (None, None, None);
    let end = object(data.as_bytes(), 0, |key, value| match key {
        b"guild_id" => set(&mut guild_id, nullable(&data[value], plain_string)),
        b"id" => set(&mut id, nullable(&data[value], plain_string)),
        b"unavailable" => set(&mut unavailable, nullable(&data[value], boolean)),
        _ => Some(()),
    })?;
    if skip_ws(data.as_bytes(), end) != data.len() {
        return None;
    }
    Some(RawFacts {
        guild_id: guild_id.flatten(),
        id: id.flatten(),
        unavailable: unavailable.flatten(),
    })
}

/// Stores a read value; an unreadable value (`None`) or a repeated key (an error
/// for serde's derive) hands the decision to serde.
fn set<T>(slot: &mut Option<T>, value: Option<T>) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(value?);
    Some(())
}

fn boolean(value: &str) -> Option<bool> {
    match value {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\n' | b'\r' | b'\t')) {
        i += 1;
    }
    i
}

/// The raw contents of the string starting at `b[i] == '"'`, and the index after it.
fn string(b: &[u8], i: usize) -> Option<(&[u8], usize)> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let end = string_end(b, i + 1)?;
    Some((&b[i + 1..end], end + 1))
}

/// The index of the quote closing the string whose contents start at `j`. Most JSON
/// strings are short keys and ids: a plain loop finds their end sooner than a
/// `memchr` call is set up; long ones (message content) go to `memchr2`.
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

/// The index just after the value starting at `i`.
fn skip_value(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => string(b, i).map(|(_, end)| end),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match *b.get(j)? {
                    b'"' => {
                        j = string_end(b, j + 1)? + 1;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let len = b[i..]
                .iter()
                .position(|c| matches!(c, b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t'))
                .unwrap_or(b.len() - i);
            Some(i + len)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_top_level_facts_only() {
        let d = r#"{"member":{"guild_id":"1","id":"2"},"x":[{"id":"3"}],"s":"a\"}{","guild_id":"42","unavailable":true}"#;
        assert_eq!(
            raw_facts(d),
            Some(RawFacts {
                guild_id: Some("42"),
                id: None,
                unavailable: Some(true)
            })
        );
        assert_eq!(
            raw_facts(r#" { "id" : "7" , "n" : -1.5e3 } "#).unwrap().id,
            Some("7")
        );
        assert_eq!(raw_facts("{}"), Some(RawFacts::default()));
        assert_eq!(raw_facts(r#"{"guild_id":null}"#).unwrap().guild_id, None);
    }

    #[test]
    fn reads_envelopes_in_any_order() {
        let frame = r#"{"d":{"k":[1,"}"]},"t":"X","op":0,"s":7}"#;
        let env = envelope(frame).unwrap();
        assert_eq!((env.op, env.s, env.t.as_deref()), (0, Some(7), Some("X")));
        assert_eq!(&frame[env.d.unwrap()], r#"{"k":[1,"}"]}"#);
        let hello = envelope(r#"{"op":10,"d":null,"s":null,"t":null}"#).unwrap();
        assert_eq!(
            (hello.op, hello.s, hello.t, hello.d),
            (10, None, None, None)
        );
    }

    #[test]
    fn leaves_unusual_envelopes_to_serde() {
        for frame in [
            "not json",
            r#"{"t":"X"}"#,
            r#"{"op":"0"}"#,
            r#"{"op":0,"op":0}"#,
            r#"{"op":0,"t":"A\u0042"}"#,
            r#"{"op":0} trailing"#,
            r#"{"op":0,"d":{"unterminated":"}"#,
            r#"{"op":300}"#,
        ] {
            assert_eq!(envelope(frame), None, "{frame}");
        }
    }

    #[test]
    fn leaves_the_unusual_to_serde() {
        assert_eq!(raw_facts("[]"), None);
        assert_eq!(raw_facts(r#"{"guild_id":5}"#), None);
        assert_eq!(raw_facts(r#"{"guild_id":"1","guild_id":"2"}"#), None);
        assert_eq!(raw_facts(r#"{"guild\u005fid":"1"}"#), None);
        assert_eq!(raw_facts(r#"{"id":"1\u0032"}"#), None);
    }
}
