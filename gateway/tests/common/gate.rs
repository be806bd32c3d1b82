//! A TCP gate in front of nats-server: connections through it wait while it is
//! closed, so a test decides who reaches a restarted server first.

#![allow(dead_code)]

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Forwards every connection on its own port to `upstream` once open.
pub struct Gate {
    addr: SocketAddr,
    open: watch::Sender<bool>,
}

impl Gate {
    /// A gate to `upstream`, open.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (open, watch) = watch::channel(true);
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut watch = watch.clone();
                tokio::spawn(async move {
                    if watch.wait_for(|open| *open).await.is_err() {
                        return;
                    }
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Self { addr, open }
    }

    /// `nats://` URL of the gate.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// New connections wait at the gate (established ones are untouched).
    pub fn close(&self) {
        self.open.send_replace(false);
    }

    /// Lets waiting and new connections through.
    pub fn open(&self) {
        self.open.send_replace(true);
    }
}
