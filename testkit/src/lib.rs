#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod cluster;
mod nats_server;
mod wait;

pub use cluster::{CONFIG_ENV, NatsCluster, USERS, password, shipped_nats_config};
pub use nats_server::{NatsServer, NatsServerBuilder, nats_server_binary};
pub use wait::{eventually, init_tracing, poll_until};
