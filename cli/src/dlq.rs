//! `shardline dlq`: dead letters listed, shown, replayed and purged through
//! `shardline_worker::deadletter`, printed as a table or JSON.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use async_nats::jetstream;
use serde::Serialize;
use shardline_worker::deadletter::{self, DeadLetter};

use crate::args::DlqCommand;
use crate::output::{Table, human_duration};
use crate::{Error, ErrorKind};

/// A dead letter as `--json` prints it.
#[derive(Debug, Serialize)]
pub struct LetterJson {
    /// Sequence in DEAD_LETTER.
    pub sequence: u64,
    /// The consumer that gave up.
    pub consumer: String,
    /// `terminal`, `undecodable`, `max_deliveries`.
    pub kind: String,
    /// Why, in words.
    pub reason: String,
    /// Deliveries before it was given up.
    pub delivered: i64,
    /// Where it was first published.
    pub subject: String,
    /// Unix milliseconds when it was dead-lettered.
    pub at_ms: u64,
    /// Seconds since.
    pub age_secs: u64,
    /// `STREAM:SEQ` it came from.
    pub source: String,
    /// Original headers (`show` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, Vec<String>>>,
    /// The payload as text, when it is UTF-8 (`show` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// The payload in hex, when it is not UTF-8 (`show` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_hex: Option<String>,
    /// Payload size in bytes.
    pub payload_bytes: usize,
}

fn to_json(letter: &DeadLetter, now: SystemTime, full: bool) -> LetterJson {
    let (payload, payload_hex) = match (full, std::str::from_utf8(&letter.payload)) {
        (false, _) => (None, None),
        (true, Ok(text)) => (Some(text.to_owned()), None),
        (true, Err(_)) => (
            None,
            Some(letter.payload.iter().map(|b| format!("{b:02x}")).collect()),
        ),
    };
    LetterJson {
        sequence: letter.sequence,
        consumer: letter.consumer.clone(),
        kind: letter.kind.clone(),
        reason: letter.reason.clone(),
        delivered: letter.delivered,
        subject: letter.original_subject.clone(),
        at_ms: letter
            .at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        age_secs: letter.age(now).as_secs(),
        source: letter.source.clone(),
        headers: full.then(|| {
            letter
                .headers
                .iter()
                .map(|(name, values)| {
                    (
                        name.to_string(),
                        values.iter().map(|v| v.as_str().to_owned()).collect(),
                    )
                })
                .collect()
        }),
        payload,
        payload_hex,
        payload_bytes: letter.payload.len(),
    }
}

fn print_json(value: &impl Serialize) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::with_source(ErrorKind::Io, "writing JSON", e))?;
    println!("{text}");
    Ok(())
}

/// Runs one `dlq` subcommand, printing to stdout.
///
/// # Errors
///
/// [`ErrorKind::Usage`] for `purge` without a filter or `--all`;
/// [`ErrorKind::NotFound`] for `show` of a sequence that holds no dead letter;
/// [`ErrorKind::Request`] when DEAD_LETTER cannot be read or changed.
pub async fn run(js: &jetstream::Context, command: DlqCommand, json: bool) -> Result<(), Error> {
    let now = SystemTime::now();
    match command {
        DlqCommand::List(filter) => {
            let letters = deadletter::list_matching(js, &filter.filter(), filter.limit).await?;
            if json {
                let all: Vec<_> = letters.iter().map(|l| to_json(l, now, false)).collect();
                return print_json(&all);
            }
            let mut table = Table::new(&[
                "SEQ",
                "CONSUMER",
                "KIND",
                "DELIVERED",
                "AGE",
                "SUBJECT",
                "REASON",
            ]);
            for l in &letters {
                table.row(vec![
                    l.sequence.to_string(),
                    l.consumer.clone(),
                    l.kind.clone(),
                    l.delivered.to_string(),
                    human_duration(l.age(now)),
                    l.original_subject.clone(),
                    l.reason.clone(),
                ]);
            }
            print!("{}", table.render(crate::output::colour_stdout()));
        }
        DlqCommand::Show { sequence, raw } => {
            let letter = deadletter::get(js, sequence).await?.ok_or_else(|| {
                Error::new(
                    ErrorKind::NotFound,
                    format!("no dead letter at sequence {sequence}"),
                )
            })?;
            if raw {
                let mut out = std::io::stdout().lock();
                out.write_all(&letter.payload)
                    .and_then(|()| out.flush())
                    .map_err(|e| Error::io("writing the payload", e))?;
            } else if json {
                print_json(&to_json(&letter, now, true))?;
            } else {
                let j = to_json(&letter, now, true);
                println!("sequence:  {}", j.sequence);
                println!("consumer:  {}", j.consumer);
                println!("kind:      {}", j.kind);
                println!("reason:    {}", j.reason);
                println!("delivered: {}", j.delivered);
                println!("subject:   {}", j.subject);
                println!("age:       {}", human_duration(letter.age(now)));
                println!("source:    {}", j.source);
                for (name, values) in j.headers.iter().flatten() {
                    for value in values {
                        println!("header:    {name}: {value}");
                    }
                }
                println!("payload:   {} bytes", j.payload_bytes);
                match (j.payload, j.payload_hex) {
                    (Some(text), _) => println!("{text}"),
                    (None, Some(hex)) => println!("(not UTF-8; hex) {hex}"),
                    (None, None) => {}
                }
            }
        }
        DlqCommand::Replay(filter) => {
            let n = deadletter::replay(js, &filter.filter(), filter.limit).await?;
            if json {
                print_json(&serde_json::json!({ "replayed": n }))?;
            } else {
                println!("replayed {n}");
            }
        }
        DlqCommand::Purge { filter, all } => {
            let selected = filter.filter();
            if selected.is_everything() && !all {
                return Err(Error::new(
                    ErrorKind::Usage,
                    "dlq purge without a filter removes every dead letter: pass --all to mean it",
                ));
            }
            let n = deadletter::purge(js, &selected, filter.limit).await?;
            if json {
                print_json(&serde_json::json!({ "purged": n }))?;
            } else {
                println!("purged {n}");
            }
        }
    }
    Ok(())
}
