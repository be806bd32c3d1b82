//! The eligibility pipeline on the `ELIGIBILITY` stream: subjects and payloads.
//!
//! A member event (or `/verify`, `/resync`) asks for a **check** of one member; the
//! eligibility worker evaluates the guild's rules and, when the roles the member
//! should hold differ from what the bot last applied, asks for a **sync**; the sync
//! worker applies the difference through Discord's member-role endpoints.
//!
//! Subjects carry the guild and the user (`eligibility.check.<guild>.<user>`), so a
//! consumer may filter by guild and a stream can be purged per member; payloads say
//! the same again plus why, so a handler needs no subject parsing.

use serde::{Deserialize, Serialize};
use twilight_model::id::Id;
use twilight_model::id::marker::{GuildMarker, UserMarker};

/// Prefix of every check subject.
pub const CHECK_PREFIX: &str = "eligibility.check";
/// Prefix of every sync subject.
pub const SYNC_PREFIX: &str = "eligibility.sync";
/// Every check: the eligibility worker's filter.
pub const CHECKS: &str = "eligibility.check.>";
/// Every sync: the sync worker's filter.
pub const SYNCS: &str = "eligibility.sync.>";

/// `eligibility.check.<guild>.<user>`: evaluate `user`'s eligibility in `guild`.
pub fn check_subject(guild: u64, user: u64) -> String {
    format!("{CHECK_PREFIX}.{guild}.{user}")
}

/// `eligibility.sync.<guild>.<user>`: bring `user`'s managed roles in `guild` to what
/// the database says they should be.
pub fn sync_subject(guild: u64, user: u64) -> String {
    format!("{SYNC_PREFIX}.{guild}.{user}")
}

/// Tags of the `Nats-Msg-Id` of a message published because of another (see
/// `shardline_worker::Context::follow_up_id`): one per kind of follow-up, so one cause
/// may lead to several different messages, and the same cause always to the same id.
pub mod tag {
    /// A check caused by a member event.
    pub const CHECK: &str = "check";
    /// A sync caused by a check.
    pub const SYNC: &str = "sync";
}

/// Why a check was asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckReason {
    /// The member joined.
    Join,
    /// The member was updated (roles, nickname, ...).
    Update,
    /// The member ran `/verify`.
    Verify,
    /// A guild manager ran `/resync`: compare with the roles Discord last reported,
    /// not with what the bot last applied, so roles changed by hand are put right.
    Resync,
}

/// Payload of `eligibility.check.<guild>.<user>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// The guild.
    pub guild_id: Id<GuildMarker>,
    /// The member.
    pub user_id: Id<UserMarker>,
    /// Why.
    pub reason: CheckReason,
}

/// Payload of `eligibility.sync.<guild>.<user>`. It carries no roles: the sync worker
/// reads what the member should hold when it runs, so a sync delivered late or twice
/// never applies an outdated decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sync {
    /// The guild.
    pub guild_id: Id<GuildMarker>,
    /// The member.
    pub user_id: Id<UserMarker>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::{ELIGIBILITY, subject_matches};

    #[test]
    fn subjects_are_in_the_stream_and_their_filters() {
        let check = check_subject(1, 2);
        let sync = sync_subject(1, 2);
        assert_eq!(check, "eligibility.check.1.2");
        assert_eq!(sync, "eligibility.sync.1.2");
        assert!(subject_matches(CHECKS, &check) && !subject_matches(CHECKS, &sync));
        assert!(subject_matches(SYNCS, &sync) && !subject_matches(SYNCS, &check));
        for s in [&check, &sync] {
            assert!(ELIGIBILITY.subjects.iter().any(|p| subject_matches(p, s)));
        }
    }

    #[test]
    fn payloads_carry_ids_as_strings() {
        let check = Check {
            guild_id: Id::new(1),
            user_id: Id::new(2),
            reason: CheckReason::Resync,
        };
        let json = serde_json::to_string(&check).unwrap();
        assert_eq!(json, r#"{"guild_id":"1","user_id":"2","reason":"resync"}"#);
        assert_eq!(serde_json::from_str::<Check>(&json).unwrap(), check);
    }
}
