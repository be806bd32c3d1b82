//! Runs the chosen scenarios and prints the report (Markdown on stdout, progress
//! on stderr).

use std::fmt::Write as _;

use serde_json::json;

use crate::cli::{BenchArgs, Scenario};
use crate::env::Env;
use crate::http::{self, HttpRun, PingRun};
use crate::load::{self, LatencyRun, StormRun};
use crate::stats::Spread;
use crate::{compression, cost, fixture, throughput};

/// Runs the benchmark described by `args` (already [`BenchArgs::effective`]).
///
/// # Errors
///
/// If any scenario fails.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let mix = fixture::load();
    let mut out = header(&args, &mix);
    eprintln!("{out}");
    let env = Env::start(args.shards, args.max_inflight, args.cluster).await?;
    let mut json = json!({"compression": compression(), "quick": args.quick});

    if args.only.contains(&Scenario::Throughput) {
        eprintln!("throughput: {} runs of {} events", args.runs, args.events);
        let _ = write!(
            out,
            "\n(throughput: load average at start {})\n\n",
            load_average()
        );
        let runs = throughput::measure(&env, &mix, args.events, args.runs).await?;
        out.push_str(&throughput::summarize(&runs, compression()));
        json["throughput"] = serde_json::to_value(&runs)?;
    }
    if args.only.contains(&Scenario::Latency) {
        eprintln!("latency at {:?} events/s", args.rates);
        let _ = write!(
            out,
            "\n(latency: load average at start {})\n\n",
            load_average()
        );
        let runs = load::latency(&env, &mix, &args.rates, args.latency_seconds, args.runs).await?;
        out.push_str(&latency_table(&runs));
        json["latency"] = serde_json::to_value(&runs)?;
    }
    if args.only.contains(&Scenario::Storm) {
        eprintln!("storm at {} events/s", args.steady_rate * 10);
        let runs = load::storm(&env, &mix, args.steady_rate, 2.0, args.storm_seconds).await?;
        out.push_str(&storm_table(&runs, args.storm_seconds));
        json["storm"] = serde_json::to_value(&runs)?;
    }
    if args.only.contains(&Scenario::Interaction) {
        eprintln!("interaction deadline at {} events/s", args.interaction_rate);
        let run =
            load::interaction(&env, &mix, args.interaction_rate, args.interaction_seconds).await?;
        let _ = writeln!(
            out,
            "\n### Interaction deadline at {} events/s ({} interactions, {} deferred)\n\n\
             gateway read -> deferred response at the simulator: p50 {:.2} ms, p99 {:.2} ms, \
             p99.9 {:.2} ms, max {:.2} ms (goal p99 < 50 ms)",
            run.rate,
            run.interactions,
            run.deferred,
            run.latency.p50_us / 1e3,
            run.latency.p99_us / 1e3,
            run.latency.p999_us / 1e3,
            run.latency.max_us / 1e3,
        );
        json["interaction"] = serde_json::to_value(&run)?;
    }
    if args.only.contains(&Scenario::Http) {
        eprintln!("HTTP interactions at {:?}/s", args.http_rates);
        let (runs, ping) =
            http::measure(&env, &args.http_rates, args.http_seconds, args.ping_seconds).await?;
        out.push_str(&http_table(&runs, &ping));
        json["http"] = json!({"runs": runs, "ping": ping});
    }
    if args.only.contains(&Scenario::Rest) {
        eprintln!(
            "REST proxy: {} sequential requests, {} at {} in flight",
            args.rest_requests, args.rest_throughput_requests, args.rest_concurrency
        );
        let run = crate::rest::measure(
            &env,
            args.rest_requests,
            args.rest_throughput_requests,
            args.rest_concurrency,
        )
        .await?;
        out.push_str(&crate::rest::summarize(&run));
        json["rest"] = serde_json::to_value(&run)?;
    }
    if args.only.contains(&Scenario::Cost) {
        let rate = args.cost_shards * args.cost_rate_per_shard;
        eprintln!(
            "cost: {} shards at {rate} dispatches/s in all",
            args.cost_shards
        );
        let _ = write!(
            out,
            "\n(cost scenario: load average at start {})\n\n",
            load_average()
        );
        let cost_env = Env::start(args.cost_shards, args.max_inflight, args.cluster).await?;
        let runs = cost::measure(&cost_env, &mix, rate, args.cost_seconds, args.runs).await?;
        out.push_str(&cost::summarize(&runs, args.cost_shards, rate));
        json["cost"] = serde_json::to_value(&runs)?;
    }
    println!("{out}");
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&json)?)?;
    }
    drop(env);
    Ok(())
}

/// The 1, 5 and 15 minute load averages now.
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn header(args: &BenchArgs, mix: &[fixture::Event]) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!(
        "## shardline-bench{}\n\n\
         commit {commit}, transport compression {}, {cores} cores ({cpu}), load average at start {}, \
         broker {}, shards {}, in-flight cap {}, mix: {}\n\n",
        if args.quick {
            " --quick (numbers mean nothing)"
        } else {
            ""
        },
        compression(),
        load_average(),
        if args.cluster {
            "3-node loopback cluster, R3 streams"
        } else {
            "one nats-server, R1 streams"
        },
        args.shards,
        args.max_inflight,
        fixture::describe(mix),
    )
}

fn latency_table(runs: &[LatencyRun]) -> String {
    let mut out = String::from(
        "\n### End-to-end latency, open loop, corrected for coordinated omission\n\n\
         R: gateway frame read -> worker handler start; B: baseline read -> drain has the message. \
         The stages (uncorrected) split it at the stream's store time (server clock).\n\n\
         | rate/s | run | system | samples | p50 ms | p99 ms | p99.9 ms | max ms | read -> stored p99 ms | stored -> handler p99 ms | drained s after |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in runs {
        let l = &r.latency;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.2} |",
            r.rate,
            r.run + 1,
            r.system,
            l.count,
            l.p50_us / 1e3,
            l.p99_us / 1e3,
            l.p999_us / 1e3,
            l.max_us / 1e3,
            r.to_stored.p99_us / 1e3,
            r.from_stored.p99_us / 1e3,
            r.drain_secs,
        );
    }
    let mut rates: Vec<u32> = runs.iter().map(|r| r.rate).collect();
    rates.dedup();
    for rate in rates {
        let of = |system: &str, f: &dyn Fn(&LatencyRun) -> f64| {
            let v: Vec<f64> = runs
                .iter()
                .filter(|r| r.rate == rate && r.system == system)
                .map(f)
                .collect();
            Spread::of(&v)
        };
        let (b, r) = (
            of("B", &|x| x.latency.p99_us / 1e3),
            of("R", &|x| x.latency.p99_us / 1e3),
        );
        let (bd, rd) = (of("B", &|x| x.drain_secs), of("R", &|x| x.drain_secs));
        let ratio = if b.median > 0.0 {
            r.median / b.median
        } else {
            0.0
        };
        let _ = writeln!(
            out,
            "\nat {rate}/s, medians: B p99 {:.3} ms, R p99 {:.3} ms, R - B {:+.3} ms, R/B {ratio:.2}; \
             drained after the last dispatch: B {:.2} s, R {:.2} s",
            b.median,
            r.median,
            r.median - b.median,
            bd.median,
            rd.median,
        );
    }
    out
}

fn storm_table(runs: &[StormRun], seconds: f64) -> String {
    let mut out = format!(
        "\n### Storm: {seconds} s of GUILD_MEMBER_UPDATE at 10x the steady rate\n\n\
         | system | events | offered/s | achieved/s | drain after storm s | ingress peak RSS MiB | consumer peak RSS MiB | p99 ms |\n\
         |---|---|---|---|---|---|---|---|\n"
    );
    for r in runs {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} | {:.2} | {:.1} | {:.1} | {:.1} |",
            r.system,
            r.events,
            r.offered_rate,
            r.achieved_rate,
            r.drain_secs,
            r.ingress_peak_mib,
            r.consumer_peak_mib,
            r.latency.p99_us / 1e3
        );
    }
    out
}

fn http_table(runs: &[HttpRun], ping: &PingRun) -> String {
    let mut out = String::from(
        "\n### HTTP interactions: request -> first response, `/ping` answered at once\n\n\
         The simulator signs and sends; timed from sending the request to reading the whole \
         answer (service and real command worker in their own processes; goal p99 < 25 ms).\n\n\
         | rate/s | interactions | inline | deferred | failed | p50 ms | p99 ms | max ms |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for r in runs {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.2} |",
            r.rate,
            r.interactions,
            r.inline,
            r.deferred,
            r.failed,
            r.latency.p50_us / 1e3,
            r.latency.p99_us / 1e3,
            r.latency.max_us / 1e3
        );
    }
    let per_cpu = if ping.service_cpu_seconds > 0.0 {
        ping.pings as f64 / ping.service_cpu_seconds
    } else {
        0.0
    };
    let _ = writeln!(
        out,
        "\nPING throughput of one service process: {} in {:.0} s over {} connections = {:.0}/s \
         (goal >= 5,000/s); the service used {:.2} CPU-seconds, {:.0} PINGs per CPU-second",
        ping.pings,
        ping.seconds,
        ping.connections,
        ping.per_second,
        ping.service_cpu_seconds,
        per_cpu
    );
    out
}
