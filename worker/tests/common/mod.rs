//! What the worker tests share.

use async_nats::jetstream;
use shardline_proto::topology::EVENTS;
use shardline_testkit::{NatsServer, init_tracing};

/// A fresh nats-server with the EVENTS stream declared (so a test can publish before
/// its worker has started), a client, and a JetStream context on it.
pub async fn nats_with_events() -> (NatsServer, async_nats::Client, jetstream::Context) {
    init_tracing();
    let nats = NatsServer::start();
    let client = nats.client().await;
    let js = jetstream::new(client.clone());
    shardline_jetstream::reconcile_stream(&js, &EVENTS, Default::default())
        .await
        .unwrap();
    (nats, client, js)
}
