//! The JetStream poller reads real stream and consumer state from a real server.

use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use shardline_gateway::jetstream_stats::snapshot;
use shardline_jetstream::ReconcileOptions;
use shardline_proto::topology::{EVENT_WORKER, STREAMS};
use shardline_testkit::{NatsServer, eventually};

#[tokio::test]
async fn snapshot_reports_depth_bytes_lag_and_one_node_on_a_single_server() {
    let nats = NatsServer::start();
    let js = jetstream::new(nats.client().await);

    // Before the topology exists every stream read fails and no node is seen.
    let (empty, errors) = snapshot(&js).await;
    assert_eq!(errors, STREAMS.len());
    assert_eq!(empty.nodes, 0);

    shardline_jetstream::reconcile_streams(&js, &STREAMS, ReconcileOptions::default())
        .await
        .unwrap();
    shardline_jetstream::reconcile_consumer(&js, &EVENT_WORKER)
        .await
        .unwrap();
    const N: u64 = 25;
    for i in 0..N {
        js.publish("events.test.stats", format!("message {i}").into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    // Deliver three, ack none: they are ack-pending, the rest still lag.
    let events = js.get_stream("EVENTS").await.unwrap();
    let pull: consumer::PullConsumer = events.get_consumer(EVENT_WORKER.durable).await.unwrap();
    let batch = pull.fetch().max_messages(3).messages().await.unwrap();
    let held: Vec<_> = futures_util::StreamExt::collect(batch).await;
    assert_eq!(held.len(), 3);

    let snap = eventually("the consumer's state", Duration::from_secs(10), || async {
        let (snap, errors) = snapshot(&js).await;
        let lag = snap
            .consumers
            .iter()
            .find(|c| c.0 == EVENT_WORKER.durable)?;
        (errors == 0 && lag.1 == N - 3 && lag.2 == 3).then_some(snap)
    })
    .await;
    let events = snap.streams.iter().find(|s| s.0 == "EVENTS").unwrap();
    assert_eq!(events.1, N, "messages");
    assert!(events.2 > 0, "bytes");
    assert_eq!(events.3, 1, "replicas");
    assert_eq!(snap.streams.len(), STREAMS.len());
    assert_eq!(snap.nodes, 1, "a standalone server is one node");
}
