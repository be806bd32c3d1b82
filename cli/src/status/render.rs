//! The status screen: five small tables and the verdict.

use std::time::Duration;

use super::Report;
use crate::output::{Paint, Table, human_bytes, human_duration};

fn ago(now_ms: u64, at_ms: Option<u64>) -> String {
    at_ms.map_or_else(
        || "-".to_owned(),
        |at| human_duration(Duration::from_millis(now_ms.saturating_sub(at))),
    )
}

/// The report as a person reads it, coloured when `colour`.
pub fn render(report: &Report, colour: bool) -> String {
    let now = report.checked_at_ms;
    let mut out = String::new();

    let mut shards = Table::new(&[
        "SHARD",
        "STATE",
        "PROCESS",
        "FOR",
        "SESSION AGE",
        "ACKED SEQ",
        "STORED",
    ]);
    for s in &report.shards {
        let (state, paint) = match (s.connected, s.processes.len()) {
            (true, _) => ("connected", Paint::Good),
            (false, 0) => ("unheld", Paint::Bad),
            (false, 1) => ("disconnected", Paint::Bad),
            (false, _) => ("held twice", Paint::Bad),
        };
        shards.painted_row(vec![
            (s.shard.to_string(), Paint::Plain),
            (state.to_owned(), paint),
            (
                if s.processes.is_empty() {
                    "-".to_owned()
                } else {
                    s.processes.join(",")
                },
                Paint::Plain,
            ),
            (ago(now, s.since_ms), Paint::Plain),
            (ago(now, s.session_started_ms), Paint::Plain),
            (
                s.acked_sequence.map_or("-".to_owned(), |q| q.to_string()),
                Paint::Plain,
            ),
            (
                s.saved_at_ms.map_or("-".to_owned(), |_| {
                    format!("{} ago", ago(now, s.saved_at_ms))
                }),
                Paint::Plain,
            ),
        ]);
    }
    section(&mut out, "Shards", &shards, colour);

    let mut streams = Table::new(&[
        "STREAM", "STORAGE", "MESSAGES", "BYTES", "R", "LEADER", "LAGGING",
    ]);
    for s in &report.streams {
        streams.painted_row(vec![
            (s.name.clone(), Paint::Plain),
            (s.storage.clone(), Paint::Plain),
            (s.messages.to_string(), Paint::Plain),
            (human_bytes(s.bytes), Paint::Plain),
            (s.replicas.to_string(), Paint::Plain),
            match &s.leader {
                Some(l) => (l.clone(), Paint::Plain),
                None => ("none".to_owned(), Paint::Bad),
            },
            if s.lagging.is_empty() {
                ("-".to_owned(), Paint::Plain)
            } else {
                (s.lagging.join(","), Paint::Bad)
            },
        ]);
    }
    section(&mut out, "Streams", &streams, colour);

    let mut consumers = Table::new(&[
        "STREAM",
        "CONSUMER",
        "LAG",
        "ACK PENDING",
        "REDELIVERED",
        "WAITING",
        "LAST ACTIVE",
    ]);
    let flagged = |target: &str| report.reasons.iter().any(|r| r.target == target);
    for c in &report.consumers {
        let lag_paint = if flagged(&format!("{}/{}", c.stream, c.name)) {
            Paint::Bad
        } else {
            Paint::Plain
        };
        consumers.painted_row(vec![
            (c.stream.clone(), Paint::Plain),
            (c.name.clone(), Paint::Plain),
            (c.lag.to_string(), lag_paint),
            (c.ack_pending.to_string(), Paint::Plain),
            (c.redelivered.to_string(), Paint::Plain),
            (c.waiting.to_string(), Paint::Plain),
            (
                c.last_active_ms.map_or("never".to_owned(), |_| {
                    format!("{} ago", ago(now, c.last_active_ms))
                }),
                Paint::Plain,
            ),
        ]);
    }
    section(&mut out, "Consumers", &consumers, colour);

    let mut dead = Table::new(&["CONSUMER", "SUBJECT", "DEAD LETTERS"]);
    for d in &report.dead_letters {
        dead.row(vec![
            d.consumer.clone(),
            d.subject.clone(),
            d.messages.to_string(),
        ]);
    }
    section(&mut out, "Dead letters", &dead, colour);

    let mut nodes = Table::new(&["NODE", "STATE", "LEADS", "REPLICAS"]);
    for n in &report.nodes {
        let paint = match n.state.as_str() {
            "up" => Paint::Good,
            "lagging" => Paint::Warn,
            _ => Paint::Bad,
        };
        nodes.painted_row(vec![
            (n.name.clone(), Paint::Plain),
            (n.state.clone(), paint),
            (n.leads.to_string(), Paint::Plain),
            (n.replicas.to_string(), Paint::Plain),
        ]);
    }
    section(&mut out, "Nodes", &nodes, colour);

    for w in &report.warnings {
        out.push_str(&Paint::Warn.apply(&format!("warning: {}: {}", w.target, w.detail), colour));
        out.push('\n');
    }
    if report.healthy {
        out.push_str(&Paint::Good.apply("HEALTHY", colour));
        out.push('\n');
    } else {
        out.push_str(&Paint::Bad.apply("UNHEALTHY", colour));
        out.push('\n');
        for r in &report.reasons {
            out.push_str(&format!("  - {}: {}\n", r.target, r.detail));
        }
    }
    out
}

fn section(out: &mut String, title: &str, table: &Table, colour: bool) {
    out.push_str(title);
    out.push('\n');
    if table.is_empty() {
        out.push_str("  (none)\n\n");
    } else {
        out.push_str(&table.render(colour));
        out.push('\n');
    }
}
