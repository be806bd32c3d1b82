//! The application end to end on real parts: the simulator plays member joins,
//! moderator role changes, leaves, rejoins and `/verify` for 2 guilds and 2,000
//! members through the gateway; the event, eligibility, sync and command workers run
//! as processes (their documented settings), PostgreSQL holds the records, the REST
//! proxy carries the role changes to the simulator. When the pipeline is idle, every
//! member holds exactly what the rules say (counted at the simulator) and the
//! database holds every guild and member with the right state; nothing broke a
//! Discord limit and nothing was dead-lettered. Then the same with each worker
//! SIGKILLed once mid-run, and with PostgreSQL stopped for 10 s mid-run.

mod common;

use std::time::Duration;

use common::scenario::{self, Guild};
use common::{Bin, Options, PATIENCE, Stack};
use shardline_testkit::eventually;

/// Members per guild.
const MEMBERS: usize = 1000;
/// Dispatches per second the simulator plays.
const RATE: u32 = 400;

async fn stack() -> (Stack, Vec<Guild>) {
    let mut stack = Stack::start(Options::default()).await;
    for bin in [Bin::Event, Bin::Eligibility, Bin::Sync, Bin::Command] {
        stack.start_worker(bin);
    }
    let guilds = scenario::guilds(&stack.sim);
    scenario::set_up(&stack.sim, &stack.db, &guilds).await;
    (stack, guilds)
}

fn player(stack: &Stack, guilds: &[Guild]) -> tokio::task::JoinHandle<usize> {
    let (sim, guilds) = (stack.sim.clone(), guilds.to_vec());
    tokio::spawn(async move { scenario::play(&sim, &guilds, MEMBERS, RATE).await })
}

/// Checks the final state and prints what was counted.
async fn assert_final_state(stack: &Stack, guilds: &[Guild], played: usize, label: &str) {
    let roles = scenario::role_differences(&stack.sim, guilds, MEMBERS);
    assert!(
        roles.is_empty(),
        "{} role differences, first: {:?}",
        roles.len(),
        &roles[..roles.len().min(10)]
    );
    let records = scenario::record_differences(&stack.db, &stack.sim, guilds, MEMBERS).await;
    assert!(
        records.is_empty(),
        "{} record differences, first: {:?}",
        records.len(),
        &records[..records.len().min(10)]
    );
    let changes = stack.sim.role_changes();
    let added = changes
        .iter()
        .filter(|c| c.added && c.status == 204)
        .count();
    let removed = changes
        .iter()
        .filter(|c| !c.added && c.status == 204)
        .count();
    // A sync racing the member's leave meets 404 Unknown Member: done, not an error.
    let gone = changes.iter().filter(|c| c.status == 404).count();
    let other = changes
        .iter()
        .filter(|c| ![204, 404].contains(&c.status))
        .count();
    let members: usize = guilds.iter().map(|g| stack.sim.members(g.id).len()).sum();
    println!(
        "{label}: {played} dispatches played; {members} members present; {added} roles added, \
         {removed} removed, {gone} for members gone (404); {} checks, {} syncs; {} REST violations, \
         {} dead letters",
        stack
            .consumer(Bin::Eligibility.consumer())
            .await
            .map_or(0, |i| i.delivered.stream_sequence),
        stack
            .consumer(Bin::Sync.consumer())
            .await
            .map_or(0, |i| i.ack_floor.consumer_sequence),
        stack.sim.rest_violations(),
        stack.dead_letters().await,
    );
    assert_eq!(
        other, 0,
        "every role change answered 204, or 404 for a member gone"
    );
    let violations: Vec<_> = stack
        .sim
        .rest_requests()
        .into_iter()
        .filter(|r| r.violation.is_some())
        .map(|r| (r.method, r.route, r.violation))
        .collect();
    assert_eq!(
        stack.sim.rest_violations(),
        0,
        "no request broke a Discord limit: {violations:?}"
    );
    assert_eq!(stack.dead_letters().await, 0, "nothing dead-lettered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_turn_into_roles_end_to_end() {
    let (stack, guilds) = stack().await;
    let played = player(&stack, &guilds).await.unwrap();
    stack.until_idle().await;
    assert_final_state(&stack, &guilds, played, "end to end").await;
    stack.stop().await;
}

/// Waits until `bin`'s consumer has acknowledged `at_least` messages.
async fn handled(stack: &Stack, bin: Bin, at_least: u64) {
    eventually(&format!("{bin:?} worker busy"), PATIENCE, || async {
        let info = stack.consumer(bin.consumer()).await?;
        (info.ack_floor.consumer_sequence >= at_least).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_worker_killed_mid_run_changes_nothing() {
    let (mut stack, guilds) = stack().await;
    let play = player(&stack, &guilds);
    for (bin, at_least) in [(Bin::Event, 600), (Bin::Eligibility, 900), (Bin::Sync, 300)] {
        handled(&stack, bin, at_least).await;
        let worker = stack.worker(bin);
        worker.kill();
        worker.restart();
        println!("{bin:?} worker SIGKILLed after {at_least} messages and restarted");
    }
    let played = play.await.unwrap();
    stack.until_idle().await;
    assert_final_state(&stack, &guilds, played, "each worker killed once").await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_for_ten_seconds_mid_run() {
    let (mut stack, guilds) = stack().await;
    let play = player(&stack, &guilds);
    handled(&stack, Bin::Event, 400).await;
    let lag_at_stop = stack
        .consumer(Bin::Event.consumer())
        .await
        .unwrap()
        .num_pending;
    stack.pg.kill();
    // The outage itself lasts 10 s (the fault, not a synchronisation); the lag is
    // sampled while it lasts.
    let outage = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut most = lag_at_stop;
    while tokio::time::Instant::now() < outage {
        if let Some(info) = stack.consumer(Bin::Event.consumer()).await {
            most = most.max(info.num_pending);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    stack.pg.restart();
    println!("PostgreSQL down 10 s: event-worker lag {lag_at_stop} at the stop, {most} at most");
    assert!(most > lag_at_stop, "the lag grew while PostgreSQL was down");
    let played = play.await.unwrap();
    stack.until_idle().await;
    let mut retries = 0.0;
    for bin in [Bin::Event, Bin::Eligibility, Bin::Sync] {
        let labels = format!(r#"consumer="{}",status="retry""#, bin.consumer().durable);
        let worker = stack.workers.iter().find(|w| w.bin == bin).unwrap();
        // Registered at zero: missing only while a busy machine is slow to answer.
        retries += eventually(&format!("{bin:?} worker's metrics"), PATIENCE, || async {
            worker.metric("nats_consumer_messages_processed_total", &labels)
        })
        .await;
    }
    println!("handlers answered Retry {retries} times");
    assert!(
        retries > 0.0,
        "handlers answered Retry while the database was down"
    );
    assert_eq!(
        stack
            .consumer(Bin::Event.consumer())
            .await
            .unwrap()
            .num_pending,
        0,
        "the lag drained"
    );
    assert_final_state(&stack, &guilds, played, "PostgreSQL stopped 10 s").await;
    stack.stop().await;
}
