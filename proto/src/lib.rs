#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod eligibility;
pub mod encoding;
pub mod gateway;
mod guild;
pub mod headers;
pub mod interaction;
pub mod kv;
pub mod payload;
pub mod rest;
pub mod subject;
pub mod topology;

pub use guild::{GuildTracker, GuildTransition};
pub use subject::{Route, route, shard_for_guild};
