#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod cli;
pub mod commands;
mod context;
pub mod deadletter;
mod handler;
pub mod health;
pub mod metrics;
mod outcome;
mod process;
mod pull;
pub mod rest_refusal;
mod runtime;

pub use context::Context;
pub use handler::{DecodeError, Handler, Handlers};
pub use outcome::Outcome;
pub use runtime::{DEFAULT_RETRY_DELAY, DEFAULT_SHUTDOWN_GRACE, Error, Worker};
