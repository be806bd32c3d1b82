//! Connecting to NATS.

use std::time::Duration;

/// How to reach NATS.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// Server URL(s), comma separated (`nats://host:4222,nats://other:4222`).
    pub url: String,
    /// Connection name shown by the server's monitoring (`shardline-gateway`, ...).
    pub name: String,
}

/// Connects to NATS. The client reconnects on its own for ever after this returns.
///
/// # Errors
///
/// Fails if no server in `options.url` accepts the first connection within 10 s.
pub async fn connect(
    options: &ConnectOptions,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    async_nats::ConnectOptions::new()
        .name(&options.name)
        .connection_timeout(Duration::from_secs(10))
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Connected => tracing::info!("connected to NATS"),
                async_nats::Event::Disconnected => tracing::warn!("disconnected from NATS"),
                other => tracing::info!(event = %other, "NATS client event"),
            }
        })
        .connect(options.url.as_str())
        .await
}
