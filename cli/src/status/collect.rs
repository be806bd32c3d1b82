//! Gathering what `status` shows: the gateways' live answers, the stored sessions,
//! every stream and durable consumer, dead letters by subject, the nodes.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::consumer::{self, DeliverPolicy};
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use shardline_proto::gateway::{GatewayStatus, SESSIONS_BUCKET, STATUS_SUBJECT, StoredSession};
use shardline_proto::topology::DEAD_LETTER;

use super::{ConsumerRow, DeadLetterRow, PeerRow, StreamRow};
use crate::backup::stream_not_found;
use crate::{Error, ErrorKind};

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn ms_of(t: async_nats::datetime::DateTime) -> u64 {
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

/// Every gateway process's answer within `wait`.
pub(crate) async fn gateways(
    client: &async_nats::Client,
    wait: Duration,
) -> Result<Vec<GatewayStatus>, Error> {
    let inbox = client.new_inbox();
    let mut answers = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| Error::request("subscribing for gateway answers", e))?;
    client
        .publish_with_reply(STATUS_SUBJECT, inbox, Bytes::new())
        .await
        .map_err(|e| Error::request("asking the gateways", e))?;
    let deadline = tokio::time::Instant::now() + wait;
    let mut out = Vec::new();
    while let Ok(Some(answer)) = tokio::time::timeout_at(deadline, answers.next()).await {
        // A no-responders status (no gateway at all) has no body and is skipped.
        if let Ok(status) = serde_json::from_slice::<GatewayStatus>(&answer.payload) {
            out.push(status);
        }
    }
    let _ = answers.unsubscribe().await;
    out.sort_by(|a, b| a.process.cmp(&b.process));
    Ok(out)
}

/// The stored session of each shard, by shard.
pub(crate) async fn sessions(
    js: &jetstream::Context,
) -> Result<BTreeMap<u32, StoredSession>, Error> {
    let mut out = BTreeMap::new();
    match js.get_stream(format!("KV_{SESSIONS_BUCKET}")).await {
        Ok(_) => {}
        Err(e) if stream_not_found(e.kind()) => return Ok(out),
        Err(e) => return Err(Error::request("the sessions bucket", e)),
    }
    let kv = js
        .get_key_value(SESSIONS_BUCKET)
        .await
        .map_err(|e| Error::request("the sessions bucket", e))?;
    let keys: Vec<String> = kv
        .keys()
        .await
        .map_err(|e| Error::request("the sessions bucket", e))?
        .try_collect()
        .await
        .map_err(|e| Error::request("the sessions bucket", e))?;
    for key in keys {
        let Some(shard) = key.strip_prefix("shard-").and_then(|s| s.parse().ok()) else {
            continue;
        };
        let value = kv
            .get(&key)
            .await
            .map_err(|e| Error::request("the sessions bucket", e))?;
        if let Some(session) = value.and_then(|v| serde_json::from_slice(&v).ok()) {
            out.insert(shard, session);
        }
    }
    Ok(out)
}

/// Every stream, with its durable consumers. `server` is the server this client is
/// connected to: a standalone server (no cluster) leads every stream itself.
pub(crate) async fn streams(
    js: &jetstream::Context,
    server: &str,
) -> Result<(Vec<StreamRow>, Vec<ConsumerRow>), Error> {
    let infos: Vec<stream::Info> = js
        .streams()
        .try_collect()
        .await
        .map_err(|e| Error::request("listing streams", e))?;
    let mut rows = Vec::new();
    let mut consumers = Vec::new();
    for info in infos {
        let cluster = info.cluster.clone().unwrap_or_default();
        rows.push(StreamRow {
            name: info.config.name.clone(),
            storage: format!("{:?}", info.config.storage).to_lowercase(),
            messages: info.state.messages,
            bytes: info.state.bytes,
            replicas: info.config.num_replicas,
            leader: match (&cluster.leader, &cluster.name) {
                (Some(leader), _) => Some(leader.clone()),
                (None, None) => Some(server.to_owned()),
                (None, Some(_)) => None,
            },
            peers: cluster
                .replicas
                .iter()
                .map(|p| PeerRow {
                    name: p.name.clone(),
                    current: p.current,
                    offline: p.offline,
                    seen_ms_ago: u64::try_from(p.active.as_millis()).unwrap_or(u64::MAX),
                })
                .collect(),
            lagging: Vec::new(),
        });
        let stream = js
            .get_stream_no_info(&info.config.name)
            .await
            .map_err(|e| Error::request(format!("stream {}", info.config.name), e))?;
        let mut list = stream.consumers();
        while let Some(consumer) = list.next().await {
            let consumer = consumer
                .map_err(|e| Error::request(format!("consumers of {}", info.config.name), e))?;
            if consumer.config.durable_name.is_none() {
                continue;
            }
            consumers.push(ConsumerRow {
                stream: consumer.stream_name.clone(),
                name: consumer.name.clone(),
                lag: consumer.num_pending,
                ack_pending: consumer.num_ack_pending as u64,
                redelivered: consumer.num_redelivered as u64,
                waiting: consumer.num_waiting as u64,
                last_active_ms: consumer.delivered.last_active.map(ms_of),
                created_ms: ms_of(consumer.created),
            });
        }
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    consumers.sort_by(|a, b| (&a.stream, &a.name).cmp(&(&b.stream, &b.name)));
    Ok((rows, consumers))
}

/// Dead letters by stored subject, and how many are newer than `window` (by the
/// time the stream stored them).
pub(crate) async fn dead_letters(
    js: &jetstream::Context,
    window: Duration,
) -> Result<(Vec<DeadLetterRow>, u64), Error> {
    let stream = match js.get_stream(DEAD_LETTER.name).await {
        Ok(stream) => stream,
        Err(e) if stream_not_found(e.kind()) => return Ok((Vec::new(), 0)),
        Err(e) => return Err(Error::request("DEAD_LETTER", e)),
    };
    let mut rows = Vec::new();
    let mut subjects = stream
        .info_with_subjects(">")
        .await
        .map_err(|e| Error::request("DEAD_LETTER subjects", e))?;
    while let Some((subject, count)) = subjects
        .try_next()
        .await
        .map_err(|e| Error::request("DEAD_LETTER subjects", e))?
    {
        // deadletter.<consumer>.<original subject>
        let rest = subject
            .strip_prefix(shardline_proto::subject::DEAD_LETTER_PREFIX)
            .unwrap_or(&subject);
        let (consumer, original) = rest.split_once('.').unwrap_or((rest, ""));
        rows.push(DeadLetterRow {
            consumer: consumer.to_owned(),
            subject: original.to_owned(),
            messages: count as u64,
        });
    }
    rows.sort_by(|a, b| (&a.consumer, &a.subject).cmp(&(&b.consumer, &b.subject)));
    // Counting the new ones: an ephemeral reader from the window's start tells how
    // many it would deliver, without delivering anything.
    let start = SystemTime::now()
        .checked_sub(window)
        .unwrap_or(UNIX_EPOCH)
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let start_time = time_of(start).ok_or_else(|| {
        Error::new(
            ErrorKind::Usage,
            "the dead-letter window starts before 1970",
        )
    })?;
    let reader = stream
        .create_consumer(consumer::pull::Config {
            deliver_policy: DeliverPolicy::ByStartTime { start_time },
            ack_policy: consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(5),
            ..Default::default()
        })
        .await
        .map_err(|e| Error::request("counting new dead letters", e))?;
    let new = reader.cached_info().num_pending;
    let name = reader.cached_info().name.clone();
    let _ = stream.delete_consumer(&name).await;
    Ok((rows, new))
}

fn time_of(since_epoch: Duration) -> Option<async_nats::datetime::DateTime> {
    let nanos = i128::try_from(since_epoch.as_nanos()).ok()?;
    async_nats::datetime::DateTime::from_unix_timestamp_nanos(nanos).ok()
}
