//! Idempotent reconciliation: create what is missing, update what differs.
//!
//! Many processes may reconcile at once (every gateway and worker does at start), so
//! a lost creation race is not an error: the loser re-reads and compares.

use async_nats::jetstream::consumer::{self, pull};
use async_nats::jetstream::context::{
    ConsumerInfoErrorKind, CreateStreamErrorKind, GetStreamErrorKind,
};
use async_nats::jetstream::stream;
use async_nats::jetstream::{self as js, ErrorCode};
use shardline_proto::topology::{ConsumerSpec, StreamSpec};

use crate::{TopologyError, consumer_config, stream_config};

/// Settings applied to every stream.
#[derive(Clone, Copy, Debug)]
pub struct ReconcileOptions {
    /// Copies of each stream: 1 on a single server, 3 on a production cluster.
    pub replicas: usize,
}

impl Default for ReconcileOptions {
    fn default() -> Self {
        Self { replicas: 1 }
    }
}

/// What reconciliation did to one stream or consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// It did not exist and was created.
    Created,
    /// It existed and these settings were changed (`field: old -> new`).
    Updated(Vec<String>),
    /// It already matched the declaration.
    Unchanged,
}

/// Reconciles every declared stream, in order.
///
/// # Errors
///
/// Stops at the first stream that cannot be reconciled.
pub async fn reconcile_streams(
    js: &js::Context,
    specs: &[StreamSpec],
    options: ReconcileOptions,
) -> Result<Vec<(&'static str, Change)>, TopologyError> {
    let mut changes = Vec::with_capacity(specs.len());
    for spec in specs {
        changes.push((spec.name, reconcile_stream(js, spec, options).await?));
    }
    Ok(changes)
}

/// Makes one stream match its declaration and logs what changed.
///
/// # Errors
///
/// [`Request`](crate::TopologyErrorKind::Request) if JetStream cannot be asked or
/// refuses; [`Immutable`](crate::TopologyErrorKind::Immutable) if storage or
/// retention differ (JetStream cannot change them in place).
pub async fn reconcile_stream(
    js: &js::Context,
    spec: &StreamSpec,
    options: ReconcileOptions,
) -> Result<Change, TopologyError> {
    let desired = stream_config(spec, options.replicas);
    for _attempt in 0..2 {
        let existing = match js.get_stream(spec.name).await {
            Ok(stream) => stream.cached_info().config.clone(),
            Err(e) if is_stream_not_found(e.kind()) => {
                match js.create_stream(desired.clone()).await {
                    Ok(_) => {
                        tracing::info!(stream = spec.name, "created stream");
                        return Ok(Change::Created);
                    }
                    // Another process created it between our read and our create.
                    Err(e) if is_name_exists(e.kind()) => continue,
                    Err(e) => return Err(TopologyError::request(spec.name, e)),
                }
            }
            Err(e) => return Err(TopologyError::request(spec.name, e)),
        };
        return update_stream(js, spec, existing, desired).await;
    }
    Err(TopologyError::immutable(
        spec.name,
        "stream vanished and reappeared during reconciliation".to_owned(),
    ))
}

/// Creates the stream if it is missing and leaves an existing one as it is, for
/// processes that use a stream but do not own its settings (workers): a worker
/// started with the wrong replica count must never scale an R3 stream down, and a
/// locked-down worker may create a missing stream but not update one.
///
/// # Errors
///
/// [`Request`](crate::TopologyErrorKind::Request) if JetStream cannot be asked or
/// refuses.
pub async fn ensure_stream(
    js: &js::Context,
    spec: &StreamSpec,
    options: ReconcileOptions,
) -> Result<Change, TopologyError> {
    match js.get_stream(spec.name).await {
        Ok(stream) => {
            let replicas = stream.cached_info().config.num_replicas;
            if replicas != options.replicas {
                tracing::info!(
                    stream = spec.name,
                    replicas,
                    configured = options.replicas,
                    "stream exists with other replicas; left as it is (the gateway owns it)"
                );
            }
            Ok(Change::Unchanged)
        }
        Err(e) if is_stream_not_found(e.kind()) => {
            match js
                .create_stream(stream_config(spec, options.replicas))
                .await
            {
                Ok(_) => {
                    tracing::info!(stream = spec.name, "created stream");
                    Ok(Change::Created)
                }
                Err(e) if is_name_exists(e.kind()) => Ok(Change::Unchanged),
                Err(e) => Err(TopologyError::request(spec.name, e)),
            }
        }
        Err(e) => Err(TopologyError::request(spec.name, e)),
    }
}

async fn update_stream(
    js: &js::Context,
    spec: &StreamSpec,
    existing: stream::Config,
    desired: stream::Config,
) -> Result<Change, TopologyError> {
    let drift = stream_drift(&existing, &desired);
    let immutable: Vec<String> = drift
        .iter()
        .filter(|d| d.immutable)
        .map(Drift::to_string)
        .collect();
    if !immutable.is_empty() {
        return Err(TopologyError::immutable(spec.name, immutable.join(", ")));
    }
    if drift.is_empty() {
        return Ok(Change::Unchanged);
    }
    let changed: Vec<String> = drift.iter().map(Drift::to_string).collect();
    // Keep whatever else an operator set (limits, placement, ...); change only ours.
    let update = stream::Config {
        subjects: desired.subjects,
        max_age: desired.max_age,
        duplicate_window: desired.duplicate_window,
        num_replicas: desired.num_replicas,
        ..existing
    };
    js.update_stream(update)
        .await
        .map_err(|e| TopologyError::request(spec.name, e))?;
    tracing::info!(stream = spec.name, changes = ?changed, "updated stream");
    Ok(Change::Updated(changed))
}

/// One declared setting in which a live stream or consumer differs from its
/// declaration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drift {
    /// The setting (`max_age`, `subjects`, `ack_wait`, ...).
    pub field: &'static str,
    /// Its live value.
    pub live: String,
    /// Its declared value.
    pub declared: String,
    /// JetStream cannot change it in place (storage, retention): reconciling refuses
    /// with [`Immutable`](crate::TopologyErrorKind::Immutable).
    pub immutable: bool,
}

impl Drift {
    fn new(field: &'static str, live: String, declared: String) -> Self {
        Self {
            field,
            live,
            declared,
            immutable: false,
        }
    }
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} -> {}", self.field, self.live, self.declared)
    }
}

/// Every declared setting in which `live` differs from `desired` (both as
/// [`stream_config`] builds them): what [`reconcile_stream`] would change, plus
/// storage and retention, which it refuses to change. Settings Shardline does not
/// declare (limits, placement, ...) are not compared.
pub fn stream_drift(live: &stream::Config, desired: &stream::Config) -> Vec<Drift> {
    let mut drift = Vec::new();
    if live.storage != desired.storage {
        drift.push(Drift {
            immutable: true,
            ..Drift::new(
                "storage",
                format!("{:?}", live.storage),
                format!("{:?}", desired.storage),
            )
        });
    }
    if live.retention != desired.retention {
        drift.push(Drift {
            immutable: true,
            ..Drift::new(
                "retention",
                format!("{:?}", live.retention),
                format!("{:?}", desired.retention),
            )
        });
    }
    let mut subjects_now = live.subjects.clone();
    let mut subjects_want = desired.subjects.clone();
    subjects_now.sort();
    subjects_want.sort();
    if subjects_now != subjects_want {
        drift.push(Drift::new(
            "subjects",
            format!("{subjects_now:?}"),
            format!("{subjects_want:?}"),
        ));
    }
    if live.max_age != desired.max_age {
        drift.push(Drift::new(
            "max_age",
            format!("{:?}", live.max_age),
            format!("{:?}", desired.max_age),
        ));
    }
    if live.duplicate_window != desired.duplicate_window {
        drift.push(Drift::new(
            "duplicate_window",
            format!("{:?}", live.duplicate_window),
            format!("{:?}", desired.duplicate_window),
        ));
    }
    if live.num_replicas != desired.num_replicas {
        drift.push(Drift::new(
            "num_replicas",
            live.num_replicas.to_string(),
            desired.num_replicas.to_string(),
        ));
    }
    drift
}

/// Makes one durable consumer match its declaration and logs what changed. Its
/// stream must exist (reconcile streams first).
///
/// # Errors
///
/// [`Request`](crate::TopologyErrorKind::Request) if JetStream cannot be asked or
/// refuses.
pub async fn reconcile_consumer(
    js: &js::Context,
    spec: &ConsumerSpec,
) -> Result<Change, TopologyError> {
    let desired = consumer_config(spec);
    let stream = js
        .get_stream_no_info(spec.stream)
        .await
        .map_err(|e| TopologyError::request(spec.durable, e))?;
    let existing = match stream.consumer_info(spec.durable).await {
        Ok(info) => info.config,
        Err(e) if matches!(e.kind(), ConsumerInfoErrorKind::NotFound) => {
            stream
                .create_consumer(desired)
                .await
                .map_err(|e| TopologyError::request(spec.durable, e))?;
            tracing::info!(consumer = spec.durable, "created consumer");
            return Ok(Change::Created);
        }
        Err(e) => return Err(TopologyError::request(spec.durable, e)),
    };
    let changed: Vec<String> = consumer_drift(&existing, &desired)
        .iter()
        .map(Drift::to_string)
        .collect();
    if changed.is_empty() {
        return Ok(Change::Unchanged);
    }
    stream
        .update_consumer(desired)
        .await
        .map_err(|e| TopologyError::request(spec.durable, e))?;
    tracing::info!(consumer = spec.durable, changes = ?changed, "updated consumer");
    Ok(Change::Updated(changed))
}

/// Every declared setting in which the live consumer differs from `desired` (as
/// [`consumer_config`] builds it): ack wait, max ack pending, filters. What
/// [`reconcile_consumer`] changes.
pub fn consumer_drift(live: &consumer::Config, desired: &pull::Config) -> Vec<Drift> {
    let mut drift = Vec::new();
    if live.ack_wait != desired.ack_wait {
        drift.push(Drift::new(
            "ack_wait",
            format!("{:?}", live.ack_wait),
            format!("{:?}", desired.ack_wait),
        ));
    }
    if live.max_ack_pending != desired.max_ack_pending {
        drift.push(Drift::new(
            "max_ack_pending",
            live.max_ack_pending.to_string(),
            desired.max_ack_pending.to_string(),
        ));
    }
    let filters = |single: &str, many: &[String]| -> Vec<String> {
        let mut all: Vec<String> = many.to_vec();
        if !single.is_empty() {
            all.push(single.to_owned());
        }
        all.sort();
        all
    };
    let now = filters(&live.filter_subject, &live.filter_subjects);
    let want = filters(&desired.filter_subject, &desired.filter_subjects);
    if now != want {
        drift.push(Drift::new(
            "filter_subjects",
            format!("{now:?}"),
            format!("{want:?}"),
        ));
    }
    drift
}

fn is_stream_not_found(kind: GetStreamErrorKind) -> bool {
    matches!(kind, GetStreamErrorKind::JetStream(e) if e.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

fn is_name_exists(kind: CreateStreamErrorKind) -> bool {
    matches!(kind, CreateStreamErrorKind::JetStream(e) if e.error_code() == ErrorCode::STREAM_NAME_EXIST)
}
