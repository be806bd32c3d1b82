#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod auth;
mod connect;
mod convert;
mod error;
mod reconcile;

pub use auth::{
    NATS_PASSWORD_ENV, NatsAuth, SECRET_VALUE_ENVS, Secret, SecretError, secret_from_env_or_file,
};
pub use connect::{ConnectOptions, auth_options, connect, connect_observed, server_urls};
pub use convert::{consumer_config, retention, storage, stream_config};
pub use error::{TopologyError, TopologyErrorKind};
pub use reconcile::{
    Change, Drift, ReconcileOptions, consumer_drift, ensure_stream, reconcile_consumer,
    reconcile_stream, reconcile_streams, stream_drift,
};
