//! The gateway process restarts (SIGTERM, and SIGKILL mid-traffic): the new process
//! resumes each shard's stored session, Discord replays from the stored sequence,
//! and every `Nats-Msg-Id` the simulator sent is in the streams exactly once.

mod common;

use std::time::Instant;

use common::process::GatewayProcess;
use common::{
    PATIENCE, assert_exactly_once, expected_subjects, published_messages, sim_config, wait_stored,
};
use shardline_discord_sim::{Mix, SimEvent, Simulator, TrafficPlan};
use shardline_gateway::StoredSession;
use shardline_proto::gateway::{SESSIONS_BUCKET, session_key};
use shardline_testkit::{NatsServer, eventually, init_tracing};

fn plan(seed: u64, events_per_shard: usize, rate: Option<u32>) -> TrafficPlan {
    TrafficPlan {
        shards: vec![0, 1],
        events_per_shard,
        rate_per_second: rate,
        mix: Mix::Realistic,
        seed,
    }
}

/// Waits until both shards have a stored session at or past `at_least`.
async fn wait_saved(nats: &NatsServer, at_least: u64) {
    let js = async_nats::jetstream::new(nats.client().await);
    eventually("stored sessions", PATIENCE, || {
        let js = js.clone();
        async move {
            let store = js.get_key_value(SESSIONS_BUCKET).await.ok()?;
            for shard in [0, 1] {
                let bytes = store.get(session_key(shard)).await.ok()??;
                let stored: StoredSession = serde_json::from_slice(&bytes).ok()?;
                (stored.sequence >= at_least).then_some(())?;
            }
            Some(())
        }
    })
    .await;
}

async fn restart_loses_nothing(signal: &str) {
    init_tracing();
    let nats = NatsServer::start();
    let sim = Simulator::start(sim_config()).await.unwrap();
    let gateway = GatewayProcess::spawn(&sim, &nats.url(), &[]);
    sim.wait_ready(0).await;
    sim.wait_ready(1).await;
    sim.play(plan(1, 300, None)).await;
    wait_saved(&nats, 100).await;

    // Traffic keeps coming while the process goes down and while it is away.
    let traffic = tokio::spawn({
        let sim = sim.clone();
        async move { sim.play(plan(2, 1000, Some(4000))).await }
    });
    let stored_before = wait_stored(&nats, 700).await;
    let mut events = sim.events();
    let at_signal: Vec<u64> = (0..2).map(|s| last_seq(&sim, s)).collect();
    let (status, stderr) = gateway.signal_and_wait(signal).await;
    if signal == "TERM" {
        assert!(status.success(), "exit {status:?}\n{stderr}");
    }
    traffic.await.unwrap();
    sim.play(plan(3, 100, None)).await;
    let down = Instant::now();

    let gateway = GatewayProcess::spawn(&sim, &nats.url(), &[]);
    let mut resumed = Vec::new();
    while resumed.len() < 2 {
        match events.recv().await.unwrap() {
            SimEvent::Resumed { shard, .. } => resumed.push(shard),
            SimEvent::Identified { shard, .. } => {
                panic!("shard {shard} identified instead of resuming")
            }
            _ => {}
        }
    }
    let resume_took = down.elapsed();
    sim.play(plan(4, 200, None)).await;
    let want = expected_subjects(&sim.sent()).len() as u64;
    wait_stored(&nats, want).await;
    let (status, _) = gateway.signal_and_wait("TERM").await;
    assert!(status.success());

    let sent = sim.sent();
    let messages = published_messages(&nats).await;
    let checked = assert_exactly_once(&sent, &messages);
    assert_eq!(sim.identifies().len(), 2, "one identify per shard, ever");
    let resumes = sim.resumes();
    assert_eq!(resumes.len(), 2, "each shard resumed once: {resumes:?}");
    eprintln!(
        "SIG{signal}: {checked} dispatches exactly once (0 lost, 0 duplicated); {stored_before} stored before the signal; \
         last sequence at the signal {at_signal:?}; resumes {:?}; new process resumed {resume_took:?} after start",
        resumes
            .iter()
            .map(|r| (r.shard, r.requested_seq, r.replayed))
            .collect::<Vec<_>>()
    );
}

fn last_seq(sim: &Simulator, shard: u32) -> u64 {
    sim.sent()
        .iter()
        .rev()
        .find(|s| s.shard == shard)
        .map_or(0, |s| s.seq)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_restart_resumes_without_loss_or_duplicates() {
    restart_loses_nothing("TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_restart_resumes_without_loss_or_duplicates() {
    restart_loses_nothing("KILL").await;
}
