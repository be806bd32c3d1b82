//! The reference event worker's handlers: guild and member lifecycle.
//!
//! Each decodes its payload with twilight-model and logs one structured line.

use shardline_proto::payload::{Guild, GuildDelete, MemberAdd, MemberRemove, MemberUpdate};
use shardline_proto::subject;

use crate::{Handler, Handlers, Meta, Outcome};

/// `events.guild.join`: the bot was added to a guild.
pub struct GuildJoin;

impl Handler for GuildJoin {
    type Payload = Guild;

    async fn handle(&self, guild: Guild, _meta: &Meta) -> Outcome {
        tracing::info!(guild = %guild.id, name = %guild.name, members = ?guild.member_count, "joined guild");
        Outcome::Success
    }
}

/// `events.guild.leave`: the bot left or was removed from a guild.
pub struct GuildLeave;

impl Handler for GuildLeave {
    type Payload = GuildDelete;

    async fn handle(&self, guild: GuildDelete, _meta: &Meta) -> Outcome {
        tracing::info!(guild = %guild.id, "left guild");
        Outcome::Success
    }
}

/// `events.member.join`.
pub struct MemberJoin;

impl Handler for MemberJoin {
    type Payload = MemberAdd;

    async fn handle(&self, member: MemberAdd, _meta: &Meta) -> Outcome {
        tracing::info!(guild = %member.guild_id, user = %member.member.user.id, "member joined");
        Outcome::Success
    }
}

/// `events.member.leave`.
pub struct MemberLeave;

impl Handler for MemberLeave {
    type Payload = MemberRemove;

    async fn handle(&self, member: MemberRemove, _meta: &Meta) -> Outcome {
        tracing::info!(guild = %member.guild_id, user = %member.user.id, "member left");
        Outcome::Success
    }
}

/// `events.member.update`.
pub struct MemberUpdated;

impl Handler for MemberUpdated {
    type Payload = MemberUpdate;

    async fn handle(&self, update: MemberUpdate, _meta: &Meta) -> Outcome {
        tracing::info!(guild = %update.guild_id, user = %update.user.id, roles = update.roles.len(), "member updated");
        Outcome::Success
    }
}

/// Every reference event handler, registered on its subject.
pub fn handlers() -> Handlers {
    Handlers::new()
        .on(subject::GUILD_JOIN, GuildJoin)
        .on(subject::GUILD_LEAVE, GuildLeave)
        .on(subject::MEMBER_JOIN, MemberJoin)
        .on(subject::MEMBER_LEAVE, MemberLeave)
        .on(subject::MEMBER_UPDATE, MemberUpdated)
}
