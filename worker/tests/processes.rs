//! Worker processes: real OS processes running the worker runtime through
//! `cli::main`, as the worker binaries do (see `common/procs.rs`): sharing a consumer,
//! killed, and stopped with SIGTERM.

mod common;
#[path = "common/procs.rs"]
mod procs;

use std::io::Write;
use std::time::Duration;

use async_nats::jetstream;
use procs::{SLOW_REDELIVERY, all_handled, consumer, publish_jobs, spawn, tally};
use shardline_testkit::{NatsServer, eventually};

/// The child process the tests start.
#[test]
#[ignore = "entry point of the worker processes the other tests start"]
fn child_worker() {
    procs::child_main();
}

async fn setup() -> (NatsServer, jetstream::Context, tempfile::TempDir) {
    let (nats, _, js) = common::nats_with_events().await;
    (nats, js, tempfile::tempdir().unwrap())
}

/// A free loopback address for a child's `/metrics`.
fn free_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// `GET /metrics` from a child's metrics address.
fn scrape(addr: &str) -> String {
    try_scrape(addr).expect("the child serves /metrics")
}

/// `GET /metrics`, or `None` while nothing listens yet.
fn try_scrape(addr: &str) -> Option<String> {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).ok()?;
    Some(body)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_series_is_at_zero_before_the_first_message() {
    let (nats, _js, dir) = setup().await;
    let addr = free_addr();
    let mut worker = spawn(&nats, dir.path(), "idle", &[("METRICS_ADDR", &addr)]);
    let c = r#"consumer="proc-worker""#;
    let mut want: Vec<String> = ["success", "retry", "terminal"]
        .iter()
        .map(|s| format!(r#"nats_consumer_messages_processed_total{{{c},status="{s}"}} 0"#))
        .collect();
    want.extend(
        ["terminal", "undecodable", "max_deliveries"]
            .iter()
            .map(|r| format!(r#"nats_consumer_dead_letters_total{{{c},reason="{r}"}} 0"#)),
    );
    want.push(format!(
        "nats_consumer_message_processing_duration_seconds_count{{{c}}} 0"
    ));
    want.push(format!("nats_consumer_lag{{{c}}} 0"));
    want.push(format!("nats_consumer_ack_pending{{{c}}} 0"));
    let scrape = eventually(
        "the worker registered its series",
        Duration::from_secs(20),
        || {
            let addr = addr.clone();
            async move {
                let scrape = try_scrape(&addr)?;
                scrape.contains("nats_consumer_lag").then_some(scrape)
            }
        },
    )
    .await;
    for line in &want {
        assert!(
            scrape.lines().any(|l| l == line),
            "{line} missing before the first message:\n{scrape}"
        );
    }
    worker.signal("TERM");
    assert!(worker.wait().success());
}
