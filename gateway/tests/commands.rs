//! Workers send gateway commands to the shard that owns a guild with a NATS request
//! on `internal.gateway.<shard>.command`; the gateway sends them on that shard,
//! within Discord's 120 commands per 60 s, and replies with the result.

mod common;

use common::{Harness, PATIENCE, sim_config};
use shardline_discord_sim::shard_for_guild;
use shardline_proto::gateway::{
    CommandErrorKind, CommandReply, command_subject, command_subject_for_guild,
};
use shardline_testkit::eventually;

async fn request(client: &async_nats::Client, subject: String, body: String) -> CommandReply {
    let reply = tokio::time::timeout(PATIENCE, client.request(subject, body.into()))
        .await
        .expect("a reply in time")
        .expect("a reply");
    serde_json::from_slice(&reply.payload)
        .unwrap_or_else(|e| panic!("not a CommandReply ({e}): {:?}", reply.payload))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_reach_the_shard_that_owns_the_guild() {
    let harness = Harness::start(sim_config()).await;
    let sim = harness.sim.clone();
    let client = harness.nats.client().await;
    let total = sim.config().shard_total;
    let guild = sim.guilds(1)[0];
    assert_eq!(shard_for_guild(guild, total), 1);

    let members = format!(r#"{{"op":8,"d":{{"guild_id":"{guild}","query":"","limit":0}}}}"#);
    let reply = request(&client, command_subject_for_guild(guild, total), members).await;
    assert_eq!(reply, CommandReply::sent(1));
    let presence = r#"{"op":3,"d":{"since":null,"activities":[],"status":"idle","afk":false}}"#;
    let reply = request(&client, command_subject(0), presence.to_owned()).await;
    assert_eq!(reply, CommandReply::sent(0));
    let voice = format!(
        r#"{{"op":4,"d":{{"guild_id":"{}","channel_id":null,"self_mute":false,"self_deaf":false}}}}"#,
        sim.guilds(0)[0]
    );
    assert!(request(&client, command_subject(0), voice).await.ok);

    let identify = r#"{"op":2,"d":{}}"#.to_owned();
    let refused = request(&client, command_subject(0), identify).await;
    assert_eq!(refused.error, Some(CommandErrorKind::Invalid));
    let broken = request(&client, command_subject(1), "{".to_owned()).await;
    assert_eq!(broken.error, Some(CommandErrorKind::Invalid));

    let received = eventually("three commands at the simulator", PATIENCE, || {
        let sim = sim.clone();
        async move {
            let commands = sim.gateway_commands();
            (commands.len() >= 3).then_some(commands)
        }
    })
    .await;
    let seen: Vec<(Option<u32>, u8)> = received.iter().map(|c| (c.shard, c.op)).collect();
    assert_eq!(seen, vec![(Some(1), 8), (Some(0), 3), (Some(0), 4)]);
    assert!(received[0].d.contains(&guild.to_string()));
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_commands_is_held_to_the_shard_rate_limit() {
    const FLOOD: usize = 130;
    let harness = Harness::start(sim_config()).await;
    let sim = harness.sim.clone();
    let client = harness.nats.client().await;
    let presence = r#"{"op":3,"d":{"since":null,"activities":[],"status":"online","afk":false}}"#;
    let mut sent = 0;
    let mut limited = Vec::new();
    for _ in 0..FLOOD {
        let reply = request(&client, command_subject(1), presence.to_owned()).await;
        match reply.error {
            None => sent += 1,
            Some(CommandErrorKind::RateLimited) => limited.push(reply.retry_after_ms),
            Some(other) => panic!("unexpected refusal {other:?}"),
        }
    }
    assert!(sent <= 120, "{sent} commands accepted in well under 60 s");
    assert_eq!(sent + limited.len(), FLOOD);
    assert!(!limited.is_empty(), "the limit was reached");
    assert!(limited.iter().all(|after| after.is_some_and(|ms| ms > 0)));
    // Every accepted command reaches Discord; none of the refused ones do.
    eventually("accepted commands at the simulator", PATIENCE, || {
        let sim = sim.clone();
        async move {
            let n = sim
                .gateway_commands()
                .iter()
                .filter(|c| c.shard == Some(1))
                .count();
            (n == sent).then_some(())
        }
    })
    .await;
    let at_sim = sim.gateway_commands();
    let span = at_sim.last().unwrap().at.duration_since(at_sim[0].at);
    eprintln!(
        "{FLOOD} commands: {sent} sent within {span:?}, {} refused as rate_limited (retry after {:?} ms)",
        limited.len(),
        limited.first().copied().flatten()
    );
    harness.stop().await;
}

fn all_members(guild: u64) -> String {
    format!(r#"{{"op":8,"d":{{"guild_id":"{guild}","query":"","limit":0}}}}"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_request_for_all_members_within_30_s_is_refused_with_the_time_to_retry() {
    let harness = Harness::start(sim_config()).await;
    let sim = harness.sim.clone();
    let client = harness.nats.client().await;
    let total = sim.config().shard_total;
    let guild = sim.guilds(1)[0];
    let subject = command_subject_for_guild(guild, total);
    let first = request(&client, subject.clone(), all_members(guild)).await;
    assert_eq!(first, CommandReply::sent(1));
    let again = request(&client, subject.clone(), all_members(guild)).await;
    assert_eq!(again.error, Some(CommandErrorKind::RateLimited));
    let wait = again.retry_after_ms.expect("the time to retry");
    assert!(wait > 20_000 && wait <= 30_000, "{wait} ms");
    // A search is not a request for all members; another guild has its own 30 s.
    let search = format!(r#"{{"op":8,"d":{{"guild_id":"{guild}","query":"ab","limit":10}}}}"#);
    assert!(request(&client, subject.clone(), search).await.ok);
    let other = sim.guilds(1)[1];
    let reply = request(
        &client,
        command_subject_for_guild(other, total),
        all_members(other),
    )
    .await;
    assert!(reply.ok);
    let at_sim = eventually("three op 8 at the simulator", PATIENCE, || {
        let sim = sim.clone();
        async move {
            let ops: Vec<_> = sim
                .gateway_commands()
                .into_iter()
                .filter(|c| c.op == 8)
                .collect();
            (ops.len() >= 3).then_some(ops)
        }
    })
    .await;
    assert_eq!(at_sim.len(), 3, "the refused one never reached Discord");
    assert!(
        at_sim.iter().all(|c| !c.rate_limited),
        "Discord refused none"
    );
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discords_rate_limited_dispatch_is_published_like_any_event() {
    // A gateway restarted within 30 s does not know its predecessor's request:
    // Discord answers the second one with RATE_LIMITED, which reaches the workers.
    let harness = Harness::start(sim_config()).await;
    let client = harness.nats.client().await;
    let guild = harness.sim.guilds(0)[0];
    let total = harness.sim.config().shard_total;
    let subject = command_subject_for_guild(guild, total);
    assert!(
        request(&client, subject.clone(), all_members(guild))
            .await
            .ok
    );
    let (nats, sim) = harness.stop().await;

    let config = shardline_gateway::Config {
        max_concurrency: Some(sim.config().max_concurrency as u16),
        ..shardline_gateway::Config::for_gateway(
            &sim.config().token,
            &sim.gateway_url(),
            total,
            &nats.url(),
        )
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let gateway = tokio::spawn(shardline_gateway::run(config, shutdown.clone()));
    for shard in 0..total {
        sim.wait_ready(shard).await;
    }
    let client = nats.client().await;
    let reply = eventually("the restarted gateway's command listener", PATIENCE, || {
        let (client, subject) = (client.clone(), subject.clone());
        async move {
            let reply = client
                .request(subject, all_members(guild).into())
                .await
                .ok()?;
            serde_json::from_slice::<CommandReply>(&reply.payload).ok()
        }
    })
    .await;
    assert!(reply.ok, "the new gateway does not know the first request");
    let published = eventually("RATE_LIMITED in the EVENTS stream", PATIENCE, || {
        let nats = &nats;
        async move {
            common::stream_messages(nats, "EVENTS")
                .await
                .into_iter()
                .find(|m| m.subject.as_str() == shardline_proto::subject::RATE_LIMITED)
        }
    })
    .await;
    let d: serde_json::Value = serde_json::from_slice(&published.payload).unwrap();
    assert_eq!(d["opcode"], 8);
    assert_eq!(d["meta"]["guild_id"], guild.to_string());
    assert!(d["retry_after"].as_f64().unwrap() > 0.0);
    let limited: Vec<bool> = sim
        .gateway_commands()
        .iter()
        .filter(|c| c.op == 8)
        .map(|c| c.rate_limited)
        .collect();
    assert_eq!(limited, [false, true]);
    shutdown.cancel();
    gateway.await.unwrap().unwrap();
}
