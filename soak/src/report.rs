//! What the soak prints: the schedule before, each fault as it happens, and at the
//! end the schedule with its outcomes and the counts.

use std::fmt::Write as _;
use std::time::Duration;

use crate::count::Counts;
use crate::faults::Done;
use crate::run::{Outcome, Settings};
use crate::schedule::Planned;

/// Prints the settings and the planned schedule.
pub fn print_plan(settings: &Settings, schedule: &[Planned]) {
    println!(
        "chaos soak: seed {} ({} s at {} events/s, {} shards in 2 gateways, two of each worker, 3 NATS nodes)",
        settings.seed,
        settings.duration.as_secs(),
        settings.rate,
        settings.shard_total
    );
    println!(
        "replay with: scripts/soak --seed {} --duration {}s --rate {}",
        settings.seed,
        settings.duration.as_secs(),
        settings.rate
    );
    println!("planned faults (seconds after traffic starts; down time):");
    for p in schedule {
        println!(
            "  {:>6.1}  {:<36} down {:.1} s",
            p.at.as_secs_f64(),
            p.fault.to_string(),
            p.down.as_secs_f64()
        );
    }
    println!("logs: {}", settings.log_dir.display());
}

/// One line for a fault that happened.
pub fn fault_line(done: &Done, traffic_start: Duration) -> String {
    let from = done.from.saturating_sub(traffic_start).as_secs_f64();
    let took = done.to.saturating_sub(done.from).as_secs_f64();
    format!(
        "  {from:>6.1}  {:<36} {:>5.1} s  {}  {}",
        done.planned.fault.to_string(),
        took,
        if done.ok { "ok  " } else { "FAIL" },
        done.outcome
    )
}

/// The whole report.
pub fn render(outcome: &Outcome) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n== schedule (t = seconds after traffic started; time to recover)"
    );
    for done in &outcome.faults {
        let _ = writeln!(out, "{}", fault_line(done, outcome.traffic_start));
    }
    let sent = &outcome.sent;
    let _ = writeln!(
        out,
        "\n== traffic: {} dispatches in {:.1} s ({:.0}/s)",
        sent.records.len(),
        sent.elapsed.as_secs_f64(),
        sent.records.len() as f64 / sent.elapsed.as_secs_f64().max(0.001)
    );
    match outcome.drained_in {
        Some(d) => {
            let _ = writeln!(out, "drained {:.1} s after traffic ended", d.as_secs_f64());
        }
        None => {
            let _ = writeln!(
                out,
                "NOT DRAINED: messages still pending when the drain limit ran out"
            );
        }
    }
    counts(&mut out, &outcome.counts);
    if !outcome.crashed.is_empty() {
        let _ = writeln!(
            out,
            "processes that ended on their own: {:?}",
            outcome.crashed
        );
    }
    let _ = writeln!(out, "load average at the end: {}", outcome.load);
    let _ = writeln!(
        out,
        "RESULT: {}",
        if outcome.passed() { "PASS" } else { "FAIL" }
    );
    out
}

fn counts(out: &mut String, c: &Counts) {
    let _ = writeln!(out, "\n== at the stream");
    let _ = writeln!(
        out,
        "events (EVENTS):       sent {:>8}  lost {:>4}  duplicated {:>4}   (+{} lazy-load GUILD_CREATEs the simulator sent itself)",
        c.sent_events,
        c.lost_events.len(),
        c.duplicated_events.len(),
        c.other_events
    );
    let _ = writeln!(
        out,
        "interactions (COMMANDS): sent {:>6}  lost {:>4}  duplicated {:>4}   (each deferred or dead-lettered)",
        c.sent_interactions,
        c.lost_interactions.len(),
        c.duplicated_commands
    );
    for id in c.lost_events.iter().take(10) {
        let _ = writeln!(out, "  lost event {id}");
    }
    for (id, seqs) in c.duplicated_events.iter().take(10) {
        let _ = writeln!(out, "  duplicated event {id} at stream sequences {seqs:?}");
    }
    for id in c.lost_interactions.iter().take(10) {
        let _ = writeln!(out, "  interaction {id} neither deferred nor dead-lettered");
    }
    let _ = writeln!(out, "\n== at the handlers");
    for h in &c.handlers {
        let _ = writeln!(
            out,
            "{:<15} stored {:>8}  lost {:>4}  duplicated {:>4} (unexplained {})  retried after nak {}  dead-lettered {}  answers unseen {}",
            h.durable,
            h.stored,
            h.lost,
            h.duplicated,
            h.unexplained,
            h.retried,
            h.terminated,
            h.unseen
        );
        for (fault, n) in &h.explained {
            let _ = writeln!(
                out,
                "    {n:>5} redelivered after {fault} (at least once: the worker died holding it or its ack was lost)"
            );
        }
    }
    let _ = writeln!(
        out,
        "interactions deferred twice: {} (unexplained {})",
        c.deferred_twice, c.deferred_twice_unexplained
    );
    let _ = writeln!(out, "\n== dead letters");
    if c.dead_letters.is_empty() {
        let _ = writeln!(out, "none");
    }
    for ((consumer, kind, fault), (n, reason)) in &c.dead_letters {
        let why = fault
            .as_deref()
            .map_or("UNEXPLAINED".to_owned(), |f| format!("during {f}"));
        let _ = writeln!(
            out,
            "{consumer:<15} {kind:<15} {n:>5}  {why}; e.g. {reason}"
        );
    }
}
