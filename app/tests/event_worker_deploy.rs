//! The event worker binary through rolling deploys: member and guild events arrive
//! at 400 a second while `shardline-event-worker` processes are stopped (SIGTERM) and
//! replaced, caught up and mid-backlog, writing to PostgreSQL; every event is acked
//! and nothing is dead-lettered.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use shardline_proto::topology::{DEAD_LETTER, EVENTS};
use shardline_testkit::{NatsServer, PgServer, eventually, init_tracing};

/// Events per 10 ms tick: 400 a second.
const PER_TICK: u64 = 4;
const PATIENCE: Duration = Duration::from_secs(60);

async fn dead_letters(js: &jetstream::Context) -> u64 {
    match js.get_stream(DEAD_LETTER.name).await {
        Ok(mut stream) => stream.info().await.unwrap().state.messages,
        Err(_) => 0,
    }
}

/// The event worker binary, as a deployment runs it.
struct EventWorker(std::process::Child);

impl EventWorker {
    fn start(nats: &NatsServer, pg: &PgServer) -> Self {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_shardline-event-worker"))
            .env("NATS_URL", nats.url())
            .env("DATABASE_URL", pg.url())
            .env("RUST_LOG", "warn")
            .spawn()
            .unwrap();
        Self(child)
    }

    fn stop(mut self) {
        let pid = self.0.id().to_string();
        let killed = std::process::Command::new("kill")
            .args(["-s", "TERM", &pid])
            .status();
        assert!(killed.unwrap().success());
        let status = self.0.wait().unwrap();
        assert!(
            status.success(),
            "the event worker exits 0 on SIGTERM, not {status}"
        );
    }
}

impl Drop for EventWorker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Member and guild events, as the gateway publishes them, at 400 a second.
fn publish_events(js: jetstream::Context, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    use rand::{Rng, SeedableRng};
    use shardline_proto::subject;
    const EVENTS: [(&str, &str); 4] = [
        ("GUILD_MEMBER_ADD", subject::MEMBER_JOIN),
        ("GUILD_MEMBER_UPDATE", subject::MEMBER_UPDATE),
        ("GUILD_MEMBER_REMOVE", subject::MEMBER_LEAVE),
        ("TYPING_START", "events.typing.start"),
    ];
    tokio::spawn(async move {
        let mut rng = rand::rngs::StdRng::seed_from_u64(12);
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        let (mut acks, mut n) = (Vec::new(), 0u64);
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            for _ in 0..PER_TICK {
                let (event, subject) = EVENTS[rng.random_range(0..EVENTS.len())];
                let guild = shardline_discord_sim::synthetic_guild(0, 1, rng.random_range(0..8));
                let body = shardline_discord_sim::sample(event, guild, &mut rng);
                acks.push(js.publish(subject, body.into()).await.unwrap());
                n += 1;
            }
        }
        for ack in acks {
            ack.await.unwrap();
        }
        n
    })
}

async fn event_worker(js: &jetstream::Context) -> Option<jetstream::consumer::Info> {
    let stream = js.get_stream_no_info("EVENTS").await.ok()?;
    stream
        .consumer_info(shardline_proto::topology::EVENT_WORKER.durable)
        .await
        .ok()
}

/// Waits until the event worker has taken `at_least` messages and holds no backlog.
async fn event_worker_caught_up(js: &jetstream::Context, at_least: u64) {
    eventually("the event worker caught up", PATIENCE, || async {
        let info = event_worker(js).await?;
        (info.delivered.stream_sequence >= at_least && info.num_pending == 0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_worker_binary_dead_letters_nothing_across_rolling_deploys() {
    init_tracing();
    let nats = NatsServer::start();
    let pg = PgServer::start();
    let js = jetstream::new(nats.client().await);
    shardline_jetstream::reconcile_stream(&js, &EVENTS, Default::default())
        .await
        .unwrap();
    let halt = Arc::new(AtomicBool::new(false));
    let publisher = publish_events(js.clone(), halt.clone());

    // Caught up, successor first; then with messages in flight; then with nobody
    // left to take over, so the next one starts on a backlog.
    let first = EventWorker::start(&nats, &pg);
    event_worker_caught_up(&js, 400).await;
    let second = EventWorker::start(&nats, &pg);
    first.stop();
    event_worker_caught_up(&js, 800).await;
    eventually("messages in flight", PATIENCE, || async {
        (event_worker(&js).await?.num_ack_pending > 0).then_some(())
    })
    .await;
    second.stop();
    eventually("a backlog", PATIENCE, || async {
        (event_worker(&js).await?.num_pending >= 400).then_some(())
    })
    .await;
    let third = EventWorker::start(&nats, &pg);
    event_worker_caught_up(&js, 1600).await;
    let last = EventWorker::start(&nats, &pg);
    third.stop();

    halt.store(true, Ordering::Relaxed);
    let published = publisher.await.unwrap();
    let info = eventually("every event acked", PATIENCE, || async {
        let info = event_worker(&js).await?;
        (info.ack_floor.stream_sequence == published && info.num_ack_pending == 0).then_some(info)
    })
    .await;
    last.stop();
    let dead = dead_letters(&js).await;
    println!(
        "shardline-event-worker, {published} events at 400/s through 3 SIGTERMs: all acked \
         (ack floor {}), {dead} dead-lettered",
        info.ack_floor.stream_sequence
    );
    assert_eq!(dead, 0, "nothing dead-lettered");
}
