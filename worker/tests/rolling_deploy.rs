//! A rolling deploy is a SIGTERM under live traffic. Jobs keep arriving at about 400
//! a second while worker processes are stopped and replaced, caught up and in the
//! middle of a backlog, with and without a successor already running. A stopping
//! worker must never push a message's delivery count up more than once (a nak'd
//! message goes straight back to a pull request that is still open), so nothing is
//! dead-lettered, every job is handled, and every process exits 0.

mod common;
#[path = "common/procs.rs"]
mod procs;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use procs::{Proc, all_handled, consumer, publish_job, spawn, tally};
use shardline_proto::topology::DEAD_LETTER;
use shardline_testkit::{NatsServer, eventually};

/// The child process the test starts.
#[test]
#[ignore = "entry point of the worker processes the test starts"]
fn child_worker() {
    procs::child_main();
}

/// Jobs per 10 ms tick: 400 a second.
const PER_TICK: u64 = 4;
/// Each job's work: 20 in flight at 50 ms is 400 a second, no faster than jobs arrive,
/// so a worker running it in full never catches up with a backlog.
const WORK_MS: u64 = 50;
/// A worker with its work capped at this is ten times faster: it catches up.
const FAST: [(&str, &str); 2] = [("CHILD_SPEC", "slow"), ("CHILD_MAX_WORK_MS", "5")];
/// The full 50 ms per job: a backlog stays a backlog.
const SLOW: [(&str, &str); 1] = [("CHILD_SPEC", "slow")];
const PATIENCE: Duration = Duration::from_secs(60);

/// Publishes jobs at 400 a second until stopped; returns how many, all acked.
fn publish_steadily(
    js: jetstream::Context,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        let mut acks = Vec::new();
        let mut id = 0;
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            for _ in 0..PER_TICK {
                acks.push(publish_job(&js, id, WORK_MS).await);
                id += 1;
            }
            sent.store(id, Ordering::Relaxed);
        }
        for ack in acks {
            ack.await.unwrap();
        }
        id
    })
}

async fn caught_up(js: &jetstream::Context, worker: &Proc, at_least: usize) {
    eventually("the worker caught up", PATIENCE, || async {
        let info = consumer(js).await?;
        (worker.handled().len() >= at_least && info.num_pending == 0).then_some(())
    })
    .await;
}

async fn backlog(js: &jetstream::Context, at_least: u64) {
    eventually("a backlog", PATIENCE, || async {
        (consumer(js).await?.num_pending >= at_least).then_some(())
    })
    .await;
}

fn stop(worker: &mut Proc) {
    worker.signal("TERM");
    let status = worker.wait();
    assert!(status.success(), "a stopped worker exits 0, not {status}");
}

async fn dead_letters(js: &jetstream::Context) -> u64 {
    match js.get_stream(DEAD_LETTER.name).await {
        Ok(mut stream) => stream.info().await.unwrap().state.messages,
        Err(_) => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_live_traffic_dead_letters_nothing_and_loses_nothing() {
    let (nats, _, js): (NatsServer, _, _) = common::nats_with_events().await;
    let dir = tempfile::tempdir().unwrap();
    let (halt, sent) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let publisher = publish_steadily(js.clone(), halt.clone(), sent.clone());
    let mut workers = Vec::new();

    // 1. Caught up, successor already running (a rolling deploy starts it first).
    let mut first = spawn(&nats, dir.path(), "1-caught-up", &FAST);
    caught_up(&js, &first, 400).await;
    let second = spawn(&nats, dir.path(), "2-successor", &FAST);
    stop(&mut first);
    workers.push(first);

    // 2. Caught up, no successor: the backlog builds while nobody runs.
    let mut second = second;
    caught_up(&js, &second, 200).await;
    stop(&mut second);
    workers.push(second);
    backlog(&js, 400).await;

    // 3. In the middle of the backlog: this worker is no faster than the traffic.
    let mut third = spawn(&nats, dir.path(), "3-mid-backlog", &SLOW);
    eventually("the worker is busy in a backlog", PATIENCE, || async {
        let info = consumer(&js).await?;
        (third.handled().len() >= 100 && info.num_pending > 0 && info.num_ack_pending > 0)
            .then_some(())
    })
    .await;
    stop(&mut third);
    workers.push(third);

    // 4. Mid-backlog again, with a fast successor started just before the SIGTERM.
    let mut fourth = spawn(&nats, dir.path(), "4-mid-backlog", &SLOW);
    eventually("the worker is busy in a backlog", PATIENCE, || async {
        let info = consumer(&js).await?;
        (fourth.handled().len() >= 100 && info.num_pending > 0).then_some(())
    })
    .await;
    let mut last = spawn(&nats, dir.path(), "5-last", &FAST);
    stop(&mut fourth);
    workers.push(fourth);

    // 5. The last worker catches up; then the traffic stops and it drains.
    caught_up(&js, &last, 200).await;
    halt.store(true, Ordering::Relaxed);
    let published = publisher.await.unwrap();
    let everyone: Vec<&Proc> = workers.iter().chain([&last]).collect();
    all_handled(&everyone, published, PATIENCE).await;
    eventually("every message acked", PATIENCE, || async {
        let info = consumer(&js).await?;
        (info.num_pending == 0 && info.num_ack_pending == 0).then_some(())
    })
    .await;
    stop(&mut last);

    let everyone: Vec<&Proc> = workers.iter().chain([&last]).collect();
    let counts = tally(&everyone);
    let twice = counts.values().filter(|&&c| c > 1).count();
    let records: Vec<(u64, i64)> = everyone.iter().flat_map(|w| w.records()).collect();
    let redelivered = records.iter().filter(|(_, d)| *d > 1).count();
    let most = records.iter().map(|(_, d)| *d).max().unwrap_or(0);
    let dead = dead_letters(&js).await;
    let per_worker: Vec<usize> = everyone.iter().map(|w| w.handled().len()).collect();
    println!(
        "{published} jobs at 400/s through 4 SIGTERMs (handled per worker {per_worker:?}): \
         {} handled, 0 lost, {twice} handled twice, {redelivered} handled on a redelivery \
         (most deliveries of one message: {most}), {dead} dead-lettered",
        counts.len()
    );
    assert_eq!(counts.len() as u64, published, "every job handled");
    assert_eq!(dead, 0, "nothing dead-lettered");
    assert!(
        most <= 2,
        "a shutdown raised a delivery count more than once: {most}"
    );
    assert_eq!(
        twice, 0,
        "no job handled twice (every ack was flushed before exit)"
    );
}
