//! Connecting to the shipped 3-node configuration as one of its users, through the
//! binaries' own auth code, with the server's errors reported (included with
//! `#[path]` by the tests that use it).

use async_nats::ServerError;
use shardline_jetstream::{NatsAuth, auth_options};
use shardline_testkit::{NatsCluster, password};
use tokio::sync::mpsc;

/// Connects as `user`, reporting the server errors (permission violations) it sends.
pub async fn connect_as(
    cluster: &NatsCluster,
    user: &str,
) -> (async_nats::Client, mpsc::UnboundedReceiver<ServerError>) {
    let (tx, errors) = mpsc::unbounded_channel();
    let client = auth_options(&NatsAuth::user_password(user, &password(user)))
        .await
        .unwrap()
        .event_callback(move |event| {
            let tx = tx.clone();
            async move {
                if let async_nats::Event::ServerError(error) = event {
                    let _ = tx.send(error);
                }
            }
        })
        .connect(shardline_jetstream::server_urls(&cluster.url()))
        .await
        .unwrap();
    (client, errors)
}
