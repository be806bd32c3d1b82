//! Several gateway processes start at once and share the identify rate limit
//! through NATS: never more than `max_concurrency` identifies per 5 s, one per
//! bucket `shard_id % max_concurrency`.

mod common;

use common::process::GatewayProcess;
use shardline_discord_sim::{SimConfig, Simulator};
use shardline_testkit::{NatsServer, init_tracing};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_started_together_respect_max_concurrency() {
    init_tracing();
    let nats = NatsServer::start();
    // Four shards in two buckets: two identify rounds, 5 s apart.
    let sim = Simulator::start(SimConfig {
        shard_total: 4,
        max_concurrency: 2,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let processes: Vec<_> = (0..4)
        .map(|shard| GatewayProcess::spawn(&sim, &nats.url(), &[("SHARD_IDS", shard.to_string())]))
        .collect();
    for shard in 0..4 {
        sim.wait_ready(shard).await;
    }
    let identifies = sim.identifies();
    let mut shards: Vec<u32> = identifies.iter().map(|r| r.shard).collect();
    shards.sort_unstable();
    assert_eq!(shards, vec![0, 1, 2, 3], "each shard identified once");
    assert_eq!(sim.identify_rate_violations(), 0);

    let first = identifies[0].at;
    let timings: Vec<_> = identifies
        .iter()
        .map(|r| (r.shard, r.at.duration_since(first)))
        .collect();
    eprintln!("identify times after the first (shard, offset): {timings:?}");
    for process in processes {
        let (status, stderr) = process.signal_and_wait("TERM").await;
        assert!(status.success(), "{stderr}");
    }
}
