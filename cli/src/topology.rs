//! `topology diff` and `topology apply`: proto's declared streams and consumers
//! against the live ones, compared and reconciled by `shardline-jetstream`'s own code
//! (the same the gateway and workers run at start), so diff and apply cannot disagree.

use async_nats::jetstream::context::{ConsumerInfoErrorKind, GetStreamErrorKind};
use async_nats::jetstream::{self, ErrorCode};
use serde::Serialize;
use shardline_jetstream::{
    Change, ReconcileOptions, consumer_config, consumer_drift, reconcile_consumer,
    reconcile_stream, stream_config, stream_drift,
};
use shardline_proto::topology::{CONSUMERS, STREAMS};

use crate::{Error, ErrorKind};

/// One difference between the declared topology and the live one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// `stream` or `consumer`.
    pub object: &'static str,
    /// Stream name, or `STREAM/durable` for a consumer.
    pub name: String,
    /// The setting, or `missing` when the whole object is.
    pub field: String,
    /// The live value (empty when missing).
    pub live: String,
    /// The declared value.
    pub declared: String,
    /// JetStream cannot change it in place: `apply` refuses it.
    pub immutable: bool,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field == "missing" {
            return write!(f, "{} {}: missing", self.object, self.name);
        }
        write!(
            f,
            "{} {}: {} is {}, declared {}{}",
            self.object,
            self.name,
            self.field,
            self.live,
            self.declared,
            if self.immutable {
                " (cannot be changed in place)"
            } else {
                ""
            }
        )
    }
}

fn not_found(kind: GetStreamErrorKind) -> bool {
    matches!(kind, GetStreamErrorKind::JetStream(e) if e.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

/// Every difference between the declared topology and the live one. Replicas are
/// compared only when `replicas` is given.
///
/// # Errors
///
/// [`ErrorKind::Request`] if JetStream cannot be asked.
pub async fn diff(
    js: &jetstream::Context,
    replicas: Option<usize>,
) -> Result<Vec<Difference>, Error> {
    let mut out = Vec::new();
    for spec in &STREAMS {
        let live = match js.get_stream(spec.name).await {
            Ok(stream) => stream.cached_info().config.clone(),
            Err(e) if not_found(e.kind()) => {
                out.push(missing("stream", spec.name.to_owned()));
                continue;
            }
            Err(e) => return Err(Error::request(format!("stream {}", spec.name), e)),
        };
        let desired = stream_config(spec, replicas.unwrap_or(live.num_replicas));
        out.extend(
            stream_drift(&live, &desired)
                .into_iter()
                .map(|d| Difference {
                    object: "stream",
                    name: spec.name.to_owned(),
                    field: d.field.to_owned(),
                    live: d.live,
                    declared: d.declared,
                    immutable: d.immutable,
                }),
        );
    }
    for spec in &CONSUMERS {
        let name = format!("{}/{}", spec.stream, spec.durable);
        let stream = match js.get_stream_no_info(spec.stream).await {
            Ok(stream) => stream,
            Err(e) => return Err(Error::request(format!("stream {}", spec.stream), e)),
        };
        let live = match stream.consumer_info(spec.durable).await {
            Ok(info) => info.config,
            Err(e) if matches!(e.kind(), ConsumerInfoErrorKind::NotFound) => {
                out.push(missing("consumer", name));
                continue;
            }
            // Its stream is missing: already named above.
            Err(e) if matches!(e.kind(), ConsumerInfoErrorKind::StreamNotFound) => {
                out.push(missing("consumer", name));
                continue;
            }
            Err(e) => return Err(Error::request(format!("consumer {name}"), e)),
        };
        let desired = consumer_config(spec);
        out.extend(
            consumer_drift(&live, &desired)
                .into_iter()
                .map(|d| Difference {
                    object: "consumer",
                    name: name.clone(),
                    field: d.field.to_owned(),
                    live: d.live,
                    declared: d.declared,
                    immutable: d.immutable,
                }),
        );
    }
    Ok(out)
}

fn missing(object: &'static str, name: String) -> Difference {
    Difference {
        object,
        name,
        field: "missing".to_owned(),
        live: String::new(),
        declared: "declared".to_owned(),
        immutable: false,
    }
}

/// What `apply` did to one stream or consumer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Applied {
    /// `stream` or `consumer`.
    pub object: &'static str,
    /// Its name.
    pub name: String,
    /// `created`, `updated` or `unchanged`.
    pub action: &'static str,
    /// For `updated`: each change, `field: old -> new`.
    pub changes: Vec<String>,
}

/// Creates what is missing and updates what differs. Without `replicas`, each
/// existing stream keeps its replicas and a missing one gets the most any declared
/// stream has (1 when none exists).
///
/// # Errors
///
/// [`ErrorKind::Immutable`] at the first stream whose storage or retention differ
/// (those before it are applied); [`ErrorKind::Request`] if JetStream refuses.
pub async fn apply(
    js: &jetstream::Context,
    replicas: Option<usize>,
) -> Result<Vec<Applied>, Error> {
    let mut live_replicas = Vec::new();
    for spec in &STREAMS {
        match js.get_stream(spec.name).await {
            Ok(stream) => {
                live_replicas.push((spec.name, stream.cached_info().config.num_replicas));
            }
            Err(e) if not_found(e.kind()) => {}
            Err(e) => return Err(Error::request(format!("stream {}", spec.name), e)),
        }
    }
    let fallback = live_replicas.iter().map(|(_, r)| *r).max().unwrap_or(1);
    let mut out = Vec::new();
    for spec in &STREAMS {
        let replicas = replicas.unwrap_or_else(|| {
            live_replicas
                .iter()
                .find(|(name, _)| *name == spec.name)
                .map_or(fallback, |(_, r)| *r)
        });
        let change = reconcile_stream(js, spec, ReconcileOptions { replicas }).await?;
        out.push(applied("stream", spec.name.to_owned(), change));
    }
    for spec in &CONSUMERS {
        let change = reconcile_consumer(js, spec).await?;
        out.push(applied(
            "consumer",
            format!("{}/{}", spec.stream, spec.durable),
            change,
        ));
    }
    Ok(out)
}

fn applied(object: &'static str, name: String, change: Change) -> Applied {
    let (action, changes) = match change {
        Change::Created => ("created", Vec::new()),
        Change::Updated(changes) => ("updated", changes),
        Change::Unchanged => ("unchanged", Vec::new()),
    };
    Applied {
        object,
        name,
        action,
        changes,
    }
}

/// Refuses an apply that would fail half way: any immutable difference.
///
/// # Errors
///
/// [`ErrorKind::Immutable`] naming every such difference.
pub fn check_applicable(differences: &[Difference]) -> Result<(), Error> {
    let immutable: Vec<String> = differences
        .iter()
        .filter(|d| d.immutable)
        .map(Difference::to_string)
        .collect();
    if immutable.is_empty() {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::Immutable,
        format!(
            "JetStream cannot change these in place; migrate by hand (backup, delete, apply, restore): {}",
            immutable.join("; ")
        ),
    ))
}

/// Runs `topology diff` or `apply`, printing to stdout; returns the exit code
/// (`diff`: 1 when anything differs).
///
/// # Errors
///
/// As [`diff`] and [`apply`]; `apply` checks every difference first and refuses
/// with [`ErrorKind::Immutable`] before changing anything if one cannot be applied.
pub async fn run(
    js: &jetstream::Context,
    command: crate::TopologyCommand,
    json: bool,
) -> Result<u8, Error> {
    use crate::output::{Paint, colour_stdout};
    match command {
        crate::TopologyCommand::Diff(args) => {
            let differences = diff(js, args.replicas).await?;
            if json {
                let text = serde_json::to_string_pretty(&differences)
                    .map_err(|e| Error::with_source(ErrorKind::Io, "writing JSON", e))?;
                println!("{text}");
            } else if differences.is_empty() {
                println!("{}", Paint::Good.apply("no drift", colour_stdout()));
            } else {
                for d in &differences {
                    let paint = if d.immutable { Paint::Bad } else { Paint::Warn };
                    println!("{}", paint.apply(&d.to_string(), colour_stdout()));
                }
            }
            Ok(if differences.is_empty() {
                0
            } else {
                crate::EXIT_NO
            })
        }
        crate::TopologyCommand::Apply(args) => {
            check_applicable(&diff(js, args.replicas).await?)?;
            let applied = apply(js, args.replicas).await?;
            if json {
                let text = serde_json::to_string_pretty(&applied)
                    .map_err(|e| Error::with_source(ErrorKind::Io, "writing JSON", e))?;
                println!("{text}");
            } else {
                for a in &applied {
                    let mut line = format!("{} {}: {}", a.object, a.name, a.action);
                    if !a.changes.is_empty() {
                        line.push_str(&format!(" ({})", a.changes.join(", ")));
                    }
                    println!("{line}");
                }
            }
            Ok(0)
        }
    }
}
