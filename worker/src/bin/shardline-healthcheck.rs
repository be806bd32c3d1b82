//! `shardline-healthcheck`: the container healthcheck of the gateway, worker and REST
//! proxy images (which have no shell or curl). Asks `GET /healthz` on the port of
//! `METRICS_ADDR` (or, for the proxy, `REST_LISTEN`) over loopback and exits 0 on a
//! 200, 1 otherwise.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    match check() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("unhealthy: {error}");
            ExitCode::FAILURE
        }
    }
}

fn check() -> Result<(), String> {
    // The REST proxy serves /healthz on its own port (REST_LISTEN).
    let (name, value) = ["METRICS_ADDR", "REST_LISTEN"]
        .into_iter()
        .find_map(|name| std::env::var(name).ok().map(|v| (name, v)))
        .ok_or_else(|| {
            "neither METRICS_ADDR nor REST_LISTEN is set; /healthz is not served".to_owned()
        })?;
    let addr: SocketAddr = value.parse().map_err(|e| format!("{name}: {e}"))?;
    // The server may listen on 0.0.0.0: ask it on loopback.
    let target = SocketAddr::from(([127, 0, 0, 1], addr.port()));
    let timeout = Duration::from_secs(3);
    let mut stream = TcpStream::connect_timeout(&target, timeout).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    let status = response.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) == Some("200") {
        Ok(())
    } else {
        Err(format!("/healthz answered {status:?}"))
    }
}
