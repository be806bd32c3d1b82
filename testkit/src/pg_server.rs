//! A real PostgreSQL server per test: `initdb` into a temporary directory, `postgres`
//! on a free loopback port, one database created; killed and deleted on drop.
//!
//! PostgreSQL refuses to run as root. When the tests run as root (CI containers), the
//! cluster is created and run as the `postgres` user that Debian's package creates:
//! the processes are started with that user's uid and gid, and the temporary
//! directory is handed to it.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The database every [`PgServer`] creates.
pub const PG_DATABASE: &str = "shardline";

/// Where the PostgreSQL binaries are: `SHARDLINE_PG_BIN`, else the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian's layout), else `None` (found on
/// `PATH`).
pub fn pg_bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("SHARDLINE_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn pg_binary(name: &str) -> PathBuf {
    pg_bin_dir().map_or_else(|| PathBuf::from(name), |dir| dir.join(name))
}

/// The uid and gid of the `postgres` user, when this process runs as root (PostgreSQL
/// will not); `None` otherwise.
fn run_as() -> Option<(u32, u32)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let euid: u32 = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    if euid != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    let entry = passwd
        .lines()
        .find(|l| l.starts_with("postgres:"))
        .expect("running as root needs a `postgres` user (Debian's postgresql package creates it; scripts/install-tools installs it)");
    let fields: Vec<&str> = entry.split(':').collect();
    Some((
        fields[2].parse().expect("postgres uid"),
        fields[3].parse().expect("postgres gid"),
    ))
}

fn command(name: &str, user: Option<(u32, u32)>) -> Command {
    let mut command = Command::new(pg_binary(name));
    if let Some((uid, gid)) = user {
        use std::os::unix::process::CommandExt;
        command.uid(uid).gid(gid);
    }
    // A locale the cluster can always use, whatever the host's is.
    command.env("LC_ALL", "C").env_remove("PGDATA");
    command
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A PostgreSQL server (a throwaway cluster) on `127.0.0.1`.
///
/// Killed, and its files deleted, on drop.
#[derive(Debug)]
pub struct PgServer {
    dir: tempfile::TempDir,
    user: Option<(u32, u32)>,
    child: Option<Child>,
    port: u16,
    settings: Vec<String>,
}

impl PgServer {
    /// Creates a cluster, starts it on a free port and creates [`PG_DATABASE`].
    ///
    /// # Panics
    ///
    /// Panics if the binaries are missing or the server does not start: a test
    /// cannot run without it.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// [`start`](Self::start) with TLS on: the server presents `cert` (PEM) with
    /// `key`, and clients may ask for TLS (`sslmode=require`).
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start), or if the files cannot be copied.
    pub fn start_with_tls(cert: &Path, key: &Path) -> Self {
        Self::start_with(Some((cert, key)))
    }

    fn start_with(tls: Option<(&Path, &Path)>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir for PostgreSQL");
        let user = run_as();
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .expect("hand the temp dir to the postgres user");
        }
        let data = dir.path().join("data");
        let output = command("initdb", user)
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run initdb ({:?}): {e}; run scripts/install-tools or set SHARDLINE_PG_BIN",
                    pg_binary("initdb")
                )
            });
        assert!(
            output.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mut settings = Vec::new();
        if let Some((cert, key)) = tls {
            // The server reads them as its own user, and refuses a key others can read.
            use std::os::unix::fs::PermissionsExt;
            for (from, name) in [(cert, "server.crt"), (key, "server.key")] {
                let to = dir.path().join(name);
                std::fs::copy(from, &to).expect("copy the TLS files");
                std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600))
                    .expect("key permissions");
                if let Some((uid, gid)) = user {
                    std::os::unix::fs::chown(&to, Some(uid), Some(gid)).expect("chown");
                }
                let setting = if name == "server.crt" {
                    "ssl_cert_file"
                } else {
                    "ssl_key_file"
                };
                settings.push(format!("{setting}={}", to.display()));
            }
            settings.push("ssl=on".to_owned());
        }
        let mut server = Self {
            dir,
            user,
            child: None,
            port: 0,
            settings,
        };
        server.spawn(None);
        let created = command("createdb", user)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &server.port.to_string(),
                "-U",
                "postgres",
            ])
            .arg(PG_DATABASE)
            .output()
            .expect("run createdb");
        assert!(
            created.status.success(),
            "createdb failed: {}",
            String::from_utf8_lossy(&created.stderr)
        );
        server
    }

    /// `postgres://postgres@127.0.0.1:PORT/shardline` (trust authentication on
    /// loopback: the test cluster has no password).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{PG_DATABASE}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server and every backend (SIGKILL to its process group), as a crash
    /// would; the data directory and port are kept for [`restart`](Self::restart).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // The postmaster is its process group's leader; its backends are in it.
            let _ = Command::new("kill")
                .args(["-s", "KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.kill();
            let _ = child.wait();
            // The backends are the postmaster's children, not ours: the signal is
            // queued, but on a busy machine one may still hold the shared memory
            // segment a moment later, and a restart then refuses to start ("pre-existing
            // shared memory block is still in use"). Wait until they are gone.
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while group_alive(child.id()) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// Starts the server again on the same port with the same data (after crash
    /// recovery, if it was killed).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn(Some(self.port));
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn spawn(&mut self, port: Option<u16>) {
        // A free port can be taken between asking and binding: try a few.
        for _ in 0..5 {
            let port = port.unwrap_or_else(free_port);
            match start_postgres(
                &self.data_dir(),
                self.dir.path(),
                port,
                self.user,
                &self.settings,
            ) {
                Ok(child) => {
                    self.child = Some(child);
                    self.port = port;
                    return;
                }
                Err(log) if log.contains("could not bind") && self.port == 0 => continue,
                Err(log) if log.contains("could not bind") => {
                    // Restarting on a port a killed server held: the kernel may not have
                    // released it yet.
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(log) => panic!("postgres did not start:\n{log}"),
            }
        }
        panic!("postgres found no port to listen on");
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether a process of process group `pgid` still runs (zombies, which hold no
/// memory and which an init that does not reap would keep forever, do not count).
fn group_alive(pgid: u32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            return false;
        };
        // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let pgrp = fields.nth(1).and_then(|f| f.parse::<u32>().ok());
        pgrp == Some(pgid) && state != Some("Z")
    })
}

/// Whether a log line says the server itself failed to start: a FATAL of the
/// postmaster (its pid in the line) or a port it could not bind. A FATAL of another
/// process is a client turned away ("the database system is starting up" while a
/// killed server recovers and the workers reconnect): the server is fine.
fn startup_failed(line: &str, postmaster: u32) -> bool {
    line.contains("could not bind")
        || (line.contains("FATAL") && line.contains(&format!("[{postmaster}]")))
}

/// Starts `postgres` and waits until it accepts connections; on failure, its log.
fn start_postgres(
    data: &Path,
    socket_dir: &Path,
    port: u16,
    user: Option<(u32, u32)>,
    settings: &[String],
) -> Result<Child, String> {
    use std::os::unix::process::CommandExt;
    let mut command = command("postgres", user);
    for setting in settings {
        command.args(["-c", setting]);
    }
    let mut child = command
        .arg("-D")
        .arg(data)
        .arg("-k")
        .arg(socket_dir)
        .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
        // A throwaway cluster: durability against a machine crash is not wanted,
        // speed is. A killed server still recovers what was committed: a commit
        // still writes its WAL to the OS (synchronous_commit stays on; off would lose
        // the last commits on a kill, which the fault tests would see as lost writes).
        .args(["-c", "fsync=off"])
        .args(["-c", "full_page_writes=off", "-c", "max_connections=200"])
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", pg_binary("postgres")))?;
    let stderr = child.stderr.take().expect("piped stderr");
    let postmaster = child.id();
    let (tx, rx) = mpsc::channel();
    let echo = std::env::var_os("SHARDLINE_PG_LOG").is_some();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        let mut log = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if echo {
                eprintln!("postgres: {line}");
            }
            if let Some(sender) = &tx {
                log.push_str(&line);
                log.push('\n');
                if line.contains("ready to accept connections") {
                    let _ = sender.send(Ok(()));
                    tx = None;
                } else if startup_failed(&line, postmaster) {
                    let _ = sender.send(Err(std::mem::take(&mut log)));
                    tx = None;
                }
            }
        }
        if let Some(sender) = tx {
            let _ = sender.send(Err(log));
        }
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(Ok(())) => Ok(child),
        Ok(Err(log)) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(log)
        }
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            Err("postgres did not report ready within 60 s".to_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::startup_failed;

    #[test]
    fn a_client_turned_away_during_recovery_is_not_a_failed_start() {
        // Lines a restart after SIGKILL logged while workers reconnected (chaos soak).
        let client =
            "2026-11-30 22:05:51.254 UTC [16500] FATAL:  the database system is starting up";
        assert!(!startup_failed(client, 16493));
        let own = "2026-11-30 22:05:51.239 UTC [16493] FATAL:  lock file \"postmaster.pid\" already exists";
        assert!(startup_failed(own, 16493));
        let bind = "2026-11-30 22:05:51.239 UTC [16493] LOG:  could not bind IPv4 address \"127.0.0.1\": Address already in use";
        assert!(startup_failed(bind, 16493));
        let recovery = "2026-11-30 22:05:51.253 UTC [16499] LOG:  redo starts at 0/35C5F38";
        assert!(!startup_failed(recovery, 16493));
    }
}
