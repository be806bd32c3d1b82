//! The in-memory [`Store`], for unit tests and examples: guilds and members in a map,
//! shared by clones, with the same ordering rules as the database.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{GuildInfo, GuildState, MemberState, Store, StoreError, Version, normalized};

/// What [`InMemoryStore`] knows of one guild.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GuildRecord {
    /// The guild's state.
    pub state: GuildState,
    /// Its roles, from its last `GUILD_CREATE`.
    pub roles: Vec<u64>,
    /// Members present now.
    pub members: HashSet<u64>,
    version: Version,
}

#[derive(Debug, Default)]
struct Members {
    state: MemberState,
    version: Version,
}

#[derive(Debug, Default)]
struct Inner {
    guilds: HashMap<u64, GuildRecord>,
    members: HashMap<(u64, u64), Members>,
}

/// A [`Store`] in memory, shared by clones.
#[derive(Clone, Debug, Default)]
pub struct InMemoryStore {
    inner: Arc<Mutex<Inner>>,
}

impl InMemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The guild's record.
    pub fn guild_record(&self, guild: u64) -> Option<GuildRecord> {
        self.lock().guilds.get(&guild).cloned()
    }

    /// How many guilds the store knows, active or not.
    pub fn guild_count(&self) -> usize {
        self.lock().guilds.len()
    }

    /// How many members are present in `guild`.
    pub fn member_count(&self, guild: u64) -> usize {
        self.lock()
            .guilds
            .get(&guild)
            .map_or(0, |g| g.members.len())
    }

    /// Records a member event: creates the guild if never seen, then applies `change`
    /// to the member if `version` supersedes its last.
    fn member_event(
        &self,
        guild: u64,
        user: u64,
        version: &Version,
        change: impl FnOnce(&mut MemberState),
    ) {
        let mut inner = self.lock();
        let Inner { guilds, members } = &mut *inner;
        let record = guilds.entry(guild).or_insert_with(|| GuildRecord {
            state: GuildState {
                name: String::new(),
                active: true,
                available: true,
            },
            ..GuildRecord::default()
        });
        let member = members.entry((guild, user)).or_default();
        if version.supersedes(&member.version) {
            change(&mut member.state);
            member.version = version.clone();
            if member.state.present {
                record.members.insert(user);
            } else {
                record.members.remove(&user);
            }
        }
    }

    fn guild_event(&self, guild: u64, version: &Version, change: impl FnOnce(&mut GuildRecord)) {
        let mut inner = self.lock();
        let record = inner.guilds.entry(guild).or_default();
        if version.supersedes(&record.version) {
            change(record);
            record.version = version.clone();
        }
    }
}

impl Store for InMemoryStore {
    async fn upsert_guild(&self, guild: &GuildInfo, version: &Version) -> Result<(), StoreError> {
        self.guild_event(guild.id, version, |record| {
            guild.name.clone_into(&mut record.state.name);
            record.state.active = true;
            record.state.available = true;
            record.roles = normalized(&guild.roles);
        });
        Ok(())
    }

    async fn guild_unavailable(&self, guild: u64, version: &Version) -> Result<(), StoreError> {
        self.guild_event(guild, version, |record| {
            record.state.active = true;
            record.state.available = false;
        });
        Ok(())
    }

    async fn guild_left(&self, guild: u64, version: &Version) -> Result<(), StoreError> {
        self.guild_event(guild, version, |record| record.state.active = false);
        Ok(())
    }

    async fn member_joined(
        &self,
        guild: u64,
        user: u64,
        roles: &[u64],
        version: &Version,
    ) -> Result<(), StoreError> {
        self.member_event(guild, user, version, |m| {
            m.present = true;
            m.roles = normalized(roles);
        });
        Ok(())
    }

    async fn member_updated(
        &self,
        guild: u64,
        user: u64,
        roles: &[u64],
        version: &Version,
    ) -> Result<(), StoreError> {
        self.member_joined(guild, user, roles, version).await
    }

    async fn member_left(
        &self,
        guild: u64,
        user: u64,
        version: &Version,
    ) -> Result<(), StoreError> {
        self.member_event(guild, user, version, |m| {
            m.present = false;
            m.roles.clear();
        });
        Ok(())
    }

    async fn guild(&self, guild: u64) -> Result<Option<GuildState>, StoreError> {
        Ok(self.lock().guilds.get(&guild).map(|g| g.state.clone()))
    }

    async fn member(&self, guild: u64, user: u64) -> Result<Option<MemberState>, StoreError> {
        Ok(self
            .lock()
            .members
            .get(&(guild, user))
            .map(|m| m.state.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passes_the_store_suite() {
        super::super::conformance::run(&InMemoryStore::new()).await;
    }
}
