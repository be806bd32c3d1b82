//! Command line: the benchmark itself, the child roles, and fixture recording.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::baseline::{self, ClientArgs};
use crate::roles::{self, ConsumerArgs, GatewayArgs};

/// Shardline's gateway and workers side by side with a raw WebSocket + async-nats
/// baseline, on one nats-server and one Discord simulator.
#[derive(Debug, Parser)]
#[command(name = "shardline-bench", version, about)]
pub struct Cli {
    /// What to do (default: run the benchmark).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Benchmark settings.
    #[command(flatten)]
    pub bench: BenchArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Records `bench/fixtures/realistic-mix.jsonl.zst` again.
    RecordFixture {
        /// Where to write it.
        #[arg(default_value = crate::fixture::FIXTURE_PATH)]
        path: PathBuf,
    },
    /// A child process's role (started by the benchmark itself).
    #[command(hide = true)]
    Role(RoleArgs),
}

/// A scenario of the benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// B0, B and R throughput, alternated.
    Throughput,
    /// Open-loop latency at fixed rates.
    Latency,
    /// A GUILD_MEMBER_UPDATE storm at 10x the steady rate.
    Storm,
    /// Interaction deadline: read -> deferred response at the simulator.
    Interaction,
    /// HTTP interactions: request -> first response, and PING throughput.
    Http,
    /// The REST proxy: added latency and throughput.
    Rest,
    /// CPU per event at Discord-like rates (many shards, each at a modest rate)
    /// against the same processes flat out.
    Cost,
}

/// Benchmark settings; `--quick` shrinks every count for CI.
#[derive(Clone, Debug, Args)]
pub struct BenchArgs {
    /// Small counts, one run each: proves the harness works, measures nothing.
    #[arg(long)]
    pub quick: bool,
    /// Throughput runs of each system.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Events per throughput run.
    #[arg(long, default_value_t = 40_000)]
    pub events: usize,
    /// Shards each system runs.
    #[arg(long, default_value_t = 4)]
    pub shards: u32,
    /// Cap on unacknowledged publishes (gateway default), for B and R alike.
    #[arg(long, default_value_t = 4096)]
    pub max_inflight: usize,
    /// Open-loop rates for the latency scenario, events/s.
    #[arg(long, value_delimiter = ',', default_value = "200,2000,20000")]
    pub rates: Vec<u32>,
    /// Seconds per latency rate.
    #[arg(long, default_value_t = 10.0)]
    pub latency_seconds: f64,
    /// Steady rate before the storm (the storm is ten times it), events/s.
    #[arg(long, default_value_t = 2_000)]
    pub steady_rate: u32,
    /// Storm length, seconds.
    #[arg(long, default_value_t = 10.0)]
    pub storm_seconds: f64,
    /// Rate of the interaction deadline scenario, events/s.
    #[arg(long, default_value_t = 2_000)]
    pub interaction_rate: u32,
    /// Seconds of the interaction deadline scenario.
    #[arg(long, default_value_t = 10.0)]
    pub interaction_seconds: f64,
    /// Open-loop rates of HTTP interactions, interactions/s.
    #[arg(long, value_delimiter = ',', default_value = "200,2000")]
    pub http_rates: Vec<u32>,
    /// Seconds per HTTP interactions rate.
    #[arg(long, default_value_t = 5.0)]
    pub http_seconds: f64,
    /// Seconds of PING load on the interactions service.
    #[arg(long, default_value_t = 5.0)]
    pub ping_seconds: f64,
    /// Sequential requests per path (direct, through the REST proxy) for latency.
    #[arg(long, default_value_t = 5_000)]
    pub rest_requests: usize,
    /// Requests per path for the REST proxy's throughput.
    #[arg(long, default_value_t = 50_000)]
    pub rest_throughput_requests: usize,
    /// Requests in flight for the REST proxy's throughput.
    #[arg(long, default_value_t = 128)]
    pub rest_concurrency: usize,
    /// Run on the 3-node loopback cluster with R3 streams instead of one server
    /// (B and R alike).
    #[arg(long)]
    pub cluster: bool,
    /// Shards of the cost scenario (one gateway process).
    #[arg(long, default_value_t = 64)]
    pub cost_shards: u32,
    /// Dispatches per second per shard in the cost scenario.
    #[arg(long, default_value_t = 150)]
    pub cost_rate_per_shard: u32,
    /// Seconds of the cost scenario's paced phase.
    #[arg(long, default_value_t = 20.0)]
    pub cost_seconds: f64,
    /// Scenarios to run (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<Scenario>,
    /// Also write every measurement as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

impl BenchArgs {
    /// The settings with `--quick` applied.
    pub fn effective(&self) -> Self {
        let mut a = self.clone();
        if a.quick {
            a.runs = 1;
            a.events = 1_000;
            a.shards = 2;
            a.rates = vec![200];
            a.latency_seconds = 1.0;
            a.steady_rate = 200;
            a.storm_seconds = 1.0;
            a.interaction_rate = 500;
            a.interaction_seconds = 1.0;
            a.http_rates = vec![200];
            a.http_seconds = 1.0;
            a.ping_seconds = 1.0;
            a.rest_requests = 200;
            a.rest_throughput_requests = 1_000;
            a.rest_concurrency = 16;
            a.cost_shards = 4;
            a.cost_rate_per_shard = 50;
            a.cost_seconds = 1.0;
        }
        if a.only.is_empty() {
            a.only = Scenario::value_variants().to_vec();
        }
        a
    }
}

/// A child role and its settings.
#[derive(Debug, Args)]
pub struct RoleArgs {
    /// Which role.
    #[arg(value_enum)]
    pub role: RoleKind,
    /// NATS URL.
    #[arg(long)]
    pub nats: String,
    /// Simulator gateway URL (ingress roles).
    #[arg(long, default_value = "")]
    pub url: String,
    /// Shards (ingress roles).
    #[arg(long, default_value_t = 1)]
    pub shards: u32,
    /// In-flight publish cap (ingress roles).
    #[arg(long, default_value_t = 4096)]
    pub max_inflight: usize,
    /// Stream replicas (gateway role).
    #[arg(long, default_value_t = 1)]
    pub replicas: usize,
    /// Open-loop interval in ns for latency correction (consumer roles).
    #[arg(long, default_value_t = 0)]
    pub interval_ns: u64,
    /// Simulator REST base to defer interactions through (worker role).
    #[arg(long)]
    pub defer_via: Option<String>,
    /// The application's public key, hex (interactions role; `--url` is its address).
    #[arg(long, default_value = "")]
    pub public_key: String,
    /// Where to listen (REST proxy role).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
}

/// The child roles.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum RoleKind {
    /// Shardline's gateway.
    Gateway,
    /// Shardline's workers with no-op handlers.
    Worker,
    /// Baseline WebSocket clients.
    Baseline,
    /// Baseline no-op drain.
    Drain,
    /// Shardline's HTTP interactions service.
    Interactions,
    /// The Discord REST proxy (upstream in `--url`).
    RestProxy,
}

/// The simulator's bot token.
const TOKEN: &str = "sim-token";

/// Runs a child role to completion.
///
/// # Errors
///
/// Whatever the role fails with.
pub async fn run_role(args: RoleArgs) -> anyhow::Result<()> {
    let consumer = ConsumerArgs {
        nats_url: args.nats.clone(),
        interval: Duration::from_nanos(args.interval_ns),
        defer_via: args.defer_via.clone(),
    };
    match args.role {
        RoleKind::Gateway => {
            roles::gateway(GatewayArgs {
                token: TOKEN.to_owned(),
                gateway_url: args.url,
                shard_total: args.shards,
                nats_url: args.nats,
                max_inflight: args.max_inflight,
                replicas: args.replicas,
            })
            .await
        }
        RoleKind::Baseline => {
            baseline::client(ClientArgs {
                gateway_url: args.url,
                nats_url: args.nats,
                token: TOKEN.to_owned(),
                shard_total: args.shards,
                max_inflight: args.max_inflight,
                zstd: crate::ZSTD,
            })
            .await
        }
        RoleKind::Worker => roles::worker(consumer).await,
        RoleKind::Drain => roles::drain(consumer).await,
        RoleKind::Interactions => {
            crate::http::service(&args.nats, &args.url, &args.public_key).await
        }
        RoleKind::RestProxy => crate::rest::role(args.nats, args.url, args.listen).await,
    }
}
