//! The proxy's error type (start-up and run-time failures of the process itself;
//! a refused request is an HTTP answer, not an error).

use std::fmt;

/// What stopped the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The settings are inconsistent or a secret cannot be read.
    Config,
    /// NATS could not be reached, or its KV buckets opened.
    Nats,
    /// The listen address could not be bound.
    Listen,
    /// The upstream client could not be built (TLS roots).
    Upstream,
    /// The metrics recorder could not be installed.
    Metrics,
}

/// A proxy error with its [`ErrorKind`].
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
