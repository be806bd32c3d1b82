//! `shardline dlq` as an operator runs it: dead letters made by a real worker are
//! listed with filters by consumer, subject, kind and age, shown in full, purged
//! only when asked precisely, and replayed onto their subject where the worker
//! handles them again, headers intact.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use common::shardline;
use serde::Deserialize;
use shardline_cli::ErrorKind;
use shardline_proto::topology::{ConsumerSpec, DEAD_LETTER, EVENT_WORKER, EVENTS, RetryPolicy};
use shardline_testkit::{NatsServer, eventually, init_tracing};
use shardline_worker::{Context, Handler, Handlers, Outcome, Worker};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

static SPEC: ConsumerSpec = ConsumerSpec {
    durable: "replay-worker",
    filter_subjects: &["events.replay.>"],
    retry: RetryPolicy::fixed(Duration::from_millis(50)),
    ..EVENT_WORKER
};

#[derive(Deserialize)]
struct Job {
    id: u32,
}

/// Fails every job until the "bug" is fixed.
struct Buggy(
    Arc<AtomicBool>,
    mpsc::UnboundedSender<(u32, String, Outcome)>,
);

impl Handler for Buggy {
    type Payload = Job;

    async fn handle(&self, job: Job, cx: &Context) -> Outcome {
        let outcome = if self.0.load(Ordering::SeqCst) {
            Outcome::terminal("bug 42")
        } else {
            Outcome::Success
        };
        let trace = cx.header("Trace-Id").unwrap_or_default().to_owned();
        let _ = self.1.send((job.id, trace, outcome.clone()));
        outcome
    }
}

fn sequences(run: &common::Run) -> Vec<u64> {
    run.expect_code(0);
    run.json()
        .as_array()
        .expect("a list")
        .iter()
        .map(|l| l["sequence"].as_u64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_filtered_shown_purged_and_replayed() {
    init_tracing();
    let nats = NatsServer::start();
    let url = nats.url();
    let client = nats.client().await;
    let js = jetstream::new(client.clone());
    // Reading a system that never dead-lettered anything is not an error.
    let run = shardline(&url, &["--json", "dlq", "list"]).await;
    assert!(sequences(&run).is_empty());
    shardline_jetstream::reconcile_stream(&js, &EVENTS, Default::default())
        .await
        .unwrap();

    let broken = Arc::new(AtomicBool::new(true));
    let (tx, mut handled) = mpsc::unbounded_channel();
    let handlers = Handlers::new().on("events.replay.>", Buggy(broken.clone(), tx));
    let shutdown = CancellationToken::new();
    let worker = tokio::spawn(Worker::new(&SPEC, handlers).run(client, shutdown.clone()));

    for id in 1..=3u32 {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Trace-Id", format!("t{id}").as_str());
        let body = serde_json::json!({ "id": id }).to_string();
        js.publish_with_headers(format!("events.replay.job{id}"), headers, body.into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    // A payload that is not a job: dead-lettered as undecodable.
    js.publish("events.replay.garbage", "not json".into())
        .await
        .unwrap()
        .await
        .unwrap();
    for _ in 0..3 {
        let (_, _, outcome) = handled.recv().await.unwrap();
        assert_eq!(outcome, Outcome::terminal("bug 42"));
    }
    eventually("4 dead letters", Duration::from_secs(10), || async {
        let run = shardline(&url, &["--json", "dlq", "list"]).await;
        (sequences(&run).len() == 4).then_some(())
    })
    .await;

    let list = |args: &'static [&'static str]| {
        let url = url.clone();
        async move {
            let mut full = vec!["--json", "dlq", "list"];
            full.extend_from_slice(args);
            sequences(&shardline(&url, &full).await).len()
        }
    };
    assert_eq!(list(&["--consumer", "replay-worker"]).await, 4);
    assert_eq!(list(&["--consumer", "someone-else"]).await, 0);
    assert_eq!(list(&["--reason", "terminal"]).await, 3);
    assert_eq!(list(&["--reason", "undecodable"]).await, 1);
    assert_eq!(list(&["--subject", "events.replay.job2"]).await, 1);
    assert_eq!(list(&["--subject", "events.replay.*"]).await, 4);
    assert_eq!(list(&["--newer-than", "1h"]).await, 4);
    assert_eq!(list(&["--older-than", "1h"]).await, 0);
    assert_eq!(list(&["--limit", "2"]).await, 2);
    shardline(&url, &["dlq", "list", "--reason", "lost"])
        .await
        .expect_code(2);

    // Shown in full: original headers and payload, the reason.
    let run = shardline(
        &url,
        &["--json", "dlq", "list", "--subject", "events.replay.job1"],
    )
    .await;
    let first = sequences(&run)[0].to_string();
    let run = shardline(&url, &["--json", "dlq", "show", &first]).await;
    run.expect_code(0);
    let shown = run.json();
    assert_eq!(shown["kind"], "terminal");
    assert_eq!(shown["reason"], "bug 42");
    assert_eq!(shown["subject"], "events.replay.job1");
    assert_eq!(shown["headers"]["Trace-Id"], serde_json::json!(["t1"]));
    assert_eq!(shown["payload"], r#"{"id":1}"#);
    let raw = shardline(&url, &["dlq", "show", &first, "--raw"]).await;
    assert_eq!(raw.expect_code(0).stdout, r#"{"id":1}"#);
    shardline(&url, &["dlq", "show", "999999"])
        .await
        .expect_code(i32::from(ErrorKind::NotFound.exit_code()));

    // Purge needs a filter or --all; the undecodable one goes, the others stay.
    shardline(&url, &["dlq", "purge"])
        .await
        .expect_code(i32::from(ErrorKind::Usage.exit_code()));
    assert_eq!(list(&[]).await, 4, "a refused purge removed nothing");
    let run = shardline(&url, &["dlq", "purge", "--reason", "undecodable"]).await;
    assert_eq!(run.expect_code(0).stdout.trim(), "purged 1");

    // The bug is fixed: replay puts every job back on its subject, headers intact.
    broken.store(false, Ordering::SeqCst);
    let run = shardline(&url, &["dlq", "replay", "--consumer", SPEC.durable]).await;
    assert_eq!(run.expect_code(0).stdout.trim(), "replayed 3");
    let mut again = Vec::new();
    for _ in 0..3 {
        let (id, trace, outcome) = handled.recv().await.unwrap();
        assert_eq!(outcome, Outcome::Success);
        assert_eq!(trace, format!("t{id}"), "original headers kept");
        again.push(id);
    }
    again.sort_unstable();
    assert_eq!(again, [1, 2, 3]);

    // Replayed letters are gone; a second replay has nothing to do.
    assert_eq!(list(&[]).await, 0);
    let state = js
        .get_stream(DEAD_LETTER.name)
        .await
        .unwrap()
        .cached_info()
        .state
        .clone();
    assert_eq!(state.messages, 0);
    let run = shardline(&url, &["dlq", "replay"]).await;
    assert_eq!(run.expect_code(0).stdout.trim(), "replayed 0");
    shutdown.cancel();
    worker.await.unwrap().unwrap();
    assert!(handled.try_recv().is_err(), "nothing handled twice");
}
