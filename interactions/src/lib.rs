#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod config;
mod error;
mod handler;
pub mod metrics;
mod nats;
mod pending;
mod run;
mod server;
pub mod signature;

pub use config::Config;
pub use error::{Error, ErrorKind};
pub use run::{Running, run, start};
