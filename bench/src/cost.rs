//! Cost at Discord-like rates: one gateway process with many shards, each at a modest
//! rate (64 x 150 dispatches/s by default), against the same processes flat out in the
//! same environment. At low rates per connection, per-message wake-ups and syscalls
//! (ours and nats-server's) dominate, so CPU per event rises; this scenario measures by
//! how much, for the ingress, the consumers and nats-server, B and R alike.

use serde::Serialize;

use crate::env::{Env, System};
use crate::fixture::Event;
use crate::stats::Spread;
use crate::throughput::{Run, one_at};

/// One measured run of the cost scenario.
#[derive(Clone, Debug, Serialize)]
pub struct CostRun {
    /// "paced" (the Discord-like rate) or "flat-out".
    pub phase: &'static str,
    /// The run's figures (CPU per event of each process).
    pub run: Run,
}

/// `runs` rounds, each B and R (order alternating), each paced at `rate` for
/// `seconds` and then flat out with as many events.
///
/// # Errors
///
/// If a process fails.
pub async fn measure(
    env: &Env,
    mix: &[Event],
    rate: u32,
    seconds: f64,
    runs: usize,
) -> anyhow::Result<Vec<CostRun>> {
    let events = (f64::from(rate) * seconds) as usize;
    let mut out = Vec::new();
    for i in 0..runs {
        let order = if i % 2 == 0 {
            [System::Baseline, System::Router]
        } else {
            [System::Router, System::Baseline]
        };
        for system in order {
            for (phase, rate) in [("paced", Some(rate)), ("flat-out", None)] {
                let run = one_at(env, system, mix, events, rate).await?;
                eprintln!(
                    "  cost run {}/{runs} {} {phase}: {:.0} events/s, ingress {:.1} µs/event, nats-server {:.1}",
                    i + 1,
                    run.system,
                    run.events_per_sec,
                    run.ingress_cpu_us,
                    run.nats_cpu_us
                );
                out.push(CostRun { phase, run });
            }
        }
    }
    Ok(out)
}

/// Medians per system and phase, and paced / flat-out per process.
pub fn summarize(runs: &[CostRun], shards: u32, rate: u32) -> String {
    let spread = |system: &str, phase: &str, f: fn(&Run) -> f64| {
        let values: Vec<f64> = runs
            .iter()
            .filter(|r| r.run.system == system && r.phase == phase)
            .map(|r| f(&r.run))
            .collect();
        Spread::of(&values)
    };
    let mut out = format!(
        "\n### Cost at Discord-like rates: {shards} shards, {rate} dispatches/s in all\n\n\
         | system | phase | events/s | ingress CPU µs/event | consumer CPU µs/event | nats-server CPU µs/event |\n\
         |---|---|---|---|---|---|\n"
    );
    for system in ["B", "R"] {
        for phase in ["paced", "flat-out"] {
            out.push_str(&format!(
                "| {system} | {phase} | {} | {} | {} | {} |\n",
                spread(system, phase, |r| r.events_per_sec),
                spread(system, phase, |r| r.ingress_cpu_us),
                spread(system, phase, |r| r.consumer_cpu_us),
                spread(system, phase, |r| r.nats_cpu_us),
            ));
        }
    }
    out.push('\n');
    for system in ["B", "R"] {
        let ratio = |f: fn(&Run) -> f64| {
            spread(system, "paced", f).median / spread(system, "flat-out", f).median
        };
        out.push_str(&format!(
            "{system} paced / flat-out CPU per event: ingress {:.2}, consumer {:.2}, nats-server {:.2}\n",
            ratio(|r| r.ingress_cpu_us),
            ratio(|r| r.consumer_cpu_us),
            ratio(|r| r.nats_cpu_us),
        ));
    }
    out.push_str("(goal: R's gateway paced <= 2x its flat-out figure)\n");
    out
}
