//! The `shardline-gateway` binary, as a process: configured by environment, routes
//! events, and on SIGTERM closes its sessions resumably (4000, never 1000) and exits 0.

use std::process::{Command, Stdio};
use std::time::Duration;

use shardline_discord_sim::{SimConfig, SimEvent, Simulator};
use shardline_testkit::{NatsServer, eventually, init_tracing};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_resumably_and_exits_zero() {
    init_tracing();
    let nats = NatsServer::start();
    let sim = Simulator::start(SimConfig {
        max_concurrency: 2,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let mut events = sim.events();
    let mut child = Command::new(env!("CARGO_BIN_EXE_shardline-gateway"))
        .env("DISCORD_TOKEN", &sim.config().token)
        .env("DISCORD_GATEWAY_URL", sim.gateway_url())
        .env("SHARD_TOTAL", "2")
        .env("DISCORD_MAX_CONCURRENCY", "2")
        .env("NATS_URL", nats.url())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start shardline-gateway");
    sim.wait_ready(0).await;
    sim.wait_ready(1).await;
    for shard in [0, 1] {
        sim.dispatch(shard, "TYPING_START", r#"{"guild_id":"1","user_id":"2"}"#)
            .await;
    }
    let js = async_nats::jetstream::new(nats.client().await);
    eventually("3 events in EVENTS", Duration::from_secs(30), || {
        let js = js.clone();
        async move {
            let mut stream = js.get_stream("EVENTS").await.ok()?;
            // 3 lazy-loaded guilds per shard + 2 typing events.
            (stream.info().await.ok()?.state.messages == 8).then_some(())
        }
    })
    .await;

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("send SIGTERM");
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "gateway exited with {exit:?}");

    let mut closes = Vec::new();
    while closes.len() < 2 {
        if let SimEvent::Disconnected { shard, code } = events.recv().await.unwrap() {
            closes.push((shard, code));
        }
    }
    closes.sort();
    assert_eq!(closes, vec![(0, Some(4000)), (1, Some(4000))]);
}
