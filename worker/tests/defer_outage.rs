//! A defer refused for longer than the first retries (the REST proxy without a lease
//! holder while NATS elects a leader after a node died, seen in the chaos soak)
//! must not use up the interaction's deliveries before Discord's 3 s deadline.

use std::time::Duration;

use async_nats::jetstream;
use shardline_discord_sim::{RestFault, RestLatency, SimConfig, Simulator};
use shardline_gateway::Config;
use shardline_proto::topology::COMMAND_WORKER;
use shardline_testkit::{NatsServer, eventually, init_tracing};
use shardline_worker::commands::{self, InteractionHandler};
use shardline_worker::{Worker, deadletter};
use tokio_util::sync::CancellationToken;

#[path = "common/commands.rs"]
mod fixtures;
use fixtures::interaction;

/// How long Discord (or the proxy) refuses the defer: longer than four retries at
/// the old 250 ms spacing, well inside the deadline.
const OUTAGE: Duration = Duration::from_millis(1500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_defer_refused_for_over_a_second_is_retried_until_accepted() {
    init_tracing();
    let nats = NatsServer::start();
    let sim = Simulator::start(SimConfig {
        shard_total: 1,
        rest_latency: RestLatency::between_ms(5, 15),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let shutdown = CancellationToken::new();
    let config = Config::for_gateway(&sim.config().token, &sim.gateway_url(), 1, &nats.url());
    let gateway = tokio::spawn(shardline_gateway::run(config, shutdown.clone()));
    let client = nats.client().await;
    let js = jetstream::new(client.clone());
    let http = commands::DiscordHttp::new(Some(&format!("http://{}", sim.http_base())), None);
    let handler = InteractionHandler::new(&js, http, commands::reference())
        .await
        .unwrap();
    let worker = tokio::spawn(
        Worker::new(&COMMAND_WORKER, commands::handlers(handler)).run(client, shutdown.clone()),
    );
    sim.wait_ready(0).await;

    sim.inject_rest_fault("/interactions/", RestFault::Status(503), usize::MAX);
    let (id, d) = interaction(&sim, "ping", 1);
    sim.dispatch(0, "INTERACTION_CREATE", &d).await;
    let refused = || {
        sim.rest_requests()
            .iter()
            .filter(|r| r.path.starts_with("/interactions/") && r.status == 503)
            .count()
    };
    eventually(
        "the first defer refused",
        Duration::from_secs(10),
        || async { (refused() > 0).then_some(()) },
    )
    .await;
    // The outage's length is the scenario itself, not a wait for something.
    tokio::time::sleep(OUTAGE).await;
    sim.clear_rest_faults();

    eventually(
        "the interaction deferred",
        Duration::from_secs(10),
        || async {
            sim.interaction_callbacks()
                .iter()
                .any(|c| c.kind == "callback" && c.interaction_id == id && c.status < 300)
                .then_some(())
        },
    )
    .await;
    assert!(refused() >= 2, "the outage spanned several deliveries");
    let letters = deadletter::list(&js, Some(COMMAND_WORKER.durable), 10)
        .await
        .unwrap();
    assert!(letters.is_empty(), "nothing dead-lettered: {letters:?}");

    shutdown.cancel();
    gateway.await.unwrap().unwrap();
    worker.await.unwrap().unwrap();
}
