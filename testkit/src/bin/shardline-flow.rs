//! `shardline-flow`: the demo's window on the router. Counts every message per
//! subject as the gateway publishes it, and shows how far each worker's durable
//! consumer has got, every 2 s, for `FLOW_SECONDS` (default 30). The application's
//! eligibility checks and syncs are counted by kind, not per member.
//!
//! Environment: `NATS_URL` (default `nats://127.0.0.1:4222`), `FLOW_SECONDS`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use shardline_proto::{eligibility, topology};

const CONSUMERS: [topology::ConsumerSpec; 4] = [
    topology::EVENT_WORKER,
    topology::COMMAND_WORKER,
    topology::ELIGIBILITY_WORKER,
    topology::SYNC_WORKER,
];

/// The row a subject is counted in: eligibility subjects name a member, so they are
/// counted by kind.
fn row(subject: &str) -> String {
    for prefix in [eligibility::CHECK_PREFIX, eligibility::SYNC_PREFIX] {
        if subject.starts_with(prefix) {
            return format!("{prefix}.*.*");
        }
    }
    subject.to_owned()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let seconds: u64 = std::env::var("FLOW_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let client = async_nats::connect(&url).await?;
    let js = async_nats::jetstream::new(client.clone());
    let mut events = client.subscribe("events.>").await?;
    let mut commands = client.subscribe("commands.>").await?;
    let mut checks = client.subscribe(eligibility::CHECKS).await?;
    let mut syncs = client.subscribe(eligibility::SYNCS).await?;
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    tick.tick().await;
    while started.elapsed() < Duration::from_secs(seconds) {
        tokio::select! {
            Some(m) = events.next() => *counts.entry(m.subject.to_string()).or_default() += 1,
            Some(m) = commands.next() => *counts.entry(m.subject.to_string()).or_default() += 1,
            Some(m) = checks.next() => *counts.entry(row(&m.subject)).or_default() += 1,
            Some(m) = syncs.next() => *counts.entry(row(&m.subject)).or_default() += 1,
            _ = tick.tick() => print_table(&js, &counts, started.elapsed()).await,
        }
    }
    print_table(&js, &counts, started.elapsed()).await;
    Ok(())
}

async fn print_table(
    js: &async_nats::jetstream::Context,
    counts: &BTreeMap<String, u64>,
    elapsed: Duration,
) {
    let total: u64 = counts.values().sum();
    println!(
        "\n--- {:>5.1}s: {total} messages published ---",
        elapsed.as_secs_f64()
    );
    println!("{:<34} {:>8} {:>8}", "subject", "count", "per s");
    for (subject, count) in counts {
        let rate = *count as f64 / elapsed.as_secs_f64().max(0.001);
        println!("{subject:<34} {count:>8} {rate:>8.1}");
    }
    for consumer in CONSUMERS {
        let durable = consumer.durable;
        let Ok(stream) = js.get_stream_no_info(consumer.stream).await else {
            continue;
        };
        match stream.consumer_info(durable).await {
            Ok(info) => println!(
                "worker {durable:<20} delivered {:>7}  acked through seq {:>7}  pending {:>5}  in flight {:>4}",
                info.delivered.stream_sequence,
                info.ack_floor.stream_sequence,
                info.num_pending,
                info.num_ack_pending
            ),
            Err(_) => println!("worker {durable:<20} (no consumer yet)"),
        }
    }
}
