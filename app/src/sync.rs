//! The sync worker's handler: brings one member's managed roles to what the last
//! check decided, with Discord's member-role endpoints (`PUT`/`DELETE
//! /guilds/{g}/members/{u}/roles/{r}`) through the fleet's REST proxy.
//!
//! Syncs of one member run one at a time (a transaction-scoped advisory lock on the
//! member), and each reads the decision when it runs, not when it was asked for: the
//! last sync applies the last decision, however the messages were ordered or
//! redelivered. Only roles the guild's rules grant are ever added or removed.
//!
//! Discord's answers: 204 applied; 404 Unknown Member, the member left: done (a log
//! line, Success); 404 Unknown Role: the role was deleted, marked gone; 403: the bot
//! may not manage the role (above its highest role, or no Manage Roles): marked
//! unassignable until the guild's next `GUILD_CREATE`, the other changes applied, and
//! the sync answered Terminal with the reason (dead-lettered, for a person to look
//! at); a refusal of the proxy: Retry after the time it gives; anything else: Retry.
//! What was applied before a failure is recorded, so a retry sends only the rest.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use shardline_proto::eligibility::Sync;
use shardline_worker::{Context, Handler, Outcome, rest_refusal};
use twilight_http::api_error::ApiError;
use twilight_http::error::ErrorType;
use twilight_http::request::AuditLogReason;
use twilight_model::id::Id;

use crate::db::{Db, DbError, discord_ids, sql_id, sql_ids};
use crate::metrics as m;
use crate::rules;

/// Discord's "Unknown Role". Any other 404 (10007 Unknown Member, 10004 Unknown
/// Guild) means the member is not there to change.
const UNKNOWN_ROLE: u64 = 10011;
/// Shown in the guild's audit log for every change.
const AUDIT_REASON: &str = "Shardline eligibility rules";

const MEMBER: &str = "SELECT m.present AND g.active, m.roles, m.desired_roles, m.applied_roles \
     FROM members m JOIN guilds g ON g.guild_id = m.guild_id \
     WHERE m.guild_id = $1 AND m.user_id = $2";

/// `eligibility.sync.<guild>.<user>`.
pub struct RoleSync {
    db: Db,
    discord: Arc<twilight_http::Client>,
}

/// How Discord (or the proxy) answered one role change.
enum Answer {
    Applied,
    MemberGone,
    UnknownRole,
    Forbidden(String),
    Retry(Outcome, String),
}

fn answer(result: Result<(), twilight_http::Error>) -> Answer {
    let Err(error) = result else {
        return Answer::Applied;
    };
    if let Some(outcome) = rest_refusal::outcome(&error) {
        return Answer::Retry(outcome, error.to_string());
    }
    if let ErrorType::Response {
        error: api, status, ..
    } = error.kind()
    {
        let code = match api {
            ApiError::General(general) => Some(general.code),
            _ => None,
        };
        match (status.get(), code) {
            (404, Some(UNKNOWN_ROLE)) => return Answer::UnknownRole,
            (404, _) => return Answer::MemberGone,
            (403, _) => return Answer::Forbidden(format!("{status} {api}")),
            _ => {}
        }
    }
    Answer::Retry(Outcome::retry(), error.to_string())
}

impl RoleSync {
    /// A handler on `db`, sending through `discord` (a client of the REST proxy).
    pub fn new(db: Db, discord: Arc<twilight_http::Client>) -> Self {
        Self { db, discord }
    }

    async fn change(&self, guild: u64, user: u64, role: u64, add: bool) -> Answer {
        let (g, u, r) = (Id::new(guild), Id::new(user), Id::new(role));
        let result = if add {
            self.discord
                .add_guild_member_role(g, u, r)
                .reason(AUDIT_REASON)
                .await
                .map(drop)
        } else {
            self.discord
                .remove_guild_member_role(g, u, r)
                .reason(AUDIT_REASON)
                .await
                .map(drop)
        };
        answer(result)
    }

    /// Applies the difference for `user` in `guild`.
    async fn sync(&self, guild: u64, user: u64) -> Result<Outcome, DbError> {
        let mut client = self.db.client().await?;
        let tx = client.transaction().await?;
        // Collisions of the key only make two members' syncs wait for each other.
        let key = sql_id(guild) ^ sql_id(user);
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&key])
            .await?;
        let statement = tx.prepare_cached(MEMBER).await?;
        let row = tx
            .query_opt(&statement, &[&sql_id(guild), &sql_id(user)])
            .await?;
        let Some(row) = row.filter(|r| r.get::<_, bool>(0)) else {
            tracing::debug!(%guild, %user, "sync for a member no longer in the guild; nothing to do");
            return Ok(Outcome::Success);
        };
        let Some(desired) = row.get::<_, Option<Vec<i64>>>(2) else {
            return Ok(Outcome::Success);
        };
        let rules = rules::rules_of(&tx, guild).await?;
        let managed: BTreeSet<u64> = rules.iter().map(|r| r.role).collect();
        let baseline: BTreeSet<u64> = row
            .get::<_, Option<Vec<i64>>>(3)
            .unwrap_or_else(|| row.get::<_, Vec<i64>>(1))
            .iter()
            .map(|&r| crate::db::discord_id(r))
            .filter(|r| managed.contains(r))
            .collect();
        let target: BTreeSet<u64> = discord_ids(&desired)
            .into_iter()
            .filter(|r| managed.contains(r))
            .collect();
        let changes = target
            .difference(&baseline)
            .map(|&r| (r, true))
            .chain(baseline.difference(&target).map(|&r| (r, false)))
            .collect::<Vec<_>>();
        let mut applied = baseline;
        let mut forbidden = Vec::new();
        let mut outcome = Outcome::Success;
        let mut gone = false;
        for (role, add) in changes {
            match self.change(guild, user, role, add).await {
                Answer::Applied => {
                    m::role_change(add, "applied");
                    if add {
                        applied.insert(role);
                    } else {
                        applied.remove(&role);
                    }
                }
                Answer::MemberGone => {
                    m::role_change(add, "member_gone");
                    tracing::info!(%guild, %user, "member gone (404 Unknown Member): roles not synced");
                    gone = true;
                    break;
                }
                Answer::UnknownRole => {
                    m::role_change(add, "unknown_role");
                    tracing::warn!(%guild, %role, "role gone (404 Unknown Role): its rules are skipped");
                    tx.execute(
                        "UPDATE guild_roles SET present = false WHERE guild_id = $1 AND role_id = $2",
                        &[&sql_id(guild), &sql_id(role)],
                    )
                    .await?;
                    applied.remove(&role);
                }
                Answer::Forbidden(why) => {
                    m::role_change(add, "forbidden");
                    tx.execute(
                        "UPDATE guild_roles SET assignable = false WHERE guild_id = $1 AND role_id = $2",
                        &[&sql_id(guild), &sql_id(role)],
                    )
                    .await?;
                    forbidden.push(format!("role {role}: {why}"));
                }
                Answer::Retry(retry, why) => {
                    m::role_change(add, "failed");
                    // A refusal of the proxy (waiting out a limit) is routine; others are not.
                    if matches!(retry, Outcome::Retry { delay: Some(_) }) {
                        tracing::debug!(%guild, %user, %role, reason = %why, "role change refused by the proxy for now; retrying after its time");
                    } else {
                        tracing::warn!(%guild, %user, %role, error = %why, "role change failed; retrying");
                    }
                    outcome = retry;
                    break;
                }
            }
        }
        if !gone {
            let applied: Vec<u64> = applied.into_iter().collect();
            tx.execute(
                "UPDATE members SET applied_roles = $3, synced_at = now() WHERE guild_id = $1 AND user_id = $2",
                &[&sql_id(guild), &sql_id(user), &sql_ids(&applied)],
            )
            .await?;
        }
        tx.commit().await?;
        if !forbidden.is_empty() && outcome == Outcome::Success {
            outcome = Outcome::terminal(format!(
                "Discord refused to change roles of user {user} in guild {guild} (the bot may not \
                 manage them: above its highest role, or no Manage Roles; skipped until the guild \
                 is loaded again): {}",
                forbidden.join("; ")
            ));
        }
        Ok(outcome)
    }
}

impl Handler for RoleSync {
    type Payload = Sync;

    async fn handle(&self, sync: Sync, _cx: &Context) -> Outcome {
        let (guild, user) = (sync.guild_id.get(), sync.user_id.get());
        match self.sync(guild, user).await {
            Ok(outcome) => outcome,
            Err(error) => {
                tracing::warn!(%guild, %user, %error, "role sync failed; retrying");
                Outcome::retry()
            }
        }
    }
}

/// A twilight-http client for the REST proxy at `base` (`http://host:port`): no bot
/// token (the proxy holds it), no rate limiter of its own (the proxy is the fleet's),
/// and a wait budget: the proxy queues a request for a limit up to `max_wait`, and
/// refuses it with the time to retry past that.
pub fn proxy_client(base: &str, max_wait: Duration) -> twilight_http::Client {
    let (plain, rest) = match base.strip_prefix("http://") {
        Some(rest) => (true, rest),
        None => (false, base.strip_prefix("https://").unwrap_or(base)),
    };
    let mut headers = http::HeaderMap::new();
    headers.insert(
        shardline_proto::rest::MAX_WAIT_HEADER,
        http::HeaderValue::from(u64::try_from(max_wait.as_millis()).unwrap_or(u64::MAX)),
    );
    twilight_http::Client::builder()
        .proxy(rest.trim_end_matches('/').to_owned(), plain)
        .ratelimiter(None)
        .default_headers(headers)
        // The proxy answers within the budget (sent, or refused): a little more is
        // the network and Discord's own answer.
        .timeout(max_wait + Duration::from_secs(10))
        .build()
}
