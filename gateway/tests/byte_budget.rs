//! A storm of 1 MiB `GUILD_CREATE`s while NATS is away: the gateway binary holds at
//! most `MAX_INFLIGHT_BYTES` of payload (the count bound alone, 4,096 messages, would
//! let it hold 4 GiB), stops reading, and keeps its peak memory (VmHWM) under its
//! memory before the storm plus the budget plus a constant. When NATS comes back,
//! every event of the storm is stored once, byte-exact after decoding.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use common::http::{get, sample};
use common::process::GatewayProcess;
use common::{PATIENCE, expected_subjects, free_port, published_messages, sim_config, wait_stored};
use shardline_discord_sim::fixtures::guild_create;
use shardline_discord_sim::{Simulator, synthetic_guild};
use shardline_proto::{encoding, headers};
use shardline_testkit::{NatsServer, eventually, init_tracing};

/// The gateway's payload budget for this test.
const BUDGET: u64 = 16 * 1024 * 1024;
/// Events in the storm: ten times the budget.
const STORM: u64 = 160;
/// What the process may hold beyond its memory before the storm and the budget: the
/// event each shard has read and waits to publish, twilight's and the decompressor's
/// buffers, the zstd encoder (1 MiB events exceed NATS' max_payload and go out
/// compressed), and the allocator's slack.
const CONSTANT_KIB: u64 = 48 * 1024;

async fn metric(addr: SocketAddr, name: &str) -> Option<f64> {
    sample(&get(addr, "/metrics").await?.1, name, "")
}

/// Members that make a GUILD_CREATE of at least 1 MiB.
fn one_mib_members() -> usize {
    let mut members = 3_000;
    while guild_create(synthetic_guild(0, 2, 1), members, 40, 0).len() < 1024 * 1024 {
        members += 100;
    }
    members
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_large_events_stays_within_the_byte_budget() {
    init_tracing();
    let mut nats = NatsServer::start();
    let sim = Simulator::start(sim_config()).await.unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let gateway = GatewayProcess::spawn(
        &sim,
        &nats.url(),
        &[
            ("MAX_INFLIGHT_BYTES", BUDGET.to_string()),
            ("METRICS_ADDR", addr.to_string()),
        ],
    );
    sim.wait_ready(0).await;
    sim.wait_ready(1).await;
    let before = wait_stored(&nats, expected_subjects(&sim.sent()).len() as u64).await;
    let mark = sim.sent().len();
    let hwm_before = gateway.hwm_kib().expect("VmHWM");

    nats.kill();
    let members = one_mib_members();
    let storm = tokio::spawn({
        let sim = sim.clone();
        async move {
            for i in 0..STORM {
                let shard = (i % 2) as u32;
                let guild = synthetic_guild(shard, 2, 100 + i);
                let d = guild_create(guild, members, 40, members as u64);
                sim.dispatch_with(shard, "GUILD_CREATE", Arc::from(d), Some(guild))
                    .await;
            }
        }
    });
    // The gateway fills its budget and stops there: no room for one more event.
    let held = eventually("the byte budget filled", PATIENCE, || async {
        let held = metric(addr, "gateway_publish_inflight_bytes").await?;
        (held as u64 + 1024 * 1024 > BUDGET).then_some(held as u64)
    })
    .await;
    assert!(held <= BUDGET, "{held} bytes held, over the budget");
    let count = metric(addr, "gateway_publish_inflight").await.unwrap();
    assert!(
        count < 4096.0,
        "the count bound ({count} held) is not what stopped it"
    );
    let hwm_during = gateway.hwm_kib().unwrap();

    nats.restart();
    storm.await.unwrap();
    let sent = sim.sent();
    let stored = wait_stored(&nats, (sent.len() - mark) as u64).await;
    let hwm_after = gateway.hwm_kib().unwrap();
    let (status, _) = gateway.signal_and_wait("TERM").await;
    assert!(status.success());

    // The restarted server lost its memory streams: they hold the storm, once each.
    let by_id: HashMap<String, _> = sent[mark..].iter().map(|s| (s.msg_id(), s)).collect();
    let mut seen = HashMap::new();
    for message in published_messages(&nats).await {
        let h = &message.headers;
        let id = h.get(headers::MSG_ID).expect("Nats-Msg-Id").to_string();
        let s = by_id
            .get(&id)
            .unwrap_or_else(|| panic!("{id}: not in the storm"));
        let encoding_header = h.get(headers::ENCODING).map(|v| v.as_str());
        let payload = encoding::decode(encoding_header, &message.payload).unwrap();
        assert_eq!(&payload[..], s.d.as_bytes(), "payload of {id}");
        *seen.entry(id).or_insert(0) += 1;
    }
    assert_eq!(seen.len() as u64, STORM, "every event of the storm stored");
    assert!(seen.values().all(|&n| n == 1), "none stored twice");
    assert_eq!(stored, STORM);

    let peak = hwm_before.max(hwm_during).max(hwm_after);
    assert!(
        peak <= hwm_before + BUDGET / 1024 + CONSTANT_KIB,
        "peak RSS {peak} KiB: more than {hwm_before} KiB + the budget + {CONSTANT_KIB} KiB"
    );
    eprintln!(
        "{STORM} GUILD_CREATEs of {members} members (over 1 MiB each) with NATS away, \
         budget {} MiB: held {held} bytes in {count} events; peak RSS {hwm_before} KiB \
         before ({before} events stored), {peak} KiB at most (+{} KiB); all stored once",
        BUDGET / (1024 * 1024),
        peak - hwm_before,
    );
}
