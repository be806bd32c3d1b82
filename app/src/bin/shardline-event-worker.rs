//! `shardline-event-worker`: guild and member events on the `event-worker` consumer,
//! recorded in PostgreSQL; member joins and updates ask for an eligibility check.

use clap::Parser;
use shardline_app::{DatabaseArgs, PgStore, events};
use shardline_proto::topology::{ELIGIBILITY, EVENT_WORKER};
use shardline_worker::{Worker, cli};

#[derive(Parser)]
#[command(name = "shardline-event-worker", version, about)]
struct Args {
    #[command(flatten)]
    worker: cli::WorkerArgs,

    #[command(flatten)]
    database: DatabaseArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let database = args.database.load()?;
    let replicas = args.worker.stream_replicas;
    cli::main("shardline-event-worker", args.worker, |client| async move {
        let db = shardline_app::start(&database, &client, &[&ELIGIBILITY], replicas).await?;
        Ok(Worker::new(
            &EVENT_WORKER,
            events::handlers(PgStore::new(db)),
        ))
    })
    .await
}
