//! The invalid-request guard: a route that answers 403 trips the guard before the
//! simulator's Cloudflare ban, which never comes; the proxy then refuses everything
//! with its own 503 (marked, with the time to retry) until the window clears. A 401 stops all sending with that token.

mod common;

use common::{call, config, holder, stack};
use shardline_discord_sim::{BucketSpec, RestLimits};
use shardline_proto::rest::{REFUSED_HEADER, Refusal, RefusalKind};

const GUARD: u32 = 20;
const BAN: u32 = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_403_route_trips_the_guard_before_the_ban() {
    let (nats, sim) = stack(RestLimits {
        invalid_limit: BAN,
        forbidden_channels: vec![99],
        // Room for every attempt: only the guard may stop them.
        messages: BucketSpec::per_ms(1_000, 1_000),
        ..Default::default()
    })
    .await;
    let mut config = config(&sim, &nats);
    config.invalid_request_limit = GUARD;
    let proxy = holder(config).await;
    let path = "/api/v10/channels/99/messages";
    let mut forbidden = 0;
    let mut refused = Vec::new();
    for _ in 0..3 * BAN {
        let a = call(proxy.addr(), "POST", path, &[], "{}").await;
        match (a.status, a.header(REFUSED_HEADER)) {
            (403, None) => forbidden += 1,
            (503, Some("invalid_requests")) => refused.push(a),
            other => panic!("unexpected answer {other:?}: {}", a.body),
        }
    }
    assert_eq!(forbidden, GUARD, "Discord's 403s until the guard tripped");
    assert_eq!(refused.len() as u32, 3 * BAN - GUARD);
    let body = Refusal::from_body(refused[0].body.as_bytes()).unwrap();
    assert_eq!(body.shardline_refused, RefusalKind::InvalidRequests);
    assert!(body.retry_after().as_secs() >= 590, "{body:?}");
    // Fleet-wide: a healthy route is held too, and never reaches Discord.
    let healthy = call(
        proxy.addr(),
        "POST",
        "/api/v10/channels/1/messages",
        &[],
        "{}",
    )
    .await;
    assert_eq!(healthy.header(REFUSED_HEADER), Some("invalid_requests"));
    // Counted at the simulator: under its limit, no ban.
    assert_eq!(sim.rest_invalid_requests(), GUARD as usize);
    assert!(!sim.rest_banned());
    assert_eq!(sim.rest_bans(), 0);
    assert_eq!(sim.rest_requests().len(), GUARD as usize);
    proxy.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_stops_all_sending_with_that_token() {
    let (nats, sim) = stack(RestLimits::default()).await;
    let proxy = holder(config(&sim, &nats)).await;
    let path = "/api/v10/channels/5/messages";
    let bad = ["Authorization: Bot reset-token"];
    let first = call(proxy.addr(), "POST", path, &bad, "{}").await;
    assert_eq!(
        (first.status, first.header(REFUSED_HEADER)),
        (401, None),
        "Discord's 401"
    );
    for _ in 0..5 {
        let again = call(proxy.addr(), "POST", path, &bad, "{}").await;
        assert_eq!(again.status, 401);
        assert_eq!(again.header(REFUSED_HEADER), Some("token_rejected"));
    }
    // The proxy's own token is another identity and still sends.
    let own = call(proxy.addr(), "POST", path, &[], r#"{"content":"ok"}"#).await;
    assert_eq!(own.status, 200);
    let with_bad = sim
        .rest_requests()
        .iter()
        .filter(|r| r.bot.as_deref() == Some("reset-token"))
        .count();
    assert_eq!(with_bad, 1, "one 401 reached Discord, no more");
    assert_eq!(sim.rest_invalid_requests(), 1);
    proxy.stop().await.unwrap();
}
