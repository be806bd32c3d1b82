//! The application's benchmark, on the same real parts as its tests (nats-server,
//! PostgreSQL, the simulator, the REST proxy, the gateway in-process) with the worker
//! binaries of this build as processes:
//!
//! 1. **Throughput into PostgreSQL**: member updates (2 guilds, 5,000 members, each
//!    updated 4 times) published as fast as JetStream takes them to one event worker,
//!    then to two, already pulling; first publish to last acknowledgement. Beside it,
//!    the baseline: the same updates written by the store alone (`PgStore`
//!    in-process, 16 at once, no NATS). A fresh database each.
//! 2. **Lag at 2,000 member updates/s**: offered open-loop for 20 s to one event
//!    worker; the consumer's lag (pending + unacknowledged) sampled every second.
//! 3. **Join to role**: joins at 200/s for 15 s through the simulator's gateway
//!    (every other account old enough for a rule's role), the event, eligibility and
//!    sync workers running; time from the join's dispatch to the simulator applying
//!    the role, p50/p99.
//!
//! `cargo bench -p shardline-app --bench pipeline` (release). Without `--bench`
//! (`cargo test -p shardline-app --bench pipeline`, as `scripts/test` runs it) every
//! part runs once with small counts, so it keeps working; its figures mean nothing.
//! No thresholds: it reports, `BENCHMARKS.md` records.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::HeaderMap;
use async_nats::jetstream;
use common::{Bin, Options, PATIENCE, Stack, scenario};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use shardline_app::PgStore;
use shardline_app::store::{Store, Version};
use shardline_discord_sim::Pacer;
use shardline_proto::headers;
use shardline_proto::subject::MEMBER_UPDATE;
use shardline_proto::topology::{EVENT_WORKER, STREAMS};
use shardline_testkit::eventually;

/// Counts for one run: the real ones, or the quick mode's.
struct Sizes {
    members: u64,
    updates_each: u64,
    offered_rate: u32,
    offered_secs: u64,
    join_rate: u32,
    join_secs: u64,
}

const FULL: Sizes = Sizes {
    members: 5_000,
    updates_each: 4,
    offered_rate: 2_000,
    offered_secs: 20,
    join_rate: 200,
    join_secs: 15,
};

const QUICK: Sizes = Sizes {
    members: 200,
    updates_each: 2,
    offered_rate: 200,
    offered_secs: 2,
    join_rate: 50,
    join_secs: 2,
};

/// The backlog's guilds (never seen before their first update: created by it).
const GUILDS: [u64; 2] = [81_384_788_765_712_384, 81_384_788_765_713_408];

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".to_owned())
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// The `n`-th member update of the backlog: guild, user, roles, and the gateway's
/// headers (one session, sequence `n + 1`).
fn update(n: u64, members: u64) -> (u64, u64, Vec<u64>, HeaderMap, String) {
    let guild = GUILDS[(n % 2) as usize];
    let user = 1_000_000 + (n / 2) % members;
    let roles = vec![guild + 10 + n % 3];
    let mut h = HeaderMap::new();
    h.insert(headers::MSG_ID, headers::msg_id("bench", n + 1).as_str());
    h.insert(headers::SEQUENCE, (n + 1).to_string().as_str());
    h.insert(headers::RECEIVED_AT, now_nanos().to_string().as_str());
    h.insert(headers::GUILD_ID, guild.to_string().as_str());
    h.insert(headers::SHARD_ID, "0");
    let body = serde_json::json!({
        "guild_id": guild.to_string(),
        "user": {"id": user.to_string(), "username": "u", "discriminator": "0", "avatar": null},
        "roles": roles.iter().map(u64::to_string).collect::<Vec<_>>(),
        "joined_at": "2025-01-01T00:00:00.000000+00:00",
        "deaf": false, "mute": false, "flags": 0, "pending": false,
    })
    .to_string();
    (guild, user, roles, h, body)
}

async fn streams(js: &jetstream::Context) {
    shardline_jetstream::reconcile_streams(
        js,
        &STREAMS,
        shardline_jetstream::ReconcileOptions { replicas: 1 },
    )
    .await
    .unwrap();
}

/// Publishes updates `from..to`, acks pipelined (4,096 in flight), paced at `rate`
/// a second if given.
async fn publish(js: &jetstream::Context, from: u64, to: u64, members: u64, rate: Option<u32>) {
    let mut pacer = Pacer::new(rate);
    let mut acks = FuturesUnordered::new();
    for n in from..to {
        if rate.is_some() {
            pacer.tick().await;
        }
        let (_, _, _, h, body) = update(n, members);
        let ack = js
            .publish_with_headers(MEMBER_UPDATE, h, body.into())
            .await
            .unwrap();
        acks.push(async move { ack.await });
        while acks.len() >= 4096 {
            acks.next().await.unwrap().unwrap();
        }
    }
    while let Some(ack) = acks.next().await {
        ack.unwrap();
    }
}

/// Messages the event worker's consumer has acknowledged (its ack floor).
async fn acked(stack: &Stack) -> u64 {
    stack
        .consumer(&EVENT_WORKER)
        .await
        .map_or(0, |i| i.ack_floor.stream_sequence)
}

/// Events/s of `workers` event workers handling member updates published as fast as
/// JetStream takes them (a backlog forms at once): from the first publish to the last
/// acknowledgement, the workers already started and pulling.
async fn drain(sizes: &Sizes, workers: usize) -> f64 {
    let mut stack = Stack::start(Options {
        gateway: false,
        ..Options::default()
    })
    .await;
    streams(&stack.js).await;
    for _ in 0..workers {
        stack.start_worker(Bin::Event);
    }
    eventually("every event worker pulling", PATIENCE, || async {
        let info = stack.consumer(&EVENT_WORKER).await?;
        (info.num_waiting >= workers).then_some(())
    })
    .await;
    let total = sizes.members * sizes.updates_each;
    let start = Instant::now();
    publish(&stack.js, 0, total, sizes.members, None).await;
    eventually("the backlog drained", PATIENCE, || async {
        (acked(&stack).await >= total).then_some(())
    })
    .await;
    let rate = total as f64 / start.elapsed().as_secs_f64();
    stack.stop().await;
    rate
}

/// Events/s of the store alone: the same updates, 16 at once, in-process.
async fn store_alone(sizes: &Sizes) -> f64 {
    let stack = Stack::start(Options {
        gateway: false,
        ..Options::default()
    })
    .await;
    let store = PgStore::new(stack.db.clone());
    let total = sizes.members * sizes.updates_each;
    let start = Instant::now();
    let mut writes = FuturesUnordered::new();
    for n in 0..total {
        let (guild, user, roles, _, _) = update(n, sizes.members);
        let store = store.clone();
        writes.push(async move {
            let version = Version {
                at: now_nanos() as i64,
                session: Some("bench".to_owned()),
                sequence: n as i64 + 1,
            };
            store
                .member_updated(guild, user, &roles, &version)
                .await
                .unwrap();
        });
        while writes.len() >= 16 {
            writes.next().await;
        }
    }
    while writes.next().await.is_some() {}
    let rate = total as f64 / start.elapsed().as_secs_f64();
    stack.stop().await;
    rate
}

/// Updates offered at `offered_rate` to one event worker: the lag each second, and
/// how long it took to reach 0 after the offer ended.
async fn offered(sizes: &Sizes) -> (Vec<u64>, Duration) {
    let mut stack = Stack::start(Options {
        gateway: false,
        ..Options::default()
    })
    .await;
    streams(&stack.js).await;
    stack.start_worker(Bin::Event);
    eventually("the event worker's consumer", PATIENCE, || async {
        stack.consumer(&EVENT_WORKER).await.map(drop)
    })
    .await;
    let total = u64::from(sizes.offered_rate) * sizes.offered_secs;
    let js = stack.js.clone();
    let (members, rate) = (sizes.members, sizes.offered_rate);
    let publisher = tokio::spawn(async move { publish(&js, 0, total, members, Some(rate)).await });
    let mut lags = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    while !publisher.is_finished() {
        tick.tick().await;
        if let Some(info) = stack.consumer(&EVENT_WORKER).await {
            lags.push(info.num_pending + info.num_ack_pending as u64);
        }
    }
    publisher.await.unwrap();
    let ended = Instant::now();
    eventually("the lag drained", PATIENCE, || async {
        (acked(&stack).await >= total).then_some(())
    })
    .await;
    let drained = ended.elapsed();
    stack.stop().await;
    (lags, drained)
}

/// Joins at `join_rate` through the gateway; milliseconds from each join's dispatch
/// to its role applied at the simulator, sorted.
async fn join_to_role(sizes: &Sizes) -> (Vec<f64>, u64) {
    let mut stack = Stack::start(Options::default()).await;
    for bin in [Bin::Event, Bin::Eligibility, Bin::Sync] {
        stack.start_worker(bin);
    }
    let guilds = scenario::guilds(&stack.sim);
    scenario::set_up(&stack.sim, &stack.db, &guilds).await;
    let total = (u64::from(sizes.join_rate) * sizes.join_secs) as usize;
    let mut joined: HashMap<(u64, u64), Instant> = HashMap::with_capacity(total);
    let mut pacer = Pacer::new(Some(sizes.join_rate));
    for n in 0..total {
        pacer.tick().await;
        let (g, index) = (n % guilds.len(), n / guilds.len());
        let user = scenario::user(g, index);
        joined.insert((guilds[g].id, user), Instant::now());
        stack.sim.member_join(guilds[g].id, user, &[]).await;
    }
    stack.until_idle().await;
    let veteran: HashMap<u64, u64> = guilds.iter().map(|g| (g.id, g.veteran)).collect();
    let mut ms: Vec<f64> = stack
        .sim
        .role_changes()
        .iter()
        .filter(|c| c.added && c.status == 204 && veteran.get(&c.guild_id) == Some(&c.role_id))
        .filter_map(|c| {
            let at = joined.get(&(c.guild_id, c.user_id))?;
            Some(c.at.duration_since(*at).as_secs_f64() * 1000.0)
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    let violations = stack.sim.rest_violations();
    stack.stop().await;
    (ms, violations)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let sizes = if full { &FULL } else { &QUICK };
    let total = sizes.members * sizes.updates_each;
    println!(
        "## Application pipeline ({})",
        if full { "full" } else { "quick" }
    );
    println!();
    println!("| part | load avg (1 5 15 min) at start | result |");
    println!("|---|---|---|");

    let load = load_average();
    let alone = store_alone(sizes).await;
    println!("| store alone, {total} updates, 16 at once | {load} | {alone:.0} updates/s |");
    let load = load_average();
    let one = drain(sizes, 1).await;
    println!(
        "| 1 event worker, {total} updates | {load} | {one:.0} events/s ({:.2}x the store alone) |",
        one / alone
    );
    let load = load_average();
    let two = drain(sizes, 2).await;
    println!(
        "| 2 event workers, {total} updates | {load} | {two:.0} events/s ({:.2}x one worker) |",
        two / one
    );

    let load = load_average();
    let (lags, drained) = offered(sizes).await;
    println!(
        "| {} updates/s offered for {} s, 1 event worker | {load} | lag each second {:?}; 0 {:.1} s after the offer ended |",
        sizes.offered_rate,
        sizes.offered_secs,
        lags,
        drained.as_secs_f64()
    );

    let load = load_average();
    let (ms, violations) = join_to_role(sizes).await;
    println!(
        "| joins at {}/s for {} s, {} roles applied | {load} | join to role p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {violations} REST limit violations |",
        sizes.join_rate,
        sizes.join_secs,
        ms.len(),
        percentile(&ms, 0.5),
        percentile(&ms, 0.99),
        ms.last().copied().unwrap_or(f64::NAN)
    );
}
