//! `shardline-command-worker`: interactions on the `command-worker` consumer, deferred
//! through Discord's REST API, then run by command name: `/ping`, and the
//! application's `/verify` and `/resync`, which feed the eligibility pipeline.

use clap::Parser;
use shardline_app::{DatabaseArgs, PgStore};
use shardline_proto::topology::{COMMAND_WORKER, ELIGIBILITY};
use shardline_worker::commands::{self, InteractionHandler};
use shardline_worker::{Worker, cli};

#[derive(Parser)]
#[command(name = "shardline-command-worker", version, about)]
struct Args {
    #[command(flatten)]
    worker: cli::WorkerArgs,

    #[command(flatten)]
    database: DatabaseArgs,

    /// Discord's API base URL; `http://host:port` points at a proxy or the simulator.
    #[arg(long, env = "DISCORD_API_URL")]
    discord_api_url: Option<String>,

    /// Checks `/resync` asks for per second at most (one per member of the guild).
    #[arg(long, env = "RESYNC_CHECKS_PER_SECOND", default_value_t = 200)]
    resync_checks_per_second: u32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let database = args.database.load()?;
    anyhow::ensure!(
        args.resync_checks_per_second > 0,
        "RESYNC_CHECKS_PER_SECOND must be above 0"
    );
    let replicas = args.worker.stream_replicas;
    // Interaction responses are authorized by the interaction token: no bot token.
    let http = commands::DiscordHttp::new(args.discord_api_url.as_deref(), None);
    let rate = args.resync_checks_per_second;
    cli::main(
        "shardline-command-worker",
        args.worker,
        |client| async move {
            let db = shardline_app::start(&database, &client, &[&ELIGIBILITY], replicas).await?;
            let table = shardline_app::commands::table(PgStore::new(db), rate);
            let js = async_nats::jetstream::new(client);
            let handler = InteractionHandler::new(&js, http, table).await?;
            Ok(Worker::new(&COMMAND_WORKER, commands::handlers(handler)))
        },
    )
    .await
}
