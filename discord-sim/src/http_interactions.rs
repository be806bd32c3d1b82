//! Discord's side of HTTP interactions: signed POSTs to an application's Interactions
//! Endpoint URL, read the way Discord reads the answer.
//!
//! Each request is signed with the simulator's Ed25519 key (`X-Signature-Ed25519`
//! over `X-Signature-Timestamp` + the body), or deliberately not ([`Signing`]), as
//! Discord does to check that an endpoint refuses bad signatures. Discord's reading
//! of an answer ([`Verdict`]): a valid signature needs `200`, `application/json` and
//! a body whose `type` is a valid first response to the interaction, within 3 s
//! (Discord hangs up then); an invalid one needs `401`. Every request is recorded.
//! The follow-ups and edits that complete a deferred interaction arrive at the
//! [`Simulator`](crate::Simulator)'s REST side, keyed by the interaction's token.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ed25519_dalek::{Signer, SigningKey};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::header::{CONTENT_TYPE, USER_AGENT};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rand::Rng;
use serde_json::Value;

use crate::http_traffic::HttpInteraction;

/// Discord's header with the signature (hex).
pub const SIGNATURE_HEADER: &str = "x-signature-ed25519";
/// Discord's header with the signed Unix time in seconds.
pub const TIMESTAMP_HEADER: &str = "x-signature-timestamp";
/// How long Discord waits for an endpoint's answer.
pub const DISCORD_TIMEOUT: Duration = Duration::from_secs(3);

/// The seed of the simulator's application key pair, unless told otherwise.
pub const DEFAULT_KEY_SEED: [u8; 32] = [7; 32];
/// The seed of the key that signs [`Signing::WrongKey`] requests.
const WRONG_KEY_SEED: [u8; 32] = [9; 32];

/// How a request is signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Signing {
    /// Correctly, now.
    Valid,
    /// With another application's key.
    WrongKey,
    /// Correctly, then one bit of the signature flipped.
    FlippedBit,
    /// Correctly, over a timestamp ten minutes old.
    StaleTimestamp,
    /// Correctly, without sending `X-Signature-Timestamp`.
    MissingTimestamp,
    /// Without `X-Signature-Ed25519`.
    MissingSignature,
}

impl Signing {
    /// Every deliberately invalid signing.
    pub const INVALID: [Signing; 5] = [
        Self::WrongKey,
        Self::FlippedBit,
        Self::StaleTimestamp,
        Self::MissingTimestamp,
        Self::MissingSignature,
    ];

    /// Whether an endpoint must accept it.
    pub fn is_valid(self) -> bool {
        self == Self::Valid
    }
}

/// Discord's reading of an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A valid first response, within 3 s.
    Answered,
    /// `401` to an invalid signature, as Discord requires.
    Refused,
    /// What Discord counts as a failure ("This interaction failed"), and why.
    Failed(String),
}

/// One request Discord sent and what came back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRecord {
    /// The interaction's id.
    pub interaction_id: String,
    /// The interaction's token.
    pub token: String,
    /// The interaction's type.
    pub kind: u8,
    /// How the request was signed.
    pub signing: Signing,
    /// The status, if an answer came within Discord's timeout.
    pub status: Option<u16>,
    /// Its `Content-Type`.
    pub content_type: Option<String>,
    /// Its body.
    pub body: String,
    /// The `type` of a JSON answer.
    pub response_type: Option<u8>,
    /// When the request was sent.
    pub sent_at: SystemTime,
    /// Sent to answered (or to giving up).
    pub elapsed: Duration,
    /// Discord's reading.
    pub verdict: Verdict,
}

/// Discord's HTTP interactions client for one endpoint. Cheap to clone.
#[derive(Clone)]
pub struct HttpInteractions {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: hyper::Uri,
    key: SigningKey,
    wrong_key: SigningKey,
    client: Client<HttpConnector, Full<Bytes>>,
    records: Mutex<Vec<HttpRecord>>,
    keep_records: bool,
    probes: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for HttpInteractions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpInteractions")
            .field("endpoint", &self.inner.endpoint)
            .finish()
    }
}

impl HttpInteractions {
    /// A client for `endpoint` (`http://host:port/interactions`) signing with the
    /// default application key.
    ///
    /// # Panics
    ///
    /// If `endpoint` is not a URI.
    pub fn new(endpoint: &str) -> Self {
        Self::with_key(endpoint, DEFAULT_KEY_SEED)
    }

    /// A client signing with the key pair of `seed`.
    ///
    /// # Panics
    ///
    /// If `endpoint` is not a URI.
    pub fn with_key(endpoint: &str, seed: [u8; 32]) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Self {
            inner: Arc::new(Inner {
                endpoint: endpoint.parse().expect("an endpoint URI"),
                key: SigningKey::from_bytes(&seed),
                wrong_key: SigningKey::from_bytes(&WRONG_KEY_SEED),
                client,
                records: Mutex::new(Vec::new()),
                keep_records: true,
                probes: Default::default(),
            }),
        }
    }

    /// The same client keeping no records ([`records`](Self::records) stays empty),
    /// for a process that sends for days.
    ///
    /// # Panics
    ///
    /// If the client was cloned already.
    pub fn unrecorded(mut self) -> Self {
        Arc::get_mut(&mut self.inner)
            .expect("not cloned yet")
            .keep_records = false;
        self
    }

    /// The application's public key, hex, as the Developer Portal shows it.
    pub fn public_key(&self) -> String {
        hex(self.inner.key.verifying_key().as_bytes())
    }

    /// Sends `interaction` signed as `signing` and records the answer.
    pub async fn send(&self, interaction: &HttpInteraction, signing: Signing) -> HttpRecord {
        let record = self
            .post(Bytes::from(interaction.body.clone()), signing)
            .await;
        let record = HttpRecord {
            interaction_id: interaction.id.clone(),
            token: interaction.token.clone(),
            kind: interaction.kind,
            verdict: verdict(signing, interaction.kind, &record),
            ..record
        };
        if self.inner.keep_records {
            self.lock().push(record.clone());
        }
        record
    }

    /// Sends `body` as it is, signed as `signing`, and returns the answer without
    /// recording it or judging it (for bodies that are not interactions).
    pub async fn send_raw(&self, body: impl Into<Bytes>, signing: Signing) -> HttpRecord {
        self.post(body.into(), signing).await
    }

    /// The `X-Signature-Ed25519` and `X-Signature-Timestamp` values Discord would
    /// send with `body` now (for a load generator that signs once and sends many).
    pub fn sign(&self, body: &[u8]) -> (String, String) {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
            .to_string();
        let mut message = timestamp.as_bytes().to_vec();
        message.extend_from_slice(body);
        (hex(&self.inner.key.sign(&message).to_bytes()), timestamp)
    }

    /// Every recorded request, in the order the answers came.
    pub fn records(&self) -> Vec<HttpRecord> {
        self.lock().clone()
    }

    /// A fresh number for each probe, so they take each invalid kind in turn.
    pub(crate) fn next_probe(&self) -> u64 {
        self.inner
            .probes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<HttpRecord>> {
        self.inner.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn post(&self, body: Bytes, signing: Signing) -> HttpRecord {
        let now = SystemTime::now();
        let seconds = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let timestamp = match signing {
            Signing::StaleTimestamp => seconds - 600,
            _ => seconds,
        }
        .to_string();
        let key = match signing {
            Signing::WrongKey => &self.inner.wrong_key,
            _ => &self.inner.key,
        };
        let mut message = timestamp.as_bytes().to_vec();
        message.extend_from_slice(&body);
        let mut signature = key.sign(&message).to_bytes();
        if signing == Signing::FlippedBit {
            let bit = rand::rng().random_range(0..512usize);
            signature[bit / 8] ^= 1 << (bit % 8);
        }
        let mut request = Request::post(self.inner.endpoint.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(
                USER_AGENT,
                "Discord-Interactions/1.0 (+https://discord.com)",
            );
        if signing != Signing::MissingSignature {
            request = request.header(SIGNATURE_HEADER, hex(&signature));
        }
        if signing != Signing::MissingTimestamp {
            request = request.header(TIMESTAMP_HEADER, timestamp);
        }
        let request = request
            .body(Full::new(body))
            .expect("a request of static parts");
        let started = Instant::now();
        let exchange = async {
            let response = self.inner.client.request(request).await?;
            let status = response.status().as_u16();
            let content_type = response
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((status, content_type, body))
        };
        let (status, content_type, body) =
            match tokio::time::timeout(DISCORD_TIMEOUT, exchange).await {
                Ok(Ok((status, content_type, body))) => (
                    Some(status),
                    content_type,
                    String::from_utf8_lossy(&body).into_owned(),
                ),
                Ok(Err(error)) => (None, None, format!("request failed: {error}")),
                Err(_) => (None, None, "no answer within 3 s".to_owned()),
            };
        let response_type = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v.get("type")?.as_u64())
            .and_then(|t| u8::try_from(t).ok());
        HttpRecord {
            interaction_id: String::new(),
            token: String::new(),
            kind: 0,
            signing,
            status,
            content_type,
            body,
            response_type,
            sent_at: now,
            elapsed: started.elapsed(),
            verdict: Verdict::Failed("not judged".to_owned()),
        }
    }
}

/// The public key (hex) of the key pair of `seed`.
pub fn public_key_hex(seed: [u8; 32]) -> String {
    hex(SigningKey::from_bytes(&seed).verifying_key().as_bytes())
}

/// Discord's reading of `record`, an answer to an interaction of type `kind`.
fn verdict(signing: Signing, kind: u8, record: &HttpRecord) -> Verdict {
    let Some(status) = record.status else {
        return Verdict::Failed(record.body.clone());
    };
    if !signing.is_valid() {
        return if status == 401 {
            Verdict::Refused
        } else {
            Verdict::Failed(format!("accepted a request signed {signing:?}: {status}"))
        };
    }
    if status != 200 {
        return Verdict::Failed(format!("status {status}"));
    }
    if !record
        .content_type
        .as_deref()
        .is_some_and(|t| t.starts_with("application/json"))
    {
        return Verdict::Failed(format!("content type {:?}", record.content_type));
    }
    let valid: &[u8] = match kind {
        1 => &[1],
        2 => &[4, 5, 9],
        3 => &[4, 5, 6, 7, 9],
        4 => &[8],
        5 => &[4, 5, 6, 7],
        _ => &[],
    };
    match record.response_type {
        Some(t) if valid.contains(&t) => Verdict::Answered,
        other => Verdict::Failed(format!(
            "response type {other:?} to an interaction of type {kind}"
        )),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
