//! Every outcome and its ack kind, checked through the handler's deliveries, the
//! consumer's state and the dead-letter stream on a real nats-server.

mod common;

use std::time::{Duration, Instant};

use async_nats::jetstream;
use serde::Deserialize;
use shardline_proto::topology::{ConsumerSpec, EVENT_WORKER, RetryPolicy};
use shardline_testkit::{NatsServer, eventually};
use shardline_worker::deadletter::{self, DeadLetter};
use shardline_worker::{Context, Handler, Handlers, Outcome, Worker};

/// A consumer that retries fast, so the delivery limit is reached in a test's time.
static FAST: ConsumerSpec = ConsumerSpec {
    durable: "fast-worker",
    stream: "EVENTS",
    filter_subjects: &["events.test.>"],
    max_ack_pending: 10,
    ack_wait: Duration::from_secs(30),
    max_deliver: 5,
    retry: RetryPolicy::fixed(Duration::from_millis(50)),
};

/// A consumer whose retry delay doubles: 200, 400, 800, 800 ms.
static GROWING: ConsumerSpec = ConsumerSpec {
    durable: "growing-worker",
    retry: RetryPolicy::exponential(Duration::from_millis(200), Duration::from_millis(800)),
    ..FAST
};
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

    async fn handle(&self, order: Order, cx: &Context) -> Outcome {
        let _ = self.0.send((order.id, cx.delivered, Instant::now()));
        let index = usize::try_from(cx.delivered - 1)
            .unwrap()
            .min(order.answers.len() - 1);
        match order.answers[index].as_str() {
            "success" => Outcome::Success,
            "retry" => Outcome::retry(),
            "retry-1s" => Outcome::retry_after(Duration::from_secs(1)),
            "panic" => panic!("handler bug"),
            _ => Outcome::terminal("scripted"),
        }
    }
}

struct Setup {
    spec: &'static ConsumerSpec,
    _nats: NatsServer,
    js: jetstream::Context,
    deliveries: mpsc::UnboundedReceiver<(u32, i64, Instant)>,
    shutdown: CancellationToken,
    worker: tokio::task::JoinHandle<()>,
}

async fn setup(spec: &'static ConsumerSpec) -> Setup {
    let (nats, client, js) = common::nats_with_events().await;
    let (tx, deliveries) = mpsc::unbounded_channel();
    let handlers = Handlers::new().on("events.test.>", Scripted(tx));
    let shutdown = CancellationToken::new();
    let worker = Worker::new(spec, handlers);
    let token = shutdown.clone();
    let worker = tokio::spawn(async move { worker.run(client, token).await.unwrap() });
    Setup {
        spec,
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

async fn consumer_info(s: &Setup) -> jetstream::consumer::Info {
    s.js.get_stream_no_info("EVENTS")
        .await
        .unwrap()
        .consumer_info(s.spec.durable)
        .await
        .unwrap()
}

/// Waits until every message up to stream sequence `seq` is acked or terminated
/// and nothing is pending.
async fn settled_through(s: &Setup, seq: u64) -> jetstream::consumer::Info {
    eventually("consumer settled", Duration::from_secs(10), || async {
        let info = consumer_info(s).await;
        (info.ack_floor.stream_sequence >= seq && info.num_ack_pending == 0).then_some(info)
    })
    .await
}

/// Waits for `n` dead letters of the setup's consumer.
async fn dead_letters(s: &Setup, n: usize) -> Vec<DeadLetter> {
    eventually("dead letters", Duration::from_secs(10), || async {
        let letters = deadletter::list(&s.js, Some(s.spec.durable), 100)
            .await
            .unwrap();
        (letters.len() >= n).then_some(letters)
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
    let mut s = setup(&EVENT_WORKER).await;
    let seq = publish(&s.js, 1, &["success"]).await;
    assert_eq!(next(&mut s).await.0, 1);
    let info = settled_through(&s, seq).await;
    assert_eq!(info.num_redelivered, 0);
    assert!(deadletter::list(&s.js, None, 10).await.unwrap().is_empty());
    s.shutdown.cancel();
    s.worker.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_waits_five_seconds_and_terminal_is_dead_lettered() {
    let mut s = setup(&EVENT_WORKER).await;
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
        waited >= Duration::from_secs(5),
        "redelivered after {waited:?}"
    );

    // By now (5 s later) a nak'd message would have been redelivered long ago; the
    // terminated one was delivered once and is not pending.
    assert_eq!(terminal_deliveries, 1);
    let info = eventually("nothing pending", Duration::from_secs(10), || async {
        let info = consumer_info(&s).await;
        (info.num_ack_pending == 0).then_some(info)
    })
    .await;
    assert_eq!(info.num_pending, 0);
    assert_eq!(
        info.num_redelivered, 0,
        "only the retried message was redelivered, and it is acked"
    );
    assert!(s.deliveries.try_recv().is_err(), "no further delivery");

    let letters = dead_letters(&s, 1).await;
    assert_eq!(
        letters.len(),
        1,
        "only the terminal message is dead-lettered"
    );
    let letter = &letters[0];
    assert_eq!(letter.original_subject, "events.test.order");
    assert_eq!(letter.consumer, "event-worker");
    assert_eq!(letter.kind, "terminal");
    assert_eq!(letter.reason, "scripted");
    assert_eq!(letter.delivered, 1);
    let order: serde_json::Value = serde_json::from_slice(&letter.payload).unwrap();
    assert_eq!(order["id"], 2, "the payload is kept byte for byte");
    s.shutdown.cancel();
    s.worker.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_payload_is_dead_lettered_and_the_worker_keeps_going() {
    let mut s = setup(&EVENT_WORKER).await;
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
    let info = settled_through(&s, seq).await;
    assert_eq!(
        info.num_redelivered, 0,
        "undecodable messages are terminated, not retried"
    );
    assert!(
        s.deliveries.try_recv().is_err(),
        "they never reached the handler"
    );
    let letters = dead_letters(&s, 2).await;
    // Handled concurrently: dead-lettered in whichever order each finished.
    let mut payloads: Vec<&[u8]> = letters.iter().map(|l| &l.payload[..]).collect();
    payloads.sort_unstable();
    assert_eq!(payloads, [br#"{"id":"wrong type"}"#, &b"{not json"[..]]);
    for letter in &letters {
        assert_eq!(letter.kind, "undecodable");
        assert!(
            letter.reason.contains("Order"),
            "reason names the type: {}",
            letter.reason
        );
    }
    s.shutdown.cancel();
    s.worker.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_is_retried_then_dead_lettered_and_the_worker_survives() {
    let mut s = setup(&FAST).await;
    publish(&s.js, 1, &["panic", "success"]).await;
    let (id, delivered, _) = next(&mut s).await;
    assert_eq!((id, delivered), (1, 1));
    let (id, delivered, _) = next(&mut s).await;
    assert_eq!((id, delivered), (1, 2), "redelivered after the panic");

    publish(&s.js, 2, &["panic"]).await;
    let mut seen = Vec::new();
    for _ in 0..5 {
        let (id, delivered, _) = next(&mut s).await;
        assert_eq!(id, 2);
        seen.push(delivered);
    }
    assert_eq!(seen, [1, 2, 3, 4, 5], "delivered up to the limit");
    let letters = dead_letters(&s, 1).await;
    assert_eq!(
        (letters[0].kind.as_str(), letters[0].delivered),
        ("max_deliveries", 5)
    );
    assert!(
        letters[0].reason.contains("panicked"),
        "{}",
        letters[0].reason
    );

    let seq = publish(&s.js, 3, &["success"]).await;
    assert_eq!(next(&mut s).await.0, 3, "the worker still handles messages");
    settled_through(&s, seq).await;
    assert!(
        s.deliveries.try_recv().is_err(),
        "message 2 never came back"
    );
    s.shutdown.cancel();
    s.worker.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_stop_at_the_delivery_limit_with_a_dead_letter() {
    let mut s = setup(&FAST).await;
    let seq = publish(&s.js, 1, &["retry"]).await;
    let mut seen = Vec::new();
    for _ in 0..5 {
        seen.push(next(&mut s).await.1);
    }
    assert_eq!(seen, [1, 2, 3, 4, 5]);
    let letters = dead_letters(&s, 1).await;
    assert_eq!(letters.len(), 1);
    assert_eq!(
        (letters[0].kind.as_str(), letters[0].delivered),
        ("max_deliveries", 5)
    );
    let info = settled_through(&s, seq).await;
    assert_eq!(info.num_pending, 0);
    assert!(s.deliveries.try_recv().is_err(), "no sixth delivery");
    s.shutdown.cancel();
    s.worker.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_delays_grow_per_delivery_and_a_handler_may_choose_its_own() {
    let mut s = setup(&GROWING).await;
    publish(&s.js, 1, &["retry", "retry", "retry", "retry", "success"]).await;
    let mut at = Vec::new();
    for _ in 0..5 {
        at.push(next(&mut s).await.2);
    }
    let gaps: Vec<Duration> = at.windows(2).map(|w| w[1] - w[0]).collect();
    for (n, gap) in gaps.iter().enumerate() {
        let want = GROWING.retry.delay(i64::try_from(n).unwrap() + 1);
        assert!(
            *gap >= want,
            "delivery {} came {gap:?} after the previous, before {want:?}",
            n + 2
        );
    }

    publish(&s.js, 2, &["retry-1s", "success"]).await;
    let (_, _, first) = next(&mut s).await;
    let (id, delivered, second) = next(&mut s).await;
    assert_eq!((id, delivered), (2, 2));
    assert!(
        second - first >= Duration::from_secs(1),
        "the handler's own delay wins"
    );
    s.shutdown.cancel();
    s.worker.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_payloads_are_decoded_and_corrupt_ones_dead_lettered() {
    use shardline_proto::{encoding, headers};
    let mut s = setup(&FAST).await;
    let zstd = |body: Vec<u8>| {
        let mut h = async_nats::HeaderMap::new();
        h.insert(headers::ENCODING, encoding::ZSTD);
        (h, body)
    };
    let order = serde_json::json!({ "id": 7, "answers": ["success"] }).to_string();
    let (h, body) = zstd(encoding::encode_zstd(order.as_bytes()).unwrap());
    s.js.publish_with_headers("events.test.big", h, body.into())
        .await
        .unwrap()
        .await
        .unwrap();
    // A frame from another producer's streaming compressor: no content size.
    let mut cctx = zstd_safe::CCtx::create();
    cctx.set_parameter(zstd_safe::CParameter::ContentSizeFlag(false))
        .unwrap();
    let order = serde_json::json!({ "id": 8, "answers": ["success"] }).to_string();
    let mut frame = vec![0u8; zstd_safe::compress_bound(order.len())];
    let written = cctx.compress2(&mut frame[..], order.as_bytes()).unwrap();
    frame.truncate(written);
    let (h, body) = zstd(frame);
    s.js.publish_with_headers("events.test.big", h, body.into())
        .await
        .unwrap()
        .await
        .unwrap();
    let (h, body) = zstd(b"not zstd at all".to_vec());
    let seq =
        s.js.publish_with_headers("events.test.big", h, body.into())
            .await
            .unwrap()
            .await
            .unwrap()
            .sequence;
    // Handled concurrently: the two orders may reach the handler in either order.
    let mut decoded = [next(&mut s).await.0, next(&mut s).await.0];
    decoded.sort_unstable();
    assert_eq!(
        decoded,
        [7, 8],
        "the compressed order (7) and a frame without a content size (8) reach the handler decoded"
    );
    let letters = dead_letters(&s, 1).await;
    assert_eq!(letters[0].kind, "undecodable");
    assert_eq!(
        &letters[0].payload[..],
        b"not zstd at all",
        "kept as received"
    );
    settled_through(&s, seq).await;
    assert!(s.deliveries.try_recv().is_err());
    s.shutdown.cancel();
    s.worker.await.unwrap();
}

/// Sends each delivery's `stored_at`.
struct StoredAt(mpsc::UnboundedSender<Option<std::time::SystemTime>>);

impl Handler for StoredAt {
    type Payload = serde::de::IgnoredAny;

    async fn handle(&self, _: serde::de::IgnoredAny, cx: &Context) -> Outcome {
        let _ = self.0.send(cx.stored_at);
        Outcome::Success
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_context_carries_the_time_the_stream_stored_the_message() {
    let (_nats, client, js) = common::nats_with_events().await;
    let (tx, mut stored) = mpsc::unbounded_channel();
    let shutdown = CancellationToken::new();
    let worker = Worker::new(&EVENT_WORKER, Handlers::new().on("events.>", StoredAt(tx)));
    let worker = tokio::spawn(worker.run(client, shutdown.clone()));
    let seq = publish(&js, 1, &["success"]).await;
    let at = tokio::time::timeout(Duration::from_secs(60), stored.recv())
        .await
        .expect("a delivery within a minute")
        .expect("handler alive")
        .expect("stored_at is set");
    let message = js
        .get_stream_no_info("EVENTS")
        .await
        .unwrap()
        .get_raw_message(seq)
        .await
        .unwrap();
    let nanos = at.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    assert_eq!(nanos as i128, message.time.unix_timestamp_nanos());
    shutdown.cancel();
    worker.await.unwrap().unwrap();
}
