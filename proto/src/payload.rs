//! The payload type of each subject.
//!
//! A message's payload is the dispatch's `d` value byte for byte, so it
//! deserializes as the Discord object. These are the twilight-model types for the
//! subjects Shardline names; any other `events.*` subject carries the Discord object
//! of its event.

pub use twilight_model::application::interaction::Interaction;
pub use twilight_model::gateway::payload::incoming::{
    GuildDelete, MemberAdd, MemberRemove, MemberUpdate,
};
pub use twilight_model::guild::Guild;

/// Payload of `commands.interaction`.
pub type InteractionPayload = Interaction;
/// Payload of `events.guild.join` and `events.guild.available`.
pub type GuildCreatePayload = Guild;
/// Payload of `events.guild.leave` and `events.guild.unavailable`.
pub type GuildDeletePayload = GuildDelete;
/// Payload of `events.member.join`.
pub type MemberJoinPayload = MemberAdd;
/// Payload of `events.member.leave`.
pub type MemberLeavePayload = MemberRemove;
/// Payload of `events.member.update`.
pub type MemberUpdatePayload = MemberUpdate;
