//! The traffic: the simulator's realistic mix at a fixed rate across every shard,
//! whether its gateway is up or not (Discord keeps a disconnected session's events
//! for its RESUME, and so does the simulator), and a compact record of each
//! dispatch, kept for the count.

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng, rngs::StdRng};
use shardline_discord_sim::{Pacer, Simulator, realistic_event, sample};

/// One dispatch the simulator logged on a session: what the soak counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentRecord {
    /// `{session}:{seq}`, the `Nats-Msg-Id` the gateway must publish it with.
    pub msg_id: String,
    /// The interaction's id, for an INTERACTION_CREATE (it goes to COMMANDS, the
    /// rest to EVENTS).
    pub interaction: Option<u64>,
}

/// What the traffic did.
#[derive(Debug, Default)]
pub struct Sent {
    /// Every dispatch, in order.
    pub records: Vec<SentRecord>,
    /// How long it ran.
    pub elapsed: Duration,
}

/// Plays the realistic mix at `rate` events per second over shards
/// `0..shard_total`, round-robin, for `duration`. Payloads come from `seed`.
pub async fn play(
    sim: &Simulator,
    shard_total: u32,
    rate: u32,
    duration: Duration,
    seed: u64,
) -> Sent {
    let mut rng = StdRng::seed_from_u64(seed);
    let guilds: Vec<Vec<u64>> = (0..shard_total).map(|s| sim.guilds(s)).collect();
    let mut pacer = Pacer::new(Some(rate));
    let started = Instant::now();
    let mut sent = Sent {
        records: Vec::with_capacity((duration.as_secs_f64() * f64::from(rate)) as usize + 16),
        ..Sent::default()
    };
    let mut shard = 0;
    while started.elapsed() < duration {
        pacer.tick().await;
        let event = realistic_event(&mut rng);
        let shard_guilds = &guilds[shard as usize];
        let guild = shard_guilds[rng.random_range(0..shard_guilds.len())];
        let d = sample(event, guild, &mut rng);
        let interaction = (event == "INTERACTION_CREATE").then(|| interaction_id(&d));
        let record = sim.dispatch_with(shard, event, d.into(), Some(guild)).await;
        sent.records.push(SentRecord {
            msg_id: record.msg_id(),
            interaction,
        });
        shard = (shard + 1) % shard_total;
    }
    sent.elapsed = started.elapsed();
    sent
}

fn interaction_id(d: &str) -> u64 {
    let value: serde_json::Value = serde_json::from_str(d).expect("the simulator's JSON");
    value["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .expect("an interaction has an id")
}
