//! `shardline-bench`: see the crate README.

use clap::Parser;
use shardline_bench::cli::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::RecordFixture { path }) => shardline_bench::fixture::record(&path),
        Some(Command::Role(role)) => shardline_bench::cli::run_role(role).await,
        None => shardline_bench::report::run(cli.bench.effective()).await,
    }
}
