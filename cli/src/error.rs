//! Errors of the operator CLI: a small kind to branch on, and the exit code each
//! kind gives the `shardline` binary.

use std::error::Error as StdError;
use std::fmt;

/// What went wrong. Each kind has its own exit code ([`ErrorKind::exit_code`]), so a
/// script can tell "could not reach NATS" from "the backup is corrupt".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// A flag's value makes no sense (a duration, a filter, a missing choice).
    Usage,
    /// NATS could not be reached, or refused the credentials.
    Connect,
    /// A JetStream request failed or was refused.
    Request,
    /// The stream, bucket, message or backup named does not exist.
    NotFound,
    /// The restore target exists and `--force` was not given.
    Exists,
    /// The backup directory is incomplete, corrupt or of an unknown format; nothing
    /// was changed.
    BadBackup,
    /// A live stream differs in a setting JetStream cannot change in place.
    Immutable,
    /// Reading or writing local files failed.
    Io,
    /// Someone else wrote into a stream being restored (sequence numbers moved).
    Conflict,
}

impl ErrorKind {
    /// The process exit code for this kind. 0 is success and 1 is reserved for an
    /// answer of "no" (unhealthy, drift), 2 for clap's own usage errors.
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Usage => 2,
            Self::Connect => 3,
            Self::Request => 4,
            Self::NotFound => 5,
            Self::Exists => 6,
            Self::BadBackup => 7,
            Self::Immutable => 8,
            Self::Io => 9,
            Self::Conflict => 10,
        }
    }
}

/// An error with its [`ErrorKind`] and a message for the operator.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

impl Error {
    /// An error of `kind` saying `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// An error of `kind` saying `message`, caused by `source`.
    pub fn with_source(
        kind: ErrorKind,
        message: impl Into<String>,
        source: impl Into<Box<dyn StdError + Send + Sync>>,
    ) -> Self {
        Self {
            kind,
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// A failed JetStream request about `what`.
    pub fn request(what: impl Into<String>, source: impl StdError + Send + Sync + 'static) -> Self {
        Self::with_source(ErrorKind::Request, what, source)
    }

    /// A failed local file operation on `what`.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::with_source(ErrorKind::Io, what, source)
    }

    /// What kind of error this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

impl From<shardline_jetstream::TopologyError> for Error {
    fn from(e: shardline_jetstream::TopologyError) -> Self {
        let kind = match e.kind() {
            shardline_jetstream::TopologyErrorKind::Immutable => ErrorKind::Immutable,
            shardline_jetstream::TopologyErrorKind::Request => ErrorKind::Request,
        };
        Self::with_source(kind, format!("topology of {}", e.target()), e)
    }
}

impl From<shardline_worker::Error> for Error {
    fn from(e: shardline_worker::Error) -> Self {
        Self::with_source(ErrorKind::Request, "dead letters", e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_distinct_and_leave_0_and_1_free() {
        let kinds = [
            ErrorKind::Usage,
            ErrorKind::Connect,
            ErrorKind::Request,
            ErrorKind::NotFound,
            ErrorKind::Exists,
            ErrorKind::BadBackup,
            ErrorKind::Immutable,
            ErrorKind::Io,
            ErrorKind::Conflict,
        ];
        let mut codes: Vec<u8> = kinds.iter().map(|k| k.exit_code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), kinds.len());
        assert!(codes.iter().all(|c| *c >= 2));
    }
}
