//! The proxy against the simulator's REST limits, in-process: twilight-http works
//! through it unchanged, buckets are learned and kept, a wait budget shorter than a
//! bucket's reset is refused at once with the time to retry, and each token has its
//! own limits. Every count comes from the simulator's records.

mod common;

use std::time::{Duration, Instant};

use common::{PATIENCE, TOKEN, call, client, config, holder, stack};
use futures_util::future::join_all;
use shardline_discord_sim::{BucketSpec, RestLimits, busiest_second};
use shardline_proto::rest::{REFUSED_HEADER, Refusal, RefusalKind};
use twilight_model::id::Id;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilight_http_works_through_the_proxy_unchanged() {
    let (nats, sim) = stack(RestLimits::default()).await;
    let proxy = holder(config(&sim, &nats)).await;
    let http = client(proxy.addr(), None);
    let message = http
        .create_message(Id::new(42))
        .content("through the proxy")
        .await
        .expect("created")
        .model()
        .await
        .expect("a message");
    assert_eq!(message.content, "through the proxy");
    http.add_guild_member_role(Id::new(7), Id::new(8), Id::new(9))
        .await
        .expect("role added");
    http.remove_guild_member_role(Id::new(7), Id::new(8), Id::new(9))
        .await
        .expect("role removed");
    let response = twilight_model::http::interaction::InteractionResponse {
        kind: twilight_model::http::interaction::InteractionResponseType::DeferredChannelMessageWithSource,
        data: None,
    };
    http.interaction(Id::new(1))
        .create_response(Id::new(5), "interaction-token", &response)
        .await
        .expect("callback");

    let records = sim.rest_requests();
    let seen: Vec<(&str, Option<&str>, u16)> = records
        .iter()
        .map(|r| (r.route, r.bot.as_deref(), r.status))
        .collect();
    assert_eq!(
        seen,
        [
            ("/channels/:id/messages", Some(TOKEN), 200),
            ("/guilds/:id/members/:id/roles/:id", Some(TOKEN), 204),
            ("/guilds/:id/members/:id/roles/:id", Some(TOKEN), 204),
            // The callback goes without the bot token, as twilight sends it.
            ("/interactions/:id/:token/callback", None, 204),
        ]
    );
    let changes: Vec<bool> = sim.role_changes().iter().map(|c| c.added).collect();
    assert_eq!(changes, [true, false]);
    proxy.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_on_one_channel_keeps_to_its_bucket() {
    const SENT: usize = 24;
    let (nats, sim) = stack(RestLimits {
        messages: BucketSpec::per_ms(5, 1_000),
        ..Default::default()
    })
    .await;
    let proxy = holder(config(&sim, &nats)).await;
    let http = client(proxy.addr(), Some(PATIENCE));
    let sends = (0..SENT).map(|i| {
        let http = &http;
        async move {
            http.create_message(Id::new(42))
                .content(&format!("burst {i}"))
                .await
                .map(drop)
        }
    });
    let results = join_all(sends).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(sim.rest_violations(), 0, "no request Discord would refuse");
    assert_eq!(sim.messages().len(), SENT);
    let records = sim.rest_requests();
    assert_eq!(records.len(), SENT, "nothing sent twice, nothing refused");
    proxy.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_budget_shorter_than_the_reset_is_refused_at_once() {
    let (nats, sim) = stack(RestLimits {
        messages: BucketSpec::per_ms(2, 60_000),
        ..Default::default()
    })
    .await;
    let proxy = holder(config(&sim, &nats)).await;
    let path = "/api/v10/channels/42/messages";
    for _ in 0..2 {
        let a = call(proxy.addr(), "POST", path, &[], r#"{"content":"x"}"#).await;
        assert_eq!(a.status, 200);
    }
    let asked = Instant::now();
    let refused = call(
        proxy.addr(),
        "POST",
        path,
        &["X-Shardline-Max-Wait-Ms: 200"],
        "{}",
    )
    .await;
    let answered_in = asked.elapsed();
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header(REFUSED_HEADER), Some("wait_budget"));
    let body = Refusal::from_body(refused.body.as_bytes()).expect("the proxy's refusal");
    assert_eq!(body.shardline_refused, RefusalKind::WaitBudget);
    let retry = body.retry_after();
    assert!(
        retry > Duration::from_secs(55) && retry <= Duration::from_secs(60),
        "{retry:?}"
    );
    let secs: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert_eq!(secs, retry.as_secs() + 1);
    // At once: long before the budget could have been waited, let alone the reset.
    assert!(answered_in < retry, "{answered_in:?}");
    // Without a header, a bot route's default budget (10 s) is shorter too.
    let default = call(proxy.addr(), "POST", path, &[], "{}").await;
    assert_eq!(default.header(REFUSED_HEADER), Some("wait_budget"));
    // Only the two that fit reached Discord.
    assert_eq!(sim.rest_requests().len(), 2);
    assert_eq!(sim.rest_violations(), 0);
    proxy.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_token_has_its_own_global_limit() {
    const EACH: usize = 12;
    let other = "second-bot-token";
    let (nats, sim) = stack(RestLimits {
        global_per_second: 5,
        extra_tokens: vec![other.to_owned()],
        ..Default::default()
    })
    .await;
    let mut config = config(&sim, &nats);
    config.global_limit = 5;
    let proxy = holder(config).await;
    let own = client(proxy.addr(), Some(PATIENCE));
    let theirs = twilight_http::Client::builder()
        .token(other.to_owned())
        .proxy(proxy.addr().to_string(), true)
        .ratelimiter(None)
        .timeout(PATIENCE)
        .default_headers({
            let mut h = axum::http::HeaderMap::new();
            h.insert("x-shardline-max-wait-ms", "60000".parse().unwrap());
            h
        })
        .build();
    let sends = (0..EACH as u64).flat_map(|i| {
        [(&own, i), (&theirs, i)].map(|(http, i)| async move {
            http.create_message(Id::new(1000 + i))
                .content("x")
                .await
                .map(drop)
        })
    });
    let results = join_all(sends).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let records = sim.rest_requests();
    assert_eq!(sim.rest_violations(), 0);
    for token in [TOKEN, other] {
        let sent = records
            .iter()
            .filter(|r| r.bot.as_deref() == Some(token))
            .count();
        assert_eq!(sent, EACH, "{token}");
        let busiest = busiest_second(&records, Some(token));
        assert!(busiest <= 5, "{token}: {busiest} in one second");
    }
    // Together they went over one token's limit: the limits are separate.
    let together: Vec<_> = records
        .iter()
        .cloned()
        .map(|mut r| {
            r.bot = None;
            r
        })
        .collect();
    assert!(busiest_second(&together, None) > 5);
    proxy.stop().await.unwrap();
}
