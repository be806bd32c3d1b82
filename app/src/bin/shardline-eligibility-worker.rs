//! `shardline-eligibility-worker`: eligibility checks on the `eligibility-worker`
//! consumer, evaluated against the guild's rules in PostgreSQL; asks for a role sync
//! when a member's roles must change.

use clap::Parser;
use shardline_app::DatabaseArgs;
use shardline_app::eligibility::{EligibilityCheck, report_unusable_rules};
use shardline_proto::eligibility::CHECKS;
use shardline_proto::topology::{ELIGIBILITY, ELIGIBILITY_WORKER};
use shardline_worker::{Handlers, Worker, cli};

#[derive(Parser)]
#[command(name = "shardline-eligibility-worker", version, about)]
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
    cli::main(
        "shardline-eligibility-worker",
        args.worker,
        |client| async move {
            let db = shardline_app::start(&database, &client, &[&ELIGIBILITY], replicas).await?;
            let skipped = report_unusable_rules(&db).await?;
            tracing::info!(skipped, "rules checked");
            let handlers = Handlers::new().on(CHECKS, EligibilityCheck::new(db));
            Ok(Worker::new(&ELIGIBILITY_WORKER, handlers))
        },
    )
    .await
}
