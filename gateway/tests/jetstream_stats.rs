//! The JetStream poller reads real stream and consumer state from a real server.

use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use shardline_gateway::jetstream_stats::snapshot;
use shardline_jetstream::ReconcileOptions;
use shardline_proto::topology::{EVENT_WORKER, STREAMS};
use shardline_testkit::{NatsCluster, NatsServer, eventually};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_count_live_replicas_of_an_r3_cluster_and_drop_below_quorum() {
    // The shipped configuration (terraform/nats/nats.conf), as the operator user.
    let mut cluster = NatsCluster::start();
    cluster.wait_for_meta_leader(Duration::from_secs(30)).await;
    // Talk to node 0 only: node 2 and then node 1 are killed.
    let js = jetstream::new(cluster.node_client(0, "operator").await);
    let r3 = ReconcileOptions { replicas: 3 };
    eventually("R3 streams declared", Duration::from_secs(30), || async {
        shardline_jetstream::reconcile_streams(&js, &STREAMS, r3)
            .await
            .ok()
    })
    .await;

    let nodes = |want: fn(usize) -> bool| {
        let js = js.clone();
        async move {
            let (snap, _) = snapshot(&js).await;
            want(snap.nodes).then_some(snap)
        }
    };
    let all = eventually("three live nodes", Duration::from_secs(30), || {
        nodes(|n| n == 3)
    })
    .await;
    assert!(all.streams.iter().all(|s| s.3 == 3), "every stream R3");

    cluster.kill(2);
    eventually(
        "two live nodes after one is killed",
        Duration::from_secs(60),
        || nodes(|n| n == 2),
    )
    .await;

    // Two of three gone: no stream has a quorum, and the poller sees fewer than two.
    cluster.kill(1);
    let lost = eventually("quorum lost", Duration::from_secs(90), || nodes(|n| n < 2)).await;
    println!(
        "after losing 2 of 3 servers the poller sees {} node(s)",
        lost.nodes
    );
}
