//! The NATS side: the connection, the COMMANDS stream kept present, and workers'
//! offers of first responses answered.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use futures_util::StreamExt;
use shardline_jetstream::ReconcileOptions;
use shardline_proto::interaction::Answer;
use shardline_proto::topology::COMMANDS;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, ErrorKind};
use crate::metrics as m;
use crate::pending::Pending;

/// Room left in a message for headers when the body is checked against the server's
/// `max_payload`.
pub(crate) const HEADER_ROOM: usize = 4096;

/// What the connection tells the rest of the service.
pub(crate) struct Link {
    pub client: async_nats::Client,
    /// Woken on every (re)connect and after a failed publish: make sure COMMANDS exists.
    pub check_topology: Arc<Notify>,
    /// The server's `max_payload`, refreshed on every connect (0 before the first).
    pub max_payload: Arc<AtomicUsize>,
}

/// Connects to NATS without waiting for the first connection: until it is up the
/// service answers PINGs and refuses interactions with 503 (so does `/readyz`), and
/// the client keeps trying for ever.
///
/// # Errors
///
/// [`ErrorKind::Nats`] if credentials or TLS files cannot be read.
pub(crate) async fn connect(
    url: &str,
    auth: &shardline_jetstream::NatsAuth,
) -> Result<Link, Error> {
    let options = shardline_jetstream::auth_options(auth)
        .await
        .map_err(|e| Error::new(ErrorKind::Nats, e.to_string()))?;
    let check_topology = Arc::new(Notify::new());
    let max_payload = Arc::new(AtomicUsize::new(0));
    let connected = check_topology.clone();
    let client = options
        .name("shardline-interactions")
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(5))
        .event_callback(move |event| {
            let connected = connected.clone();
            async move {
                match event {
                    async_nats::Event::Connected => {
                        tracing::info!("connected to NATS");
                        connected.notify_one();
                    }
                    async_nats::Event::Disconnected => tracing::warn!("disconnected from NATS"),
                    async_nats::Event::ServerError(error) => {
                        tracing::error!(%error, "NATS server error");
                    }
                    other => tracing::info!(event = %other, "NATS client event"),
                }
            }
        })
        .connect(shardline_jetstream::server_urls(url))
        .await
        .map_err(|e| Error::new(ErrorKind::Nats, e.to_string()))?;
    Ok(Link {
        client,
        check_topology,
        max_payload,
    })
}

/// Makes sure COMMANDS exists whenever `check` is notified (create only: the gateway
/// owns its settings), retrying every second until it does; keeps `max_payload`
/// current; `ensured` says whether COMMANDS is known to be there. A server restarted
/// without its memory streams is repaired here.
pub(crate) async fn keep_topology(
    js: jetstream::Context,
    replicas: usize,
    check: Arc<Notify>,
    max_payload: Arc<AtomicUsize>,
    ensured: tokio::sync::watch::Sender<bool>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = check.notified() => {}
        }
        // A reconnect or a failed publish: the stream may be gone until re-created.
        ensured.send_replace(false);
        let info = js.client().server_info();
        if info.max_payload > 0 {
            max_payload.store(info.max_payload, Ordering::Relaxed);
        }
        loop {
            let ensured_now =
                shardline_jetstream::ensure_stream(&js, &COMMANDS, ReconcileOptions { replicas })
                    .await;
            match ensured_now {
                Ok(_) => {
                    ensured.send_replace(true);
                    break;
                }
                Err(error) => tracing::warn!(%error, "COMMANDS stream not available; retrying"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}

/// Answers workers' offers on `subscription` (this instance's reply subjects): the
/// table decides, the reply says what it decided. Runs until the subscription ends
/// or `shutdown`.
pub(crate) async fn answer_offers(
    client: async_nats::Client,
    mut subscription: async_nats::Subscriber,
    pending: Arc<Pending>,
    shutdown: CancellationToken,
) {
    let used = metrics::counter!(m::WORKER_OFFERS, "answer" => "used");
    let deferred = metrics::counter!(m::WORKER_OFFERS, "answer" => "deferred");
    loop {
        let message = tokio::select! {
            () = shutdown.cancelled() => return,
            message = subscription.next() => match message {
                Some(message) => message,
                None => return,
            },
        };
        let id = message
            .subject
            .rsplit('.')
            .next()
            .and_then(|id| id.parse::<u64>().ok());
        let answer = match id {
            Some(id) => pending.offer(id, message.payload),
            None => Answer::Deferred,
        };
        match answer {
            Answer::Used => used.increment(1),
            Answer::Deferred => deferred.increment(1),
        }
        if let Some(reply) = message.reply {
            let payload = bytes::Bytes::from_static(answer.payload());
            if let Err(error) = client.publish(reply, payload).await {
                tracing::warn!(%error, "answering a worker's offer failed");
            }
        }
    }
}
