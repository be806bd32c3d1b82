//! A minimal HTTP/1.1 GET for the gateway's `/metrics`, `/healthz` and `/readyz`
//! (no client library needed for three plain-text endpoints).

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `GET path` on `addr`: the status code and body, or `None` if nothing answers.
pub async fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.ok()?;
    let response = String::from_utf8_lossy(&response);
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Some((status, body.to_owned()))
}

/// The value of the Prometheus sample `name{labels}` (labels exactly as rendered,
/// e.g. `reason="missing_data"`), summed over every series that has them.
pub fn sample(metrics: &str, name: &str, labels: &str) -> Option<f64> {
    let mut found = None;
    for line in metrics.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (series, value) = rest.rsplit_once(' ')?;
        let matches = if labels.is_empty() {
            series.is_empty() || series.starts_with('{')
        } else {
            series.starts_with('{') && series.contains(labels)
        };
        if matches {
            *found.get_or_insert(0.0) += value.parse::<f64>().ok()?;
        }
    }
    found
}
