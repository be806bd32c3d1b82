#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod connect;
mod convert;
mod error;
mod reconcile;

pub use connect::{ConnectOptions, connect};
pub use convert::{consumer_config, retention, storage, stream_config};
pub use error::{TopologyError, TopologyErrorKind};
pub use reconcile::{
    Change, ReconcileOptions, reconcile_consumer, reconcile_stream, reconcile_streams,
};
