//! Dead letters are listed and replayed, through the `shardline-deadletter` binary,
//! back onto their original subject, where the worker handles them.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Deserialize;
use shardline_proto::topology::{ConsumerSpec, EVENT_WORKER, RetryPolicy};
use shardline_testkit::{NatsServer, eventually};
use shardline_worker::{Context, Handler, Handlers, Outcome, Worker, deadletter};
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

fn cli(nats: &NatsServer, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_shardline-deadletter"))
        .env("NATS_URL", nats.url())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_dead_letters_return_to_their_subject_and_are_handled() {
    let (nats, client, js) = common::nats_with_events().await;
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
    for _ in 0..3 {
        let (_, _, outcome) = handled.recv().await.unwrap();
        assert_eq!(outcome, Outcome::terminal("bug 42"));
    }
    let listed = eventually("3 dead letters", Duration::from_secs(10), || async {
        let out = cli(&nats, &["list", "--consumer", SPEC.durable]);
        (out.lines().count() == 3).then_some(out)
    })
    .await;
    assert!(
        listed
            .lines()
            .all(|l| l.contains("terminal") && l.ends_with("bug 42")),
        "{listed}"
    );

    // The bug is fixed: replay puts every job back on its subject, headers intact.
    broken.store(false, Ordering::SeqCst);
    assert_eq!(
        cli(&nats, &["replay", "--consumer", SPEC.durable]).trim(),
        "replayed 3"
    );
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
    assert!(deadletter::list(&js, None, 10).await.unwrap().is_empty());
    assert_eq!(cli(&nats, &["replay"]).trim(), "replayed 0");
    shutdown.cancel();
    worker.await.unwrap().unwrap();
    assert!(handled.try_recv().is_err(), "nothing handled twice");
}
