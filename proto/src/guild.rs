//! Telling a real guild join from a lazy load or an outage recovery.

use std::collections::HashSet;

/// What a `GUILD_CREATE` or `GUILD_DELETE` means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuildTransition {
    /// The bot joined a guild it was not in.
    Join,
    /// A guild the bot is in became available (lazy load after READY, or recovery).
    Available,
    /// The bot left or was removed.
    Leave,
    /// The guild became unavailable (outage), the bot is still in it.
    Unavailable,
}

/// Per-shard memory of guilds that are known but not yet available.
///
/// READY lists every guild of the shard as unavailable; each then arrives as a
/// `GUILD_CREATE` that is *not* a join. A `GUILD_DELETE` with `unavailable: true`
/// marks an outage; the `GUILD_CREATE` that ends it is not a join either. Anything
/// else is a real join.
///
/// Reset it on READY (a new session); keep it across RESUMED.
#[derive(Debug, Default)]
pub struct GuildTracker {
    pending: HashSet<u64>,
}

impl GuildTracker {
    /// Creates an empty tracker.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new session's READY: these guilds are expected as lazy loads.
    pub fn ready(&mut self, guilds: impl IntoIterator<Item = u64>) {
        self.pending.clear();
        self.pending.extend(guilds);
    }

    /// Classifies a `GUILD_CREATE`.
    pub fn guild_create(&mut self, guild_id: u64) -> GuildTransition {
        if self.pending.remove(&guild_id) {
            GuildTransition::Available
        } else {
            GuildTransition::Join
        }
    }

    /// Classifies a `GUILD_DELETE` from its `unavailable` flag.
    pub fn guild_delete(&mut self, guild_id: u64, unavailable: bool) -> GuildTransition {
        if unavailable {
            self.pending.insert(guild_id);
            GuildTransition::Unavailable
        } else {
            self.pending.remove(&guild_id);
            GuildTransition::Leave
        }
    }

    /// Number of guilds known but not yet available.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use GuildTransition::*;

    #[test]
    fn lazy_load_is_not_a_join() {
        let mut tracker = GuildTracker::new();
        tracker.ready([1, 2]);
        assert_eq!(tracker.guild_create(1), Available);
        assert_eq!(tracker.guild_create(3), Join);
        // A second GUILD_CREATE for the same guild without an outage is a re-join.
        assert_eq!(tracker.guild_create(1), Join);
        assert_eq!(tracker.pending(), 1);
    }

    #[test]
    fn outage_recovery_is_not_a_join() {
        let mut tracker = GuildTracker::new();
        tracker.ready([]);
        assert_eq!(tracker.guild_delete(7, true), Unavailable);
        assert_eq!(tracker.guild_create(7), Available);
        assert_eq!(tracker.guild_delete(7, false), Leave);
        assert_eq!(tracker.guild_create(7), Join);
    }

    #[test]
    fn ready_resets() {
        let mut tracker = GuildTracker::new();
        tracker.ready([1]);
        tracker.ready([2]);
        assert_eq!(tracker.guild_create(1), Join);
        assert_eq!(tracker.guild_create(2), Available);
    }
}
