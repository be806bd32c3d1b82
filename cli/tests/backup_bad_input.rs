//! Bad backups are refused with `BadBackup` (exit 7) before the live stream is
//! touched, even with `--force`: an interrupted backup (no manifest), a missing or
//! truncated segment, a flipped byte, an unreadable manifest. Counted after each:
//! the live stream lost nothing.

mod common;

use std::path::Path;

use async_nats::jetstream;
use common::shardline;
use common::streams::{assert_same, fill, snapshot};
use shardline_cli::ErrorKind;
use shardline_cli::backup::MANIFEST;
use shardline_proto::topology::DEAD_LETTER;
use shardline_testkit::{NatsServer, init_tracing};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn segment(dir: &Path) -> std::path::PathBuf {
    dir.join("data-000001.bin")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_backup_is_refused_and_the_stream_is_untouched() {
    init_tracing();
    let nats = NatsServer::start();
    let client = nats.client().await;
    let js = jetstream::new(client.clone());
    fill(&client, &DEAD_LETTER, 500, 100, 9).await;
    let root = tempfile::tempdir().unwrap();
    let good = root.path().join("good");
    shardline(
        &nats.url(),
        &[
            "backup",
            "--stream",
            DEAD_LETTER.name,
            good.to_str().unwrap(),
        ],
    )
    .await
    .expect_code(0);
    // The live stream moves on after the backup: a bad restore must not roll it back.
    js.publish("deadletter.x.events.y", "newer".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let live = snapshot(&js, DEAD_LETTER.name).await;
    let created = js
        .get_stream(DEAD_LETTER.name)
        .await
        .unwrap()
        .cached_info()
        .created;

    let bytes = std::fs::read(segment(&good)).unwrap();
    type Break = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Break)> = vec![
        (
            "interrupted: no manifest",
            Box::new(|d| std::fs::remove_file(d.join(MANIFEST)).unwrap()),
        ),
        (
            "segment missing",
            Box::new(|d| std::fs::remove_file(segment(d)).unwrap()),
        ),
        ("segment truncated", {
            let bytes = bytes.clone();
            Box::new(move |d| std::fs::write(segment(d), &bytes[..bytes.len() / 2]).unwrap())
        }),
        ("one byte flipped", {
            let bytes = bytes.clone();
            Box::new(move |d| {
                let mut b = bytes.clone();
                let middle = b.len() / 2;
                b[middle] ^= 0x01;
                std::fs::write(segment(d), b).unwrap();
            })
        }),
        (
            "manifest garbage",
            Box::new(|d| std::fs::write(d.join(MANIFEST), "{not json").unwrap()),
        ),
        (
            "manifest of another format",
            Box::new(|d| {
                let text = std::fs::read_to_string(d.join(MANIFEST)).unwrap();
                let text = text.replace("shardline-backup/1", "shardline-backup/9");
                std::fs::write(d.join(MANIFEST), text).unwrap();
            }),
        ),
        (
            "manifest miscounts",
            Box::new(|d| {
                let mut m: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(d.join(MANIFEST)).unwrap()).unwrap();
                m["messages"] = serde_json::json!(m["messages"].as_u64().unwrap() + 1);
                std::fs::write(d.join(MANIFEST), m.to_string()).unwrap();
            }),
        ),
    ];
    for (i, (what, break_it)) in cases.iter().enumerate() {
        let dir = root.path().join(format!("case-{i}"));
        copy_dir(&good, &dir);
        break_it(&dir);
        let run = shardline(&nats.url(), &["restore", "--force", dir.to_str().unwrap()]).await;
        assert_eq!(
            run.code,
            i32::from(ErrorKind::BadBackup.exit_code()),
            "{what}: {run:?}"
        );
        let info = js
            .get_stream(DEAD_LETTER.name)
            .await
            .unwrap()
            .cached_info()
            .clone();
        assert_eq!(
            info.created, created,
            "{what}: the stream was not recreated"
        );
        assert_same(&snapshot(&js, DEAD_LETTER.name).await, &live);
    }

    // A directory that is not there is NotFound; the good backup still restores.
    let run = shardline(&nats.url(), &["restore", "--force", "/nonexistent/backup"]).await;
    run.expect_code(i32::from(ErrorKind::NotFound.exit_code()));
    shardline(&nats.url(), &["restore", "--force", good.to_str().unwrap()])
        .await
        .expect_code(0);
    // Backing up into a directory that holds something is refused too.
    shardline(
        &nats.url(),
        &[
            "backup",
            "--stream",
            DEAD_LETTER.name,
            good.to_str().unwrap(),
        ],
    )
    .await
    .expect_code(i32::from(ErrorKind::Exists.exit_code()));
}
