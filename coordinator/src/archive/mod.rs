//! The archive of finished runs in PostgreSQL (issue 20): Redis keeps live state, and a finished
//! run moves here, whole, to be read back (GetRun, WatchRun's history, human tasks) and searched.
//!
//! - [`Archive::connect`] builds a pool, creates the schema (`archive_schema`) and runs the
//!   migrations of `coordinator/migrations/` (embedded in the binary), then creates the day
//!   partitions ahead.
//! - [`Archive::write`] stores a batch of [`ArchivedRun`]s in one transaction, idempotently.
//! - [`Archive::get_run`], [`Archive::delete_run`] read and remove one run.
//! - [`partitions`] keeps the day partitions: creates the next days', drops those past
//!   `archive_retention`; [`partitions::run`] is its loop.
//!
//! The store is PostgreSQL through `sqlx` (its pool, its migrator; no compile-time query macros,
//! so building needs no database). Every query is parameterised; the only SQL built from text is
//! DDL naming partitions, from the table names and dates of this module.

pub mod partitions;
mod read;
pub mod search;
mod write;

use std::{borrow::Cow, str::FromStr, sync::Arc, time::Duration};

use baton_shared::proto;
use sqlx::{
    Executor, PgPool,
    migrate::{Migration, MigrationSource, MigrationType, Migrator},
    postgres::{PgConnectOptions, PgPoolOptions},
};

pub use write::WriteReport;

/// The archive's settings (from the coordinator's `archive_*` keys).
#[derive(Clone)]
pub struct ArchiveConfig {
    /// `postgres://user:password@host:port/database` (`archive_url`); `?sslmode=require` (or
    /// `verify-full`) for TLS, which trusts the system's CA certificates.
    pub url: String,
    /// The PostgreSQL schema the archive's tables live in (`archive_schema`): 1 to 63 of
    /// `a-z 0-9 _`, not starting with a digit. Created when missing.
    pub schema: String,
    /// How long an archived run is kept, counted from its finish (`archive_retention`); whole
    /// days are dropped, so a run lives between this and a day more. 1 day to 3650 days.
    pub retention: Duration,
    /// How long Redis keeps a run's tombstone after it is archived (`archive_grace`).
    pub grace: Duration,
    /// Most runs per write (`archive_batch`), 1 to [`MAX_BATCH`].
    pub batch: usize,
    /// How long one read of the archive (a GetRun, a ListRuns page or its counts, the human task
    /// list) may wait for PostgreSQL before it is given up with [`ArchiveError::Timeout`]
    /// (`archive_read_timeout`): a PostgreSQL whose host died answers nothing, and the caller is
    /// answered without the archive (ListRuns says `partial`) or `UNAVAILABLE`, not kept waiting.
    pub read_timeout: Duration,
}

impl std::fmt::Debug for ArchiveConfig {
    /// The URL may hold a password: it is not printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveConfig")
            .field("url", &"***")
            .field("schema", &self.schema)
            .field("retention", &self.retention)
            .field("grace", &self.grace)
            .field("batch", &self.batch)
            .field("read_timeout", &self.read_timeout)
            .finish()
    }
}

/// Most runs in one [`Archive::write`] (`archive_batch`).
pub const MAX_BATCH: usize = 10_000;
/// Longest `archive_retention`: 3650 days.
pub const MAX_RETENTION: Duration = Duration::from_secs(3650 * 86_400);
/// Shortest `archive_retention`: one day (a partition is one day).
pub const MIN_RETENTION: Duration = Duration::from_secs(86_400);
/// Longest `archive_grace`: 7 days.
pub const MAX_GRACE: Duration = Duration::from_secs(7 * 86_400);
/// Connections of the archive's pool per coordinator.
pub const POOL_CONNECTIONS: u32 = 8;
/// How long a call waits for a free connection of the pool before it fails.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

impl ArchiveConfig {
    /// Checks the bounds of every field.
    ///
    /// # Errors
    /// [`ArchiveError::Config`] naming the key (`archive_url`, `archive_schema`,
    /// `archive_retention`, `archive_grace`, `archive_batch`).
    pub fn check(&self) -> Result<(), ArchiveError> {
        if self.url.trim().is_empty() {
            return Err(ArchiveError::config("archive_url", "is empty"));
        }
        check_schema(&self.schema)?;
        if self.retention < MIN_RETENTION || self.retention > MAX_RETENTION {
            return Err(ArchiveError::config(
                "archive_retention",
                format!(
                    "{} is outside 1day to 3650days",
                    baton_shared::duration::format(self.retention)
                ),
            ));
        }
        if self.grace > MAX_GRACE {
            return Err(ArchiveError::config(
                "archive_grace",
                format!("{} is more than 7days", baton_shared::duration::format(self.grace)),
            ));
        }
        if self.batch == 0 || self.batch > MAX_BATCH {
            return Err(ArchiveError::config(
                "archive_batch",
                format!("{} is outside 1 to {MAX_BATCH}", self.batch),
            ));
        }
        Ok(())
    }
}

/// Checks a schema name: 1 to 63 of `a-z 0-9 _`, not starting with a digit (so that it needs no
/// quoting and cannot alias anything).
///
/// # Errors
/// [`ArchiveError::Config`] naming `archive_schema`.
pub fn check_schema(schema: &str) -> Result<(), ArchiveError> {
    let ok = !schema.is_empty()
        && schema.len() <= 63
        && schema
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !schema.as_bytes()[0].is_ascii_digit()
        && !schema.starts_with("pg_");
    if ok {
        Ok(())
    } else {
        Err(ArchiveError::config(
            "archive_schema",
            format!(
                "{} must be 1 to 63 characters of a-z, 0-9, '_', not starting with a digit or pg_",
                baton_shared::limits::echo(schema)
            ),
        ))
    }
}

/// Why an archive call failed.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// A setting is out of its bounds or does not parse (the message names the key).
    #[error("{key}: {reason}")]
    Config {
        /// The setting (`archive_url`, `archive_schema`, ...).
        key: &'static str,
        /// What is wrong (a URL is never echoed: it may hold a password).
        reason: String,
    },
    /// PostgreSQL could not be reached or refused the login (`archive_url`).
    #[error("archive_url: cannot connect to PostgreSQL: {0}")]
    Connect(String),
    /// The migrations of `coordinator/migrations/` failed (a database changed by another
    /// version, or no right to create tables in the schema).
    #[error("archive_schema: migrating the archive failed: {0}")]
    Migrate(String),
    /// A query failed (the connection dropped, a timeout, the server's refusal).
    #[error("archive: {0}")]
    Db(#[from] sqlx::Error),
    /// PostgreSQL did not answer a write within `archive_write_timeout`, or a read within
    /// `archive_read_timeout` (its host died, or the network dropped it without a word).
    #[error("archive: no answer from PostgreSQL within {0:?}")]
    Timeout(std::time::Duration),
    /// A stored row does not decode (corrupt or written by another program).
    #[error("archive: a stored {what} does not decode: {reason}")]
    Decode {
        /// What: `run`, `event`, `human task`.
        what: &'static str,
        /// The decoder's message.
        reason: String,
    },
}

/// Result with [`ArchiveError`].
pub type Result<T, E = ArchiveError> = std::result::Result<T, E>;

impl ArchiveError {
    fn config(key: &'static str, reason: impl Into<String>) -> Self {
        Self::Config {
            key,
            reason: reason.into(),
        }
    }

    /// Whether trying again later may succeed (the database unreachable or busy, not a refusal
    /// of the data or the settings). A protocol error counts: it is what sqlx reports when a
    /// connection is closed in its handshake, as a proxy or load balancer in front of a
    /// PostgreSQL that is down does (`unexpected response from SSLRequest`).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Connect(_) | Self::Timeout(_) => true,
            Self::Db(e) => matches!(
                e,
                sqlx::Error::Io(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::Tls(_)
                    | sqlx::Error::Protocol(_)
            ),
            Self::Config { .. } | Self::Migrate(_) | Self::Decode { .. } => false,
        }
    }
}

/// One finished run as it goes to the archive (B builds it from Redis).
#[derive(Debug, Clone, PartialEq)]
pub struct ArchivedRun {
    /// The coordinator namespace the run belongs to.
    pub namespace: String,
    /// The run as GetRun answers it, but whole: every step, every attempt Redis keeps, outputs and
    /// inputs not left out for an answer budget.
    pub run: proto::Run,
    /// The distinct error types of its failed attempts.
    pub error_types: Vec<String>,
    /// Its history (the events WatchRun replays), oldest first.
    pub history: Vec<proto::RunEvent>,
    /// Its human tasks, if any.
    pub human_tasks: Vec<proto::HumanTask>,
}

/// The archive: a pool of PostgreSQL connections whose `search_path` is the archive's schema.
/// Cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct Archive {
    pool: PgPool,
    config: Arc<ArchiveConfig>,
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archive").field("schema", &self.config.schema).finish()
    }
}

/// The migrations of `coordinator/migrations/`, embedded in the binary, in version order.
const MIGRATIONS: &[(i64, &str, &str)] = &[(1, "archive", include_str!("../../migrations/0001_archive.sql"))];

/// [`MIGRATIONS`] as sqlx's migrator reads them.
#[derive(Debug)]
struct Embedded;

impl MigrationSource<'static> for Embedded {
    fn resolve(self) -> futures::future::BoxFuture<'static, Result<Vec<Migration>, sqlx::error::BoxDynError>> {
        Box::pin(async {
            Ok(MIGRATIONS
                .iter()
                .map(|(version, description, sql)| {
                    Migration::new(
                        *version,
                        Cow::Borrowed(*description),
                        MigrationType::Simple,
                        Cow::Borrowed(*sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

impl Archive {
    /// Checks `cfg`, connects (a pool of [`POOL_CONNECTIONS`], each with `search_path` set to
    /// `cfg.schema`), creates the schema when missing, runs the migrations, and creates the day
    /// partitions from yesterday to [`partitions::DAYS_AHEAD`] days ahead.
    ///
    /// # Errors
    /// [`ArchiveError::Config`] for a setting out of bounds or a URL that does not parse;
    /// [`ArchiveError::Connect`] (naming `archive_url`) when PostgreSQL cannot be reached;
    /// [`ArchiveError::Migrate`] when the migrations fail.
    pub async fn connect(cfg: &ArchiveConfig) -> Result<Archive> {
        cfg.check()?;
        describe_metrics();
        let options = PgConnectOptions::from_str(&cfg.url)
            .map_err(|e| {
                ArchiveError::config(
                    "archive_url",
                    format!(
                        "is not a PostgreSQL URL such as postgres://user@host:5432/db ({})",
                        redact(&e.to_string(), &cfg.url)
                    ),
                )
            })?
            .application_name("baton-coordinator")
            .options([("search_path", cfg.schema.as_str())]);
        let pool = PgPoolOptions::new()
            .max_connections(POOL_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|e| ArchiveError::Connect(redact(&e.to_string(), &cfg.url)))?;
        // `IF NOT EXISTS` still races with a second coordinator creating it at the same moment;
        // the loser finds it there.
        let create = format!("CREATE SCHEMA IF NOT EXISTS {}", cfg.schema);
        if let Err(e) = pool.execute(create.as_str()).await {
            let exists: Option<(String,)> = sqlx::query_as("SELECT nspname::text FROM pg_namespace WHERE nspname = $1")
                .bind(&cfg.schema)
                .fetch_optional(&pool)
                .await?;
            if exists.is_none() {
                return Err(ArchiveError::Migrate(format!("creating schema {}: {e}", cfg.schema)));
            }
        }
        let migrator = Migrator::new(Embedded)
            .await
            .map_err(|e| ArchiveError::Migrate(e.to_string()))?;
        migrator
            .run(&pool)
            .await
            .map_err(|e| ArchiveError::Migrate(e.to_string()))?;
        let archive = Archive {
            pool,
            config: Arc::new(cfg.clone()),
        };
        archive.ensure_partitions(chrono::Utc::now()).await?;
        Ok(archive)
    }

    /// The settings it was connected with.
    pub fn config(&self) -> &ArchiveConfig {
        &self.config
    }

    /// `read`, given up past `archive_read_timeout` ([`ArchiveConfig::read_timeout`]) with
    /// [`ArchiveError::Timeout`]. The connection it held goes back through sqlx's release check
    /// (a ping, off this caller's path), so one left mid-query is not reused while broken; the
    /// pool's acquire waits within the same limit.
    async fn within<T>(&self, read: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        let limit = self.config.read_timeout;
        tokio::time::timeout(limit, read)
            .await
            .unwrap_or(Err(ArchiveError::Timeout(limit)))
    }

    /// One round trip to PostgreSQL (`SELECT 1`).
    ///
    /// # Errors
    /// [`ArchiveError::Db`] when it fails.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes the pool (waits for the connections in use to come back).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// `text` with every occurrence of the URL (which may hold a password) replaced by `***`.
fn redact(text: &str, url: &str) -> String {
    if url.is_empty() {
        text.to_string()
    } else {
        text.replace(url, "***")
    }
}

/// Gives the archive's metrics their help text.
fn describe_metrics() {
    metrics::describe_counter!(
        "baton_archive_runs_written_total",
        "Finished runs written to the PostgreSQL archive (a run written again is not counted)."
    );
    metrics::describe_counter!(
        "baton_archive_runs_parked_total",
        "Finished runs the archive could not store as rows (kept whole in parked_runs with the reason)."
    );
    metrics::describe_counter!(
        "baton_archive_maintenance_failures_total",
        "Failed passes of the archive's partition maintenance (creating days ahead, dropping days past archive_retention)."
    );
    metrics::describe_counter!(
        "baton_archive_partitions_dropped_total",
        "Day partitions of the archive dropped past archive_retention."
    );
}
