//! HTTP interactions: the interactions service and the real command worker, each in
//! its own process, with the simulator signing and sending as Discord does.
//!
//! Request to first response: `/ping` (the reference command, which answers at once)
//! at fixed open-loop rates, timed by the simulator from sending the request to
//! reading the whole answer. PING throughput: PINGs signed once, sent back to back
//! over a fixed number of connections for a fixed time, counted; the service's CPU
//! time is read from `/proc` so the figure can be judged on a shared machine.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use shardline_discord_sim::http_interactions::{SIGNATURE_HEADER, TIMESTAMP_HEADER};
use shardline_discord_sim::{HttpInteraction, HttpInteractions, HttpPlan, Signing, Verdict};
use tokio_util::sync::CancellationToken;

use crate::child::{self, Role};
use crate::env::{Env, System, wait_for};
use crate::stats::{Latency, Recorder};

/// Connections the PING load keeps busy.
const PING_CONNECTIONS: usize = 32;

/// Request to first response at one rate.
#[derive(Clone, Debug, Serialize)]
pub struct HttpRun {
    /// Offered interactions/s.
    pub rate: u32,
    /// Interactions sent.
    pub interactions: usize,
    /// Answered with the command's reply.
    pub inline: usize,
    /// Answered with the service's deferral.
    pub deferred: usize,
    /// Anything Discord would count as a failure.
    pub failed: usize,
    /// Request sent -> whole answer read, at the simulator.
    pub latency: Latency,
}

/// PING throughput of one service process.
#[derive(Clone, Debug, Serialize)]
pub struct PingRun {
    /// PINGs answered `{"type":1}`.
    pub pings: u64,
    /// Over this many seconds.
    pub seconds: f64,
    /// Answered per second.
    pub per_second: f64,
    /// The service process's CPU time meanwhile, seconds.
    pub service_cpu_seconds: f64,
    /// Connections used.
    pub connections: usize,
}

/// Runs the interactions service (the library's `start`) on `listen` until stdin
/// closes: the benchmark's `interactions` role.
///
/// # Errors
///
/// If the service does not start.
pub async fn service(nats_url: &str, listen: &str, public_key: &str) -> anyhow::Result<()> {
    let mut config = shardline_interactions::Config::new(public_key, nats_url);
    config.listen_addr = listen.parse()?;
    config.metrics_addr = None;
    let shutdown = CancellationToken::new();
    let running = shardline_interactions::start(config, shutdown.clone()).await?;
    child::serve_until_stdin_closes(|_| {}).await;
    shutdown.cancel();
    running.stopped().await;
    child::report(&serde_json::json!({}));
    Ok(())
}

/// Starts the service and the command worker, then measures each rate for `seconds`
/// and PING throughput for `ping_seconds`.
///
/// # Errors
///
/// If a process fails or the service never answers.
pub async fn measure(
    env: &Env,
    rates: &[u32],
    seconds: f64,
    ping_seconds: f64,
) -> anyhow::Result<(Vec<HttpRun>, PingRun)> {
    let worker = env.consumer(System::Router, Duration::ZERO, true).await?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let listen = format!("127.0.0.1:{port}");
    let url = format!("http://{listen}/interactions");
    let discord = HttpInteractions::new(&url);
    let args = [
        "role",
        "interactions",
        "--nats",
        &env.nats.url(),
        "--url",
        &listen,
        "--public-key",
        &discord.public_key(),
    ]
    .map(str::to_owned);
    let mut service = Role::spawn("interactions", &args)?;
    service.ready().await?;
    let guild = shardline_discord_sim::synthetic_guild(0, 1, 0);
    wait_for(
        "the service answering inline",
        Duration::from_secs(60),
        || {
            let discord = discord.clone();
            async move {
                let warm = HttpInteraction::command("ping", guild, rand::random());
                discord.send(&warm, Signing::Valid).await.response_type == Some(4)
            }
        },
    )
    .await?;

    let mut runs = Vec::new();
    for &rate in rates {
        let count = (f64::from(rate) * seconds) as usize;
        let interactions = (0..count)
            .map(|_| HttpInteraction::command("ping", guild, rand::random()))
            .collect();
        eprintln!("  HTTP interactions at {rate}/s");
        let records = discord
            .play(HttpPlan {
                interactions,
                rate_per_second: Some(rate),
                invalid_every: None,
            })
            .await;
        let recorder = Recorder::new(Duration::ZERO);
        for r in &records {
            recorder.record(u64::try_from(r.elapsed.as_nanos()).unwrap_or(u64::MAX));
        }
        let answered = |t: u8| {
            records
                .iter()
                .filter(|r| r.verdict == Verdict::Answered && r.response_type == Some(t))
                .count()
        };
        runs.push(HttpRun {
            rate,
            interactions: records.len(),
            inline: answered(4),
            deferred: answered(5),
            failed: records
                .iter()
                .filter(|r| r.verdict != Verdict::Answered)
                .count(),
            latency: recorder.summary(records.len() as u64),
        });
    }

    eprintln!("  PING throughput for {ping_seconds} s");
    let before = service.usage().cpu_seconds;
    let pings = ping_load(&discord, &url, Duration::from_secs_f64(ping_seconds)).await?;
    let service_cpu_seconds = service.usage().cpu_seconds - before;
    service.finish::<serde_json::Value>().await?;
    worker.finish::<serde_json::Value>().await?;
    Ok((
        runs,
        PingRun {
            pings,
            seconds: ping_seconds,
            per_second: pings as f64 / ping_seconds,
            service_cpu_seconds,
            connections: PING_CONNECTIONS,
        },
    ))
}

/// PINGs back to back over [`PING_CONNECTIONS`] connections for `time`; the number
/// answered `{"type":1}`. One signature serves them all (the timestamp stays fresh
/// for the service's 60 s window), so the load costs the sender little.
async fn ping_load(discord: &HttpInteractions, url: &str, time: Duration) -> anyhow::Result<u64> {
    let body = Bytes::from(HttpInteraction::ping(1).body);
    let (signature, timestamp) = discord.sign(&body);
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(PING_CONNECTIONS)
        .build_http();
    let uri: hyper::Uri = url.parse()?;
    let answered = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + time;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..PING_CONNECTIONS {
        let (client, uri, body) = (client.clone(), uri.clone(), body.clone());
        let (signature, timestamp, answered) =
            (signature.clone(), timestamp.clone(), answered.clone());
        tasks.spawn(async move {
            while Instant::now() < deadline {
                let request = hyper::Request::post(uri.clone())
                    .header(hyper::header::CONTENT_TYPE, "application/json")
                    .header(SIGNATURE_HEADER, &signature)
                    .header(TIMESTAMP_HEADER, &timestamp)
                    .body(Full::new(body.clone()))?;
                let response = client.request(request).await?;
                let ok = response.status() == 200;
                let answer = response.into_body().collect().await?.to_bytes();
                anyhow::ensure!(
                    ok && &answer[..] == br#"{"type":1}"#,
                    "PING answered {answer:?}"
                );
                answered.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(answered.load(Ordering::Relaxed))
}
