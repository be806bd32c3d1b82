//! Where the reference event worker keeps what it learns: a small trait, so a team can
//! plug in their database, and an in-memory default that tests can read.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

/// A storage failure; the handler answers it with a retry.
pub type StoreError = Box<dyn std::error::Error + Send + Sync>;

/// What the event worker records about guilds and their members.
///
/// Every method must be idempotent: a redelivered event calls it again.
pub trait Store: Send + Sync + 'static {
    /// The bot is in `guild` (a join or an availability), named `name`.
    fn upsert_guild(
        &self,
        guild: u64,
        name: &str,
        available: bool,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// `guild` went unavailable (an outage) or came back.
    fn set_available(
        &self,
        guild: u64,
        available: bool,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The bot left `guild`.
    fn remove_guild(&self, guild: u64) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// `user` joined `guild`, or was updated there (an update proves membership).
    fn upsert_member(
        &self,
        guild: u64,
        user: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// `user` left `guild`.
    fn remove_member(
        &self,
        guild: u64,
        user: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// What [`InMemoryStore`] knows of one guild.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GuildRecord {
    /// Its name.
    pub name: String,
    /// Whether it is available (not in an outage).
    pub available: bool,
    /// Members seen joining or updated, minus those seen leaving.
    pub members: HashSet<u64>,
}

/// The default [`Store`]: guilds and members in memory, shared by clones.
#[derive(Clone, Debug, Default)]
pub struct InMemoryStore {
    guilds: Arc<Mutex<HashMap<u64, GuildRecord>>>,
}

impl InMemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, GuildRecord>> {
        self.guilds.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The guild's record.
    pub fn guild(&self, guild: u64) -> Option<GuildRecord> {
        self.lock().get(&guild).cloned()
    }

    /// How many guilds the bot is in.
    pub fn guild_count(&self) -> usize {
        self.lock().len()
    }

    /// How many of them are available.
    pub fn available_count(&self) -> usize {
        self.lock().values().filter(|g| g.available).count()
    }

    /// How many members are known in `guild`.
    pub fn member_count(&self, guild: u64) -> usize {
        self.lock().get(&guild).map_or(0, |g| g.members.len())
    }
}

impl Store for InMemoryStore {
    async fn upsert_guild(
        &self,
        guild: u64,
        name: &str,
        available: bool,
    ) -> Result<(), StoreError> {
        let mut guilds = self.lock();
        let record = guilds.entry(guild).or_default();
        name.clone_into(&mut record.name);
        record.available = available;
        Ok(())
    }

    async fn set_available(&self, guild: u64, available: bool) -> Result<(), StoreError> {
        self.lock().entry(guild).or_default().available = available;
        Ok(())
    }

    async fn remove_guild(&self, guild: u64) -> Result<(), StoreError> {
        self.lock().remove(&guild);
        Ok(())
    }

    async fn upsert_member(&self, guild: u64, user: u64) -> Result<(), StoreError> {
        self.lock().entry(guild).or_default().members.insert(user);
        Ok(())
    }

    async fn remove_member(&self, guild: u64, user: u64) -> Result<(), StoreError> {
        if let Some(record) = self.lock().get_mut(&guild) {
            record.members.remove(&user);
        }
        Ok(())
    }
}
