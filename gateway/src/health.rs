//! `/metrics`, `/healthz` and `/readyz` on the metrics address, and the answer to
//! `shardline status` on NATS.
//!
//! `/healthz` answers 200 while the process serves requests. `/readyz` answers 200
//! only when every shard this process owns has a live session and the NATS client is
//! connected, else 503 with the reason, so a deploy can wait for a new process to be
//! ready before stopping the next. The same shard states are served over NATS on
//! [`STATUS_SUBJECT`]: an operator's CLI finds every gateway that way, without
//! knowing their addresses.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use async_nats::connection::State;
use axum::Router;
use axum::extract::State as AxumState;
use axum::http::StatusCode;
use axum::routing::get;
use futures_util::StreamExt;
use metrics_exporter_prometheus::PrometheusHandle;
use shardline_proto::gateway::{GatewayStatus, STATUS_SUBJECT, ShardLive};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics as m;

/// What `/readyz` reports on. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Health {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    shards: Mutex<BTreeMap<u32, ShardLive>>,
    nats: OnceLock<async_nats::Client>,
    started_at_ms: u64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// This process as `shardline status` names it: `host/pid`.
pub fn process_label() -> &'static str {
    static LABEL: OnceLock<String> = OnceLock::new();
    LABEL.get_or_init(|| {
        let host = std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "unknown-host".to_owned());
        format!("{host}/{}", std::process::id())
    })
}

impl Health {
    /// Health for a process owning `shards`, none connected yet.
    pub fn new(shards: &[u32]) -> Self {
        let started_at_ms = now_ms();
        let health = Self {
            inner: Arc::new(Inner {
                shards: Mutex::default(),
                nats: OnceLock::new(),
                started_at_ms,
            }),
        };
        health
            .inner
            .shards
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(shards.iter().map(|&shard| {
                (
                    shard,
                    ShardLive {
                        shard,
                        connected: false,
                        since_ms: started_at_ms,
                    },
                )
            }));
        health
    }

    /// The NATS client whose connection `/readyz` checks.
    pub fn set_nats(&self, client: async_nats::Client) {
        let _ = self.inner.nats.set(client);
    }

    /// Answers status requests on [`STATUS_SUBJECT`] (what `shardline status` asks
    /// every gateway) on `client` until `stop` is cancelled.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: meant to run as its own task.
    pub async fn answer_status(self, client: async_nats::Client, stop: CancellationToken) {
        answer_status(client, self, stop).await;
    }

    /// Records whether `shard` has a live session (and sets its gauge).
    pub fn set_connected(&self, shard: u32, connected: bool) {
        metrics::gauge!(m::SHARD_CONNECTED, "shard" => shard.to_string()).set(if connected {
            1.0
        } else {
            0.0
        });
        let mut shards = self.inner.shards.lock().unwrap_or_else(|e| e.into_inner());
        let live = shards.entry(shard).or_insert(ShardLive {
            shard,
            connected: !connected,
            since_ms: 0,
        });
        if live.connected != connected {
            live.connected = connected;
            live.since_ms = now_ms();
        }
    }

    /// What this process answers on [`STATUS_SUBJECT`].
    pub fn status(&self) -> GatewayStatus {
        status_of(&self.inner)
    }

    /// `Ok` when ready, else why not.
    ///
    /// # Errors
    ///
    /// A one-line reason.
    pub fn ready(&self) -> Result<(), String> {
        let down: Vec<u32> = self
            .inner
            .shards
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|live| !live.connected)
            .map(|live| live.shard)
            .collect();
        let nats = match self.inner.nats.get().map(|c| c.connection_state()) {
            Some(State::Connected) => None,
            Some(state) => Some(format!("NATS {state}")),
            None => Some("NATS not connected yet".to_owned()),
        };
        match (down.is_empty(), nats) {
            (true, None) => Ok(()),
            (true, Some(nats)) => Err(nats),
            (false, None) => Err(format!("shards not connected: {down:?}")),
            (false, Some(nats)) => Err(format!("shards not connected: {down:?}; {nats}")),
        }
    }
}

fn status_of(inner: &Inner) -> GatewayStatus {
    GatewayStatus {
        process: process_label().to_owned(),
        started_at_ms: inner.started_at_ms,
        shards: inner
            .shards
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .copied()
            .collect(),
    }
}

/// Answers every status request with this process's shard states, until `stop`.
/// Holds the health weakly: a gateway that stopped stops answering.
async fn answer_status(client: async_nats::Client, health: Health, stop: CancellationToken) {
    let mut requests = match client.subscribe(STATUS_SUBJECT).await {
        Ok(requests) => requests,
        Err(error) => {
            tracing::warn!(%error, "cannot answer status requests");
            return;
        }
    };
    loop {
        let request = tokio::select! {
            () = stop.cancelled() => break,
            request = requests.next() => request,
        };
        let Some(request) = request else { break };
        let Some(reply) = request.reply else {
            continue;
        };
        let status = status_of(&health.inner);
        match serde_json::to_vec(&status) {
            Ok(body) => {
                if let Err(error) = client.publish(reply, body.into()).await {
                    tracing::debug!(%error, "status reply not sent");
                }
            }
            Err(error) => tracing::warn!(%error, "status not encoded"),
        }
    }
    let _ = requests.unsubscribe().await;
}

#[derive(Clone)]
struct AppState {
    health: Health,
    metrics: PrometheusHandle,
}

/// Binds `addr` and serves the three endpoints until `stop` is cancelled.
///
/// # Errors
///
/// If `addr` cannot be bound.
pub async fn serve(
    addr: SocketAddr,
    health: Health,
    metrics: PrometheusHandle,
    stop: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(AppState {
            health,
            metrics: metrics.clone(),
        });
    tokio::spawn(async move {
        let upkeep = stop.clone();
        // Histogram upkeep (the exporter leaves it to the caller without its listener).
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
            loop {
                tokio::select! {
                    () = upkeep.cancelled() => return,
                    _ = tick.tick() => metrics.run_upkeep(),
                }
            }
        });
        let serve = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned());
        if let Err(error) = serve.await {
            tracing::error!(%error, "metrics server ended");
        }
    });
    Ok(bound)
}

async fn render(AxumState(state): AxumState<AppState>) -> String {
    state.metrics.render()
}

async fn readyz(AxumState(state): AxumState<AppState>) -> (StatusCode, String) {
    match state.health.ready() {
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    }
}
