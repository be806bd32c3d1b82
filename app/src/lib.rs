#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod commands;
pub mod db;
pub mod eligibility;
pub mod events;
pub mod metrics;
mod pg_store;
pub mod rules;
pub mod store;
pub mod sync;

pub use db::{DATABASE_URL_ENV, DatabaseArgs, DatabaseConfig, Db, DbError, DbErrorKind};
pub use pg_store::PgStore;

/// Connects to the database and applies the migrations, retrying for up to a minute
/// while it is unreachable (a worker starting beside a database that is starting or
/// restarting), then creates the streams a handler publishes to but does not read, if
/// missing (a worker never changes a stream: the gateway owns their settings), and
/// registers the pipeline's metrics at zero.
///
/// # Errors
///
/// The database stays unreachable, a migration fails, or a stream cannot be created.
pub async fn start(
    database: &DatabaseConfig,
    client: &async_nats::Client,
    publishes_to: &[&shardline_proto::topology::StreamSpec],
    stream_replicas: usize,
) -> anyhow::Result<Db> {
    let db = Db::connect_patiently(database, std::time::Duration::from_secs(60)).await?;
    let js = async_nats::jetstream::new(client.clone());
    let options = shardline_jetstream::ReconcileOptions {
        replicas: stream_replicas,
    };
    for stream in publishes_to {
        shardline_jetstream::ensure_stream(&js, stream, options)
            .await
            .map_err(|e| anyhow::anyhow!("stream {}: {e}", stream.name))?;
    }
    metrics::register();
    Ok(db)
}
