//! The `shardline-rest` binary as a user runs it, through its documented
//! environment: settings checked at start with a clear error, the token from a
//! file and never in the logs, every metric on `/metrics`, and SIGTERM handing the
//! lease over cleanly to a standby, which carries on at once.

mod common;

use common::process::ProxyProcess;
use common::{PATIENCE, call, stack};
use shardline_discord_sim::{RestLatency, RestLimits, SimConfig, Simulator};
use shardline_rest::metrics as m;
use shardline_testkit::{NatsServer, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_settings_stop_the_binary_with_a_clear_error() {
    let (nats, sim) = stack(RestLimits::default()).await;
    let cases = [
        (
            vec![("REST_GLOBAL_LIMIT", "0".to_owned())],
            "REST_GLOBAL_LIMIT",
        ),
        (
            vec![("REST_UPSTREAM_URL", "discord.com".to_owned())],
            "REST_UPSTREAM_URL",
        ),
        (
            vec![
                ("DISCORD_TOKEN", String::new()),
                ("DISCORD_TOKEN_FILE", "/nonexistent/token".to_owned()),
            ],
            "DISCORD_TOKEN_FILE",
        ),
        (vec![("NATS_URL", "nats://127.0.0.1:1".to_owned())], "NATS"),
    ];
    for (env, named) in cases {
        let proxy = ProxyProcess::spawn(&sim, &nats.url(), &env);
        let (status, stderr) = proxy.wait_exit().await;
        assert!(!status.success(), "{env:?} accepted");
        assert!(stderr.contains(named), "{env:?}: {stderr}");
    }
}

async fn metrics_text(proxy: &ProxyProcess) -> String {
    common::raw(proxy.addr, "GET /metrics HTTP/1.1\r\nHost: proxy", b"")
        .await
        .body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_the_lease_over_cleanly_and_the_token_stays_secret() {
    const SECRET: &str = "Zm9vYmFy.secret-bot-token.c2VjcmV0";
    let nats = NatsServer::start();
    let sim = Simulator::start(SimConfig {
        token: SECRET.to_owned(),
        rest_latency: RestLatency::DISCORD,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{SECRET}\n")).unwrap();
    // One reads the token from the environment, the other from a file.
    let first = ProxyProcess::spawn(&sim, &nats.url(), &[]);
    eventually("the first proxy holding the lease", PATIENCE, || async {
        first.is_holder().await.then_some(())
    })
    .await;
    let from_file = [
        ("DISCORD_TOKEN", String::new()),
        ("DISCORD_TOKEN_FILE", file.display().to_string()),
    ];
    let second = ProxyProcess::spawn(&sim, &nats.url(), &from_file);
    eventually("the second proxy standing by", PATIENCE, || async {
        let (status, body) = second.readyz().await;
        (status == 200 && body.starts_with("standby")).then_some(())
    })
    .await;
    // Through the standby (forwarded) and the holder.
    for proxy in [&first, &second] {
        let a = call(
            proxy.addr,
            "POST",
            "/api/v10/channels/1/messages",
            &[],
            r#"{"content":"hi"}"#,
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.body);
    }
    let text = metrics_text(&first).await;
    for name in [
        m::REQUESTS,
        m::WAIT,
        m::UPSTREAM_DURATION,
        m::RATE_LIMITED,
        m::REFUSED,
        m::INVALID_REQUESTS,
        m::INVALID_REQUESTS_LIMIT,
        m::GLOBAL_FILL,
        m::HOLDER,
        m::FORWARDED,
        m::TAKEOVERS,
        m::UPSTREAM_RETRIES,
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
    assert!(text.contains(r#"discord_rest_requests_total{route="/channels/:id/messages",method="POST",status="200"} 2"#), "{text}");
    assert!(!text.contains("/channels/1/"), "a raw path in a label");

    let (status, first_log) = first.signal_and_wait("TERM").await;
    assert!(status.success(), "{status}: {first_log}");
    eventually("the standby holding the lease", PATIENCE, || async {
        second.is_holder().await.then_some(())
    })
    .await;
    let took = metrics_text(&second).await;
    assert!(
        took.contains(r#"discord_rest_takeovers_total{kind="clean"} 1"#),
        "{took}"
    );
    let after = call(
        second.addr,
        "POST",
        "/api/v10/channels/1/messages",
        &[],
        "{}",
    )
    .await;
    assert_eq!(after.status, 200);
    let (_, second_log) = second.signal_and_wait("TERM").await;
    assert_eq!(sim.rest_violations(), 0);
    for log in [&first_log, &second_log] {
        assert!(log.contains("shardline-rest listening"), "{log}");
        assert!(
            !log.contains(SECRET) && !log.contains("c2VjcmV0"),
            "the token in a log"
        );
    }
}
