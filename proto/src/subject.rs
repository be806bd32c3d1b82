//! Subject mapping: the dispatch name (`t`) decides the subject.

use std::borrow::Cow;

use crate::GuildTransition;

/// Subject of every interaction (`INTERACTION_CREATE`).
pub const COMMANDS_INTERACTION: &str = "commands.interaction";
/// A guild the bot was not in before (not in READY, not known as unavailable).
pub const GUILD_JOIN: &str = "events.guild.join";
/// A guild that became available: the lazy load after READY, or recovery from an outage.
pub const GUILD_AVAILABLE: &str = "events.guild.available";
/// The bot left or was removed from a guild.
pub const GUILD_LEAVE: &str = "events.guild.leave";
/// A guild went unavailable (an outage on Discord's side, not a leave).
pub const GUILD_UNAVAILABLE: &str = "events.guild.unavailable";
/// `GUILD_MEMBER_ADD`.
pub const MEMBER_JOIN: &str = "events.member.join";
/// `GUILD_MEMBER_REMOVE`.
pub const MEMBER_LEAVE: &str = "events.member.leave";
/// `GUILD_MEMBER_UPDATE`.
pub const MEMBER_UPDATE: &str = "events.member.update";

/// `RATE_LIMITED`: Discord refused a gateway command (request guild members) and
/// says when to retry. Published by the generic rule like any other event; named
/// here so workers can subscribe without spelling the subject.
pub const RATE_LIMITED: &str = "events.rate.limited";

/// Prefix of every non-interaction event subject.
pub const EVENTS_PREFIX: &str = "events.";
/// Prefix of every dead letter's subject.
pub const DEAD_LETTER_PREFIX: &str = "deadletter.";

/// Every subject on which a command worker offers an HTTP interaction's first
/// response to the interactions service that holds its HTTP request: core NATS
/// requests, never stored (no stream captures `internal.interactions.>`).
pub const INTERACTION_REPLIES: &str = "internal.interactions.>";
/// Prefix of [`interaction_reply`] subjects.
pub const INTERACTION_REPLIES_PREFIX: &str = "internal.interactions.";

/// Where the interactions service instance `instance` (a token of letters and
/// digits) takes the first response to interaction `interaction_id`:
/// `internal.interactions.<instance>.<interaction id>`. The service names it in the
/// [`INTERACTION_REPLY`](crate::headers::INTERACTION_REPLY) header.
pub fn interaction_reply(instance: &str, interaction_id: u64) -> String {
    format!("{INTERACTION_REPLIES_PREFIX}{instance}.{interaction_id}")
}

/// Every [`interaction_reply`] subject of one service instance (its one subscription).
pub fn interaction_replies_of(instance: &str) -> String {
    format!("{INTERACTION_REPLIES_PREFIX}{instance}.*")
}

/// Where consumer `durable` dead-letters a message it received on `subject`:
/// `deadletter.<durable>.<subject>`, so dead letters can be filtered by consumer and
/// by original subject.
pub fn dead_letter(durable: &str, subject: &str) -> String {
    format!("{DEAD_LETTER_PREFIX}{durable}.{subject}")
}

/// Every dead letter of consumer `durable`.
pub fn dead_letters_of(durable: &str) -> String {
    format!("{DEAD_LETTER_PREFIX}{durable}.>")
}

/// Where a dispatch goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// Shard lifecycle (`READY`, `RESUMED`): handled by the gateway, never published.
    Lifecycle,
    /// Publish the payload on this subject.
    Publish(Cow<'static, str>),
}

impl Route {
    /// The subject, if this route publishes.
    pub fn subject(&self) -> Option<&str> {
        match self {
            Route::Lifecycle => None,
            Route::Publish(subject) => Some(subject),
        }
    }
}

/// Maps a dispatch name to its route.
///
/// `guild` is the classification of a `GUILD_CREATE` or `GUILD_DELETE` (from
/// [`GuildTracker`](crate::GuildTracker)); it is ignored for every other event. A
/// `GUILD_CREATE` without one is treated as `available` and a `GUILD_DELETE` without
/// one as `leave`, the readings that never invent a join.
///
/// Unknown names follow the generic rule: `events.` + the name lower-cased with `_` as
/// `.`, so a new Discord event needs no code change. Characters that are not ASCII
/// letters, digits or `_` become `-`, and empty tokens become `-`, so the result is
/// always a valid, wildcard-free NATS subject.
pub fn route(event: &str, guild: Option<GuildTransition>) -> Route {
    let fixed = match event {
        "READY" | "RESUMED" => return Route::Lifecycle,
        "INTERACTION_CREATE" => COMMANDS_INTERACTION,
        "GUILD_CREATE" => match guild {
            Some(GuildTransition::Join) => GUILD_JOIN,
            _ => GUILD_AVAILABLE,
        },
        "GUILD_DELETE" => match guild {
            Some(GuildTransition::Unavailable) => GUILD_UNAVAILABLE,
            _ => GUILD_LEAVE,
        },
        "GUILD_MEMBER_ADD" => MEMBER_JOIN,
        "GUILD_MEMBER_REMOVE" => MEMBER_LEAVE,
        "GUILD_MEMBER_UPDATE" => MEMBER_UPDATE,
        other => return Route::Publish(Cow::Owned(generic_subject(other))),
    };
    Route::Publish(Cow::Borrowed(fixed))
}

fn generic_subject(event: &str) -> String {
    let mut subject = String::with_capacity(EVENTS_PREFIX.len() + event.len() + 1);
    subject.push_str(EVENTS_PREFIX);
    let mut token_empty = true;
    for byte in event.bytes() {
        match byte {
            b'_' => {
                if token_empty {
                    subject.push('-');
                }
                subject.push('.');
                token_empty = true;
                continue;
            }
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' => {
                subject.push(char::from(byte.to_ascii_lowercase()))
            }
            _ => subject.push('-'),
        }
        token_empty = false;
    }
    if token_empty {
        subject.push('-');
    }
    subject
}

/// The shard that receives a guild's events: `(guild_id >> 22) % shard_total`.
///
/// # Panics
///
/// Panics if `shard_total` is zero.
pub fn shard_for_guild(guild_id: u64, shard_total: u32) -> u32 {
    ((guild_id >> 22) % u64::from(shard_total)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(event: &str, guild: Option<GuildTransition>) -> String {
        route(event, guild).subject().expect("publishes").to_owned()
    }

    #[test]
    fn fixed_subjects() {
        assert_eq!(subject("INTERACTION_CREATE", None), "commands.interaction");
        assert_eq!(subject("GUILD_MEMBER_ADD", None), "events.member.join");
        assert_eq!(subject("GUILD_MEMBER_REMOVE", None), "events.member.leave");
        assert_eq!(subject("GUILD_MEMBER_UPDATE", None), "events.member.update");
    }

    #[test]
    fn guild_transitions() {
        use GuildTransition::*;
        assert_eq!(subject("GUILD_CREATE", Some(Join)), GUILD_JOIN);
        assert_eq!(subject("GUILD_CREATE", Some(Available)), GUILD_AVAILABLE);
        assert_eq!(subject("GUILD_CREATE", None), GUILD_AVAILABLE);
        assert_eq!(subject("GUILD_DELETE", Some(Leave)), GUILD_LEAVE);
        assert_eq!(
            subject("GUILD_DELETE", Some(Unavailable)),
            GUILD_UNAVAILABLE
        );
        assert_eq!(subject("GUILD_DELETE", None), GUILD_LEAVE);
    }

    #[test]
    fn lifecycle_is_not_published() {
        assert_eq!(route("READY", None), Route::Lifecycle);
        assert_eq!(route("RESUMED", None), Route::Lifecycle);
    }

    #[test]
    fn generic_rule_needs_no_code_change() {
        assert_eq!(
            subject("MESSAGE_REACTION_ADD", None),
            "events.message.reaction.add"
        );
        assert_eq!(subject("MESSAGE_CREATE", None), "events.message.create");
        assert_eq!(subject("SOME_EVENT_2030", None), "events.some.event.2030");
        assert_eq!(subject("RATE_LIMITED", None), RATE_LIMITED);
    }

    #[test]
    fn generic_rule_never_builds_an_invalid_subject() {
        assert_eq!(subject("", None), "events.-");
        assert_eq!(subject("_A__B_", None), "events.-.a.-.b.-");
        assert_eq!(subject("A.B*>C D", None), "events.a-b--c-d");
    }

    #[test]
    fn shard_formula() {
        let guild = (5u64 << 22) | 123;
        assert_eq!(shard_for_guild(guild, 4), 1);
        assert_eq!(shard_for_guild(guild, 1), 0);
    }
}
