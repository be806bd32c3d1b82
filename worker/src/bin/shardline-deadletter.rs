//! `shardline-deadletter`: list dead letters, or replay them onto their original
//! subjects.

use clap::{Parser, Subcommand};
use shardline_jetstream::{ConnectOptions, NatsAuth, ReconcileOptions};
use shardline_proto::topology::DEAD_LETTER;
use shardline_worker::deadletter;

#[derive(Parser)]
#[command(about = "Inspect and replay Shardline's dead letters")]
struct Args {
    /// NATS server URL(s), comma separated.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,

    /// NATS credentials and TLS.
    #[command(flatten)]
    nats_auth: NatsAuth,

    /// Replicas of the DEAD_LETTER stream if this tool finds it missing.
    #[arg(long, env = "STREAM_REPLICAS", default_value_t = 1)]
    stream_replicas: usize,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Prints one line per dead letter: sequence, consumer, kind, deliveries, subject, reason.
    List {
        /// Only this consumer's dead letters.
        #[arg(long)]
        consumer: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Publishes dead letters back on their original subject and removes them.
    Replay {
        /// Only this consumer's dead letters.
        #[arg(long)]
        consumer: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let client = shardline_jetstream::connect(&ConnectOptions {
        url: args.nats_url,
        name: "shardline-deadletter".to_owned(),
        auth: args.nats_auth,
    })
    .await
    .map_err(|e| anyhow::anyhow!(e))?;
    let js = async_nats::jetstream::new(client);
    let replicas = args.stream_replicas;
    shardline_jetstream::ensure_stream(&js, &DEAD_LETTER, ReconcileOptions { replicas }).await?;
    match args.command {
        Command::List { consumer, limit } => {
            for letter in deadletter::list(&js, consumer.as_deref(), limit).await? {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    letter.sequence,
                    letter.consumer,
                    letter.kind,
                    letter.delivered,
                    letter.original_subject,
                    letter.reason
                );
            }
        }
        Command::Replay { consumer, limit } => {
            let replayed = deadletter::replay(&js, consumer.as_deref(), limit).await?;
            println!("replayed {replayed}");
        }
    }
    Ok(())
}
