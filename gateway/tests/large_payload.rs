//! A 5 MiB GUILD_CREATE against a server with the default 1 MiB `max_payload`: it is
//! published zstd-compressed with `Shardline-Encoding: zstd` and decodes to the exact
//! bytes Discord sent.

mod common;

use common::{Harness, sim_config, stream_messages, wait_stored};
use shardline_discord_sim::fixtures::guild_create;
use shardline_proto::{encoding, headers};

const SIZE: usize = 5 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_five_mib_guild_create_arrives_intact() {
    let harness = Harness::start(sim_config()).await;
    let max_payload = harness.nats.client().await.server_info().max_payload;
    assert_eq!(
        max_payload,
        1024 * 1024,
        "the server keeps its default limit"
    );

    let guild = harness.sim.guild_for_shard(0, 0);
    let per_member = guild_create(guild, 1000, 0, 1).len() / 1000;
    let d = guild_create(guild, SIZE / per_member + 100, 50, 1);
    assert!(d.len() >= SIZE, "payload is {} bytes", d.len());
    let before = wait_stored(&harness.nats, 0).await;
    let sent = harness.sim.dispatch(0, "GUILD_CREATE", &d).await;
    let small = harness.sim.dispatch(0, "TYPING_START", "{}").await;
    wait_stored(&harness.nats, before + 2).await;
    let (nats, _sim) = harness.stop().await;

    let messages = stream_messages(&nats, "EVENTS").await;
    let find = |id: String| {
        messages
            .iter()
            .find(|m| m.headers.get(headers::MSG_ID).map(|v| v.as_str()) == Some(id.as_str()))
            .unwrap_or_else(|| panic!("{id} not stored"))
    };
    let big = find(sent.msg_id());
    assert_eq!(big.subject.as_str(), "events.guild.join");
    let encoding_header = big.headers.get(headers::ENCODING).map(|v| v.as_str());
    assert_eq!(encoding_header, Some(encoding::ZSTD));
    assert!(big.payload.len() < max_payload);
    let decoded = encoding::decode(encoding_header, &big.payload).expect("decodes");
    assert!(
        decoded[..] == *d.as_bytes(),
        "decoded payload differs from what Discord sent"
    );
    eprintln!(
        "GUILD_CREATE of {} bytes stored as {} bytes of zstd",
        d.len(),
        big.payload.len()
    );

    // Small payloads stay byte for byte, without the header.
    let plain = find(small.msg_id());
    assert_eq!(plain.headers.get(headers::ENCODING), None);
    assert_eq!(&plain.payload[..], b"{}");
}
