//! The HTTP path on the NATS configuration Terraform ships, as a 3-node cluster with
//! each service's own user: the interactions service creates COMMANDS (no gateway
//! runs: an HTTP-only bot needs none), publishes, takes offers and answers them; the
//! command worker offers first responses; neither is refused anything, and the
//! interactions user can do nothing else.

mod common;

use std::time::Duration;

use shardline_discord_sim::{Signing, Verdict};
use shardline_jetstream::NatsAuth;
use shardline_proto::subject::GUILD_JOIN;
use shardline_proto::topology::{COMMAND_WORKER, COMMANDS};
use shardline_testkit::{NatsCluster, eventually, init_tracing, password};
use shardline_worker::Worker;
use shardline_worker::commands::{self, InteractionHandler};
use tokio_util::sync::CancellationToken;

use common::{PATIENCE, command, discord, test_commands};

#[path = "../../worker/tests/common/cluster_auth.rs"]
mod cluster_auth;
use cluster_auth::connect_as;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_path_needs_nothing_its_users_lack() {
    init_tracing();
    let cluster = NatsCluster::start();
    cluster.wait_for_meta_leader(Duration::from_secs(30)).await;
    let sim = shardline_discord_sim::Simulator::start(Default::default())
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let mut config = shardline_interactions::Config::new(&common::public_key(), &cluster.url());
    config.nats_auth = NatsAuth::user_password("interactions", &password("interactions"));
    config.stream_replicas = 3;
    let service = shardline_interactions::start(config, shutdown.clone())
        .await
        .unwrap();

    let (client, _) = connect_as(&cluster, "command-worker").await;
    let mut js = async_nats::jetstream::new(client.clone());
    // Creating the R3 bucket on a cluster born a moment ago can outlast the default
    // 5 s request timeout on a busy host.
    js.set_timeout(Duration::from_secs(30));
    let http = commands::DiscordHttp::new(Some(&format!("http://{}", sim.http_base())), None);
    let handler = InteractionHandler::new(&js, http, test_commands())
        .await
        .unwrap();
    let worker = tokio::spawn(
        Worker::new(&COMMAND_WORKER, commands::handlers(handler))
            .stream_replicas(3)
            .run(client, shutdown.clone()),
    );
    let operator = async_nats::jetstream::new(cluster.operator().await);
    eventually("the command worker pulling", PATIENCE, || async {
        let stream = operator.get_stream_no_info(COMMANDS.name).await.ok()?;
        let info = stream.consumer_info(COMMAND_WORKER.durable).await.ok()?;
        (info.num_waiting >= 1).then_some(())
    })
    .await;

    let discord = discord(service.addr());
    let inline = discord.send(&command("fast", 1), Signing::Valid).await;
    assert_eq!(inline.verdict, Verdict::Answered);
    assert_eq!(inline.response_type, Some(4), "answered inline: {inline:?}");
    let slow = discord.send(&command("slow4", 2), Signing::Valid).await;
    assert_eq!(slow.response_type, Some(5), "deferred: {slow:?}");
    eventually("the slow command's edit", PATIENCE, || async {
        sim.interaction_callbacks()
            .iter()
            .any(|c| c.token == slow.token && c.body.contains("slow4 done"))
            .then_some(())
    })
    .await;
    let mut stream = operator.get_stream(COMMANDS.name).await.unwrap();
    let info = stream.info().await.unwrap();
    assert_eq!(info.config.num_replicas, 3, "created R3 by the service");

    // The interactions user publishes interactions and nothing else: the server
    // says so for the first subject outside its permissions.
    let (service_user, mut errors) = connect_as(&cluster, "interactions").await;
    service_user.publish(GUILD_JOIN, "{}".into()).await.unwrap();
    service_user.flush().await.unwrap();
    let refused = errors.recv().await.unwrap().to_string();
    assert!(
        refused.to_lowercase().contains("permissions violation") && refused.contains(GUILD_JOIN),
        "{refused}"
    );

    shutdown.cancel();
    service.stopped().await;
    worker.await.unwrap().unwrap();
}
