#![doc = r##"
A simulated Discord for Shardline's tests, demo and benchmarks.

[`Simulator`] runs a real WebSocket server speaking the Discord gateway protocol v10 (JSON
encoding, `zlib-stream`/`zstd-stream`/no transport compression) plus the few REST
endpoints a bot needs, all on one port. twilight-gateway connects to it unchanged through
`ConfigBuilder::proxy_url(sim.gateway_url())`.

Protocol: HELLO on connect, op 11 for every heartbeat (the interval is announced but not
enforced), IDENTIFY (token, shard checks, rate-limit bookkeeping) -> READY and lazy
GUILD_CREATEs, RESUME with replay of the session log (plus an optional overlap of already
seen frames) and RESUMED, op 7 / op 9 / close codes on demand, and the close handshake
(client close frames are echoed).

```no_run
# async fn demo() -> std::io::Result<()> {
use shardline_discord_sim::{Mix, SimConfig, Simulator, TrafficPlan};
let sim = Simulator::start(SimConfig::default()).await?;
// ... connect a twilight shard to sim.gateway_url() ...
sim.wait_ready(0).await;
let sent = sim.dispatch(0, "MESSAGE_CREATE", r#"{"content":"hi"}"#).await;
assert_eq!(sent.event, "MESSAGE_CREATE");
sim.play(TrafficPlan { shards: vec![0], events_per_shard: 100, mix: Mix::Realistic, ..Default::default() }).await;
sim.shutdown().await;
# Ok(()) }
```
"##]

mod commands;
mod compress;
mod config;
mod connection;
pub mod fixtures;
pub mod http_interactions;
mod http_traffic;
mod members;
mod rest;
mod sim;
mod state;
mod traffic;

pub use commands::CommandRecord;
pub use compress::TransportCompression;
pub use config::{RestLatency, SimConfig, shard_for_guild, synthetic_guild};
pub use fixtures::{FUTURE_EVENT, sample};
pub use http_interactions::{HttpInteractions, HttpRecord, Signing, Verdict};
pub use http_traffic::{
    HttpInteraction, HttpPlan, HttpTrafficArgs, play_forever as play_http_forever,
};
pub use rest::{
    BucketSpec, MessageRecord, RestFault, RestLimits, RestRecord, RoleChange, Violation,
    busiest_second, busiest_window,
};
pub use sim::{BACKPRESSURE_FRAMES, Simulator};
pub use state::{CallbackRecord, IdentifyRecord, ResumeRecord, Sent, SimEvent};
pub use traffic::{Mix, Pacer, TrafficPlan, realistic_event};
