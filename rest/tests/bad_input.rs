//! Bad input gets a clear answer and nothing reaches Discord: malformed paths (400),
//! bodies over the size limit (413, whether declared or streamed), an upstream that
//! hangs (504 after the timeout), and upstream 5xx answers, retried only for
//! idempotent methods. Counted at the simulator.

mod common;

use common::{call, config, holder, raw, stack};
use shardline_discord_sim::{RestFault, RestLimits};
use shardline_proto::rest::REFUSED_HEADER;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_paths_and_oversized_bodies_never_reach_discord() {
    let (nats, sim) = stack(RestLimits::default()).await;
    let mut config = config(&sim, &nats);
    config.max_body_bytes = 1024;
    let proxy = holder(config).await;
    let addr = proxy.addr();
    for path in [
        "/channels/1/messages",
        "/api/v10/channels/../guilds/1",
        "/api/v10/channels//messages",
        "/api/v10/channels/1%2F..%2Fguilds/messages",
        "/api/vX/channels/1/messages",
    ] {
        let a = call(addr, "POST", path, &[], "{}").await;
        assert_eq!(a.status, 400, "{path}");
        assert_eq!(a.header(REFUSED_HEADER), Some("malformed_path"), "{path}");
        assert_eq!(a.json()["shardline_refused"], "malformed_path");
    }
    let big = format!(r#"{{"content":"{}"}}"#, "x".repeat(2000));
    let declared = call(addr, "POST", "/api/v10/channels/1/messages", &[], &big).await;
    assert_eq!(declared.status, 413);
    assert_eq!(declared.header(REFUSED_HEADER), Some("body_too_large"));
    // Chunked, with no length declared: refused once the limit is passed.
    let mut chunked = format!("{:x}\r\n{big}\r\n0\r\n\r\n", big.len()).into_bytes();
    chunked.shrink_to_fit();
    let head = "POST /api/v10/channels/1/messages HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked";
    let streamed = raw(addr, head, &chunked).await;
    assert_eq!(streamed.status, 413);
    // A wait budget that is not a number is ignored (the route's default applies).
    let odd = call(
        addr,
        "POST",
        "/api/v10/channels/1/messages",
        &["X-Shardline-Max-Wait-Ms: soon"],
        "{}",
    )
    .await;
    assert_eq!(odd.status, 200);
    // Only that last one reached Discord.
    assert_eq!(sim.rest_requests().len(), 1);
    proxy.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_upstream_times_out_with_504() {
    let (nats, sim) = stack(RestLimits::default()).await;
    let mut config = config(&sim, &nats);
    config.upstream_timeout_ms = 300;
    let proxy = holder(config).await;
    sim.inject_rest_fault("/channels/7/", RestFault::Hang, 1);
    let hung = call(
        proxy.addr(),
        "POST",
        "/api/v10/channels/7/messages",
        &[],
        "{}",
    )
    .await;
    assert_eq!(hung.status, 504);
    assert_eq!(hung.header(REFUSED_HEADER), Some("upstream_timeout"));
    // Not retried (it may have taken effect): one request at the simulator.
    let records = sim.rest_requests();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].status, 0, "it never answered");
    // The next one goes through.
    let next = call(
        proxy.addr(),
        "POST",
        "/api/v10/channels/7/messages",
        &[],
        "{}",
    )
    .await;
    assert_eq!(next.status, 200);
    proxy.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_5xx_is_retried_only_for_idempotent_methods() {
    let (nats, sim) = stack(RestLimits::default()).await;
    let proxy = holder(config(&sim, &nats)).await;
    let addr = proxy.addr();
    // PUT is idempotent: retried, and the caller sees the success.
    sim.inject_rest_fault("/guilds/1/", RestFault::Status(502), 1);
    let put = call(addr, "PUT", "/api/v10/guilds/1/members/2/roles/3", &[], "").await;
    assert_eq!(put.status, 204);
    // POST is not: Discord's 502 comes back as it is.
    sim.inject_rest_fault("/channels/8/", RestFault::Status(502), 1);
    let post = call(addr, "POST", "/api/v10/channels/8/messages", &[], "{}").await;
    assert_eq!((post.status, post.header(REFUSED_HEADER)), (502, None));
    // Retries are bounded (REST_UPSTREAM_RETRIES = 2): the third 503 is answered.
    sim.inject_rest_fault("/guilds/4/", RestFault::Status(503), 3);
    let gone = call(
        addr,
        "DELETE",
        "/api/v10/guilds/4/members/2/roles/3",
        &[],
        "",
    )
    .await;
    assert_eq!((gone.status, gone.header(REFUSED_HEADER)), (503, None));
    let statuses: Vec<(String, u16)> = sim
        .rest_requests()
        .iter()
        .map(|r| (r.method.clone(), r.status))
        .collect();
    let expected = [
        ("PUT", 502),
        ("PUT", 204),
        ("POST", 502),
        ("DELETE", 503),
        ("DELETE", 503),
        ("DELETE", 503),
    ];
    let expected: Vec<(String, u16)> = expected.iter().map(|(m, s)| (m.to_string(), *s)).collect();
    assert_eq!(statuses, expected);
    assert_eq!(sim.role_changes().len(), 1, "the PUT took effect once");
    proxy.stop().await.unwrap();
}
