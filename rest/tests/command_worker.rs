//! The command worker through the proxy: when the edit of an interaction's
//! response would wait longer than an interaction's budget (its webhook bucket is
//! used up), the proxy refuses it at once with the time to retry, and the worker
//! answers Retry after that time instead of failing; the redelivery edits the
//! response once the bucket has room. Counted at the simulator: the refused edit
//! never reached it, and nothing broke a limit.

mod common;

use async_nats::jetstream;
use common::{PATIENCE, call, config, holder, stack};
use rand::SeedableRng;
use shardline_discord_sim::{BucketSpec, RestLimits};
use shardline_proto::topology::{COMMAND_WORKER, COMMANDS};
use shardline_testkit::eventually;
use shardline_worker::Worker;
use shardline_worker::commands::{self, InteractionHandler};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_edit_becomes_a_retry_after_the_proxys_time() {
    let (nats, sim) = stack(RestLimits {
        // One webhook request per interaction per 3 s: longer than an
        // interaction's default budget (2 s).
        webhooks: BucketSpec::per_ms(1, 3_000),
        ..Default::default()
    })
    .await;
    let proxy = holder(config(&sim, &nats)).await;
    let client = nats.client().await;
    let js = jetstream::new(client.clone());
    shardline_jetstream::reconcile_stream(&js, &COMMANDS, Default::default())
        .await
        .unwrap();

    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let d = shardline_discord_sim::fixtures::interaction_create(sim.guilds(0)[0], &mut rng);
    let v: serde_json::Value = serde_json::from_str(&d).unwrap();
    let (app, token) = (
        v["application_id"].as_str().unwrap(),
        v["token"].as_str().unwrap(),
    );
    // Another sender edited the response just now: its bucket is used up (and the
    // proxy knows the route's bucket, as it does once any edit has gone out; the
    // first request of a route it has never seen cannot know what it shares).
    let earlier = format!("/api/v10/webhooks/{app}/{token}/messages/@original");
    let used = call(
        proxy.addr(),
        "PATCH",
        &earlier,
        &[],
        r#"{"content":"earlier"}"#,
    )
    .await;
    assert_eq!(used.status, 200);

    let http = commands::DiscordHttp::new(Some(&format!("http://{}", proxy.addr())), None);
    let handler = InteractionHandler::new(&js, http, commands::reference())
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let worker = tokio::spawn(
        Worker::new(&COMMAND_WORKER, commands::handlers(handler)).run(client, shutdown.clone()),
    );
    js.publish("commands.interaction", d.into())
        .await
        .unwrap()
        .await
        .unwrap();

    let callbacks = eventually("the response edited by the worker", PATIENCE, || async {
        let all = sim.interaction_callbacks();
        (all.iter().filter(|c| c.kind == "edit").count() == 2).then_some(all)
    })
    .await;
    let kinds: Vec<&str> = callbacks.iter().map(|c| c.kind).collect();
    assert_eq!(
        kinds,
        ["edit", "callback", "edit"],
        "deferred once, edited once more"
    );
    assert!(callbacks[2].body.contains("pong"));
    assert_eq!(sim.rest_violations(), 0, "the edit waited for the bucket");
    // The worker answered Retry once (its refused edit), then Success.
    let metrics = shardline_rest::metrics::handle().unwrap().render();
    let retries = metrics
        .lines()
        .find(|l| {
            l.starts_with("nats_consumer_messages_processed_total")
                && l.contains(r#"status="retry""#)
        })
        .unwrap_or_default()
        .to_owned();
    assert!(retries.ends_with(" 1"), "{retries}");
    shutdown.cancel();
    worker.await.unwrap().unwrap();
    proxy.stop().await.unwrap();
}
