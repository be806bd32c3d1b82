//! NATS goes away under the service: interactions are refused with 503 at once
//! (never a deferral nobody will complete), PING still works, and once NATS is back
//! (a restart that lost the memory streams) the same process serves again.

mod common;

use std::time::Duration;

use shardline_discord_sim::{HttpInteraction, Signing, Verdict};
use shardline_testkit::eventually;
use tokio_util::sync::CancellationToken;

use common::{Base, PATIENCE, WIDE_COMMANDS, command, discord, get};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_down_is_503_at_once_and_serving_resumes() {
    let mut base = Base::start().await;
    let shutdown = CancellationToken::new();
    let service = base.service(shutdown.clone(), |_| {}).await;
    let worker = base.worker(&WIDE_COMMANDS, shutdown.clone()).await;
    base.pulling(1).await;
    let http = discord(service.addr());
    let before = http.send(&command("fast", 1), Signing::Valid).await;
    assert_eq!(before.response_type, Some(4), "inline: {before:?}");

    base.nats.kill();
    let addr = service.addr();
    eventually("the service not ready", PATIENCE, || async move {
        (get(addr, "/readyz").await?.0 == 503).then_some(())
    })
    .await;
    let mut slowest = Duration::ZERO;
    for seed in 2..12 {
        let record = http.send(&command("fast", seed), Signing::Valid).await;
        assert_eq!(record.status, Some(503), "{record:?}");
        assert!(matches!(record.verdict, Verdict::Failed(_)));
        slowest = slowest.max(record.elapsed);
    }
    let pong = http.send(&HttpInteraction::ping(3), Signing::Valid).await;
    assert_eq!(pong.verdict, Verdict::Answered, "PING needs no NATS");

    base.nats.restart();
    let mut seed = 100;
    let answered = eventually("an interaction answered inline again", PATIENCE, || {
        seed += 1;
        let (http, seed) = (http.clone(), seed);
        async move {
            let record = http.send(&command("fast", seed), Signing::Valid).await;
            (record.response_type == Some(4)).then_some(record)
        }
    })
    .await;
    assert!(answered.body.contains("fast done"), "{answered:?}");
    println!(
        "NATS down: 10 interactions refused 503, the slowest in {slowest:?}; serving again after the restart"
    );

    shutdown.cancel();
    service.stopped().await;
    worker.await.unwrap();
}
