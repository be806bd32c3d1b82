//! The gateway's error type.

use std::fmt;

use shardline_jetstream::TopologyError;

/// What stopped the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The configuration is inconsistent.
    Config,
    /// NATS could not be reached at start.
    Nats,
    /// The JetStream topology could not be reconciled.
    Topology,
    /// Discord's REST API (shard count lookup) failed.
    Discord,
    /// Every shard was closed by Discord with a code that forbids reconnecting.
    AllShardsFailed,
    /// The metrics endpoint could not be served.
    Metrics,
    /// A KV bucket (sessions, identify leases) could not be opened.
    Kv,
}

/// A gateway error with its [`ErrorKind`].
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// What kind of error this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<TopologyError> for Error {
    fn from(e: TopologyError) -> Self {
        Self::new(
            ErrorKind::Topology,
            format!("{e}: {:?}", std::error::Error::source(&e)),
        )
    }
}
