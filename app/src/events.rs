//! The reference event worker's handlers: guild and member lifecycle, recorded in a
//! [`Store`].
//!
//! Each handler is one small type over the store; a store error is a retry.

use shardline_proto::payload::{Guild, GuildDelete, MemberAdd, MemberRemove, MemberUpdate};
use shardline_proto::subject;

use crate::store::{Store, StoreError};
use shardline_worker::{Context, Handler, Handlers, Outcome};

fn outcome(result: Result<(), StoreError>, cx: &Context) -> Outcome {
    match result {
        Ok(()) => Outcome::Success,
        Err(error) => {
            tracing::warn!(subject = %cx.subject, %error, "store failed; retrying");
            Outcome::retry()
        }
    }
}

/// `events.guild.join`: the bot was added to a guild.
pub struct GuildJoin<S>(pub S);

impl<S: Store> Handler for GuildJoin<S> {
    type Payload = Guild;

    async fn handle(&self, guild: Guild, cx: &Context) -> Outcome {
        tracing::info!(guild = %guild.id, name = %guild.name, "joined guild");
        outcome(
            self.0.upsert_guild(guild.id.get(), &guild.name, true).await,
            cx,
        )
    }
}

/// `events.guild.available`: a guild the bot is in came (back) online.
pub struct GuildAvailable<S>(pub S);

impl<S: Store> Handler for GuildAvailable<S> {
    type Payload = Guild;

    async fn handle(&self, guild: Guild, cx: &Context) -> Outcome {
        tracing::debug!(guild = %guild.id, "guild available");
        outcome(
            self.0.upsert_guild(guild.id.get(), &guild.name, true).await,
            cx,
        )
    }
}

/// `events.guild.leave`: the bot left or was removed from a guild.
pub struct GuildLeave<S>(pub S);

impl<S: Store> Handler for GuildLeave<S> {
    type Payload = GuildDelete;

    async fn handle(&self, guild: GuildDelete, cx: &Context) -> Outcome {
        tracing::info!(guild = %guild.id, "left guild");
        outcome(self.0.remove_guild(guild.id.get()).await, cx)
    }
}

/// `events.guild.unavailable`: an outage on Discord's side, not a leave.
pub struct GuildUnavailable<S>(pub S);

impl<S: Store> Handler for GuildUnavailable<S> {
    type Payload = GuildDelete;

    async fn handle(&self, guild: GuildDelete, cx: &Context) -> Outcome {
        tracing::info!(guild = %guild.id, "guild unavailable");
        outcome(self.0.set_available(guild.id.get(), false).await, cx)
    }
}

/// `events.member.join`.
pub struct MemberJoin<S>(pub S);

impl<S: Store> Handler for MemberJoin<S> {
    type Payload = MemberAdd;

    async fn handle(&self, member: MemberAdd, cx: &Context) -> Outcome {
        let (guild, user) = (member.guild_id.get(), member.member.user.id.get());
        outcome(self.0.upsert_member(guild, user).await, cx)
    }
}

/// `events.member.leave`.
pub struct MemberLeave<S>(pub S);

impl<S: Store> Handler for MemberLeave<S> {
    type Payload = MemberRemove;

    async fn handle(&self, member: MemberRemove, cx: &Context) -> Outcome {
        let (guild, user) = (member.guild_id.get(), member.user.id.get());
        outcome(self.0.remove_member(guild, user).await, cx)
    }
}

/// `events.member.update`.
pub struct MemberUpdated<S>(pub S);

impl<S: Store> Handler for MemberUpdated<S> {
    type Payload = MemberUpdate;

    async fn handle(&self, update: MemberUpdate, cx: &Context) -> Outcome {
        let (guild, user) = (update.guild_id.get(), update.user.id.get());
        outcome(self.0.upsert_member(guild, user).await, cx)
    }
}

/// Every reference event handler on its subject, all writing to `store`.
pub fn handlers<S: Store + Clone>(store: S) -> Handlers {
    Handlers::new()
        .on(subject::GUILD_JOIN, GuildJoin(store.clone()))
        .on(subject::GUILD_AVAILABLE, GuildAvailable(store.clone()))
        .on(subject::GUILD_LEAVE, GuildLeave(store.clone()))
        .on(subject::GUILD_UNAVAILABLE, GuildUnavailable(store.clone()))
        .on(subject::MEMBER_JOIN, MemberJoin(store.clone()))
        .on(subject::MEMBER_LEAVE, MemberLeave(store.clone()))
        .on(subject::MEMBER_UPDATE, MemberUpdated(store))
}
