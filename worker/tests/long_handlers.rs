//! A handler that runs longer than the ack wait is kept alive by in-progress acks and
//! is not redelivered while it runs.

mod common;

use std::time::Duration;

use shardline_proto::topology::{ConsumerSpec, EVENT_WORKER};
use shardline_testkit::eventually;
use shardline_worker::{Context, Handler, Handlers, Outcome, Worker};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// One second to ack, or the server redelivers.
static SHORT_ACK_WAIT: ConsumerSpec = ConsumerSpec {
    durable: "slow-worker",
    filter_subjects: &["events.slow.>"],
    ack_wait: Duration::from_secs(1),
    ..EVENT_WORKER
};

/// Works for three and a half ack waits.
struct Slow(mpsc::UnboundedSender<i64>);

impl Handler for Slow {
    type Payload = serde_json::Value;

    async fn handle(&self, _: serde_json::Value, cx: &Context) -> Outcome {
        let _ = self.0.send(cx.delivered);
        tokio::time::sleep(SHORT_ACK_WAIT.ack_wait * 7 / 2).await;
        Outcome::Success
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_longer_than_the_ack_wait_is_delivered_once() {
    let (_nats, client, js) = common::nats_with_events().await;
    let (tx, mut deliveries) = mpsc::unbounded_channel();
    let shutdown = CancellationToken::new();
    let handlers = Handlers::new().on("events.slow.>", Slow(tx));
    let worker = tokio::spawn(Worker::new(&SHORT_ACK_WAIT, handlers).run(client, shutdown.clone()));
    let seq = js
        .publish("events.slow.job", "{}".into())
        .await
        .unwrap()
        .await
        .unwrap()
        .sequence;

    assert_eq!(deliveries.recv().await, Some(1));
    let info = eventually("acked", Duration::from_secs(20), || async {
        let info = js
            .get_stream_no_info("EVENTS")
            .await
            .ok()?
            .consumer_info(SHORT_ACK_WAIT.durable)
            .await
            .ok()?;
        (info.ack_floor.stream_sequence == seq).then_some(info)
    })
    .await;
    assert_eq!(info.num_redelivered, 0, "never redelivered while running");
    assert!(deliveries.try_recv().is_err(), "handled once");
    shutdown.cancel();
    worker.await.unwrap().unwrap();
}
