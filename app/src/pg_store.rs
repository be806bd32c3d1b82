//! The event worker's [`Store`] in PostgreSQL.
//!
//! Each write is one statement (an upsert guarded by the event's [`Version`]), so a
//! redelivered or stale event changes nothing and concurrent handlers need no lock
//! of ours: the row lock of the upsert orders them. A member event for a guild never
//! seen inserts the guild in the same statement (a data-modifying `WITH`).

use crate::db::{Db, DbError, discord_ids, sql_id, sql_ids};
use crate::store::{GuildInfo, GuildState, MemberState, Store, StoreError, Version, normalized};

/// `WHERE` of an upsert: the event (`$v_at`, `$v_session`, `$v_seq`, written as
/// `EXCLUDED.event_*`) supersedes the row's (see [`Version::supersedes`]).
macro_rules! newer {
    ($table:literal) => {
        concat!(
            "(EXCLUDED.event_session IS NOT NULL AND ",
            $table,
            ".event_session = EXCLUDED.event_session AND EXCLUDED.event_seq > ",
            $table,
            ".event_seq) OR ((EXCLUDED.event_session IS NULL OR ",
            $table,
            ".event_session IS DISTINCT FROM EXCLUDED.event_session) AND EXCLUDED.event_at > ",
            $table,
            ".event_at)"
        )
    };
}

/// Inserts the guild of a member event if it was never seen ($1).
const ENSURE_GUILD: &str = "INSERT INTO guilds (guild_id, active, available) VALUES ($1, true, true) ON CONFLICT DO NOTHING";

const MEMBER_JOINED: &str = concat!(
    "WITH g AS (INSERT INTO guilds (guild_id, active, available) VALUES ($1, true, true) ",
    "ON CONFLICT DO NOTHING) ",
    "INSERT INTO members AS m (guild_id, user_id, present, roles, joined_at, event_at, event_session, event_seq) ",
    "VALUES ($1, $2, true, $3, now(), $4, $5, $6) ",
    "ON CONFLICT (guild_id, user_id) DO UPDATE SET present = true, roles = EXCLUDED.roles, ",
    // Discord drops a member's roles on leave: what the bot applied before is gone.
    "joined_at = now(), left_at = NULL, applied_roles = NULL, updated_at = now(), ",
    "event_at = EXCLUDED.event_at, event_session = EXCLUDED.event_session, event_seq = EXCLUDED.event_seq ",
    "WHERE ",
    newer!("m")
);

const MEMBER_UPDATED: &str = concat!(
    "WITH g AS (INSERT INTO guilds (guild_id, active, available) VALUES ($1, true, true) ",
    "ON CONFLICT DO NOTHING) ",
    "INSERT INTO members AS m (guild_id, user_id, present, roles, joined_at, event_at, event_session, event_seq) ",
    "VALUES ($1, $2, true, $3, now(), $4, $5, $6) ",
    "ON CONFLICT (guild_id, user_id) DO UPDATE SET present = true, roles = EXCLUDED.roles, ",
    "left_at = NULL, updated_at = now(), ",
    "event_at = EXCLUDED.event_at, event_session = EXCLUDED.event_session, event_seq = EXCLUDED.event_seq ",
    "WHERE ",
    newer!("m")
);

const MEMBER_LEFT: &str = concat!(
    "WITH g AS (INSERT INTO guilds (guild_id, active, available) VALUES ($1, true, true) ",
    "ON CONFLICT DO NOTHING) ",
    "INSERT INTO members AS m (guild_id, user_id, present, left_at, event_at, event_session, event_seq) ",
    "VALUES ($1, $2, false, now(), $3, $4, $5) ",
    "ON CONFLICT (guild_id, user_id) DO UPDATE SET present = false, roles = '{}', ",
    "left_at = now(), applied_roles = NULL, updated_at = now(), ",
    "event_at = EXCLUDED.event_at, event_session = EXCLUDED.event_session, event_seq = EXCLUDED.event_seq ",
    "WHERE ",
    newer!("m")
);

/// Upserts a guild ($1 id, $2 name, $3 active, $4 available, $5-$7 version); returns
/// a row when the event was newer. `name = ''` keeps the known name.
const GUILD: &str = concat!(
    "INSERT INTO guilds AS g (guild_id, name, active, available, left_at, event_at, event_session, event_seq) ",
    "VALUES ($1, $2, $3, $4, CASE WHEN $3 THEN NULL ELSE now() END, $5, $6, $7) ",
    "ON CONFLICT (guild_id) DO UPDATE SET ",
    "name = CASE WHEN EXCLUDED.name = '' THEN g.name ELSE EXCLUDED.name END, ",
    "active = EXCLUDED.active, available = EXCLUDED.available, ",
    "left_at = CASE WHEN EXCLUDED.active THEN NULL ELSE now() END, updated_at = now(), ",
    "event_at = EXCLUDED.event_at, event_session = EXCLUDED.event_session, event_seq = EXCLUDED.event_seq ",
    "WHERE ",
    newer!("g"),
    " RETURNING guild_id"
);

/// The guild's roles as listed now ($1 guild, $2 role ids): listed ones present (and
/// worth trying again), the others gone.
const ROLES_LISTED: &str = concat!(
    "INSERT INTO guild_roles (guild_id, role_id) SELECT $1, unnest($2::bigint[]) ",
    "ON CONFLICT (guild_id, role_id) DO UPDATE SET present = true, assignable = true"
);
const ROLES_GONE: &str =
    "UPDATE guild_roles SET present = false WHERE guild_id = $1 AND NOT (role_id = ANY($2))";

/// The event worker's store in PostgreSQL. Cheap to clone.
#[derive(Clone, Debug)]
pub struct PgStore {
    db: Db,
}

impl PgStore {
    /// A store on `db`.
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// The database it writes to.
    pub fn db(&self) -> &Db {
        &self.db
    }

    async fn guild_write(
        &self,
        guild: u64,
        name: &str,
        active: bool,
        available: bool,
        roles: Option<&[u64]>,
        v: &Version,
    ) -> Result<(), DbError> {
        let mut client = self.db.client().await?;
        let tx = client.transaction().await?;
        let statement = tx.prepare_cached(GUILD).await?;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 7] = [
            &sql_id(guild),
            &name,
            &active,
            &available,
            &v.at,
            &v.session,
            &v.sequence,
        ];
        let newer = !tx.query(&statement, &params).await?.is_empty();
        if let (true, Some(roles)) = (newer, roles) {
            let roles = sql_ids(&normalized(roles));
            tx.execute(ROLES_LISTED, &[&sql_id(guild), &roles]).await?;
            tx.execute(ROLES_GONE, &[&sql_id(guild), &roles]).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn member_write(
        &self,
        sql: &str,
        guild: u64,
        user: u64,
        roles: Option<&[u64]>,
        v: &Version,
    ) -> Result<(), DbError> {
        let client = self.db.client().await?;
        let statement = client.prepare_cached(sql).await?;
        let (guild, user) = (sql_id(guild), sql_id(user));
        match roles {
            Some(roles) => {
                let roles = sql_ids(&normalized(roles));
                client
                    .execute(
                        &statement,
                        &[&guild, &user, &roles, &v.at, &v.session, &v.sequence],
                    )
                    .await?
            }
            None => {
                client
                    .execute(&statement, &[&guild, &user, &v.at, &v.session, &v.sequence])
                    .await?
            }
        };
        Ok(())
    }

    /// Marks `user` verified in `guild` (creating the guild and member records if
    /// never seen; a member running a command is in the guild).
    ///
    /// # Errors
    ///
    /// The database is unavailable.
    pub async fn verify(&self, guild: u64, user: u64, roles: &[u64]) -> Result<(), DbError> {
        let client = self.db.client().await?;
        client.execute(ENSURE_GUILD, &[&sql_id(guild)]).await?;
        let roles = sql_ids(&normalized(roles));
        client
            .execute(
                "INSERT INTO members (guild_id, user_id, present, roles, verified, verified_at, joined_at) \
                 VALUES ($1, $2, true, $3, true, now(), now()) \
                 ON CONFLICT (guild_id, user_id) DO UPDATE SET verified = true, \
                 verified_at = COALESCE(members.verified_at, now()), updated_at = now()",
                &[&sql_id(guild), &sql_id(user), &roles],
            )
            .await?;
        Ok(())
    }

    /// The members of `guild` present now, in id order.
    ///
    /// # Errors
    ///
    /// The database is unavailable.
    pub async fn present_members(&self, guild: u64) -> Result<Vec<u64>, DbError> {
        let client = self.db.client().await?;
        let rows = client
            .query(
                "SELECT user_id FROM members WHERE guild_id = $1 AND present ORDER BY user_id",
                &[&sql_id(guild)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| crate::db::discord_id(r.get(0)))
            .collect())
    }
}

impl Store for PgStore {
    async fn upsert_guild(&self, guild: &GuildInfo, version: &Version) -> Result<(), StoreError> {
        let roles = Some(guild.roles.as_slice());
        Ok(self
            .guild_write(guild.id, &guild.name, true, true, roles, version)
            .await?)
    }

    async fn guild_unavailable(&self, guild: u64, version: &Version) -> Result<(), StoreError> {
        Ok(self
            .guild_write(guild, "", true, false, None, version)
            .await?)
    }

    async fn guild_left(&self, guild: u64, version: &Version) -> Result<(), StoreError> {
        Ok(self
            .guild_write(guild, "", false, false, None, version)
            .await?)
    }

    async fn member_joined(
        &self,
        guild: u64,
        user: u64,
        roles: &[u64],
        version: &Version,
    ) -> Result<(), StoreError> {
        Ok(self
            .member_write(MEMBER_JOINED, guild, user, Some(roles), version)
            .await?)
    }

    async fn member_updated(
        &self,
        guild: u64,
        user: u64,
        roles: &[u64],
        version: &Version,
    ) -> Result<(), StoreError> {
        Ok(self
            .member_write(MEMBER_UPDATED, guild, user, Some(roles), version)
            .await?)
    }

    async fn member_left(
        &self,
        guild: u64,
        user: u64,
        version: &Version,
    ) -> Result<(), StoreError> {
        Ok(self
            .member_write(MEMBER_LEFT, guild, user, None, version)
            .await?)
    }

    async fn guild(&self, guild: u64) -> Result<Option<GuildState>, StoreError> {
        let client = self.db.client().await?;
        let row = client
            .query_opt(
                "SELECT name, active, available FROM guilds WHERE guild_id = $1",
                &[&sql_id(guild)],
            )
            .await?;
        Ok(row.map(|r| GuildState {
            name: r.get(0),
            active: r.get(1),
            available: r.get(2),
        }))
    }

    async fn member(&self, guild: u64, user: u64) -> Result<Option<MemberState>, StoreError> {
        let client = self.db.client().await?;
        let row = client
            .query_opt(
                "SELECT present, roles, verified FROM members WHERE guild_id = $1 AND user_id = $2",
                &[&sql_id(guild), &sql_id(user)],
            )
            .await?;
        Ok(row.map(|r| MemberState {
            present: r.get(0),
            roles: discord_ids(&r.get::<_, Vec<i64>>(1)),
            verified: r.get(2),
        }))
    }
}
