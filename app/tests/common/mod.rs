//! What the application's tests share: a stack of real parts (nats-server,
//! PostgreSQL, the Discord simulator with Discord's REST limits, the REST proxy and
//! the gateway in-process) and the application's worker binaries as processes, run
//! through their documented environment variables.

#![allow(dead_code)]

// The command-path fixtures are the worker runtime's own, not a copy.
#[path = "../../../worker/tests/common/commands.rs"]
pub mod commands;
pub mod scenario;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command};
use std::time::Duration;

use async_nats::jetstream;
use shardline_app::{DatabaseConfig, Db};
use shardline_discord_sim::{BucketSpec, RestLatency, RestLimits, SimConfig, Simulator};
use shardline_proto::topology::{
    COMMAND_WORKER, ConsumerSpec, DEAD_LETTER, ELIGIBILITY_WORKER, EVENT_WORKER, SYNC_WORKER,
};
use shardline_testkit::{NatsServer, PgServer, eventually, init_tracing};
use tokio_util::sync::CancellationToken;

/// Safety net against hangs; never a synchronisation.
pub const PATIENCE: Duration = Duration::from_secs(180);

/// The simulator's bot token.
pub const TOKEN: &str = "sim-token";

/// The global REST limit the simulator enforces and the proxy is told (Discord
/// raises it for big bots; the default 50 would only make the tests slower).
pub const GLOBAL_LIMIT: u32 = 200;

/// One of the application's worker binaries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bin {
    /// `shardline-event-worker`.
    Event,
    /// `shardline-eligibility-worker`.
    Eligibility,
    /// `shardline-sync-worker`.
    Sync,
    /// `shardline-command-worker`.
    Command,
}

impl Bin {
    /// The built binary.
    pub fn path(self) -> &'static str {
        match self {
            Self::Event => env!("CARGO_BIN_EXE_shardline-event-worker"),
            Self::Eligibility => env!("CARGO_BIN_EXE_shardline-eligibility-worker"),
            Self::Sync => env!("CARGO_BIN_EXE_shardline-sync-worker"),
            Self::Command => env!("CARGO_BIN_EXE_shardline-command-worker"),
        }
    }

    /// Its consumer.
    pub fn consumer(self) -> &'static ConsumerSpec {
        match self {
            Self::Event => &EVENT_WORKER,
            Self::Eligibility => &ELIGIBILITY_WORKER,
            Self::Sync => &SYNC_WORKER,
            Self::Command => &COMMAND_WORKER,
        }
    }
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
}

/// A worker binary running as a process, as a deployment runs it.
pub struct WorkerProc {
    pub bin: Bin,
    pub metrics: SocketAddr,
    env: Vec<(String, String)>,
    child: Option<Child>,
    /// Its output, across restarts: printed (the end of it) only if the test fails,
    /// so that a fault's thousands of expected warnings do not bury the failure.
    log: tempfile::NamedTempFile,
}

impl WorkerProc {
    /// Starts `bin` with the variables `env` (METRICS_ADDR and RUST_LOG are added).
    pub fn start(bin: Bin, env: &[(&str, String)]) -> Self {
        let mut worker = Self {
            bin,
            metrics: free_addr(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            child: None,
            log: tempfile::NamedTempFile::new().unwrap(),
        };
        worker.spawn();
        worker
    }

    fn spawn(&mut self) {
        let log = std::env::var("SHARDLINE_WORKER_LOG").unwrap_or_else(|_| "warn".to_owned());
        let child = Command::new(self.bin.path())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("METRICS_ADDR", self.metrics.to_string())
            .env("RUST_LOG", log)
            .stdout(self.append_log())
            .stderr(self.append_log())
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    fn append_log(&self) -> std::fs::File {
        std::fs::OpenOptions::new()
            .append(true)
            .open(self.log.path())
            .unwrap()
    }

    /// SIGKILL: the process dies holding whatever it was handling.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Starts it again with the same settings.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// SIGTERM, and its exit status must be 0.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().to_string();
            assert!(
                Command::new("kill")
                    .args(["-s", "TERM", &pid])
                    .status()
                    .unwrap()
                    .success()
            );
            let status = child.wait().unwrap();
            assert!(
                status.success(),
                "{:?} exits 0 on SIGTERM, not {status}",
                self.bin
            );
        }
    }

    /// Its `/metrics` text, if it answers.
    pub fn scrape(&self) -> Option<String> {
        let mut s = TcpStream::connect_timeout(&self.metrics, Duration::from_secs(2)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        text.split_once("\r\n\r\n").map(|(_, body)| body.to_owned())
    }

    /// The value of the series `name{labels}` (labels as Prometheus prints them,
    /// e.g. `consumer="sync-worker",status="retry"`), if exported.
    pub fn metric(&self, name: &str, labels: &str) -> Option<f64> {
        let text = self.scrape()?;
        let series = if labels.is_empty() {
            format!("{name} ")
        } else {
            format!("{name}{{{labels}}} ")
        };
        text.lines()
            .find_map(|l| l.strip_prefix(series.as_str()))
            .and_then(|v| v.trim().parse().ok())
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let text = std::fs::read_to_string(self.log.path()).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL)..];
            eprintln!(
                "--- {:?} worker: last {} of {} log lines ---\n{}",
                self.bin,
                tail.len(),
                lines.len(),
                tail.join("\n")
            );
        }
    }
}

/// Lines of a worker's log a failed test prints.
const LOG_TAIL: usize = 40;

/// How a [`Stack`] is set up.
pub struct Options {
    /// Shards (the gateway runs all of them).
    pub shard_total: u32,
    /// Whether the gateway runs (tests that publish to the streams directly need none).
    pub gateway: bool,
    /// The member-role bucket per guild.
    pub member_roles: BucketSpec,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            shard_total: 2,
            gateway: true,
            member_roles: BucketSpec::per_ms(100, 1_000),
        }
    }
}

/// Everything the application runs on, started for one test.
pub struct Stack {
    // Dropped first: a failed test stops the workers before what they run on.
    pub workers: Vec<WorkerProc>,
    pub nats: NatsServer,
    pub pg: PgServer,
    pub sim: Simulator,
    pub proxy: shardline_rest::Proxy,
    pub js: jetstream::Context,
    pub db: Db,
    shutdown: CancellationToken,
    gateway: Option<tokio::task::JoinHandle<Result<(), shardline_gateway::Error>>>,
}

impl Stack {
    /// Starts nats-server, PostgreSQL (migrated), the simulator, the REST proxy
    /// holding the bot token, and the gateway if asked; no worker yet.
    pub async fn start(options: Options) -> Self {
        init_tracing();
        let nats = NatsServer::start();
        let pg = PgServer::start();
        let sim = Simulator::start(SimConfig {
            shard_total: options.shard_total,
            max_concurrency: options.shard_total,
            guilds_per_shard: 0,
            rest_latency: RestLatency::between_ms(5, 15),
            rest_limits: RestLimits {
                global_per_second: GLOBAL_LIMIT,
                member_roles: options.member_roles,
                ..RestLimits::default()
            },
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let mut config =
            shardline_rest::Config::new(&format!("http://{}", sim.http_base()), &nats.url());
        config.token = Some(shardline_jetstream::Secret::new(TOKEN));
        config.global_limit = GLOBAL_LIMIT;
        let proxy = shardline_rest::start(config, CancellationToken::new())
            .await
            .unwrap();
        eventually("the proxy holding the lease", PATIENCE, || async {
            proxy.is_holder().then_some(())
        })
        .await;
        let client = nats.client().await;
        let js = jetstream::new(client);
        let db = Db::connect(&DatabaseConfig::new(pg.url())).await.unwrap();
        let shutdown = CancellationToken::new();
        let gateway = options.gateway.then(|| {
            let mut config = shardline_gateway::Config::for_gateway(
                TOKEN,
                &sim.gateway_url(),
                options.shard_total,
                &nats.url(),
            );
            config.max_concurrency = Some(options.shard_total as u16);
            tokio::spawn(shardline_gateway::run(config, shutdown.clone()))
        });
        if gateway.is_some() {
            for shard in 0..options.shard_total {
                sim.wait_ready(shard).await;
            }
        }
        Self {
            workers: Vec::new(),
            nats,
            pg,
            sim,
            proxy,
            js,
            db,
            shutdown,
            gateway,
        }
    }

    /// Starts `bin` as a process with its documented settings.
    pub fn start_worker(&mut self, bin: Bin) -> &mut WorkerProc {
        self.start_worker_with(bin, &[])
    }

    /// Starts `bin` as a process with its documented settings and `extra` ones.
    pub fn start_worker_with(&mut self, bin: Bin, extra: &[(&str, &str)]) -> &mut WorkerProc {
        let mut env = vec![
            ("NATS_URL", self.nats.url()),
            ("DATABASE_URL", self.pg.url()),
            ("DATABASE_POOL_SIZE", "8".to_owned()),
        ];
        if matches!(bin, Bin::Sync | Bin::Command) {
            env.push(("DISCORD_API_URL", format!("http://{}", self.proxy.addr())));
        }
        env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        self.workers.push(WorkerProc::start(bin, &env));
        self.workers.last_mut().unwrap()
    }

    /// The running process of `bin`.
    pub fn worker(&mut self, bin: Bin) -> &mut WorkerProc {
        self.workers.iter_mut().find(|w| w.bin == bin).unwrap()
    }

    /// The consumer's state, once its worker declared it.
    pub async fn consumer(&self, spec: &ConsumerSpec) -> Option<jetstream::consumer::Info> {
        let stream = self.js.get_stream_no_info(spec.stream).await.ok()?;
        stream.consumer_info(spec.durable).await.ok()
    }

    /// Messages stored in `stream` so far (its last sequence; 0 if it does not exist).
    pub async fn published(&self, stream: &str) -> u64 {
        match self.js.get_stream(stream).await {
            Ok(mut s) => s.info().await.map_or(0, |i| i.state.last_sequence),
            Err(_) => 0,
        }
    }

    /// Dead letters stored, all consumers.
    pub async fn dead_letters(&self) -> u64 {
        match self.js.get_stream(DEAD_LETTER.name).await {
            Ok(mut s) => s.info().await.map_or(0, |i| i.state.messages),
            Err(_) => 0,
        }
    }

    /// Everything published so far: dispatches and the streams' last sequences.
    async fn fingerprint(&self) -> [u64; 5] {
        [
            self.sim.sent_count(),
            self.published("EVENTS").await,
            self.published("COMMANDS").await,
            self.published("ELIGIBILITY").await,
            self.published(DEAD_LETTER.name).await,
        ]
    }

    /// Whether nothing is left to do: the gateway published every dispatch the
    /// simulator sent, every running worker's consumer has nothing pending and
    /// nothing unacknowledged (a message waiting for its retry counts as
    /// unacknowledged), and nothing was published while that was being looked at.
    /// The pipeline is a cycle (a role change makes Discord dispatch a member
    /// update), so no order of looking is safe alone; a look during which nothing was
    /// published is: a message in flight either shows as unacknowledged, or ends,
    /// publishing what follows it.
    pub async fn idle(&self) -> bool {
        let before = self.fingerprint().await;
        if self.gateway.is_some() {
            let dispatched = self
                .sim
                .sent()
                .iter()
                .filter(|s| s.event != "READY" && s.event != "RESUMED")
                .count() as u64;
            let published = self.published("EVENTS").await + self.published("COMMANDS").await;
            if published < dispatched {
                return false;
            }
        }
        for worker in &self.workers {
            match self.consumer(worker.bin.consumer()).await {
                Some(info) if info.num_pending == 0 && info.num_ack_pending == 0 => {}
                _ => return false,
            }
        }
        self.fingerprint().await == before
    }

    /// Waits until [`idle`](Self::idle) holds.
    pub async fn until_idle(&self) {
        eventually("the pipeline idle", PATIENCE, || async {
            self.idle().await.then_some(())
        })
        .await;
    }

    /// Stops the workers (SIGTERM, exit 0), the gateway and the proxy.
    pub async fn stop(mut self) {
        for worker in &mut self.workers {
            worker.stop();
        }
        self.shutdown.cancel();
        if let Some(gateway) = self.gateway.take() {
            gateway.await.unwrap().unwrap();
        }
        self.proxy.stop().await.unwrap();
    }
}
