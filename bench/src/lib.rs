#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod baseline;
pub mod child;
pub mod cli;
pub mod cost;
pub mod decompress;
pub mod env;
pub mod fixture;
pub mod http;
pub mod load;
pub mod report;
pub mod rest;
pub mod roles;
pub mod stats;
pub mod throughput;

/// Whether this build's gateway (and so the baseline) uses zstd-stream.
pub const ZSTD: bool = cfg!(feature = "zstd");

/// The transport compression of this build, for reports.
pub fn compression() -> &'static str {
    if ZSTD { "zstd-stream" } else { "none" }
}
