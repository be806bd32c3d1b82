//! Throughput: events/s from the simulator into the streams, B0 vs B vs R.

use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde::Serialize;
use shardline_proto::{headers, route};
use tokio::sync::mpsc;

use crate::baseline::{guild_id, unix_nanos};
use crate::child::Usage;
use crate::env::{Env, System, nats_usage, own_usage, wait_for};
use crate::fixture::Event;
use crate::stats::Spread;

/// How long a run may take before the benchmark gives up.
const RUN_LIMIT: Duration = Duration::from_secs(600);

/// One measured run.
#[derive(Clone, Debug, Serialize)]
pub struct Run {
    /// "B0", "B" or "R".
    pub system: &'static str,
    /// Events played.
    pub events: usize,
    /// Events stored per second (first dispatch to last stored).
    pub events_per_sec: f64,
    /// CPU of the ingress process (gateway / baseline client; B0: the publisher), µs per event.
    pub ingress_cpu_us: f64,
    /// CPU of the consumer process (workers / drain), µs per event.
    pub consumer_cpu_us: f64,
    /// CPU of the orchestrator (the simulator), µs per event.
    pub sim_cpu_us: f64,
    /// CPU of nats-server, µs per event.
    pub nats_cpu_us: f64,
    /// Seconds from the first dispatch until the consumers had acked everything.
    pub drained_secs: f64,
    /// Read/write system calls per event: ingress, consumer, nats-server.
    pub syscalls: [f64; 3],
    /// Context switches per event: ingress, consumer, nats-server.
    pub switches: [f64; 3],
}

/// Runs B0, B and R `runs` times each, alternating B and R, and returns every run.
///
/// # Errors
///
/// If a process fails or a run exceeds its time limit.
pub async fn measure(
    env: &Env,
    mix: &[Event],
    events: usize,
    runs: usize,
) -> anyhow::Result<Vec<Run>> {
    let mut out = Vec::new();
    for i in 0..runs {
        out.push(ceiling(env, mix, events, i).await?);
        // Alternate which goes first, so slow drift in the machine hits both alike.
        let order = if i % 2 == 0 {
            [System::Baseline, System::Router]
        } else {
            [System::Router, System::Baseline]
        };
        for system in order {
            let run = one(env, system, mix, events).await?;
            eprintln!(
                "  throughput run {}/{runs} {}: {:.0} events/s",
                i + 1,
                run.system,
                run.events_per_sec
            );
            out.push(run);
        }
    }
    Ok(out)
}

fn per_event(before: Usage, after: Usage, events: usize) -> f64 {
    (after.cpu_seconds - before.cpu_seconds) * 1e6 / events.max(1) as f64
}

/// System calls and context switches per event of the ingress, consumer and
/// nats-server, from their usage before and after.
fn calls_per_event(pairs: [(Usage, Usage); 3], events: usize) -> ([f64; 3], [f64; 3]) {
    let per = |f: fn(&Usage) -> u64| {
        pairs.map(|(before, after)| {
            f(&after).saturating_sub(f(&before)) as f64 / events.max(1) as f64
        })
    };
    (per(|u| u.syscalls), per(|u| u.switches))
}

async fn one(env: &Env, system: System, mix: &[Event], events: usize) -> anyhow::Result<Run> {
    one_at(env, system, mix, events, None).await
}

/// One run of `system` playing `events` at `rate` events/s in all (`None`: as fast as
/// backpressure lets), measured from the first dispatch to the last message stored.
pub(crate) async fn one_at(
    env: &Env,
    system: System,
    mix: &[Event],
    events: usize,
    rate: Option<u32>,
) -> anyhow::Result<Run> {
    let running = env.launch(system, Duration::ZERO, false).await?;
    let base = env.stored().await?;
    let (i0, c0, o0, n0) = (
        running.ingress.usage(),
        running.consumer.usage(),
        own_usage(),
        nats_usage(),
    );
    let start = Instant::now();
    env.play(mix, events, rate, |_, _| None).await;
    let want = base + events as u64;
    wait_for("every event stored", RUN_LIMIT, || async {
        env.stored().await.unwrap_or(0) >= want
    })
    .await?;
    let stored = start.elapsed();
    let (i1, c1, o1, n1) = (
        running.ingress.usage(),
        running.consumer.usage(),
        own_usage(),
        nats_usage(),
    );
    wait_for("the consumers to drain", RUN_LIMIT, || async {
        env.drained().await.unwrap_or(false)
    })
    .await?;
    let drained = start.elapsed();
    running.finish().await?;
    let (syscalls, switches) = calls_per_event([(i0, i1), (c0, c1), (n0, n1)], events);
    Ok(Run {
        system: system.label(),
        events,
        events_per_sec: events as f64 / stored.as_secs_f64(),
        ingress_cpu_us: per_event(i0, i1, events),
        consumer_cpu_us: per_event(c0, c1, events),
        sim_cpu_us: per_event(o0, o1, events),
        nats_cpu_us: per_event(n0, n1, events),
        drained_secs: drained.as_secs_f64(),
        syscalls,
        switches,
    })
}

/// Ceiling B0: async-nats publishing the same payloads with the same headers and
/// in-flight cap straight from memory, with B's drain running.
async fn ceiling(env: &Env, mix: &[Event], events: usize, run: usize) -> anyhow::Result<Run> {
    let consumer = env
        .consumer(System::Baseline, Duration::ZERO, false)
        .await?;
    let client = env.nats.client().await;
    let js = jetstream::ContextBuilder::new()
        .max_ack_inflight(env.max_inflight)
        .backpressure_on_inflight(true)
        .build(client.clone());
    let payloads: Vec<(Bytes, String)> = mix
        .iter()
        .map(|e| {
            let subject = route(&e.name, None)
                .subject()
                .unwrap_or("events.-")
                .to_owned();
            (Bytes::from(e.data.to_string()), subject)
        })
        .collect();
    let (tx, mut rx) = mpsc::unbounded_channel::<jetstream::context::PublishAckFuture>();
    let acks = tokio::spawn(async move {
        let mut pending = FuturesUnordered::new();
        let mut open = true;
        loop {
            tokio::select! {
                ack = rx.recv(), if open => match ack {
                    Some(ack) => pending.push(ack.into_future()),
                    None => open = false,
                },
                Some(result) = pending.next() => { result?; }
                else => break,
            }
        }
        anyhow::Ok(())
    });
    let base = env.stored().await?;
    let (c0, o0, n0) = (consumer.usage(), own_usage(), nats_usage());
    let start = Instant::now();
    let session = format!("ceiling{run}");
    for i in 0..events {
        let event = &mix[i % mix.len()];
        let (payload, subject) = &payloads[i % mix.len()];
        let seq = i as u64 + 1;
        let shard = (i % env.shards as usize).to_string();
        let mut map = HeaderMap::new();
        map.insert(headers::MSG_ID, headers::msg_id(&session, seq).as_str());
        map.insert(headers::EVENT_TYPE, &*event.name);
        map.insert(headers::SHARD_ID, shard.as_str());
        map.insert(headers::SEQUENCE, seq.to_string().as_str());
        if let Some(guild) = guild_id(&event.name, event.data.as_bytes()) {
            map.insert(headers::GUILD_ID, guild);
        }
        map.insert(headers::RECEIVED_AT, unix_nanos().to_string().as_str());
        let ack = js
            .publish_with_headers(subject.clone(), map, payload.clone())
            .await?;
        let _ = tx.send(ack);
    }
    drop(tx);
    acks.await??;
    let stored = start.elapsed();
    let (c1, o1, n1) = (consumer.usage(), own_usage(), nats_usage());
    anyhow::ensure!(
        env.stored().await? >= base + events as u64,
        "B0 lost events"
    );
    wait_for("the consumers to drain", RUN_LIMIT, || async {
        env.drained().await.unwrap_or(false)
    })
    .await?;
    let drained = start.elapsed();
    consumer.finish::<serde_json::Value>().await?;
    let (syscalls, switches) = calls_per_event([(o0, o1), (c0, c1), (n0, n1)], events);
    Ok(Run {
        system: "B0",
        events,
        events_per_sec: events as f64 / stored.as_secs_f64(),
        ingress_cpu_us: per_event(o0, o1, events),
        consumer_cpu_us: per_event(c0, c1, events),
        sim_cpu_us: 0.0,
        nats_cpu_us: per_event(n0, n1, events),
        drained_secs: drained.as_secs_f64(),
        syscalls,
        switches,
    })
}

/// Medians, minimum and maximum per system, and the ratios of the medians.
pub fn summarize(runs: &[Run], compression: &str) -> String {
    let spread = |system: &str, f: fn(&Run) -> f64| {
        let values: Vec<f64> = runs.iter().filter(|r| r.system == system).map(f).collect();
        Spread::of(&values)
    };
    let mut out = format!("### Throughput, transport compression: {compression}\n\n");
    out.push_str("| system | events/s median (min, max) | ingress CPU µs/event | consumer CPU µs/event | simulator CPU µs/event | nats-server CPU µs/event | drained s |\n|---|---|---|---|---|---|---|\n");
    for system in ["B0", "B", "R"] {
        out.push_str(&format!(
            "| {system} | {} | {} | {} | {} | {} | {} |\n",
            spread(system, |r| r.events_per_sec),
            spread(system, |r| r.ingress_cpu_us),
            spread(system, |r| r.consumer_cpu_us),
            spread(system, |r| r.sim_cpu_us),
            spread(system, |r| r.nats_cpu_us),
            spread(system, |r| r.drained_secs),
        ));
    }
    out.push_str("\n| system | read/write syscalls per event: ingress, consumer, nats-server | context switches per event: ingress, consumer, nats-server |\n|---|---|---|\n");
    for system in ["B0", "B", "R"] {
        let median = |f: fn(&Run) -> f64| spread(system, f).median;
        out.push_str(&format!(
            "| {system} | {:.2}, {:.2}, {:.2} | {:.2}, {:.2}, {:.2} |\n",
            median(|r| r.syscalls[0]),
            median(|r| r.syscalls[1]),
            median(|r| r.syscalls[2]),
            median(|r| r.switches[0]),
            median(|r| r.switches[1]),
            median(|r| r.switches[2]),
        ));
    }
    let b0 = spread("B0", |r| r.events_per_sec).median;
    let b = spread("B", |r| r.events_per_sec).median;
    let r = spread("R", |r| r.events_per_sec).median;
    let ratios: Vec<f64> = runs
        .chunks(3)
        .filter_map(|c| {
            let b = c.iter().find(|r| r.system == "B")?.events_per_sec;
            let r = c.iter().find(|r| r.system == "R")?.events_per_sec;
            Some(r / b)
        })
        .collect();
    out.push_str(&format!(
        "\nR/B = {:.3} (medians; per-pair {}), R/B0 = {:.3} (goal R/B >= 0.9)\n",
        r / b,
        Spread::of(&ratios).fmt_ratio(),
        r / b0
    ));
    out
}
