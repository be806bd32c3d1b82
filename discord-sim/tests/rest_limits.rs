//! The simulator's REST side enforces Discord's limits and records every request
//! and every violation: per-route buckets per top-level resource with Discord's
//! headers, the global limit (not for interaction callbacks), the invalid-request
//! counter with its Cloudflare ban, injected faults, and op 8's RATE_LIMITED.

mod common;

use std::time::Duration;

use common::RawClient;
use shardline_discord_sim::{
    BucketSpec, RestFault, RestLatency, RestLimits, SimConfig, Simulator, Violation, busiest_second,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// One HTTP/1.1 request on its own connection.
async fn call(sim: &Simulator, method: &str, path: &str, auth: Option<&str>, body: &str) -> Answer {
    let mut s = tokio::net::TcpStream::connect(sim.addr()).await.unwrap();
    let auth = auth.map_or(String::new(), |t| format!("Authorization: Bot {t}\r\n"));
    let request = format!(
        "{method} /api/v10{path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    Answer {
        status: head[9..12].parse().unwrap(),
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

async fn sim(limits: RestLimits) -> Simulator {
    Simulator::start(SimConfig {
        rest_latency: RestLatency::NONE,
        rest_limits: limits,
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn route_buckets_are_per_channel_with_discords_headers() {
    let sim = sim(RestLimits {
        messages: BucketSpec::per_ms(3, 60_000),
        ..Default::default()
    })
    .await;
    let token = Some("sim-token");
    for remaining in [2, 1, 0] {
        let a = call(
            &sim,
            "POST",
            "/channels/10/messages",
            token,
            r#"{"content":"x"}"#,
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.header("x-ratelimit-limit"), Some("3"));
        assert_eq!(
            a.header("x-ratelimit-remaining"),
            Some(remaining.to_string().as_str())
        );
        let after: f64 = a
            .header("x-ratelimit-reset-after")
            .unwrap()
            .parse()
            .unwrap();
        assert!(after > 59.0 && after <= 60.0, "{after}");
        assert!(a.header("x-ratelimit-bucket").is_some());
    }
    let refused = call(&sim, "POST", "/channels/10/messages", token, "{}").await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.header("x-ratelimit-scope"), Some("user"));
    let body: serde_json::Value = serde_json::from_str(&refused.body).unwrap();
    assert_eq!(body["global"], false);
    assert!(body["retry_after"].as_f64().unwrap() > 59.0);
    // Another channel is another bucket with the same bucket id.
    let other = call(&sim, "POST", "/channels/11/messages", token, "{}").await;
    assert_eq!(other.status, 200);
    assert_eq!(
        other.header("x-ratelimit-bucket"),
        refused.header("x-ratelimit-bucket")
    );

    let records = sim.rest_requests();
    assert_eq!(records.len(), 5);
    let violations: Vec<_> = records.iter().filter_map(|r| r.violation).collect();
    assert_eq!(violations, [Violation::Bucket]);
    assert_eq!(sim.rest_violations(), 1);
    assert_eq!(
        sim.rest_invalid_requests(),
        1,
        "a user-scope 429 is invalid"
    );
    assert_eq!(sim.messages().len(), 4);
    sim.shutdown().await;
}

#[tokio::test]
async fn the_global_limit_spares_interaction_callbacks() {
    let sim = sim(RestLimits {
        global_per_second: 4,
        ..Default::default()
    })
    .await;
    // Sequential requests on loopback: the limit is reached within a second unless
    // the machine stalls for a second at every step.
    let mut refused = None;
    for channel in 0..50 {
        let path = format!("/channels/{channel}/messages");
        let a = call(&sim, "POST", &path, Some("sim-token"), "{}").await;
        if a.status == 429 {
            refused = Some(a);
            break;
        }
        assert_eq!(a.status, 200);
    }
    let refused = refused.expect("the global limit refuses");
    assert_eq!(refused.header("x-ratelimit-global"), Some("true"));
    assert_eq!(refused.header("x-ratelimit-scope"), Some("global"));
    let records = sim.rest_requests();
    let over: Vec<_> = records.iter().filter(|r| r.violation.is_some()).collect();
    assert_eq!(over.len(), 1);
    assert_eq!(over[0].violation, Some(Violation::Global));
    let accepted: Vec<_> = records
        .iter()
        .filter(|r| r.violation.is_none())
        .cloned()
        .collect();
    assert_eq!(busiest_second(&accepted, Some("sim-token")), 4);
    for i in 0..10 {
        let path = format!("/interactions/{i}/token-{i}/callback");
        let a = call(&sim, "POST", &path, None, r#"{"type":5}"#).await;
        assert_eq!(a.status, 204, "callbacks are not bound by the global limit");
    }
    let exempt = sim.rest_requests().iter().filter(|r| !r.global).count();
    assert_eq!(exempt, 10);
    sim.shutdown().await;
}

#[tokio::test]
async fn invalid_requests_past_the_limit_get_the_address_banned() {
    let sim = sim(RestLimits {
        invalid_limit: 5,
        forbidden_channels: vec![99],
        ..Default::default()
    })
    .await;
    // A shared-scope 429 does not count.
    sim.inject_rest_fault(
        "/channels/1/",
        RestFault::SharedLimit(Duration::from_secs(1)),
        1,
    );
    let shared = call(
        &sim,
        "POST",
        "/channels/1/messages",
        Some("sim-token"),
        "{}",
    )
    .await;
    assert_eq!(
        (shared.status, shared.header("x-ratelimit-scope")),
        (429, Some("shared"))
    );
    assert_eq!(sim.rest_invalid_requests(), 0);
    // A wrong token is a 401, which counts.
    let bad = call(&sim, "POST", "/channels/1/messages", Some("wrong"), "{}").await;
    assert_eq!(bad.status, 401);
    for _ in 0..5 {
        let a = call(
            &sim,
            "POST",
            "/channels/99/messages",
            Some("sim-token"),
            "{}",
        )
        .await;
        assert_eq!(a.status, 403);
    }
    assert_eq!(sim.rest_invalid_requests(), 6);
    assert!(sim.rest_banned());
    let after = call(&sim, "GET", "/gateway/bot", Some("sim-token"), "").await;
    assert_eq!(after.status, 429);
    assert!(
        after.body.contains("1015"),
        "Cloudflare's page: {}",
        after.body
    );
    let last = sim.rest_requests().pop().unwrap();
    assert_eq!(last.violation, Some(Violation::Banned));
    assert_eq!(sim.rest_bans(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn faults_answer_errors_or_hang_and_nonces_deduplicate() {
    let sim = sim(RestLimits::default()).await;
    sim.inject_rest_fault("/channels/5/", RestFault::Status(502), 1);
    let failed = call(
        &sim,
        "POST",
        "/channels/5/messages",
        Some("sim-token"),
        "{}",
    )
    .await;
    assert_eq!(failed.status, 502);
    let body = r#"{"content":"once","nonce":"n-1","enforce_nonce":true}"#;
    let first = call(
        &sim,
        "POST",
        "/channels/5/messages",
        Some("sim-token"),
        body,
    )
    .await;
    let again = call(
        &sim,
        "POST",
        "/channels/5/messages",
        Some("sim-token"),
        body,
    )
    .await;
    let id = |a: &Answer| serde_json::from_str::<serde_json::Value>(&a.body).unwrap()["id"].clone();
    assert_eq!(id(&first), id(&again));
    let created: Vec<bool> = sim.messages().iter().map(|m| m.created).collect();
    assert_eq!(created, [true, false]);

    sim.inject_rest_fault("/channels/6/", RestFault::Hang, 1);
    let s = sim.clone();
    let hung = tokio::spawn(async move {
        call(&s, "POST", "/channels/6/messages", Some("sim-token"), "{}").await
    });
    let recorded = wait_for_record(&sim, |r| r.status == 0).await;
    assert_eq!(recorded.path, "/channels/6/messages");
    assert!(!hung.is_finished());
    hung.abort();
    sim.shutdown().await;
}

/// Waits for a record matching `f` (polling the simulator's records).
async fn wait_for_record(
    sim: &Simulator,
    f: impl Fn(&shardline_discord_sim::RestRecord) -> bool,
) -> shardline_discord_sim::RestRecord {
    tokio::time::timeout(common::LIMIT, async {
        loop {
            if let Some(r) = sim.rest_requests().into_iter().find(&f) {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the record in time")
}

#[tokio::test]
async fn a_second_all_members_request_within_30_s_gets_rate_limited() {
    let sim = sim(RestLimits::default()).await;
    let mut c = RawClient::connect(&sim, "").await;
    c.next().await; // HELLO
    c.identify("sim-token", 0, 2).await;
    let guild = sim.guilds(0)[0];
    // READY and the lazy GUILD_CREATEs.
    for _ in 0..=sim.guilds(0).len() {
        c.next_dispatch().await;
    }
    let all =
        format!(r#"{{"op":8,"d":{{"guild_id":"{guild}","query":"","limit":0,"nonce":"n2"}}}}"#);
    let some = format!(r#"{{"op":8,"d":{{"guild_id":"{guild}","user_ids":["1"],"limit":0}}}}"#);
    c.send(&all).await;
    c.send(&some).await;
    c.send(&all).await;
    let (_, event, d) = c.next_dispatch().await;
    assert_eq!(event, "RATE_LIMITED");
    let d: serde_json::Value = serde_json::from_str(&d).unwrap();
    assert_eq!(d["opcode"], 8);
    assert_eq!(d["meta"]["guild_id"], guild.to_string());
    assert_eq!(d["meta"]["nonce"], "n2");
    assert!(d["retry_after"].as_f64().unwrap() > 29.0);
    let limited: Vec<bool> = sim
        .gateway_commands()
        .iter()
        .map(|c| c.rate_limited)
        .collect();
    assert_eq!(limited, [false, false, true]);
    sim.shutdown().await;
}
