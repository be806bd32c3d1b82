//! Discord asks for a reconnect mid-stream: the shard resumes, Discord replays, the
//! stream de-duplicates the overlap, and nothing is lost.

mod common;

use common::{Harness, assert_exactly_once, published_messages, sim_config};
use shardline_discord_sim::{Mix, SimConfig, SimEvent, TrafficPlan};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_resumes_without_loss_or_duplicates() {
    // Replay 20 frames the gateway already had: a Discord that replays generously.
    let harness = Harness::start(SimConfig {
        replay_overlap: 20,
        ..sim_config()
    })
    .await;
    let sim = harness.sim.clone();
    let mut events = sim.events();
    let plan = |seed| TrafficPlan {
        shards: vec![0, 1],
        events_per_shard: 300,
        rate_per_second: None,
        mix: Mix::Realistic,
        seed,
    };
    sim.play(plan(1)).await;
    sim.send_reconnect(0);
    // Events Discord logs while shard 0 is away must be replayed on resume.
    sim.play(plan(2)).await;
    loop {
        match events.recv().await.expect("simulator events") {
            SimEvent::Resumed { shard: 0, .. } => break,
            SimEvent::Identified { shard: 0, .. } => {
                panic!("shard 0 identified instead of resuming")
            }
            _ => {}
        }
    }
    sim.play(plan(3)).await;
    let (nats, sim) = harness.stop_when_delivered().await;

    let resume = sim
        .resumes()
        .into_iter()
        .find(|r| r.shard == 0)
        .expect("a resume");
    assert!(
        resume.replayed >= 20,
        "the overlap was replayed: {resume:?}"
    );
    let sessions: std::collections::HashSet<_> = sim
        .sent()
        .iter()
        .filter(|s| s.shard == 0)
        .map(|s| s.session_id.clone())
        .collect();
    assert_eq!(sessions.len(), 1, "shard 0 kept one session");
    let checked = assert_exactly_once(&sim.sent(), &published_messages(&nats).await);
    assert!(checked >= 1800);
}
