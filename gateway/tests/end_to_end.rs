//! Mixed traffic over two shards arrives exactly once, on the right subjects, with
//! the right headers and byte-exact payloads.
//!
//! The suite runs this file three times: with the default `zstd` feature
//! (zstd-stream), with `zlib` only (zlib-stream) and with neither (plain text),
//! because twilight-gateway chooses its transport compression at compile time.

mod common;

use common::{Harness, assert_exactly_once, published_messages, sim_config};
use shardline_discord_sim::{Mix, TrafficPlan, TransportCompression};

/// What this build of twilight-gateway asks for.
fn compression() -> TransportCompression {
    if cfg!(feature = "zstd") {
        TransportCompression::ZstdStream
    } else if cfg!(feature = "zlib") {
        TransportCompression::ZlibStream
    } else {
        TransportCompression::None
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_traffic_arrives_exactly_once() {
    let harness = Harness::start(sim_config()).await;
    let started = std::time::Instant::now();
    harness
        .sim
        .play(TrafficPlan {
            shards: vec![0, 1],
            events_per_shard: 1500,
            rate_per_second: None,
            mix: Mix::Realistic,
            seed: 7,
        })
        .await;
    let (nats, sim) = harness.stop_when_delivered().await;
    // Information only (speed is measured in benchmarks, not asserted here).
    let elapsed = started.elapsed();
    let sent = sim.sent();
    let messages = published_messages(&nats).await;
    let checked = assert_exactly_once(&sent, &messages);
    assert!(checked >= 3000, "checked {checked} dispatches");
    let kinds: std::collections::HashSet<_> = sent.iter().map(|s| s.event.as_str()).collect();
    for kind in [
        "MESSAGE_CREATE",
        "INTERACTION_CREATE",
        "GUILD_CREATE",
        "GUILD_MEMBER_UPDATE",
    ] {
        assert!(kinds.contains(kind), "traffic had no {kind}");
    }
    let used = sim.connection_compressions();
    assert!(
        !used.is_empty() && used.iter().all(|c| *c == compression()),
        "connections used {used:?}"
    );
    eprintln!(
        "{checked} dispatches exactly once over {:?} in {elapsed:?} (debug build)",
        compression()
    );
}
