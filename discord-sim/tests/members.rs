//! Member roles as Discord keeps them: a guild added to the simulator answers the
//! member-role endpoints with Discord's status codes (204; 404 Unknown Member or
//! Unknown Role; 403 for a role above the bot's), within the route's bucket, keeps
//! each member's roles and dispatches a GUILD_MEMBER_UPDATE when they change, in the
//! order they changed whoever changed them.

mod common;

use common::RawClient;
use shardline_discord_sim::{BucketSpec, RestLatency, RestLimits, SimConfig, Simulator, Violation};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn call(sim: &Simulator, method: &str, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(sim.addr()).await.unwrap();
    let request = format!(
        "{method} /api/v10{path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bot sim-token\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head[9..12].parse().unwrap(), body.to_owned())
}

#[tokio::test]
async fn member_roles_answer_as_discord_and_dispatch_updates() {
    let sim = Simulator::start(SimConfig {
        shard_total: 1,
        guilds_per_shard: 0,
        rest_latency: RestLatency::NONE,
        rest_limits: RestLimits {
            member_roles: BucketSpec::per_ms(6, 60_000),
            ..Default::default()
        },
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let mut client = RawClient::connect(&sim, "").await;
    client.identify("sim-token", 0, 1).await;
    let (_, event, _) = client.next_dispatch().await;
    assert_eq!(event, "READY");

    let guild = sim.guild_for_shard(0, 0);
    let (role, high) = (guild + 1, guild + 2);
    sim.add_guild(guild, &[role, high], &[high]).await;
    let (_, event, d) = client.next_dispatch().await;
    assert_eq!(event, "GUILD_CREATE");
    let roles: serde_json::Value = serde_json::from_str(&d).unwrap();
    assert_eq!(roles["roles"].as_array().unwrap().len(), 3, "@everyone too");

    sim.member_join(guild, 7, &[]).await;
    assert_eq!(client.next_dispatch().await.1, "GUILD_MEMBER_ADD");

    let path = |user: u64, role: u64| format!("/guilds/{guild}/members/{user}/roles/{role}");
    assert_eq!(call(&sim, "PUT", &path(7, role)).await.0, 204);
    let (_, event, d) = client.next_dispatch().await;
    assert_eq!(event, "GUILD_MEMBER_UPDATE");
    assert!(d.contains(&format!(r#""roles":["{role}"]"#)), "{d}");
    assert_eq!(sim.member_roles(guild, 7), Some(vec![role]));
    // Adding it again changes nothing and dispatches nothing.
    assert_eq!(call(&sim, "PUT", &path(7, role)).await.0, 204);

    let (status, body) = call(&sim, "PUT", &path(8, role)).await;
    assert_eq!((status, body.contains("10007")), (404, true), "{body}");
    let (status, body) = call(&sim, "PUT", &path(7, 999)).await;
    assert_eq!((status, body.contains("10011")), (404, true), "{body}");
    let (status, body) = call(&sim, "PUT", &path(7, high)).await;
    assert_eq!((status, body.contains("50013")), (403, true), "{body}");
    assert_eq!(sim.rest_invalid_requests(), 1, "the 403 counts as invalid");

    // A moderator's change and the bot's are dispatched in the order they happened.
    sim.member_update(guild, 7, &[], &[role]).await.unwrap();
    assert_eq!(
        call(&sim, "DELETE", &path(7, role)).await.0,
        204,
        "already gone: 204"
    );
    let (_, event, d) = client.next_dispatch().await;
    assert_eq!(event, "GUILD_MEMBER_UPDATE");
    assert!(d.contains(r#""roles":[]"#), "{d}");

    // The bucket (6 a minute per guild) holds: the seventh is refused.
    let (status, _) = call(&sim, "PUT", &path(7, role)).await;
    assert_eq!(status, 429);
    assert_eq!(sim.rest_violations(), 1);
    let violations: Vec<Option<Violation>> =
        sim.rest_requests().iter().map(|r| r.violation).collect();
    assert_eq!(violations.last(), Some(&Some(Violation::Bucket)));

    sim.member_leave(guild, 7).await.unwrap();
    assert_eq!(client.next_dispatch().await.1, "GUILD_MEMBER_REMOVE");
    assert_eq!(sim.member_roles(guild, 7), None);
    assert!(sim.members(guild).is_empty());
    let statuses: Vec<u16> = sim.role_changes().iter().map(|c| c.status).collect();
    assert_eq!(statuses, [204, 204, 404, 404, 403, 204]);
}
