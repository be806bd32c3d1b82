//! A worker outlives its NATS server: killed and restarted on the same port (losing
//! its memory streams and the consumer), the worker reconnects, declares its topology
//! again and handles what is published afterwards.

use std::time::Duration;

use async_nats::jetstream;
use shardline_proto::topology::{ConsumerSpec, EVENT_WORKER};
use shardline_testkit::{NatsServer, eventually, init_tracing};
use shardline_worker::{Context, Handler, Handlers, Outcome, Worker};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

static SPEC: ConsumerSpec = ConsumerSpec {
    durable: "reconnect-worker",
    filter_subjects: &["events.reconnect.>"],
    ..EVENT_WORKER
};

struct Note(mpsc::UnboundedSender<u64>);

impl Handler for Note {
    type Payload = u64;

    async fn handle(&self, n: u64, _: &Context) -> Outcome {
        let _ = self.0.send(n);
        Outcome::Success
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_carries_on_after_its_server_restarts() {
    init_tracing();
    let mut nats = NatsServer::start();
    let (tx, mut handled) = mpsc::unbounded_channel();
    let shutdown = CancellationToken::new();
    let handlers = Handlers::new().on("events.reconnect.>", Note(tx));
    let worker =
        tokio::spawn(Worker::new(&SPEC, handlers).run(nats.client().await, shutdown.clone()));

    let publisher = jetstream::new(nats.client().await);
    let publish = |js: jetstream::Context, n: u64| async move {
        js.publish("events.reconnect.n", n.to_string().into())
            .await
            .ok()?
            .await
            .ok()
    };
    eventually("first message stored", Duration::from_secs(10), || {
        publish(publisher.clone(), 1)
    })
    .await;
    assert_eq!(handled.recv().await, Some(1));

    nats.restart();
    // Publish until the stream exists again (the worker declares it) and holds it.
    eventually("stream back", Duration::from_secs(30), || {
        publish(publisher.clone(), 2)
    })
    .await;
    let n = tokio::time::timeout(Duration::from_secs(30), handled.recv())
        .await
        .expect("handled after the restart");
    assert_eq!(n, Some(2));
    shutdown.cancel();
    worker.await.unwrap().unwrap();
}
