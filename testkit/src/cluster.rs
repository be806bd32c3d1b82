//! A cluster of real nats-server processes on loopback.

use crate::NatsServer;

/// `n` JetStream servers routed to each other as the cluster `shardline`, each with
/// its own temp store; every one is killed and deleted on drop.
#[derive(Debug)]
pub struct NatsCluster {
    servers: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts `n` servers (named `n1`, `n2`, ...) and returns once each accepts
    /// clients. JetStream needs a few more moments to elect a meta leader: callers
    /// retry their first JetStream request.
    ///
    /// # Panics
    ///
    /// Panics if a server cannot be started (see [`NatsServer::start`]).
    pub fn start(n: usize) -> Self {
        let cluster_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let servers = (0..n)
            .map(|i| {
                let routes: Vec<u16> = cluster_ports
                    .iter()
                    .enumerate()
                    .filter(|&(j, _)| j != i)
                    .map(|(_, &p)| p)
                    .collect();
                NatsServer::builder()
                    .cluster_member(&format!("n{}", i + 1), cluster_ports[i], &routes)
                    .start()
            })
            .collect();
        Self { servers }
    }

    /// Every server's client URL, comma separated (what `NATS_URL` takes).
    pub fn urls(&self) -> String {
        let urls: Vec<String> = self.servers.iter().map(NatsServer::url).collect();
        urls.join(",")
    }

    /// Server `i` (0-based), to kill or restart it.
    pub fn server(&mut self, i: usize) -> &mut NatsServer {
        &mut self.servers[i]
    }
}

/// A loopback port free at the time of asking.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free loopback port")
        .port()
}
