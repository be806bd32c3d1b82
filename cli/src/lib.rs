#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod args;
pub mod dlq;
mod error;
pub mod output;
pub mod topology;

pub use args::{
    BackupArgs, Cli, Command, DlqCommand, DlqFilter, RestoreArgs, StatusArgs, TopologyArgs,
    TopologyCommand,
};
pub use error::{Error, ErrorKind};

use shardline_jetstream::ConnectOptions;

/// Exit code of an answer of "no": unhealthy (`status`), drift (`topology diff`).
pub const EXIT_NO: u8 = 1;

/// Connects as the command line says.
///
/// # Errors
///
/// [`ErrorKind::Connect`] if no server accepts the connection or the credentials.
pub async fn connect(cli: &Cli) -> Result<async_nats::Client, Error> {
    shardline_jetstream::connect(&ConnectOptions {
        url: cli.nats_url.clone(),
        name: "shardline-cli".to_owned(),
        auth: cli.nats_auth.clone(),
    })
    .await
    .map_err(|e| {
        Error::new(
            ErrorKind::Connect,
            format!("connecting to NATS at {}: {e}", cli.nats_url),
        )
    })
}

/// Runs the command line and returns the process exit code: 0, or [`EXIT_NO`] when
/// the answer is no.
///
/// # Errors
///
/// See [`ErrorKind`]; each kind has its own exit code.
pub async fn run(cli: Cli) -> Result<u8, Error> {
    let client = connect(&cli).await?;
    let js = async_nats::jetstream::new(client.clone());
    let json = cli.json;
    let code = match cli.command {
        Command::Dlq { command } => {
            dlq::run(&js, command, json).await?;
            0
        }
        Command::Topology { command } => topology::run(&js, command, json).await?,
        Command::Status(_) | Command::Backup(_) | Command::Restore(_) => todo!(),
    };
    let _ = client.flush().await;
    Ok(code)
}
