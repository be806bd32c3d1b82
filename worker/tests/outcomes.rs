//! Every outcome and its ack kind, checked through the handler's deliveries and the
//! consumer's state on a real nats-server.

use std::time::{Duration, Instant};

use async_nats::jetstream;
use serde::Deserialize;
use shardline_jetstream::ReconcileOptions;
use shardline_proto::topology::{EVENT_WORKER, EVENTS};
use shardline_testkit::{NatsServer, eventually, init_tracing};
use shardline_worker::{DEFAULT_RETRY_DELAY, Handler, Handlers, Meta, Outcome, Worker};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[derive(Deserialize)]
struct Order {
    id: u32,
    /// What to answer on each delivery; the last one repeats.
    answers: Vec<String>,
}

struct Scripted(mpsc::UnboundedSender<(u32, i64, Instant)>);

impl Handler for Scripted {
    type Payload = Order;

    async fn handle(&self, order: Order, meta: &Meta) -> Outcome {
        let _ = self.0.send((order.id, meta.delivered, Instant::now()));
        let index = usize::try_from(meta.delivered - 1)
            .unwrap()
            .min(order.answers.len() - 1);
        match order.answers[index].as_str() {
            "success" => Outcome::Success,
            "retry" => Outcome::retry(),
            "panic" => panic!("handler bug"),
            _ => Outcome::terminal("scripted"),
        }
    }
}

struct Setup {
    _nats: NatsServer,
    js: jetstream::Context,
    deliveries: mpsc::UnboundedReceiver<(u32, i64, Instant)>,
    shutdown: CancellationToken,
    worker: tokio::task::JoinHandle<()>,
}

async fn setup() -> Setup {
    init_tracing();
    let nats = NatsServer::start();
    let client = nats.client().await;
    let js = jetstream::new(client.clone());
    shardline_jetstream::reconcile_stream(&js, &EVENTS, ReconcileOptions::default())
        .await
        .unwrap();
    let (tx, deliveries) = mpsc::unbounded_channel();
    let handlers = Handlers::new().on("events.test.>", Scripted(tx));
    let shutdown = CancellationToken::new();
    let worker = Worker::new(&EVENT_WORKER, handlers);
    let token = shutdown.clone();
    let worker = tokio::spawn(async move { worker.run(client, token).await.unwrap() });
    Setup {
        _nats: nats,
        js,
        deliveries,
        shutdown,
        worker,
    }
}

async fn publish(js: &jetstream::Context, id: u32, answers: &[&str]) -> u64 {
    let body = serde_json::json!({ "id": id, "answers": answers }).to_string();
    js.publish("events.test.order", body.into())
        .await
        .unwrap()
        .await
        .unwrap()
        .sequence
}

async fn consumer_info(js: &jetstream::Context) -> jetstream::consumer::Info {
    js.get_stream_no_info("EVENTS")
        .await
        .unwrap()
        .consumer_info(EVENT_WORKER.durable)
        .await
        .unwrap()
}

/// Waits until every message up to stream sequence `seq` is acked or terminated
/// and nothing is pending.
async fn settled_through(js: &jetstream::Context, seq: u64) -> jetstream::consumer::Info {
    eventually("consumer settled", Duration::from_secs(10), || async {
        let info = consumer_info(js).await;
        (info.ack_floor.stream_sequence >= seq && info.num_ack_pending == 0).then_some(info)
    })
    .await
}

async fn next(setup: &mut Setup) -> (u32, i64, Instant) {
    tokio::time::timeout(Duration::from_secs(60), setup.deliveries.recv())
        .await
        .expect("a delivery within a minute")
        .expect("handler alive")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn success_is_acked() {
    let mut s = setup().await;
    let seq = publish(&s.js, 1, &["success"]).await;
    assert_eq!(next(&mut s).await.0, 1);
    settled_through(&s.js, seq).await;
    s.shutdown.cancel();
    s.worker.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_waits_five_seconds_and_terminal_never_returns() {
    let mut s = setup().await;
    publish(&s.js, 1, &["retry", "success"]).await;
    publish(&s.js, 2, &["terminal"]).await;
    let mut first = None;
    let mut second = None;
    let mut terminal_deliveries = 0;
    while second.is_none() {
        let (id, delivered, at) = next(&mut s).await;
        match (id, delivered) {
            (1, 1) => first = Some(at),
            (1, 2) => second = Some(at),
            (2, _) => terminal_deliveries += 1,
            other => panic!("unexpected delivery {other:?}"),
        }
    }
    let waited = second.unwrap() - first.expect("first delivery");
    assert!(
        waited >= DEFAULT_RETRY_DELAY,
        "redelivered after {waited:?}"
    );

    // By now (5 s later) a nak'd message would have been redelivered long ago; the
    // terminated one was delivered once and is not pending.
    assert_eq!(terminal_deliveries, 1);
    let js = s.js.clone();
    let info = eventually("nothing pending", Duration::from_secs(10), || {
        let js = js.clone();
        async move {
            let info = consumer_info(&js).await;
            (info.num_ack_pending == 0).then_some(info)
        }
    })
    .await;
    assert_eq!(info.num_pending, 0);
    assert_eq!(
        info.num_redelivered, 0,
        "only the retried message was redelivered, and it is acked"
    );
    assert!(s.deliveries.try_recv().is_err(), "no further delivery");
    s.shutdown.cancel();
    s.worker.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_payload_is_terminal_and_the_worker_keeps_going() {
    let mut s = setup().await;
    s.js.publish("events.test.order", "{not json".into())
        .await
        .unwrap()
        .await
        .unwrap();
    s.js.publish("events.test.order", r#"{"id":"wrong type"}"#.into())
        .await
        .unwrap()
        .await
        .unwrap();
    let seq = publish(&s.js, 3, &["success"]).await;
    assert_eq!(next(&mut s).await.0, 3, "the good message is handled");
    let info = settled_through(&s.js, seq).await;
    assert_eq!(
        info.num_redelivered, 0,
        "undecodable messages are terminated, not retried"
    );
    assert!(
        s.deliveries.try_recv().is_err(),
        "they never reached the handler"
    );
    s.shutdown.cancel();
    s.worker.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_is_retried_and_the_worker_survives() {
    let mut s = setup().await;
    publish(&s.js, 1, &["panic", "success"]).await;
    let (id, delivered, _) = next(&mut s).await;
    assert_eq!((id, delivered), (1, 1));
    let (id, delivered, _) = next(&mut s).await;
    assert_eq!((id, delivered), (1, 2), "redelivered after the panic");
    s.shutdown.cancel();
    s.worker.await.unwrap();
}
