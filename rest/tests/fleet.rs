//! The fleet as processes: `shardline-rest` binaries (two, one holding the lease)
//! and sender processes (this test binary re-executed; the ignored `child_sender`
//! is their entry point) that send messages through twilight-http as fast as they
//! can, each with a nonce, retrying what fails on the other proxy. Everything is
//! counted from the simulator's records.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::Duration;

use common::process::ProxyProcess;
use common::{PATIENCE, stack};
use shardline_discord_sim::{BucketSpec, RestLimits, RestRecord, Simulator, busiest_second};
use shardline_testkit::eventually;
use tokio::sync::Semaphore;
use twilight_model::id::Id;

/// A sender process: sends `SENDER_COUNT` messages with nonces
/// `SENDER_ID * 1_000_000 + i` to the channels in `SENDER_CHANNELS`, through the
/// proxies in `SENDER_PROXIES` (starting with the `SENDER_ID`-th), `SENDER_INFLIGHT`
/// at a time; on a refusal, a 5xx or no answer it retries the same message on the
/// next proxy. Writes `sent retries failed` to `SENDER_LOG`.
#[test]
#[ignore = "entry point of the sender processes the other tests start"]
fn child_sender() {
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k}"));
    let id: u64 = var("SENDER_ID").parse().unwrap();
    let count: u64 = var("SENDER_COUNT").parse().unwrap();
    let inflight: usize = var("SENDER_INFLIGHT").parse().unwrap();
    let channels: Vec<u64> = var("SENDER_CHANNELS")
        .split(',')
        .map(|c| c.parse().unwrap())
        .collect();
    let proxies: Vec<String> = var("SENDER_PROXIES")
        .split(',')
        .map(str::to_owned)
        .collect();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (sent, retries, failed) = runtime.block_on(async move {
        let clients: Arc<Vec<twilight_http::Client>> = Arc::new(
            proxies
                .iter()
                .map(|p| common::client(p.parse().unwrap(), Some(Duration::from_secs(30))))
                .collect(),
        );
        let permits = Arc::new(Semaphore::new(inflight));
        let tasks: Vec<_> = (0..count)
            .map(|i| {
                let (clients, permits, channel) = (
                    clients.clone(),
                    permits.clone(),
                    channels[i as usize % channels.len()],
                );
                tokio::spawn(async move {
                    let _permit = permits.acquire_owned().await.unwrap();
                    let nonce = id * 1_000_000 + i;
                    let mut retries = 0u64;
                    // Long enough for any handover (a lease's life and more): what
                    // fails for longer counts as failed.
                    let deadline = std::time::Instant::now() + Duration::from_secs(60);
                    for attempt in 0.. {
                        if std::time::Instant::now() >= deadline {
                            break;
                        }
                        let client = &clients[(id as usize + attempt) % clients.len()];
                        let result = client
                            .create_message(Id::new(channel))
                            .content(&format!("sender {id} message {i}"))
                            .nonce(nonce)
                            .await;
                        match result {
                            Ok(_) => return (1, retries, 0),
                            Err(e) => {
                                retries += 1;
                                let wait = shardline_worker::rest_refusal::retry_after(&e)
                                    .unwrap_or(Duration::from_millis(50));
                                let wait =
                                    wait.clamp(Duration::from_millis(20), Duration::from_secs(2));
                                tokio::time::sleep(wait).await;
                            }
                        }
                    }
                    (0, retries, 1)
                })
            })
            .collect();
        let mut totals = (0u64, 0u64, 0u64);
        for task in tasks {
            let (s, r, f) = task.await.unwrap();
            totals = (totals.0 + s, totals.1 + r, totals.2 + f);
        }
        totals
    });
    std::fs::write(var("SENDER_LOG"), format!("{sent} {retries} {failed}")).unwrap();
}

struct Sender {
    child: Child,
    log: PathBuf,
}

impl Sender {
    fn spawn(
        dir: &std::path::Path,
        id: u64,
        count: u64,
        inflight: usize,
        channels: &[u64],
        proxies: &[&ProxyProcess],
    ) -> Self {
        let log = dir.join(format!("sender-{id}"));
        let channels: Vec<String> = channels.iter().map(u64::to_string).collect();
        let proxies: Vec<String> = proxies.iter().map(|p| p.addr.to_string()).collect();
        let child = Command::new(std::env::current_exe().unwrap())
            .args(["--ignored", "--exact", "child_sender", "--nocapture"])
            .env("SENDER_ID", id.to_string())
            .env("SENDER_COUNT", count.to_string())
            .env("SENDER_INFLIGHT", inflight.to_string())
            .env("SENDER_CHANNELS", channels.join(","))
            .env("SENDER_PROXIES", proxies.join(","))
            .env("SENDER_LOG", &log)
            .spawn()
            .unwrap();
        Self { child, log }
    }

    /// Waits for the process; returns (sent, retries, failed).
    async fn finish(mut self) -> (u64, u64, u64) {
        let mut child = std::mem::replace(&mut self.child, Command::new("true").spawn().unwrap());
        let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
            .await
            .unwrap();
        assert!(status.success(), "sender exited with {status}");
        let text = std::fs::read_to_string(&self.log).unwrap();
        let n: Vec<u64> = text.split(' ').map(|v| v.parse().unwrap()).collect();
        (n[0], n[1], n[2])
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two proxy processes, once one holds the lease and the other forwards to it.
async fn two_proxies(sim: &Simulator, nats_url: &str) -> [ProxyProcess; 2] {
    let proxies = [
        ProxyProcess::spawn(sim, nats_url, &[]),
        ProxyProcess::spawn(sim, nats_url, &[]),
    ];
    eventually(
        "one holder and one standby forwarding to it",
        PATIENCE,
        || async {
            let ready = [proxies[0].readyz().await, proxies[1].readyz().await];
            let holders = ready
                .iter()
                .filter(|(s, b)| *s == 200 && b.starts_with("holder"))
                .count();
            let standbys = ready
                .iter()
                .filter(|(s, b)| *s == 200 && b.starts_with("standby"))
                .count();
            (holders == 1 && standbys == 1).then_some(())
        },
    )
    .await;
    proxies
}

/// The share of the bucket's allowed requests the simulator accepted: accepted over
/// `limit` per window for every window that fits between the first and the last.
fn bucket_use(records: &[RestRecord], spec: BucketSpec) -> f64 {
    let mut accepted: Vec<_> = records
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| r.at)
        .collect();
    accepted.sort_unstable();
    let span = accepted.last().unwrap().duration_since(accepted[0]);
    let windows = (span.as_nanos() / spec.period.as_nanos()) as u64 + 1;
    accepted.len() as f64 / (windows * u64::from(spec.limit)) as f64
}

/// Nonces the simulator never created a message for, and duplicates created.
fn lost_and_duplicated(sim: &Simulator, senders: u64, each: u64) -> (usize, usize) {
    let mut seen = std::collections::HashMap::new();
    for m in sim.messages() {
        *seen
            .entry(m.nonce.clone().unwrap_or_default())
            .or_insert(0usize) += 1;
    }
    let mut lost = 0;
    let mut duplicated = 0;
    for s in 0..senders {
        for i in 0..each {
            match seen.get(&(s * 1_000_000 + i).to_string()) {
                None => lost += 1,
                Some(n) => duplicated += n - 1,
            }
        }
    }
    (lost, duplicated)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_senders_through_two_proxies_fill_one_channels_bucket_without_a_violation() {
    const SENDERS: u64 = 4;
    const EACH: u64 = 30;
    let spec = BucketSpec::per_ms(10, 1_000);
    let (nats, sim) = stack(RestLimits {
        messages: spec,
        ..Default::default()
    })
    .await;
    let proxies = two_proxies(&sim, &nats.url()).await;
    let dir = tempfile::tempdir().unwrap();
    let senders: Vec<Sender> = (0..SENDERS)
        .map(|id| Sender::spawn(dir.path(), id, EACH, 8, &[42], &[&proxies[0], &proxies[1]]))
        .collect();
    let mut totals = (0, 0, 0);
    for sender in senders {
        let (s, r, f) = sender.finish().await;
        totals = (totals.0 + s, totals.1 + r, totals.2 + f);
    }
    let records = sim.rest_requests();
    let used = bucket_use(&records, spec);
    let (lost, duplicated) = lost_and_duplicated(&sim, SENDERS, EACH);
    eprintln!(
        "{} requests at the simulator, {} violations, bucket use {used:.3}, senders: {totals:?} (sent, retries, failed)",
        records.len(),
        sim.rest_violations()
    );
    assert_eq!(sim.rest_violations(), 0);
    assert_eq!((lost, duplicated), (0, 0));
    assert_eq!(records.len() as u64, SENDERS * EACH);
    assert!(used >= 0.9, "the fleet got {used:.3} of the bucket's rate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_holder_killed_mid_stream_is_replaced_without_loss_or_violation() {
    holder_stopped_mid_stream("KILL").await;
}

/// A deployment's SIGTERM: the holder finishes what it admitted and hands over, so
/// no answer is lost with it and nothing is sent twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_holder_stopped_mid_stream_hands_over_without_loss_duplicate_or_violation() {
    holder_stopped_mid_stream("TERM").await;
}

/// Three senders through two proxies; `signal` to the holder once a third of the
/// messages are at the simulator, while they keep sending.
async fn holder_stopped_mid_stream(signal: &str) {
    const SENDERS: u64 = 3;
    const EACH: u64 = 80;
    let channels: Vec<u64> = (100..120).collect();
    let (nats, sim) = stack(RestLimits::default()).await;
    let [a, b] = two_proxies(&sim, &nats.url()).await;
    let dir = tempfile::tempdir().unwrap();
    let senders: Vec<Sender> = (0..SENDERS)
        .map(|id| Sender::spawn(dir.path(), id, EACH, 8, &channels, &[&a, &b]))
        .collect();
    eventually(
        "a third of the messages at the simulator",
        PATIENCE,
        || async { (sim.messages().len() as u64 >= SENDERS * EACH / 3).then_some(()) },
    )
    .await;
    let (holder, survivor) = if a.is_holder().await { (a, b) } else { (b, a) };
    let at_signal = sim.rest_requests().len();
    let signalled_at = std::time::Instant::now();
    let (status, holder_log) = holder.signal_and_wait(signal).await;
    if signal == "TERM" {
        assert!(status.success(), "{status}: {holder_log}");
    } else {
        assert!(!status.success());
    }
    eventually("the survivor holding the lease", PATIENCE, || async {
        survivor.is_holder().await.then_some(())
    })
    .await;
    let mut totals = (0, 0, 0);
    for sender in senders {
        let (s, r, f) = sender.finish().await;
        totals = (totals.0 + s, totals.1 + r, totals.2 + f);
    }
    let records = sim.rest_requests();
    let (lost, duplicated) = lost_and_duplicated(&sim, SENDERS, EACH);
    let busiest = busiest_second(&records, Some(common::TOKEN));
    eprintln!(
        "SIG{signal}: {at_signal} requests before it, {} after; {} violations; busiest second \
         {busiest}; {lost} lost, {duplicated} duplicated; senders: {totals:?}",
        records.len() - at_signal,
        sim.rest_violations()
    );
    for r in records.iter().filter(|r| r.violation.is_some()) {
        let offset = r.at.checked_duration_since(signalled_at).map_or_else(
            || format!("-{:?}", signalled_at.duration_since(r.at)),
            |d| format!("+{d:?}"),
        );
        eprintln!(
            "violation {:?} on {} at {offset} from the signal",
            r.violation, r.path
        );
    }
    if sim.rest_violations() > 0 {
        // What it restored and how it ran its buckets is in its log.
        let (_, log) = survivor.signal_and_wait("TERM").await;
        eprintln!("--- the survivor's log ---\n{log}");
    }
    assert_eq!(totals.2, 0, "every sender got every message through");
    assert_eq!(lost, 0);
    if signal == "TERM" {
        // Duplicates come only from answers lost with a killed holder.
        assert_eq!(duplicated, 0, "sent twice");
    }
    assert_eq!(
        sim.rest_violations(),
        0,
        "no limit exceeded, handover included"
    );
    assert!(busiest <= 50);
    assert!(records.len() > at_signal, "the survivor sent the rest");
}
