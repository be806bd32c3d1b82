//! Worker processes: real OS processes running the worker runtime through
//! `cli::main`, as the worker binaries do. This test binary re-executes itself as the
//! child (the ignored `child_worker` test is its entry point); each child appends the
//! id of every message it handles to its own file before acking, so the parent can
//! count what was processed, by whom, and how often.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::Duration;

use async_nats::jetstream;
use serde::Deserialize;
use shardline_proto::topology::{ConsumerSpec, EVENT_WORKER};
use shardline_testkit::{NatsServer, eventually};
use shardline_worker::{Context, Handler, Handlers, Outcome, Worker, cli};

/// Two seconds to ack: a killed worker's messages come back quickly.
static QUICK_REDELIVERY: ConsumerSpec = ConsumerSpec {
    durable: "proc-worker",
    filter_subjects: &["events.proc.>"],
    max_ack_pending: 20,
    ack_wait: Duration::from_secs(2),
    ..EVENT_WORKER
};

/// Thirty seconds to ack: only an explicit ack or nak frees a message in a test's time.
static SLOW_REDELIVERY: ConsumerSpec = ConsumerSpec {
    ack_wait: Duration::from_secs(30),
    ..QUICK_REDELIVERY
};

#[derive(Deserialize)]
struct Job {
    id: u64,
    work_ms: u64,
}

/// Does the job's work, then notes its id.
struct Recorder {
    log: PathBuf,
    max_work: u64,
}

impl Handler for Recorder {
    type Payload = Job;

    async fn handle(&self, job: Job, _: &Context) -> Outcome {
        tokio::time::sleep(Duration::from_millis(job.work_ms.min(self.max_work))).await;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        file.write_all(format!("{}\n", job.id).as_bytes()).unwrap();
        Outcome::Success
    }
}

/// The child process: a worker configured by environment variables.
#[test]
#[ignore = "entry point of the worker processes the other tests start"]
fn child_worker() {
    let spec = match std::env::var("CHILD_SPEC").as_deref() {
        Ok("slow") => &SLOW_REDELIVERY,
        _ => &QUICK_REDELIVERY,
    };
    let recorder = Recorder {
        log: std::env::var("CHILD_LOG").unwrap().into(),
        max_work: std::env::var("CHILD_MAX_WORK_MS").map_or(u64::MAX, |v| v.parse().unwrap()),
    };
    let args = <cli::WorkerArgs as clap::Parser>::parse_from(["child-worker"]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime
        .block_on(cli::main("child-worker", args, |_| async move {
            Ok(Worker::new(
                spec,
                Handlers::new().on("events.proc.>", recorder),
            ))
        }))
        .unwrap();
}

struct Proc {
    child: Child,
    log: PathBuf,
}

fn spawn(nats: &NatsServer, dir: &Path, name: &str, env: &[(&str, &str)]) -> Proc {
    let log = dir.join(name);
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "child_worker", "--nocapture"])
        .env("NATS_URL", nats.url())
        .env("CHILD_LOG", &log)
        .envs(env.iter().copied())
        .spawn()
        .unwrap();
    Proc { child, log }
}

impl Proc {
    fn handled(&self) -> Vec<u64> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| l.parse().unwrap())
            .collect()
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-s", signal, &pid])
                .status()
                .unwrap()
                .success()
        );
    }

    fn wait(&mut self) -> ExitStatus {
        self.child.wait().unwrap()
    }
}

impl Drop for Proc {
    /// A failed test must not leave its worker processes running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn setup() -> (NatsServer, jetstream::Context, tempfile::TempDir) {
    let (nats, _, js) = common::nats_with_events().await;
    (nats, js, tempfile::tempdir().unwrap())
}

async fn publish_jobs(
    js: &jetstream::Context,
    ids: std::ops::Range<u64>,
    work_ms: impl Fn(u64) -> u64,
) {
    let mut acks = Vec::new();
    for id in ids {
        let body = serde_json::json!({ "id": id, "work_ms": work_ms(id) }).to_string();
        acks.push(js.publish("events.proc.job", body.into()).await.unwrap());
    }
    for ack in acks {
        ack.await.unwrap();
    }
}

/// The consumer's state, once a worker has declared it.
async fn consumer(js: &jetstream::Context) -> Option<jetstream::consumer::Info> {
    let stream = js.get_stream_no_info("EVENTS").await.ok()?;
    stream.consumer_info(QUICK_REDELIVERY.durable).await.ok()
}

/// How often each id was handled, over every process.
fn tally(procs: &[&Proc]) -> HashMap<u64, usize> {
    let mut counts = HashMap::new();
    for proc in procs {
        for id in proc.handled() {
            *counts.entry(id).or_default() += 1;
        }
    }
    counts
}

async fn all_handled(procs: &[&Proc], n: u64, limit: Duration) -> HashMap<u64, usize> {
    eventually("every job handled", limit, || async {
        let counts = tally(procs);
        (counts.len() as u64 == n).then_some(counts)
    })
    .await
}

/// A free loopback address for a child's `/metrics`.
fn free_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// `GET /metrics` from a child's metrics address.
fn scrape(addr: &str) -> String {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).unwrap();
    body
}

/// The value of the sample `line_start` (name and labels) in a scrape, 0 if absent.
fn sample(scrape: &str, line_start: &str) -> f64 {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_one_consumer_and_handle_each_message_once() {
    let (nats, js, dir) = setup().await;
    let (metrics_a, metrics_b) = (free_addr(), free_addr());
    let mut a = spawn(&nats, dir.path(), "a", &[("METRICS_ADDR", &metrics_a)]);
    let mut b = spawn(&nats, dir.path(), "b", &[("METRICS_ADDR", &metrics_b)]);
    const N: u64 = 3000;
    publish_jobs(&js, 0..N, |_| 1).await;
    js.publish("events.proc.job", "garbage".into())
        .await
        .unwrap()
        .await
        .unwrap();

    let counts = all_handled(&[&a, &b], N, Duration::from_secs(60)).await;
    eventually("all acked", Duration::from_secs(20), || async {
        let info = consumer(&js).await?;
        (info.num_ack_pending == 0 && info.num_pending == 0).then_some(())
    })
    .await;
    let counts_now = tally(&[&a, &b]);
    assert_eq!(
        counts_now, counts,
        "nothing handled after everything was acked"
    );
    let twice = counts.values().filter(|&&c| c > 1).count();
    assert_eq!(twice, 0, "no message handled twice");
    let (by_a, by_b) = (a.handled().len(), b.handled().len());
    println!("3000 messages: {by_a} handled by process a, {by_b} by process b");
    assert!(by_a > 0 && by_b > 0, "both processes took a share");

    // Each process serves its metrics; together they count every message.
    let success =
        r#"nats_consumer_messages_processed_total{consumer="proc-worker",status="success"}"#;
    let dead = r#"nats_consumer_dead_letters_total{consumer="proc-worker",reason="undecodable"}"#;
    let scrapes = eventually("metrics add up", Duration::from_secs(10), || async {
        let scrapes = [scrape(&metrics_a), scrape(&metrics_b)];
        let total = |name: &str| scrapes.iter().map(|s| sample(s, name)).sum::<f64>();
        (total(success) == N as f64 && total(dead) == 1.0).then_some(scrapes)
    })
    .await;
    for name in [
        "nats_consumer_messages_processed_total",
        "nats_consumer_message_processing_duration_seconds_bucket",
        "nats_consumer_lag",
        "nats_consumer_ack_pending",
    ] {
        assert!(scrapes.iter().all(|s| s.contains(name)), "{name} missing");
    }
    assert!(
        scrapes
            .iter()
            .any(|s| s.contains("nats_consumer_dead_letters_total"))
    );

    a.signal("TERM");
    b.signal("TERM");
    assert!(a.wait().success());
    assert!(b.wait().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_held_by_a_killed_worker_are_redelivered_to_its_successor() {
    let (nats, js, dir) = setup().await;
    let mut doomed = spawn(&nats, dir.path(), "doomed", &[]);
    const N: u64 = 200;
    publish_jobs(&js, 0..N, |_| 200).await;
    eventually(
        "the worker is mid-batch",
        Duration::from_secs(30),
        || async {
            let held = consumer(&js).await?.num_ack_pending;
            (doomed.handled().len() >= 20 && held > 0).then_some(())
        },
    )
    .await;
    doomed.signal("KILL");
    let before = doomed.handled().len();
    assert!(!doomed.wait().success());

    let mut successor = spawn(
        &nats,
        dir.path(),
        "successor",
        &[("CHILD_MAX_WORK_MS", "0")],
    );
    let counts = all_handled(&[&doomed, &successor], N, Duration::from_secs(60)).await;
    let again = counts.values().filter(|&&c| c > 1).count();
    println!(
        "SIGKILL after {before} of {N} handled: 0 lost, {again} handled twice (finished but not acked when killed)"
    );
    eventually("all acked", Duration::from_secs(20), || async {
        let info = consumer(&js).await?;
        (info.num_ack_pending == 0 && info.num_pending == 0).then_some(())
    })
    .await;
    successor.signal("TERM");
    assert!(successor.wait().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_or_returns_in_flight_messages_and_exits_zero() {
    let (nats, js, dir) = setup().await;
    // Every tenth job would run for a minute: past the 1 s grace, it must be returned.
    let env = [("CHILD_SPEC", "slow"), ("SHUTDOWN_GRACE_SECS", "1")];
    let mut first = spawn(&nats, dir.path(), "first", &env);
    const N: u64 = 100;
    publish_jobs(&js, 0..N, |id| if id % 10 == 0 { 60_000 } else { 300 }).await;
    eventually("messages in flight", Duration::from_secs(30), || async {
        let held = consumer(&js).await?.num_ack_pending;
        (first.handled().len() >= 5 && held > 0).then_some(())
    })
    .await;
    first.signal("TERM");
    let status = first.wait();
    assert!(status.success(), "exit status {status}");

    // Unfinished messages were returned (nak), not left to the 30 s ack wait: a
    // successor gets every one of them well within it. (A nak'd message still counts
    // as ack-pending on the server until it is redelivered, so that count proves nothing.)
    let finished = tally(&[&first]);
    assert!(finished.values().all(|&c| c == 1));

    let env = [("CHILD_SPEC", "slow"), ("CHILD_MAX_WORK_MS", "0")];
    let mut second = spawn(&nats, dir.path(), "second", &env);
    let counts = all_handled(&[&first, &second], N, SLOW_REDELIVERY.ack_wait / 3).await;
    assert_eq!(counts.len() as u64, N, "zero lost");
    println!(
        "SIGTERM: {} finished by the first worker, {} returned and handled by the second",
        finished.len(),
        second.handled().len()
    );
    second.signal("TERM");
    assert!(second.wait().success());
}
