//! The whole path with real parts: simulator -> gateway (twilight) -> JetStream ->
//! the reference event and command workers. Every published message is handled by
//! its reference handler (decoded as its twilight-model type) and acked.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream;
use shardline_discord_sim::{Mix, SimConfig, Simulator, TrafficPlan};
use shardline_gateway::Config;
use shardline_proto::topology::{COMMAND_WORKER, EVENT_WORKER};
use shardline_testkit::{NatsServer, eventually, init_tracing};
use shardline_worker::{Handler, Handlers, Meta, Outcome, Worker, commands, events};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Wraps a reference handler and reports each outcome it returns. A payload that
/// fails to decode never reaches the handler, so it is never reported.
struct Reporting<H>(H, mpsc::UnboundedSender<(String, Outcome)>);

impl<H: Handler> Handler for Reporting<H> {
    type Payload = H::Payload;

    async fn handle(&self, payload: H::Payload, meta: &Meta) -> Outcome {
        let outcome = self.0.handle(payload, meta).await;
        let _ = self.1.send((meta.subject.clone(), outcome.clone()));
        outcome
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_reaches_its_handler_once() {
    init_tracing();
    let nats = NatsServer::start();
    let sim = Simulator::start(SimConfig {
        max_concurrency: 2,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let shutdown = CancellationToken::new();
    let mut config = Config::for_gateway(&sim.config().token, &sim.gateway_url(), 2, &nats.url());
    config.max_concurrency = Some(2);
    let gateway = tokio::spawn(shardline_gateway::run(config, shutdown.clone()));

    let (tx, mut outcomes) = mpsc::unbounded_channel();
    let event_handlers = Handlers::new()
        .on(
            "events.guild.join",
            Reporting(events::GuildJoin, tx.clone()),
        )
        .on(
            "events.guild.leave",
            Reporting(events::GuildLeave, tx.clone()),
        )
        .on(
            "events.member.join",
            Reporting(events::MemberJoin, tx.clone()),
        )
        .on(
            "events.member.leave",
            Reporting(events::MemberLeave, tx.clone()),
        )
        .on(
            "events.member.update",
            Reporting(events::MemberUpdated, tx.clone()),
        );
    let command_handlers = Handlers::new().on(
        "commands.interaction",
        Reporting(commands::InteractionLogger, tx),
    );
    let client = nats.client().await;
    let event_worker = tokio::spawn(
        Worker::new(&EVENT_WORKER, event_handlers).run(client.clone(), shutdown.clone()),
    );
    let command_worker = tokio::spawn(
        Worker::new(&COMMAND_WORKER, command_handlers).run(client.clone(), shutdown.clone()),
    );

    sim.wait_ready(0).await;
    sim.wait_ready(1).await;
    let guild = |shard| sim.guild_for_shard(shard, 0);
    sim.dispatch(
        0,
        "GUILD_CREATE",
        &shardline_discord_sim::fixtures::guild_create(guild(0), 2, 2, 2),
    )
    .await;
    sim.dispatch(
        1,
        "GUILD_DELETE",
        &format!(r#"{{"id":"{}"}}"#, sim.guilds(1)[0]),
    )
    .await;
    let sent = sim
        .play(TrafficPlan {
            shards: vec![0, 1],
            events_per_shard: 400,
            rate_per_second: None,
            mix: Mix::Realistic,
            seed: 3,
        })
        .await;
    let handled_subjects = [
        "events.guild.join",
        "events.guild.leave",
        "events.member.join",
        "events.member.leave",
        "events.member.update",
        "commands.interaction",
    ];
    let mut want: HashMap<String, usize> = HashMap::new();
    want.insert("events.guild.join".into(), 1);
    want.insert("events.guild.leave".into(), 1);
    for s in &sent {
        let subject = match s.event.as_str() {
            "GUILD_MEMBER_ADD" => "events.member.join",
            "GUILD_MEMBER_REMOVE" => "events.member.leave",
            "GUILD_MEMBER_UPDATE" => "events.member.update",
            "INTERACTION_CREATE" => "commands.interaction",
            // Every READY guild was lazily loaded already: another create is a join.
            "GUILD_CREATE" => "events.guild.join",
            _ => continue,
        };
        *want.entry(subject.into()).or_default() += 1;
    }
    let total: usize = want.values().sum();

    let mut got: HashMap<String, usize> = HashMap::new();
    for _ in 0..total {
        let Ok(next) = tokio::time::timeout(Duration::from_secs(30), outcomes.recv()).await else {
            panic!("handled {got:?}, want {want:?}");
        };
        let (subject, outcome) = next.expect("handlers alive");
        assert_eq!(outcome, Outcome::Success, "{subject}");
        assert!(handled_subjects.contains(&subject.as_str()));
        *got.entry(subject).or_default() += 1;
    }
    assert_eq!(got, want);

    // Every message of both streams is acked (the rest had no handler and were acked too).
    let js = jetstream::new(client);
    for (stream, durable) in [
        ("EVENTS", EVENT_WORKER.durable),
        ("COMMANDS", COMMAND_WORKER.durable),
    ] {
        let js = js.clone();
        eventually(
            &format!("{durable} caught up"),
            Duration::from_secs(30),
            move || {
                let js = js.clone();
                async move {
                    let mut s = js.get_stream(stream).await.ok()?;
                    let last = s.info().await.ok()?.state.last_sequence;
                    let info = s.consumer_info(durable).await.ok()?;
                    (info.ack_floor.stream_sequence == last && info.num_ack_pending == 0)
                        .then_some(())
                }
            },
        )
        .await;
    }
    assert!(outcomes.try_recv().is_err(), "no message handled twice");

    shutdown.cancel();
    gateway.await.unwrap().unwrap();
    event_worker.await.unwrap().unwrap();
    command_worker.await.unwrap().unwrap();
}
