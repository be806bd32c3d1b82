//! A 3-node nats-server cluster on loopback, started from the NATS configuration the
//! Terraform module ships (`terraform/nats/nats.conf`), unchanged: only the
//! environment differs (loopback ports, temporary store directories, test passwords).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::mpsc;
use std::time::Duration;

use crate::nats_server_binary;

/// The NATS configuration file the Terraform module ships.
pub fn shipped_nats_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../terraform/nats/nats.conf")
}

/// The users of the shipped configuration and the variable holding each password.
pub const USERS: [(&str, &str); 9] = [
    ("gateway", "NATS_GATEWAY_PASSWORD"),
    ("event-worker", "NATS_EVENT_WORKER_PASSWORD"),
    ("command-worker", "NATS_COMMAND_WORKER_PASSWORD"),
    ("eligibility-worker", "NATS_ELIGIBILITY_WORKER_PASSWORD"),
    ("sync-worker", "NATS_SYNC_WORKER_PASSWORD"),
    ("rest", "NATS_REST_PASSWORD"),
    ("interactions", "NATS_INTERACTIONS_PASSWORD"),
    ("operator", "NATS_OPERATOR_PASSWORD"),
    ("system", "NATS_SYSTEM_PASSWORD"),
];

/// Every variable the shipped configuration reads (Terraform must set each one).
pub const CONFIG_ENV: [&str; 16] = [
    "NATS_SERVER_NAME",
    "NATS_LISTEN",
    "NATS_HTTP_LISTEN",
    "NATS_CLUSTER_LISTEN",
    "NATS_CLUSTER_ROUTES",
    "NATS_STORE_DIR",
    "NATS_CLUSTER_PASSWORD",
    "NATS_GATEWAY_PASSWORD",
    "NATS_EVENT_WORKER_PASSWORD",
    "NATS_COMMAND_WORKER_PASSWORD",
    "NATS_ELIGIBILITY_WORKER_PASSWORD",
    "NATS_SYNC_WORKER_PASSWORD",
    "NATS_REST_PASSWORD",
    "NATS_INTERACTIONS_PASSWORD",
    "NATS_OPERATOR_PASSWORD",
    "NATS_SYSTEM_PASSWORD",
];

/// The test password of `user` (letters and digits, as the configuration requires).
///
/// # Panics
///
/// Panics for a user the configuration does not have.
pub fn password(user: &str) -> String {
    assert!(USERS.iter().any(|(u, _)| *u == user), "no user {user}");
    format!("test{}secret", user.replace('-', ""))
}

/// The route password of the test cluster.
const ROUTE_PASSWORD: &str = "testroutesecret";

struct Node {
    name: String,
    client_port: u16,
    cluster_port: u16,
    http_port: u16,
    store: PathBuf,
    child: Option<Child>,
}

/// Three nats-server processes forming one JetStream cluster on loopback. Killed,
/// and their stores deleted, on drop.
pub struct NatsCluster {
    _dir: tempfile::TempDir,
    config: PathBuf,
    nodes: Vec<Node>,
}

impl std::fmt::Debug for NatsCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsCluster")
            .field("urls", &self.url())
            .finish()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

impl NatsCluster {
    /// Starts three nodes from [`shipped_nats_config`] and waits until each accepts
    /// clients. Call [`wait_for_meta_leader`](Self::wait_for_meta_leader) before
    /// using JetStream.
    ///
    /// # Panics
    ///
    /// Panics if a node cannot be started: a test cannot run without it.
    pub fn start() -> Self {
        Self::start_from(&shipped_nats_config())
    }

    /// Starts three nodes from `config`.
    ///
    /// # Panics
    ///
    /// Panics if a node cannot be started.
    pub fn start_from(config: &Path) -> Self {
        let dir = tempfile::tempdir().expect("temp dir for the cluster");
        let nodes = (0..3)
            .map(|i| Node {
                name: format!("nats-{i}"),
                client_port: free_port(),
                cluster_port: free_port(),
                http_port: free_port(),
                store: dir.path().join(format!("nats-{i}")),
                child: None,
            })
            .collect();
        let mut cluster = Self {
            _dir: dir,
            config: config.to_owned(),
            nodes,
        };
        let children: Vec<_> = (0..3).map(|i| cluster.spawn(i)).collect();
        for (i, (child, ready)) in children.into_iter().enumerate() {
            wait_ready(&cluster.nodes[i].name, &ready);
            cluster.nodes[i].child = Some(child);
        }
        cluster
    }

    /// Every node's client URL, comma separated (what a client is given).
    pub fn url(&self) -> String {
        (0..self.nodes.len())
            .map(|i| self.node_url(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Node `i`'s client URL.
    pub fn node_url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].client_port)
    }

    /// Node `i`'s monitoring address (`127.0.0.1:PORT`): `/jsz`, `/healthz`, ...
    pub fn monitoring_addr(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.nodes[i].http_port)
    }

    /// Node `i`'s server name (`nats-0`, ...), as JetStream reports peers.
    pub fn server_name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// The index of the node named `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// Connects to node `i` only, as `user`.
    ///
    /// # Panics
    ///
    /// Panics if the node refuses.
    pub async fn node_client(&self, i: usize, user: &str) -> async_nats::Client {
        async_nats::ConnectOptions::with_user_and_password(user.to_owned(), password(user))
            .connect(self.node_url(i))
            .await
            .expect("connect to a cluster node")
    }

    /// Connects to the cluster as the `operator` user (every permission).
    ///
    /// # Panics
    ///
    /// Panics if no node accepts.
    pub async fn operator(&self) -> async_nats::Client {
        async_nats::ConnectOptions::with_user_and_password("operator".into(), password("operator"))
            .connect(self.url().split(',').map(str::to_owned).collect::<Vec<_>>())
            .await
            .expect("connect to the cluster")
    }

    /// Waits until JetStream answers on every running node (the cluster has a meta
    /// leader and each node knows it).
    ///
    /// # Panics
    ///
    /// Panics after `limit`.
    pub async fn wait_for_meta_leader(&self, limit: Duration) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].child.is_none() {
                continue;
            }
            let js = async_nats::jetstream::new(self.node_client(i, "operator").await);
            crate::eventually("a JetStream meta leader", limit, || {
                let js = js.clone();
                // A request sent before the node knows a leader may go unanswered:
                // ask again rather than wait out the client's 5 s request timeout.
                async move {
                    tokio::time::timeout(Duration::from_millis(500), js.query_account())
                        .await
                        .ok()?
                        .ok()
                        .map(|_| ())
                }
            })
            .await;
        }
    }

    /// Kills node `i` with SIGKILL; its store and ports are kept for
    /// [`restart`](Self::restart).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `i` again with the same ports and store.
    ///
    /// # Panics
    ///
    /// Panics if it does not start.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        let (child, ready) = self.spawn(i);
        wait_ready(&self.nodes[i].name, &ready);
        self.nodes[i].child = Some(child);
    }

    /// Starts node `i` again with the same ports and an empty store: a node whose
    /// disk was lost (a replaced Fargate task). It rejoins under its name and must
    /// catch up from its peers.
    ///
    /// # Panics
    ///
    /// Panics if it does not start.
    pub fn restart_empty(&mut self, i: usize) {
        self.kill(i);
        let store = &self.nodes[i].store;
        if store.exists() {
            std::fs::remove_dir_all(store).expect("remove the node's store");
        }
        self.restart(i);
    }

    /// The environment node `i` runs with: the same variables Terraform sets.
    pub fn node_env(&self, i: usize) -> Vec<(&'static str, String)> {
        let node = &self.nodes[i];
        let routes = self
            .nodes
            .iter()
            .map(|n| {
                format!(
                    "nats-route://route:{ROUTE_PASSWORD}@127.0.0.1:{}",
                    n.cluster_port
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let mut env = vec![
            ("NATS_SERVER_NAME", node.name.clone()),
            ("NATS_LISTEN", format!("127.0.0.1:{}", node.client_port)),
            ("NATS_HTTP_LISTEN", format!("127.0.0.1:{}", node.http_port)),
            (
                "NATS_CLUSTER_LISTEN",
                format!("127.0.0.1:{}", node.cluster_port),
            ),
            ("NATS_CLUSTER_ROUTES", format!("[{routes}]")),
            ("NATS_STORE_DIR", node.store.display().to_string()),
            ("NATS_CLUSTER_PASSWORD", ROUTE_PASSWORD.to_owned()),
        ];
        env.extend(USERS.iter().map(|(user, var)| (*var, password(user))));
        env
    }

    fn spawn(&self, i: usize) -> (Child, mpsc::Receiver<()>) {
        let name = self.nodes[i].name.clone();
        let mut command = Command::new(nats_server_binary());
        command
            .arg("--config")
            .arg(&self.config)
            .envs(self.node_env(i));
        let (child, rx) = crate::nats_server::launch(command, name, |line| {
            line.contains("Server is ready").then_some(())
        });
        (child, rx)
    }
}

fn wait_ready(name: &str, ready: &mpsc::Receiver<()>) {
    ready
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| {
            panic!("{name} never reported ready (SHARDLINE_NATS_LOG=1 shows its log)")
        });
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}
