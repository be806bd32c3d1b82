//! No command worker running: the service defers each interaction itself in time,
//! and a worker started later answers each one once (an edit) within the token's
//! life, though its offers find no request waiting any more.

mod common;

use shardline_discord_sim::{HttpPlan, Verdict};
use shardline_proto::topology::{COMMAND_WORKER, COMMANDS};
use shardline_testkit::eventually;
use tokio_util::sync::CancellationToken;

use common::{Base, PATIENCE, WIDE_COMMANDS, command, discord};

const N: u64 = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_worker_the_service_defers_and_a_later_worker_answers() {
    let base = Base::start().await;
    let shutdown = CancellationToken::new();
    let service = base.service(shutdown.clone(), |_| {}).await;
    let http = discord(service.addr());
    let interactions: Vec<_> = (0..N).map(|i| command("fast", 500 + i)).collect();
    let records = http
        .play(HttpPlan {
            interactions,
            rate_per_second: Some(50),
            invalid_every: None,
        })
        .await;
    for r in &records {
        assert_eq!(r.verdict, Verdict::Answered, "{r:?}");
        assert_eq!(r.response_type, Some(5), "deferred by the service");
    }
    assert_eq!(base.stored().await, N, "every interaction stored for later");
    assert!(base.completions().is_empty());

    let worker = base.worker(&WIDE_COMMANDS, shutdown.clone()).await;
    let completions = eventually("every interaction edited", PATIENCE, || async {
        let completions = base.completions();
        (completions.len() as u64 == N).then_some(completions)
    })
    .await;
    for r in &records {
        let edits = &completions[&r.token];
        assert_eq!(edits.len(), 1, "one answer: {edits:?}");
        assert_eq!(edits[0].kind, "edit");
        assert!(edits[0].body.contains("fast done"), "{:?}", edits[0]);
    }
    // Nothing more arrives: every message was acknowledged.
    eventually("the stream drained", PATIENCE, || async {
        let stream = base.js.get_stream_no_info(COMMANDS.name).await.ok()?;
        let info = stream.consumer_info(COMMAND_WORKER.durable).await.ok()?;
        (info.num_ack_pending == 0 && info.num_pending == 0).then_some(())
    })
    .await;
    assert_eq!(
        base.completions().values().map(Vec::len).sum::<usize>() as u64,
        N
    );

    shutdown.cancel();
    service.stopped().await;
    worker.await.unwrap();
}
