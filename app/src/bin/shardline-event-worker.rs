//! `shardline-event-worker`: guild and member events on the `event-worker` consumer,
//! recorded in the in-memory store.

use clap::Parser;
use shardline_app::events;
use shardline_app::store::InMemoryStore;
use shardline_proto::topology::EVENT_WORKER;
use shardline_worker::{Worker, cli};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = cli::WorkerArgs::parse();
    cli::main("shardline-event-worker", args, |_| async {
        Ok(Worker::new(
            &EVENT_WORKER,
            events::handlers(InMemoryStore::new()),
        ))
    })
    .await
}
