//! What the CLI tests share: running `shardline` as an operator does (a process,
//! configured by its documented flags and environment).

#![allow(dead_code)]

pub mod streams;
pub mod system;

use std::time::Duration;

/// What one run of `shardline` did.
#[derive(Debug)]
pub struct Run {
    /// The exit code.
    pub code: i32,
    /// Everything it printed on stdout.
    pub stdout: String,
    /// Everything it printed on stderr.
    pub stderr: String,
}

impl Run {
    /// stdout parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!("not JSON ({e}):\n{}\nstderr:\n{}", self.stdout, self.stderr)
        })
    }

    /// Asserts the exit code, showing the output when it differs.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "exit code; stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// Runs `shardline args...` with `NATS_URL=nats_url` plus `env`.
pub async fn shardline_with(nats_url: &str, env: &[(&str, String)], args: &[&str]) -> Run {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_shardline"));
    command
        .env("NATS_URL", nats_url)
        .env_remove("SHARD_TOTAL")
        .env_remove("STREAM_REPLICAS")
        .env("RUST_LOG", "warn")
        .args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    let out = tokio::time::timeout(Duration::from_secs(300), command.output())
        .await
        .expect("shardline finished")
        .expect("shardline ran");
    Run {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `shardline args...` against `nats_url`.
pub async fn shardline(nats_url: &str, args: &[&str]) -> Run {
    shardline_with(nats_url, &[], args).await
}

/// Generous upper bound for waits (never a timing assertion).
pub const PATIENCE: Duration = Duration::from_secs(60);
