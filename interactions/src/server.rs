//! The public HTTP/1.1 listener: hyper directly, for what `axum::serve` does not
//! expose: a header read timeout, answered with a 408.
//!
//! A new connection that sends its first request's headers slower than the timeout
//! (a slow-loris attack, or a broken network), or nothing at all, gets `408 Request
//! Timeout` and is closed. A connection that was already served is closed without a
//! word once it has been idle that long: a 408 there could be read as the answer to
//! the client's next request, racing with the close. The body's own timeout is the handler's. On
//! shutdown the listener stops accepting, idle connections close, and requests in
//! flight finish within the grace.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::metrics::{self as m, Outcome};

/// What a client too slow with its headers is sent before the connection closes.
const REQUEST_TIMEOUT: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

/// Serves `app` on `listener` until `shutdown`, then lets requests in flight finish
/// for at most `grace`.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    header_timeout: Duration,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors, most likely: wait for some to close.
                tracing::warn!(%error, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some((stream, spare)) = with_spare(stream) else {
            continue;
        };
        let served = Arc::new(AtomicBool::new(false));
        let service = {
            let (app, served) = (app.clone(), served.clone());
            hyper::service::service_fn(move |request| {
                served.store(true, Ordering::Relaxed);
                app.clone().oneshot(request)
            })
        };
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            let started = Instant::now();
            if let Err(error) = connection.await {
                if error.is_timeout() && !served.load(Ordering::Relaxed) {
                    // hyper gives up on the headers without answering; answer for it.
                    let _ = (&spare).write(REQUEST_TIMEOUT);
                    m::record(Outcome::TimedOut, started);
                    tracing::debug!("closed a connection too slow sending its headers");
                } else if !error.is_timeout() {
                    tracing::debug!(%error, "connection ended with an error");
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace over with requests still in flight");
    }
}

/// The stream for hyper, and a second handle on the same socket to write the 408
/// with once hyper has given up on the connection (hyper owns, then drops, its own).
fn with_spare(stream: TcpStream) -> Option<(TcpStream, std::net::TcpStream)> {
    let _ = stream.set_nodelay(true);
    let std = stream.into_std().ok()?;
    let spare = std.try_clone().ok()?;
    let stream = TcpStream::from_std(std).ok()?;
    Some((stream, spare))
}
