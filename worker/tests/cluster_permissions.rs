//! The NATS configuration Terraform ships (`terraform/nats/nats.conf`), run as a
//! 3-node cluster on loopback: each service's credentials get what it needs and
//! nothing more.

use std::time::Duration;

use async_nats::ServerError;
use async_nats::jetstream;
use shardline_discord_sim::{SimConfig, Simulator};
use shardline_gateway::Config;
use shardline_jetstream::NatsAuth;
use shardline_proto::topology::DEAD_LETTER;
use shardline_testkit::{NatsCluster, eventually, init_tracing, password};
use shardline_worker::Worker;
use shardline_worker::commands::{self, InteractionHandler};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[path = "common/cluster_auth.rs"]
mod cluster_auth;
use cluster_auth::connect_as;

#[path = "common/commands.rs"]
mod fixtures;
use fixtures::{FAST_COMMANDS, Flaky, interaction};

/// Publishes to `subject`, then to a subject no user may publish to (the probe), and
/// returns the permission errors the server sent up to the probe's: empty when
/// `subject` was allowed. No waiting for something not to happen.
async fn refusals(
    client: &async_nats::Client,
    errors: &mut mpsc::UnboundedReceiver<ServerError>,
    subject: &str,
) -> Vec<String> {
    const PROBE: &str = "nobody.may.publish.here";
    for s in [subject, PROBE] {
        client.publish(s.to_owned(), "{}".into()).await.unwrap();
    }
    client.flush().await.unwrap();
    let mut seen = Vec::new();
    loop {
        let error = tokio::time::timeout(Duration::from_secs(30), errors.recv())
            .await
            .expect("the probe is refused")
            .expect("client alive")
            .to_string();
        assert!(
            error.to_lowercase().contains("permissions violation"),
            "{error}"
        );
        if error.contains(PROBE) {
            return seen;
        }
        seen.push(error);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_credentials_are_refused_on_events() {
    init_tracing();
    let cluster = NatsCluster::start();
    let started = std::time::Instant::now();
    cluster.wait_for_meta_leader(Duration::from_secs(30)).await;
    println!("meta leader after {:?}", started.elapsed());

    let (worker, mut errors) = connect_as(&cluster, "event-worker").await;
    let refused = refusals(&worker, &mut errors, "events.guild.join").await;
    assert_eq!(
        refused.len(),
        1,
        "a worker publishing to events.> is refused"
    );
    assert!(refused[0].contains("events.guild.join"), "{refused:?}");
    for allowed in [
        "deadletter.event-worker.events.x",
        "internal.gateway.0.command",
    ] {
        assert_eq!(
            refusals(&worker, &mut errors, allowed).await,
            Vec::<String>::new()
        );
    }
    for refused in ["commands.interaction", "$JS.API.STREAM.DELETE.EVENTS"] {
        assert_eq!(
            refusals(&worker, &mut errors, refused).await.len(),
            1,
            "{refused}"
        );
    }

    let (gateway, mut errors) = connect_as(&cluster, "gateway").await;
    for allowed in [
        "events.guild.join",
        "commands.interaction",
        "internal.lifecycle.x",
    ] {
        assert_eq!(
            refusals(&gateway, &mut errors, allowed).await,
            Vec::<String>::new()
        );
    }
    assert_eq!(
        refusals(&gateway, &mut errors, "deadletter.x").await.len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_refused() {
    init_tracing();
    let cluster = NatsCluster::start();
    let refused = shardline_jetstream::connect(&shardline_jetstream::ConnectOptions {
        url: cluster.node_url(0),
        name: "test".to_owned(),
        auth: NatsAuth::user_password("gateway", "not-the-password"),
    })
    .await;
    let error = refused.expect_err("a wrong password must not connect");
    assert!(
        error.to_string().to_lowercase().contains("authorization"),
        "{error}"
    );
    let anonymous = shardline_jetstream::connect(&shardline_jetstream::ConnectOptions {
        url: cluster.node_url(0),
        name: "test".to_owned(),
        auth: NatsAuth::default(),
    })
    .await;
    assert!(anonymous.is_err(), "no anonymous clients");
}

/// The command path on locked-down users: the gateway publishes interactions, the
/// command worker creates its KV bucket, defers, retries (KV read), answers and
/// dead-letters, and the server refuses none of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_path_needs_nothing_its_users_lack() {
    init_tracing();
    let cluster = NatsCluster::start();
    cluster.wait_for_meta_leader(Duration::from_secs(30)).await;
    let sim = Simulator::start(SimConfig {
        shard_total: 1,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let shutdown = CancellationToken::new();
    let mut config =
        Config::for_gateway(&sim.config().token, &sim.gateway_url(), 1, &cluster.url());
    config.nats_auth = NatsAuth::user_password("gateway", &password("gateway"));
    config.stream_replicas = 3;
    let gateway = tokio::spawn(shardline_gateway::run(config, shutdown.clone()));

    let (client, mut refused) = connect_as(&cluster, "command-worker").await;
    let mut js = jetstream::new(client.clone());
    // Creating the R3 bucket on a cluster born a moment ago, while the gateway creates
    // its streams on it, can outlast the default 5 s request timeout on a busy host.
    js.set_timeout(Duration::from_secs(30));
    let http = commands::DiscordHttp::new(Some(&format!("http://{}", sim.http_base())), None);
    let table = commands::reference().command("flaky", Flaky);
    let handler = InteractionHandler::new(&js, http, table).await.unwrap();
    let worker = tokio::spawn(
        Worker::new(&FAST_COMMANDS, commands::handlers(handler))
            .stream_replicas(3)
            .run(client, shutdown.clone()),
    );

    sim.wait_ready(0).await;
    let names = ["ping", "flaky", "nonexistent"];
    for (seed, name) in (0..).zip(names) {
        let (_, d) = interaction(&sim, name, seed);
        sim.dispatch(0, "INTERACTION_CREATE", &d).await;
    }
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
    let deferred = callbacks.iter().filter(|c| c.kind == "callback").count();
    assert_eq!(deferred, names.len(), "each interaction deferred once");
    let answered = |text: &str| {
        callbacks
            .iter()
            .any(|c| c.kind == "edit" && c.body.contains(text))
    };
    assert!(
        answered("pong") && answered("second time lucky"),
        "{callbacks:?}"
    );

    // The unknown command was dead-lettered (a publish on deadletter.> stored).
    let operator = jetstream::new(cluster.operator().await);
    eventually("a dead letter", Duration::from_secs(30), || async {
        let mut stream = operator.get_stream(DEAD_LETTER.name).await.ok()?;
        (stream.info().await.ok()?.state.messages == 1).then_some(())
    })
    .await;
    assert!(
        refused.try_recv().is_err(),
        "the server refused nothing the command worker did"
    );

    shutdown.cancel();
    gateway.await.unwrap().unwrap();
    worker.await.unwrap().unwrap();
}
