//! Close codes: 4004 and 4010-4014 stop the shard with an error naming the code, and
//! the process fails when no shard can run; 4007, 4009 and an invalid session
//! (`d: false`) make the shard identify again, through the shared identify queue.

mod common;

use common::process::GatewayProcess;
use common::{Harness, PATIENCE, assert_exactly_once, published_messages, sim_config};
use shardline_discord_sim::{SimConfig, SimEvent, Simulator};
use shardline_gateway::ErrorKind;
use shardline_testkit::{NatsServer, init_tracing};

const FATAL: [u16; 6] = [4004, 4010, 4011, 4012, 4013, 4014];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shard_closed_for_good_fails_the_gateway() {
    let harness = Harness::start(SimConfig {
        shard_total: FATAL.len() as u32,
        ..sim_config()
    })
    .await;
    for (shard, code) in FATAL.iter().enumerate() {
        harness.sim.close(shard as u32, *code);
    }
    let (result, _nats, sim) = harness.join().await;
    let error = result.expect_err("no shard can run");
    assert_eq!(error.kind(), ErrorKind::AllShardsFailed);
    let message = error.to_string();
    for (shard, code) in FATAL.iter().enumerate() {
        assert!(
            message.contains(&format!("shard {shard}: close code {code}")),
            "{message}"
        );
    }
    // Nobody reconnected after a fatal code.
    assert_eq!(sim.identifies().len(), FATAL.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_exits_non_zero_naming_the_close_code() {
    init_tracing();
    let nats = NatsServer::start();
    let sim = Simulator::start(SimConfig {
        shard_total: 1,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    // The simulator closes an IDENTIFY with the wrong token with 4004.
    let gateway = GatewayProcess::spawn(
        &sim,
        &nats.url(),
        &[("DISCORD_TOKEN", "not-the-token".to_owned())],
    );
    let (status, stderr) = gateway.wait().await;
    assert!(!status.success(), "exit status {status:?}");
    assert!(stderr.contains("4004"), "stderr names the code:\n{stderr}");
    assert!(stderr.contains("authentication failed"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_ending_codes_identify_again_within_the_rate_limit() {
    let harness = Harness::start(SimConfig {
        shard_total: 3,
        ..sim_config()
    })
    .await;
    let sim = harness.sim.clone();
    let mut events = sim.events();
    let first: Vec<_> = (0..3)
        .map(|s| sim.dispatch(s, "TYPING_START", "{}"))
        .collect();
    for sent in first {
        sent.await;
    }
    sim.close(0, 4007);
    sim.close(1, 4009);
    sim.invalidate_session(2, false);
    let mut identified = Vec::new();
    let waited = tokio::time::timeout(PATIENCE, async {
        while identified.len() < 3 {
            if let SimEvent::Identified { shard, .. } = events.recv().await.unwrap() {
                identified.push(shard);
            }
        }
    })
    .await;
    assert!(waited.is_ok(), "identified again: only {identified:?}");
    identified.sort_unstable();
    assert_eq!(identified, vec![0, 1, 2]);
    for shard in 0..3 {
        let ready = tokio::time::timeout(PATIENCE, sim.wait_ready(shard)).await;
        assert!(ready.is_ok(), "shard {shard} ready again");
        sim.dispatch(shard, "TYPING_START", "{}").await;
    }
    let (nats, sim) = harness.stop_when_delivered().await;
    // Identify again, never closer than 5 s to the shard's first identify (same bucket).
    assert_eq!(sim.identifies().len(), 6);
    assert_eq!(sim.identify_rate_violations(), 0);
    assert_exactly_once(&sim.sent(), &published_messages(&nats).await);
}
