#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod cluster;
mod nats_server;
mod pg_server;
mod wait;

pub use cluster::{CONFIG_ENV, NatsCluster, USERS, password, shipped_nats_config};
pub use nats_server::{NatsServer, NatsServerBuilder, nats_server_binary};
pub use pg_server::{PG_DATABASE, PgServer, pg_bin_dir};
pub use wait::{eventually, init_tracing, poll_until};
