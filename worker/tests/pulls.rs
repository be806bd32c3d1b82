//! How the worker pulls: a second request waits at the server while the first fills,
//! never more messages held than the consumer's budget, and nothing delivered twice.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream;
use serde::Deserialize;
use shardline_proto::topology::{ConsumerSpec, RetryPolicy};
use shardline_testkit::eventually;
use shardline_worker::{Context, Handler, Handlers, Outcome, Worker};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Ten permits: a request for all ten, then a second once five are free.
static TEN: ConsumerSpec = ConsumerSpec {
    durable: "ten-worker",
    stream: "EVENTS",
    filter_subjects: &["events.test.>"],
    max_ack_pending: 10,
    ack_wait: Duration::from_secs(30),
    max_deliver: 5,
    retry: RetryPolicy::fixed(Duration::from_millis(50)),
};

#[derive(Deserialize)]
struct Job {
    id: u32,
}

struct Record(mpsc::UnboundedSender<u32>);

impl Handler for Record {
    type Payload = Job;

    async fn handle(&self, job: Job, _cx: &Context) -> Outcome {
        let _ = self.0.send(job.id);
        Outcome::Success
    }
}

async fn publish(js: &jetstream::Context, ids: std::ops::Range<u32>) {
    for id in ids {
        let body = format!(r#"{{"id":{id}}}"#);
        js.publish("events.test.job", body.into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
}

/// The consumer's state, once the worker has declared it.
async fn info(js: &jetstream::Context) -> Option<jetstream::consumer::Info> {
    let stream = js.get_stream_no_info("EVENTS").await.unwrap();
    stream.consumer_info(TEN.durable).await.ok()
}

async fn handled(rx: &mut mpsc::UnboundedReceiver<u32>, n: usize, seen: &mut HashMap<u32, u32>) {
    let wait = async {
        while seen.values().sum::<u32>() < u32::try_from(n).unwrap() {
            let id = rx.recv().await.expect("worker alive");
            *seen.entry(id).or_default() += 1;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .unwrap_or_else(|_| panic!("{} of {n} handled in 30 s", seen.len()));
}

#[tokio::test]
async fn a_second_request_waits_at_the_server_while_the_first_fills() {
    let (_nats, client, js) = common::nats_with_events().await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let shutdown = CancellationToken::new();
    let worker = Worker::new(&TEN, Handlers::new().on("events.test.>", Record(tx)));
    let token = shutdown.clone();
    let worker = tokio::spawn(async move { worker.run(client, token).await.unwrap() });

    // Idle: one request holds all ten permits.
    let limit = Duration::from_secs(10);
    eventually("the first pull request", limit, || async {
        info(&js).await.filter(|i| i.num_waiting == 1)
    })
    .await;

    // Six handled: the first request still wants four, and the six free permits are
    // past half the budget, so a second request joins it. With one request at a time
    // this stays at one (the first is replaced by another of one when it expires).
    let mut seen = HashMap::new();
    publish(&js, 0..6).await;
    handled(&mut rx, 6, &mut seen).await;
    let both = eventually("a second pull request beside the first", limit, || async {
        info(&js).await.filter(|i| i.num_waiting == 2)
    })
    .await;
    assert!(both.num_ack_pending <= 10, "{both:?}");

    // Both requests fill (4 + 6 and more): each message once, within the budget.
    publish(&js, 6..40).await;
    handled(&mut rx, 40, &mut seen).await;
    shutdown.cancel();
    worker.await.unwrap();

    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "handled other than once: {twice:?}");
    assert_eq!(seen.len(), 40);
    let after = info(&js).await.unwrap();
    assert_eq!(after.num_ack_pending, 0, "{after:?}");
    assert_eq!(after.num_redelivered, 0, "{after:?}");
    assert_eq!(after.delivered.consumer_sequence, 40, "{after:?}");
}
