//! Open-loop scenarios: latency at fixed rates, a storm, and the interaction deadline.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use shardline_proto::{headers, subject};

use crate::env::{Env, System, wait_for};
use crate::fixture::Event;
use crate::stats::{Latency, Recorder};

const LIMIT: Duration = Duration::from_secs(600);

/// Latency of one system at one rate, in one run.
#[derive(Clone, Debug, Serialize)]
pub struct LatencyRun {
    /// "B" or "R".
    pub system: &'static str,
    /// Offered events/s.
    pub rate: u32,
    /// Which of the alternating runs (0-based).
    pub run: usize,
    /// Read -> handler start (R) or read -> message in hand (B).
    pub latency: Latency,
    /// Read -> stored by the stream (server clock), uncorrected.
    pub to_stored: Latency,
    /// Stored -> handler start (R) or message in hand (B), uncorrected.
    pub from_stored: Latency,
    /// Seconds from the last dispatch played until every event was consumed.
    pub drain_secs: f64,
}

fn interval(rate: u32) -> Duration {
    Duration::from_secs_f64(1.0 / f64::from(rate.max(1)))
}

/// Plays `count` events at `rate` on a fresh `system` and waits until all are consumed;
/// also returns the seconds from the last dispatch until then.
async fn paced(
    env: &Env,
    system: System,
    events: &[Event],
    count: usize,
    rate: u32,
) -> anyhow::Result<(crate::env::Finished, f64)> {
    let running = env.launch(system, interval(rate), false).await?;
    let base = env.stored().await?;
    env.play(events, count, Some(rate), |_, _| None).await;
    let played = Instant::now();
    wait_for("everything consumed", LIMIT, || async {
        env.stored().await.unwrap_or(0) >= base + count as u64
            && env.drained().await.unwrap_or(false)
    })
    .await?;
    let drain = played.elapsed().as_secs_f64();
    Ok((running.finish().await?, drain))
}

/// Open-loop latency at each of `rates` for `seconds`, `runs` times, B and R
/// alternating and the order flipping every run.
///
/// # Errors
///
/// If a process fails.
pub async fn latency(
    env: &Env,
    mix: &[Event],
    rates: &[u32],
    seconds: f64,
    runs: usize,
) -> anyhow::Result<Vec<LatencyRun>> {
    let mut out = Vec::new();
    for &rate in rates {
        let count = (f64::from(rate) * seconds) as usize;
        for run in 0..runs.max(1) {
            let mut order = [System::Baseline, System::Router];
            if run % 2 == 1 {
                order.reverse();
            }
            for system in order {
                let (finished, drain_secs) = paced(env, system, mix, count, rate).await?;
                let r = &finished.report;
                eprintln!(
                    "  latency {} at {rate}/s (run {}, load {}): p99 {:.0} µs, to stored p99 {:.0} µs, \
                     stored -> handler p99 {:.0} µs, drained {drain_secs:.2} s after",
                    system.label(),
                    run + 1,
                    crate::report::load_average(),
                    r.latency.p99_us,
                    r.to_stored.p99_us,
                    r.from_stored.p99_us,
                );
                out.push(LatencyRun {
                    system: system.label(),
                    rate,
                    run,
                    latency: r.latency,
                    to_stored: r.to_stored,
                    from_stored: r.from_stored,
                    drain_secs,
                });
            }
        }
    }
    Ok(out)
}

/// A storm and its aftermath for one system.
#[derive(Clone, Debug, Serialize)]
pub struct StormRun {
    /// "B" or "R".
    pub system: &'static str,
    /// Storm events played.
    pub events: usize,
    /// Rate asked for, events/s.
    pub offered_rate: u32,
    /// Rate the simulator achieved while the storm lasted (backpressure slows it).
    pub achieved_rate: f64,
    /// Seconds from the storm's last dispatch until every event was consumed.
    pub drain_secs: f64,
    /// Peak RSS of the ingress process (gateway / baseline client), MiB.
    pub ingress_peak_mib: f64,
    /// Peak RSS of the consumer process (workers / drain), MiB.
    pub consumer_peak_mib: f64,
    /// Latency over the whole scenario.
    pub latency: Latency,
}

/// A steady phase of the mix at `steady` events/s, then `seconds` of
/// GUILD_MEMBER_UPDATE at ten times that, for B then R.
///
/// # Errors
///
/// If a process fails.
pub async fn storm(
    env: &Env,
    mix: &[Event],
    steady: u32,
    steady_seconds: f64,
    seconds: f64,
) -> anyhow::Result<Vec<StormRun>> {
    let flood = crate::fixture::only(mix, "GUILD_MEMBER_UPDATE");
    let rate = steady * 10;
    let steady_count = (f64::from(steady) * steady_seconds) as usize;
    let count = (f64::from(rate) * seconds) as usize;
    let mut out = Vec::new();
    for system in [System::Baseline, System::Router] {
        let running = env.launch(system, interval(rate), false).await?;
        let base = env.stored().await?;
        env.play(mix, steady_count, Some(steady), |_, _| None).await;
        let start = Instant::now();
        env.play(&flood, count, Some(rate), |_, _| None).await;
        let played = start.elapsed();
        let want = base + (steady_count + count) as u64;
        wait_for("the storm consumed", LIMIT, || async {
            env.stored().await.unwrap_or(0) >= want && env.drained().await.unwrap_or(false)
        })
        .await?;
        let drain = start.elapsed() - played;
        let finished = running.finish().await?;
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        let run = StormRun {
            system: system.label(),
            events: count,
            offered_rate: rate,
            achieved_rate: count as f64 / played.as_secs_f64(),
            drain_secs: drain.as_secs_f64(),
            ingress_peak_mib: mib(finished.ingress.peak_rss),
            consumer_peak_mib: mib(finished.consumer.peak_rss),
            latency: finished.report.latency,
        };
        eprintln!(
            "  storm {}: {:.0}/s achieved, drained {:.2} s after",
            run.system, run.achieved_rate, run.drain_secs
        );
        out.push(run);
    }
    Ok(out)
}

/// Gateway read -> deferred response received by the simulator.
#[derive(Clone, Debug, Serialize)]
pub struct InteractionRun {
    /// Offered events/s (the mix: about 10% interactions).
    pub rate: u32,
    /// Interactions played.
    pub interactions: usize,
    /// Deferred responses the simulator received.
    pub deferred: usize,
    /// The deadline latency.
    pub latency: Latency,
}

#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

/// Plays the mix at `rate` for `seconds` through R with a command worker that defers
/// every interaction via twilight-http to the simulator. Each interaction gets a
/// fresh id so callbacks match their dispatch.
///
/// # Errors
///
/// If a process fails or callbacks go missing.
pub async fn interaction(
    env: &Env,
    mix: &[Event],
    rate: u32,
    seconds: f64,
) -> anyhow::Result<InteractionRun> {
    let count = (f64::from(rate) * seconds) as usize;
    let ids: Vec<Option<String>> = mix
        .iter()
        .map(|e| {
            (&*e.name == "INTERACTION_CREATE")
                .then(|| serde_json::from_str::<IdOnly>(&e.data).ok().map(|i| i.id))
                .flatten()
        })
        .collect();
    let interactions = (0..count).filter(|i| ids[i % mix.len()].is_some()).count();
    let per_interaction = interval(rate) * (count / interactions.max(1)) as u32;

    // Every message on commands.interaction, as published: id -> gateway read time.
    let read_at: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let mut sub = env
        .nats
        .client()
        .await
        .subscribe(subject::COMMANDS_INTERACTION)
        .await?;
    let collector = {
        let read_at = read_at.clone();
        tokio::spawn(async move {
            while let Some(m) = sub.next().await {
                let at = m
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(headers::RECEIVED_AT))
                    .and_then(|v| v.as_str().parse::<u64>().ok());
                if let (Ok(id), Some(at)) = (serde_json::from_slice::<IdOnly>(&m.payload), at) {
                    read_at.lock().expect("lock").insert(id.id, at);
                }
            }
        })
    };
    let running = env.launch(System::Router, per_interaction, true).await?;
    let before = env.sim.interaction_callbacks().len();
    env.play(mix, count, Some(rate), |i, e| {
        let original = ids[i % mix.len()].as_ref()?;
        let fresh = (1_400_000_000_000_000_000u64 + i as u64).to_string();
        let from = format!(r#""id":"{original}""#);
        Some(
            e.data
                .replacen(&from, &format!(r#""id":"{fresh}""#), 1)
                .into(),
        )
    })
    .await;
    wait_for("every interaction deferred", LIMIT, || {
        std::future::ready(env.sim.interaction_callbacks().len() >= before + interactions)
    })
    .await?;
    running.finish().await?;
    collector.abort();

    let recorder = Recorder::new(per_interaction);
    let callbacks = env.sim.interaction_callbacks();
    let read_at = read_at.lock().expect("lock");
    let mut matched = 0;
    for cb in &callbacks[before..] {
        let Some(&read) = read_at.get(&cb.interaction_id) else {
            continue;
        };
        let done = cb
            .received_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        recorder.record(done.saturating_sub(read));
        matched += 1;
    }
    anyhow::ensure!(
        matched == interactions,
        "{matched} of {interactions} matched"
    );
    Ok(InteractionRun {
        rate,
        interactions,
        deferred: callbacks.len() - before,
        latency: recorder.summary(matched as u64),
    })
}
