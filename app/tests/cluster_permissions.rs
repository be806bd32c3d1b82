//! The application on the NATS configuration Terraform ships, as a 3-node cluster on
//! loopback with R3 streams: every service connects with its own user, the pipeline
//! from member join to role runs with only the permissions each has, and each new
//! worker user may publish only what its stage produces.

mod common;

use std::time::Duration;

use common::{Bin, PATIENCE, TOKEN, WorkerProc};
use shardline_app::rules::{Condition, Rule, add_rule};
use shardline_app::{DatabaseConfig, Db};
use shardline_discord_sim::{RestLatency, SimConfig, Simulator};
use shardline_jetstream::NatsAuth;
use shardline_testkit::{NatsCluster, PgServer, eventually, init_tracing, password};
use tokio_util::sync::CancellationToken;

#[path = "../../worker/tests/common/cluster_auth.rs"]
mod cluster_auth;
use cluster_auth::connect_as;

/// Whether the server refuses `user` publishing to `subject`: publishes it, then a
/// subject nobody may publish to, and reads the errors up to the probe's.
async fn refused(cluster: &NatsCluster, user: &str, subject: &str) -> bool {
    const PROBE: &str = "nobody.may.publish.here";
    let (client, mut errors) = connect_as(cluster, user).await;
    for s in [subject, PROBE] {
        client.publish(s.to_owned(), "{}".into()).await.unwrap();
    }
    client.flush().await.unwrap();
    let mut refused = false;
    loop {
        let error = tokio::time::timeout(PATIENCE, errors.recv())
            .await
            .expect("the probe is refused")
            .expect("client alive")
            .to_string();
        if error.contains(PROBE) {
            return refused;
        }
        refused |= error.contains(subject);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_worker_user_publishes_only_what_its_stage_produces() {
    init_tracing();
    let cluster = NatsCluster::start();
    cluster.wait_for_meta_leader(Duration::from_secs(30)).await;
    let (check, sync) = ("eligibility.check.1.2", "eligibility.sync.1.2");
    let cases = [
        ("event-worker", check, false),
        ("event-worker", sync, true),
        ("command-worker", check, false),
        ("command-worker", sync, true),
        ("eligibility-worker", sync, false),
        ("eligibility-worker", check, true),
        ("eligibility-worker", "events.member.join", true),
        ("sync-worker", "deadletter.sync-worker.x", false),
        ("sync-worker", check, true),
        ("sync-worker", sync, true),
        ("gateway", check, true),
    ];
    for (user, subject, want) in cases {
        assert_eq!(
            refused(&cluster, user, subject).await,
            want,
            "{user} on {subject}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_runs_with_each_services_own_credentials() {
    init_tracing();
    let cluster = NatsCluster::start();
    cluster.wait_for_meta_leader(Duration::from_secs(30)).await;
    let pg = PgServer::start();
    let sim = Simulator::start(SimConfig {
        shard_total: 1,
        guilds_per_shard: 0,
        rest_latency: RestLatency::between_ms(5, 15),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let shutdown = CancellationToken::new();
    let mut gateway =
        shardline_gateway::Config::for_gateway(TOKEN, &sim.gateway_url(), 1, &cluster.url());
    gateway.nats_auth = NatsAuth::user_password("gateway", &password("gateway"));
    gateway.stream_replicas = 3;
    let gateway = tokio::spawn(shardline_gateway::run(gateway, shutdown.clone()));
    let mut rest =
        shardline_rest::Config::new(&format!("http://{}", sim.http_base()), &cluster.url());
    rest.token = Some(shardline_jetstream::Secret::new(TOKEN));
    rest.nats_auth = NatsAuth::user_password("rest", &password("rest"));
    rest.stream_replicas = 3;
    let proxy = shardline_rest::start(rest, CancellationToken::new())
        .await
        .unwrap();
    sim.wait_ready(0).await;

    let mut workers = Vec::new();
    for (bin, user) in [
        (Bin::Event, "event-worker"),
        (Bin::Eligibility, "eligibility-worker"),
        (Bin::Sync, "sync-worker"),
    ] {
        let env = [
            ("NATS_URL", cluster.url()),
            ("NATS_USER", user.to_owned()),
            ("NATS_PASSWORD", password(user)),
            ("STREAM_REPLICAS", "3".to_owned()),
            ("DATABASE_URL", pg.url()),
            ("DISCORD_API_URL", format!("http://{}", proxy.addr())),
        ];
        workers.push(WorkerProc::start(bin, &env));
    }

    let db = Db::connect(&DatabaseConfig::new(pg.url())).await.unwrap();
    let guild = sim.guild_for_shard(0, 0);
    let role = guild + 1;
    sim.add_guild(guild, &[role], &[]).await;
    eventually("the guild's roles recorded", PATIENCE, || async {
        let rule = Rule {
            role,
            condition: Condition::AccountAge { days: 0 },
        };
        add_rule(&db, guild, rule).await.ok()
    })
    .await;
    let users: Vec<u64> = (1..=20).map(|i| i << 22).collect();
    for &user in &users {
        sim.member_join(guild, user, &[]).await;
    }
    eventually("every member holding the role", PATIENCE, || async {
        users
            .iter()
            .all(|&u| sim.member_roles(guild, u) == Some(vec![role]))
            .then_some(())
    })
    .await;
    assert_eq!(sim.rest_violations(), 0);
    for worker in &mut workers {
        worker.stop();
    }
    shutdown.cancel();
    gateway.await.unwrap().unwrap();
    proxy.stop().await.unwrap();
}
