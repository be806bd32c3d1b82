//! Topology reconciliation against a real nats-server: idempotent, updates what
//! differs, refuses what JetStream cannot change.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use shardline_jetstream::{
    Change, ReconcileOptions, TopologyErrorKind, reconcile_consumer, reconcile_streams,
};
use shardline_proto::topology::{CONSUMERS, STREAMS};
use shardline_testkit::NatsServer;

#[tokio::test]
async fn starting_twice_changes_nothing() {
    let nats = NatsServer::start();
    let js = jetstream::new(nats.client().await);
    let first = reconcile_streams(&js, &STREAMS, ReconcileOptions::default())
        .await
        .unwrap();
    assert!(
        first.iter().all(|(_, c)| *c == Change::Created),
        "{first:?}"
    );
    for consumer in &CONSUMERS {
        assert_eq!(
            reconcile_consumer(&js, consumer).await.unwrap(),
            Change::Created
        );
    }
    let created = js.get_stream("EVENTS").await.unwrap().cached_info().created;

    let second = reconcile_streams(&js, &STREAMS, ReconcileOptions::default())
        .await
        .unwrap();
    assert!(
        second.iter().all(|(_, c)| *c == Change::Unchanged),
        "{second:?}"
    );
    for consumer in &CONSUMERS {
        assert_eq!(
            reconcile_consumer(&js, consumer).await.unwrap(),
            Change::Unchanged
        );
    }
    let info = js.get_stream("EVENTS").await.unwrap().cached_info().clone();
    assert_eq!(info.created, created, "the stream was not recreated");

    for spec in &STREAMS {
        let config = js
            .get_stream(spec.name)
            .await
            .unwrap()
            .cached_info()
            .config
            .clone();
        assert_eq!(config.max_age, spec.max_age, "{}", spec.name);
        assert_eq!(
            config.duplicate_window,
            spec.duplicate_window(),
            "{}",
            spec.name
        );
        assert!(config.duplicate_window <= config.max_age);
    }
}

#[tokio::test]
async fn a_stream_with_another_max_age_is_updated() {
    let nats = NatsServer::start();
    let js = jetstream::new(nats.client().await);
    js.create_stream(stream::Config {
        name: "EVENTS".to_owned(),
        subjects: vec!["events.>".to_owned()],
        storage: stream::StorageType::Memory,
        max_age: Duration::from_secs(30),
        duplicate_window: Duration::from_secs(30),
        ..Default::default()
    })
    .await
    .unwrap();
    js.publish("events.kept", "still here".into())
        .await
        .unwrap()
        .await
        .unwrap();

    let changes = reconcile_streams(&js, &STREAMS[1..2], ReconcileOptions::default())
        .await
        .unwrap();
    let Change::Updated(fields) = &changes[0].1 else {
        panic!("expected an update, got {changes:?}")
    };
    assert!(
        fields.iter().any(|f| f.starts_with("max_age")),
        "{fields:?}"
    );
    let mut events = js.get_stream("EVENTS").await.unwrap();
    let info = events.info().await.unwrap();
    assert_eq!(info.config.max_age, Duration::from_secs(300));
    assert_eq!(info.config.duplicate_window, Duration::from_secs(120));
    assert_eq!(
        info.state.messages, 1,
        "updating kept the stream's messages"
    );
}

#[tokio::test]
async fn storage_cannot_change_in_place() {
    let nats = NatsServer::start();
    let js = jetstream::new(nats.client().await);
    js.create_stream(stream::Config {
        name: "EVENTS".to_owned(),
        subjects: vec!["events.>".to_owned()],
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .unwrap();
    let error = reconcile_streams(&js, &STREAMS[1..2], ReconcileOptions::default())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), TopologyErrorKind::Immutable);
    assert_eq!(error.target(), "EVENTS");
}

#[tokio::test]
async fn a_consumer_with_another_ack_wait_is_updated() {
    let nats = NatsServer::start();
    let js = jetstream::new(nats.client().await);
    reconcile_streams(&js, &STREAMS, ReconcileOptions::default())
        .await
        .unwrap();
    let mut drifted = shardline_jetstream::consumer_config(&CONSUMERS[1]);
    drifted.ack_wait = Duration::from_secs(3);
    js.get_stream("EVENTS")
        .await
        .unwrap()
        .create_consumer(drifted)
        .await
        .unwrap();
    let Change::Updated(fields) = reconcile_consumer(&js, &CONSUMERS[1]).await.unwrap() else {
        panic!("expected an update")
    };
    assert!(
        fields.iter().any(|f| f.starts_with("ack_wait")),
        "{fields:?}"
    );
    let info = js
        .get_stream("EVENTS")
        .await
        .unwrap()
        .consumer_info(CONSUMERS[1].durable)
        .await
        .unwrap();
    assert_eq!(info.config.ack_wait, Duration::from_secs(15));
}
