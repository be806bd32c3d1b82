//! `shardline topology diff` and `apply` as an operator runs them: a stream changed
//! by hand is found and named (exit 1), `apply` repairs it, a second diff is clean;
//! a difference JetStream cannot apply is refused before anything changes.

mod common;

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use common::shardline;
use shardline_cli::ErrorKind;
use shardline_proto::topology::{EVENTS, INTERNAL, SYNC_WORKER};
use shardline_testkit::{NatsServer, init_tracing};

fn names(diff: &serde_json::Value) -> Vec<(String, String, String)> {
    diff.as_array()
        .expect("a list")
        .iter()
        .map(|d| {
            (
                d["object"].as_str().unwrap().to_owned(),
                d["name"].as_str().unwrap().to_owned(),
                d["field"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_max_age_changed_by_hand_is_found_named_and_repaired() {
    init_tracing();
    let nats = NatsServer::start();
    let url = nats.url();
    let js = jetstream::new(nats.client().await);

    // An empty server: everything is missing.
    let run = shardline(&url, &["--json", "topology", "diff"]).await;
    run.expect_code(1);
    assert!(
        names(&run.json())
            .iter()
            .all(|(_, _, field)| field == "missing"),
        "{}",
        run.stdout
    );
    let run = shardline(&url, &["--json", "topology", "apply"]).await;
    run.expect_code(0);
    assert!(
        run.json()
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["action"] == "created")
    );
    shardline(&url, &["topology", "diff"]).await.expect_code(0);

    // The operator shortens EVENTS' max age by hand, and drops a consumer.
    let mut config = js
        .get_stream(EVENTS.name)
        .await
        .unwrap()
        .cached_info()
        .config
        .clone();
    config.max_age = Duration::from_secs(30);
    config.duplicate_window = Duration::from_secs(30);
    js.update_stream(config).await.unwrap();
    js.delete_consumer_from_stream(SYNC_WORKER.durable, SYNC_WORKER.stream)
        .await
        .unwrap();

    let run = shardline(&url, &["--json", "topology", "diff"]).await;
    run.expect_code(1);
    let mut found = names(&run.json());
    found.sort();
    assert_eq!(
        found,
        [
            (
                "consumer".into(),
                "ELIGIBILITY/sync-worker".into(),
                "missing".into()
            ),
            ("stream".into(), "EVENTS".into(), "duplicate_window".into()),
            ("stream".into(), "EVENTS".into(), "max_age".into()),
        ]
    );
    // The table names them too, one line each.
    let run = shardline(&url, &["topology", "diff"]).await;
    run.expect_code(1);
    assert_eq!(run.stdout.lines().count(), 3, "{}", run.stdout);

    let run = shardline(&url, &["--json", "topology", "apply"]).await;
    run.expect_code(0);
    let applied = run.json();
    let events = applied
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "EVENTS")
        .unwrap();
    assert_eq!(events["action"], "updated");
    let live = js
        .get_stream(EVENTS.name)
        .await
        .unwrap()
        .cached_info()
        .config
        .clone();
    assert_eq!(live.max_age, EVENTS.max_age);
    shardline(&url, &["topology", "diff"]).await.expect_code(0);
    let run = shardline(&url, &["--json", "topology", "diff"]).await;
    assert_eq!(run.json(), serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_change_is_named_and_apply_changes_nothing() {
    init_tracing();
    let nats = NatsServer::start();
    let url = nats.url();
    let js = jetstream::new(nats.client().await);
    shardline(&url, &["topology", "apply"]).await.expect_code(0);

    // INTERNAL recreated on disk (declared in memory), and EVENTS' max age changed.
    js.delete_stream(INTERNAL.name).await.unwrap();
    js.create_stream(stream::Config {
        name: INTERNAL.name.to_owned(),
        subjects: INTERNAL.subjects.iter().map(|s| (*s).to_owned()).collect(),
        storage: stream::StorageType::File,
        max_age: INTERNAL.max_age,
        duplicate_window: INTERNAL.duplicate_window(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut config = js
        .get_stream(EVENTS.name)
        .await
        .unwrap()
        .cached_info()
        .config
        .clone();
    config.max_age = Duration::from_secs(200);
    js.update_stream(config).await.unwrap();

    let run = shardline(&url, &["--json", "topology", "diff"]).await;
    run.expect_code(1);
    let diff = run.json();
    let storage = diff
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "INTERNAL" && d["field"] == "storage")
        .unwrap_or_else(|| panic!("storage named: {diff}"));
    assert_eq!(storage["immutable"], true);

    let run = shardline(&url, &["topology", "apply"]).await;
    run.expect_code(i32::from(ErrorKind::Immutable.exit_code()));
    // Refused before anything changed: EVENTS keeps the hand-made age.
    let live = js
        .get_stream(EVENTS.name)
        .await
        .unwrap()
        .cached_info()
        .config
        .clone();
    assert_eq!(live.max_age, Duration::from_secs(200));

    // Replicas are compared only when asked.
    let run = shardline(&url, &["--json", "topology", "diff", "--replicas", "3"]).await;
    let replicas = names(&run.json())
        .into_iter()
        .filter(|(_, _, f)| f == "num_replicas")
        .count();
    assert_eq!(replicas, 5, "{}", run.stdout);
}
