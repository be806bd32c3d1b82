//! `shardline-discord-sim`: a simulated Discord gateway + REST server for the demo.
//!
//! Serves forever and plays the realistic event mix at `--rate` events per second (total)
//! across every shard that has a live session; logs per-second totals.
//!
//! With `--member-rate`, it also keeps one guild with members per shard (the shard's
//! first guild not in READY, `g`), with roles `g+1` (a base role moderators give),
//! `g+2`, `g+3` and `g+4` (for an application's rules to grant), added through a
//! `GUILD_CREATE` once the shard is ready; after `POST /sim/members/play` it plays
//! member joins (accounts two years or ten days old, alternately; one in three with
//! the base role), moderators giving the base role, leaves, and `/verify`
//! interactions at that rate.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use rand::{Rng, SeedableRng, rngs::StdRng};
use shardline_discord_sim::{
    HttpInteractions, HttpTrafficArgs, Mix, Pacer, RestLatency, RestLimits, SimConfig, Simulator,
    play_http_forever, sample,
};
use tracing_subscriber::EnvFilter;

/// Simulated Discord gateway (v10, JSON, zlib-stream/zstd-stream) and REST API.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "SIM_LISTEN", default_value = "127.0.0.1:7878")]
    listen: SocketAddr,
    /// Bot token clients must present.
    #[arg(long, env = "DISCORD_TOKEN", default_value = "sim-token")]
    token: String,
    /// Total number of shards.
    #[arg(long, env = "SIM_SHARDS", default_value_t = 2)]
    shards: u32,
    /// Events per second in total across live shards (0 = none).
    #[arg(long, env = "SIM_RATE", default_value_t = 50)]
    rate: u32,
    /// Discord's max_concurrency.
    #[arg(long, env = "SIM_MAX_CONCURRENCY", default_value_t = 1)]
    max_concurrency: u32,
    /// Dispatches kept per session for RESUME replays.
    #[arg(long, env = "SIM_RETAINED_LOG", default_value_t = 100_000)]
    retained_log: usize,
    /// Heartbeat interval announced in HELLO, in milliseconds (Discord's is 41250).
    #[arg(long, env = "SIM_HEARTBEAT_INTERVAL_MS", default_value_t = 41_250)]
    heartbeat_interval_ms: u64,
    /// Already-delivered dispatches a RESUME replays before the missed ones, as
    /// Discord sometimes does (the gateway's de-duplication then drops them).
    #[arg(long, env = "SIM_REPLAY_OVERLAP", default_value_t = 0)]
    replay_overlap: u64,
    /// REST response time in milliseconds: fixed (`100`) or uniform (`50-150`, like
    /// Discord from a cloud region).
    #[arg(long, env = "SIM_REST_LATENCY_MS", default_value = "50-150")]
    rest_latency_ms: RestLatency,
    /// REST requests per second per bot token (Discord's global limit).
    #[arg(long, env = "SIM_GLOBAL_LIMIT", default_value_t = 50)]
    global_limit: u32,
    /// Invalid requests (401, 403, non-shared 429) per 10 minutes before the
    /// simulated Cloudflare ban.
    #[arg(long, env = "SIM_INVALID_LIMIT", default_value_t = 10_000)]
    invalid_limit: u32,
    /// Channel ids where every request answers 403 (Missing Permissions), comma
    /// separated.
    #[arg(long, env = "SIM_FORBIDDEN_CHANNELS", value_delimiter = ',')]
    forbidden_channels: Vec<u64>,
    /// Member events per second in the guilds with members (0 = none; see above).
    #[arg(long, env = "SIM_MEMBER_RATE", default_value_t = 0)]
    member_rate: u32,
    /// Member-role changes allowed per guild per 10 s (Discord's bucket: 10).
    #[arg(long, env = "SIM_MEMBER_ROLES_PER_10S", default_value_t = 10)]
    member_roles_per_10s: u32,
    /// HTTP interactions sent to an Interactions Endpoint URL.
    #[command(flatten)]
    http: HttpTrafficArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    if args.http.print_interactions_public_key {
        println!("{}", HttpInteractions::new("http://unused").public_key());
        return Ok(());
    }
    let config = SimConfig {
        token: args.token,
        shard_total: args.shards,
        max_concurrency: args.max_concurrency,
        retained_log: args.retained_log,
        record_sent: false,
        heartbeat_interval: Duration::from_millis(args.heartbeat_interval_ms),
        replay_overlap: args.replay_overlap,
        rest_latency: args.rest_latency_ms,
        rest_limits: RestLimits {
            global_per_second: args.global_limit,
            invalid_limit: args.invalid_limit,
            forbidden_channels: args.forbidden_channels,
            member_roles: shardline_discord_sim::BucketSpec::per_ms(
                args.member_roles_per_10s,
                10_000,
            ),
            ..RestLimits::default()
        },
        ..SimConfig::default()
    };
    let sim = Simulator::bind(args.listen, config).await?;
    tracing::info!(url = %sim.gateway_url(), shards = args.shards, rate = args.rate, "discord simulator listening");

    let player = tokio::spawn(play_forever(sim.clone(), args.rate));
    let members = tokio::spawn(play_members(sim.clone(), args.member_rate));
    let http_player = tokio::spawn(play_http_forever(args.http));
    shutdown_signal().await;
    tracing::info!("shutting down");
    player.abort();
    members.abort();
    http_player.abort();
    sim.shutdown().await;
    Ok(())
}

async fn play_forever(sim: Simulator, rate: u32) {
    let mut rng = StdRng::from_os_rng();
    let mix = Mix::Realistic;
    let mut report = tokio::time::interval(Duration::from_secs(1));
    report.tick().await;
    let mut last = sim.sent_count();
    let mut next_shard = 0usize;
    loop {
        let shards = sim.ready_shards();
        if shards.is_empty() || rate == 0 {
            tokio::select! {
                _ = report.tick() => last = log_second(&sim, last),
                _ = wait_any_ready(&sim) => {}
            }
            continue;
        }
        // Play in one-second slices so newly connected shards join quickly.
        let mut pacer = Pacer::new(Some(rate));
        for _ in 0..rate {
            loop {
                tokio::select! {
                    biased;
                    _ = report.tick() => last = log_second(&sim, last),
                    _ = pacer.tick() => break,
                }
            }
            let shard = shards[next_shard % shards.len()];
            next_shard = next_shard.wrapping_add(1);
            let event = mix.pick(&mut rng).to_owned();
            let guilds = sim.guilds(shard);
            let guild = if guilds.is_empty() {
                sim.guild_for_shard(shard, 0)
            } else {
                guilds[rng.random_range(0..guilds.len())]
            };
            let d = sample(&event, guild, &mut rng);
            sim.dispatch_with(shard, &event, d.into(), Some(guild))
                .await;
        }
    }
}

/// The guilds with members, one per shard: added once each shard is ready; then,
/// after `POST /sim/members/play`, member traffic at `rate` events per second.
async fn play_members(sim: Simulator, rate: u32) {
    if rate == 0 {
        return;
    }
    let total = sim.config().shard_total;
    let guilds: Vec<u64> = (0..total)
        .map(|shard| sim.guild_for_shard(shard, 0))
        .collect();
    for (shard, &guild) in guilds.iter().enumerate() {
        sim.wait_ready(shard as u32).await;
        sim.add_guild(guild, &[guild + 1, guild + 2, guild + 3, guild + 4], &[])
            .await;
        tracing::info!(
            guild,
            shard,
            "guild with members added (roles guild+1..guild+4)"
        );
    }
    sim.members_play().await;
    tracing::info!(rate, "member traffic started");
    let mut rng = StdRng::from_os_rng();
    let mut pacer = Pacer::new(Some(rate));
    let epoch_ms = 1_420_070_400_000u64;
    for n in 0u64.. {
        pacer.tick().await;
        let shard = (n % u64::from(total)) as u32;
        let guild = guilds[shard as usize];
        let members: Vec<u64> = sim.members(guild).into_keys().collect();
        let someone = (!members.is_empty()).then(|| members[rng.random_range(0..members.len())]);
        match (rng.random_range(0..10), someone) {
            (7, Some(user)) => {
                sim.member_update(guild, user, &[guild + 1], &[]).await;
            }
            (8, Some(user)) => {
                sim.member_leave(guild, user).await;
            }
            (9, Some(user)) => {
                let roles = sim.member_roles(guild, user).unwrap_or_default();
                let mut d: serde_json::Value = serde_json::from_str(
                    &shardline_discord_sim::fixtures::interaction_create(guild, &mut rng),
                )
                .expect("fixture");
                d["data"]["name"] = "verify".into();
                d["member"]["user"]["id"] = user.to_string().into();
                d["member"]["roles"] = roles
                    .iter()
                    .map(|r| serde_json::Value::from(r.to_string()))
                    .collect();
                sim.dispatch(shard, "INTERACTION_CREATE", &d.to_string())
                    .await;
            }
            _ => {
                let days = if n % 2 == 0 { 730 } else { 10 };
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis() as u64;
                let created = now - days * 86_400_000 - epoch_ms;
                let user = (created << 22) | (n & 0x3f_ffff);
                let roles: &[u64] = if n % 3 == 0 { &[guild + 1] } else { &[] };
                sim.member_join(guild, user, roles).await;
            }
        }
    }
}

async fn wait_any_ready(sim: &Simulator) {
    let mut events = sim.events();
    let _ = events.recv().await;
}

fn log_second(sim: &Simulator, last: u64) -> u64 {
    let now = sim.sent_count();
    tracing::info!(
        dispatched_last_second = now - last,
        dispatched_total = now,
        live_shards = ?sim.ready_shards(),
        "traffic"
    );
    now
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
