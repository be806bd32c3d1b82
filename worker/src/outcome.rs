//! What a handler says happened.

use std::time::Duration;

/// The result of handling one message; the runtime maps it onto a JetStream ack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done: ack.
    Success,
    /// Failed for now: nak, redelivered after `delay` (the worker's default, 5 s, when `None`).
    Retry {
        /// Delay before redelivery.
        delay: Option<Duration>,
    },
    /// Can never succeed: term, never redelivered.
    Terminal {
        /// Why, for logs.
        reason: String,
    },
}

impl Outcome {
    /// Retry after the worker's default delay.
    pub const fn retry() -> Self {
        Self::Retry { delay: None }
    }

    /// Retry after `delay`.
    pub const fn retry_after(delay: Duration) -> Self {
        Self::Retry { delay: Some(delay) }
    }

    /// Give up on this message.
    pub fn terminal(reason: impl Into<String>) -> Self {
        Self::Terminal {
            reason: reason.into(),
        }
    }

    /// Metric label: `success`, `retry` or `terminal`.
    pub fn status(&self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Retry { .. } => "retry",
            Self::Terminal { .. } => "terminal",
        }
    }
}
