use super::blocks::skip_container;
use super::*;

/// A small deterministic generator of JSON values full of what trips a scanner:
/// brackets and quotes inside strings, runs of backslashes, long strings that cross
/// 64-byte blocks, deep nesting.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn string(&mut self, out: &mut String) {
        out.push('"');
        let len = [0, 1, 5, 20, 63, 64, 65, 130][self.below(8) as usize];
        for _ in 0..len {
            match self.below(12) {
                0 => out.push_str(r#"\""#),
                1 => out.push_str(r"\\"),
                2 => out.push_str(r#"\\\""#),
                3 => out.push_str(r"\u005c"),
                4 => out.push_str("{["),
                5 => out.push_str("]}"),
                6 => out.push('é'),
                _ => out.push((b'a' + self.below(26) as u8) as char),
            }
        }
        out.push('"');
    }

    fn value(&mut self, out: &mut String, depth: u32) {
        let pick = if depth > 6 {
            self.below(4)
        } else {
            self.below(7)
        };
        match pick {
            0 => self.string(out),
            1 => out.push_str(&self.next().to_string()),
            2 => out.push_str(["true", "false", "null", "-1.5e3"][self.below(4) as usize]),
            3 => out.push_str("{}"),
            4 | 5 => {
                out.push('{');
                for k in 0..self.below(6) {
                    if k > 0 {
                        out.push_str(if self.below(2) == 0 { "," } else { " ,\n " });
                    }
                    self.string(out);
                    out.push(':');
                    self.value(out, depth + 1);
                }
                out.push('}');
            }
            _ => {
                out.push('[');
                for k in 0..self.below(6) {
                    if k > 0 {
                        out.push(',');
                    }
                    self.value(out, depth + 1);
                }
                out.push(']');
            }
        }
    }
}

#[test]
fn skip_container_agrees_with_serde_json() {
    let mut generator = Gen(0x9e37_79b9_7f4a_7c15);
    let mut checked = 0;
    for _ in 0..5_000 {
        let mut value = String::new();
        generator.value(&mut value, 0);
        if !value.starts_with(['{', '[']) {
            continue;
        }
        // The oracle: serde_json must accept it, and says where it ends.
        let _: serde::de::IgnoredAny = serde_json::from_str(&value).expect(&value);
        let text = format!("{value} ,\"after\"]");
        assert_eq!(
            skip_container(text.as_bytes(), 0),
            Some(value.len()),
            "{value}"
        );
        checked += 1;
    }
    assert!(checked > 1_000, "only {checked} containers generated");
}

#[test]
fn skip_container_needs_the_close() {
    for text in [
        r#"{"a":[1,2]"#,
        r#"{"a":"}"#,
        r#"["\"]"#,
        "[[[]]",
        r#"{"a":"\\"#,
    ] {
        assert_eq!(skip_container(text.as_bytes(), 0), None, "{text}");
    }
    assert_eq!(skip_container(b"]", 0), None);
}

#[test]
fn strings_across_blocks() {
    let long = "x".repeat(63);
    for text in [
        format!(r#"{{"{long}\"}}":1}}"#),
        format!(r#"[ "{long}\\", "}}" ]"#),
        format!(
            r#"[{long:?}, "\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\"]"#
        ),
    ] {
        serde_json::from_str::<serde::de::IgnoredAny>(&text).expect(&text);
        assert_eq!(
            skip_container(text.as_bytes(), 0),
            Some(text.len()),
            "{text}"
        );
    }
}

#[test]
fn reads_top_level_facts_only() {
    let frame = r#"{"t":"X","s":1,"op":0,"d":{"member":{"guild_id":"1","id":"2"},"x":[{"id":"3"}],"s":"a\"}{","guild_id":"42","unavailable":true}}"#;
    let env = envelope(frame).unwrap();
    assert_eq!(
        env.facts,
        RawFacts {
            guild_id: Some("42"),
            id: None,
            unavailable: Some(true)
        }
    );
    let env = envelope(r#"{"op":0,"d": { "id" : "7" , "n" : -1.5e3 } }"#).unwrap();
    assert_eq!(env.facts.id, Some("7"));
    let env = envelope(r#"{"op":0,"d":{"guild_id":null}}"#).unwrap();
    assert_eq!(env.facts, RawFacts::default());
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
    let array = r#"{"op":0,"s":1,"t":"X","d":[1,{"guild_id":"5"}]}"#;
    let env = envelope(array).unwrap();
    assert_eq!(&array[env.d.unwrap()], r#"[1,{"guild_id":"5"}]"#);
    assert_eq!(env.facts, RawFacts::default());
}

#[test]
fn leaves_the_unusual_to_serde() {
    for frame in [
        "not json",
        r#"{"t":"X"}"#,
        r#"{"op":"0"}"#,
        r#"{"op":0,"op":0}"#,
        r#"{"op":0,"t":"A\u0042"}"#,
        r#"{"op":0} trailing"#,
        r#"{"op":0,"d":{"unterminated":"}"#,
        r#"{"op":300}"#,
        r#"{"op":0,"d":{"guild_id":5}}"#,
        r#"{"op":0,"d":{"guild_id":"1","guild_id":"2"}}"#,
        r#"{"op":0,"d":{"id":"1\u0032"}}"#,
        r#"{"op":0,"d":{},"d":{}}"#,
    ] {
        assert_eq!(envelope(frame), None, "{frame}");
    }
}

#[test]
fn payload_keys_are_matched_byte_for_byte() {
    // Discord never escapes ASCII in keys; such a key is not recognised (documented).
    let env = envelope(r#"{"op":0,"d":{"guild\u005fid":"1"}}"#).unwrap();
    assert_eq!(env.facts.guild_id, None);
}

#[test]
fn top_level_facts_agree_with_serde_json() {
    let mut generator = Gen(0x2545_f491_4f6c_dd1d);
    for n in 0..3_000u64 {
        let members = generator.below(5);
        let real_at = (n % 3 != 0).then(|| generator.below(members + 1));
        let mut d = String::from("{");
        for k in 0..=members {
            if Some(k) == real_at {
                d.push_str(&format!(r#""guild_id" : "{n}","#));
            }
            if k == members {
                break;
            }
            generator.string(&mut d);
            d.push(':');
            generator.value(&mut d, 1);
            d.push(',');
        }
        d.push_str(
            r#""nested":{"guild_id":"999","id":"998"},"v":"\"guild_id\":\"997\"","w":"id"}"#,
        );
        let want: serde_json::Value = serde_json::from_str(&d).expect(&d);
        let frame = format!(r#"{{"op":0,"s":1,"t":"X","d":{d}}}"#);
        let env = envelope(&frame).expect(&frame);
        assert_eq!(&frame[env.d.unwrap()], d);
        assert_eq!(env.facts.guild_id, want["guild_id"].as_str(), "{d}");
        assert_eq!(env.facts.id, None, "{d}");
    }
}
