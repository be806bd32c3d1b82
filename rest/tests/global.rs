//! Requests over 200 channels at full speed (no bucket ever fills): only the global
//! limit holds them, and the simulator never sees more than 50 in any one-second
//! window, never answers a global 429; interaction callbacks and edits of their
//! responses sent in the middle do not wait behind the queue.

mod common;

use common::{PATIENCE, TOKEN, call, client, config, holder, stack};
use futures_util::future::join_all;
use shardline_discord_sim::{RestLimits, Violation, busiest_second};
use shardline_testkit::eventually;
use std::sync::Arc;
use tokio::sync::Semaphore;
use twilight_model::id::Id;

const CHANNELS: u64 = 200;
const MESSAGES: u64 = 300;
const CALLBACKS: u64 = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_channels_stay_under_the_global_limit_and_callbacks_skip_the_queue() {
    let (nats, sim) = stack(RestLimits::default()).await;
    let proxy = holder(config(&sim, &nats)).await;
    let http = Arc::new(client(proxy.addr(), Some(PATIENCE)));
    // As fast as 64 concurrent callers go: far more than 50 a second want out.
    let callers = Arc::new(Semaphore::new(64));
    let sends = tokio::spawn({
        let http = http.clone();
        async move {
            let sends = (0..MESSAGES).map(|i| {
                let (http, callers) = (http.clone(), callers.clone());
                async move {
                    let _turn = callers.acquire().await.expect("open");
                    http.create_message(Id::new(10_000 + i % CHANNELS))
                        .content(&format!("m{i}"))
                        .await
                        .map(drop)
                }
            });
            join_all(sends).await
        }
    });
    // In the middle: a third of the messages have reached Discord.
    eventually(
        "a third of the messages at the simulator",
        PATIENCE,
        || async { (sim.messages().len() as u64 >= MESSAGES / 3).then_some(()) },
    )
    .await;
    // A wait budget of 0: a callback or an edit that had to wait for the global
    // limit would be refused rather than sent late.
    for i in 0..CALLBACKS {
        let path = format!("/api/v10/interactions/{i}/token-{i}/callback");
        let extra = ["X-Shardline-Max-Wait-Ms: 0"];
        let answer = call(proxy.addr(), "POST", &path, &extra, r#"{"type":5}"#).await;
        assert_eq!(answer.status, 204, "{}", answer.body);
        let path = format!("/api/v10/webhooks/6/token-{i}/messages/@original");
        let answer = call(proxy.addr(), "PATCH", &path, &extra, r#"{"content":"e"}"#).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    let results = sends.await.unwrap();
    assert!(results.iter().all(Result::is_ok), "every message sent");

    let records = sim.rest_requests();
    let busiest = busiest_second(&records, Some(TOKEN));
    let global_429s = records
        .iter()
        .filter(|r| r.violation == Some(Violation::Global))
        .count();
    assert_eq!(global_429s, 0);
    assert_eq!(sim.rest_violations(), 0);
    assert!(busiest <= 50, "{busiest} requests in one second");
    assert_eq!(sim.messages().len() as u64, MESSAGES);
    // The callbacks overtook the queue: messages queued before them reached
    // Discord after them.
    let last_callback = records
        .iter()
        .filter(|r| !r.global)
        .map(|r| r.at)
        .max()
        .unwrap();
    let after = records
        .iter()
        .filter(|r| r.global && r.at > last_callback)
        .count();
    assert!(after > 0, "the callbacks waited behind every message");
    eprintln!(
        "busiest second {busiest}/50; {after} of {MESSAGES} messages reached Discord after the {CALLBACKS} callbacks and edits"
    );
    proxy.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_global_429_from_discord_holds_the_token() {
    // The simulator allows fewer than the proxy believes (another program uses the
    // token): Discord's own 429 must hold every request of the token for its
    // retry_after. twilight-http retries a 429 at once, so without that hold the
    // simulator would see a storm of them.
    const MESSAGES: u64 = 12;
    let (nats, sim) = stack(RestLimits {
        global_per_second: 3,
        ..Default::default()
    })
    .await;
    let proxy = holder(config(&sim, &nats)).await;
    let http = client(proxy.addr(), Some(PATIENCE));
    for i in 0..MESSAGES {
        http.create_message(Id::new(20_000 + i))
            .content("x")
            .await
            .expect("sent, after twilight's own retries");
    }
    let violations = sim.rest_violations();
    assert_eq!(sim.messages().len() as u64, MESSAGES);
    assert!(violations >= 1, "the simulator's lower limit was reached");
    // Each 429 held the token until the simulator's window had room: the request
    // after a 429 is always accepted, never a second 429 (how many 429s there are
    // depends on how the accepted ones spread over the window, so it is not counted).
    let records = sim.rest_requests();
    let statuses: Vec<u16> = records.iter().map(|r| r.status).collect();
    let storms = statuses
        .windows(2)
        .filter(|pair| pair[0] == 429 && pair[1] == 429)
        .count();
    assert_eq!(storms, 0, "a 429 right after a 429: {statuses:?}");
    assert_eq!(statuses.last(), Some(&200));
    proxy.stop().await.unwrap();
}
