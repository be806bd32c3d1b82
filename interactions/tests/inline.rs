//! The whole HTTP path under load: 2,000 signed interactions at 200 a second to the
//! service binary (configured through its environment), with commands that answer in
//! 10 ms, 2 s and 4 s on the real command worker, and an invalid signature mixed in
//! after every 50. Every interaction gets exactly one first response within Discord's
//! 3 s (inline for the fast ones, the service's deferral then one edit for the slow
//! ones), each command's answer reaches the simulator once, and every invalid
//! signature is a 401 whose interaction never reaches NATS.

mod common;

use std::collections::{HashMap, HashSet};

use futures_util::StreamExt;
use shardline_discord_sim::{HttpPlan, HttpRecord, Signing, Verdict};
use shardline_proto::topology::COMMANDS;
use shardline_proto::{headers, subject};
use shardline_testkit::eventually;
use tokio_util::sync::CancellationToken;

use common::{Base, PATIENCE, ServiceProcess, WIDE_COMMANDS, command, discord};

const N: u64 = 2_000;
const NAMES: [&str; 3] = ["fast", "slow2", "slow4"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_interaction_gets_one_first_response_in_time() {
    let base = Base::start().await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("public-key");
    std::fs::write(&key_file, common::public_key()).unwrap();
    let service = ServiceProcess::start(&base.nats, &key_file, &[]);
    service.ready().await;
    let shutdown = CancellationToken::new();
    let worker = base.worker(&WIDE_COMMANDS, shutdown.clone()).await;
    base.pulling(1).await;

    // Everything published on commands.>, as it is published.
    let mut published = base
        .nats
        .client()
        .await
        .subscribe(COMMANDS.subjects[0])
        .await
        .unwrap();
    let (ids_tx, mut ids_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(message) = published.next().await {
            let id = message
                .headers
                .as_ref()
                .and_then(|h| h.get(headers::MSG_ID));
            let _ = ids_tx.send((message.subject.to_string(), id.map(|v| v.to_string())));
        }
    });

    let interactions: Vec<_> = (0..N)
        .map(|i| command(NAMES[(i % 3) as usize], 10_000 + i))
        .collect();
    let name_of: HashMap<String, &str> = interactions
        .iter()
        .enumerate()
        .map(|(i, x)| (x.token.clone(), NAMES[i % 3]))
        .collect();
    let http = discord(service.addr);
    let records = http
        .play(HttpPlan {
            interactions,
            rate_per_second: Some(200),
            invalid_every: Some(50),
        })
        .await;
    let (valid, probes): (Vec<&HttpRecord>, Vec<&HttpRecord>) =
        records.iter().partition(|r| r.signing.is_valid());

    // Discord's reading of every answer: one valid first response within 3 s each.
    let failed: Vec<_> = valid
        .iter()
        .filter(|r| r.verdict != Verdict::Answered)
        .map(|r| (&r.interaction_id, &r.verdict, r.elapsed))
        .collect();
    assert!(failed.is_empty(), "{} failed: {failed:?}", failed.len());
    assert_eq!(valid.len() as u64, N);
    let ids: HashSet<&str> = valid.iter().map(|r| r.interaction_id.as_str()).collect();
    assert_eq!(ids.len() as u64, N, "one answer per interaction");

    // Each command's answer reaches the simulator once: inline, or one edit.
    let slow = valid
        .iter()
        .filter(|r| name_of[&r.token] != "fast" && r.response_type == Some(5))
        .count();
    let completions = eventually("every deferred interaction edited", PATIENCE, || async {
        let completions = base.completions();
        let edited = valid
            .iter()
            .filter(|r| r.response_type == Some(5) && completions.contains_key(&r.token))
            .count();
        (edited == slow).then_some(completions)
    })
    .await;
    let mut by_outcome: HashMap<(&str, &str), usize> = HashMap::new();
    for r in &valid {
        let name = name_of[&r.token];
        let done = format!("{name} done");
        let edits = completions.get(&r.token).map_or(&[][..], Vec::as_slice);
        assert!(
            edits.iter().all(|c| c.kind == "edit"),
            "{name}: only edits, never a REST callback or follow-up: {edits:?}"
        );
        let how = match r.response_type {
            Some(4) => {
                assert!(r.body.contains(&done), "{name} inline: {}", r.body);
                assert!(edits.is_empty(), "{name} answered inline and edited");
                "inline"
            }
            Some(5) => {
                assert_eq!(edits.len(), 1, "{name}: one edit after the deferral");
                assert!(edits[0].body.contains(&done), "{:?}", edits[0]);
                "deferred, then edited"
            }
            other => panic!("{name}: response type {other:?}"),
        };
        *by_outcome.entry((name, how)).or_default() += 1;
    }
    assert_eq!(by_outcome.get(&("fast", "inline")), Some(&667));
    assert_eq!(
        by_outcome.get(&("slow4", "deferred, then edited")),
        Some(&666)
    );

    // Every invalid signature refused, and none of them published.
    assert_eq!(probes.len() as u64, N / 50);
    for kind in Signing::INVALID {
        assert!(probes.iter().any(|p| p.signing == kind), "{kind:?} sent");
    }
    for probe in &probes {
        assert_eq!(probe.verdict, Verdict::Refused, "{probe:?}");
        assert!(
            probe.body.is_empty(),
            "401 without detail: {:?}",
            probe.body
        );
    }
    let mut seen = HashSet::new();
    while seen.len() < N as usize {
        let next = tokio::time::timeout(PATIENCE, ids_rx.recv()).await;
        let Ok(Some((subject, id))) = next else {
            panic!("{} of {N} publications seen", seen.len());
        };
        assert_eq!(subject, subject::COMMANDS_INTERACTION);
        seen.insert(id.expect("every message has a Nats-Msg-Id"));
    }
    let valid_ids: HashSet<String> = ids.iter().map(|s| s.to_string()).collect();
    assert_eq!(seen, valid_ids, "exactly the valid interactions published");
    assert_eq!(base.stored().await, N, "each stored once, probes never");

    let mut elapsed: Vec<_> = valid.iter().map(|r| r.elapsed).collect();
    elapsed.sort();
    let at = |p: f64| elapsed[((elapsed.len() - 1) as f64 * p) as usize];
    println!(
        "{N} interactions at 200/s + {} invalid: {by_outcome:?}; request to first response \
         p50 {:?}, p99 {:?}, max {:?}",
        probes.len(),
        at(0.5),
        at(0.99),
        elapsed[elapsed.len() - 1]
    );
    assert!(service.terminate().await.success(), "exit 0 on SIGTERM");
    shutdown.cancel();
    worker.await.unwrap();
}
