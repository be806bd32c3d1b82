//! The recorded payload mix every scenario plays.
//!
//! `fixtures/realistic-mix.jsonl.zst` holds [`FIXTURE_EVENTS`] dispatches drawn from the
//! simulator's realistic mix (seed [`FIXTURE_SEED`]): mostly 0.3-2 KiB events and about
//! 0.5% GUILD_CREATE of 50-300 KiB. It is recorded, not generated at run time, so a
//! change to the simulator's generators never silently changes the benchmark, and so no
//! run spends CPU building JSON. `shardline-bench record-fixture` writes it again.

use std::sync::Arc;

use anyhow::Context as _;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use shardline_discord_sim::{realistic_event, sample, synthetic_guild};

/// The fixture, zstd-compressed JSON lines `{"t": EVENT, "d": PAYLOAD}`.
const FIXTURE: &[u8] = include_bytes!("../fixtures/realistic-mix.jsonl.zst");
/// Where `record-fixture` writes, relative to the workspace root.
pub const FIXTURE_PATH: &str = "bench/fixtures/realistic-mix.jsonl.zst";
/// Dispatches in the fixture.
pub const FIXTURE_EVENTS: usize = 2_000;
/// Seed of the generator the fixture was recorded with.
pub const FIXTURE_SEED: u64 = 5;
/// Guilds the fixture's events name (the first READY guilds of a one-shard bot).
const GUILDS: u64 = 8;

/// One recorded dispatch.
#[derive(Clone, Debug)]
pub struct Event {
    /// The dispatch name (`t`).
    pub name: Arc<str>,
    /// The payload (`d`), byte for byte.
    pub data: Arc<str>,
}

#[derive(Serialize, Deserialize)]
struct Line<'a> {
    t: &'a str,
    #[serde(borrow)]
    d: &'a RawValue,
}

/// The recorded mix, in recorded order.
///
/// # Panics
///
/// If the embedded fixture is corrupt (a build-time mistake).
pub fn load() -> Vec<Event> {
    let text = decompress(FIXTURE).expect("embedded fixture decompresses");
    text.lines()
        .map(|line| {
            let line: Line<'_> = serde_json::from_str(line).expect("fixture line");
            Event {
                name: Arc::from(line.t),
                data: Arc::from(line.d.get()),
            }
        })
        .collect()
}

/// The recorded events named `name` (for single-event floods).
pub fn only(events: &[Event], name: &str) -> Vec<Event> {
    events
        .iter()
        .filter(|e| &*e.name == name)
        .cloned()
        .collect()
}

/// Records the fixture again from the simulator's generators.
///
/// # Errors
///
/// If the file cannot be written.
pub fn record(path: &std::path::Path) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(FIXTURE_SEED);
    let mut text = String::new();
    for i in 0..FIXTURE_EVENTS {
        let name = realistic_event(&mut rng);
        let guild = synthetic_guild(0, 1, i as u64 % GUILDS);
        let d = sample(name, guild, &mut rng);
        let raw = RawValue::from_string(d)?;
        text.push_str(&serde_json::to_string(&Line { t: name, d: &raw })?);
        text.push('\n');
    }
    let bound = zstd_safe::compress_bound(text.len());
    let mut out = vec![0u8; bound];
    let n = zstd_safe::compress(&mut out[..], text.as_bytes(), 19)
        .map_err(|c| anyhow::anyhow!("zstd: {}", zstd_safe::get_error_name(c)))?;
    out.truncate(n);
    std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn decompress(bytes: &[u8]) -> anyhow::Result<String> {
    let size = zstd_safe::get_frame_content_size(bytes)
        .ok()
        .flatten()
        .context("fixture has no content size")?;
    let mut out = vec![0u8; usize::try_from(size)?];
    let n = zstd_safe::decompress(&mut out[..], bytes)
        .map_err(|c| anyhow::anyhow!("zstd: {}", zstd_safe::get_error_name(c)))?;
    out.truncate(n);
    Ok(String::from_utf8(out)?)
}

/// Size statistics of a mix, for the report.
pub fn describe(events: &[Event]) -> String {
    let total: usize = events.iter().map(|e| e.data.len()).sum();
    let big = events.iter().filter(|e| e.data.len() >= 50 * 1024).count();
    let small = events
        .iter()
        .filter(|e| (300..=2048).contains(&e.data.len()))
        .count();
    format!(
        "{} events, mean {} B, {} in 0.3-2 KiB, {} of 50 KiB or more",
        events.len(),
        total / events.len().max(1),
        small,
        big
    )
}
