//! Topology errors.

use std::error::Error as StdError;
use std::fmt;

/// What went wrong while reconciling the topology.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopologyErrorKind {
    /// A JetStream API request failed (server unreachable, refused, timed out).
    Request,
    /// The existing stream differs in a setting JetStream cannot change in place
    /// (storage, retention): an operator must migrate it.
    Immutable,
}

/// An error reconciling one stream or consumer.
#[derive(Debug)]
pub struct TopologyError {
    kind: TopologyErrorKind,
    target: String,
    detail: String,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

impl TopologyError {
    pub(crate) fn request(
        target: impl Into<String>,
        source: impl StdError + Send + Sync + 'static,
    ) -> Self {
        Self {
            kind: TopologyErrorKind::Request,
            target: target.into(),
            detail: String::new(),
            source: Some(Box::new(source)),
        }
    }

    pub(crate) fn immutable(target: impl Into<String>, detail: String) -> Self {
        Self {
            kind: TopologyErrorKind::Immutable,
            target: target.into(),
            detail,
            source: None,
        }
    }

    /// What kind of error this is.
    pub fn kind(&self) -> TopologyErrorKind {
        self.kind
    }

    /// The stream or consumer concerned.
    pub fn target(&self) -> &str {
        &self.target
    }
}

impl fmt::Display for TopologyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            TopologyErrorKind::Request => {
                write!(f, "JetStream request for {} failed", self.target)
            }
            TopologyErrorKind::Immutable => write!(
                f,
                "{} differs in a setting JetStream cannot update ({}); migrate it by hand",
                self.target, self.detail
            ),
        }
    }
}

impl StdError for TopologyError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}
