//! Signatures and replays, with the service as a library: every kind of invalid
//! signature is a 401 without detail and nothing of it is published; PING is
//! answered by the service; the same request sent again is stored once.

mod common;

use futures_util::StreamExt;
use shardline_discord_sim::{HttpInteraction, Signing, Verdict};
use shardline_proto::headers;
use shardline_proto::topology::COMMANDS;
use tokio_util::sync::CancellationToken;

use common::{Base, WIDE_COMMANDS, command, discord};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_signatures_are_refused_and_never_published() {
    let base = Base::start().await;
    let shutdown = CancellationToken::new();
    let service = base.service(shutdown.clone(), |_| {}).await;
    let mut published = base
        .nats
        .client()
        .await
        .subscribe(COMMANDS.subjects[0])
        .await
        .unwrap();
    let http = discord(service.addr());

    let mut seed = 0;
    for signing in Signing::INVALID {
        for _ in 0..3 {
            seed += 1;
            let record = http.send(&command("fast", seed), signing).await;
            assert_eq!(record.status, Some(401), "{signing:?}: {record:?}");
            assert!(record.body.is_empty(), "no detail: {:?}", record.body);
            assert_eq!(record.verdict, Verdict::Refused);
        }
    }
    let record = http
        .send(&HttpInteraction::ping(1), Signing::FlippedBit)
        .await;
    assert_eq!(record.status, Some(401), "an invalid PING too");

    // PING needs no NATS and no worker.
    let pong = http.send(&HttpInteraction::ping(2), Signing::Valid).await;
    assert_eq!(pong.verdict, Verdict::Answered);
    assert_eq!(pong.body, r#"{"type":1}"#);

    // A valid interaction after them all is the first and only message published.
    let sentinel = command("fast", 999);
    let answered = http.send(&sentinel, Signing::Valid).await;
    assert_eq!(
        answered.verdict,
        Verdict::Answered,
        "deferred without a worker"
    );
    assert_eq!(answered.response_type, Some(5));
    let first = published.next().await.unwrap();
    let id = first
        .headers
        .as_ref()
        .unwrap()
        .get(headers::MSG_ID)
        .unwrap();
    assert_eq!(id.as_str(), sentinel.id);
    assert_eq!(base.stored().await, 1, "only the valid interaction stored");

    shutdown.cancel();
    service.stopped().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_request_is_stored_once() {
    let base = Base::start().await;
    let shutdown = CancellationToken::new();
    let service = base.service(shutdown.clone(), |_| {}).await;
    let worker = base.worker(&WIDE_COMMANDS, shutdown.clone()).await;
    base.pulling(1).await;
    let http = discord(service.addr());

    // Three copies at once, then one more after the first was answered.
    let interaction = command("fast", 42);
    let copies = (0..3).map(|_| {
        let (http, interaction) = (http.clone(), interaction.clone());
        tokio::spawn(async move { http.send(&interaction, Signing::Valid).await })
    });
    let mut statuses = Vec::new();
    for copy in copies.collect::<Vec<_>>() {
        statuses.push(copy.await.unwrap().status);
    }
    statuses.push(http.send(&interaction, Signing::Valid).await.status);
    statuses.sort();
    assert_eq!(
        statuses,
        [Some(200), Some(409), Some(409), Some(409)],
        "one answer, the replays refused"
    );
    assert_eq!(base.stored().await, 1, "stored once");
    let answered: Vec<_> = http
        .records()
        .into_iter()
        .filter(|r| r.status == Some(200))
        .collect();
    assert!(answered[0].body.contains("fast done"), "{:?}", answered[0]);
    assert!(
        base.completions().is_empty(),
        "answered inline: no edit, no follow-up"
    );

    shutdown.cancel();
    service.stopped().await;
    worker.await.unwrap();
}
