//! `shardline status` as an operator runs it (`--json` for the assertions, the
//! table once), against a real gateway on the Discord simulator: healthy; a shard
//! Discord closed for good (disconnected) and a stopped gateway (unheld); a consumer
//! whose worker stopped (lagging). Each: the right rows, exit code and reasons.

mod common;

use common::system::{SHARDS, System};
use common::{Run, shardline};
use serde_json::Value;
use shardline_jetstream::NatsAuth;
use shardline_testkit::{NatsServer, init_tracing};

fn kinds(report: &Value) -> Vec<(String, String)> {
    report["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap().to_owned(),
                r["target"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn status(url: &str, args: &[&str]) -> Run {
    let mut full = vec!["--json", "status"];
    full.extend_from_slice(args);
    shardline(url, &full).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_system_exits_0_with_every_shard_connected() {
    init_tracing();
    let nats = NatsServer::start();
    let url = nats.url();
    let mut system = System::start(&url, NatsAuth::default(), 1, nats.client().await).await;
    system.start_worker().await;
    system.traffic(20).await;

    // The deploy gate: asks until healthy.
    let run = status(&url, &["--wait", "60s"]).await;
    run.expect_code(0);
    let report = run.json();
    assert_eq!(report["healthy"], true);
    assert_eq!(kinds(&report), Vec::<(String, String)>::new());
    let shards = report["shards"].as_array().unwrap();
    assert_eq!(shards.len(), SHARDS as usize);
    let me = format!("/{}", std::process::id());
    for s in shards {
        assert_eq!(s["connected"], true, "{s}");
        let processes = s["processes"].as_array().unwrap();
        assert_eq!(processes.len(), 1);
        assert!(processes[0].as_str().unwrap().ends_with(&me), "{s}");
    }
    let streams: Vec<&str> = report["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    for name in [
        "COMMANDS",
        "EVENTS",
        "INTERNAL",
        "ELIGIBILITY",
        "DEAD_LETTER",
    ] {
        assert!(streams.contains(&name), "{name} in {streams:?}");
    }
    let worker = report["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "event-worker")
        .expect("event-worker listed");
    assert_eq!(worker["lag"], 0);
    assert!(!worker["last_active_ms"].is_null(), "the worker pulled");
    assert_eq!(report["nodes"].as_array().unwrap().len(), 1);
    assert_eq!(report["nodes"][0]["state"], "up");

    // The gateway stores each session every second: its ack floor, the session's
    // start, the process that wrote it.
    let stored = shardline_testkit::eventually("stored sessions", common::PATIENCE, || {
        let url = url.clone();
        async move {
            let report = status(&url, &[]).await.json();
            let shards = report["shards"].as_array()?.clone();
            shards
                .iter()
                .all(|s| {
                    s["acked_sequence"].as_u64().is_some_and(|q| q > 1)
                        && !s["session_started_ms"].is_null()
                })
                .then_some(shards)
        }
    })
    .await;
    assert!(
        stored
            .iter()
            .all(|s| s["stored_by"].as_str().unwrap().ends_with(&me))
    );

    // The table for people: same verdict.
    shardline(&url, &["status"]).await.expect_code(0);
    system.stop_worker().await;
    system.stop_gateway().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnected_shard_and_a_stopped_gateway_are_unhealthy() {
    init_tracing();
    let nats = NatsServer::start();
    let url = nats.url();
    let mut system = System::start(&url, NatsAuth::default(), 1, nats.client().await).await;
    status(&url, &["--wait", "60s"]).await.expect_code(0);

    // Discord ends shard 1's session for good; the gateway keeps it, unconnected.
    system.sim.close(1, 4004);
    let report = shardline_testkit::eventually("shard 1 disconnected", common::PATIENCE, || {
        let url = url.clone();
        async move {
            let run = status(&url, &[]).await;
            (run.code == 1).then(|| run.json())
        }
    })
    .await;
    assert_eq!(
        kinds(&report),
        [("shard_disconnected".to_owned(), "shard 1".to_owned())]
    );
    assert_eq!(report["shards"][0]["connected"], true);
    assert_eq!(report["shards"][1]["connected"], false);
    assert_eq!(
        report["shards"][1]["processes"].as_array().unwrap().len(),
        1
    );
    shardline(&url, &["status"]).await.expect_code(1);

    // Naming the shard total finds a shard nobody runs.
    let run = status(&url, &["--shard-total", "3"]).await;
    run.expect_code(1);
    assert!(kinds(&run.json()).contains(&("shard_unheld".to_owned(), "shard 2".to_owned())));

    // The gateway stops: shard 0's stored session remains, nobody holds it.
    system.stop_gateway().await;
    let run = status(&url, &[]).await;
    run.expect_code(1);
    let report = run.json();
    assert_eq!(
        kinds(&report),
        [("shard_unheld".to_owned(), "shard 0".to_owned())]
    );
    assert!(
        report["shards"][0]["acked_sequence"].is_u64(),
        "the stored session is shown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_whose_worker_stopped_lags() {
    init_tracing();
    let nats = NatsServer::start();
    let url = nats.url();
    let mut system = System::start(&url, NatsAuth::default(), 1, nats.client().await).await;
    // No worker: 2 x 30 messages (and the guilds' lazy loads) wait on event-worker.
    system.traffic(30).await;
    let report = shardline_testkit::eventually("every event waiting", common::PATIENCE, || {
        let url = url.clone();
        async move {
            let report = status(&url, &["--max-lag", "10"]).await.json();
            let lag = report["consumers"]
                .as_array()?
                .iter()
                .find(|c| c["name"] == "event-worker")?["lag"]
                .as_u64()?;
            let stored = report["streams"]
                .as_array()?
                .iter()
                .find(|s| s["name"] == "EVENTS")?["messages"]
                .as_u64()?;
            (lag >= 60 && lag == stored).then_some(report)
        }
    })
    .await;
    assert_eq!(report["healthy"], false);
    assert_eq!(
        kinds(&report),
        [(
            "consumer_lagging".to_owned(),
            "EVENTS/event-worker".to_owned()
        )]
    );
    // Under the default threshold (1000) the same lag is healthy...
    status(&url, &[]).await.expect_code(0);
    // ...until nothing has been delivered for longer than --max-idle.
    let run = status(&url, &["--max-idle", "0s"]).await;
    run.expect_code(1);
    assert_eq!(
        kinds(&run.json()),
        [(
            "consumer_stalled".to_owned(),
            "EVENTS/event-worker".to_owned()
        )]
    );

    // The worker comes back and drains it.
    system.start_worker().await;
    status(
        &url,
        &["--max-lag", "10", "--max-idle", "0s", "--wait", "60s"],
    )
    .await
    .expect_code(0);
    system.stop_worker().await;
    system.stop_gateway().await;
}
