#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod cli;
pub mod commands;
pub mod events;
mod handler;
pub mod metrics;
mod outcome;
mod runtime;

pub use handler::{Handler, Handlers, Meta};
pub use outcome::Outcome;
pub use runtime::{DEFAULT_RETRY_DELAY, Error, Worker};
