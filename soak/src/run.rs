//! The soak from start to end: the parts, the traffic and the schedule, the drain,
//! then the count.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_nats::jetstream::consumer::pull::OrderedConfig;
use shardline_discord_sim::{RestLimits, SimConfig, Simulator};
use shardline_proto::headers;
use shardline_proto::topology::{
    COMMAND_WORKER, COMMANDS, DEAD_LETTER, ELIGIBILITY_WORKER, EVENT_WORKER, SYNC_WORKER,
};
use shardline_testkit::{NatsCluster, PgServer};

use crate::audit::{Audit, operator};
use crate::count::{ConsumerEnd, Counts, DeadLetter, Inputs, Window, count};
use crate::faults::{Done, Parts, inject};
use crate::fleet::{Fleet, Wiring};
use crate::schedule::{Fault, Planned, plan};
use crate::traffic::{self, Sent};

/// How a soak runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long traffic plays.
    pub duration: Duration,
    /// Events per second, in all.
    pub rate: u32,
    /// The schedule's (and the payloads') seed.
    pub seed: u64,
    /// Where the fleet's binaries are.
    pub bin_dir: PathBuf,
    /// Where each process logs.
    pub log_dir: PathBuf,
    /// Shards in all, split across two gateway processes.
    pub shard_total: u32,
    /// Longest wait after traffic for every stored message to be answered.
    pub drain_limit: Duration,
}

/// Gateway processes.
const GATEWAYS: usize = 2;
/// The REST global limit (proxy and simulator): raised, as Discord raises it for big
/// bots, so the soak measures delivery rather than the REST limiter, which
/// `rest/tests` covers.
const GLOBAL_LIMIT: u32 = 2_000;
/// Dispatches each simulated session keeps for RESUME (two minutes at 1,000/s over
/// four shards): every restart in the schedule resumes well within it.
const RETAINED_LOG: usize = 30_000;

/// What a soak found.
#[derive(Debug)]
pub struct Outcome {
    /// The schedule as it happened.
    pub faults: Vec<Done>,
    /// When traffic started (since the epoch).
    pub traffic_start: Duration,
    /// The traffic.
    pub sent: Sent,
    /// How long the drain took, or `None` when it ran out of time.
    pub drained_in: Option<Duration>,
    /// The count.
    pub counts: Counts,
    /// Processes that ended without being killed.
    pub crashed: Vec<String>,
    /// `/proc/loadavg` at the end.
    pub load: String,
}

impl Outcome {
    /// Whether the soak passes: nothing lost or duplicated without an explanation,
    /// every fault recovered, nothing crashed, everything drained.
    pub fn passed(&self) -> bool {
        self.counts.clean()
            && self.faults.iter().all(|f| f.ok)
            && self.crashed.is_empty()
            && self.drained_in.is_some()
    }
}

/// Runs blocking start-up work (a cluster, a database) off the runtime's threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("no panic")
}

/// Runs the soak, printing the schedule first.
///
/// # Errors
///
/// A part cannot be started; what a fault breaks is counted, not an error.
pub async fn run(settings: Settings) -> anyhow::Result<Outcome> {
    let epoch = Instant::now();
    let epoch_wall = SystemTime::now();
    let schedule = plan(settings.seed, settings.duration, GATEWAYS);
    crate::report::print_plan(&settings, &schedule);

    let cluster = blocking(NatsCluster::start).await;
    cluster.wait_for_meta_leader(Duration::from_secs(60)).await;
    let node_urls: Vec<String> = (0..3).map(|i| cluster.node_url(i)).collect();
    let nats_url = cluster.url();
    let cluster = Arc::new(Mutex::new(cluster));
    let pg = blocking(PgServer::start).await;
    let database_url = pg.url();
    let pg = Arc::new(Mutex::new(pg));
    let sim = Simulator::start(SimConfig {
        shard_total: settings.shard_total,
        max_concurrency: settings.shard_total,
        retained_log: RETAINED_LOG,
        record_sent: false,
        rest_limits: RestLimits {
            global_per_second: GLOBAL_LIMIT,
            ..RestLimits::default()
        },
        ..SimConfig::default()
    })
    .await?;
    let mut audit = Audit::start(&node_urls, epoch).await?;
    let operator = operator(&nats_url).await?;
    std::fs::create_dir_all(&settings.log_dir)?;
    let rest_addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let wiring = Wiring {
        bin_dir: settings.bin_dir.clone(),
        log_dir: settings.log_dir.clone(),
        nats_url: nats_url.clone(),
        gateway_url: sim.gateway_url(),
        discord_url: format!("http://{}", sim.http_base()),
        token: sim.config().token.clone(),
        database_url,
        shard_total: settings.shard_total,
        gateways: GATEWAYS,
        max_concurrency: settings.shard_total,
        global_limit: GLOBAL_LIMIT,
        rest_addr,
    };
    let mut fleet = Fleet::new(&wiring);
    fleet.rest.start()?;
    for gateway in &mut fleet.gateways {
        gateway.start()?;
    }
    // A gateway whose start fails (a JetStream request timing out on a cluster that
    // has just formed) exits; a supervisor (ECS) starts it again, and so does this.
    let starting = Instant::now();
    for shard in 0..settings.shard_total {
        while tokio::time::timeout(Duration::from_secs(1), sim.wait_ready(shard))
            .await
            .is_err()
        {
            anyhow::ensure!(
                starting.elapsed() < Duration::from_secs(120),
                "shard {shard} never became ready"
            );
            for gateway in &mut fleet.gateways {
                if let Some(status) = gateway.exited() {
                    println!(
                        "{} exited at start ({status}); starting it again",
                        gateway.name()
                    );
                    gateway.start()?;
                }
            }
        }
    }
    for worker in fleet.workers.values_mut() {
        worker.start()?;
    }
    audit.read_events(operator.clone());
    let mut parts = Parts {
        fleet,
        cluster,
        pg,
        sim: sim.clone(),
        operator: operator.clone(),
        shard_total: settings.shard_total,
    };

    let traffic_start = epoch.elapsed();
    println!(
        "traffic started {:.1} s after launch",
        traffic_start.as_secs_f64()
    );
    let player = {
        let sim = sim.clone();
        let (total, rate, duration) = (settings.shard_total, settings.rate, settings.duration);
        let seed = settings.seed ^ 0x5eed;
        tokio::spawn(async move { traffic::play(&sim, total, rate, duration, seed).await })
    };
    let mut faults = Vec::new();
    let mut crashed = Vec::new();
    for planned in schedule {
        tokio::time::sleep_until((epoch + traffic_start + planned.at).into()).await;
        let done = inject(&mut parts, planned, epoch).await;
        println!("{}", crate::report::fault_line(&done, traffic_start));
        faults.push(done);
        crashed.extend(
            parts
                .fleet
                .crashed()
                .into_iter()
                .map(|(n, s)| format!("{n}: {s}")),
        );
    }
    let sent = player.await?;
    println!(
        "traffic ended: {} dispatches in {:.1} s; draining",
        sent.records.len(),
        sent.elapsed.as_secs_f64()
    );

    let js = async_nats::jetstream::new(operator.clone());
    let drain_started = Instant::now();
    let mut missing: Vec<&str> = sent
        .records
        .iter()
        .filter(|r| r.interaction.is_none())
        .map(|r| r.msg_id.as_str())
        .collect();
    let mut drained = None;
    while drain_started.elapsed() < settings.drain_limit {
        audit.retain_missing(&mut missing);
        if missing.is_empty() && consumers_done(&js).await {
            drained = Some(());
            break;
        }
        // State only observable by asking: ask again shortly.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let drained_in = drained.map(|()| drain_started.elapsed());
    crashed.extend(
        parts
            .fleet
            .crashed()
            .into_iter()
            .map(|(n, s)| format!("{n}: {s}")),
    );

    let counts = gather(&js, &audit, &sent, &faults, &sim, epoch_wall).await?;
    parts.fleet.stop(Duration::from_secs(5)).await;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    Ok(Outcome {
        faults,
        traffic_start,
        sent,
        drained_in,
        counts,
        crashed,
        load: load.trim().to_owned(),
    })
}

async fn gather(
    js: &async_nats::jetstream::Context,
    audit: &Audit,
    sent: &Sent,
    faults: &[Done],
    sim: &Simulator,
    epoch_wall: SystemTime,
) -> anyhow::Result<Counts> {
    let (events, answers) = audit.take();
    let commands_stored = js
        .get_stream(COMMANDS.name)
        .await?
        .info()
        .await?
        .state
        .last_sequence;
    let mut consumers = Vec::new();
    for spec in [EVENT_WORKER, COMMAND_WORKER] {
        let stream = js.get_stream(spec.stream).await?;
        let info = stream.consumer_info(spec.durable).await?;
        consumers.push(ConsumerEnd {
            durable: spec.durable.to_owned(),
            ack_floor: info.ack_floor.stream_sequence,
            ack_wait: spec.ack_wait,
        });
    }
    let dead_letters = read_dead_letters(js, epoch_wall).await?;
    let defers: Vec<(u64, Duration)> = sim
        .interaction_callbacks()
        .into_iter()
        .filter(|c| c.kind == "callback")
        .filter_map(|c| {
            let id = c.interaction_id.parse().ok()?;
            Some((
                id,
                c.received_at.duration_since(epoch_wall).unwrap_or_default(),
            ))
        })
        .collect();
    // A gateway fault cannot make a worker see a message twice or give up on one.
    let windows: Vec<Window> = faults
        .iter()
        .filter_map(|f| {
            let affects = match f.planned.fault {
                Fault::GatewayTerm { .. } | Fault::GatewayKill { .. } => return None,
                Fault::WorkerKill { role, .. } => Some(role.user().to_owned()),
                Fault::NatsKill { .. } | Fault::DatabaseKill => None,
            };
            Some(Window {
                label: f.planned.fault.to_string(),
                from: f.from,
                to: f.to,
                affects,
            })
        })
        .collect();
    Ok(count(&Inputs {
        sent: &sent.records,
        events: &events,
        commands_stored,
        answers: &answers,
        consumers: &consumers,
        dead_letters: &dead_letters,
        defers: &defers,
        faults: &windows,
    }))
}

/// Every letter in DEAD_LETTER (none when the stream was never created).
async fn read_dead_letters(
    js: &async_nats::jetstream::Context,
    epoch_wall: SystemTime,
) -> anyhow::Result<Vec<DeadLetter>> {
    use futures_util::StreamExt;
    let Ok(stream) = js.get_stream(DEAD_LETTER.name).await else {
        return Ok(Vec::new());
    };
    let total = stream.cached_info().state.messages;
    let mut letters = Vec::new();
    if total == 0 {
        return Ok(letters);
    }
    let consumer = stream
        .create_consumer(OrderedConfig {
            headers_only: true,
            ..OrderedConfig::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    while (letters.len() as u64) < total {
        let Some(message) = messages.next().await else {
            break;
        };
        let message = message?;
        let header = |name: &str| {
            message
                .headers
                .as_ref()
                .and_then(|h| h.get(name))
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default()
        };
        let at_nanos: u64 = header(headers::DEAD_LETTER_AT).parse().unwrap_or_default();
        let at = (SystemTime::UNIX_EPOCH + Duration::from_nanos(at_nanos))
            .duration_since(epoch_wall)
            .unwrap_or_default();
        letters.push(DeadLetter {
            consumer: header(headers::DEAD_LETTER_CONSUMER),
            msg_id: header(headers::DEAD_LETTER_MSG_ID),
            kind: header(headers::DEAD_LETTER_KIND),
            reason: header(headers::DEAD_LETTER_REASON),
            at,
        });
    }
    Ok(letters)
}

/// Whether every worker's consumer has delivered everything and holds nothing
/// unanswered.
async fn consumers_done(js: &async_nats::jetstream::Context) -> bool {
    for consumer in [
        EVENT_WORKER,
        COMMAND_WORKER,
        ELIGIBILITY_WORKER,
        SYNC_WORKER,
    ] {
        let Ok(stream) = js.get_stream(consumer.stream).await else {
            return false;
        };
        match stream.consumer_info(consumer.durable).await {
            Ok(info) if info.num_pending == 0 && info.num_ack_pending == 0 => {}
            _ => return false,
        }
    }
    true
}

/// The fault schedule of `settings`, for printing without running.
pub fn schedule(settings: &Settings) -> Vec<Planned> {
    plan(settings.seed, settings.duration, GATEWAYS)
}
