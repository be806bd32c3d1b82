//! Worker processes for the tests that start them (included with `#[path]`): real OS
//! processes running the worker runtime through `cli::main`, as the worker binaries
//! do. A test binary re-executes itself as the child (its ignored `child_worker` test
//! calls [`child_main`]); each child appends `id delivered` for every message it
//! handles to its own file before acking, so the parent can count what was
//! processed, by whom, how often, and on which delivery.

#![allow(dead_code)]

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

/// Subject the jobs are published on.
pub const JOB_SUBJECT: &str = "events.proc.job";

/// Two seconds to ack: a killed worker's messages come back quickly.
pub static QUICK_REDELIVERY: ConsumerSpec = ConsumerSpec {
    durable: "proc-worker",
    filter_subjects: &["events.proc.>"],
    max_ack_pending: 20,
    ack_wait: Duration::from_secs(2),
    ..EVENT_WORKER
};

/// Thirty seconds to ack: only an explicit ack or nak frees a message in a test's time.
pub static SLOW_REDELIVERY: ConsumerSpec = ConsumerSpec {
    ack_wait: Duration::from_secs(30),
    ..QUICK_REDELIVERY
};

#[derive(Deserialize)]
struct Job {
    id: u64,
    work_ms: u64,
}

/// Does the job's work, then notes its id and delivery count.
struct Recorder {
    log: PathBuf,
    max_work: u64,
}

impl Handler for Recorder {
    type Payload = Job;

    async fn handle(&self, job: Job, cx: &Context) -> Outcome {
        tokio::time::sleep(Duration::from_millis(job.work_ms.min(self.max_work))).await;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        file.write_all(format!("{} {}\n", job.id, cx.delivered).as_bytes())
            .unwrap();
        Outcome::Success
    }
}

/// The child process: a worker configured by environment variables.
pub fn child_main() {
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

/// A child worker process and the file it records into.
pub struct Proc {
    child: Child,
    log: PathBuf,
}

/// Starts a child worker named `name` (its record file in `dir`).
pub fn spawn(nats: &NatsServer, dir: &Path, name: &str, env: &[(&str, &str)]) -> Proc {
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
    /// `(id, delivery count)` of every message handled, in order.
    pub fn records(&self) -> Vec<(u64, i64)> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let (id, delivered) = l.split_once(' ').unwrap();
                (id.parse().unwrap(), delivered.parse().unwrap())
            })
            .collect()
    }

    /// Ids of every message handled, in order.
    pub fn handled(&self) -> Vec<u64> {
        self.records().into_iter().map(|(id, _)| id).collect()
    }

    /// Sends `signal` (`TERM`, `KILL`) to the process.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-s", signal, &pid])
                .status()
                .unwrap()
                .success()
        );
    }

    /// Waits for the process to exit.
    pub fn wait(&mut self) -> ExitStatus {
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

/// Publishes one job per id and waits for every ack.
pub async fn publish_jobs(
    js: &jetstream::Context,
    ids: std::ops::Range<u64>,
    work_ms: impl Fn(u64) -> u64,
) {
    let mut acks = Vec::new();
    for id in ids {
        acks.push(publish_job(js, id, work_ms(id)).await);
    }
    for ack in acks {
        ack.await.unwrap();
    }
}

/// Queues one job; the returned future resolves with the stream's ack.
pub async fn publish_job(
    js: &jetstream::Context,
    id: u64,
    work_ms: u64,
) -> jetstream::context::PublishAckFuture {
    let body = serde_json::json!({ "id": id, "work_ms": work_ms }).to_string();
    js.publish(JOB_SUBJECT, body.into()).await.unwrap()
}

/// The consumer's state, once a worker has declared it.
pub async fn consumer(js: &jetstream::Context) -> Option<jetstream::consumer::Info> {
    let stream = js.get_stream_no_info("EVENTS").await.ok()?;
    stream.consumer_info(QUICK_REDELIVERY.durable).await.ok()
}

/// How often each id was handled, over every process.
pub fn tally(procs: &[&Proc]) -> HashMap<u64, usize> {
    let mut counts = HashMap::new();
    for proc in procs {
        for id in proc.handled() {
            *counts.entry(id).or_default() += 1;
        }
    }
    counts
}

/// Waits until `n` distinct ids were handled over `procs`.
pub async fn all_handled(procs: &[&Proc], n: u64, limit: Duration) -> HashMap<u64, usize> {
    eventually("every job handled", limit, || async {
        let counts = tally(procs);
        (counts.len() as u64 == n).then_some(counts)
    })
    .await
}
