//! One benchmark environment: a nats-server (or the 3-node loopback cluster) with the
//! memory streams, the simulator, and the two systems under test started as child
//! processes on demand.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream;
use shardline_discord_sim::{Pacer, SimConfig, Simulator};
use shardline_jetstream::ReconcileOptions;
use shardline_proto::topology::{COMMAND_WORKER, COMMANDS, EVENT_WORKER, EVENTS, STREAMS};
use shardline_testkit::{NatsCluster, NatsServer};

use crate::child::{Role, Usage, usage_of};
use crate::fixture::Event;
use crate::roles::ConsumerReport;

/// Which program reads the simulator and which drains the streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum System {
    /// Baseline B: plain WebSocket clients + async-nats, and a no-op drain.
    Baseline,
    /// Router R: Shardline's gateway and workers with no-op handlers.
    Router,
}

impl System {
    /// "B" or "R".
    pub fn label(self) -> &'static str {
        match self {
            Self::Baseline => "B",
            Self::Router => "R",
        }
    }
}

/// The broker of a run.
pub enum Broker {
    /// One nats-server, R1 streams.
    Single(NatsServer),
    /// Three nodes on loopback (`bench/nats-cluster.conf`: the shipped configuration
    /// without its accounts, so the benchmark's roles need no credentials), R3
    /// streams.
    Cluster(NatsCluster),
}

impl Broker {
    /// What a client is given (every node's URL on the cluster).
    pub fn url(&self) -> String {
        match self {
            Self::Single(server) => server.url(),
            Self::Cluster(cluster) => cluster.url(),
        }
    }

    /// A connected client.
    ///
    /// # Panics
    ///
    /// If the broker does not accept the connection.
    pub async fn client(&self) -> async_nats::Client {
        async_nats::connect(shardline_jetstream::server_urls(&self.url()))
            .await
            .expect("connect to the benchmark's NATS")
    }

    /// Stream replicas on this broker.
    pub fn replicas(&self) -> usize {
        match self {
            Self::Single(_) => 1,
            Self::Cluster(_) => 3,
        }
    }
}

/// The environment shared by every scenario of a run.
pub struct Env {
    /// The broker (killed on drop).
    pub nats: Broker,
    /// JetStream on it.
    pub js: jetstream::Context,
    /// The simulated Discord.
    pub sim: Simulator,
    /// Shards each system runs.
    pub shards: u32,
    /// Cap on unacknowledged publishes, the same for B and R.
    pub max_inflight: usize,
}

/// A system under test, started.
pub struct Running {
    /// The process reading the simulator (gateway or baseline client).
    pub ingress: Role,
    /// The process draining the streams (workers or baseline drain).
    pub consumer: Role,
}

/// What a system left behind when stopped.
pub struct Finished {
    /// CPU and peak RSS of the ingress process.
    pub ingress: Usage,
    /// CPU and peak RSS of the consumer process.
    pub consumer: Usage,
    /// The consumer's count and latency.
    pub report: ConsumerReport,
}

impl Running {
    /// Stops both processes and collects their reports.
    ///
    /// # Errors
    ///
    /// If a process fails.
    pub async fn finish(self) -> anyhow::Result<Finished> {
        let (_, ingress) = self.ingress.finish::<serde_json::Value>().await?;
        let (report, consumer) = self.consumer.finish::<ConsumerReport>().await?;
        Ok(Finished {
            ingress,
            consumer,
            report,
        })
    }
}

impl Env {
    /// Starts nats-server (or the cluster) and the simulator and declares the streams
    /// and consumers.
    ///
    /// # Errors
    ///
    /// If either cannot start.
    pub async fn start(shards: u32, max_inflight: usize, cluster: bool) -> anyhow::Result<Self> {
        let nats = if cluster {
            let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("nats-cluster.conf");
            let cluster = NatsCluster::start_from(&config);
            cluster.wait_for_meta_leader(Duration::from_secs(30)).await;
            Broker::Cluster(cluster)
        } else {
            Broker::Single(NatsServer::start())
        };
        let js = jetstream::new(nats.client().await);
        let replicas = nats.replicas();
        shardline_jetstream::reconcile_streams(&js, &STREAMS, ReconcileOptions { replicas })
            .await?;
        for spec in [&EVENT_WORKER, &COMMAND_WORKER] {
            shardline_jetstream::reconcile_consumer(&js, spec).await?;
            // On a fresh cluster a new R3 stream or consumer answers nothing ("no
            // responders") until its own leader is elected, after the create returned.
            let what = format!("a leader of {} / {}", spec.stream, spec.durable);
            wait_for(&what, Duration::from_secs(30), || async {
                match js.get_stream(spec.stream).await {
                    Ok(stream) => stream.consumer_info(spec.durable).await.is_ok(),
                    Err(_) => false,
                }
            })
            .await?;
        }
        let sim = Simulator::start(SimConfig {
            shard_total: shards,
            max_concurrency: shards,
            record_sent: false,
            retained_log: 4096,
            ..SimConfig::default()
        })
        .await?;
        Ok(Self {
            nats,
            js,
            sim,
            shards,
            max_inflight,
        })
    }

    /// Empties the streams and starts `system`'s consumer process.
    ///
    /// # Errors
    ///
    /// If NATS does not answer or the process does not start.
    pub async fn consumer(
        &self,
        system: System,
        interval: Duration,
        defer: bool,
    ) -> anyhow::Result<Role> {
        for name in [EVENTS.name, COMMANDS.name] {
            self.js.get_stream(name).await?.purge().await?;
        }
        let mut consumer_args = vec![
            "role".to_owned(),
            match system {
                System::Baseline => "drain",
                System::Router => "worker",
            }
            .to_owned(),
            "--nats".to_owned(),
            self.nats.url(),
            "--interval-ns".to_owned(),
            interval.as_nanos().to_string(),
        ];
        if defer {
            consumer_args.extend(["--defer-via".to_owned(), self.sim.http_base()]);
        }
        let mut consumer = Role::spawn("consumer", &consumer_args)?;
        consumer.ready().await?;
        Ok(consumer)
    }

    /// Empties the streams, starts `system`'s consumer then its ingress, waits until
    /// every shard is live and the lazy GUILD_CREATEs are consumed, then tells the
    /// consumer to start measuring.
    ///
    /// `interval` is the open-loop arrival interval for latency correction;
    /// `defer` makes R's command worker defer interactions through the simulator.
    ///
    /// # Errors
    ///
    /// If a process fails to start or a shard never becomes ready.
    pub async fn launch(
        &self,
        system: System,
        interval: Duration,
        defer: bool,
    ) -> anyhow::Result<Running> {
        let mut consumer = self.consumer(system, interval, defer).await?;
        let identified = self.sim.identifies().len();
        let before = self.stored().await?;
        let ingress_args = vec![
            "role".to_owned(),
            match system {
                System::Baseline => "baseline",
                System::Router => "gateway",
            }
            .to_owned(),
            "--nats".to_owned(),
            self.nats.url(),
            "--url".to_owned(),
            self.sim.gateway_url(),
            "--shards".to_owned(),
            self.shards.to_string(),
            "--max-inflight".to_owned(),
            self.max_inflight.to_string(),
            "--replicas".to_owned(),
            self.nats.replicas().to_string(),
        ];
        let mut ingress = Role::spawn("ingress", &ingress_args)?;
        ingress.ready().await?;
        let want = identified + self.shards as usize;
        wait_for("every shard to identify", Duration::from_secs(60), || {
            std::future::ready(self.sim.identifies().len() >= want)
        })
        .await?;
        for shard in 0..self.shards {
            tokio::time::timeout(Duration::from_secs(30), self.sim.wait_ready(shard))
                .await
                .with_context(|| format!("shard {shard} not ready"))?;
        }
        let lazy = u64::from(self.shards * self.sim.config().guilds_per_shard);
        wait_for(
            "the lazy GUILD_CREATEs",
            Duration::from_secs(60),
            || async {
                self.stored().await.unwrap_or(0) >= before + lazy
                    && self.drained().await.unwrap_or(false)
            },
        )
        .await?;
        consumer.tell("start").await?;
        Ok(Running { ingress, consumer })
    }

    /// Messages ever stored in EVENTS and COMMANDS: the sum of their last sequence
    /// numbers, which only grow (a purge or a work-queue ack keeps them), so the
    /// difference between two readings counts what was stored in between.
    ///
    /// # Errors
    ///
    /// If NATS does not answer.
    pub async fn stored(&self) -> anyhow::Result<u64> {
        let mut total = 0;
        for name in [EVENTS.name, COMMANDS.name] {
            let stream = self.js.get_stream(name).await?;
            total += stream.cached_info().state.last_sequence;
        }
        Ok(total)
    }

    /// Whether both consumers have nothing pending or unacknowledged.
    ///
    /// # Errors
    ///
    /// If NATS does not answer.
    pub async fn drained(&self) -> anyhow::Result<bool> {
        for spec in [&EVENT_WORKER, &COMMAND_WORKER] {
            let mut consumer: jetstream::consumer::PullConsumer = self
                .js
                .get_stream_no_info(spec.stream)
                .await?
                .get_consumer(spec.durable)
                .await
                .map_err(|e| anyhow::anyhow!("consumer {}: {e}", spec.durable))?;
            let info = consumer.info().await?;
            if info.num_pending > 0 || info.num_ack_pending > 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Dispatches `count` events cycling through `events`, round-robin over the shards,
    /// at `rate` events/s in all (`None`: as fast as the simulator's backpressure lets).
    /// `rewrite` may replace a payload just before it is sent (index, payload).
    pub async fn play(
        &self,
        events: &[Event],
        count: usize,
        rate: Option<u32>,
        mut rewrite: impl FnMut(usize, &Event) -> Option<Arc<str>>,
    ) {
        let mut pacer = Pacer::new(rate);
        for i in 0..count {
            let event = &events[i % events.len()];
            let shard = (i % self.shards as usize) as u32;
            let data = rewrite(i, event).unwrap_or_else(|| event.data.clone());
            pacer.tick().await;
            self.sim.dispatch_with(shard, &event.name, data, None).await;
        }
    }
}

/// Polls `check` every 5 ms until it holds.
///
/// # Errors
///
/// If it does not hold within `limit`.
pub async fn wait_for<F, Fut>(what: &str, limit: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// CPU time of the nats-servers this process started, summed (three on the cluster),
/// and the largest peak RSS among them (zero if none found).
pub fn nats_usage() -> Usage {
    let me = std::process::id().to_string();
    let mut total = Usage::default();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return total;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((name, rest)) = stat.split_once(") ") else {
            continue;
        };
        let ppid = rest.split_whitespace().nth(1);
        if name.ends_with("(nats-server") && ppid == Some(me.as_str()) {
            let usage = usage_of(pid);
            total.cpu_seconds += usage.cpu_seconds;
            total.peak_rss = total.peak_rss.max(usage.peak_rss);
            total.syscalls += usage.syscalls;
            total.switches += usage.switches;
        }
    }
    total
}

/// This process's own CPU time and peak RSS (the simulator's share).
pub fn own_usage() -> Usage {
    usage_of(std::process::id())
}
