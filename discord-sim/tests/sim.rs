//! End-to-end tests of the simulator against twilight-gateway 0.18 and raw clients.
//!
//! Nothing here sleeps to synchronise: tests await frames or [`SimEvent`]s (timeouts
//! only turn a hang into a failure).

mod common;

use std::io::{Read, Write};

use common::{Frame, RawClient, next_dispatch, next_frame, twilight_shard, wait_event};
use shardline_discord_sim::{
    Mix, Sent, SimConfig, SimEvent, Simulator, TrafficPlan, shard_for_guild,
};

fn config() -> SimConfig {
    SimConfig {
        shard_total: 2,
        guilds_per_shard: 3,
        ..Default::default()
    }
}

/// Payloads including odd spacing and escapes, to prove `d` is never re-serialized.
const ODD: &[&str] = &[
    r#"{ "guild_id" : "1" ,"x":"\u00e9\n" }"#,
    r#"[1,2 , 3]"#,
    r#""just a string""#,
    r#"{"nested":{"deep":[{"a":null}]},"n":1.50e3}"#,
];

async fn traffic(sim: &Simulator, shard: u32, seed: u64) -> Vec<Sent> {
    let mut sent = sim
        .play(TrafficPlan {
            shards: vec![shard],
            events_per_shard: 96,
            rate_per_second: None,
            mix: Mix::Realistic,
            seed,
        })
        .await;
    for d in ODD {
        sent.push(sim.dispatch(shard, "SHARDLINE_ODD", d).await);
    }
    assert_eq!(sent.len(), 100);
    for s in &sent[..96] {
        let g = s.guild_id.expect("generated traffic has a guild");
        assert_eq!(
            shard_for_guild(g, 2),
            shard,
            "guild maps to the played shard"
        );
    }
    sent
}

fn assert_ready_and_guilds(sim: &Simulator, shard: u32, first: &[(u64, String, String)]) {
    let (seq, event, d) = &first[0];
    assert_eq!((*seq, event.as_str()), (1, "READY"));
    let ready: serde_json::Value = serde_json::from_str(d).unwrap();
    assert_eq!(ready["shard"], serde_json::json!([shard, 2]));
    assert_eq!(ready["resume_gateway_url"], sim.gateway_url());
    let ids: Vec<u64> = ready["guilds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(ids, sim.guilds(shard));
    for (i, (seq, event, d)) in first[1..].iter().enumerate() {
        assert_eq!((*seq, event.as_str()), (i as u64 + 2, "GUILD_CREATE"));
        let g: serde_json::Value = serde_json::from_str(d).unwrap();
        assert_eq!(g["id"], ids[i].to_string());
    }
}

#[tokio::test]
async fn twilight_zstd_stream_receives_ready_guilds_and_exact_dispatches() {
    let sim = Simulator::start(config()).await.unwrap();
    let mut events = sim.events();
    let mut shard = twilight_shard(&sim, 1, "sim-token");
    let mut first = Vec::new();
    for _ in 0..4 {
        first.push(next_dispatch(&mut shard).await);
    }
    assert_ready_and_guilds(&sim, 1, &first);
    wait_event(&mut events, |e| {
        matches!(e, SimEvent::Identified { shard: 1, .. })
    })
    .await;
    sim.wait_ready(1).await;

    let sent = traffic(&sim, 1, 42).await;
    for s in &sent {
        let (seq, event, d) = next_dispatch(&mut shard).await;
        assert_eq!(seq, s.seq);
        assert_eq!(event, s.event);
        assert_eq!(d.as_str(), &*s.d, "byte-exact d");
    }
    assert_eq!(sent.last().unwrap().seq, 104);
    assert_eq!(sim.sent().len(), 104);
    assert_eq!(sim.identifies().len(), 1);
    assert_eq!(sim.identify_rate_violations(), 0);
    sim.shutdown().await;
}

async fn raw_ordered(compress: &str) {
    let sim = Simulator::start(config()).await.unwrap();
    let mut c = RawClient::connect(&sim, compress).await;
    match c.next().await {
        Frame::Op(10, d) => assert_eq!(d, r#"{"heartbeat_interval":41250}"#),
        other => panic!("expected HELLO, got {other:?}"),
    }
    c.send(r#"{"op":1,"d":null}"#).await;
    assert_eq!(c.next().await, Frame::Op(11, "null".into()));
    c.identify("Bot sim-token", 0, 2).await;
    let mut first = Vec::new();
    for _ in 0..4 {
        first.push(c.next_dispatch().await);
    }
    assert_ready_and_guilds(&sim, 0, &first);
    sim.wait_ready(0).await;
    let sent = traffic(&sim, 0, 7).await;
    for s in &sent {
        let (seq, event, d) = c.next_dispatch().await;
        assert_eq!(
            (seq, event.as_str(), d.as_str()),
            (s.seq, s.event.as_str(), &*s.d)
        );
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn raw_zlib_stream_receives_exact_dispatches() {
    raw_ordered("zlib-stream").await;
}

#[tokio::test]
async fn raw_uncompressed_receives_exact_dispatches() {
    raw_ordered("").await;
}

#[tokio::test]
async fn raw_zstd_stream_receives_exact_dispatches() {
    raw_ordered("zstd-stream").await;
}

#[tokio::test]
async fn bad_token_is_closed_with_4004() {
    let sim = Simulator::start(config()).await.unwrap();
    let mut shard = twilight_shard(&sim, 0, "wrong-token");
    loop {
        match next_frame(&mut shard).await {
            Frame::Close(code) => {
                assert_eq!(code, Some(4004));
                break;
            }
            Frame::Op(10, _) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(sim.identifies().is_empty());

    // Wrong shard count: 4010.
    let mut c = RawClient::connect(&sim, "").await;
    c.next().await;
    c.identify("sim-token", 0, 3).await;
    assert_eq!(c.next().await, Frame::Close(Some(4010)));
    sim.shutdown().await;
}

/// op 7 mid-stream, 20 dispatches while the client is away, then resume.
async fn reconnect_scenario(overlap: u64) {
    let sim = Simulator::start(SimConfig {
        replay_overlap: overlap,
        ..config()
    })
    .await
    .unwrap();
    let mut events = sim.events();
    let mut shard = twilight_shard(&sim, 0, "sim-token");
    for _ in 0..4 {
        next_dispatch(&mut shard).await;
    }
    let before = traffic(&sim, 0, 1).await;
    for s in &before {
        assert_eq!(next_dispatch(&mut shard).await.0, s.seq);
    }
    let session_id = before[0].session_id.clone();

    sim.send_reconnect(0);
    assert_eq!(next_frame(&mut shard).await, Frame::Op(7, "null".into()));
    // twilight closes with 4000 (we echo) and reconnects at once; stop polling at the new
    // connection's HELLO: RESUME is only sent on the next poll, so the client is away.
    loop {
        match next_frame(&mut shard).await {
            Frame::Op(10, _) => break,
            Frame::Close(code) => assert_eq!(code, Some(4000)),
            other => panic!("unexpected {other:?}"),
        }
    }
    wait_event(&mut events, |e| {
        matches!(
            e,
            SimEvent::Disconnected {
                shard: 0,
                code: Some(4000)
            }
        )
    })
    .await;

    let mut missed = Vec::new();
    for i in 0..20 {
        missed.push(
            sim.dispatch(0, "MESSAGE_CREATE", &format!(r#"{{"n":{i}}}"#))
                .await,
        );
    }

    // Polling the shard again makes it reconnect and RESUME.
    let mut expected: Vec<(u64, String)> = before[before.len() - overlap as usize..]
        .iter()
        .chain(&missed)
        .map(|s| (s.seq, s.d.to_string()))
        .collect();
    let resumed_seq = missed.last().unwrap().seq + 1;
    expected.push((resumed_seq, "{}".into()));
    let mut got = Vec::new();
    while got.len() < expected.len() {
        let (seq, event, d) = next_dispatch(&mut shard).await;
        if got.len() + 1 == expected.len() {
            assert_eq!(event, "RESUMED");
        }
        got.push((seq, d));
    }
    assert_eq!(got, expected);

    let e = wait_event(&mut events, |e| matches!(e, SimEvent::Resumed { .. })).await;
    assert_eq!(
        e,
        SimEvent::Resumed {
            shard: 0,
            session_id: session_id.clone(),
            replayed: 20 + overlap as usize
        }
    );
    let r = &sim.resumes()[0];
    assert_eq!(r.requested_seq, before.last().unwrap().seq);
    assert_eq!(sim.identifies().len(), 1, "resume is not an identify");

    // Live again on the same session.
    let live = sim.dispatch(0, "TYPING_START", r#"{"live":true}"#).await;
    assert_eq!(live.session_id, session_id);
    assert_eq!(live.seq, resumed_seq + 1);
    assert_eq!(
        next_dispatch(&mut shard).await,
        (live.seq, "TYPING_START".into(), r#"{"live":true}"#.into())
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn reconnect_resumes_and_replays_missed_dispatches_exactly_once() {
    reconnect_scenario(0).await;
}

#[tokio::test]
async fn replay_overlap_repeats_already_seen_frames() {
    reconnect_scenario(3).await;
}

#[tokio::test]
async fn invalid_session_false_makes_the_client_identify_again() {
    let sim = Simulator::start(config()).await.unwrap();
    let mut events = sim.events();
    let mut shard = twilight_shard(&sim, 0, "sim-token");
    next_dispatch(&mut shard).await;
    let SimEvent::Identified {
        session_id: old, ..
    } = wait_event(&mut events, |e| matches!(e, SimEvent::Identified { .. })).await
    else {
        unreachable!()
    };

    sim.invalidate_session(0, false);
    let new = loop {
        match next_frame(&mut shard).await {
            Frame::Dispatch { event, d, .. } if event == "READY" => {
                let v: serde_json::Value = serde_json::from_str(&d).unwrap();
                break v["session_id"].as_str().unwrap().to_owned();
            }
            Frame::Op(9, d) => assert_eq!(d, "false"),
            _ => {}
        }
    };
    assert_ne!(new, old);
    assert_eq!(new.len(), 32);
    wait_event(
        &mut events,
        |e| matches!(e, SimEvent::Identified { session_id, .. } if *session_id == new),
    )
    .await;
    assert_eq!(sim.identifies().len(), 2);
    // The test queue identifies instantly: two identifies of bucket 0 within 5 s.
    assert_eq!(sim.identify_rate_violations(), 1);

    // The old session cannot be resumed any more.
    let mut c = RawClient::connect(&sim, "").await;
    c.next().await;
    c.resume("sim-token", &old, 1).await;
    assert_eq!(c.next().await, Frame::Op(9, "false".into()));
    sim.shutdown().await;
}

/// Minimal HTTP/1.1 exchange (no HTTP client in the dependency tree).
fn http(sim: &Simulator, request: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(sim.addr()).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp[9..12].parse().unwrap();
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn rest_gateway_bot_and_interaction_callback() {
    let sim = Simulator::start(SimConfig {
        shard_total: 4,
        max_concurrency: 2,
        ..config()
    })
    .await
    .unwrap();
    let s = sim.clone();
    let (ok, unauthorized, callback) = tokio::task::spawn_blocking(move || {
        let ok = http(&s, "GET /api/v10/gateway/bot HTTP/1.1\r\nHost: x\r\nAuthorization: Bot sim-token\r\nConnection: close\r\n\r\n");
        let unauthorized = http(&s, "GET /api/v10/gateway/bot HTTP/1.1\r\nHost: x\r\nAuthorization: Bot nope\r\nConnection: close\r\n\r\n");
        let body = r#"{"type":5}"#;
        let callback = http(&s, &format!("POST /api/v10/interactions/123/tok-en/callback HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()));
        (ok, unauthorized, callback)
    })
    .await
    .unwrap();
    assert_eq!(ok.0, 200);
    let v: serde_json::Value = serde_json::from_str(&ok.1).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"url": sim.gateway_url(), "shards": 4, "session_start_limit":
            {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 2}})
    );
    assert_eq!(unauthorized.0, 401);
    assert_eq!(callback.0, 204);
    let cb = sim.interaction_callbacks();
    assert_eq!(cb.len(), 1);
    assert_eq!(
        (
            cb[0].interaction_id.as_str(),
            cb[0].token.as_str(),
            cb[0].body.as_str()
        ),
        ("123", "tok-en", r#"{"type":5}"#)
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn binary_plays_traffic_to_live_shards_and_exits_on_sigterm() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_shardline-discord-sim"))
        .args(["--listen", "127.0.0.1:0", "--rate", "400", "--shards", "2"])
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = tokio::time::timeout(common::LIMIT, async {
        loop {
            let line = lines.next_line().await.unwrap().expect("listening line");
            if let Some(rest) = line.split("url=").nth(1) {
                return rest.split_whitespace().next().unwrap().to_owned();
            }
        }
    })
    .await
    .unwrap();
    let mut c = RawClient::connect_url(&url, "zlib-stream").await;
    c.next().await;
    c.identify("sim-token", 0, 2).await;
    let mut last = 0;
    for i in 0..40 {
        let (seq, event, d) = c.next_dispatch().await;
        assert_eq!(seq, last + 1);
        last = seq;
        if i == 0 {
            assert_eq!(event, "READY");
        } else if i > 3 {
            let v: serde_json::Value = serde_json::from_str(&d).unwrap();
            if let Some(g) = v.get("guild_id").and_then(|g| g.as_str()) {
                assert_eq!(shard_for_guild(g.parse().unwrap(), 2), 0);
            }
        }
    }
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(common::LIMIT, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "{exit:?}");
}

#[tokio::test]
async fn server_close_4000_keeps_the_session_and_twilight_resumes() {
    let sim = Simulator::start(config()).await.unwrap();
    let mut events = sim.events();
    let mut shard = twilight_shard(&sim, 0, "sim-token");
    for _ in 0..4 {
        next_dispatch(&mut shard).await;
    }
    let before = sim.dispatch(0, "MESSAGE_CREATE", r#"{"a":1}"#).await;
    assert_eq!(next_dispatch(&mut shard).await.0, before.seq);
    sim.close(0, 4000);
    assert_eq!(next_frame(&mut shard).await, Frame::Close(Some(4000)));
    let (seq, event, _) = next_dispatch(&mut shard).await;
    assert_eq!((seq, event.as_str()), (before.seq + 1, "RESUMED"));
    wait_event(&mut events, |e| {
        matches!(
            e,
            SimEvent::Disconnected {
                shard: 0,
                code: Some(4000)
            }
        )
    })
    .await;
    let e = wait_event(&mut events, |e| matches!(e, SimEvent::Resumed { .. })).await;
    assert!(
        matches!(
            e,
            SimEvent::Resumed {
                shard: 0,
                replayed: 0,
                ..
            }
        ),
        "{e:?}"
    );
    sim.shutdown().await;
}

/// A session-ending close ends the session when the simulator sends it: a client that
/// reconnects and resumes before its close reply went out is refused, as Discord does.
#[tokio::test]
async fn a_session_ended_by_4009_cannot_be_resumed_before_the_close_completes() {
    let sim = Simulator::start(config()).await.unwrap();
    let mut old = RawClient::connect(&sim, "").await;
    old.next().await;
    old.identify("sim-token", 0, 2).await;
    let session = match old.next().await {
        Frame::Dispatch { event, d, .. } if event == "READY" => {
            let v: serde_json::Value = serde_json::from_str(&d).unwrap();
            v["session_id"].as_str().unwrap().to_owned()
        }
        other => panic!("expected READY, got {other:?}"),
    };
    sim.close(0, 4009);
    while old.next().await != Frame::Close(Some(4009)) {}
    // `old` is not polled again, so its close reply stays unsent and the simulator is
    // still waiting for it while the same client resumes on a new connection.
    let mut new = RawClient::connect(&sim, "").await;
    new.next().await;
    new.resume("sim-token", &session, 1).await;
    assert_eq!(new.next().await, Frame::Op(9, "false".into()));
    drop(old);
    sim.shutdown().await;
}
