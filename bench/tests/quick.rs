//! The benchmark in its short mode, so it never rots: every scenario runs with small
//! counts against a real nats-server. Nothing is asserted about the numbers.

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
    ] {
        assert!(stdout.contains(section), "{section} missing:\n{stdout}");
    }
    assert!(stdout.contains("PING throughput"), "{stdout}");
    // R and B both ran and reported a ratio.
    assert!(stdout.contains("R/B = "), "{stdout}");
}
