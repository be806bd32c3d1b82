//! GUILD_CREATE join vs available, GUILD_DELETE leave vs unavailable, end to end.

mod common;

use common::{Harness, sim_config, stream_messages};
use shardline_discord_sim::SimConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guild_lifecycle_subjects() {
    let harness = Harness::start(SimConfig {
        shard_total: 1,
        guilds_per_shard: 2,
        ..sim_config()
    })
    .await;
    let sim = &harness.sim;
    let [known, other] = sim.guilds(0)[..] else {
        panic!("two READY guilds")
    };
    let new = sim.guild_for_shard(0, 0);
    let create = |id: u64| format!(r#"{{"id":"{id}","name":"g","unavailable":false}}"#);
    // READY listed `known` and `other`; the simulator lazily loaded both already.
    sim.dispatch(0, "GUILD_CREATE", &create(new)).await; // a real join
    sim.dispatch(
        0,
        "GUILD_DELETE",
        &format!(r#"{{"id":"{known}","unavailable":true}}"#),
    )
    .await; // outage
    sim.dispatch(0, "GUILD_CREATE", &create(known)).await; // recovery
    sim.dispatch(0, "GUILD_DELETE", &format!(r#"{{"id":"{other}"}}"#))
        .await; // kicked
    sim.dispatch(0, "GUILD_CREATE", &create(other)).await; // invited back: a join

    let (nats, _sim) = harness.stop_when_delivered().await;
    let subjects: Vec<(String, String)> = stream_messages(&nats, "EVENTS")
        .await
        .into_iter()
        .map(|m| {
            let guild = m
                .headers
                .get("Discord-Guild-Id")
                .unwrap()
                .as_str()
                .to_owned();
            (m.subject.to_string(), guild)
        })
        .collect();
    let g = |id: u64| id.to_string();
    assert_eq!(
        subjects,
        vec![
            ("events.guild.available".to_owned(), g(known)),
            ("events.guild.available".to_owned(), g(other)),
            ("events.guild.join".to_owned(), g(new)),
            ("events.guild.unavailable".to_owned(), g(known)),
            ("events.guild.available".to_owned(), g(known)),
            ("events.guild.leave".to_owned(), g(other)),
            ("events.guild.join".to_owned(), g(other)),
        ]
    );
}
