#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod commands;
mod config;
mod error;
mod frame;
mod health;
mod identify;
pub mod jetstream_stats;
pub mod metrics;
mod plan;
mod progress;
mod publisher;
mod router;
mod run;
mod scan;
mod sessions;
mod shard;

pub use commands::{CommandRequest, send_on};
pub use config::{Config, DISCORD_TOKEN_ENV, ShardIds, Token};
pub use error::{Error, ErrorKind};
pub use frame::{
    Dispatch, Frame, FrameErrorKind, GuildFacts, guild_facts, parse, parse_with_serde, ready_guilds,
};
pub use health::Health;
pub use identify::NatsQueue;
pub use progress::{Progress, Receipt, Snapshot};
pub use publisher::{Drain, Publisher};
pub use router::{Headers, Outgoing, Rejected, Routed, ShardRouter};
pub use run::run;
pub use sessions::{SAVE_INTERVAL, StoredSession, Unusable};
pub use shard::{ShardContext, ShardExit, fatal_close_reason, run_shard};
