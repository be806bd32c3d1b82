//! Eligibility rules: data in the database, one row per guild and role, each
//! mapping a condition to the role it grants. Evaluation is a pure function of the
//! rules and what is known of the member.
//!
//! A rule that could not be evaluated never reaches here: the schema refuses it when
//! it is written (see `app/migrations`), and [`RuleError`] names why for a write
//! through [`add_rule`].

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::db::{Db, DbError, DbErrorKind, sql_id};

/// Discord's epoch (2015-01-01T00:00:00Z) in Unix milliseconds: snowflakes count from it.
pub const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;

/// When the account (or anything else) with this snowflake was created.
pub fn created_at(snowflake: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis((snowflake >> 22) + DISCORD_EPOCH_MS)
}

/// What a rule asks of a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Condition {
    /// The user's account is at least this many days old (from the user id).
    AccountAge {
        /// Days.
        days: u32,
    },
    /// The member ran `/verify`.
    Verified,
    /// The member holds this role (as Discord last reported).
    HoldsRole(u64),
}

impl Condition {
    /// The `kind` column's value.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::AccountAge { .. } => "account_age",
            Self::Verified => "verified",
            Self::HoldsRole(_) => "holds_role",
        }
    }
}

/// A rule: members meeting `condition` get `role`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    /// The role the rule grants (a role the bot manages).
    pub role: u64,
    /// What the member must meet.
    pub condition: Condition,
}

/// What the rules look at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Facts {
    /// The user's id (its snowflake dates the account).
    pub user: u64,
    /// The member ran `/verify`.
    pub verified: bool,
    /// Roles as Discord last reported.
    pub roles: Vec<u64>,
}

/// What the rules give a member.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Eligibility {
    /// The roles the member should hold, of those the rules manage.
    pub roles: BTreeSet<u64>,
    /// How many rules the member meets.
    pub tier: u16,
}

/// Evaluates `rules` for a member at `now`.
pub fn evaluate(rules: &[Rule], facts: &Facts, now: SystemTime) -> Eligibility {
    let age = now
        .duration_since(created_at(facts.user))
        .unwrap_or_default();
    let mut out = Eligibility::default();
    for rule in rules {
        let met = match rule.condition {
            Condition::AccountAge { days } => age >= Duration::from_secs(u64::from(days) * 86_400),
            Condition::Verified => facts.verified,
            Condition::HoldsRole(role) => facts.roles.contains(&role),
        };
        if met {
            out.roles.insert(rule.role);
            out.tier = out.tier.saturating_add(1);
        }
    }
    out
}

/// Why a rule was refused.
#[derive(Debug, thiserror::Error)]
#[error("rule refused ({kind:?}): {message}")]
pub struct RuleError {
    kind: RuleErrorKind,
    message: String,
}

/// What kind of refusal a [`RuleError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleErrorKind {
    /// The guild is not in the database (the bot never saw it).
    UnknownGuild,
    /// The role granted or required is not one of the guild's roles.
    UnknownRole,
    /// The role is `@everyone`, which every member holds and nobody can be given.
    Everyone,
    /// A field is out of range (a negative age written by hand).
    Invalid,
    /// The database could not be reached.
    Unavailable,
}

impl RuleError {
    /// The kind, for callers to branch on.
    pub fn kind(&self) -> RuleErrorKind {
        self.kind
    }
}

impl From<DbError> for RuleError {
    fn from(e: DbError) -> Self {
        let kind = match e.constraint() {
            Some("rules_role_is_a_guild_role" | "rules_required_role_is_a_guild_role") => {
                RuleErrorKind::UnknownRole
            }
            Some("rules_guild_id_fkey") => RuleErrorKind::UnknownGuild,
            Some("rules_role_not_everyone") => RuleErrorKind::Everyone,
            Some(_) => RuleErrorKind::Invalid,
            None if e.kind() == DbErrorKind::Unavailable => RuleErrorKind::Unavailable,
            None => RuleErrorKind::Invalid,
        };
        let message = match kind {
            RuleErrorKind::UnknownRole => {
                "the role is not one of the guild's roles (as its last GUILD_CREATE listed them)"
                    .to_owned()
            }
            RuleErrorKind::UnknownGuild => "the bot has never seen the guild".to_owned(),
            RuleErrorKind::Everyone => "@everyone cannot be granted".to_owned(),
            _ => e.to_string(),
        };
        Self { kind, message }
    }
}

/// Adds a rule for `guild`; returns its id.
///
/// # Errors
///
/// The database refuses it ([`RuleErrorKind`] says why) or is unavailable.
pub async fn add_rule(db: &Db, guild: u64, rule: Rule) -> Result<i64, RuleError> {
    let (age, required) = match rule.condition {
        Condition::AccountAge { days } => (Some(i32::try_from(days).unwrap_or(i32::MAX)), None),
        Condition::Verified => (None, None),
        Condition::HoldsRole(role) => (None, Some(sql_id(role))),
    };
    let client = db.client().await?;
    let row = client
        .query_one(
            "INSERT INTO rules (guild_id, role_id, kind, min_account_age_days, required_role_id) \
             VALUES ($1, $2, $3, $4, $5) RETURNING rule_id",
            &[
                &sql_id(guild),
                &sql_id(rule.role),
                &rule.condition.kind(),
                &age,
                &required,
            ],
        )
        .await
        .map_err(DbError::from)?;
    Ok(row.get(0))
}

/// The rules of `guild` the bot can apply now (their role is still one of the
/// guild's and Discord has not refused it), in the order they were added.
///
/// # Errors
///
/// The database is unavailable.
pub async fn rules_of(
    client: &impl deadpool_postgres::GenericClient,
    guild: u64,
) -> Result<Vec<Rule>, DbError> {
    let statement = client
        .prepare_cached(
            "SELECT r.role_id, r.kind, r.min_account_age_days, r.required_role_id FROM rules r \
             JOIN guild_roles gr ON gr.guild_id = r.guild_id AND gr.role_id = r.role_id \
             WHERE r.guild_id = $1 AND gr.present AND gr.assignable ORDER BY r.rule_id",
        )
        .await?;
    let rows = client.query(&statement, &[&sql_id(guild)]).await?;
    Ok(rows
        .iter()
        .filter_map(|row| {
            let condition = match row.get::<_, &str>(1) {
                "account_age" => Condition::AccountAge {
                    days: u32::try_from(row.get::<_, Option<i32>>(2)?).ok()?,
                },
                "verified" => Condition::Verified,
                "holds_role" => {
                    Condition::HoldsRole(crate::db::discord_id(row.get::<_, Option<i64>>(3)?))
                }
                _ => return None,
            };
            Some(Rule {
                role: crate::db::discord_id(row.get(0)),
                condition,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A snowflake created `days` days before `now`.
    fn user_aged(now: SystemTime, days: u64) -> u64 {
        let created = now - Duration::from_secs(days * 86_400);
        let ms = created.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        (ms - DISCORD_EPOCH_MS) << 22
    }

    #[test]
    fn snowflakes_date_accounts() {
        // Discord's documented example: 175928847299117063 is 2016-04-30T11:18:25.796Z.
        let at = created_at(175_928_847_299_117_063);
        let ms = at.duration_since(UNIX_EPOCH).unwrap().as_millis();
        assert_eq!(ms, 1_462_015_105_796);
    }

    #[test]
    fn each_condition_grants_its_role() {
        let now = SystemTime::now();
        let rules = [
            Rule {
                role: 10,
                condition: Condition::AccountAge { days: 30 },
            },
            Rule {
                role: 20,
                condition: Condition::Verified,
            },
            Rule {
                role: 30,
                condition: Condition::HoldsRole(99),
            },
        ];
        let old = Facts {
            user: user_aged(now, 31),
            verified: false,
            roles: vec![],
        };
        assert_eq!(evaluate(&rules, &old, now).roles, BTreeSet::from([10]));
        let young = Facts {
            user: user_aged(now, 29),
            verified: true,
            roles: vec![99],
        };
        let e = evaluate(&rules, &young, now);
        assert_eq!(e.roles, BTreeSet::from([20, 30]));
        assert_eq!(e.tier, 2);
        let nothing = Facts {
            user: user_aged(now, 1),
            verified: false,
            roles: vec![98],
        };
        assert_eq!(evaluate(&rules, &nothing, now), Eligibility::default());
    }

    #[test]
    fn two_rules_for_one_role_count_once_as_a_role() {
        let now = SystemTime::now();
        let rules = [
            Rule {
                role: 10,
                condition: Condition::Verified,
            },
            Rule {
                role: 10,
                condition: Condition::AccountAge { days: 0 },
            },
        ];
        let facts = Facts {
            user: user_aged(now, 5),
            verified: true,
            roles: vec![],
        };
        let e = evaluate(&rules, &facts, now);
        assert_eq!((e.roles.len(), e.tier), (1, 2));
    }
}
