//! The proxy on the NATS cluster Terraform ships (`terraform/nats/nats.conf`, three
//! nodes on loopback), as its own user `rest`: the grants it has are the ones it
//! needs (R3 lease and state buckets, the lease watched), and two proxies elect one
//! holder and hand over on SIGTERM's path.

mod common;

use common::{PATIENCE, TOKEN, call, stack_with};
use shardline_discord_sim::{RestLatency, RestLimits};
use shardline_jetstream::NatsAuth;
use shardline_rest::{Config, Role};
use shardline_testkit::{NatsCluster, eventually, password};
use tokio_util::sync::CancellationToken;

fn config_for(cluster: &NatsCluster, upstream: &str) -> Config {
    let mut config = Config::new(upstream, &cluster.url());
    config.token = Some(shardline_jetstream::Secret::new(TOKEN));
    config.nats_auth = NatsAuth::user_password("rest", &password("rest"));
    config.stream_replicas = 3;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rest_user_runs_the_lease_and_the_state_on_the_shipped_cluster() {
    let cluster = NatsCluster::start();
    cluster.wait_for_meta_leader(PATIENCE).await;
    let (_unused, sim) = stack_with(RestLimits::default(), RestLatency::NONE).await;
    let upstream = format!("http://{}", sim.http_base());
    let first = shardline_rest::start(config_for(&cluster, &upstream), CancellationToken::new())
        .await
        .expect("start on the cluster as user rest");
    eventually("the first proxy holding the lease", PATIENCE, || async {
        first.is_holder().then_some(())
    })
    .await;
    let second = shardline_rest::start(config_for(&cluster, &upstream), CancellationToken::new())
        .await
        .unwrap();
    eventually(
        "the second proxy forwarding to the first",
        PATIENCE,
        || async { matches!(second.role(), Role::Standby { holder: Some(_) }).then_some(()) },
    )
    .await;
    let through = call(
        second.addr(),
        "POST",
        "/api/v10/channels/3/messages",
        &[],
        "{}",
    )
    .await;
    assert_eq!(through.status, 200, "{}", through.body);
    // Replicated state written and the lease released (delete by revision), then
    // taken by the standby through its watch.
    first.stop().await.unwrap();
    eventually("the standby taking over", PATIENCE, || async {
        second.is_holder().then_some(())
    })
    .await;
    let after = call(
        second.addr(),
        "POST",
        "/api/v10/channels/3/messages",
        &[],
        "{}",
    )
    .await;
    assert_eq!(after.status, 200);
    assert_eq!(sim.rest_violations(), 0);
    second.stop().await.unwrap();
}
