//! Generated Discord payloads (`d` bodies) that twilight-model can deserialize.

use rand::Rng;
use serde_json::{Value, json};

/// Event name the router has never heard of (Discord adds events without notice).
pub const FUTURE_EVENT: &str = "SHARDLINE_FUTURE_EVENT";

/// Discord epoch (2015-01-01) in Unix milliseconds.
const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;

const WORDS: &[&str] = &[
    "shard",
    "gateway",
    "router",
    "stream",
    "nats",
    "jetstream",
    "ack",
    "replay",
    "resume",
    "session",
    "guild",
    "channel",
    "message",
    "latency",
    "\"quoted\"",
    "emoji 🎉",
    "naïve",
    "back\\slash",
    "tab\tchar",
    "line\nbreak",
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
];

/// A random snowflake from the last few years.
pub fn snowflake(rng: &mut impl Rng) -> u64 {
    let ms = 250_000_000_000 + rng.random_range(0..50_000_000_000u64);
    (ms << 22) | rng.random_range(0..(1u64 << 22))
}

/// An ISO-8601 timestamp as Discord writes them.
pub fn timestamp(rng: &mut impl Rng) -> String {
    format!(
        "2025-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}000+00:00",
        rng.random_range(1..=12),
        rng.random_range(1..=28),
        rng.random_range(0..24),
        rng.random_range(0..60),
        rng.random_range(0..60),
        rng.random_range(0..1000)
    )
}

/// Free text of roughly `len` bytes (with characters that need JSON escaping).
pub fn text(rng: &mut impl Rng, len: usize) -> String {
    let mut s = String::with_capacity(len + 16);
    while s.len() < len {
        if !s.is_empty() {
            s.push(' ');
        }
        s.push_str(WORDS[rng.random_range(0..WORDS.len())]);
    }
    s
}

/// A user object.
pub fn user(id: u64, rng: &mut impl Rng) -> Value {
    json!({
        "id": id.to_string(),
        "username": format!("user{}", id % 100_000),
        "global_name": if rng.random_bool(0.5) { Value::from(format!("User {}", id % 1000)) } else { Value::Null },
        "discriminator": "0",
        "avatar": null,
        "bot": false,
        "public_flags": 0,
    })
}

/// A guild member object (with `user`).
pub fn member(user_id: u64, rng: &mut impl Rng) -> Value {
    json!({
        "user": user(user_id, rng),
        "nick": if rng.random_bool(0.3) { Value::from(format!("nick{}", user_id % 997)) } else { Value::Null },
        "avatar": null,
        "roles": [],
        "joined_at": timestamp(rng),
        "premium_since": null,
        "deaf": false,
        "mute": false,
        "flags": 0,
        "pending": false,
        "communication_disabled_until": null,
    })
}

/// `d` of a MESSAGE_CREATE with `content_len` bytes of content.
pub fn message_create(guild_id: u64, rng: &mut impl Rng, content_len: usize) -> String {
    let author = snowflake(rng);
    let mut m = member(author, rng);
    let user = m.as_object_mut().and_then(|o| o.remove("user"));
    json!({
        "type": 0,
        "tts": false,
        "timestamp": timestamp(rng),
        "pinned": false,
        "nonce": rng.random::<u32>().to_string(),
        "mentions": [],
        "mention_roles": [],
        "mention_everyone": false,
        "member": m,
        "id": snowflake(rng).to_string(),
        "flags": 0,
        "embeds": [],
        "edited_timestamp": null,
        "content": text(rng, content_len),
        "components": [],
        "channel_id": snowflake(rng).to_string(),
        "author": user,
        "attachments": [],
        "guild_id": guild_id.to_string(),
    })
    .to_string()
}

/// `d` of an INTERACTION_CREATE for a slash command (type 2).
pub fn interaction_create(guild_id: u64, rng: &mut impl Rng) -> String {
    let user_id = snowflake(rng);
    let channel_id = snowflake(rng).to_string();
    let mut m = member(user_id, rng);
    m["permissions"] = json!("2248473465835073");
    let token: String = (0..64)
        .map(|_| {
            char::from(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789_-"[rng.random_range(0..48)])
        })
        .collect();
    json!({
        "version": 1,
        "type": 2,
        "token": format!("aW50ZXJhY3Rpb24{token}"),
        "member": m,
        "locale": "en-US",
        "id": snowflake(rng).to_string(),
        "guild_locale": "en-US",
        "guild_id": guild_id.to_string(),
        "guild": {"id": guild_id.to_string(), "locale": "en-US", "features": []},
        "entitlements": [],
        "entitlement_sku_ids": [],
        "data": {"type": 1, "name": "ping", "id": "1100000000000000001", "guild_id": guild_id.to_string()},
        "context": 0,
        "channel_id": channel_id,
        "channel": {"id": channel_id, "type": 0, "guild_id": guild_id.to_string(), "name": "general", "position": 0, "nsfw": false},
        "authorizing_integration_owners": {"0": guild_id.to_string()},
        "attachment_size_limit": 10_485_760,
        "application_id": "1000000000000000001",
        "app_permissions": "2248473465835073",
    })
    .to_string()
}

/// `d` of a GUILD_MEMBER_UPDATE.
pub fn member_update(guild_id: u64, rng: &mut impl Rng) -> String {
    let mut m = member(snowflake(rng), rng);
    m["guild_id"] = json!(guild_id.to_string());
    m.to_string()
}

/// `d` of a GUILD_MEMBER_ADD.
pub fn member_add(guild_id: u64, rng: &mut impl Rng) -> String {
    member_update(guild_id, rng)
}

/// `d` of a GUILD_MEMBER_REMOVE.
pub fn member_remove(guild_id: u64, rng: &mut impl Rng) -> String {
    json!({"guild_id": guild_id.to_string(), "user": user(snowflake(rng), rng)}).to_string()
}

/// `d` of a MESSAGE_REACTION_ADD.
pub fn reaction_add(guild_id: u64, rng: &mut impl Rng) -> String {
    let uid = snowflake(rng);
    json!({
        "user_id": uid.to_string(),
        "type": 0,
        "message_id": snowflake(rng).to_string(),
        "message_author_id": snowflake(rng).to_string(),
        "member": member(uid, rng),
        "emoji": {"name": "🔥", "id": null},
        "channel_id": snowflake(rng).to_string(),
        "burst": false,
        "guild_id": guild_id.to_string(),
    })
    .to_string()
}

/// `d` of a TYPING_START.
pub fn typing_start(guild_id: u64, rng: &mut impl Rng) -> String {
    let uid = snowflake(rng);
    json!({
        "user_id": uid.to_string(),
        "timestamp": (DISCORD_EPOCH_MS + 300_000_000_000) / 1000 + rng.random_range(0..1_000_000),
        "member": member(uid, rng),
        "channel_id": snowflake(rng).to_string(),
        "guild_id": guild_id.to_string(),
    })
    .to_string()
}

/// `d` of a PRESENCE_UPDATE.
pub fn presence_update(guild_id: u64, rng: &mut impl Rng) -> String {
    let status = ["online", "idle", "dnd", "offline"][rng.random_range(0..4)];
    json!({
        "user": {"id": snowflake(rng).to_string()},
        "status": status,
        "guild_id": guild_id.to_string(),
        "client_status": {"desktop": "online"},
        "activities": [],
    })
    .to_string()
}

/// `d` of the made-up [`FUTURE_EVENT`].
pub fn future_event(guild_id: u64, rng: &mut impl Rng) -> String {
    json!({
        "guild_id": guild_id.to_string(),
        "novelty": text(rng, 40),
        "nested": {"level": rng.random_range(0..10), "list": [1, 2, 3]},
    })
    .to_string()
}

/// `d` of a GUILD_CREATE with `members` members and `channels` text channels.
///
/// Deterministic in its arguments, so lazy-load GUILD_CREATEs are reproducible.
pub fn guild_create(guild_id: u64, members: usize, channels: usize, member_count: u64) -> String {
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(guild_id ^ members as u64);
    let g = guild_id.to_string();
    let owner = (guild_id + 1).to_string();
    let channels: Vec<Value> = (0..channels)
        .map(|i| {
            json!({
                "id": (guild_id + 1000 + i as u64).to_string(),
                "type": 0,
                "name": format!("channel-{i}"),
                "position": i,
                "topic": text(&mut rng, 60),
                "nsfw": false,
                "rate_limit_per_user": 0,
                "parent_id": null,
                "last_message_id": null,
                "permission_overwrites": [],
                "flags": 0,
            })
        })
        .collect();
    let members: Vec<Value> = (0..members)
        .map(|i| member(guild_id + 100_000 + i as u64, &mut rng))
        .collect();
    json!({
        "id": g,
        "name": format!("Guild {guild_id}"),
        "icon": null,
        "splash": null,
        "discovery_splash": null,
        "banner": null,
        "description": null,
        "owner_id": owner,
        "afk_channel_id": null,
        "afk_timeout": 300,
        "verification_level": 1,
        "default_message_notifications": 1,
        "explicit_content_filter": 0,
        "roles": [{
            "id": g,
            "name": "@everyone",
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": null, "tertiary_color": null},
            "hoist": false,
            "icon": null,
            "unicode_emoji": null,
            "position": 0,
            "permissions": "2248473465835073",
            "managed": false,
            "mentionable": false,
            "flags": 0,
        }],
        "emojis": [],
        "features": [],
        "mfa_level": 0,
        "application_id": null,
        "system_channel_id": null,
        "system_channel_flags": 0,
        "rules_channel_id": null,
        "vanity_url_code": null,
        "premium_tier": 0,
        "premium_subscription_count": 0,
        "preferred_locale": "en-US",
        "public_updates_channel_id": null,
        "nsfw_level": 0,
        "premium_progress_bar_enabled": false,
        "stickers": [],
        "stage_instances": [],
        "guild_scheduled_events": [],
        "joined_at": "2024-01-01T00:00:00.000000+00:00",
        "large": member_count > 250,
        "unavailable": false,
        "member_count": member_count,
        "voice_states": [],
        "members": members,
        "channels": channels,
        "threads": [],
        "presences": [],
    })
    .to_string()
}

/// `d` of a big GUILD_CREATE (50-300 KiB) for `guild_id`.
pub fn big_guild_create(guild_id: u64, rng: &mut impl Rng) -> String {
    let target = rng.random_range(50 * 1024..300 * 1024);
    let members = target / 340;
    guild_create(
        guild_id,
        members,
        40,
        members as u64 + rng.random_range(0..10_000),
    )
}

/// A realistic `d` for `event` about `guild_id`.
///
/// Known names: MESSAGE_CREATE, INTERACTION_CREATE, GUILD_MEMBER_UPDATE,
/// GUILD_MEMBER_ADD, GUILD_MEMBER_REMOVE, MESSAGE_REACTION_ADD, TYPING_START,
/// PRESENCE_UPDATE, GUILD_CREATE (big) and [`FUTURE_EVENT`]; anything else gets a small
/// generic object with `guild_id`.
pub fn sample(event: &str, guild_id: u64, rng: &mut impl Rng) -> String {
    match event {
        "MESSAGE_CREATE" => {
            let len = rng.random_range(300..2048);
            message_create(guild_id, rng, len)
        }
        "INTERACTION_CREATE" => interaction_create(guild_id, rng),
        "GUILD_MEMBER_UPDATE" => member_update(guild_id, rng),
        "GUILD_MEMBER_ADD" => member_add(guild_id, rng),
        "GUILD_MEMBER_REMOVE" => member_remove(guild_id, rng),
        "MESSAGE_REACTION_ADD" => reaction_add(guild_id, rng),
        "TYPING_START" => typing_start(guild_id, rng),
        "PRESENCE_UPDATE" => presence_update(guild_id, rng),
        "GUILD_CREATE" => big_guild_create(guild_id, rng),
        FUTURE_EVENT => future_event(guild_id, rng),
        _ => json!({"guild_id": guild_id.to_string(), "n": rng.random::<u32>()}).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use twilight_model::gateway::payload::incoming::{
        GuildCreate, InteractionCreate, MemberAdd, MemberRemove, MemberUpdate, MessageCreate,
        ReactionAdd, Ready, TypingStart,
    };

    const GUILD: u64 = 1_258_291_200_000_000_000;

    fn check<T: serde::de::DeserializeOwned>(event: &str, rng: &mut StdRng) {
        for _ in 0..20 {
            let d = sample(event, GUILD, rng);
            serde_json::from_str::<serde_json::Value>(&d).expect("valid json");
            if let Err(e) = serde_json::from_str::<T>(&d) {
                panic!("{event} does not deserialize with twilight-model: {e}\n{d:.600}");
            }
        }
    }

    #[test]
    fn samples_deserialize_with_twilight_model() {
        let mut rng = StdRng::seed_from_u64(7);
        check::<MessageCreate>("MESSAGE_CREATE", &mut rng);
        check::<InteractionCreate>("INTERACTION_CREATE", &mut rng);
        check::<MemberUpdate>("GUILD_MEMBER_UPDATE", &mut rng);
        check::<MemberAdd>("GUILD_MEMBER_ADD", &mut rng);
        check::<MemberRemove>("GUILD_MEMBER_REMOVE", &mut rng);
        check::<ReactionAdd>("MESSAGE_REACTION_ADD", &mut rng);
        check::<TypingStart>("TYPING_START", &mut rng);
        check::<GuildCreate>("GUILD_CREATE", &mut rng);
        serde_json::from_str::<twilight_model::gateway::presence::Presence>(&sample(
            "PRESENCE_UPDATE",
            GUILD,
            &mut rng,
        ))
        .expect("presence");
        let small = guild_create(GUILD, 0, 0, 20);
        let g: GuildCreate = serde_json::from_str(&small).expect("lazy guild create");
        assert_eq!(g.id().get(), GUILD);
        let ready = crate::connection::ready_payload("ws://127.0.0.1:1", "abc", 1, 2, &[GUILD]);
        let r: Ready = serde_json::from_str(&ready).expect("ready");
        assert_eq!(r.guilds.len(), 1);
        assert_eq!(r.session_id, "abc");
    }

    #[test]
    fn sizes_match_the_mix_description() {
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..5 {
            let big = sample("GUILD_CREATE", GUILD, &mut rng);
            assert!(
                (40 * 1024..360 * 1024).contains(&big.len()),
                "{}",
                big.len()
            );
            let m = sample("MESSAGE_CREATE", GUILD, &mut rng);
            assert!(m.len() > 300, "{}", m.len());
        }
        let interaction: serde_json::Value =
            serde_json::from_str(&sample("INTERACTION_CREATE", GUILD, &mut rng)).unwrap();
        assert_eq!(interaction["guild_id"], GUILD.to_string());
        assert_eq!(interaction["data"]["type"], 1);
    }
}
