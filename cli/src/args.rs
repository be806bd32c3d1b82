//! The command line: one clap tree, parsed once in `main`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use shardline_jetstream::NatsAuth;
use shardline_worker::deadletter::{DeadKind, Filter};

use crate::output::parse_duration;

/// `shardline`: Shardline's operator CLI.
#[derive(Debug, Parser)]
#[command(
    name = "shardline",
    version,
    about = "Operate Shardline: status, dead letters, topology, backup and restore"
)]
pub struct Cli {
    /// NATS server URL(s), comma separated.
    #[arg(
        long,
        env = "NATS_URL",
        default_value = "nats://127.0.0.1:4222",
        global = true
    )]
    pub nats_url: String,

    /// NATS credentials and TLS (the `operator` user of terraform/nats/nats.conf).
    #[command(flatten)]
    pub nats_auth: NatsAuth,

    /// Print JSON instead of tables, for scripts.
    #[arg(long, env = "SHARDLINE_JSON", global = true)]
    pub json: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Shards, streams, consumers, dead letters and nodes; exits 1 when unhealthy.
    Status(StatusArgs),
    /// Dead letters: list, show, replay, purge.
    Dlq {
        /// What to do with them.
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// The declared JetStream topology against the live one.
    Topology {
        /// Diff or apply.
        #[command(subcommand)]
        command: TopologyCommand,
    },
    /// Writes a stream or KV bucket to a new directory.
    Backup(BackupArgs),
    /// Restores a stream or KV bucket from a backup directory.
    Restore(RestoreArgs),
}

/// Health thresholds of `status` (see docs/ops.md for the rules).
#[derive(Clone, Debug, Args)]
pub struct StatusArgs {
    /// Shards the bot runs (0..N must each be held and connected). Default: the
    /// shards the gateways answer for or have stored sessions of.
    #[arg(long, env = "SHARD_TOTAL")]
    pub shard_total: Option<u32>,

    /// A consumer with more messages than this waiting to be delivered is unhealthy.
    #[arg(long, env = "STATUS_MAX_LAG", default_value_t = 1000)]
    pub max_lag: u64,

    /// A consumer with messages waiting and no delivery for this long is stalled
    /// (unhealthy).
    #[arg(long, env = "STATUS_MAX_IDLE", default_value = "60s", value_parser = parse_duration)]
    pub max_idle: Duration,

    /// Dead letters newer than this count as new.
    #[arg(long, env = "STATUS_DEAD_LETTER_WINDOW", default_value = "15m", value_parser = parse_duration)]
    pub dead_letter_window: Duration,

    /// More new dead letters than this are unhealthy.
    #[arg(long, env = "STATUS_MAX_NEW_DEAD_LETTERS", default_value_t = 0)]
    pub max_new_dead_letters: u64,

    /// A stream replica not heard from for this long is offline (its node down).
    #[arg(long, env = "STATUS_MAX_NODE_SILENCE", default_value = "10s", value_parser = parse_duration)]
    pub max_node_silence: Duration,

    /// How long to collect the gateways' answers.
    #[arg(long, env = "STATUS_GATEWAY_TIMEOUT", default_value = "1s", value_parser = parse_duration)]
    pub gateway_timeout: Duration,

    /// Ask again every second until healthy or this long has passed (a deploy gate).
    #[arg(long, env = "STATUS_WAIT", default_value = "0s", value_parser = parse_duration)]
    pub wait: Duration,
}

/// Which dead letters a `dlq` command takes.
#[derive(Clone, Debug, Default, Args)]
pub struct DlqFilter {
    /// Only this consumer's (durable name).
    #[arg(long)]
    pub consumer: Option<String>,
    /// Only those first published on this subject (`*` and `>` allowed).
    #[arg(long)]
    pub subject: Option<String>,
    /// Only this kind: terminal, undecodable, max_deliveries.
    #[arg(long = "reason", value_name = "KIND")]
    pub reason: Option<DeadKind>,
    /// Only those dead-lettered at least this long ago (`30m`, `2d`).
    #[arg(long, value_parser = parse_duration)]
    pub older_than: Option<Duration>,
    /// Only those dead-lettered at most this long ago.
    #[arg(long, value_parser = parse_duration)]
    pub newer_than: Option<Duration>,
    /// At most this many.
    #[arg(long, default_value_t = 1000)]
    pub limit: usize,
}

impl DlqFilter {
    /// The library's filter.
    pub fn filter(&self) -> Filter {
        Filter {
            consumer: self.consumer.clone(),
            subject: self.subject.clone(),
            kind: self.reason,
            older_than: self.older_than,
            newer_than: self.newer_than,
        }
    }
}

/// `dlq` subcommands.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// One line per dead letter: sequence, consumer, kind, deliveries, age, subject, reason.
    List(DlqFilter),
    /// One dead letter in full: its headers and payload.
    Show {
        /// Its sequence in DEAD_LETTER (the first column of `list`).
        sequence: u64,
        /// Write the payload's bytes to stdout and nothing else.
        #[arg(long)]
        raw: bool,
    },
    /// Publishes dead letters back on their original subject and removes them.
    Replay(DlqFilter),
    /// Removes dead letters for good.
    Purge {
        /// Which.
        #[command(flatten)]
        filter: DlqFilter,
        /// Required when no filter is given: purge every dead letter.
        #[arg(long)]
        all: bool,
    },
}

/// `topology` subcommands.
#[derive(Debug, Subcommand)]
pub enum TopologyCommand {
    /// Names every difference between proto's declared topology and the live one;
    /// exits 1 when there is any.
    Diff(TopologyArgs),
    /// Creates what is missing and updates what differs (as the gateway does at start).
    Apply(TopologyArgs),
}

/// Options of `topology diff` and `apply`.
#[derive(Clone, Debug, Args)]
pub struct TopologyArgs {
    /// Replicas every stream should have. Unset: replicas are not compared, and a
    /// missing stream is created with as many as the other streams have.
    #[arg(long, env = "STREAM_REPLICAS")]
    pub replicas: Option<usize>,
}

/// What `backup` writes.
#[derive(Clone, Debug, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["stream", "kv"])))]
pub struct BackupArgs {
    /// The stream to back up (e.g. DEAD_LETTER, ELIGIBILITY).
    #[arg(long)]
    pub stream: Option<String>,
    /// The KV bucket to back up (e.g. shardline-gateway-sessions).
    #[arg(long)]
    pub kv: Option<String>,
    /// A directory that does not exist yet, or is empty.
    pub dir: PathBuf,
}

/// What `restore` reads.
#[derive(Clone, Debug, Args)]
pub struct RestoreArgs {
    /// A directory `shardline backup` wrote.
    pub dir: PathBuf,
    /// Replace the stream if it exists (it is deleted only after the backup has been
    /// verified).
    #[arg(long)]
    pub force: bool,
    /// Replicas of the restored stream. Default: as backed up.
    #[arg(long, env = "STREAM_REPLICAS")]
    pub replicas: Option<usize>,
    /// Do not keep sequence numbers: messages are numbered from 1 in order, gaps
    /// closed (faster when many messages were deleted).
    #[arg(long)]
    pub renumber: bool,
}
