//! `shardline status` on the 3-node cluster of the shipped nats.conf, as the
//! `operator` user, with the gateway locked down to its own user (which must be
//! allowed to answer status requests): healthy with R3 streams; a node killed
//! shows offline with every stream's replica on it lagging (exit 1); restarted, the
//! system is healthy again.

mod common;

use std::time::Duration;

use common::system::System;
use common::{PATIENCE, Run, shardline_with};
use shardline_jetstream::NatsAuth;
use shardline_testkit::{NatsCluster, eventually, init_tracing, password};

async fn status(cluster: &NatsCluster, args: &[&str]) -> Run {
    // No event worker runs here: its consumer's waiting messages are not the point.
    let mut full = vec!["--json", "status", "--max-idle", "1d"];
    full.extend_from_slice(args);
    shardline_with(
        &cluster.url(),
        &[
            ("NATS_USER", "operator".to_owned()),
            ("NATS_PASSWORD", password("operator")),
        ],
        &full,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_down_is_named_and_unhealthy_until_it_is_back() {
    init_tracing();
    let mut cluster = NatsCluster::start();
    cluster.wait_for_meta_leader(Duration::from_secs(30)).await;
    let gateway = NatsAuth::user_password("gateway", &password("gateway"));
    let mut system = System::start(&cluster.url(), gateway, 3, cluster.operator().await).await;

    let run = status(&cluster, &["--wait", "60s"]).await;
    run.expect_code(0);
    let report = run.json();
    let nodes = report["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    assert!(nodes.iter().all(|n| n["state"] == "up"));
    for stream in report["streams"].as_array().unwrap() {
        if stream["name"].as_str().unwrap().starts_with("KV_") {
            continue;
        }
        assert_eq!(stream["replicas"], 3, "{stream}");
    }
    // The locked-down gateway answered for both shards.
    assert!(
        report["shards"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["connected"] == true)
    );

    let victim = 2;
    let name = cluster.server_name(victim).to_owned();
    cluster.kill(victim);
    let report = eventually("the dead node named", PATIENCE, || {
        let cluster = &cluster;
        let name = name.clone();
        async move {
            let run = status(cluster, &[]).await;
            let report = run.json();
            let reasons = report["reasons"].as_array()?;
            let offline = reasons
                .iter()
                .any(|r| r["kind"] == "node_offline" && r["target"] == name.as_str());
            // Requests may time out while the cluster notices (`unreadable`); wait
            // for the settled picture.
            let settled = reasons
                .iter()
                .all(|r| r["kind"] == "node_offline" || r["kind"] == "replica_lagging");
            (run.code == 1 && offline && settled).then_some(report)
        }
    })
    .await;
    let node = report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name.as_str())
        .unwrap();
    assert_eq!(node["state"], "offline");
    let lagging: Vec<&str> = report["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "replica_lagging")
        .map(|r| r["target"].as_str().unwrap())
        .collect();
    assert!(
        lagging.contains(&"EVENTS") && lagging.contains(&"DEAD_LETTER"),
        "{lagging:?}"
    );
    // Shards stay connected: a node down is not a gateway down.
    assert!(
        report["shards"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["connected"] == true)
    );

    cluster.restart(victim);
    status(&cluster, &["--wait", "120s"]).await.expect_code(0);
    system.stop_gateway().await;
}
