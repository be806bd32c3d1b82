//! PostgreSQL: settings, the connection pool, and the schema migrations applied at
//! start.
//!
//! tokio-postgres is the client (async, the tokio ecosystem's own, no ORM or
//! compile-time query checking to build), deadpool-postgres the pool (bounded, with
//! timeouts, prepared statements cached per connection), refinery the migrations
//! (plain SQL files in `app/migrations`, embedded in the binary, applied at start by
//! whichever process gets there first).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use shardline_jetstream::{Secret, SecretError, secret_from_env_or_file};

mod tls;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// The variable holding the database URL (a secret: environment or file only).
pub const DATABASE_URL_ENV: &str = "DATABASE_URL";

/// Migrations run one process at a time: every worker applies them at start.
const MIGRATION_LOCK: i64 = 0x7368_6172_646c_696e; // "shardlin"

/// The database settings of every application binary (flags with environment
/// fallbacks; the URL itself from `DATABASE_URL` or `DATABASE_URL_FILE`, never a
/// flag, since it carries the password).
#[derive(Clone, Debug, clap::Args)]
pub struct DatabaseArgs {
    /// File holding the PostgreSQL URL (instead of DATABASE_URL), e.g.
    /// `postgres://user:password@host:5432/shardline?sslmode=require`.
    #[arg(long, env = "DATABASE_URL_FILE")]
    pub database_url_file: Option<PathBuf>,

    /// Connections this process keeps to PostgreSQL at most.
    #[arg(long, env = "DATABASE_POOL_SIZE", default_value_t = 16)]
    pub database_pool_size: usize,

    /// Longest wait, in milliseconds, for a connection (from the pool or a new one);
    /// past it the handler answers Retry.
    #[arg(long, env = "DATABASE_TIMEOUT_MS", default_value_t = 5000)]
    pub database_timeout_ms: u64,

    /// PEM file of the CA(s) the server's certificate must chain to (for RDS,
    /// Amazon's RDS CA bundle); the host name is checked too. Without it, TLS (the
    /// URL's `sslmode`) encrypts but does not authenticate the server.
    #[arg(long, env = "DATABASE_CA_FILE")]
    pub database_ca_file: Option<PathBuf>,
}

impl DatabaseArgs {
    /// The settings, with the URL read from `DATABASE_URL` or the file.
    ///
    /// # Errors
    ///
    /// Neither or both are set, the file cannot be read, or a value is out of range.
    pub fn load(&self) -> Result<DatabaseConfig, ConfigError> {
        let url = secret_from_env_or_file(
            DATABASE_URL_ENV,
            Secret::from_env(DATABASE_URL_ENV),
            self.database_url_file.as_deref(),
        )?
        .ok_or_else(|| SecretError::Missing {
            env: DATABASE_URL_ENV.to_owned(),
        })?;
        let config = DatabaseConfig {
            url,
            pool_size: self.database_pool_size,
            timeout: Duration::from_millis(self.database_timeout_ms),
            ca_file: self.database_ca_file.clone(),
        };
        config.validate()?;
        Ok(config)
    }
}

/// Why the database settings are unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The URL is missing or unreadable.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// A setting is out of range, or the URL does not parse (the URL is not shown).
    #[error("{0}")]
    Invalid(String),
}

/// Where the database is and how to use it.
#[derive(Clone)]
pub struct DatabaseConfig {
    /// `postgres://...` (a secret: it carries the password).
    pub url: Secret,
    /// Most connections.
    pub pool_size: usize,
    /// Longest wait for a connection.
    pub timeout: Duration,
    /// CAs to verify the server's certificate against (see [`DatabaseArgs`]).
    pub ca_file: Option<PathBuf>,
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &"<redacted>")
            .field("pool_size", &self.pool_size)
            .field("timeout", &self.timeout)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl DatabaseConfig {
    /// Settings for `url` with the defaults (16 connections, 5 s).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: Secret::new(url),
            pool_size: 16,
            timeout: Duration::from_secs(5),
            ca_file: None,
        }
    }

    /// Checks the settings without connecting.
    ///
    /// # Errors
    ///
    /// The pool size or timeout is zero, or the URL does not parse.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.pool_size == 0 {
            return Err(ConfigError::Invalid(
                "DATABASE_POOL_SIZE must be at least 1".to_owned(),
            ));
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::Invalid(
                "DATABASE_TIMEOUT_MS must be above 0".to_owned(),
            ));
        }
        self.pg_config()?;
        tls::connector(self.ca_file.as_deref()).map_err(ConfigError::Invalid)?;
        Ok(())
    }

    fn pg_config(&self) -> Result<tokio_postgres::Config, ConfigError> {
        // tokio-postgres' parse errors name the option at fault, never the value.
        tokio_postgres::Config::from_str(self.url.expose()).map_err(|e| {
            ConfigError::Invalid(format!(
                "{DATABASE_URL_ENV} is not a PostgreSQL URL (postgres://user:password@host:port/db): {e}"
            ))
        })
    }
}

/// A database operation failed. Handlers answer Retry to every kind: a database that
/// is down, slow or restarting comes back, and the message is redelivered.
#[derive(Debug, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct DbError {
    kind: DbErrorKind,
    message: String,
}

/// What kind of failure a [`DbError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbErrorKind {
    /// No connection: the database is down, unreachable or out of connections.
    Unavailable,
    /// The database refused a write that breaks a rule of the schema.
    Constraint,
    /// Anything else (a query the schema does not match, a migration that failed).
    Query,
}

impl DbError {
    /// The kind, for callers to branch on.
    pub fn kind(&self) -> DbErrorKind {
        self.kind
    }

    pub(crate) fn new(kind: DbErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// The constraint a write broke, if it was refused for one.
    pub fn constraint(&self) -> Option<&str> {
        (self.kind == DbErrorKind::Constraint).then_some(self.message.as_str())
    }
}

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> Self {
        if let Some(db) = e.as_db_error() {
            if let Some(constraint) = db.constraint() {
                return Self::new(DbErrorKind::Constraint, constraint);
            }
            return Self::new(DbErrorKind::Query, db.message());
        }
        // No server answer: the connection failed or closed.
        Self::new(DbErrorKind::Unavailable, e.to_string())
    }
}

impl From<deadpool_postgres::PoolError> for DbError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            other => Self::new(DbErrorKind::Unavailable, other.to_string()),
        }
    }
}

/// The application's database: a connection pool on a migrated schema. Cheap to
/// clone.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
}

impl fmt::Debug for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Db")
            .field("status", &self.pool.status())
            .finish()
    }
}

impl Db {
    /// Connects (waiting up to the timeout for the first connection) and applies
    /// the migrations not yet applied.
    ///
    /// # Errors
    ///
    /// The settings are invalid, the database cannot be reached, or a migration fails.
    pub async fn connect(config: &DatabaseConfig) -> Result<Self, DbError> {
        let mut pg = config
            .pg_config()
            .map_err(|e| DbError::new(DbErrorKind::Query, e.to_string()))?;
        pg.connect_timeout(config.timeout);
        if pg.get_application_name().is_none() {
            pg.application_name("shardline");
        }
        let tls = tls::connector(config.ca_file.as_deref())
            .map_err(|e| DbError::new(DbErrorKind::Query, e))?;
        let manager = Manager::from_config(
            pg,
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(config.timeout))
            .create_timeout(Some(config.timeout))
            .recycle_timeout(Some(config.timeout))
            .build()
            .map_err(|e| DbError::new(DbErrorKind::Query, e.to_string()))?;
        let db = Self { pool };
        db.migrate().await?;
        Ok(db)
    }

    /// [`connect`](Self::connect), retried with backoff while the database is
    /// unavailable, for up to `patience`.
    ///
    /// # Errors
    ///
    /// What `connect` returns, once `patience` has run out or for any other kind.
    pub async fn connect_patiently(
        config: &DatabaseConfig,
        patience: Duration,
    ) -> Result<Self, DbError> {
        let deadline = tokio::time::Instant::now() + patience;
        let mut backoff = Duration::from_millis(250);
        loop {
            match Self::connect(config).await {
                Err(e)
                    if e.kind() == DbErrorKind::Unavailable
                        && tokio::time::Instant::now() + backoff < deadline =>
                {
                    tracing::warn!(error = %e, ?backoff, "database unavailable; trying again");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                other => return other,
            }
        }
    }

    /// A pooled connection.
    ///
    /// # Errors
    ///
    /// [`DbErrorKind::Unavailable`] when none comes within the timeout.
    pub async fn client(&self) -> Result<deadpool_postgres::Object, DbError> {
        Ok(self.pool.get().await?)
    }

    /// Applies the embedded migrations, one process at a time (an advisory lock).
    async fn migrate(&self) -> Result<(), DbError> {
        let mut client = self.client().await?;
        client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        let connection: &mut tokio_postgres::Client = &mut client;
        let report = embedded::migrations::runner().run_async(connection).await;
        client
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
            .await?;
        let report = report
            .map_err(|e| DbError::new(DbErrorKind::Query, format!("migration failed: {e}")))?;
        for migration in report.applied_migrations() {
            tracing::info!(migration = %migration, "database migration applied");
        }
        Ok(())
    }
}

/// A Discord id as stored: the same 64 bits in a BIGINT.
pub(crate) fn sql_id(id: u64) -> i64 {
    i64::from_ne_bytes(id.to_ne_bytes())
}

/// A stored BIGINT back as a Discord id.
pub(crate) fn discord_id(id: i64) -> u64 {
    u64::from_ne_bytes(id.to_ne_bytes())
}

/// Discord ids as stored.
pub(crate) fn sql_ids(ids: &[u64]) -> Vec<i64> {
    ids.iter().copied().map(sql_id).collect()
}

/// Stored ids back as Discord ids.
pub(crate) fn discord_ids(ids: &[i64]) -> Vec<u64> {
    ids.iter().copied().map(discord_id).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_keep_their_bits() {
        for id in [0, 1, 1_234_567_890_123_456_789, u64::MAX, 1 << 63] {
            assert_eq!(discord_id(sql_id(id)), id);
        }
    }

    #[test]
    fn the_url_is_never_shown() {
        let config = DatabaseConfig::new("postgres://u:hunter2@db:5432/x");
        assert!(!format!("{config:?}").contains("hunter2"));
        let bad = DatabaseConfig::new("postgres://u:hunter2@db:notaport/x");
        let error = bad.validate().unwrap_err().to_string();
        assert!(!error.contains("hunter2"), "{error}");
        let zero = DatabaseConfig {
            pool_size: 0,
            ..DatabaseConfig::new("postgres://db/x")
        };
        assert!(matches!(zero.validate(), Err(ConfigError::Invalid(_))));
    }
}
