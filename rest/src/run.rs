//! Wiring: NATS and its KV buckets, the coordinator, the HTTP server with
//! `/api/*`, `/metrics`, `/healthz` and `/readyz`, and the shutdown order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use shardline_jetstream::ConnectOptions;
use shardline_proto::kv::KvSpec;
use shardline_proto::rest::{LEASE, STATE};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::Config;
use crate::coord::{Coordinator, Role};
use crate::error::{Error, ErrorKind};
use crate::limiter::Limiter;
use crate::metrics as m;
use crate::proxy::App;
use crate::route::digest;
use crate::upstream::Upstream;

/// How long a shutdown waits for the lease loop's NATS call in flight to finish.
const LEASE_LOOP_STOP: Duration = Duration::from_secs(5);

/// A running proxy.
pub struct Proxy {
    addr: SocketAddr,
    coord: Coordinator,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), Error>>,
}

impl Proxy {
    /// The bound address (`host:port`, what twilight-http's `proxy` takes).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// This instance's role.
    pub fn role(&self) -> Role {
        self.coord.role()
    }

    /// Whether this instance holds the lease and may send.
    pub fn is_holder(&self) -> bool {
        self.coord.may_send()
    }

    /// Stops as SIGTERM does and waits.
    ///
    /// # Errors
    ///
    /// What [`run`] would return.
    pub async fn stop(self) -> Result<(), Error> {
        self.shutdown.cancel();
        self.task.await.unwrap_or(Ok(()))
    }
}

/// Runs the proxy until `shutdown` is cancelled: stops taking requests, lets those
/// admitted finish (bounded by `SHUTDOWN_GRACE_SECS`), copies the exact limit state
/// and releases the lease.
///
/// # Errors
///
/// [`ErrorKind::Nats`] when NATS or its buckets cannot be reached at start,
/// [`ErrorKind::Listen`] when the address cannot be bound.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    let proxy = start(config, shutdown.clone()).await?;
    proxy.task.await.unwrap_or(Ok(()))
}

async fn open_bucket(
    js: &jetstream::Context,
    spec: KvSpec,
    max_age: Duration,
    replicas: usize,
) -> Result<kv::Store, Error> {
    js.create_or_update_key_value(kv::Config {
        bucket: spec.bucket.to_owned(),
        history: 1,
        max_age,
        storage: shardline_jetstream::storage(spec.storage),
        num_replicas: replicas,
        ..Default::default()
    })
    .await
    .map_err(|e| Error::new(ErrorKind::Nats, format!("KV bucket {}: {e}", spec.bucket)))
}

/// The address other replicas reach this one at.
async fn advertise(config: &Config, bound: SocketAddr) -> SocketAddr {
    if let Some(addr) = config.advertise_addr {
        return addr;
    }
    if !bound.ip().is_unspecified() {
        return bound;
    }
    // The local address of the route to NATS: no packet is sent by a UDP connect.
    let first = config.nats_url.split(',').next().unwrap_or_default();
    let host = first.rsplit("://").next().unwrap_or(first);
    let host = host.rsplit('@').next().unwrap_or(host);
    if let Ok(mut addrs) = tokio::net::lookup_host(host).await
        && let Some(nats) = addrs.next()
        && let Ok(socket) = std::net::UdpSocket::bind(("0.0.0.0", 0))
        && socket.connect(nats).is_ok()
        && let Ok(local) = socket.local_addr()
    {
        return SocketAddr::new(local.ip(), bound.port());
    }
    bound
}

/// Starts the proxy and returns once it listens (it joins the lease in the
/// background).
///
/// # Errors
///
/// As [`run`].
pub async fn start(config: Config, shutdown: CancellationToken) -> Result<Proxy, Error> {
    config.validate()?;
    let recorder = m::install().map_err(|e| Error::new(ErrorKind::Metrics, e.to_string()))?;
    m::register(config.invalid_request_limit);
    let client = shardline_jetstream::connect(&ConnectOptions {
        url: config.nats_url.clone(),
        name: "shardline-rest".to_owned(),
        auth: config.nats_auth.clone(),
    })
    .await
    .map_err(|e| Error::new(ErrorKind::Nats, format!("NATS at {}: {e}", config.nats_url)))?;
    let js = jetstream::new(client.clone());
    let lease = open_bucket(&js, LEASE, config.lease_ttl(), config.stream_replicas).await?;
    let state = open_bucket(&js, STATE, STATE.max_age, config.stream_replicas).await?;

    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| Error::new(ErrorKind::Listen, format!("{}: {e}", config.listen)))?;
    let bound = listener
        .local_addr()
        .map_err(|e| Error::new(ErrorKind::Listen, e.to_string()))?;
    let advertised = advertise(&config, bound).await;
    let id = digest(&format!(
        "{advertised}/{}/{:?}",
        std::process::id(),
        std::time::SystemTime::now()
    ));
    let limiter = Arc::new(Limiter::new(
        config.global_limit,
        config.global_window(),
        config.invalid_request_limit,
    ));
    let coord = Coordinator::new(
        lease,
        state,
        id,
        advertised,
        config.lease_ttl(),
        limiter.clone(),
    );
    let token = match &config.token {
        Some(secret) => {
            let raw = secret.expose();
            let value = if raw.starts_with("Bot ") {
                raw.to_owned()
            } else {
                format!("Bot {raw}")
            };
            let mut header = HeaderValue::from_str(&value).map_err(|_| {
                Error::new(
                    ErrorKind::Config,
                    "DISCORD_TOKEN is not a valid header value",
                )
            })?;
            header.set_sensitive(true);
            Some((header, digest(&value)))
        }
        None => None,
    };
    let own_identity = token.as_ref().map(|(_, id)| id.clone());
    let requests = CancellationToken::new();
    let app = App {
        limiter: limiter.clone(),
        coord: coord.clone(),
        upstream: Upstream::new(&config.upstream_url, config.upstream_timeout())?,
        peers: Upstream::new("", config.upstream_timeout())?,
        token,
        max_body: config.max_body_bytes,
        max_wait: Duration::from_millis(config.max_wait_ms),
        max_wait_interaction: Duration::from_millis(config.max_wait_interaction_ms),
        upstream_timeout: config.upstream_timeout(),
        retries: config.upstream_retries,
        shutdown: requests.clone(),
    };
    let router = Router::new()
        .route("/metrics", get(move || async move { recorder.render() }))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .fallback(any(crate::proxy::handle))
        .with_state(app);
    tracing::info!(listen = %bound, advertise = %advertised, instance = coord.id(), "shardline-rest listening");

    let background = CancellationToken::new();
    let lease_loop = tokio::spawn(
        coord
            .clone()
            .run(config.replicate_interval(), background.clone()),
    );
    tokio::spawn(gauges(limiter, own_identity, background.clone()));
    let grace = Duration::from_secs(config.shutdown_grace_secs);
    let stopping = shutdown.clone();
    let coordinator = coord.clone();
    let upstream_timeout = config.upstream_timeout();
    let task = tokio::spawn(async move {
        let intake = stopping.clone();
        let closing = coordinator.clone();
        let serve = axum::serve(listener, router).with_graceful_shutdown(async move {
            intake.cancelled().await;
            closing.stop_intake();
        });
        let mut server = tokio::spawn(async move { serve.await });
        stopping.cancelled().await;
        tracing::info!("shutting down: no new requests; finishing those admitted");
        let mut drained = tokio::time::timeout(grace, &mut server).await.is_ok();
        if !drained {
            // Requests still waiting for a limit are refused; those already sent get
            // their answer's time.
            requests.cancel();
            drained = tokio::time::timeout(upstream_timeout, &mut server)
                .await
                .is_ok();
            tracing::warn!(
                drained,
                "requests still waiting after the grace period were refused"
            );
        }
        requests.cancel();
        background.cancel();
        // The lease loop must be done before the release: mid-replication it would
        // write the state under the release's feet (which then reads as another
        // instance having written it), and mid-take it could take the lease again
        // right after the release gave it up. Its NATS calls are bounded by the
        // client's request timeout; past that it is not worth waiting for.
        let mut lease_loop = lease_loop;
        if tokio::time::timeout(LEASE_LOOP_STOP, &mut lease_loop)
            .await
            .is_err()
        {
            lease_loop.abort();
            tracing::warn!("the lease loop did not stop in time; stopped it");
        }
        // Exact state only when nothing can still reach Discord from here.
        coordinator.release(drained).await;
        Ok(())
    });
    Ok(Proxy {
        addr: bound,
        coord,
        shutdown,
        task,
    })
}

async fn readyz(State(app): State<App>) -> Response {
    match app.coord.role() {
        Role::Holder { .. } if app.coord.may_send() => (StatusCode::OK, "holder\n").into_response(),
        Role::Standby { holder: Some(addr) } => {
            (StatusCode::OK, format!("standby, forwarding to {addr}\n")).into_response()
        }
        role => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {role:?}\n"),
        )
            .into_response(),
    }
}

/// Keeps the polled gauges current.
async fn gauges(limiter: Arc<Limiter>, own: Option<String>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let (invalid, _) = limiter.invalid_requests();
        metrics::gauge!(m::INVALID_REQUESTS).set(f64::from(invalid));
        if let Some(own) = &own {
            metrics::gauge!(m::GLOBAL_FILL).set(limiter.global_fill(own));
        }
        if let Some(handle) = m::handle() {
            handle.run_upkeep();
        }
    }
}
