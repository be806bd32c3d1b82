//! A real nats-server process per test.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The nats-server binary tests run: `SHARDLINE_NATS_SERVER`, else `nats-server` on `PATH`.
pub fn nats_server_binary() -> PathBuf {
    std::env::var_os("SHARDLINE_NATS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("nats-server"))
}

/// Options for [`NatsServer`].
#[derive(Debug, Clone)]
pub struct NatsServerBuilder {
    max_payload: Option<usize>,
    port: Option<u16>,
    extra: Option<String>,
}

impl NatsServerBuilder {
    /// Appends raw configuration (e.g. a `tls { ... }` block) to the server's config file.
    pub fn config(mut self, text: &str) -> Self {
        self.extra = Some(text.to_owned());
        self
    }

    /// Sets the server's `max_payload` (default 1 MiB).
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.max_payload = Some(bytes);
        self
    }

    /// Listens on this port instead of a random one.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Starts the server and waits until it accepts clients.
    ///
    /// # Panics
    ///
    /// Panics if the binary cannot be started or never reports its port: a test
    /// cannot run without it.
    pub fn start(self) -> NatsServer {
        let dir = tempfile::tempdir().expect("temp dir for nats-server");
        let mut server = NatsServer {
            dir,
            options: self,
            child: None,
            port: 0,
        };
        server.spawn();
        server
    }
}

/// A nats-server child process with JetStream, on loopback.
///
/// Killed, and its store deleted, on drop.
#[derive(Debug)]
pub struct NatsServer {
    dir: tempfile::TempDir,
    options: NatsServerBuilder,
    child: Option<Child>,
    port: u16,
}

impl NatsServer {
    /// Options for a new server.
    pub fn builder() -> NatsServerBuilder {
        NatsServerBuilder {
            max_payload: None,
            port: None,
            extra: None,
        }
    }

    /// Starts a server with default options on a random port.
    pub fn start() -> Self {
        Self::builder().start()
    }

    /// The client URL, `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connects a client.
    ///
    /// # Panics
    ///
    /// Panics if the server does not accept the connection.
    pub async fn client(&self) -> async_nats::Client {
        async_nats::connect(self.url())
            .await
            .expect("connect to test nats-server")
    }

    /// Kills the server (SIGKILL); the store and port are kept for [`restart`](Self::restart).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same store.
    pub fn restart(&mut self) {
        self.kill();
        self.options.port = Some(self.port);
        self.spawn();
    }

    fn spawn(&mut self) {
        let store = self.dir.path().join("jetstream");
        let config = self.dir.path().join("nats.conf");
        let mut file = std::fs::File::create(&config).expect("write nats.conf");
        if let Some(max_payload) = self.options.max_payload {
            writeln!(file, "max_payload: {max_payload}").expect("write nats.conf");
        }
        if let Some(extra) = &self.options.extra {
            writeln!(file, "{extra}").expect("write nats.conf");
        }
        drop(file);
        let port = self
            .options
            .port
            .map_or_else(|| "-1".to_owned(), |p| p.to_string());
        let mut command = Command::new(nats_server_binary());
        command
            .arg("--config")
            .arg(&config)
            .args(["-js", "-a", "127.0.0.1", "-p", &port, "--store_dir"])
            .arg(&store);
        let (child, rx) = launch(command, "nats-server".to_owned(), |line| {
            if let Some(rest) = line.split("Listening for client connections on ").nth(1) {
                return rest.rsplit(':').next()?.trim().parse::<u16>().ok();
            }
            // Ready without a client port: refused below.
            line.contains("Server is ready").then_some(0)
        });
        let port = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("nats-server reported no client port");
        assert_ne!(port, 0, "nats-server ready without a client port");
        self.port = port;
        self.child = Some(child);
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `command` (a nats-server) with its log piped and drained for the process's
/// life, so it never blocks on a full pipe; the log is echoed, each line prefixed with
/// `label`, when `SHARDLINE_NATS_LOG` is set. `watch` sees each line until it returns
/// a value, which the receiver then gets.
///
/// # Panics
///
/// Panics if the binary cannot be started.
pub(crate) fn launch<T: Send + 'static>(
    mut command: Command,
    label: String,
    mut watch: impl FnMut(&str) -> Option<T> + Send + 'static,
) -> (Child, mpsc::Receiver<T>) {
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {:?}: {e}; run scripts/install-tools or set SHARDLINE_NATS_SERVER",
                nats_server_binary()
            )
        });
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    let log = std::env::var_os("SHARDLINE_NATS_LOG").is_some();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.is_some()
                && let Some(seen) = watch(&line)
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(seen);
            }
            if log {
                eprintln!("{label}: {line}");
            }
        }
    });
    (child, rx)
}
