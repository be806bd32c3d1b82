//! `shardline-sync-worker`: role syncs on the `sync-worker` consumer, applied with
//! Discord's member-role endpoints through the fleet's REST proxy.

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use shardline_app::DatabaseArgs;
use shardline_app::sync::{RoleSync, proxy_client};
use shardline_proto::eligibility::SYNCS;
use shardline_proto::topology::SYNC_WORKER;
use shardline_worker::{Handlers, Worker, cli};

#[derive(Parser)]
#[command(name = "shardline-sync-worker", version, about)]
struct Args {
    #[command(flatten)]
    worker: cli::WorkerArgs,

    #[command(flatten)]
    database: DatabaseArgs,

    /// The REST proxy (`shardline-rest`), `http://host:port`: it holds the bot token
    /// and the fleet's rate limits, so the sync worker has neither.
    #[arg(long, env = "DISCORD_API_URL")]
    discord_api_url: String,

    /// Longest the proxy may hold one role change for a rate limit, in milliseconds,
    /// before refusing it (the sync is then retried after the time it gives).
    #[arg(long, env = "DISCORD_MAX_WAIT_MS", default_value_t = 8000)]
    discord_max_wait_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let database = args.database.load()?;
    anyhow::ensure!(
        args.discord_api_url.starts_with("http://") || args.discord_api_url.starts_with("https://"),
        "DISCORD_API_URL must be http://host:port (the REST proxy)"
    );
    let discord = Arc::new(proxy_client(
        &args.discord_api_url,
        Duration::from_millis(args.discord_max_wait_ms),
    ));
    let replicas = args.worker.stream_replicas;
    cli::main("shardline-sync-worker", args.worker, |client| async move {
        let db = shardline_app::start(&database, &client, &[], replicas).await?;
        let handlers = Handlers::new().on(SYNCS, RoleSync::new(db, discord));
        Ok(Worker::new(&SYNC_WORKER, handlers))
    })
    .await
}
