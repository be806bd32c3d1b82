//! The whole path with real parts: simulator -> gateway (twilight) -> JetStream ->
//! the reference event and command workers. Every published message is handled by
//! its reference handler (decoded as its twilight-model type) and acked; the event
//! worker's store holds what the events say (and a member join or update asks for an
//! eligibility check, on the ELIGIBILITY stream); every interaction is deferred once, and
//! the time from the gateway's read to the simulator's receipt of the defer is printed.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_nats::jetstream;
use shardline_app::events;
use shardline_app::store::InMemoryStore;
use shardline_discord_sim::{Mix, SimConfig, Simulator, TrafficPlan};
use shardline_gateway::Config;
use shardline_proto::payload::Interaction;
use shardline_proto::topology::{COMMAND_WORKER, EVENT_WORKER};
use shardline_testkit::{NatsServer, eventually, init_tracing};
use shardline_worker::commands::{self, InteractionHandler};
use shardline_worker::{Context, Handler, Handlers, Outcome, Worker};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Wraps a reference handler and reports each outcome it returns. A payload that
/// fails to decode never reaches the handler, so it is never reported.
struct Reporting<H>(H, mpsc::UnboundedSender<(String, Outcome)>);

impl<H: Handler> Handler for Reporting<H> {
    type Payload = H::Payload;

    async fn handle(&self, payload: H::Payload, cx: &Context) -> Outcome {
        let outcome = self.0.handle(payload, cx).await;
        let _ = self.1.send((cx.subject.clone(), outcome.clone()));
        outcome
    }
}

/// When the gateway read each interaction, by interaction id.
type ReadAt = Arc<Mutex<HashMap<String, SystemTime>>>;

/// Notes when the gateway read each interaction, then hands it on.
struct Timed<H>(H, ReadAt);

impl<H: Handler<Payload = Interaction>> Handler for Timed<H> {
    type Payload = Interaction;

    async fn handle(&self, interaction: Interaction, cx: &Context) -> Outcome {
        let at = cx.received_at().expect("the gateway stamps every message");
        self.1
            .lock()
            .unwrap()
            .insert(interaction.id.to_string(), at);
        self.0.handle(interaction, cx).await
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
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
    let store = InMemoryStore::new();
    let event_handlers = Handlers::new()
        .on(
            "events.guild.join",
            Reporting(events::GuildJoin(store.clone()), tx.clone()),
        )
        .on(
            "events.guild.leave",
            Reporting(events::GuildLeave(store.clone()), tx.clone()),
        )
        .on(
            "events.member.join",
            Reporting(events::MemberJoin(store.clone()), tx.clone()),
        )
        .on(
            "events.member.leave",
            Reporting(events::MemberLeave(store.clone()), tx.clone()),
        )
        .on(
            "events.member.update",
            Reporting(events::MemberUpdated(store.clone()), tx.clone()),
        );
    let client = nats.client().await;
    let http = commands::DiscordHttp::new(Some(&format!("http://{}", sim.http_base())), None);
    let interactions =
        InteractionHandler::new(&jetstream::new(client.clone()), http, commands::reference())
            .await
            .unwrap();
    let read_at = ReadAt::default();
    let command_handlers = Handlers::new().on(
        "commands.interaction",
        Reporting(Timed(interactions, read_at.clone()), tx),
    );
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
    // Members per guild as the events tell it (user ids are random: no user both
    // leaves and joins, so the order of handling cannot change the result).
    let mut members: HashMap<u64, HashSet<u64>> = HashMap::new();
    let mut left: Vec<(u64, u64)> = Vec::new();
    let mut interaction_ids = HashSet::new();
    for s in &sent {
        let d: serde_json::Value = serde_json::from_str(&s.d).unwrap();
        let id = |v: &serde_json::Value| v.as_str().unwrap().parse::<u64>().unwrap();
        match s.event.as_str() {
            "GUILD_MEMBER_ADD" | "GUILD_MEMBER_UPDATE" => {
                members
                    .entry(id(&d["guild_id"]))
                    .or_default()
                    .insert(id(&d["user"]["id"]));
            }
            "GUILD_MEMBER_REMOVE" => left.push((id(&d["guild_id"]), id(&d["user"]["id"]))),
            "INTERACTION_CREATE" => {
                interaction_ids.insert(d["id"].as_str().unwrap().to_owned());
            }
            _ => {}
        }
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

    // Each member join and update asked for one eligibility check.
    let checks = js
        .get_stream("ELIGIBILITY")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .messages;
    let member_events = want["events.member.join"] + want["events.member.update"];
    assert_eq!(
        checks as usize, member_events,
        "one check per join and update"
    );

    // The store holds what the events say.
    assert_eq!(
        store
            .guild_record(guild(0))
            .map(|g| g.state.name.is_empty()),
        Some(false),
        "joined guild stored"
    );
    for (guild, users) in &members {
        let record = store.guild_record(*guild).expect("guild of a member event");
        assert_eq!(&record.members, users, "members of {guild}");
    }
    for (guild, user) in &left {
        assert!(
            !store
                .guild_record(*guild)
                .is_some_and(|g| g.members.contains(user))
        );
    }

    // Leaving a guild marks it inactive and keeps its history.
    let (busiest, _) = members.iter().max_by_key(|(_, users)| users.len()).unwrap();
    let guilds_before = store.guild_count();
    sim.dispatch(1, "GUILD_DELETE", &format!(r#"{{"id":"{busiest}"}}"#))
        .await;
    let (subject, outcome) = tokio::time::timeout(Duration::from_secs(30), outcomes.recv())
        .await
        .expect("leave handled")
        .unwrap();
    assert_eq!(
        (subject.as_str(), outcome),
        ("events.guild.leave", Outcome::Success)
    );
    let left_guild = store.guild_record(*busiest).expect("history kept");
    assert!(!left_guild.state.active, "left guild inactive");
    assert_eq!(&left_guild.members, &members[busiest], "members kept");
    assert_eq!(store.guild_count(), guilds_before);

    // Every interaction was deferred exactly once, and answered "pong".
    let callbacks = sim.interaction_callbacks();
    let deferred: Vec<_> = callbacks.iter().filter(|c| c.kind == "callback").collect();
    let ids: HashSet<String> = deferred.iter().map(|c| c.interaction_id.clone()).collect();
    assert_eq!(
        deferred.len(),
        interaction_ids.len(),
        "one defer per interaction"
    );
    assert_eq!(ids, interaction_ids);
    assert!(
        deferred
            .iter()
            .all(|c| c.status == 204 && c.body.contains(r#""type":5"#))
    );
    let edits = callbacks
        .iter()
        .filter(|c| c.kind == "edit" && c.body.contains("pong"));
    assert_eq!(edits.count(), interaction_ids.len(), "every /ping answered");
    let read_at = read_at.lock().unwrap().clone();
    let mut latencies: Vec<Duration> = deferred
        .iter()
        .map(|c| {
            c.received_at
                .duration_since(read_at[&c.interaction_id])
                .unwrap()
        })
        .collect();
    latencies.sort();
    println!(
        "gateway read -> defer received, {} interactions: p50 {:?}, p99 {:?}, max {:?}",
        latencies.len(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies[latencies.len() - 1],
    );

    shutdown.cancel();
    gateway.await.unwrap().unwrap();
    event_worker.await.unwrap().unwrap();
    command_worker.await.unwrap().unwrap();
}
