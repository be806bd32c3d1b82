//! The rules on hand-made observations: the cases a live system rarely shows.

use super::*;
use crate::status::{PeerRow, StreamRow};
use shardline_proto::gateway::{GatewayStatus, ShardLive};

fn thresholds() -> Thresholds {
    Thresholds {
        shard_total: None,
        max_lag: 1000,
        max_idle: Duration::from_secs(60),
        dead_letter_window: Duration::from_secs(900),
        max_new_dead_letters: 0,
        max_node_silence: Duration::from_secs(10),
    }
}

fn gateway(process: &str, shards: &[(u32, bool)]) -> GatewayStatus {
    GatewayStatus {
        process: process.into(),
        started_at_ms: 0,
        shards: shards
            .iter()
            .map(|&(shard, connected)| ShardLive {
                shard,
                connected,
                since_ms: 0,
            })
            .collect(),
    }
}

fn stream(name: &str, peers: Vec<PeerRow>) -> StreamRow {
    StreamRow {
        name: name.into(),
        storage: "memory".into(),
        messages: 0,
        bytes: 0,
        replicas: 3,
        leader: Some("n0".into()),
        peers,
        lagging: Vec::new(),
    }
}

fn kinds(report: &Report) -> Vec<(ReasonKind, String)> {
    report
        .reasons
        .iter()
        .map(|r| (r.kind, r.target.clone()))
        .collect()
}

fn all_streams(peers: Vec<PeerRow>) -> Vec<StreamRow> {
    STREAMS
        .iter()
        .map(|s| stream(s.name, peers.clone()))
        .collect()
}

#[test]
fn a_shard_held_by_two_processes_is_unhealthy() {
    let observed = Observed {
        gateways: vec![gateway("a/1", &[(0, true)]), gateway("b/2", &[(0, true)])],
        streams: all_streams(Vec::new()),
        ..Observed::default()
    };
    let report = evaluate(observed, &thresholds(), 0);
    assert_eq!(
        kinds(&report),
        [(ReasonKind::ShardHeldTwice, "shard 0".to_owned())]
    );
    assert!(!report.shards[0].connected);
}

#[test]
fn nothing_to_check_shards_by_is_unhealthy_unless_told_zero() {
    let observed = Observed {
        streams: all_streams(Vec::new()),
        ..Observed::default()
    };
    let report = evaluate(observed.clone(), &thresholds(), 0);
    assert_eq!(
        kinds(&report),
        [(ReasonKind::NoGateway, "gateways".to_owned())]
    );
    let zero = Thresholds {
        shard_total: Some(0),
        ..thresholds()
    };
    assert!(evaluate(observed, &zero, 0).healthy);
}

#[test]
fn a_silent_replica_makes_its_node_offline_and_missing_consumers_only_warn() {
    let silent = PeerRow {
        name: "n2".into(),
        current: false,
        offline: false,
        seen_ms_ago: 11_000,
    };
    let observed = Observed {
        gateways: vec![gateway("a/1", &[(0, true)])],
        streams: all_streams(vec![silent]),
        ..Observed::default()
    };
    let report = evaluate(observed, &thresholds(), 0);
    assert!(kinds(&report).contains(&(ReasonKind::NodeOffline, "n2".to_owned())));
    assert_eq!(
        report
            .reasons
            .iter()
            .filter(|r| r.kind == ReasonKind::ReplicaLagging)
            .count(),
        STREAMS.len()
    );
    assert_eq!(report.warnings.len(), CONSUMERS.len());
    assert!(
        report
            .warnings
            .iter()
            .all(|w| w.kind == ReasonKind::ConsumerMissing)
    );
}
