//! From proto's declarations to async-nats configurations.

use async_nats::jetstream::{consumer, stream};
use shardline_proto::topology::{ConsumerSpec, Retention, Storage, StreamSpec};

/// The async-nats stream configuration for a declaration, with `replicas` copies.
pub fn stream_config(spec: &StreamSpec, replicas: usize) -> stream::Config {
    stream::Config {
        name: spec.name.to_owned(),
        subjects: spec.subjects.iter().map(|s| (*s).to_owned()).collect(),
        storage: storage(spec.storage),
        retention: retention(spec.retention),
        max_age: spec.max_age,
        duplicate_window: spec.duplicate_window(),
        num_replicas: replicas,
        ..Default::default()
    }
}

/// The async-nats durable pull consumer configuration for a declaration.
pub fn consumer_config(spec: &ConsumerSpec) -> consumer::pull::Config {
    let mut config = consumer::pull::Config {
        durable_name: Some(spec.durable.to_owned()),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: spec.ack_wait,
        max_ack_pending: spec.max_ack_pending,
        ..Default::default()
    };
    match spec.filter_subjects {
        [one] => config.filter_subject = (*one).to_owned(),
        many => config.filter_subjects = many.iter().map(|s| (*s).to_owned()).collect(),
    }
    config
}

/// The async-nats storage type of a declaration.
pub fn storage(storage: Storage) -> stream::StorageType {
    match storage {
        Storage::Memory => stream::StorageType::Memory,
        Storage::File => stream::StorageType::File,
    }
}

/// The async-nats retention policy of a declaration.
pub fn retention(retention: Retention) -> stream::RetentionPolicy {
    match retention {
        Retention::Limits => stream::RetentionPolicy::Limits,
        Retention::WorkQueue => stream::RetentionPolicy::WorkQueue,
    }
}
