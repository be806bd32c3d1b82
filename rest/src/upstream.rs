//! The connection to Discord (or the simulator): a pooled HTTP/1.1 client, TLS with
//! the platform's roots, a timeout on every request.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, Method, Request, StatusCode, header};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::error::{Error, ErrorKind};

/// Headers that belong to one connection, never forwarded.
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop headers, `Host` and `Keep-Alive`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(header::HOST);
    headers.remove("keep-alive");
}

/// Discord's answer, read in full.
#[derive(Debug)]
pub struct UpstreamAnswer {
    /// Status.
    pub status: StatusCode,
    /// Headers (hop-by-hop ones removed).
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

/// Why no answer came.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamError {
    /// Not within the timeout: the request may or may not have taken effect.
    Timeout,
    /// No connection, or it broke before an answer.
    Unreachable,
}

/// A client for one base URL.
#[derive(Clone, Debug)]
pub struct Upstream {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    base: String,
    timeout: Duration,
}

impl Upstream {
    /// A client for `base` (`https://discord.com`, `http://127.0.0.1:PORT`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Upstream`] when the platform's TLS roots cannot be loaded.
    pub fn new(base: &str, timeout: Duration) -> Result<Self, Error> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_platform_verifier(rustls::crypto::ring::default_provider())
            .map_err(|e| Error::new(ErrorKind::Upstream, format!("TLS roots: {e}")))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(1024)
            .build(https);
        Ok(Self {
            client,
            base: base.trim_end_matches('/').to_owned(),
            timeout,
        })
    }

    /// Sends one request (`path_and_query` starting with `/`) and reads the answer.
    ///
    /// # Errors
    ///
    /// [`UpstreamError`] when no complete answer came in time.
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<UpstreamAnswer, UpstreamError> {
        self.send_within(method, path_and_query, headers, body, self.timeout)
            .await
    }

    /// [`send`](Self::send) with its own timeout.
    ///
    /// # Errors
    ///
    /// [`UpstreamError`] when no complete answer came in time.
    pub async fn send_within(
        &self,
        method: Method,
        path_and_query: &str,
        headers: &HeaderMap,
        body: Bytes,
        timeout: Duration,
    ) -> Result<UpstreamAnswer, UpstreamError> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path_and_query}", self.base))
            .body(Full::new(body))
            .map_err(|_| UpstreamError::Unreachable)?;
        request.headers_mut().extend(headers.clone());
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|_| UpstreamError::Unreachable)?;
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|_| UpstreamError::Unreachable)?
                .to_bytes();
            let mut headers = parts.headers;
            strip_hop_by_hop(&mut headers);
            Ok(UpstreamAnswer {
                status: parts.status,
                headers,
                body,
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| UpstreamError::Timeout)?
    }
}
