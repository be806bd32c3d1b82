//! A 3-node cluster started from the NATS configuration Terraform ships, with every
//! service on its own locked-down credentials and R3 streams. With traffic flowing,
//! the EVENTS stream leader is killed (SIGKILL): the gateway and the event worker
//! carry on, and no event is lost or duplicated, neither in the stream nor at the
//! handler (counted by `Nats-Msg-Id`). The node is restarted and catches up.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures_util::StreamExt;
use serde::de::IgnoredAny;
use shardline_discord_sim::{Mix, SimConfig, Simulator, TrafficPlan};
use shardline_gateway::Config;
use shardline_jetstream::{ConnectOptions, NatsAuth};
use shardline_proto::topology::{COMMANDS, EVENT_WORKER, EVENTS};
use shardline_testkit::{NatsCluster, eventually, init_tracing, password};
use shardline_worker::{Context, Handler, Handlers, Outcome, Worker};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);

/// Counts each `Nats-Msg-Id` the handler sees.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<HashMap<String, u32>>>);

impl Handler for Seen {
    type Payload = IgnoredAny;

    async fn handle(&self, _: IgnoredAny, cx: &Context) -> Outcome {
        let id = cx
            .headers
            .get("Nats-Msg-Id")
            .expect("the gateway sets Nats-Msg-Id")
            .to_string();
        *self.0.lock().unwrap().entry(id).or_default() += 1;
        Outcome::Success
    }
}

fn auth(user: &str) -> NatsAuth {
    NatsAuth::user_password(user, &password(user))
}

async fn stream_info(js: &jetstream::Context, name: &str) -> Option<jetstream::stream::Info> {
    let mut stream = tokio::time::timeout(Duration::from_secs(2), js.get_stream(name))
        .await
        .ok()?
        .ok()?;
    tokio::time::timeout(Duration::from_secs(2), stream.info())
        .await
        .ok()?
        .ok()
        .cloned()
}

/// Every `Nats-Msg-Id` in `stream`, in order, read with an ordered consumer.
async fn ids_in_stream(js: &jetstream::Context, stream: &str, count: u64) -> Vec<String> {
    let consumer = js
        .get_stream(stream)
        .await
        .unwrap()
        .create_consumer(consumer::pull::OrderedConfig::default())
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut ids = Vec::new();
    while (ids.len() as u64) < count {
        let message = tokio::time::timeout(WAIT, messages.next())
            .await
            .expect("stream read")
            .unwrap()
            .unwrap();
        let headers = message.headers.as_ref().expect("headers");
        ids.push(headers.get("Nats-Msg-Id").unwrap().to_string());
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_loses_and_duplicates_nothing_and_catches_up() {
    init_tracing();
    let mut cluster = NatsCluster::start();
    cluster.wait_for_meta_leader(WAIT).await;
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let shutdown = CancellationToken::new();

    let mut config =
        Config::for_gateway(&sim.config().token, &sim.gateway_url(), 2, &cluster.url());
    config.nats_auth = auth("gateway");
    config.stream_replicas = 3;
    let gateway = tokio::spawn(shardline_gateway::run(config, shutdown.clone()));
    sim.wait_ready(0).await;
    sim.wait_ready(1).await;

    let seen = Seen::default();
    let worker_client = shardline_jetstream::connect(&ConnectOptions {
        url: cluster.url(),
        name: "event-worker".to_owned(),
        auth: auth("event-worker"),
    })
    .await
    .unwrap();
    let worker = tokio::spawn(
        Worker::new(&EVENT_WORKER, Handlers::new().on("events.>", seen.clone()))
            .stream_replicas(3)
            .run(worker_client, shutdown.clone()),
    );

    let js = jetstream::new(cluster.operator().await);
    for stream in [EVENTS.name, COMMANDS.name] {
        let info = eventually(stream, WAIT, || stream_info(&js, stream)).await;
        assert_eq!(info.config.num_replicas, 3, "{stream} is R3");
    }

    // Traffic for several seconds; the EVENTS leader dies a third of the way in.
    let events_per_shard = 3000;
    let traffic = {
        let sim = sim.clone();
        tokio::spawn(async move {
            sim.play(TrafficPlan {
                shards: vec![0, 1],
                events_per_shard,
                rate_per_second: Some(1000),
                mix: Mix::Only("MESSAGE_CREATE".to_owned()),
                seed: 7,
            })
            .await
        })
    };
    let leader = eventually("a third of the traffic stored", WAIT, || async {
        let info = stream_info(&js, EVENTS.name).await?;
        (info.state.messages >= events_per_shard as u64 * 2 / 3).then_some(info.cluster?.leader?)
    })
    .await;
    let victim = cluster.index_of(&leader).expect("the leader is a node");
    cluster.kill(victim);
    let killed_at = std::time::Instant::now();
    println!("killed {leader}, the EVENTS leader");
    let new_leader = eventually("a new EVENTS leader", WAIT, || async {
        let leader = stream_info(&js, EVENTS.name).await?.cluster?.leader?;
        (leader != cluster.server_name(victim)).then_some(leader)
    })
    .await;
    println!(
        "new EVENTS leader {new_leader} after {:?}",
        killed_at.elapsed()
    );

    let sent = traffic.await.unwrap();
    // Every dispatch the simulator logged (lazy-load GUILD_CREATEs too) belongs in EVENTS.
    let want: BTreeSet<String> = sim
        .sent()
        .iter()
        .filter(|s| s.event != "READY" && s.event != "RESUMED")
        .map(|s| format!("{}:{}", s.session_id, s.seq))
        .collect();
    assert!(want.len() >= sent.len());
    let stored = eventually("every event stored", WAIT, || async {
        let info = stream_info(&js, EVENTS.name).await?;
        (info.state.messages >= want.len() as u64).then_some(info.state.messages)
    })
    .await;
    let ids = ids_in_stream(&js, EVENTS.name, stored).await;
    let unique: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(ids.len(), unique.len(), "no event stored twice");
    assert_eq!(unique, want, "every event stored, nothing else");

    let handled = eventually("the worker handled every event", WAIT, || async {
        let seen = seen.0.lock().unwrap().clone();
        (seen.len() >= want.len()).then_some(seen)
    })
    .await;
    let twice: Vec<_> = handled.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "handled more than once: {twice:?}");
    assert_eq!(handled.keys().cloned().collect::<BTreeSet<_>>(), want);
    println!(
        "{} events sent, stored once and handled once across the kill",
        want.len()
    );

    // The node comes back, rejoins and catches up with what it missed.
    cluster.restart(victim);
    let restarted_at = std::time::Instant::now();
    let name = cluster.server_name(victim).to_owned();
    eventually(&format!("{name} current on EVENTS"), WAIT, || async {
        let info = stream_info(&js, EVENTS.name).await?;
        let cluster_info = info.cluster?;
        let replica = cluster_info.replicas.iter().find(|p| p.name == name)?;
        (replica.current && !replica.offline && replica.lag.unwrap_or(0) == 0).then_some(())
    })
    .await;
    println!(
        "{name} current again {:?} after its restart",
        restarted_at.elapsed()
    );
    // Asked on that node alone, it serves the whole stream.
    let node_js = jetstream::new(cluster.node_client(victim, "operator").await);
    let on_node = eventually("the restarted node answers", WAIT, || {
        stream_info(&node_js, EVENTS.name)
    })
    .await;
    assert_eq!(on_node.state.messages, stored);

    shutdown.cancel();
    gateway.await.unwrap().unwrap();
    worker.await.unwrap().unwrap();
}
