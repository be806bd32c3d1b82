//! Handler chaining and the event worker's records, with events published to the
//! EVENTS stream directly (the gateway is not the point here):
//! - a member join whose handler runs twice (a retry after it published) asks for
//!   its eligibility check once, with an id derived from the event's own;
//! - through the event worker binary, a stale member update delivered after a newer
//!   one changes nothing, and a member event for a guild never seen creates the
//!   guild instead of being dead-lettered.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::HeaderMap;
use async_nats::jetstream;
use common::{Bin, Options, PATIENCE, Stack};
use shardline_app::events::MemberJoin;
use shardline_app::store::{InMemoryStore, Store};
use shardline_proto::eligibility::{Check, CheckReason};
use shardline_proto::headers;
use shardline_proto::subject::{MEMBER_JOIN, MEMBER_UPDATE};
use shardline_proto::topology::{ELIGIBILITY, EVENT_WORKER, EVENTS, RetryPolicy};
use shardline_testkit::{NatsServer, eventually, init_tracing};
use shardline_worker::{Context, Handler, Handlers, Outcome, Worker};
use tokio_util::sync::CancellationToken;

/// The headers the gateway sets on a dispatch of `session` at `sequence`, read at
/// `at` (Unix nanoseconds).
fn gateway_headers(session: &str, sequence: u64, at: u64, guild: u64) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(headers::MSG_ID, headers::msg_id(session, sequence).as_str());
    h.insert(headers::SEQUENCE, sequence.to_string().as_str());
    h.insert(headers::RECEIVED_AT, at.to_string().as_str());
    h.insert(headers::GUILD_ID, guild.to_string().as_str());
    h.insert(headers::SHARD_ID, "0");
    h
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn member(guild: u64, user: u64, roles: &[u64]) -> String {
    let roles: Vec<String> = roles.iter().map(u64::to_string).collect();
    serde_json::json!({
        "guild_id": guild.to_string(),
        "user": {"id": user.to_string(), "username": "u", "discriminator": "0", "avatar": null},
        "roles": roles,
        "joined_at": "2025-01-01T00:00:00.000000+00:00",
        "deaf": false, "mute": false, "flags": 0, "pending": false,
    })
    .to_string()
}

async fn publish(js: &jetstream::Context, subject: &str, headers: HeaderMap, body: String) {
    js.publish_with_headers(subject.to_owned(), headers, body.into())
        .await
        .unwrap()
        .await
        .unwrap();
}

/// Runs the real handler, then answers Retry the first time: the redelivery runs
/// it, and publishes, again.
struct RetryOnce<H>(H);

impl<H: Handler> Handler for RetryOnce<H> {
    type Payload = H::Payload;

    async fn handle(&self, payload: H::Payload, cx: &Context) -> Outcome {
        let outcome = self.0.handle(payload, cx).await;
        if cx.is_redelivery() {
            outcome
        } else {
            Outcome::retry()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_event_asks_for_its_check_once() {
    init_tracing();
    let nats = NatsServer::start();
    let client = nats.client().await;
    let js = jetstream::new(client.clone());
    for stream in [&EVENTS, &ELIGIBILITY] {
        shardline_jetstream::reconcile_stream(&js, stream, Default::default())
            .await
            .unwrap();
    }
    let store = InMemoryStore::new();
    let handlers = Handlers::new().on(MEMBER_JOIN, RetryOnce(MemberJoin(store.clone())));
    let shutdown = CancellationToken::new();
    let worker = Worker::new(&EVENT_WORKER, handlers)
        .retry_policy(RetryPolicy::fixed(Duration::from_millis(100)))
        .run(client, shutdown.clone());
    let worker = tokio::spawn(worker);

    let (guild, user) = (41 << 22, 42 << 22);
    for sequence in [7, 8] {
        let h = gateway_headers("session-a", sequence, now_nanos(), guild);
        publish(&js, MEMBER_JOIN, h, member(guild, user + sequence, &[])).await;
    }
    eventually("both events handled twice", PATIENCE, || async {
        let info = js
            .get_stream_no_info(EVENTS.name)
            .await
            .ok()?
            .consumer_info(EVENT_WORKER.durable)
            .await
            .ok()?;
        (info.ack_floor.stream_sequence == 2 && info.num_ack_pending == 0).then_some(())
    })
    .await;
    shutdown.cancel();
    worker.await.unwrap().unwrap();

    let mut stream = js.get_stream(ELIGIBILITY.name).await.unwrap();
    assert_eq!(
        stream.info().await.unwrap().state.messages,
        2,
        "one check per event"
    );
    // Handled concurrently: in either order.
    let mut checks = Vec::new();
    for seq in [1, 2] {
        let message = stream.get_raw_message(seq).await.unwrap();
        let id = message
            .headers
            .get(headers::MSG_ID)
            .unwrap()
            .as_str()
            .to_owned();
        let check: Check = serde_json::from_slice(&message.payload).unwrap();
        checks.push((
            id,
            message.subject.to_string(),
            check.user_id.get(),
            check.reason,
        ));
    }
    checks.sort_by(|a, b| a.0.cmp(&b.0));
    let want: Vec<_> = [7, 8]
        .map(|sequence| {
            let user = user + sequence;
            (
                format!("check:session-a:{sequence}"),
                format!("eligibility.check.{guild}.{user}"),
                user,
                CheckReason::Join,
            )
        })
        .into();
    assert_eq!(checks, want);
    assert!(
        store
            .member(guild, user + 7)
            .await
            .unwrap()
            .unwrap()
            .present
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_worker_orders_updates_and_creates_unknown_guilds() {
    let mut stack = Stack::start(Options {
        gateway: false,
        ..Options::default()
    })
    .await;
    let js = stack.js.clone();
    shardline_jetstream::reconcile_stream(&js, &EVENTS, Default::default())
        .await
        .unwrap();
    stack.start_worker(Bin::Event);

    // A guild the database has never seen, not even its GUILD_CREATE.
    let (guild, user) = (77 << 22, 78 << 22);
    let (newer_role, older_role) = (guild + 1, guild + 2);
    let read = now_nanos();
    publish(
        &js,
        MEMBER_JOIN,
        gateway_headers("s", 3, read, guild),
        member(guild, user, &[]),
    )
    .await;
    // Sequence 10 is delivered first; sequence 5 (read earlier) after it.
    let newer = gateway_headers("s", 10, read + 2_000, guild);
    publish(
        &js,
        MEMBER_UPDATE,
        newer,
        member(guild, user, &[newer_role]),
    )
    .await;
    let stale = gateway_headers("s", 5, read + 1_000, guild);
    publish(
        &js,
        MEMBER_UPDATE,
        stale,
        member(guild, user, &[older_role]),
    )
    .await;
    stack.until_idle().await;

    let client = stack.db.client().await.unwrap();
    let row = client
        .query_one(
            "SELECT g.active, g.available, m.present, m.roles, m.event_seq FROM guilds g \
             JOIN members m USING (guild_id) WHERE guild_id = $1 AND user_id = $2",
            &[&(guild as i64), &(user as i64)],
        )
        .await
        .unwrap();
    let (active, available, present): (bool, bool, bool) = (row.get(0), row.get(1), row.get(2));
    assert!(
        active && available && present,
        "the unknown guild was created"
    );
    assert_eq!(
        row.get::<_, Vec<i64>>(3),
        [newer_role as i64],
        "the stale update changed nothing"
    );
    assert_eq!(row.get::<_, i64>(4), 10);
    assert_eq!(stack.dead_letters().await, 0, "nothing dead-lettered");
    // Every member event asked for a check (the stale one too: a check reads the
    // current record, so it is harmless).
    assert_eq!(stack.published(ELIGIBILITY.name).await, 3);
    stack.stop().await;
}
