//! Starting and stopping the service.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use shardline_proto::subject;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::error::{Error, ErrorKind};
use crate::handler::{self, App};
use crate::pending::Pending;
use crate::{metrics as m, nats, server};

/// How long [`start`] waits for NATS and the COMMANDS stream before serving anyway.
const STARTUP_WAIT: Duration = Duration::from_secs(10);

/// A started service: where it listens, and the task that ends when it has stopped.
#[derive(Debug)]
pub struct Running {
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    instance: String,
    task: JoinHandle<()>,
}

impl Running {
    /// The bound address of `POST /interactions`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bound metrics address, if served.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// This process's instance id (the token in its reply subjects).
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Waits until the service has stopped (after its shutdown token is cancelled).
    pub async fn stopped(self) {
        let _ = self.task.await;
    }
}

/// Whether the service should receive traffic: NATS connected, COMMANDS present,
/// not shutting down.
#[derive(Clone)]
struct Readiness {
    client: async_nats::Client,
    ensured: tokio::sync::watch::Receiver<bool>,
    stopping: Arc<AtomicBool>,
}

impl Readiness {
    fn check(&self) -> (StatusCode, String) {
        if self.stopping.load(Ordering::Relaxed) {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: stopping\n".to_owned(),
            );
        }
        match self.client.connection_state() {
            async_nats::connection::State::Connected if !*self.ensured.borrow() => (
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: the COMMANDS stream is not there yet\n".to_owned(),
            ),
            async_nats::connection::State::Connected => (StatusCode::OK, "ready\n".to_owned()),
            state => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: NATS {state}\n"),
            ),
        }
    }
}

/// Validates `config`, connects to NATS (without waiting for it), binds both
/// listeners and serves until `shutdown` is cancelled; then stops accepting, lets
/// requests in flight finish within the grace, and flushes NATS.
///
/// # Errors
///
/// A setting is invalid ([`ErrorKind::Config`]), a listener cannot be bound
/// ([`ErrorKind::Bind`]), NATS credentials cannot be read ([`ErrorKind::Nats`]), or
/// another metrics recorder is installed ([`ErrorKind::Metrics`]).
pub async fn start(config: Config, shutdown: CancellationToken) -> Result<Running, Error> {
    let settings = config.settings()?;
    let handle = m::install().map_err(|e| Error::new(ErrorKind::Metrics, e.to_string()))?;
    m::register();
    let link = nats::connect(&config.nats_url, &config.nats_auth).await?;
    let client = link.client.clone();
    let instance = format!("{:016x}", rand::random::<u64>());
    let subscription = client
        .subscribe(subject::interaction_replies_of(&instance))
        .await
        .map_err(|e| Error::new(ErrorKind::Nats, e.to_string()))?;
    let bind = |addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|e| Error::new(ErrorKind::Bind, format!("binding {addr}: {e}")))
    };
    let listener = bind(config.listen_addr).await?;
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    let stopping = Arc::new(AtomicBool::new(false));
    let (ensured, mut ensured_rx) = tokio::sync::watch::channel(false);
    let readiness = Readiness {
        client: client.clone(),
        ensured: ensured_rx.clone(),
        stopping: stopping.clone(),
    };
    let metrics_addr = match config.metrics_addr {
        Some(metrics_addr) => {
            let listener = bind(metrics_addr).await?;
            let bound = listener
                .local_addr()
                .expect("a bound listener has an address");
            tokio::spawn(serve_metrics(
                listener,
                handle,
                readiness.clone(),
                shutdown.clone(),
            ));
            Some(bound)
        }
        None => None,
    };

    let js = jetstream::new(client.clone());
    let pending = Pending::new(settings.max_pending);
    let background = CancellationToken::new();
    tokio::spawn(nats::keep_topology(
        js.clone(),
        config.stream_replicas.max(1),
        link.check_topology.clone(),
        link.max_payload.clone(),
        ensured,
        background.clone(),
    ));
    // With NATS up, serve once COMMANDS is there, so the first interactions are not
    // refused; without it, serve anyway (PINGs, and 503s until it is back).
    if tokio::time::timeout(STARTUP_WAIT, ensured_rx.wait_for(|e| *e))
        .await
        .is_err()
    {
        tracing::warn!(
            "NATS or the COMMANDS stream not available yet: serving PINGs, interactions get 503 until they are"
        );
    }
    tokio::spawn(nats::answer_offers(
        client.clone(),
        subscription,
        pending.clone(),
        background.clone(),
    ));
    let (header_timeout, grace) = (settings.header_timeout, settings.shutdown_grace);
    let app = Arc::new(App {
        settings,
        pending,
        js,
        instance: instance.clone(),
        max_payload: link.max_payload,
        check_topology: link.check_topology,
    });
    let router = Router::new()
        .route("/interactions", post(handler::interactions))
        .with_state(app)
        .merge(health_routes(readiness));
    tracing::info!(%addr, instance, "serving interactions");
    let task = tokio::spawn(async move {
        let stop = shutdown.clone();
        tokio::spawn(async move {
            stop.cancelled().await;
            stopping.store(true, Ordering::Relaxed);
        });
        server::serve(listener, router, header_timeout, shutdown, grace).await;
        // Offers still in flight now find nothing waiting: answered "deferred".
        background.cancel();
        if tokio::time::timeout(Duration::from_secs(2), client.flush())
            .await
            .is_err()
        {
            tracing::warn!("flushing NATS at shutdown timed out");
        }
        tracing::info!("interactions service stopped");
    });
    Ok(Running {
        addr,
        metrics_addr,
        instance,
        task,
    })
}

/// [`start`], then waits until the service has stopped.
///
/// # Errors
///
/// As [`start`].
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    start(config, shutdown).await?.stopped().await;
    Ok(())
}

fn health_routes(readiness: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(readiness)
}

async fn readyz(State(readiness): State<Readiness>) -> (StatusCode, String) {
    readiness.check()
}

/// `/metrics`, `/healthz` and `/readyz` on the private metrics address.
async fn serve_metrics(
    listener: TcpListener,
    handle: PrometheusHandle,
    readiness: Readiness,
    shutdown: CancellationToken,
) {
    let render = handle.clone();
    let app = Router::new()
        .route("/metrics", get(move || async move { render.render() }))
        .merge(health_routes(readiness));
    let upkeep = shutdown.clone();
    // Histogram upkeep: the exporter leaves it to the caller without its listener.
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                () = upkeep.cancelled() => return,
                _ = tick.tick() => handle.run_upkeep(),
            }
        }
    });
    let serve = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned());
    if let Err(error) = serve.await {
        tracing::error!(%error, "metrics endpoint stopped");
    }
}
