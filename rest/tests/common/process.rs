//! The `shardline-rest` binary as a child process, configured only through its
//! documented environment variables.

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;

use shardline_discord_sim::Simulator;

/// A free loopback port (bound and released; the child binds it right after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A running `shardline-rest`; killed (SIGKILL) on drop if still running.
pub struct ProxyProcess {
    /// Where it listens.
    pub addr: SocketAddr,
    child: Option<Child>,
    output: Option<JoinHandle<String>>,
}

impl ProxyProcess {
    /// Starts the binary for `sim` and `nats_url` with the simulator's token in
    /// DISCORD_TOKEN, plus `env`.
    pub fn spawn(sim: &Simulator, nats_url: &str, env: &[(&str, String)]) -> Self {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut command = Command::new(env!("CARGO_BIN_EXE_shardline-rest"));
        command
            .env("DISCORD_TOKEN", &sim.config().token)
            .env("REST_UPSTREAM_URL", format!("http://{}", sim.http_base()))
            .env("REST_LISTEN", addr.to_string())
            .env("NATS_URL", nats_url)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned()),
            )
            // The logs go to stdout, a panic's message to stderr: both are read.
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("start shardline-rest");
        let mut out = child.stdout.take().expect("piped stdout");
        let mut err = child.stderr.take().expect("piped stderr");
        let output = std::thread::spawn(move || {
            let errors = std::thread::spawn(move || {
                let mut text = String::new();
                let _ = err.read_to_string(&mut text);
                text
            });
            let mut text = String::new();
            let _ = out.read_to_string(&mut text);
            text.push_str(&errors.join().unwrap_or_default());
            text
        });
        Self {
            addr,
            child: Some(child),
            output: Some(output),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends `signal` (`TERM`, `KILL`) and waits; returns the status and its output (logs, then stderr).
    pub async fn signal_and_wait(self, signal: &str) -> (ExitStatus, String) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.pid().to_string()])
            .status()
            .expect("send a signal");
        assert!(status.success(), "kill -{signal}");
        self.wait_exit().await
    }

    /// Waits for the process to exit on its own; returns the status and its output (logs, then stderr).
    pub async fn wait_exit(mut self) -> (ExitStatus, String) {
        let mut child = self.child.take().expect("running");
        let reader = self.output.take().expect("output reader");
        let (status, output) = tokio::task::spawn_blocking(move || {
            let status = child.wait().expect("wait for shardline-rest");
            (status, reader.join().unwrap_or_default())
        })
        .await
        .expect("wait task");
        if std::env::var_os("SHARDLINE_REST_LOG").is_some() {
            eprintln!("{output}");
        }
        (status, output)
    }

    /// `/readyz`'s status and body.
    pub async fn readyz(&self) -> (u16, String) {
        let answer = super::raw(self.addr, "GET /readyz HTTP/1.1\r\nHost: proxy", b"").await;
        (answer.status, answer.body)
    }

    /// Whether it says it holds the lease.
    pub async fn is_holder(&self) -> bool {
        let (status, body) = self.readyz().await;
        status == 200 && body.starts_with("holder")
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
