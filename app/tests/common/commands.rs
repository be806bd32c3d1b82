//! What the command-path tests share (included with `#[path]` by the tests that use it).

#![allow(dead_code)]

use std::time::Duration;

use shardline_discord_sim::Simulator;
use shardline_proto::payload::Interaction;
use shardline_proto::topology::{COMMAND_WORKER, ConsumerSpec, RetryPolicy};
use shardline_worker::Context;
use shardline_worker::commands::{Command, CommandError, Reply};

/// The command worker's consumer, retrying after 100 ms instead of 5 s.
pub static FAST_COMMANDS: ConsumerSpec = ConsumerSpec {
    retry: RetryPolicy::fixed(Duration::from_millis(100)),
    ..COMMAND_WORKER
};

/// Fails for now on its first delivery, then answers (the redelivery reads the
/// deferred-interactions KV bucket).
pub struct Flaky;

impl Command for Flaky {
    async fn run(&self, _: &Interaction, cx: &Context) -> Result<Reply, CommandError> {
        if cx.is_redelivery() {
            Ok(Reply::Message("second time lucky".into()))
        } else {
            Err(CommandError::Retry)
        }
    }
}

/// An INTERACTION_CREATE for `/name` in shard 0's first guild, and its id.
pub fn interaction(sim: &Simulator, name: &str, seed: u64) -> (String, String) {
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
    let guild = sim.guilds(0)[0];
    let mut d: serde_json::Value = serde_json::from_str(
        &shardline_discord_sim::fixtures::interaction_create(guild, &mut rng),
    )
    .unwrap();
    d["data"]["name"] = name.into();
    (d["id"].as_str().unwrap().to_owned(), d.to_string())
}
