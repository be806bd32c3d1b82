//! The event worker's handlers: guild and member lifecycle, recorded in a [`Store`],
//! and the first link of the eligibility pipeline.
//!
//! Each handler is one small type over the store; a store error is a retry. A member
//! join or update then asks for an eligibility check of that member: it publishes
//! `eligibility.check.<guild>.<user>` through its [`Context`], with a `Nats-Msg-Id`
//! derived from the event's own ([`Context::publish_follow_up`]), so however often
//! the event is redelivered, the check is stored once.

use shardline_proto::eligibility::{self, Check, CheckReason, tag};
use shardline_proto::payload::{Guild, GuildDelete, MemberAdd, MemberRemove, MemberUpdate};
use shardline_proto::subject;
use shardline_worker::{Context, Handler, Handlers, Outcome};
use twilight_model::id::Id;

use crate::metrics as m;
use crate::store::{GuildInfo, Store, StoreError, Version};

fn stored(result: Result<(), StoreError>, cx: &Context) -> Result<(), Outcome> {
    result.map_err(|error| {
        tracing::warn!(subject = %cx.subject, %error, "store failed; retrying");
        Outcome::retry()
    })
}

fn outcome(result: Result<(), StoreError>, cx: &Context) -> Outcome {
    stored(result, cx).err().unwrap_or(Outcome::Success)
}

/// Asks for an eligibility check of `user` in `guild`, once per causing message.
///
/// A failed publish is a retry of the whole event: its store write is idempotent, so
/// doing it again changes nothing.
pub async fn request_check(cx: &Context, guild: u64, user: u64, reason: CheckReason) -> Outcome {
    let check = Check {
        guild_id: Id::new(guild.max(1)),
        user_id: Id::new(user.max(1)),
        reason,
    };
    let payload = serde_json::to_vec(&check).expect("a check serializes");
    let subject = eligibility::check_subject(guild, user);
    match cx.publish_follow_up(subject, tag::CHECK, payload).await {
        Ok(()) => {
            m::check_requested(reason);
            Outcome::Success
        }
        Err(error) => {
            tracing::warn!(subject = %cx.subject, %error, "publishing the eligibility check failed; retrying");
            Outcome::retry()
        }
    }
}

fn guild_info(guild: &Guild) -> GuildInfo {
    GuildInfo {
        id: guild.id.get(),
        name: guild.name.clone(),
        roles: guild.roles.iter().map(|r| r.id.get()).collect(),
    }
}

/// `events.guild.join`: the bot was added to a guild.
pub struct GuildJoin<S>(pub S);

impl<S: Store> Handler for GuildJoin<S> {
    type Payload = Guild;

    async fn handle(&self, guild: Guild, cx: &Context) -> Outcome {
        tracing::info!(guild = %guild.id, name = %guild.name, "joined guild");
        outcome(
            self.0
                .upsert_guild(&guild_info(&guild), &Version::of(cx))
                .await,
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
            self.0
                .upsert_guild(&guild_info(&guild), &Version::of(cx))
                .await,
            cx,
        )
    }
}

/// `events.guild.leave`: the bot left or was removed from a guild. The record stays,
/// inactive.
pub struct GuildLeave<S>(pub S);

impl<S: Store> Handler for GuildLeave<S> {
    type Payload = GuildDelete;

    async fn handle(&self, guild: GuildDelete, cx: &Context) -> Outcome {
        tracing::info!(guild = %guild.id, "left guild");
        outcome(
            self.0.guild_left(guild.id.get(), &Version::of(cx)).await,
            cx,
        )
    }
}

/// `events.guild.unavailable`: an outage on Discord's side, not a leave.
pub struct GuildUnavailable<S>(pub S);

impl<S: Store> Handler for GuildUnavailable<S> {
    type Payload = GuildDelete;

    async fn handle(&self, guild: GuildDelete, cx: &Context) -> Outcome {
        tracing::info!(guild = %guild.id, "guild unavailable");
        outcome(
            self.0
                .guild_unavailable(guild.id.get(), &Version::of(cx))
                .await,
            cx,
        )
    }
}

/// `events.member.join`: records the member, then asks for a check.
pub struct MemberJoin<S>(pub S);

impl<S: Store> Handler for MemberJoin<S> {
    type Payload = MemberAdd;

    async fn handle(&self, member: MemberAdd, cx: &Context) -> Outcome {
        let (guild, user) = (member.guild_id.get(), member.member.user.id.get());
        let roles: Vec<u64> = member.member.roles.iter().map(|r| r.get()).collect();
        let version = Version::of(cx);
        let write = self.0.member_joined(guild, user, &roles, &version).await;
        if let Err(outcome) = stored(write, cx) {
            return outcome;
        }
        request_check(cx, guild, user, CheckReason::Join).await
    }
}

/// `events.member.leave`.
pub struct MemberLeave<S>(pub S);

impl<S: Store> Handler for MemberLeave<S> {
    type Payload = MemberRemove;

    async fn handle(&self, member: MemberRemove, cx: &Context) -> Outcome {
        let (guild, user) = (member.guild_id.get(), member.user.id.get());
        outcome(self.0.member_left(guild, user, &Version::of(cx)).await, cx)
    }
}

/// `events.member.update`: records the member's roles, then asks for a check.
pub struct MemberUpdated<S>(pub S);

impl<S: Store> Handler for MemberUpdated<S> {
    type Payload = MemberUpdate;

    async fn handle(&self, update: MemberUpdate, cx: &Context) -> Outcome {
        let (guild, user) = (update.guild_id.get(), update.user.id.get());
        let roles: Vec<u64> = update.roles.iter().map(|r| r.get()).collect();
        let version = Version::of(cx);
        let write = self.0.member_updated(guild, user, &roles, &version).await;
        if let Err(outcome) = stored(write, cx) {
            return outcome;
        }
        request_check(cx, guild, user, CheckReason::Update).await
    }
}

/// Every event handler on its subject, all writing to `store`.
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
