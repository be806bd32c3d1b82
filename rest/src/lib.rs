#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod answer;
mod bucket;
mod config;
mod coord;
mod error;
mod forward;
mod global;
mod guard;
mod headers;
mod limiter;
pub mod metrics;
mod proxy;
mod route;
mod run;
mod snapshot;
mod table;
mod upstream;

pub use config::{Config, DISCORD_MAX_BODY, DISCORD_TOKEN_ENV};
pub use coord::Role;
pub use error::{Error, ErrorKind};
pub use headers::{BucketInfo, RateLimitInfo};
pub use limiter::{Limiter, Refused};
pub use route::{PathError, Route, RouteClass, digest, parse as parse_route};
pub use run::{Proxy, run, start};
pub use snapshot::Snapshot;
