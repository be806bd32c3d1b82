//! What the proxy's tests share: a nats-server, the simulator with Discord's REST
//! limits, proxies in-process or as `shardline-rest` processes, a twilight-http
//! client through a proxy, and a raw HTTP client for input twilight never sends.

#![allow(dead_code)]

pub mod process;

use std::net::SocketAddr;
use std::time::Duration;

use shardline_discord_sim::{RestLatency, RestLimits, SimConfig, Simulator};
use shardline_proto::rest::MAX_WAIT_HEADER;
use shardline_rest::{Config, Proxy};
use shardline_testkit::{NatsServer, eventually, init_tracing};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// Safety net against hangs; never a synchronisation.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The simulator's bot token.
pub const TOKEN: &str = "sim-token";

/// A nats-server and the simulator with `limits` and Discord-like latency.
pub async fn stack(limits: RestLimits) -> (NatsServer, Simulator) {
    stack_with(limits, RestLatency::DISCORD).await
}

/// [`stack`] with a chosen REST latency.
pub async fn stack_with(limits: RestLimits, latency: RestLatency) -> (NatsServer, Simulator) {
    init_tracing();
    let nats = NatsServer::start();
    let sim = Simulator::start(SimConfig {
        rest_latency: latency,
        rest_limits: limits,
        ..SimConfig::default()
    })
    .await
    .expect("start the simulator");
    (nats, sim)
}

/// A proxy configuration for `sim` and `nats` holding the simulator's token.
pub fn config(sim: &Simulator, nats: &NatsServer) -> Config {
    let mut config = Config::new(&format!("http://{}", sim.http_base()), &nats.url());
    config.token = Some(shardline_jetstream::Secret::new(TOKEN));
    config
}

/// Starts an in-process proxy and waits until it holds the lease.
pub async fn holder(config: Config) -> Proxy {
    let proxy = shardline_rest::start(config, CancellationToken::new())
        .await
        .expect("start the proxy");
    eventually("the proxy holding the lease", PATIENCE, || async {
        proxy.is_holder().then_some(())
    })
    .await;
    proxy
}

/// A twilight-http client through the proxy at `addr` (no token: the proxy holds
/// it; no rate limiter of its own: the proxy is the rate limiter), with a wait
/// budget when given.
pub fn client(addr: SocketAddr, max_wait: Option<Duration>) -> twilight_http::Client {
    let mut builder = twilight_http::Client::builder()
        .proxy(addr.to_string(), true)
        .ratelimiter(None)
        .timeout(PATIENCE);
    if let Some(wait) = max_wait {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            MAX_WAIT_HEADER,
            wait.as_millis()
                .to_string()
                .parse()
                .expect("a header value"),
        );
        builder = builder.default_headers(headers);
    }
    builder.build()
}

/// An HTTP answer read in full.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Answer {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// One HTTP/1.1 exchange on its own connection: `head` is the request line and
/// headers without the final blank line.
pub async fn raw(addr: SocketAddr, head: &str, body: &[u8]) -> Answer {
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        // Not listening (yet, or any more): status 0.
        return Answer {
            status: 0,
            head: String::new(),
            body: String::new(),
        };
    };
    let mut request = format!("{head}\r\nConnection: close\r\n\r\n").into_bytes();
    request.extend_from_slice(body);
    // The proxy may answer (413) before reading everything: a failed write is fine.
    let _ = s.write_all(&request).await;
    let mut bytes = Vec::new();
    let _ = s.read_to_end(&mut bytes).await;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Answer {
        status: head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0),
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

/// `METHOD path` with a JSON body and optional extra header lines.
pub async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    extra: &[&str],
    body: &str,
) -> Answer {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\nContent-Length: {}",
        body.len()
    );
    for line in extra {
        head.push_str("\r\n");
        head.push_str(line);
    }
    raw(addr, &head, body.as_bytes()).await
}
