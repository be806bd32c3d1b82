//! The REST proxy's cost: the latency it adds over calling the simulator directly
//! when nothing is limited, and its throughput for a bot whose global limit Discord
//! raised. The simulator answers at once (no REST latency) so the proxy's own time
//! is what shows; the proxy runs in its own process (the `rest-proxy` role, the
//! library's `start`), the clients (twilight-http, no rate limiter of their own) and
//! the simulator in the orchestrator.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shardline_discord_sim::{BucketSpec, RestLatency, RestLimits, SimConfig, Simulator};
use tokio::sync::Semaphore;
use twilight_model::id::Id;

use crate::child::{self, Role, Usage};
use crate::env::Env;
use crate::stats::{Latency, Recorder};

/// The simulator's bot token.
const TOKEN: &str = "sim-token";
/// Far above anything the benchmark sends: nothing is ever limited.
const UNLIMITED: u32 = 100_000_000;
/// Requests are spread over this many channels.
const CHANNELS: u64 = 200;
/// Requests per latency round; rounds alternate direct and through the proxy.
const ROUND: usize = 100;

/// One measurement of the proxy.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RestRun {
    /// Sequential requests per system for latency.
    pub latency_requests: usize,
    /// Directly to the simulator.
    pub direct: Latency,
    /// Through the proxy.
    pub proxied: Latency,
    /// Requests per system for throughput.
    pub throughput_requests: usize,
    /// Requests in flight during the throughput run.
    pub concurrency: usize,
    /// Requests per second directly to the simulator.
    pub direct_rps: f64,
    /// Requests per second through the proxy.
    pub proxied_rps: f64,
    /// The proxy process's CPU seconds per 1,000 requests in the throughput run.
    pub proxy_cpu_ms_per_request: f64,
}

/// Measures added latency and throughput.
///
/// # Errors
///
/// If the proxy cannot start or a request fails.
pub async fn measure(
    env: &Env,
    latency_requests: usize,
    throughput_requests: usize,
    concurrency: usize,
) -> anyhow::Result<RestRun> {
    let sim = Simulator::start(SimConfig {
        rest_latency: RestLatency::NONE,
        record_sent: false,
        rest_limits: RestLimits {
            global_per_second: UNLIMITED,
            messages: BucketSpec::per_ms(UNLIMITED, 1_000),
            ..RestLimits::default()
        },
        ..SimConfig::default()
    })
    .await?;
    let listen = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let mut proxy = Role::spawn(
        "rest-proxy",
        &[
            "role".into(),
            "rest-proxy".into(),
            "--nats".into(),
            env.nats.url(),
            "--url".into(),
            format!("http://{}", sim.http_base()),
            "--listen".into(),
            listen.to_string(),
        ],
    )?;
    proxy.ready().await?;
    let direct = Arc::new(client(&sim.http_base(), Some(TOKEN)));
    let proxied = Arc::new(client(&listen.to_string(), None));
    // Warm the connection pools and the proxy's knowledge of the route.
    for i in 0..2 * ROUND as u64 {
        send(&direct, i).await?;
        send(&proxied, i).await?;
    }

    let (d, p) = (Recorder::new(Duration::ZERO), Recorder::new(Duration::ZERO));
    let mut i = 0u64;
    while (i as usize) < latency_requests {
        for (http, recorder) in [(&direct, &d), (&proxied, &p)] {
            for k in 0..ROUND as u64 {
                let at = Instant::now();
                send(http, i + k).await?;
                recorder.record(u64::try_from(at.elapsed().as_nanos()).unwrap_or(u64::MAX));
            }
        }
        i += ROUND as u64;
    }
    let count = i;

    let direct_rps = throughput(&direct, throughput_requests, concurrency).await?;
    let before = proxy.usage();
    let proxied_rps = throughput(&proxied, throughput_requests, concurrency).await?;
    let after = proxy.usage();
    let (_, _): ((), Usage) = proxy.finish().await?;
    sim.shutdown().await;
    Ok(RestRun {
        latency_requests: count as usize,
        direct: d.summary(count),
        proxied: p.summary(count),
        throughput_requests,
        concurrency,
        direct_rps,
        proxied_rps,
        proxy_cpu_ms_per_request: (after.cpu_seconds - before.cpu_seconds) * 1e3
            / throughput_requests as f64,
    })
}

fn client(host: &str, token: Option<&str>) -> twilight_http::Client {
    let mut builder = twilight_http::Client::builder()
        .proxy(host.to_owned(), true)
        .ratelimiter(None)
        .timeout(Duration::from_secs(30));
    if let Some(token) = token {
        builder = builder.token(token.to_owned());
    }
    builder.build()
}

async fn send(http: &twilight_http::Client, i: u64) -> anyhow::Result<()> {
    http.create_message(Id::new(1_000 + i % CHANNELS))
        .content("bench")
        .await?;
    Ok(())
}

/// Requests per second with `concurrency` in flight.
async fn throughput(
    http: &Arc<twilight_http::Client>,
    requests: usize,
    concurrency: usize,
) -> anyhow::Result<f64> {
    let permits = Arc::new(Semaphore::new(concurrency));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(requests);
    for i in 0..requests as u64 {
        let permit = permits.clone().acquire_owned().await?;
        let (http, failed) = (http.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            if send(&http, i).await.is_err() {
                failed.fetch_add(1, Ordering::Relaxed);
            }
            drop(permit);
        }));
    }
    for task in tasks {
        task.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    anyhow::ensure!(failed.load(Ordering::Relaxed) == 0, "requests failed");
    Ok(requests as f64 / elapsed)
}

/// The `rest-proxy` role: the proxy with a raised global limit, holding the lease
/// before it says ready.
///
/// # Errors
///
/// If it cannot start.
pub async fn role(nats_url: String, upstream: String, listen: String) -> anyhow::Result<()> {
    let mut config = shardline_rest::Config::new(&upstream, &nats_url);
    config.listen = listen.parse()?;
    config.token = Some(shardline_jetstream::Secret::new(TOKEN));
    config.global_limit = UNLIMITED;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let proxy = shardline_rest::start(config, shutdown).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !proxy.is_holder() {
        anyhow::ensure!(Instant::now() < deadline, "the proxy never took the lease");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child::serve_until_stdin_closes(|_| {}).await;
    proxy.stop().await?;
    child::report(&());
    Ok(())
}

/// The report section.
pub fn summarize(run: &RestRun) -> String {
    let (d, p) = (&run.direct, &run.proxied);
    format!(
        "\n### REST proxy (simulator answering at once, nothing limited)\n\n\
         | path | requests | p50 ms | p99 ms | p99.9 ms | max ms |\n|---|---|---|---|---|---|\n\
         | direct to the simulator | {} | {:.3} | {:.3} | {:.3} | {:.3} |\n\
         | through the proxy | {} | {:.3} | {:.3} | {:.3} | {:.3} |\n\n\
         added by the proxy: p50 {:+.3} ms, p99 {:+.3} ms (goal p99 <= +0.3 ms)\n\n\
         throughput with {} in flight, global limit raised: direct {:.0} requests/s, through the \
         proxy {:.0} requests/s (goal >= 5,000), proxy CPU {:.3} ms per request\n",
        d.count,
        d.p50_us / 1e3,
        d.p99_us / 1e3,
        d.p999_us / 1e3,
        d.max_us / 1e3,
        p.count,
        p.p50_us / 1e3,
        p.p99_us / 1e3,
        p.p999_us / 1e3,
        p.max_us / 1e3,
        (p.p50_us - d.p50_us) / 1e3,
        (p.p99_us - d.p99_us) / 1e3,
        run.concurrency,
        run.direct_rps,
        run.proxied_rps,
        run.proxy_cpu_ms_per_request,
    )
}
