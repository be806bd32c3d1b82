//! The fleet's processes: the gateways, two of each worker and the REST proxy, each
//! a real binary configured only through its documented environment, its output in
//! a log file. Killed on drop, so a panic or ctrl-c in the orchestrator leaves
//! nothing running.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::process::{Child, Command};

use crate::schedule::Role;

/// One child process that can be killed and started again with the same settings.
#[derive(Debug)]
pub struct Proc {
    name: String,
    program: PathBuf,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    /// A process named `name` running `program` with `env`, logging to
    /// `log_dir/<name>.log` (appended across restarts). Not started yet.
    pub fn new(name: &str, program: PathBuf, env: Vec<(String, String)>, log_dir: &Path) -> Self {
        Self {
            name: name.to_owned(),
            program,
            env,
            log: log_dir.join(format!("{name}.log")),
            child: None,
        }
    }

    /// Its name (`gateway-0`, `event-worker-1`, ...).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Starts it.
    ///
    /// # Errors
    ///
    /// The log cannot be opened or the binary cannot be started.
    pub fn start(&mut self) -> anyhow::Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("open {}", self.log.display()))?;
        let child = Command::new(&self.program)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own process group: a ctrl-c at the terminal reaches the
            // orchestrator only, which then stops every child itself.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start {}", self.program.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL, and reap it.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// SIGTERM, then waits for it to exit for at most `limit` (then SIGKILL).
    /// Returns its exit status and how long it took, or `None` when it had to be
    /// killed.
    pub async fn terminate(&mut self, limit: Duration) -> Option<(ExitStatus, Duration)> {
        let mut child = self.child.take()?;
        let started = Instant::now();
        if let Some(pid) = child.id() {
            let _ = Command::new("kill")
                .args(["-s", "TERM", &pid.to_string()])
                .status()
                .await;
        }
        match tokio::time::timeout(limit, child.wait()).await {
            Ok(Ok(status)) => Some((status, started.elapsed())),
            _ => {
                let _ = child.kill().await;
                None
            }
        }
    }

    /// The exit status when it ended on its own (a crash the schedule did not cause).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }
}

/// Everything the fleet's processes need to know about the rest of the system.
#[derive(Debug, Clone)]
pub struct Wiring {
    /// Where the binaries are (`target/release`, `target/debug`).
    pub bin_dir: PathBuf,
    /// Where each process's log goes.
    pub log_dir: PathBuf,
    /// The cluster's client URLs, comma separated.
    pub nats_url: String,
    /// The simulator's gateway URL (`ws://...`).
    pub gateway_url: String,
    /// The simulator's REST base (`http://...`).
    pub discord_url: String,
    /// The bot token.
    pub token: String,
    /// PostgreSQL's URL.
    pub database_url: String,
    /// Shards in all.
    pub shard_total: u32,
    /// Gateway processes splitting them.
    pub gateways: usize,
    /// Discord's (the simulator's) `max_concurrency`.
    pub max_concurrency: u32,
    /// The REST proxy's (and the simulator's) global limit per second.
    pub global_limit: u32,
    /// The REST proxy's listen address.
    pub rest_addr: std::net::SocketAddr,
}

fn nats_env(w: &Wiring, user: &str) -> Vec<(String, String)> {
    [
        ("NATS_URL", w.nats_url.clone()),
        ("NATS_USER", user.to_owned()),
        ("NATS_PASSWORD", shardline_testkit::password(user)),
        ("STREAM_REPLICAS", "3".to_owned()),
        ("RUST_LOG", "info".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// The shards gateway `index` of `gateways` runs: a contiguous range, `first-last`.
pub fn shard_range(index: usize, gateways: usize, total: u32) -> (u32, u32) {
    let per = total.div_ceil(gateways as u32);
    let first = per * index as u32;
    (first, (first + per).min(total) - 1)
}

/// The gateways, the workers and the REST proxy.
#[derive(Debug)]
pub struct Fleet {
    /// Gateway processes, by index.
    pub gateways: Vec<Proc>,
    /// Two processes of each worker binary.
    pub workers: BTreeMap<(Role, usize), Proc>,
    /// The REST proxy.
    pub rest: Proc,
}

impl Fleet {
    /// The processes, configured from `w`; none started.
    pub fn new(w: &Wiring) -> Self {
        let bin = |name: &str| w.bin_dir.join(name);
        let gateways = (0..w.gateways)
            .map(|i| {
                let (first, last) = shard_range(i, w.gateways, w.shard_total);
                let mut env = nats_env(w, "gateway");
                env.extend(
                    [
                        ("DISCORD_TOKEN", w.token.clone()),
                        ("DISCORD_GATEWAY_URL", w.gateway_url.clone()),
                        ("SHARD_TOTAL", w.shard_total.to_string()),
                        ("SHARD_IDS", format!("{first}-{last}")),
                        ("DISCORD_MAX_CONCURRENCY", w.max_concurrency.to_string()),
                    ]
                    .map(|(k, v)| (k.to_owned(), v)),
                );
                Proc::new(
                    &format!("gateway-{i}"),
                    bin("shardline-gateway"),
                    env,
                    &w.log_dir,
                )
            })
            .collect();
        let mut workers = BTreeMap::new();
        for role in Role::ALL {
            for index in 0..2 {
                let mut env = nats_env(w, role.user());
                env.push(("DATABASE_URL".to_owned(), w.database_url.clone()));
                if matches!(role, Role::Command | Role::Sync) {
                    env.push((
                        "DISCORD_API_URL".to_owned(),
                        format!("http://{}", w.rest_addr),
                    ));
                }
                let name = format!("{}-{index}", role.user());
                workers.insert(
                    (role, index),
                    Proc::new(&name, bin(role.binary()), env, &w.log_dir),
                );
            }
        }
        let mut env = nats_env(w, "rest");
        env.extend(
            [
                ("DISCORD_TOKEN", w.token.clone()),
                ("REST_LISTEN", w.rest_addr.to_string()),
                ("REST_UPSTREAM_URL", w.discord_url.clone()),
                ("REST_GLOBAL_LIMIT", w.global_limit.to_string()),
            ]
            .map(|(k, v)| (k.to_owned(), v)),
        );
        let rest = Proc::new("rest", bin("shardline-rest"), env, &w.log_dir);
        Self {
            gateways,
            workers,
            rest,
        }
    }

    /// Processes that ended without the schedule killing them, by name.
    pub fn crashed(&mut self) -> Vec<(String, ExitStatus)> {
        let procs = self
            .gateways
            .iter_mut()
            .chain(self.workers.values_mut())
            .chain(std::iter::once(&mut self.rest));
        procs
            .filter_map(|p| p.exited().map(|s| (p.name().to_owned(), s)))
            .collect()
    }

    /// SIGTERM to every process, the sources first; each gets `limit`.
    pub async fn stop(&mut self, limit: Duration) {
        for g in &mut self.gateways {
            g.terminate(limit).await;
        }
        for w in self.workers.values_mut() {
            w.terminate(limit).await;
        }
        self.rest.terminate(limit).await;
    }
}

#[cfg(test)]
mod tests {
    use super::shard_range;

    #[test]
    fn shards_are_split_without_gap_or_overlap() {
        assert_eq!(shard_range(0, 2, 4), (0, 1));
        assert_eq!(shard_range(1, 2, 4), (2, 3));
        assert_eq!(shard_range(1, 2, 3), (2, 2));
        assert_eq!(shard_range(0, 1, 4), (0, 3));
    }
}
