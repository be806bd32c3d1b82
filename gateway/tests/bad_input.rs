//! Frames that are not JSON, dispatches without `d`, and unknown dispatch names:
//! counted, logged, never fatal to the shard; unknown names route generically.

mod common;

use std::net::SocketAddr;

use common::http::{get, sample};
use common::{
    Harness, PATIENCE, assert_exactly_once, free_port, published_messages, sim_config, wait_stored,
};
use shardline_discord_sim::{Mix, SimEvent, TrafficPlan};
use shardline_testkit::{NatsServer, eventually};

fn dropped(metrics: &str, reason: &str) -> f64 {
    sample(
        metrics,
        "gateway_events_dropped_total",
        &format!("reason=\"{reason}\""),
    )
    .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_frames_are_counted_and_the_shard_keeps_going() {
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let harness = Harness::start_with(sim_config(), NatsServer::start(), |c| {
        c.metrics_addr = Some(addr);
    })
    .await;
    let sim = harness.sim.clone();
    let mut events = sim.events();

    sim.send_raw(0, "this is not JSON {");
    sim.send_raw(0, r#"{"no_op": true}"#);
    let missing = sim.dispatch(0, "MESSAGE_CREATE", "null").await;
    let unknown = sim
        .dispatch(0, "BRAND_NEW_EVENT_2031", r#"{"guild_id":"5","x":[1]}"#)
        .await;
    sim.play(TrafficPlan {
        shards: vec![0, 1],
        events_per_shard: 200,
        mix: Mix::Realistic,
        seed: 3,
        ..Default::default()
    })
    .await;

    // Everything publishable arrives; the `d: null` dispatch is the only one missing.
    let sent: Vec<_> = sim
        .sent()
        .into_iter()
        .filter(|s| s.msg_id() != missing.msg_id())
        .collect();
    let want = common::expected_subjects(&sent).len() as u64;
    assert_eq!(wait_stored(&harness.nats, want).await, want);
    let metrics = eventually("drop counters", PATIENCE, || async move {
        let (_, metrics) = get(addr, "/metrics").await?;
        (dropped(&metrics, "missing_data") >= 1.0 && dropped(&metrics, "malformed_frame") >= 2.0)
            .then_some(metrics)
    })
    .await;
    assert_eq!(dropped(&metrics, "missing_data"), 1.0);
    assert_eq!(dropped(&metrics, "malformed_frame"), 2.0);
    assert_eq!(
        sample(
            &metrics,
            "gateway_events_received_total",
            "event_type=\"BRAND_NEW_EVENT_2031\""
        ),
        Some(1.0)
    );

    let (nats, sim) = harness.stop().await;
    let messages = published_messages(&nats).await;
    assert_exactly_once(&sent, &messages);
    let generic = messages
        .iter()
        .find(|m| {
            m.headers.get("Nats-Msg-Id").map(|v| v.as_str()) == Some(unknown.msg_id().as_str())
        })
        .expect("the unknown event is published");
    assert_eq!(generic.subject.as_str(), "events.brand.new.event.2031");
    // The shard never dropped its connection over the bad frames.
    assert_eq!(sim.identifies().len(), 2);
    assert!(sim.resumes().is_empty());
    while let Ok(event) = events.try_recv() {
        assert!(
            !matches!(event, SimEvent::Disconnected { code: Some(c), .. } if c != 4000),
            "unexpected {event:?}"
        );
    }
}
