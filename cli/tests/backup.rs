//! `shardline backup` and `restore` as an operator runs them: DEAD_LETTER and
//! ELIGIBILITY with a few thousand messages (some exactly the server's 1 MiB
//! `max_payload`) and gaps left by deletions come back message by message equal,
//! sequence numbers included, on the same server and into a 3-node cluster as R3;
//! a KV bucket comes back key by key.

mod common;

use std::path::Path;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use common::streams::{Stored, assert_same, fill, snapshot};
use common::{shardline, shardline_with};
use shardline_cli::ErrorKind;
use shardline_proto::topology::{DEAD_LETTER, ELIGIBILITY, StreamSpec};
use shardline_testkit::{NatsCluster, NatsServer, init_tracing, password};

const MESSAGES: u64 = 3000;

/// Fills both file streams on a fresh server, snapshots and backs them up into
/// `root`; returns the server and each stream's snapshot.
async fn backed_up(root: &Path) -> (NatsServer, Vec<(StreamSpec, Vec<Stored>)>) {
    let nats = NatsServer::start();
    let client = nats.client().await;
    let js = jetstream::new(client.clone());
    let mut out = Vec::new();
    for (spec, delete_every) in [(DEAD_LETTER, 7), (ELIGIBILITY, 1000)] {
        let left = fill(&client, &spec, MESSAGES, 300, delete_every).await;
        let original = snapshot(&js, spec.name).await;
        assert_eq!(original.len() as u64, left);
        assert!(original.iter().any(|m| m.payload.len() > 1_000_000));
        let dir = root.join(spec.name);
        let run = shardline(
            &nats.url(),
            &[
                "--json",
                "backup",
                "--stream",
                spec.name,
                dir.to_str().unwrap(),
            ],
        )
        .await;
        run.expect_code(0);
        assert_eq!(run.json()["messages"], left);
        out.push((spec, original));
    }
    (nats, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_stream_comes_back_message_by_message() {
    init_tracing();
    let root = tempfile::tempdir().unwrap();
    let (nats, streams) = backed_up(root.path()).await;
    let js = jetstream::new(nats.client().await);
    for (spec, original) in &streams {
        let dir = root.path().join(spec.name);
        let dir = dir.to_str().unwrap();
        // Refused over the live stream without --force, and it is left alone.
        shardline(&nats.url(), &["restore", dir])
            .await
            .expect_code(i32::from(ErrorKind::Exists.exit_code()));
        assert_same(&snapshot(&js, spec.name).await, original);

        js.delete_stream(spec.name).await.unwrap();
        let run = shardline(&nats.url(), &["--json", "restore", dir]).await;
        run.expect_code(0);
        assert_eq!(run.json()["sequences_kept"], true);
        assert_same(&snapshot(&js, spec.name).await, original);
        let config = js
            .get_stream(spec.name)
            .await
            .unwrap()
            .cached_info()
            .config
            .clone();
        assert_eq!(config.max_age, spec.max_age);
        assert_eq!(config.duplicate_window, spec.duplicate_window());

        // --force replaces a stream that moved on since the backup.
        js.publish(
            format!("{}later", spec.subjects[0].trim_end_matches('>')),
            "x".into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
        shardline(&nats.url(), &["restore", "--force", dir])
            .await
            .expect_code(0);
        assert_same(&snapshot(&js, spec.name).await, original);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_restore_into_a_three_node_cluster_as_r3() {
    init_tracing();
    let root = tempfile::tempdir().unwrap();
    let (_single, streams) = backed_up(root.path()).await;
    let cluster = NatsCluster::start();
    cluster.wait_for_meta_leader(Duration::from_secs(30)).await;
    let js = jetstream::new(cluster.operator().await);
    let operator = [
        ("NATS_USER", "operator".to_owned()),
        ("NATS_PASSWORD", password("operator")),
    ];
    for (spec, original) in &streams {
        let dir = root.path().join(spec.name);
        let run = shardline_with(
            &cluster.url(),
            &operator,
            &[
                "--json",
                "restore",
                "--replicas",
                "3",
                dir.to_str().unwrap(),
            ],
        )
        .await;
        run.expect_code(0);
        assert_eq!(run.json()["replicas"], 3);
        assert_same(&snapshot(&js, spec.name).await, original);
        let info = js
            .get_stream(spec.name)
            .await
            .unwrap()
            .cached_info()
            .clone();
        assert_eq!(info.config.num_replicas, 3);
        let peers = info.cluster.expect("clustered").replicas.len();
        assert_eq!(peers, 2, "a leader and two replicas");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kv_bucket_comes_back_key_by_key() {
    init_tracing();
    let nats = NatsServer::start();
    let js = jetstream::new(nats.client().await);
    let bucket = "shardline-gateway-sessions";
    let store = js
        .create_key_value(kv::Config {
            bucket: bucket.to_owned(),
            history: 1,
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await
        .unwrap();
    for round in 0..20 {
        for shard in 0..8 {
            store
                .put(
                    format!("shard-{shard}"),
                    format!("{{\"sequence\":{round}}}").into(),
                )
                .await
                .unwrap();
        }
    }
    store.delete("shard-7").await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("sessions");
    let dir = dir.to_str().unwrap();
    shardline(&nats.url(), &["backup", "--kv", bucket, dir])
        .await
        .expect_code(0);
    js.delete_key_value(bucket).await.unwrap();
    let run = shardline(&nats.url(), &["--json", "restore", dir]).await;
    run.expect_code(0);
    assert_eq!(
        run.json()["sequences_kept"],
        false,
        "KV revisions are renumbered"
    );

    let store = js.get_key_value(bucket).await.unwrap();
    for shard in 0..7 {
        let value = store.get(format!("shard-{shard}")).await.unwrap();
        assert_eq!(
            value.as_deref(),
            Some(&b"{\"sequence\":19}"[..]),
            "shard-{shard}"
        );
    }
    assert_eq!(
        store.get("shard-7").await.unwrap(),
        None,
        "the delete survived"
    );
    // The bucket still works as one: history 1, a put replaces.
    store.put("shard-0", "new".into()).await.unwrap();
    assert_eq!(
        store.get("shard-0").await.unwrap().as_deref(),
        Some(&b"new"[..])
    );
    let mut history = store.history("shard-0").await.unwrap();
    let mut n = 0;
    while let Some(entry) = futures_util::StreamExt::next(&mut history).await {
        entry.unwrap();
        n += 1;
    }
    assert_eq!(n, 1);
}
