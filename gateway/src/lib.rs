#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod config;
mod frame;
pub mod metrics;
mod publisher;
mod router;
mod run;
mod shard;

pub use config::{Config, ShardIds, Token};
pub use frame::{Dispatch, Frame, FrameErrorKind, GuildFacts, guild_facts, parse, ready_guilds};
pub use publisher::{Drain, MAX_ATTEMPTS, Publisher};
pub use router::{Outgoing, Rejected, Routed, ShardRouter};
pub use run::{Error, ErrorKind, run};
pub use shard::{ShardExit, run_shard};
