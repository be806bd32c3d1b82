//! The processes a scenario measures: this binary started again in a role.
//!
//! Each role (gateway, worker, baseline client, baseline drain) runs in its own process
//! so its CPU time and peak RSS can be read from `/proc/PID/stat` and `/proc/PID/status`.
//! A child runs until its stdin closes, then prints one JSON line (its report) on
//! stdout and exits; the orchestrator never needs signals.

use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

/// A running child role.
pub struct Role {
    name: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    pid: u32,
}

/// CPU time and memory of a process at one instant.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    /// User + system CPU time, seconds.
    pub cpu_seconds: f64,
    /// Peak resident set size so far (`VmHWM`), bytes.
    pub peak_rss: u64,
    /// Read- and write-like system calls so far, all threads (`syscr` + `syscw` of
    /// `/proc/PID/io`: `read`, `recvmsg`, `write`, `sendmsg`...; not `epoll_wait`).
    pub syscalls: u64,
    /// Context switches so far, voluntary (a wait: a wake-up later) and not, summed
    /// over the threads alive now.
    pub switches: u64,
}

impl Role {
    /// Starts `current_exe() <args>`.
    ///
    /// # Errors
    ///
    /// If the binary cannot be started.
    pub fn spawn(name: &'static str, args: &[String]) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("own executable")?;
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let pid = child.id().context("child pid")?;
        let stdin = child.stdin.take();
        Ok(Self {
            name,
            child,
            stdin,
            pid,
        })
    }

    /// Reads the process's CPU time and peak RSS.
    pub fn usage(&self) -> Usage {
        usage_of(self.pid)
    }

    /// Waits for the child's "ready" line on stdout.
    ///
    /// # Errors
    ///
    /// If the child exits or prints something else first.
    pub async fn ready(&mut self) -> anyhow::Result<()> {
        let stdout = self.child.stdout.as_mut().context("stdout")?;
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        tokio::time::timeout(Duration::from_secs(60), reader.read_line(&mut line))
            .await
            .with_context(|| format!("{} not ready in 60 s", self.name))??;
        anyhow::ensure!(line.trim() == "ready", "{}: {line:?}", self.name);
        Ok(())
    }

    /// Sends `line` to the child (e.g. `start`: measure from now on).
    ///
    /// # Errors
    ///
    /// If the child is gone.
    pub async fn tell(&mut self, line: &str) -> anyhow::Result<()> {
        use tokio::io::AsyncWriteExt as _;
        let stdin = self.stdin.as_mut().context("stdin")?;
        stdin.write_all(format!("{line}\n").as_bytes()).await?;
        stdin.flush().await?;
        Ok(())
    }

    /// Closes stdin (the child shuts down) and parses the report it prints.
    ///
    /// # Errors
    ///
    /// If the child fails or prints no report.
    pub async fn finish<T: DeserializeOwned>(mut self) -> anyhow::Result<(T, Usage)> {
        // Usage must be read before the process is reaped.
        let usage = self.usage();
        drop(self.stdin.take());
        let mut out = String::new();
        let stdout = self.child.stdout.as_mut().context("stdout")?;
        tokio::time::timeout(Duration::from_secs(60), stdout.read_to_string(&mut out))
            .await
            .with_context(|| format!("{} did not stop in 60 s", self.name))??;
        let status = self.child.wait().await?;
        anyhow::ensure!(status.success(), "{} exited with {status}", self.name);
        let last = out.lines().last().unwrap_or_default();
        let report =
            serde_json::from_str(last).with_context(|| format!("{} report {last:?}", self.name))?;
        Ok((report, usage))
    }
}

/// CPU time and peak RSS of `pid` (zero if it is gone).
pub fn usage_of(pid: u32) -> Usage {
    // SC_CLK_TCK is 100 on every Linux this runs on.
    const TICKS: f64 = 100.0;
    let cpu_seconds = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // Fields after the command name (which may hold spaces) start at ") ".
            let rest = stat.rsplit_once(") ")?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) / TICKS)
        })
        .unwrap_or(0.0);
    let peak_rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        })
        .unwrap_or(0);
    let syscalls = std::fs::read_to_string(format!("/proc/{pid}/io"))
        .map(|io| {
            io.lines()
                .filter_map(|l| l.strip_prefix("syscr: ").or(l.strip_prefix("syscw: ")))
                .filter_map(|v| v.trim().parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    let switches = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .flatten()
                .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
                .map(|status| {
                    status
                        .lines()
                        .filter(|l| l.contains("ctxt_switches:"))
                        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                        .sum::<u64>()
                })
                .sum()
        })
        .unwrap_or(0);
    Usage {
        cpu_seconds,
        peak_rss,
        syscalls,
        switches,
    }
}

/// Run by a child: prints "ready", hands each stdin line to `on_line`, returns when
/// stdin closes.
pub async fn serve_until_stdin_closes(mut on_line: impl FnMut(&str)) {
    println!("ready");
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        on_line(line.trim());
    }
}

/// Run by a child: prints its report as the last stdout line.
pub fn report<T: serde::Serialize>(report: &T) {
    println!(
        "{}",
        serde_json::to_string(report).expect("report serializes")
    );
}
