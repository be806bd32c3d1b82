//! The eligibility worker's handler: evaluates the guild's rules for one member,
//! records the roles the member should hold and its tier, and asks for a role sync
//! when that differs from what the bot last applied.
//!
//! A check reads everything it decides on when it runs, under the member's row lock
//! (`FOR UPDATE`): checks are not ordered among themselves, so a late check only
//! evaluates the current facts again, and two checks of one member never interleave
//! their read and write. It asks for a sync whenever the desired roles differ from
//! what the bot last applied, and also whenever they changed since the last check: a
//! sync for the earlier decision may still be queued, and the sync worker reads the
//! latest decision when it runs, so the last sync always applies the last decision.

use std::collections::BTreeSet;
use std::time::SystemTime;

use shardline_proto::eligibility::{self, Check, CheckReason, Sync, tag};
use shardline_worker::{Context, Handler, Outcome};

use crate::db::{Db, DbError, discord_ids, sql_id, sql_ids};
use crate::metrics as m;
use crate::rules::{self, Facts};

/// `eligibility.check.<guild>.<user>`.
#[derive(Clone, Debug)]
pub struct EligibilityCheck {
    db: Db,
}

/// What a check decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The member holds what the rules say (as far as the bot knows).
    InSync,
    /// The member's roles must change: a sync is asked for.
    Sync,
    /// Not a member of an active guild: nothing to do.
    NotMember,
}

impl Decision {
    fn label(self) -> &'static str {
        match self {
            Self::InSync => "in_sync",
            Self::Sync => "sync_requested",
            Self::NotMember => "not_member",
        }
    }
}

/// The lock statement: the member's row, with its guild's state.
const MEMBER: &str = "SELECT m.present AND g.active, m.roles, m.verified, m.desired_roles, m.applied_roles \
     FROM members m JOIN guilds g ON g.guild_id = m.guild_id \
     WHERE m.guild_id = $1 AND m.user_id = $2 FOR UPDATE OF m";

const RECORD: &str = "UPDATE members SET desired_roles = $3, tier = $4, checked_at = now(), \
     applied_roles = CASE WHEN $5 THEN NULL ELSE applied_roles END \
     WHERE guild_id = $1 AND user_id = $2";

impl EligibilityCheck {
    /// A handler on `db`.
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Evaluates `user` in `guild` and records the result.
    ///
    /// # Errors
    ///
    /// The database is unavailable.
    pub async fn evaluate(
        &self,
        guild: u64,
        user: u64,
        reason: CheckReason,
    ) -> Result<Decision, DbError> {
        let mut client = self.db.client().await?;
        let tx = client.transaction().await?;
        let statement = tx.prepare_cached(MEMBER).await?;
        let Some(row) = tx
            .query_opt(&statement, &[&sql_id(guild), &sql_id(user)])
            .await?
        else {
            return Ok(Decision::NotMember);
        };
        if !row.get::<_, bool>(0) {
            return Ok(Decision::NotMember);
        }
        let roles: Vec<u64> = discord_ids(&row.get::<_, Vec<i64>>(1));
        let facts = Facts {
            user,
            verified: row.get(2),
            roles: roles.clone(),
        };
        let previous: Option<Vec<i64>> = row.get(3);
        // A resync compares with what Discord reports, not with what the bot applied
        // (roles changed by hand are put right); so does a member never synced.
        let applied: Option<Vec<i64>> = match reason {
            CheckReason::Resync => None,
            _ => row.get(4),
        };
        let rules = rules::rules_of(&tx, guild).await?;
        let managed: BTreeSet<u64> = rules.iter().map(|r| r.role).collect();
        let eligibility = rules::evaluate(&rules, &facts, SystemTime::now());
        let baseline: BTreeSet<u64> = applied
            .map_or(roles, |a| discord_ids(&a))
            .into_iter()
            .filter(|r| managed.contains(r))
            .collect();
        let desired: Vec<u64> = eligibility.roles.iter().copied().collect();
        let desired_sql = sql_ids(&desired);
        let changed = previous.is_some_and(|p| p != desired_sql);
        let record = tx.prepare_cached(RECORD).await?;
        let tier = i16::try_from(eligibility.tier).unwrap_or(i16::MAX);
        let resync = reason == CheckReason::Resync;
        tx.execute(
            &record,
            &[&sql_id(guild), &sql_id(user), &desired_sql, &tier, &resync],
        )
        .await?;
        tx.commit().await?;
        Ok(if eligibility.roles != baseline || changed {
            Decision::Sync
        } else {
            Decision::InSync
        })
    }
}

impl Handler for EligibilityCheck {
    type Payload = Check;

    async fn handle(&self, check: Check, cx: &Context) -> Outcome {
        let (guild, user) = (check.guild_id.get(), check.user_id.get());
        let decision = match self.evaluate(guild, user, check.reason).await {
            Ok(decision) => decision,
            Err(error) => {
                tracing::warn!(%guild, %user, %error, "eligibility check failed; retrying");
                return Outcome::retry();
            }
        };
        if decision == Decision::Sync {
            let sync = Sync {
                guild_id: check.guild_id,
                user_id: check.user_id,
            };
            let payload = serde_json::to_vec(&sync).expect("a sync serializes");
            let subject = eligibility::sync_subject(guild, user);
            if let Err(error) = cx.publish_follow_up(subject, tag::SYNC, payload).await {
                // The decision is recorded; the redelivery decides the same again (the
                // desired roles still differ from the applied ones) and publishes.
                tracing::warn!(%guild, %user, %error, "publishing the sync failed; retrying");
                return Outcome::retry();
            }
        }
        m::check_evaluated(decision.label());
        Outcome::Success
    }
}

/// Rules that can no longer be applied (their role was deleted, or Discord refused
/// it to the bot), logged once at start so an operator sees them before any member
/// does. Rules that could never be evaluated cannot exist: the schema refuses them.
///
/// # Errors
///
/// The database is unavailable.
pub async fn report_unusable_rules(db: &Db) -> Result<u64, DbError> {
    let client = db.client().await?;
    let rows = client
        .query(
            "SELECT r.rule_id, r.guild_id, r.role_id, gr.present, gr.assignable FROM rules r \
             JOIN guild_roles gr ON gr.guild_id = r.guild_id AND gr.role_id = r.role_id \
             WHERE NOT (gr.present AND gr.assignable)",
            &[],
        )
        .await?;
    for row in &rows {
        let why = if row.get::<_, bool>(3) {
            "Discord refused the role to the bot (above its highest role, or no Manage Roles)"
        } else {
            "the role no longer exists in the guild"
        };
        tracing::warn!(
            rule = row.get::<_, i64>(0),
            guild = crate::db::discord_id(row.get(1)),
            role = crate::db::discord_id(row.get(2)),
            why,
            "rule skipped until the guild's next GUILD_CREATE"
        );
    }
    Ok(rows.len() as u64)
}
