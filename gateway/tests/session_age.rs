//! A stored session older than SESSION_MAX_AGE is not resumed: the shard identifies
//! fresh and the events Discord logged in the gap are skipped (and logged as such).
//! A quiet one, with nothing awaiting an ack, is written again while the gateway runs,
//! so it stays resumable however long no event came.

mod common;

use common::process::GatewayProcess;
use common::{Harness, PATIENCE, assert_exactly_once, published_messages, sim_config, wait_stored};
use shardline_discord_sim::{SimEvent, Simulator};
use shardline_gateway::Config;
use shardline_proto::gateway::{SESSIONS_BUCKET, StoredSession, session_key};
use shardline_testkit::{NatsServer, eventually};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_session_is_not_resumed() {
    // 0 s: every stored session is too old.
    let configure = |c: &mut Config| c.session_max_age_secs = 0;
    let harness = Harness::start_with(sim_config(), NatsServer::start(), configure).await;
    harness.sim.dispatch(0, "TYPING_START", "{}").await;
    let (nats, sim) = harness.stop_when_delivered().await;

    // Discord keeps logging on the old sessions while no gateway runs.
    let gap = [
        sim.dispatch(0, "TYPING_START", r#"{"gap":1}"#).await,
        sim.dispatch(1, "TYPING_START", r#"{"gap":2}"#).await,
    ];
    let mut events = sim.events();
    let mut config = Config::for_gateway(&sim.config().token, &sim.gateway_url(), 2, &nats.url());
    config.max_concurrency = Some(16);
    configure(&mut config);
    let shutdown = CancellationToken::new();
    let gateway = tokio::spawn(shardline_gateway::run(config, shutdown.clone()));
    let mut identified = 0;
    while identified < 2 {
        match events.recv().await.unwrap() {
            SimEvent::Identified { .. } => identified += 1,
            SimEvent::Resumed { shard, .. } => panic!("shard {shard} resumed an old session"),
            _ => {}
        }
    }
    sim.wait_ready(0).await;
    sim.wait_ready(1).await;
    sim.dispatch(1, "TYPING_START", r#"{"after":1}"#).await;
    let gap_ids: Vec<String> = gap.iter().map(|s| s.msg_id()).collect();
    let kept: Vec<_> = sim
        .sent()
        .into_iter()
        .filter(|s| !gap_ids.contains(&s.msg_id()))
        .collect();
    let want = common::expected_subjects(&kept).len() as u64;
    wait_stored(&nats, want).await;
    shutdown.cancel();
    gateway.await.unwrap().unwrap();

    assert!(sim.resumes().is_empty());
    assert_eq!(sim.identifies().len(), 4);
    // Everything but the gap, exactly once; the gap is not there.
    assert_exactly_once(&kept, &published_messages(&nats).await);
}

/// The stored session of `shard`, once there is one.
async fn stored(nats: &NatsServer, shard: u32) -> Option<StoredSession> {
    let js = async_nats::jetstream::new(nats.client().await);
    let bucket = js.get_key_value(SESSIONS_BUCKET).await.ok()?;
    let bytes = bucket.get(session_key(shard)).await.ok()??;
    serde_json::from_slice(&bytes).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_session_stays_resumable() {
    const MAX_AGE_MS: u64 = 3_000;
    let nats = NatsServer::start();
    let sim = Simulator::start(sim_config()).await.unwrap();
    let env = [("SESSION_MAX_AGE", (MAX_AGE_MS / 1000).to_string())];
    let gateway = GatewayProcess::spawn(&sim, &nats.url(), &env);
    sim.wait_ready(0).await;
    sim.wait_ready(1).await;

    // No event for longer than SESSION_MAX_AGE: the stored sessions do not change,
    // yet each is written again, so it never looks too old to resume.
    let mut first = Vec::new();
    for shard in 0..2 {
        first.push(
            eventually("a stored session", PATIENCE, || stored(&nats, shard))
                .await
                .saved_at_ms,
        );
    }
    for (shard, first) in (0..2).zip(first) {
        eventually("a quiet session written again", PATIENCE, || async {
            let now = stored(&nats, shard).await?;
            (now.saved_at_ms > first + MAX_AGE_MS).then_some(())
        })
        .await;
    }
    let mut events = sim.events();
    let (status, _) = gateway.signal_and_wait("KILL").await;
    assert!(!status.success());

    let next = GatewayProcess::spawn(&sim, &nats.url(), &env);
    let mut resumed = Vec::new();
    while resumed.len() < 2 {
        match events.recv().await.unwrap() {
            SimEvent::Resumed { shard, .. } => resumed.push(shard),
            SimEvent::Identified { shard, .. } => panic!("shard {shard} identified fresh"),
            _ => {}
        }
    }
    let (status, _) = next.signal_and_wait("TERM").await;
    assert!(status.success());
}
