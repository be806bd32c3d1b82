//! The broker restarts (same port, memory streams lost) under live traffic while a
//! core subscriber listens on `events.>`, as a person debugging with
//! `nats sub 'events.>'` does. The restarted server then answers a JetStream publish
//! to a subject no stream captures by handing it to that subscriber, so every publish
//! times out and none reports "no stream": the gateway must still find its streams
//! gone and recreate them. And a SIGTERM while the broker is away must end the
//! process in bounded time, the next start resuming whatever was not stored.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::gate::Gate;
use common::http::{get, sample};
use common::process::GatewayProcess;
use common::{
    PATIENCE, assert_once_since, expected_subjects, free_port, published_messages, sim_config,
};
use futures_util::StreamExt;
use shardline_discord_sim::{Mix, Sent, Simulator, TrafficPlan};
use shardline_testkit::{NatsServer, eventually, init_tracing, poll_until};

/// How long the gateway may take to exit after SIGTERM, whatever the broker does
/// (the gateway's own stages add up to about 23 s; ECS waits 60 s).
const SHUTDOWN_BOUND: Duration = Duration::from_secs(30);

async fn readyz(addr: SocketAddr, want: u16) {
    eventually(&format!("/readyz {want}"), PATIENCE, || async move {
        (get(addr, "/readyz").await?.0 == want).then_some(())
    })
    .await;
}

async fn metric(addr: SocketAddr, name: &str, labels: &str) -> f64 {
    let (_, text) = get(addr, "/metrics").await.unwrap_or_default();
    sample(&text, name, labels).unwrap_or(0.0)
}

/// Plays `events` on both shards at `rate` a second, in the background.
fn traffic(
    sim: &Simulator,
    events: usize,
    rate: u32,
    seed: u64,
) -> tokio::task::JoinHandle<Vec<Sent>> {
    let sim = sim.clone();
    tokio::spawn(async move {
        sim.play(TrafficPlan {
            shards: vec![0, 1],
            events_per_shard: events / 2,
            rate_per_second: Some(rate),
            mix: Mix::Only("MESSAGE_CREATE".to_owned()),
            seed,
        })
        .await
    })
}

/// Waits until every dispatch sent from `since` on is stored, then checks that
/// nothing is stored twice; returns how many were checked.
async fn stored_once_since(nats: &NatsServer, sim: &Simulator, since: usize) -> usize {
    let sent = sim.sent();
    // READY and RESUMED are never published: only what routes to a subject counts.
    let required = expected_subjects(&sent[since..]);
    let found = |messages: &[async_nats::jetstream::message::StreamMessage]| {
        let ids: std::collections::HashSet<&str> = messages
            .iter()
            .filter_map(|m| m.headers.get("Nats-Msg-Id"))
            .map(|id| id.as_str())
            .collect();
        sent[since..]
            .iter()
            .filter(|s| required.contains_key(&s.msg_id()) && !ids.contains(s.msg_id().as_str()))
            .map(|s| (s.shard, s.seq, s.event.clone()))
            .collect::<Vec<_>>()
    };
    let complete = poll_until(PATIENCE, || async {
        let messages = published_messages(nats).await;
        found(&messages).is_empty().then_some(messages)
    })
    .await;
    let messages = match complete {
        Some(messages) => messages,
        None => {
            let missing = found(&published_messages(nats).await);
            panic!(
                "{} of the {} events sent since the mark never stored (shard, seq, event): {:?}",
                missing.len(),
                sent.len() - since,
                &missing[..missing.len().min(10)]
            );
        }
    };
    assert_once_since(&sent, since, &messages)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_core_subscriber_through_a_broker_restart_does_not_keep_the_streams_away() {
    init_tracing();
    let mut nats = NatsServer::start();
    let sim = Simulator::start(sim_config()).await.unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    // The gateway reaches NATS through a gate, so the subscriber is back on the
    // restarted server before the gateway is: the case where publishes time out.
    let upstream = SocketAddr::from(([127, 0, 0, 1], nats.port()));
    let gate = Gate::start(upstream).await;
    let gateway = GatewayProcess::spawn(&sim, &gate.url(), &[("METRICS_ADDR", addr.to_string())]);
    sim.wait_ready(0).await;
    sim.wait_ready(1).await;
    readyz(addr, 200).await;

    let playing = traffic(&sim, 12_000, 800, 41);
    eventually("traffic flowing", PATIENCE, || async {
        (sim.sent_count() >= 1_000).then_some(())
    })
    .await;
    gate.close();
    nats.kill();
    // Marked once the server is gone: what it acknowledged before dying went with its
    // memory streams, and everything sent from here on was never acknowledged.
    let killed_at = sim.sent().len();
    readyz(addr, 503).await;
    nats.restart();
    // Someone debugging: a plain subscriber that never answers, there first.
    let seen = Arc::new(AtomicU64::new(0));
    let debugging = nats.client().await;
    let mut subscriber = debugging.subscribe("events.>").await.unwrap();
    debugging.flush().await.unwrap();
    tokio::spawn({
        let seen = seen.clone();
        async move {
            while subscriber.next().await.is_some() {
                seen.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    gate.open();
    // Bounded, and what the gateway was doing said, should a shard never read again.
    let played = match tokio::time::timeout(PATIENCE * 2, playing).await {
        Ok(sent) => sent.unwrap().len(),
        Err(_) => panic!(
            "the simulator's traffic never finished: {} sent; gateway in flight {}, \
             publish timeouts {}, EVENTS repairs {}, shards connected {}",
            sim.sent_count(),
            metric(addr, "gateway_publish_inflight", "").await,
            metric(
                addr,
                "gateway_publish_errors_total",
                r#"error_type="timed_out""#
            )
            .await,
            metric(addr, "gateway_topology_repairs_total", r#"stream="EVENTS""#).await,
            metric(addr, "gateway_shard_connected", r#"shard="0""#).await
                + metric(addr, "gateway_shard_connected", r#"shard="1""#).await,
        ),
    };

    let checked = stored_once_since(&nats, &sim, killed_at).await;
    let timed_out = metric(
        addr,
        "gateway_publish_errors_total",
        r#"error_type="timed_out""#,
    )
    .await;
    let no_stream = metric(
        addr,
        "gateway_publish_errors_total",
        r#"error_type="stream_not_found""#,
    )
    .await;
    let repairs = metric(addr, "gateway_topology_repairs_total", r#"stream="EVENTS""#).await;
    let (status, _) = gateway.signal_and_wait("TERM").await;
    assert!(status.success(), "exit status {status}");
    assert!(repairs >= 1.0, "the gateway recreated EVENTS");
    eprintln!(
        "broker restart with a core subscriber on events.> under 800 events/s ({played} played): \
         {checked} events sent after the kill, all stored once (0 lost, 0 duplicated); \
         publish attempts timed out {timed_out}, found no stream {no_stream}; EVENTS recreated \
         {repairs} time(s); the subscriber saw {} publishes",
        seen.load(Ordering::Relaxed)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_the_broker_is_away_exits_in_time_and_the_next_start_resumes() {
    init_tracing();
    let mut nats = NatsServer::start();
    let sim = Simulator::start(sim_config()).await.unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let env = [
        ("METRICS_ADDR", addr.to_string()),
        ("MAX_INFLIGHT_PUBLISHES", "64".to_owned()),
    ];
    let gateway = GatewayProcess::spawn(&sim, &nats.url(), &env);
    sim.wait_ready(0).await;
    sim.wait_ready(1).await;
    readyz(addr, 200).await;

    let playing = traffic(&sim, 8_000, 400, 42);
    eventually("traffic flowing", PATIENCE, || async {
        (sim.sent_count() >= 500).then_some(())
    })
    .await;
    nats.kill();
    let killed_at = sim.sent().len();
    // The shards are blocked on a full publisher when the signal comes.
    eventually("the in-flight bound reached", PATIENCE, || async {
        (metric(addr, "gateway_publish_inflight", "").await >= 64.0).then_some(())
    })
    .await;
    let signalled = Instant::now();
    let (status, stderr) = tokio::time::timeout(SHUTDOWN_BOUND, gateway.signal_and_wait("TERM"))
        .await
        .unwrap_or_else(|_| {
            panic!("the gateway did not exit within {SHUTDOWN_BOUND:?} of SIGTERM")
        });
    let took = signalled.elapsed();
    assert!(status.success(), "exit status {status}\n{stderr}");

    // The broker comes back; a new gateway resumes the stored sessions, and what
    // the first one never got acknowledged is replayed into the recreated streams.
    nats.restart();
    let next = GatewayProcess::spawn(&sim, &nats.url(), &[]);
    let played = playing.await.unwrap().len();
    let checked = stored_once_since(&nats, &sim, killed_at).await;
    let (status, _) = next.signal_and_wait("TERM").await;
    assert!(status.success());
    eprintln!(
        "SIGTERM with the broker away and 64 publishes in flight: exited 0 after {took:?}; \
         the next start resumed and stored all {checked} events sent since the kill once \
         ({played} played)"
    );
}
