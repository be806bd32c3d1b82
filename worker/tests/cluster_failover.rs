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
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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

/// Errors a gateway meets at start when the cluster is slow to answer, not misconfigured.
fn startup_timeout(kind: shardline_gateway::ErrorKind) -> bool {
    use shardline_gateway::ErrorKind::{Kv, Topology};
    matches!(kind, Topology | Kv)
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

/// Waits until node `i` holds its own complete copy of EVENTS again (`expected`
/// messages and last sequence, read from the node's monitoring endpoint: stream
/// info is answered by the leader) and the stream, with a leader, still reports
/// `expected` with node `i` a current replica.
async fn catches_up(
    cluster: &NatsCluster,
    js: &jetstream::Context,
    i: usize,
    expected: (u64, u64),
    how: &str,
) {
    let started = std::time::Instant::now();
    let name = cluster.server_name(i).to_owned();
    eventually(
        &format!("{name}'s own copy complete ({how})"),
        WAIT,
        || async { (node_stream_state(cluster, i, EVENTS.name).await? == expected).then_some(()) },
    )
    .await;
    println!(
        "{name} holds all {} messages {:?} after it was {how}",
        expected.0,
        started.elapsed()
    );
    let transient = Mutex::new(Vec::new());
    eventually(
        &format!("EVENTS led, whole, {name} current ({how})"),
        WAIT,
        || async {
            let info = stream_info(js, EVENTS.name).await?;
            let cluster_info = info.cluster.clone()?;
            let state = (info.state.messages, info.state.last_sequence);
            if state != expected {
                let seen = format!("{state:?} led by {:?}", cluster_info.leader);
                transient.lock().unwrap().push(seen);
                return None;
            }
            cluster_info.leader.as_ref()?;
            let replica = cluster_info.replicas.iter().find(|p| p.name == name)?;
            (replica.current && !replica.offline).then_some(())
        },
    )
    .await;
    let transient = transient.into_inner().unwrap();
    if let Some(first) = transient.first() {
        println!(
            "stream info disagreed {} times meanwhile ({how}), first {first}",
            transient.len()
        );
    }
}

/// `(messages, last sequence)` of `stream` as node `i` itself holds it.
async fn node_stream_state(cluster: &NatsCluster, i: usize, stream: &str) -> Option<(u64, u64)> {
    let mut connection = tokio::net::TcpStream::connect(cluster.monitoring_addr(i))
        .await
        .ok()?;
    let request =
        "GET /jsz?accounts=true&streams=true HTTP/1.0\r\nHost: x\r\nConnection: close\r\n\r\n";
    connection.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    connection.read_to_string(&mut response).await.ok()?;
    let body = response.split("\r\n\r\n").nth(1)?;
    let jsz: serde_json::Value = serde_json::from_str(body).ok()?;
    let state = jsz["account_details"]
        .as_array()?
        .iter()
        .flat_map(|a| a["stream_detail"].as_array().cloned().unwrap_or_default())
        .find(|s| s["name"] == stream)?["state"]
        .clone();
    Some((state["messages"].as_u64()?, state["last_seq"].as_u64()?))
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
    // A gateway whose topology requests time out on the freshly started cluster (R3
    // streams and buckets being created under the suite's load) exits, and its
    // orchestrator starts it again: so does the test.
    let gateway = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            loop {
                match shardline_gateway::run(config.clone(), shutdown.clone()).await {
                    Err(e) if !shutdown.is_cancelled() && startup_timeout(e.kind()) => {
                        println!("the gateway stopped at start ({e}); starting it again");
                    }
                    ended => return ended,
                }
            }
        }
    });
    for shard in [0, 1] {
        tokio::time::timeout(WAIT * 2, sim.wait_ready(shard))
            .await
            .unwrap_or_else(|_| panic!("shard {shard} never ready"));
    }

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

    // The node comes back with its store, rejoins and catches up with what it missed.
    let name = cluster.server_name(victim).to_owned();
    let last = stream_info(&js, EVENTS.name)
        .await
        .expect("stream info")
        .state
        .last_sequence;
    cluster.restart(victim);
    catches_up(
        &cluster,
        &js,
        victim,
        (stored, last),
        "restarted with its store",
    )
    .await;
    // And once more with its disk lost (a replaced task on Fargate's ephemeral storage).
    cluster.restart_empty(victim);
    catches_up(
        &cluster,
        &js,
        victim,
        (stored, last),
        "restarted with an empty store",
    )
    .await;
    println!("{name} caught up twice");

    shutdown.cancel();
    gateway.await.unwrap().unwrap();
    worker.await.unwrap().unwrap();
}
