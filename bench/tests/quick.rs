//! The benchmark in its short mode, so it never rots: every scenario runs with small
//! counts against a real nats-server (and the throughput and latency scenarios on the
//! 3-node loopback cluster). Nothing is asserted about the numbers.

use std::process::Command;

#[test]
fn quick_mode_runs_every_scenario() {
    let out = Command::new(env!("CARGO_BIN_EXE_shardline-bench"))
        .arg("--quick")
        .output()
        .expect("run shardline-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "failed:\n{stdout}\n{stderr}");
    for section in [
        "### Throughput",
        "### End-to-end latency",
        "### Storm",
        "### Interaction deadline",
        "### REST proxy",
        "### HTTP interactions",
        "### Cost at Discord-like rates",
    ] {
        assert!(stdout.contains(section), "{section} missing:\n{stdout}");
    }
    assert!(stdout.contains("PING throughput"), "{stdout}");
    // R and B both ran and reported a ratio.
    assert!(stdout.contains("R/B = "), "{stdout}");
    assert!(stdout.contains("R paced / flat-out"), "{stdout}");
}

#[test]
fn quick_mode_runs_on_the_cluster() {
    let out = Command::new(env!("CARGO_BIN_EXE_shardline-bench"))
        .args(["--quick", "--cluster", "--only", "throughput,latency"])
        .output()
        .expect("run shardline-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("3-node loopback cluster, R3 streams"),
        "{stdout}"
    );
    assert!(stdout.contains("R/B = "), "{stdout}");
}
