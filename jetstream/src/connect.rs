//! Connecting to NATS.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::auth::NatsAuth;

/// How to reach NATS.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// Server URL(s), comma separated (`nats://host:4222,nats://other:4222`).
    pub url: String,
    /// Connection name shown by the server's monitoring (`shardline-gateway`, ...).
    pub name: String,
    /// Credentials and TLS (none by default).
    pub auth: NatsAuth,
}

/// Connects to NATS. The client reconnects on its own for ever after this returns.
///
/// # Errors
///
/// Fails if the credentials are ambiguous (more than one of user/password, creds
/// file, nkey seed) or cannot be read, or if no server in `options.url` accepts the
/// first connection within 10 s (a refused password included).
pub async fn connect(options: &ConnectOptions) -> Result<async_nats::Client, async_nats::Error> {
    connect_observed(options, None).await
}

/// [`connect`], notifying `connected` each time the client (re)connects: a server
/// that restarted may have lost its memory streams, and a caller that publishes to
/// them wants to check before a publish tells it.
///
/// # Errors
///
/// As [`connect`].
pub async fn connect_observed(
    options: &ConnectOptions,
    connected: Option<Arc<Notify>>,
) -> Result<async_nats::Client, async_nats::Error> {
    let nats = auth_options(&options.auth).await?;
    let client = nats
        .name(&options.name)
        .connection_timeout(Duration::from_secs(10))
        .event_callback(move |event| {
            let connected = connected.clone();
            async move {
                match event {
                    async_nats::Event::Connected => {
                        tracing::info!("connected to NATS");
                        if let Some(connected) = connected {
                            connected.notify_one();
                        }
                    }
                    async_nats::Event::Disconnected => tracing::warn!("disconnected from NATS"),
                    // Permission violations arrive here: the server's text names the subject.
                    async_nats::Event::ServerError(error) => {
                        tracing::error!(%error, "NATS server error");
                    }
                    other => tracing::info!(event = %other, "NATS client event"),
                }
            }
        })
        .connect(server_urls(&options.url))
        .await?;
    Ok(client)
}

/// The servers of a comma-separated list (async-nats parses a `&str` as one URL).
pub fn server_urls(urls: &str) -> Vec<String> {
    urls.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Client options carrying `auth` (credentials, TLS) and nothing else: what
/// [`connect`] starts from, for a caller that needs its own event callback.
///
/// # Errors
///
/// Fails if the credentials are ambiguous or cannot be read.
pub async fn auth_options(
    auth: &NatsAuth,
) -> Result<async_nats::ConnectOptions, async_nats::Error> {
    let mut nats = async_nats::ConnectOptions::new();
    let password = auth.resolved_password()?;
    let methods = [
        auth.user.is_some() || password.is_some(),
        auth.creds_file.is_some(),
        auth.nkey_seed_file.is_some(),
    ];
    if methods.iter().filter(|m| **m).count() > 1 {
        return Err("set one NATS authentication: NATS_USER with a password, NATS_CREDS_FILE, or NATS_NKEY_SEED_FILE".into());
    }
    match (&auth.user, password) {
        (Some(user), Some(password)) => {
            nats = nats.user_and_password(user.clone(), password.expose().to_owned());
        }
        (None, None) => {}
        (Some(_), None) => return Err("NATS_USER is set without NATS_PASSWORD(_FILE)".into()),
        (None, Some(_)) => return Err("a NATS password is set without NATS_USER".into()),
    }
    if let Some(path) = &auth.creds_file {
        nats = nats
            .credentials_file(path)
            .await
            .map_err(|e| format!("NATS_CREDS_FILE {}: {e}", path.display()))?;
    }
    if let Some(path) = &auth.nkey_seed_file {
        let seed = crate::auth::secret_from_env_or_file("NATS_NKEY_SEED", None, Some(path))?
            .expect("a file was given");
        nats = nats.nkey(seed.expose().to_owned());
    }
    if auth.tls_ca_file.is_some() || auth.tls_cert_file.is_some() || auth.tls_required {
        // async-nats builds its TLS config with the process-wide provider; choose it
        // (ring, async-nats' own) before another crate's second provider makes the
        // choice ambiguous (NOTES.md: that panics). A provider already installed wins.
        let _ = async_nats::rustls::crypto::ring::default_provider().install_default();
    }
    if let Some(ca) = &auth.tls_ca_file {
        nats = nats.add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&auth.tls_cert_file, &auth.tls_key_file) {
        nats = nats.add_client_certificate(cert.clone(), key.clone());
    }
    if auth.tls_required {
        nats = nats.require_tls(true);
    }
    Ok(nats)
}
