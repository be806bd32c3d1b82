#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod args;
pub mod backup;
pub mod dlq;
mod error;
pub mod output;
pub mod status;
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
        Command::Backup(args) => {
            let source = match (args.stream, args.kv) {
                (Some(stream), None) => backup::Source::Stream(stream),
                (None, Some(bucket)) => backup::Source::Kv(bucket),
                _ => return Err(Error::new(ErrorKind::Usage, "give --stream or --kv")),
            };
            let manifest = backup::backup(&client, &source, &args.dir, true).await?;
            let summary = serde_json::json!({
                "stream": manifest.stream,
                "dir": args.dir,
                "messages": manifest.messages,
                "first_sequence": manifest.first_sequence,
                "last_sequence": manifest.last_sequence,
                "segments": manifest.segments.len(),
            });
            print_summary(json, &summary, || {
                format!(
                    "backed up {} messages of {} (sequences {}..={}) into {}",
                    manifest.messages,
                    manifest.stream,
                    manifest.first_sequence,
                    manifest.last_sequence,
                    args.dir.display()
                )
            })?;
            0
        }
        Command::Restore(args) => {
            let options = backup::RestoreOptions {
                force: args.force,
                replicas: args.replicas,
                renumber: args.renumber,
                progress: true,
            };
            let summary = backup::restore(&js, &args.dir, options).await?;
            let value = serde_json::to_value(&summary)
                .map_err(|e| Error::with_source(ErrorKind::Io, "writing JSON", e))?;
            print_summary(json, &value, || {
                format!(
                    "restored {} messages into {} (R{}; sequence numbers {}{})",
                    summary.messages,
                    summary.stream,
                    summary.replicas,
                    if summary.sequences_kept {
                        "kept"
                    } else {
                        "renumbered"
                    },
                    if summary.replaced {
                        "; the existing stream was replaced"
                    } else {
                        ""
                    }
                )
            })?;
            0
        }
        Command::Status(args) => status_command(&client, &args, json).await?,
    };
    let _ = client.flush().await;
    Ok(code)
}

fn print_summary(
    json: bool,
    value: &serde_json::Value,
    text: impl FnOnce() -> String,
) -> Result<(), Error> {
    if json {
        let out = serde_json::to_string_pretty(value)
            .map_err(|e| Error::with_source(ErrorKind::Io, "writing JSON", e))?;
        println!("{out}");
    } else {
        println!("{}", text());
    }
    Ok(())
}

/// `status`: asks until healthy or `--wait` has passed, prints the last report.
async fn status_command(
    client: &async_nats::Client,
    args: &StatusArgs,
    json: bool,
) -> Result<u8, Error> {
    let thresholds = status::Thresholds {
        shard_total: args.shard_total,
        max_lag: args.max_lag,
        max_idle: args.max_idle,
        dead_letter_window: args.dead_letter_window,
        max_new_dead_letters: args.max_new_dead_letters,
        max_node_silence: args.max_node_silence,
    };
    let deadline = tokio::time::Instant::now() + args.wait;
    let report = loop {
        let report = status::check(client, &thresholds, args.gateway_timeout).await?;
        if report.healthy || tokio::time::Instant::now() >= deadline {
            break report;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    };
    if json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| Error::with_source(ErrorKind::Io, "writing JSON", e))?;
        println!("{text}");
    } else {
        print!("{}", status::render(&report, output::colour_stdout()));
    }
    Ok(if report.healthy { 0 } else { EXIT_NO })
}
