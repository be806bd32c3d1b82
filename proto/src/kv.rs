//! Key-value buckets (JetStream KV) that Shardline's processes share.

use std::time::Duration;

use crate::topology::Storage;

/// A KV bucket declaration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvSpec {
    /// Bucket name.
    pub bucket: &'static str,
    /// How long a key lives after its last write.
    pub max_age: Duration,
    /// Where the bucket keeps its values.
    pub storage: Storage,
}

/// Interactions the command worker has already deferred, keyed by interaction id, so
/// a redelivered interaction is not deferred twice, whichever worker process gets it.
/// An interaction token lives 15 minutes; so does the key.
pub const DEFERRED_INTERACTIONS: KvSpec = KvSpec {
    bucket: "shardline-deferred-interactions",
    max_age: Duration::from_secs(15 * 60),
    storage: Storage::Memory,
};
