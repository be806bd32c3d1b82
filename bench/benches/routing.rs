//! Routing cost: what the gateway reads from a frame (`op`, `t`, `s`, the guild id and
//! the byte range of `d`) against a full deserialization of the same frames into
//! twilight-model events, and simd-json as a candidate for the routing read.
//!
//! `cargo bench -p shardline-bench --bench routing`. Frames are the recorded mix
//! (`bench/fixtures`), wrapped as the simulator (and Discord) sends them.

// criterion_group! generates an undocumented pub fn.
#![allow(missing_docs)]

use std::borrow::Cow;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde::Deserialize;
use serde::de::DeserializeSeed;
use shardline_bench::fixture;
use shardline_gateway::{Frame, parse, parse_with_serde};
use twilight_model::gateway::event::GatewayEventDeserializer;

fn frames(filter: impl Fn(&fixture::Event) -> bool) -> Vec<String> {
    fixture::load()
        .iter()
        .filter(|e| filter(e))
        .enumerate()
        .map(|(i, e)| {
            format!(
                r#"{{"op":0,"s":{},"t":"{}","d":{}}}"#,
                i + 1,
                e.name,
                e.data
            )
        })
        .collect()
}

/// What the gateway does per frame before building headers: one structural pass.
fn route(frame: &str) -> (u64, Option<u64>, usize) {
    match parse(frame) {
        Ok(Frame::Dispatch(d)) => (d.sequence, d.facts.guild_id, d.data.len()),
        _ => (0, None, 0),
    }
}

/// The same read by serde_json alone (the gateway's fallback, and its code before the
/// structural read): every byte of `d` validated, twice.
fn route_serde(frame: &str) -> (u64, Option<u64>, usize) {
    match parse_with_serde(frame) {
        Ok(Frame::Dispatch(d)) => (d.sequence, d.facts.guild_id, d.data.len()),
        _ => (0, None, 0),
    }
}

/// twilight-gateway's own path to an event: the envelope scan, then the event type.
fn full(frame: &str) -> bool {
    let Some(seed) = GatewayEventDeserializer::from_json(frame) else {
        return false;
    };
    let mut de = serde_json::Deserializer::from_str(frame);
    seed.deserialize(&mut de).is_ok()
}

#[derive(Deserialize)]
struct SimdFrame<'a> {
    op: u8,
    s: Option<u64>,
    #[serde(borrow)]
    t: Option<Cow<'a, str>>,
    #[serde(borrow)]
    d: Option<SimdFacts<'a>>,
}

#[derive(Deserialize)]
struct SimdFacts<'a> {
    #[serde(borrow)]
    guild_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    unavailable: Option<bool>,
}

/// simd-json's best case for the same read: one pass for the envelope and the guild
/// facts, on a copy (simd-json unescapes in place, and the payload must be published
/// byte for byte). It cannot give the byte range of `d`, so this is a lower bound.
fn simd(frame: &str, copy: &mut Vec<u8>, buffers: &mut simd_json::Buffers) -> (u64, bool) {
    copy.clear();
    copy.extend_from_slice(frame.as_bytes());
    match simd_json::serde::from_slice_with_buffers::<SimdFrame<'_>>(copy, buffers) {
        Ok(f) => {
            let d = f.d.as_ref();
            let guild = d.and_then(|d| d.guild_id.as_ref().or(d.id.as_ref()));
            let unavailable = d.and_then(|d| d.unavailable).unwrap_or(false);
            (
                f.s.unwrap_or(u64::from(f.op)),
                guild.is_some() && f.t.is_some() && !unavailable,
            )
        }
        Err(_) => (0, false),
    }
}

fn bench_set(c: &mut Criterion, name: &str, frames: &[String]) {
    let bytes: usize = frames.iter().map(String::len).sum();
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("route (structural, one pass)", |b| {
        b.iter(|| {
            for f in frames {
                black_box(route(black_box(f)));
            }
        });
    });
    group.bench_function("route by serde_json (envelope + guild facts)", |b| {
        b.iter(|| {
            for f in frames {
                black_box(route_serde(black_box(f)));
            }
        });
    });
    group.bench_function("full twilight-model deserialization", |b| {
        b.iter(|| {
            for f in frames {
                black_box(full(black_box(f)));
            }
        });
    });
    let mut copy = Vec::new();
    let mut buffers = simd_json::Buffers::new(1 << 20);
    group.bench_function("simd-json envelope + guild facts (no range)", |b| {
        b.iter(|| {
            for f in frames {
                black_box(simd(black_box(f), &mut copy, &mut buffers));
            }
        });
    });
    group.finish();
}

fn routing(c: &mut Criterion) {
    bench_set(c, "mix", &frames(|_| true));
    bench_set(c, "small", &frames(|e| e.data.len() <= 2048));
    bench_set(c, "guild_create", &frames(|e| &*e.name == "GUILD_CREATE"));
}

criterion_group!(benches, routing);
criterion_main!(benches);
