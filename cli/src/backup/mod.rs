//! `shardline backup` and `restore`: a stream or KV bucket, message by message, to
//! and from a directory of checksummed segments with a manifest written last.
//! The format and the choices behind it are in docs/ops.md.

mod format;
mod inflight;
mod restore;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::{self, ErrorCode};
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};

pub use format::{FORMAT, MANIFEST, Manifest, Record, Segment, SegmentReader};
pub use restore::{RestoreOptions, RestoreSummary, restore};

use crate::{Error, ErrorKind};
use format::{HashingWriter, SEGMENT_BYTES};

/// What to back up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A stream, by name.
    Stream(String),
    /// A KV bucket, by bucket name (its stream is `KV_<bucket>`).
    Kv(String),
}

impl Source {
    fn stream(&self) -> String {
        match self {
            Self::Stream(name) => name.clone(),
            Self::Kv(bucket) => format!("KV_{bucket}"),
        }
    }
}

/// A progress bar on stderr, drawn only on a terminal (indicatif hides it
/// otherwise), or none at all when `show` is off.
pub(crate) fn progress(show: bool, total: u64, what: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:12} [{bar:40}] {pos}/{len} messages ({per_sec}, {eta} left)",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    bar
}

pub(crate) fn stream_not_found(kind: GetStreamErrorKind) -> bool {
    matches!(kind, GetStreamErrorKind::JetStream(e) if e.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

fn empty_or_new(dir: &Path) -> Result<(), Error> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Error::new(
                    ErrorKind::Exists,
                    format!(
                        "{} is not empty; back up into a new directory",
                        dir.display()
                    ),
                ));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e)),
        Err(e) => Err(Error::io(format!("reading {}", dir.display()), e)),
    }
}

fn segment_name(n: usize) -> String {
    format!("data-{n:06}.bin")
}

/// Backs `source` up into `dir` (new or empty): every message up to the stream's
/// last sequence at the start, in order, with subject, headers and payload. The
/// manifest is written last, after every segment is on disk.
///
/// # Errors
///
/// [`ErrorKind::NotFound`] if the stream does not exist, [`ErrorKind::Exists`] if
/// `dir` is not empty, [`ErrorKind::Io`] or [`ErrorKind::Request`] on the way.
pub async fn backup(
    client: &async_nats::Client,
    source: &Source,
    dir: &Path,
    show_progress: bool,
) -> Result<Manifest, Error> {
    let js = jetstream::new(client.clone());
    let name = source.stream();
    let mut stream = match js.get_stream(&name).await {
        Ok(stream) => stream,
        Err(e) if stream_not_found(e.kind()) => {
            return Err(Error::new(ErrorKind::NotFound, format!("no stream {name}")));
        }
        Err(e) => return Err(Error::request(format!("stream {name}"), e)),
    };
    empty_or_new(dir)?;
    let info = stream
        .info()
        .await
        .map_err(|e| Error::request(format!("stream {name}"), e))?
        .clone();
    let created_at_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let last = info.state.last_sequence;
    let mut manifest = Manifest {
        format: FORMAT.to_owned(),
        kind: match source {
            Source::Stream(_) => "stream".to_owned(),
            Source::Kv(_) => "kv".to_owned(),
        },
        stream: name.clone(),
        bucket: match source {
            Source::Kv(bucket) => Some(bucket.clone()),
            Source::Stream(_) => None,
        },
        created_at_ms,
        server_version: client.server_info().version,
        config: serde_json::to_value(&info.config)
            .map_err(|e| Error::with_source(ErrorKind::Io, "encoding the stream config", e))?,
        first_sequence: 0,
        last_sequence: last,
        messages: 0,
        segments: Vec::new(),
    };
    let bar = progress(show_progress, info.state.messages, &name);
    if info.state.messages > 0 {
        // An ordered consumer: no acks, no state left behind, gaps skipped, and it
        // recreates itself if the server loses it half way.
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                deliver_policy: DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .map_err(|e| Error::request(format!("reading {name}"), e))?;
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| Error::request(format!("reading {name}"), e))?;
        let mut writer: Option<(String, HashingWriter, u64)> = None;
        loop {
            // Messages past `last` are not waited for; one that expired or was
            // deleted meanwhile just never comes, so a quiet stream ends the read.
            let next = tokio::time::timeout(Duration::from_secs(10), messages.next()).await;
            let Ok(Some(message)) = next else { break };
            let message = message.map_err(|e| Error::request(format!("reading {name}"), e))?;
            let meta = message.info().map_err(|e| {
                Error::with_source(ErrorKind::Request, format!("reading {name}"), e)
            })?;
            let (sequence, pending) = (meta.stream_sequence, meta.pending);
            if sequence > last {
                break;
            }
            let record = Record {
                sequence,
                stored_at_nanos: (meta.published.unix_timestamp_nanos())
                    .try_into()
                    .unwrap_or(i64::MAX),
                subject: message.subject.to_string(),
                headers: Record::headers_of(message.headers.as_ref()),
                payload: message.payload.clone(),
            };
            if writer
                .as_ref()
                .is_some_and(|(_, w, _)| w.len() >= SEGMENT_BYTES)
            {
                let (file, w, count) = writer.take().expect("checked");
                close_segment(&mut manifest, file, w, count)?;
            }
            if writer.is_none() {
                let file = segment_name(manifest.segments.len() + 1);
                let w = HashingWriter::create(&dir.join(&file))
                    .map_err(|e| Error::io(format!("creating {file}"), e))?;
                writer = Some((file, w, 0));
            }
            let (file, w, count) = writer.as_mut().expect("opened");
            w.record(&record)
                .map_err(|e| Error::io(format!("writing {file}"), e))?;
            *count += 1;
            if manifest.messages == 0 {
                manifest.first_sequence = sequence;
            }
            manifest.messages += 1;
            bar.inc(1);
            if sequence == last || pending == 0 {
                break;
            }
        }
        if let Some((file, w, count)) = writer {
            close_segment(&mut manifest, file, w, count)?;
        }
    }
    bar.finish_and_clear();
    write_manifest(dir, &manifest)?;
    Ok(manifest)
}

fn close_segment(
    manifest: &mut Manifest,
    file: String,
    writer: HashingWriter,
    messages: u64,
) -> Result<(), Error> {
    let (bytes, sha256) = writer
        .finish()
        .map_err(|e| Error::io(format!("writing {file}"), e))?;
    manifest.segments.push(Segment {
        file,
        bytes,
        sha256,
        messages,
    });
    Ok(())
}

fn write_manifest(dir: &Path, manifest: &Manifest) -> Result<(), Error> {
    let text = serde_json::to_vec_pretty(manifest)
        .map_err(|e| Error::with_source(ErrorKind::Io, "encoding the manifest", e))?;
    let temporary = dir.join(format!("{MANIFEST}.partial"));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&temporary)?;
        std::io::Write::write_all(&mut file, &text)?;
        file.sync_all()?;
        std::fs::rename(&temporary, dir.join(MANIFEST))?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| Error::io(format!("writing {}", dir.join(MANIFEST).display()), e))
}

fn bad(dir: &Path, why: impl Into<String>) -> Error {
    Error::new(
        ErrorKind::BadBackup,
        format!("{} is not a usable backup: {}", dir.display(), why.into()),
    )
}

/// Reads `dir`'s manifest and checks every segment against it (size, SHA-256, each
/// record readable, counts and sequence order), without touching NATS.
///
/// # Errors
///
/// [`ErrorKind::NotFound`] if `dir` does not exist, [`ErrorKind::BadBackup`] naming
/// the first problem found.
pub fn verify(dir: &Path, show_progress: bool) -> Result<Manifest, Error> {
    if !dir.is_dir() {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!("no backup directory {}", dir.display()),
        ));
    }
    let manifest_path = dir.join(MANIFEST);
    let text = match std::fs::read(&manifest_path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(bad(
                dir,
                format!("incomplete: no {MANIFEST} (the backup did not finish)"),
            ));
        }
        Err(e) => return Err(Error::io(format!("reading {}", manifest_path.display()), e)),
    };
    let manifest: Manifest = serde_json::from_slice(&text)
        .map_err(|e| bad(dir, format!("{MANIFEST} is unreadable: {e}")))?;
    if manifest.format != FORMAT {
        return Err(bad(
            dir,
            format!(
                "format {:?}, this version reads {FORMAT:?}",
                manifest.format
            ),
        ));
    }
    let bar = progress(show_progress, manifest.messages, "verifying");
    let mut previous = None::<u64>;
    let mut total = 0u64;
    for segment in &manifest.segments {
        let path: PathBuf = dir.join(&segment.file);
        if segment.file.contains(['/', '\\']) || segment.file.starts_with('.') {
            return Err(bad(dir, format!("segment name {:?}", segment.file)));
        }
        let size = match std::fs::metadata(&path) {
            Ok(meta) => meta.len(),
            Err(_) => return Err(bad(dir, format!("incomplete: {} is missing", segment.file))),
        };
        if size != segment.bytes {
            return Err(bad(
                dir,
                format!(
                    "{} has {size} bytes, the manifest says {}",
                    segment.file, segment.bytes
                ),
            ));
        }
        let mut reader =
            SegmentReader::open(&path).map_err(|e| bad(dir, format!("{}: {e}", segment.file)))?;
        let mut count = 0u64;
        loop {
            let record = match reader.next_record() {
                Ok(Some(record)) => record,
                Ok(None) => break,
                Err(e) => return Err(bad(dir, format!("{}: {e}", segment.file))),
            };
            if previous.is_some_and(|p| record.sequence <= p)
                || record.sequence > manifest.last_sequence
            {
                return Err(bad(
                    dir,
                    format!(
                        "{}: sequence {} out of order",
                        segment.file, record.sequence
                    ),
                ));
            }
            if previous.is_none() && record.sequence != manifest.first_sequence {
                return Err(bad(dir, "the first sequence differs from the manifest's"));
            }
            previous = Some(record.sequence);
            count += 1;
            bar.inc(1);
        }
        let (_, sha256) = reader.digest();
        if sha256 != segment.sha256 {
            return Err(bad(
                dir,
                format!(
                    "{} is corrupt: its checksum differs from the manifest's",
                    segment.file
                ),
            ));
        }
        if count != segment.messages {
            return Err(bad(
                dir,
                format!(
                    "{} holds {count} messages, the manifest says {}",
                    segment.file, segment.messages
                ),
            ));
        }
        total += count;
    }
    bar.finish_and_clear();
    if total != manifest.messages {
        return Err(bad(
            dir,
            format!(
                "{total} messages in the segments, the manifest says {}",
                manifest.messages
            ),
        ));
    }
    Ok(manifest)
}
