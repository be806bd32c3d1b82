//! `/metrics` and `/healthz` on a worker's metrics address.
//!
//! `/healthz` answers 200 while the process serves requests: the container's
//! healthcheck. A worker whose NATS connection is down is still healthy (the client
//! reconnects on its own); restarting it would not help.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

/// Installs the worker's Prometheus recorder and serves `/metrics` and `/healthz` on
/// `addr` for the life of the process. Returns the bound address (`addr` may ask for
/// port 0).
///
/// # Errors
///
/// Fails if a recorder is already installed or `addr` cannot be bound.
pub async fn serve(addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    let handle = crate::metrics::builder()?.install_recorder()?;
    serve_with(addr, handle).await
}

/// Serves `/metrics` (rendered from `handle`) and `/healthz` on `addr`.
///
/// # Errors
///
/// Fails if `addr` cannot be bound.
pub async fn serve_with(addr: SocketAddr, handle: PrometheusHandle) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let render = handle.clone();
    let app = Router::new()
        .route("/metrics", get(move || async move { render.render() }))
        .route("/healthz", get(|| async { "ok\n" }));
    // Histogram upkeep: the exporter leaves it to the caller without its own listener.
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            handle.run_upkeep();
        }
    });
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "metrics endpoint stopped");
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    }

    #[tokio::test]
    async fn healthz_and_metrics_are_served() {
        let recorder = crate::metrics::builder().unwrap().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            metrics::counter!(crate::metrics::MESSAGES_PROCESSED, "consumer" => "c", "status" => "success")
                .increment(1);
        });
        let addr = serve_with("127.0.0.1:0".parse().unwrap(), handle)
            .await
            .unwrap();
        let health = get(addr, "/healthz").await;
        assert!(health.starts_with("HTTP/1.1 200"), "{health}");
        assert!(health.ends_with("ok\n"), "{health}");
        let metrics = get(addr, "/metrics").await;
        assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
        assert!(
            metrics.contains(crate::metrics::MESSAGES_PROCESSED),
            "{metrics}"
        );
        let missing = get(addr, "/nope").await;
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    }
}
