//! The command worker against the simulator's REST endpoints: every interaction is
//! deferred once (a redelivery is not deferred again), commands run by name, and a
//! failure reaches the user as a follow-up and the dead-letter stream.

use std::time::Duration;

use async_nats::jetstream;
use shardline_discord_sim::{SimConfig, Simulator};
use shardline_gateway::Config;
use shardline_proto::payload::Interaction;
use shardline_proto::topology::COMMAND_WORKER;
use shardline_testkit::{NatsServer, eventually, init_tracing};
use shardline_worker::commands::{self, Command, CommandError, InteractionHandler, Reply};
use shardline_worker::{Context, Worker, deadletter};
use tokio_util::sync::CancellationToken;

#[path = "common/commands.rs"]
mod fixtures;
use fixtures::{FAST_COMMANDS, Flaky, interaction};

/// Always fails for good.
struct Broken;

impl Command for Broken {
    async fn run(&self, _: &Interaction, _: &Context) -> Result<Reply, CommandError> {
        Err(CommandError::Failed("it broke".into()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interactions_are_deferred_once_then_answered_or_reported() {
    init_tracing();
    let nats = NatsServer::start();
    let sim = Simulator::start(SimConfig {
        shard_total: 1,
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
    let table = commands::reference()
        .command("flaky", Flaky)
        .command("broken", Broken);
    let handler = InteractionHandler::new(&js, http, table).await.unwrap();
    let worker = tokio::spawn(
        Worker::new(&FAST_COMMANDS, commands::handlers(handler)).run(client, shutdown.clone()),
    );

    sim.wait_ready(0).await;
    let names = ["ping", "flaky", "broken", "nonexistent"];
    let mut ids = Vec::new();
    for (seed, name) in names.iter().enumerate() {
        let (id, d) = interaction(&sim, name, seed as u64);
        sim.dispatch(0, "INTERACTION_CREATE", &d).await;
        ids.push(id);
    }
    // Each interaction ends with one answer: an edit (ping, flaky) or a follow-up.
    let callbacks = eventually(
        "every interaction answered",
        Duration::from_secs(30),
        || async {
            let all = sim.interaction_callbacks();
            let answers = all.iter().filter(|c| c.kind != "callback").count();
            (answers >= names.len()).then_some(all)
        },
    )
    .await;
    for id in &ids {
        let defers = callbacks
            .iter()
            .filter(|c| c.kind == "callback" && &c.interaction_id == id);
        assert_eq!(defers.count(), 1, "interaction {id} deferred once");
    }
    let bodies: Vec<(&str, &str)> = callbacks
        .iter()
        .filter(|c| c.kind != "callback")
        .map(|c| (c.kind, c.body.as_str()))
        .collect();
    let has = |kind: &str, text: &str| bodies.iter().any(|(k, b)| *k == kind && b.contains(text));
    assert!(has("edit", "pong"), "{bodies:?}");
    assert!(
        has("edit", "second time lucky"),
        "flaky answered on its redelivery"
    );
    assert!(has("followup", "it broke"), "failure reported to the user");
    assert!(has("followup", "not available"), "unknown command reported");
    assert_eq!(bodies.len(), 4, "one answer each: {bodies:?}");

    // The failed and unknown commands are dead-lettered with their reason.
    let letters = eventually("dead letters", Duration::from_secs(10), || async {
        let letters = deadletter::list(&js, Some(COMMAND_WORKER.durable), 10)
            .await
            .ok()?;
        (letters.len() == 2).then_some(letters)
    })
    .await;
    let mut reasons: Vec<&str> = letters.iter().map(|l| l.reason.as_str()).collect();
    reasons.sort_unstable();
    assert_eq!(
        reasons,
        [
            "command broken failed: it broke",
            r#"no command named "nonexistent""#
        ]
    );

    shutdown.cancel();
    gateway.await.unwrap().unwrap();
    worker.await.unwrap().unwrap();
}
