//! Where the event worker keeps what it learns: a small trait, so a team can plug in
//! their database, the PostgreSQL implementation ([`PgStore`](crate::PgStore)), and an
//! in-memory one for unit tests. Every implementation passes the same suite
//! ([`conformance`]).
//!
//! **Idempotent and ordered.** Every write carries the [`Version`] of the event that
//! caused it and changes nothing unless that event is newer than the one that last
//! wrote the row: a redelivered event (same version) changes nothing, and a stale
//! event delivered after a newer one (handlers run concurrently, retries come back
//! late) cannot overwrite it.

use std::future::Future;
use std::time::{SystemTime, UNIX_EPOCH};

use shardline_proto::headers;
use shardline_worker::Context;

mod memory;

pub mod conformance;
pub use memory::InMemoryStore;

/// A storage failure; the handler answers it with a retry.
pub type StoreError = Box<dyn std::error::Error + Send + Sync>;

/// Where an event stands in Discord's order.
///
/// Within one gateway session, Discord's sequence number (`Discord-Sequence`) is the
/// order. Across sessions (a reconnect, a second gateway during a rollout), it is the
/// time the gateway read the frame (`Shardline-Received-At`); clocks of two gateway
/// hosts may disagree by milliseconds, which only matters for two events about one
/// member within those milliseconds from two sessions. The stream sequence is not
/// used: a memory stream recreated after a broker restart starts again at 1.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Version {
    /// Unix nanoseconds when the gateway read the frame (when the worker handled it,
    /// for a message without the header).
    pub at: i64,
    /// The gateway session (from `Nats-Msg-Id`), when the message has a sequence.
    pub session: Option<String>,
    /// `Discord-Sequence` within that session.
    pub sequence: i64,
}

impl Version {
    /// The version of the message `cx` describes.
    pub fn of(cx: &Context) -> Self {
        let at = cx.received_at().unwrap_or_else(SystemTime::now);
        let sequence = cx
            .header(headers::SEQUENCE)
            .and_then(|s| s.parse::<i64>().ok());
        let session = sequence
            .and(cx.header(headers::MSG_ID))
            .and_then(headers::session_of)
            .map(str::to_owned);
        Self {
            at: nanos(at),
            session,
            sequence: sequence.unwrap_or(0),
        }
    }

    /// Whether an event at `self` may overwrite what an event at `stored` wrote.
    pub fn supersedes(&self, stored: &Version) -> bool {
        match (&self.session, &stored.session) {
            (Some(a), Some(b)) if a == b => self.sequence > stored.sequence,
            _ => self.at > stored.at,
        }
    }
}

/// Unix nanoseconds of `t` (0 before the epoch, saturating far in the future).
pub fn nanos(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// A guild as a `GUILD_CREATE` describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GuildInfo {
    /// Its id.
    pub id: u64,
    /// Its name.
    pub name: String,
    /// Its roles' ids (the `@everyone` role has the guild's id).
    pub roles: Vec<u64>,
}

/// What a store knows of one guild.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GuildState {
    /// Its name (empty while only member events have named the guild).
    pub name: String,
    /// Whether the bot is in the guild (false after a leave; the record stays).
    pub active: bool,
    /// Whether it is available (not in an outage).
    pub available: bool,
}

/// What a store knows of one member of a guild.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberState {
    /// Whether the user is in the guild now (false after a leave; the record stays).
    pub present: bool,
    /// The roles Discord last reported, sorted.
    pub roles: Vec<u64>,
    /// Whether the member ran `/verify`.
    pub verified: bool,
}

/// What the event worker records about guilds and their members.
///
/// Every write takes the [`Version`] of its event and must be idempotent and ordered
/// (see the module documentation); a member event for a guild never seen records
/// the guild too. [`conformance::run`] checks an implementation.
pub trait Store: Send + Sync + 'static {
    /// The bot is in `guild` (a join, or an availability after an outage or start).
    fn upsert_guild(
        &self,
        guild: &GuildInfo,
        version: &Version,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// `guild` went unavailable (an outage on Discord's side, not a leave).
    fn guild_unavailable(
        &self,
        guild: u64,
        version: &Version,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The bot left `guild`: marked inactive, its history kept.
    fn guild_left(
        &self,
        guild: u64,
        version: &Version,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// `user` joined `guild` holding `roles`.
    fn member_joined(
        &self,
        guild: u64,
        user: u64,
        roles: &[u64],
        version: &Version,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// `user` was updated in `guild` and now holds `roles` (an update proves
    /// membership).
    fn member_updated(
        &self,
        guild: u64,
        user: u64,
        roles: &[u64],
        version: &Version,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// `user` left `guild`: marked absent, its record kept.
    fn member_left(
        &self,
        guild: u64,
        user: u64,
        version: &Version,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// What the store knows of `guild`.
    fn guild(
        &self,
        guild: u64,
    ) -> impl Future<Output = Result<Option<GuildState>, StoreError>> + Send;

    /// What the store knows of `user` in `guild`.
    fn member(
        &self,
        guild: u64,
        user: u64,
    ) -> impl Future<Output = Result<Option<MemberState>, StoreError>> + Send;
}

/// `roles` sorted and without duplicates, as stores keep them.
pub fn normalized(roles: &[u64]) -> Vec<u64> {
    let mut roles = roles.to_vec();
    roles.sort_unstable();
    roles.dedup();
    roles
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(at: i64, session: Option<&str>, sequence: i64) -> Version {
        Version {
            at,
            session: session.map(str::to_owned),
            sequence,
        }
    }

    #[test]
    fn within_a_session_the_sequence_decides() {
        // The clock went back, the sequence did not.
        assert!(v(5, Some("a"), 11).supersedes(&v(9, Some("a"), 10)));
        assert!(!v(9, Some("a"), 10).supersedes(&v(5, Some("a"), 11)));
        assert!(
            !v(9, Some("a"), 10).supersedes(&v(9, Some("a"), 10)),
            "redelivery"
        );
    }

    #[test]
    fn across_sessions_the_read_time_decides() {
        assert!(v(10, Some("b"), 1).supersedes(&v(9, Some("a"), 500)));
        assert!(!v(8, Some("b"), 900).supersedes(&v(9, Some("a"), 5)));
        assert!(v(10, None, 0).supersedes(&v(9, Some("a"), 5)));
        assert!(!v(9, None, 0).supersedes(&v(9, None, 0)));
        assert!(v(1, None, 0).supersedes(&Version::default()));
    }
}
