//! `shardline-command-worker`: interactions on the `command-worker` consumer, deferred
//! through Discord's REST API, then run by command name.

use clap::Parser;
use shardline_proto::topology::COMMAND_WORKER;
use shardline_worker::commands::{self, InteractionHandler};
use shardline_worker::{Worker, cli};

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    worker: cli::WorkerArgs,

    /// Discord's API base URL; `http://host:port` points at a proxy or the simulator.
    #[arg(long, env = "DISCORD_API_URL")]
    discord_api_url: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Interaction responses are authorized by the interaction token: no bot token.
    let http = commands::DiscordHttp::new(args.discord_api_url.as_deref(), None);
    cli::main(
        "shardline-command-worker",
        args.worker,
        |client| async move {
            let js = async_nats::jetstream::new(client);
            let handler = InteractionHandler::new(&js, http, commands::reference()).await?;
            Ok(Worker::new(&COMMAND_WORKER, commands::handlers(handler)))
        },
    )
    .await
}
