//! `/metrics` emits every fixed metric name; `/healthz` answers; `/readyz` is 503
//! until every shard has a session, 200 then, 503 while NATS is away, 200 again.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use async_nats::jetstream::kv;
use common::http::{get, sample};
use common::{PATIENCE, free_port, sim_config};
use shardline_discord_sim::{SimConfig, Simulator};
use shardline_gateway::Config;
use shardline_proto::gateway::{IDENTIFY_BUCKET, IDENTIFY_LEASE, identify_key};
use shardline_testkit::{NatsServer, eventually, init_tracing};
use tokio_util::sync::CancellationToken;

const NAMES: &[&str] = &[
    "gateway_events_received_total",
    "gateway_events_published_total",
    "gateway_events_dropped_total",
    "gateway_publish_errors_total",
    "gateway_publish_duration_seconds_bucket",
    "gateway_publish_inflight",
    "gateway_publish_inflight_bytes",
    "gateway_shard_connected",
    "gateway_shard_latency_seconds",
    "gateway_shard_reconnects_total",
    "gateway_topology_repairs_total",
];

async fn readyz(addr: SocketAddr) -> Option<u16> {
    get(addr, "/readyz").await.map(|(status, _)| status)
}

async fn wait_readyz(addr: SocketAddr, want: u16) {
    eventually(&format!("/readyz {want}"), PATIENCE, || async move {
        (readyz(addr).await == Some(want)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_shards_and_nats() {
    init_tracing();
    let nats = NatsServer::start();
    // Hold shard 0's identify lease (as another process would) so the gateway
    // starts with shard 0 waiting: /readyz must say 503 then.
    let js = async_nats::jetstream::new(nats.client().await);
    let leases = js
        .create_key_value(kv::Config {
            bucket: IDENTIFY_BUCKET.to_owned(),
            history: 1,
            max_age: IDENTIFY_LEASE,
            storage: async_nats::jetstream::stream::StorageType::Memory,
            ..Default::default()
        })
        .await
        .unwrap();
    leases
        .create(identify_key(0, 16), "other".into())
        .await
        .unwrap();

    let sim = Simulator::start(SimConfig {
        // Short heartbeats so a latency is measured during the test.
        heartbeat_interval: Duration::from_millis(500),
        ..sim_config()
    })
    .await
    .unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut config = Config::for_gateway(&sim.config().token, &sim.gateway_url(), 2, &nats.url());
    config.max_concurrency = Some(16);
    config.metrics_addr = Some(addr);
    let shutdown = CancellationToken::new();
    let gateway = tokio::spawn(shardline_gateway::run(config, shutdown.clone()));

    sim.wait_ready(1).await;
    assert_eq!(get(addr, "/healthz").await.map(|r| r.0), Some(200));
    // The simulator has sent shard 1's READY; the gateway marks it connected when it
    // has read it, so wait for /readyz to name shard 0 alone.
    let why = eventually("/readyz names only shard 0", PATIENCE, || async move {
        let (status, why) = get(addr, "/readyz").await?;
        (status == 503 && why.contains("[0]")).then_some(why)
    })
    .await;
    assert_eq!(
        sim.ready_shards(),
        vec![1],
        "shard 0 still waits for the lease: {why}"
    );

    sim.wait_ready(0).await;
    wait_readyz(addr, 200).await;
    sim.dispatch(0, "MESSAGE_CREATE", r#"{"guild_id":"1","content":"x"}"#)
        .await;
    eventually("a latency sample", PATIENCE, || async move {
        let (_, metrics) = get(addr, "/metrics").await?;
        sample(&metrics, "gateway_shard_latency_seconds", "shard=\"0\"")?;
        (sample(&metrics, "gateway_events_published_total", "")? >= 1.0).then_some(())
    })
    .await;
    let (_, metrics) = get(addr, "/metrics").await.unwrap();
    for name in NAMES {
        assert!(
            metrics.lines().any(|l| l.starts_with(name)),
            "{name} missing from /metrics:\n{metrics}"
        );
    }
    assert_eq!(
        sample(&metrics, "gateway_shard_connected", "shard=\"0\""),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &metrics,
            "gateway_shard_reconnects_total",
            "kind=\"identify\",shard=\"1\""
        )
        .or_else(|| sample(
            &metrics,
            "gateway_shard_reconnects_total",
            "shard=\"1\",kind=\"identify\""
        )),
        Some(1.0)
    );

    let mut nats = nats;
    nats.kill();
    wait_readyz(addr, 503).await;
    nats.restart();
    wait_readyz(addr, 200).await;

    shutdown.cancel();
    gateway.await.unwrap().unwrap();
}
