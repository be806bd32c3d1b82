//! Restoring a verified backup: create the stream, publish every message in order
//! (keeping sequence numbers unless told not to), then put the original settings
//! back.

use std::path::Path;
use std::time::Duration;

use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::Serialize;

use super::inflight::{InFlight, RecentIds};
use super::{Manifest, SegmentReader, progress, stream_not_found, verify};
use crate::{Error, ErrorKind};

/// How `restore` behaves.
#[derive(Clone, Copy, Debug, Default)]
pub struct RestoreOptions {
    /// Delete and replace a stream that exists (only after the backup verified).
    pub force: bool,
    /// Replicas of the restored stream; the backed-up count when `None`.
    pub replicas: Option<usize>,
    /// Number messages from 1 instead of keeping their sequences.
    pub renumber: bool,
    /// Draw progress bars (on a terminal).
    pub progress: bool,
}

/// What a restore did.
#[derive(Clone, Debug, Serialize)]
pub struct RestoreSummary {
    /// The stream restored.
    pub stream: String,
    /// Messages published.
    pub messages: u64,
    /// Whether sequence numbers are those of the backup.
    pub sequences_kept: bool,
    /// Placeholders published and deleted to keep gaps where messages had been
    /// deleted.
    pub gaps_filled: u64,
    /// Its replicas.
    pub replicas: usize,
    /// Whether a stream was deleted first (`--force`).
    pub replaced: bool,
}

/// Header on the placeholders that hold a gap's sequence until they are deleted.
const GAP_HEADER: &str = "Shardline-Restore-Gap";

/// The shortest duplicate window JetStream accepts (measured: "duplicates window
/// needs to be >= 100ms"), kept during a restore. A backup may hold two messages
/// with the same `Nats-Msg-Id` (stored further apart than the stream's window), and
/// both must come back: a repeated id waits [`DUPLICATE_WAIT`](super::inflight::DUPLICATE_WAIT) after the first one
/// was published. The stream's own window is put back at the end.
const RESTORE_DUPLICATE_WINDOW: Duration = Duration::from_millis(100);
/// Restores the backup in `dir`: verifies all of it first, then (only then)
/// creates the stream, replacing an existing one with `force`.
///
/// # Errors
///
/// [`ErrorKind::BadBackup`] and [`ErrorKind::NotFound`] from [`verify`], before
/// anything is changed; [`ErrorKind::Exists`] if the stream exists without `force`;
/// [`ErrorKind::Usage`] for a mirror or sourced stream; [`ErrorKind::Conflict`] if a
/// message lands on another sequence than expected (someone else publishes into the
/// stream); [`ErrorKind::Request`] if JetStream refuses.
pub async fn restore(
    js: &jetstream::Context,
    dir: &Path,
    options: RestoreOptions,
) -> Result<RestoreSummary, Error> {
    let manifest = verify(dir, options.progress)?;
    let original: stream::Config =
        serde_json::from_value(manifest.config.clone()).map_err(|e| {
            Error::new(
                ErrorKind::BadBackup,
                format!(
                    "{}: the stream config in the manifest is unreadable: {e}",
                    dir.display()
                ),
            )
        })?;
    let name = manifest.stream.clone();
    if original.name != name {
        return Err(Error::new(
            ErrorKind::BadBackup,
            format!(
                "{}: the manifest names {name} and a config of {}",
                dir.display(),
                original.name
            ),
        ));
    }
    if original.mirror.is_some() || original.sources.as_ref().is_some_and(|s| !s.is_empty()) {
        return Err(Error::new(
            ErrorKind::Usage,
            format!("{name} is a mirror or sources other streams: restore its origin instead"),
        ));
    }
    // KV revisions are not kept: a bucket with history 1 has a gap for every
    // overwritten value, and refilling them all could mean millions of publishes.
    let keep = !options.renumber && manifest.kind != "kv";
    let replicas = options.replicas.unwrap_or(original.num_replicas).max(1);

    let mut replaced = false;
    match js.get_stream(&name).await {
        Ok(_) if !options.force => {
            return Err(Error::new(
                ErrorKind::Exists,
                format!("stream {name} exists; pass --force to replace it with the backup"),
            ));
        }
        Ok(_) => {
            js.delete_stream(&name)
                .await
                .map_err(|e| Error::request(format!("deleting {name}"), e))?;
            replaced = true;
            tracing::warn!(stream = %name, "existing stream deleted to restore the backup");
        }
        Err(e) if stream_not_found(e.kind()) => {}
        Err(e) => return Err(Error::request(format!("stream {name}"), e)),
    }

    let mut create = stream::Config {
        num_replicas: replicas,
        duplicate_window: RESTORE_DUPLICATE_WINDOW,
        sealed: false,
        ..original.clone()
    };
    if keep {
        create.first_sequence = Some(if manifest.messages == 0 {
            manifest.last_sequence + 1
        } else {
            manifest.first_sequence
        });
        // Placeholders must not push real messages out, and must be deletable.
        create.max_messages = -1;
        create.max_bytes = -1;
        create.max_messages_per_subject = -1;
        create.deny_delete = false;
    }
    let created = js.create_stream(create.clone()).await.map_err(|e| {
        let hint = if replaced {
            " (the old stream is already deleted; the backup is intact: fix the cause and run restore again)"
        } else {
            ""
        };
        Error::request(format!("creating {name}{hint}"), e)
    })?;

    let gaps = publish_all(js, dir, &manifest, keep, options.progress).await?;
    if !gaps.is_empty() {
        let bar = progress(options.progress, gaps.len() as u64, "closing gaps");
        let mut deletes = futures_util::stream::iter(gaps.iter().copied())
            .map(|seq| {
                let created = &created;
                async move { created.delete_message(seq).await.map(|_| ()) }
            })
            .buffer_unordered(64);
        while let Some(result) = deletes.next().await {
            result.map_err(|e| Error::request(format!("deleting a placeholder in {name}"), e))?;
            bar.inc(1);
        }
        bar.finish_and_clear();
    }
    let settle = stream::Config {
        num_replicas: replicas,
        first_sequence: create.first_sequence,
        ..original
    };
    js.update_stream(settle)
        .await
        .map_err(|e| Error::request(format!("putting {name}'s settings back"), e))?;
    check_state(js, &manifest, keep).await?;
    Ok(RestoreSummary {
        stream: name,
        messages: manifest.messages,
        sequences_kept: keep,
        gaps_filled: gaps.len() as u64,
        replicas,
        replaced,
    })
}

/// Publishes every record in order, with placeholders in the gaps when `keep`.
/// Returns the placeholders' sequences.
async fn publish_all(
    js: &jetstream::Context,
    dir: &Path,
    manifest: &Manifest,
    keep: bool,
    show_progress: bool,
) -> Result<Vec<u64>, Error> {
    let name = &manifest.stream;
    let span = if keep {
        manifest.last_sequence + 1 - manifest.first_sequence.max(1)
    } else {
        manifest.messages
    };
    let bar = progress(show_progress, span.max(manifest.messages), name);
    let mut in_flight = InFlight::default();
    let mut next = if keep {
        manifest.first_sequence.max(1)
    } else {
        1
    };
    let mut gaps = Vec::new();
    let mut last_subject = None::<String>;
    let mut recent = RecentIds::default();
    for segment in &manifest.segments {
        let path = dir.join(&segment.file);
        let mut reader = SegmentReader::open(&path)
            .map_err(|e| Error::io(format!("reading {}", segment.file), e))?;
        while let Some(record) = reader
            .next_record()
            .map_err(|e| Error::io(format!("reading {}", segment.file), e))?
        {
            while keep && next < record.sequence {
                let ack = placeholder(js, &record.subject).await?;
                in_flight.push(name, next, 0, ack).await?;
                gaps.push(next);
                next += 1;
                bar.inc(1);
            }
            let headers = record.header_map();
            if let Some(id) = headers.get(async_nats::header::NATS_MESSAGE_ID) {
                if let Some(wait) = recent.wait_for(id.as_str()) {
                    in_flight.drain(name).await?;
                    tokio::time::sleep(wait).await;
                }
                recent.published(id.as_str());
            }
            let ack = js
                .publish_with_headers(record.subject.clone(), headers, record.payload.clone())
                .await
                .map_err(|e| Error::request(format!("publishing into {name}"), e))?;
            in_flight
                .push(name, next, record.payload.len(), ack)
                .await?;
            next += 1;
            bar.inc(1);
            last_subject = Some(record.subject);
        }
    }
    // Messages deleted after the last one backed up: keep the last sequence too.
    if keep && manifest.messages > 0 {
        let subject = last_subject.unwrap_or_default();
        while next <= manifest.last_sequence {
            let ack = placeholder(js, &subject).await?;
            in_flight.push(name, next, 0, ack).await?;
            gaps.push(next);
            next += 1;
            bar.inc(1);
        }
    }
    in_flight.drain(name).await?;
    bar.finish_and_clear();
    Ok(gaps)
}

async fn placeholder(js: &jetstream::Context, subject: &str) -> Result<PublishAckFuture, Error> {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(GAP_HEADER, "1");
    js.publish_with_headers(subject.to_owned(), headers, Bytes::new())
        .await
        .map_err(|e| Error::request("publishing a placeholder", e))
}

/// The restored stream holds what the manifest says.
async fn check_state(
    js: &jetstream::Context,
    manifest: &Manifest,
    keep: bool,
) -> Result<(), Error> {
    let name = &manifest.stream;
    let mut stream = js
        .get_stream(name)
        .await
        .map_err(|e| Error::request(format!("stream {name}"), e))?;
    let state = stream
        .info()
        .await
        .map_err(|e| Error::request(format!("stream {name}"), e))?
        .state
        .clone();
    let sequences_ok = !keep
        || manifest.messages == 0
        || (state.first_sequence == manifest.first_sequence
            && state.last_sequence == manifest.last_sequence);
    if state.messages != manifest.messages || !sequences_ok {
        return Err(Error::new(
            ErrorKind::Conflict,
            format!(
                "{name} holds {} messages ({}..={}) after the restore, the backup {} ({}..={})",
                state.messages,
                state.first_sequence,
                state.last_sequence,
                manifest.messages,
                manifest.first_sequence,
                manifest.last_sequence
            ),
        ));
    }
    Ok(())
}
