//! NATS goes away for [`OUTAGE`] and comes back (same port, memory streams lost):
//! the gateway keeps its shards, stops reading at its in-flight bound instead of
//! buffering, recreates the topology, and every event Discord sent during the
//! outage reaches the stream exactly once. RSS of the gateway process is sampled
//! during the outage and printed.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::http::{get, sample};
use common::process::GatewayProcess;
use common::{
    PATIENCE, assert_exactly_once, expected_subjects, free_port, published_messages, sim_config,
    wait_stored,
};
use shardline_discord_sim::{Mix, SimEvent, Simulator, TrafficPlan};
use shardline_testkit::{NatsServer, eventually, init_tracing};

/// How long NATS is down.
const OUTAGE: Duration = Duration::from_secs(30);
/// The gateway's in-flight bound for this test (small, so the outage reaches it).
const MAX_INFLIGHT: usize = 64;
/// Events per second Discord sends during the outage, over both shards.
const RATE: u32 = 100;

async fn readyz(addr: SocketAddr, want: u16) {
    eventually(&format!("/readyz {want}"), PATIENCE, || async move {
        (get(addr, "/readyz").await?.0 == want).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thirty_second_nats_outage_loses_nothing() {
    init_tracing();
    let mut nats = NatsServer::start();
    let sim = Simulator::start(sim_config()).await.unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let gateway = GatewayProcess::spawn(
        &sim,
        &nats.url(),
        &[
            ("MAX_INFLIGHT_PUBLISHES", MAX_INFLIGHT.to_string()),
            ("METRICS_ADDR", addr.to_string()),
        ],
    );
    sim.wait_ready(0).await;
    sim.wait_ready(1).await;
    readyz(addr, 200).await;
    let rss_before = gateway.rss_kib().unwrap_or(0);
    let mut events = sim.events();

    // Everything sent so far (READY's lazy GUILD_CREATEs) is stored before the kill,
    // so no publish is in flight: the restarted, empty streams must then hold exactly
    // what was sent after the kill. (An unacked publish would rightly be retried into
    // them, which this test's oracle would count as never sent.)
    let mark = sim.sent().len();
    wait_stored(&nats, expected_subjects(&sim.sent()).len() as u64).await;
    assert_eq!(
        sim.sent().len(),
        mark,
        "no traffic before the outage starts"
    );
    nats.kill();
    readyz(addr, 503).await;
    let traffic = tokio::spawn({
        let sim = sim.clone();
        async move {
            sim.play(TrafficPlan {
                shards: vec![0, 1],
                events_per_shard: (RATE as usize * OUTAGE.as_secs() as usize) / 2,
                rate_per_second: Some(RATE),
                mix: Mix::Only("MESSAGE_CREATE".to_owned()),
                seed: 30,
            })
            .await
        }
    });
    // The outage itself: sample memory and the in-flight gauge while it lasts.
    let started = Instant::now();
    let (mut rss_max, mut inflight_max) = (0, 0.0f64);
    while started.elapsed() < OUTAGE {
        rss_max = rss_max.max(gateway.rss_kib().unwrap_or(0));
        if let Some((_, metrics)) = get(addr, "/metrics").await {
            let inflight = sample(&metrics, "gateway_publish_inflight", "").unwrap_or(0.0);
            inflight_max = inflight_max.max(inflight);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    nats.restart();
    let sent_during = traffic.await.unwrap().len();
    readyz(addr, 200).await;

    let sent = sim.sent();
    let after_kill = &sent[mark..];
    let want = after_kill.len() as u64;
    wait_stored(&nats, want).await;
    let (status, _) = gateway.signal_and_wait("TERM").await;
    assert!(status.success());

    // The memory streams restarted empty: they hold exactly what came after the kill.
    let checked = assert_exactly_once(after_kill, &published_messages(&nats).await);
    assert_eq!(checked, sent_during);
    assert_eq!(
        inflight_max, MAX_INFLIGHT as f64,
        "the in-flight bound was reached and held"
    );
    let mut reconnected = Vec::new();
    while let Ok(event) = events.try_recv() {
        if matches!(
            event,
            SimEvent::Identified { .. } | SimEvent::Resumed { .. }
        ) {
            reconnected.push(event);
        }
    }
    eprintln!(
        "NATS down {OUTAGE:?}: {checked} events sent during the outage, all stored once (0 lost, 0 duplicated); \
         gateway RSS {rss_before} KiB before, at most {rss_max} KiB during; in flight at most {inflight_max}; \
         shard reconnects {reconnected:?}"
    );
}
