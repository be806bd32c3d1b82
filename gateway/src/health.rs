//! `/metrics`, `/healthz` and `/readyz` on the metrics address.
//!
//! `/healthz` answers 200 while the process serves requests. `/readyz` answers 200
//! only when every shard this process owns has a live session and the NATS client is
//! connected, else 503 with the reason, so a deploy can wait for a new process to be
//! ready before stopping the next.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use async_nats::connection::State;
use axum::Router;
use axum::extract::State as AxumState;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
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
    shards: Mutex<BTreeMap<u32, bool>>,
    nats: OnceLock<async_nats::Client>,
}

impl Health {
    /// Health for a process owning `shards`, none connected yet.
    pub fn new(shards: &[u32]) -> Self {
        let health = Self::default();
        health
            .inner
            .shards
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(shards.iter().map(|&s| (s, false)));
        health
    }

    /// The NATS client whose connection `/readyz` checks.
    pub fn set_nats(&self, client: async_nats::Client) {
        let _ = self.inner.nats.set(client);
    }

    /// Records whether `shard` has a live session (and sets its gauge).
    pub fn set_connected(&self, shard: u32, connected: bool) {
        metrics::gauge!(m::SHARD_CONNECTED, "shard" => shard.to_string()).set(if connected {
            1.0
        } else {
            0.0
        });
        self.inner
            .shards
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(shard, connected);
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
            .iter()
            .filter(|(_, up)| !**up)
            .map(|(s, _)| *s)
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
