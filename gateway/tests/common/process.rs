//! The `shardline-gateway` binary as a child process, for tests where a real
//! process matters: signals, exit codes, several processes, RSS.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;

use shardline_discord_sim::Simulator;

/// A running `shardline-gateway`; killed (SIGKILL) on drop if still running.
pub struct GatewayProcess {
    child: Option<Child>,
    /// Drains stderr for the process's life (a full pipe would block it).
    stderr: Option<JoinHandle<String>>,
}

impl GatewayProcess {
    /// Starts the binary against `sim` and `nats_url`, with the simulator's shard
    /// total and max concurrency, plus `env` (e.g. `SHARD_IDS`).
    pub fn spawn(sim: &Simulator, nats_url: &str, env: &[(&str, String)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_shardline-gateway"));
        command
            .env("DISCORD_TOKEN", &sim.config().token)
            .env("DISCORD_GATEWAY_URL", sim.gateway_url())
            .env("SHARD_TOTAL", sim.config().shard_total.to_string())
            .env(
                "DISCORD_MAX_CONCURRENCY",
                sim.config().max_concurrency.to_string(),
            )
            .env("NATS_URL", nats_url)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".to_owned()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("start shardline-gateway");
        let mut pipe = child.stderr.take().expect("piped stderr");
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        });
        Self {
            child: Some(child),
            stderr: Some(stderr),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends `signal` (`"TERM"`, `"KILL"`) and waits for the exit; returns the status
    /// and everything the process wrote to stderr.
    pub async fn signal_and_wait(self, signal: &str) -> (ExitStatus, String) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.pid().to_string()])
            .status()
            .expect("send a signal");
        assert!(status.success(), "kill -{signal}");
        self.wait().await
    }

    /// Waits for the process to exit on its own.
    pub async fn wait(mut self) -> (ExitStatus, String) {
        let mut child = self.child.take().expect("running");
        let reader = self.stderr.take().expect("stderr reader");
        let (status, stderr) = tokio::task::spawn_blocking(move || {
            let status = child.wait().expect("wait for shardline-gateway");
            (status, reader.join().unwrap_or_default())
        })
        .await
        .expect("wait task");
        if std::env::var_os("SHARDLINE_GATEWAY_LOG").is_some() {
            eprintln!("{stderr}");
        }
        (status, stderr)
    }

    /// Resident memory (VmRSS) in KiB, from `/proc`.
    pub fn rss_kib(&self) -> Option<u64> {
        self.proc_status_kib("VmRSS:")
    }

    /// Peak resident memory since start (VmHWM) in KiB, from `/proc`.
    pub fn hwm_kib(&self) -> Option<u64> {
        self.proc_status_kib("VmHWM:")
    }

    fn proc_status_kib(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            // A failed test shows what the process said, when asked to.
            if let (Some(reader), Some(_)) = (
                self.stderr.take(),
                std::env::var_os("SHARDLINE_GATEWAY_LOG"),
            ) {
                eprintln!("{}", reader.join().unwrap_or_default());
            }
        }
    }
}
