//! `ensure_stream`, what workers use: it creates a missing stream with the replicas
//! it is given and never changes an existing one, so a worker cannot scale the
//! gateway's R3 streams down to R1. On the shipped 3-node configuration.

use std::time::Duration;

use async_nats::jetstream;
use shardline_jetstream::{Change, ReconcileOptions, ensure_stream, reconcile_stream};
use shardline_proto::topology::{DEAD_LETTER, EVENTS};
use shardline_testkit::NatsCluster;

async fn replicas(js: &jetstream::Context, name: &str) -> usize {
    let mut stream = js.get_stream(name).await.unwrap();
    stream.info().await.unwrap().config.num_replicas
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_never_downgrades_an_r3_stream() {
    let cluster = NatsCluster::start();
    cluster.wait_for_meta_leader(Duration::from_secs(30)).await;
    let js = jetstream::new(cluster.operator().await);
    let r1 = ReconcileOptions { replicas: 1 };
    let r3 = ReconcileOptions { replicas: 3 };

    // The gateway declared EVENTS with 3 replicas; a worker configured with 1 leaves it.
    assert_eq!(
        reconcile_stream(&js, &EVENTS, r3).await.unwrap(),
        Change::Created
    );
    assert_eq!(
        ensure_stream(&js, &EVENTS, r1).await.unwrap(),
        Change::Unchanged
    );
    assert_eq!(replicas(&js, EVENTS.name).await, 3);

    // A missing stream is created with the worker's replicas, then left alone.
    assert_eq!(
        ensure_stream(&js, &DEAD_LETTER, r3).await.unwrap(),
        Change::Created
    );
    assert_eq!(
        ensure_stream(&js, &DEAD_LETTER, r1).await.unwrap(),
        Change::Unchanged
    );
    assert_eq!(replicas(&js, DEAD_LETTER.name).await, 3);

    // What the old worker code did (reconcile with its default of 1) would downgrade.
    assert!(matches!(
        reconcile_stream(&js, &EVENTS, r1).await.unwrap(),
        Change::Updated(_)
    ));
    assert_eq!(replicas(&js, EVENTS.name).await, 1);
}
