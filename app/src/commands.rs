//! The application's slash commands, feeding the same eligibility pipeline as the
//! member events: `/verify` marks the member verified and asks for a check;
//! `/resync` (guild managers) asks for a check of every member the database knows
//! in the guild, at a bounded rate.

use std::time::Duration;

use shardline_proto::eligibility::{self, Check, CheckReason};
use shardline_proto::payload::Interaction;
use shardline_worker::Context;
use shardline_worker::commands::{Command, CommandError, Commands, Reply};
use twilight_model::guild::Permissions;
use twilight_model::id::Id;

use crate::PgStore;
use crate::events::request_check;
use crate::metrics as m;

/// `/verify`: marks the member verified, then asks for a check (the
/// `Nats-Msg-Id` derives from the interaction's message, so a redelivered
/// interaction asks once).
pub struct Verify(pub PgStore);

impl Command for Verify {
    async fn run(&self, interaction: &Interaction, cx: &Context) -> Result<Reply, CommandError> {
        let (Some(guild), Some(member)) = (interaction.guild_id, interaction.member.as_ref())
        else {
            return Ok(Reply::Message("Run /verify in a server.".to_owned()));
        };
        let Some(user) = member.user.as_ref().map(|u| u.id) else {
            return Err(CommandError::Failed(
                "the interaction names no user".to_owned(),
            ));
        };
        let roles: Vec<u64> = member.roles.iter().map(|r| r.get()).collect();
        if let Err(error) = self.0.verify(guild.get(), user.get(), &roles).await {
            tracing::warn!(%guild, %user, %error, "recording /verify failed; retrying");
            return Err(CommandError::Retry);
        }
        match request_check(cx, guild.get(), user.get(), CheckReason::Verify).await {
            shardline_worker::Outcome::Success => Ok(Reply::Message(
                "You are verified. Your roles will be updated in a moment.".to_owned(),
            )),
            _ => Err(CommandError::Retry),
        }
    }
}

/// `/resync`: asks for a check of every member the database knows present in the
/// guild, comparing with the roles Discord reports (so roles changed by hand are put
/// right), at most `per_second` a second so a big guild does not flood the pipeline.
/// For members with Manage Server (or Administrator) only.
pub struct Resync {
    store: PgStore,
    per_second: u32,
}

impl Resync {
    /// `/resync` on `store`, publishing at most `per_second` checks a second.
    pub fn new(store: PgStore, per_second: u32) -> Self {
        Self {
            store,
            per_second: per_second.max(1),
        }
    }
}

/// Publishes no more than this many checks before waiting for their acks.
const IN_FLIGHT: usize = 256;

impl Command for Resync {
    async fn run(&self, interaction: &Interaction, cx: &Context) -> Result<Reply, CommandError> {
        let (Some(guild), Some(member)) = (interaction.guild_id, interaction.member.as_ref())
        else {
            return Ok(Reply::Message("Run /resync in a server.".to_owned()));
        };
        let allowed = member
            .permissions
            .is_some_and(|p| p.intersects(Permissions::MANAGE_GUILD | Permissions::ADMINISTRATOR));
        if !allowed {
            return Ok(Reply::Message(
                "Only members with Manage Server may run /resync.".to_owned(),
            ));
        }
        let users = match self.store.present_members(guild.get()).await {
            Ok(users) => users,
            Err(error) => {
                tracing::warn!(%guild, %error, "listing members for /resync failed; retrying");
                return Err(CommandError::Retry);
            }
        };
        let js = cx.jetstream();
        let mut pacer = tokio::time::interval(Duration::from_secs(1) / self.per_second);
        pacer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut acks = Vec::with_capacity(IN_FLIGHT);
        for &user in &users {
            pacer.tick().await;
            let check = Check {
                guild_id: guild,
                user_id: Id::new(user),
                reason: CheckReason::Resync,
            };
            let mut headers = async_nats::HeaderMap::new();
            // One id per member and interaction: a redelivered /resync asks again
            // only for members whose check is older than the duplicate window.
            let id = cx.follow_up_id(&format!("resync:{user}"));
            headers.insert(shardline_proto::headers::MSG_ID, id.as_str());
            let payload = serde_json::to_vec(&check).expect("a check serializes");
            let subject = eligibility::check_subject(guild.get(), user);
            match js
                .publish_with_headers(subject, headers, payload.into())
                .await
            {
                Ok(ack) => acks.push(ack),
                Err(_) => return Err(CommandError::Retry),
            }
            if acks.len() == IN_FLIGHT {
                for ack in acks.drain(..) {
                    ack.await.map_err(|_| CommandError::Retry)?;
                }
            }
        }
        for ack in acks {
            ack.await.map_err(|_| CommandError::Retry)?;
        }
        m::checks_requested(CheckReason::Resync, users.len() as u64);
        tracing::info!(%guild, members = users.len(), "resync asked for");
        Ok(Reply::Message(format!(
            "Checking the roles of {} members.",
            users.len()
        )))
    }
}

/// The command worker's table: `/ping` (the runtime's reference table) plus the
/// application's commands.
pub fn table(store: PgStore, resync_per_second: u32) -> Commands {
    shardline_worker::commands::reference()
        .command("verify", Verify(store.clone()))
        .command("resync", Resync::new(store, resync_per_second))
}
