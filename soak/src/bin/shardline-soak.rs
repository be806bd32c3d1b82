//! `shardline-soak`: the chaos soak (see the crate's README and docs/testing.md).

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use shardline_soak::{Settings, render, run};

/// Runs the fleet under traffic while a seeded schedule kills and restarts its
/// parts, then counts what was lost and duplicated. Exit 0: nothing lost or
/// duplicated without an explanation; 1: otherwise.
#[derive(Debug, Parser)]
#[command(name = "shardline-soak", version, about)]
struct Args {
    /// How long traffic plays: `90s`, `10m`, or seconds.
    #[arg(long, env = "SOAK_DURATION", default_value = "10m", value_parser = parse_duration)]
    duration: Duration,
    /// Events per second of the realistic mix, in all.
    #[arg(long, env = "SOAK_RATE", default_value_t = 1000)]
    rate: u32,
    /// Seed of the fault schedule and the payloads (random when not given; printed).
    #[arg(long, env = "SOAK_SEED")]
    seed: Option<u64>,
    /// Where the fleet's binaries are.
    #[arg(long, env = "SOAK_BIN_DIR", default_value = "target/release")]
    bin_dir: PathBuf,
    /// Where each process logs.
    #[arg(long, env = "SOAK_LOG_DIR", default_value = ".soak/logs")]
    log_dir: PathBuf,
    /// Shards in all (split across two gateway processes).
    #[arg(long, env = "SOAK_SHARDS", default_value_t = 4)]
    shards: u32,
    /// Longest wait after traffic for everything stored to be handled.
    #[arg(long, env = "SOAK_DRAIN_LIMIT", default_value = "120s", value_parser = parse_duration)]
    drain_limit: Duration,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (number, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (90s, 10m)"))?;
    match unit {
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("{s:?}: the unit is s or m")),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let args = Args::parse();
    anyhow::ensure!(args.rate > 0, "--rate must be above 0");
    anyhow::ensure!(
        args.shards >= 2,
        "--shards must be at least 2 (two gateways)"
    );
    let settings = Settings {
        duration: args.duration,
        rate: args.rate,
        seed: args.seed.unwrap_or_else(rand::random),
        bin_dir: args.bin_dir,
        log_dir: args.log_dir,
        shard_total: args.shards,
        drain_limit: args.drain_limit,
    };
    // Ctrl-c drops the soak: every child is killed on drop (processes, NATS nodes,
    // PostgreSQL) and the temporary stores deleted.
    let outcome = tokio::select! {
        outcome = run(settings) => outcome?,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted; every child stopped"),
    };
    print!("{}", render(&outcome));
    if !outcome.passed() {
        std::process::exit(1);
    }
    Ok(())
}
