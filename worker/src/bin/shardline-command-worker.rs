//! `shardline-command-worker`: interactions on the `command-worker` consumer.

use clap::Parser;
use shardline_proto::topology::COMMAND_WORKER;
use shardline_worker::{Worker, cli, commands};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = cli::WorkerArgs::parse();
    cli::main(
        "shardline-command-worker",
        args,
        Worker::new(&COMMAND_WORKER, commands::handlers()),
    )
    .await
}
