//! The database schema against the migrations this binary embeds (Procedure 5 of the runbook):
//! what is applied, pending, unknown or changed ([`SchemaStatus`], read without writing), what
//! stops a binary from using a database ([`SchemaProblem`]), and the one way the schema is
//! brought up to date ([`upgrade`]): on PostgreSQL under advisory lock
//! [`MIGRATION_LOCK_ID`] taken with `pg_try_advisory_lock`, on SQLite under an exclusive lock on
//! `<database>.migrate-lock`, either retried until a deadline while another instance holds it.
//! `aragora migrate`, `aragora token` and the engine's own start ([`prepare`]) all go through
//! here.
//!
//! | piece | what |
//! |---|---|
//! | `_sqlx_migrations` | sqlx's record: version, description, applied time, success, SHA-384 checksum |
//! | `aragora_schema_history` | ours, created from code (no migration of its own, so it never races the numbered ones): which aragora release applied each version, so a binary refused by a newer schema can say which release to run |
//!
//! Each pending migration is applied in its own transaction (sqlx's `apply`), and the applied
//! list is read again under the lock just before applying, so versions a crashed instance
//! already applied are skipped. The history row is written after its migration commits; a crash
//! in between leaves that version's release unknown, nothing worse.

use crate::config::{DbBackend, EngineConfig};
use crate::store::{SqlStore, MIGRATION_LOCK_ID};
use serde::Serialize;
use sqlx::migrate::{Migrate, MigrateError, Migration, Migrator};
use sqlx::{AnyConnection, Connection, Row};
use std::time::{Duration, Instant};

static SQLITE: Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("../migrations/postgres");

/// The table recording which aragora release applied each migration.
pub const HISTORY_TABLE: &str = "aragora_schema_history";

/// This binary's release, as recorded in [`HISTORY_TABLE`].
pub const RELEASE: &str = env!("CARGO_PKG_VERSION");

/// How often `pg_try_advisory_lock` is retried while another instance holds the lock.
const LOCK_RETRY: Duration = Duration::from_millis(250);
/// How often the waiting is reported again.
const WAIT_REPORT_EVERY: Duration = Duration::from_secs(5);

/// The up migrations this binary embeds for `backend`, oldest first.
pub fn known(backend: DbBackend) -> impl Iterator<Item = &'static Migration> {
    let migrator = match backend {
        DbBackend::Sqlite => &SQLITE,
        DbBackend::Postgres => &POSTGRES,
    };
    migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
}

/// The newest migration this binary knows for `backend`.
pub fn latest_known(backend: DbBackend) -> i64 {
    known(backend).map(|m| m.version).max().unwrap_or(0)
}

/// Lower-case hex of a checksum.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The first hex digits of a checksum, enough to tell two apart in a message.
fn short(checksum: &str) -> &str {
    &checksum[..checksum.len().min(12)]
}

/// A migration as the database records it.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    pub version: i64,
    pub description: String,
    pub applied_at_ms: Option<i64>,
    /// SHA-384 of the migration's SQL when it was applied, hex.
    pub checksum: String,
    /// False when sqlx recorded the migration as failed part-way.
    pub success: bool,
    /// The aragora release that applied it, when recorded.
    pub applied_by: Option<String>,
}

/// Where one known migration stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Applied,
    Pending,
    /// Applied, but with a checksum other than this binary's.
    ChecksumMismatch,
    /// Recorded as failed part-way.
    Failed,
}

/// One migration this binary knows, and the database's record of it.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub version: i64,
    pub description: String,
    pub state: State,
    /// This binary's checksum (hex).
    pub checksum: String,
    /// The database's record, when applied.
    pub applied: Option<Applied>,
}

/// The schema of one database against this binary's migrations.
#[derive(Debug, Clone, Serialize)]
pub struct SchemaStatus {
    pub backend: DbBackend,
    /// False when there is no database file yet (SQLite) or no `_sqlx_migrations` table.
    pub initialised: bool,
    /// Every migration this binary knows, oldest first.
    pub known: Vec<Entry>,
    /// Applied versions this binary does not know: the database is newer than this binary.
    pub unknown: Vec<Applied>,
    /// Whether [`HISTORY_TABLE`] exists.
    #[serde(skip)]
    pub history_table: bool,
}

/// What stops this binary from using a database as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaProblem {
    #[error("{}", newer_message(versions, applied_by.as_deref(), *latest_known))]
    Newer {
        /// The applied versions this binary does not know, oldest first.
        versions: Vec<i64>,
        /// The newest release recorded as applying one of them.
        applied_by: Option<String>,
        latest_known: i64,
    },
    #[error("migration {version} ({description}) was applied with checksum {}…, but this binary's migration {version} has checksum {}…: the migration was changed after it was applied{}; run the aragora release that applied it, or restore the database from the backup taken before it, and never edit an applied migration", short(database), short(binary), applied_by_note(applied_by.as_deref()))]
    ChecksumMismatch {
        version: i64,
        description: String,
        database: String,
        binary: String,
        applied_by: Option<String>,
    },
    #[error("migration {version} ({description}) is recorded as failed part-way; restore the backup taken before it (`aragora backup restore`), then run `aragora migrate up` again")]
    Failed { version: i64, description: String },
    #[error("{} pending ({}) and ARAGORA_AUTO_MIGRATE is false: take a backup (`aragora backup create`), run `aragora migrate up`, then start again", plural(versions.len()), list(versions))]
    Pending { versions: Vec<i64> },
}

fn applied_by_note(applied_by: Option<&str>) -> String {
    match applied_by {
        // Same release number, other SQL: a build from edited migration files.
        Some(RELEASE) => format!(
            " (applied by aragora {RELEASE}, this release, built from other migration files)"
        ),
        Some(release) => format!(" (applied by aragora {release})"),
        None => String::new(),
    }
}

fn plural(n: usize) -> String {
    if n == 1 {
        "1 migration is".into()
    } else {
        format!("{n} migrations are")
    }
}

fn list(versions: &[i64]) -> String {
    versions
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn newer_message(versions: &[i64], applied_by: Option<&str>, latest_known: i64) -> String {
    let run = match applied_by {
        Some(release) => format!("it was migrated by aragora {release}: run aragora {release} or newer"),
        None => format!(
            "the release that applied {} is not recorded: run the aragora release that added migration {} or a newer one",
            if versions.len() == 1 { "it" } else { "them" },
            versions.last().copied().unwrap_or_default()
        ),
    };
    format!(
        "the database's schema is newer than this binary: migration {} applied, but aragora {RELEASE} knows migrations up to {latest_known}; {run} (or restore a backup taken before that upgrade)",
        list(versions)
    )
}

impl SchemaStatus {
    /// The known migrations not applied yet.
    pub fn pending(&self) -> impl Iterator<Item = &Entry> {
        self.known.iter().filter(|e| e.state == State::Pending)
    }

    /// The newest applied version, known or not.
    pub fn current(&self) -> Option<i64> {
        self.known
            .iter()
            .filter_map(|e| e.applied.as_ref())
            .chain(&self.unknown)
            .map(|a| a.version)
            .max()
    }

    /// Why this binary must not use the database (newer schema first, then a changed
    /// migration, then a failed one); `None` when it may (pending migrations aside).
    pub fn problem(&self) -> Option<SchemaProblem> {
        if !self.unknown.is_empty() {
            let versions = self.unknown.iter().map(|a| a.version).collect();
            let applied_by = self.unknown.iter().rev().find_map(|a| a.applied_by.clone());
            return Some(SchemaProblem::Newer {
                versions,
                applied_by,
                latest_known: latest_known(self.backend),
            });
        }
        for entry in &self.known {
            let Some(applied) = &entry.applied else {
                continue;
            };
            match entry.state {
                State::ChecksumMismatch => {
                    return Some(SchemaProblem::ChecksumMismatch {
                        version: entry.version,
                        description: entry.description.clone(),
                        database: applied.checksum.clone(),
                        binary: entry.checksum.clone(),
                        applied_by: applied.applied_by.clone(),
                    })
                }
                State::Failed => {
                    return Some(SchemaProblem::Failed {
                        version: entry.version,
                        description: entry.description.clone(),
                    })
                }
                State::Applied | State::Pending => {}
            }
        }
        None
    }

    /// What this binary would find on a database that has nothing yet.
    fn empty(backend: DbBackend) -> Self {
        Self::compare(backend, false, Vec::new(), false)
    }

    fn compare(
        backend: DbBackend,
        initialised: bool,
        mut applied: Vec<Applied>,
        history_table: bool,
    ) -> Self {
        let known: Vec<Entry> = known(backend)
            .map(|migration| {
                let checksum = hex(&migration.checksum);
                let found = applied
                    .iter()
                    .position(|a| a.version == migration.version)
                    .map(|i| applied.remove(i));
                let state = match &found {
                    None => State::Pending,
                    Some(a) if !a.success => State::Failed,
                    Some(a) if a.checksum != checksum => State::ChecksumMismatch,
                    Some(_) => State::Applied,
                };
                Entry {
                    version: migration.version,
                    description: migration.description.to_string(),
                    state,
                    checksum,
                    applied: found,
                }
            })
            .collect();
        Self {
            backend,
            initialised,
            known,
            unknown: applied,
            history_table,
        }
    }
}

/// Why the schema could not be read or brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The database is not one this binary may use or migrate.
    #[error(transparent)]
    Refused(#[from] SchemaProblem),
    #[error("{}", lock_timeout_message(lock, *waited_secs, holder.as_ref()))]
    LockTimeout {
        /// Which lock: the advisory lock's id, or `file <path>`.
        lock: String,
        waited_secs: u64,
        holder: Option<LockHolder>,
    },
    #[error("migration {version} ({description}) failed: {source}; it was rolled back, fix the cause and run `aragora migrate up` again")]
    Apply {
        version: i64,
        description: String,
        source: MigrateError,
    },
    #[error("cannot take the migration lock file {}: {source}; check that the data directory is writable by this user", path.display())]
    LockFile {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("{0}")]
    Migrate(#[from] MigrateError),
}

fn lock_timeout_message(lock: &str, waited_secs: u64, holder: Option<&LockHolder>) -> String {
    format!(
        "another instance held the migration lock {lock}{} for all of {waited_secs} s; nothing was changed. Wait for its migration to end (or end that session), then run `aragora migrate up` again, with a longer --wait if it is a long migration",
        holder.map(|h| format!(" ({h})")).unwrap_or_default()
    )
}

/// The session holding the migration lock, from `pg_locks` and `pg_stat_activity`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockHolder {
    pub pid: i64,
    pub application_name: Option<String>,
    pub client_addr: Option<String>,
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {}", self.pid)?;
        if let Some(name) = &self.application_name {
            write!(f, ", application {name:?}")?;
        }
        if let Some(addr) = &self.client_addr {
            write!(f, ", from {addr}")?;
        }
        Ok(())
    }
}

/// A report while the migration lock is held by someone else.
#[derive(Debug, Clone)]
pub struct Waiting {
    /// Which lock: the advisory lock's id, or `file <path>`.
    pub lock: String,
    pub holder: Option<LockHolder>,
    pub waited: Duration,
    pub patience: Duration,
}

impl std::fmt::Display for Waiting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let holder = self
            .holder
            .as_ref()
            .map(|h| format!(" ({h})"))
            .unwrap_or_default();
        if self.waited.is_zero() {
            write!(
                f,
                "another instance holds the migration lock {}{holder}; waiting up to {} s…",
                self.lock,
                self.patience.as_secs()
            )
        } else {
            write!(
                f,
                "still waiting for the migration lock {}{holder}: {} s of {} s",
                self.lock,
                self.waited.as_secs(),
                self.patience.as_secs()
            )
        }
    }
}

/// What [`upgrade`] did.
#[derive(Debug, Clone, Serialize)]
pub struct Upgraded {
    /// The migrations applied now: version, description, milliseconds taken.
    pub applied: Vec<AppliedNow>,
    /// Known migrations found already applied (skipped).
    pub already_applied: usize,
    /// The lock taken: the advisory lock's id on PostgreSQL, `file <path>` for a SQLite file,
    /// none for an in-memory SQLite database.
    pub lock: Option<String>,
    /// How long the lock was waited for.
    pub waited_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AppliedNow {
    pub version: i64,
    pub description: String,
    pub took_ms: u64,
}

/// Does `table` exist (in the current schema on PostgreSQL)?
async fn table_exists(
    conn: &mut AnyConnection,
    backend: DbBackend,
    table: &str,
) -> Result<bool, sqlx::Error> {
    let sql = match backend {
        DbBackend::Sqlite => {
            "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = $1"
        }
        DbBackend::Postgres => {
            "SELECT COUNT(*) AS n FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name = $1"
        }
    };
    let n: i64 = sqlx::query(sql)
        .bind(table)
        .fetch_one(&mut *conn)
        .await?
        .try_get("n")?;
    Ok(n > 0)
}

/// Reads the schema's state through `conn`, writing nothing.
pub async fn read(
    conn: &mut AnyConnection,
    backend: DbBackend,
) -> Result<SchemaStatus, sqlx::Error> {
    if !table_exists(conn, backend, "_sqlx_migrations").await? {
        let history = table_exists(conn, backend, HISTORY_TABLE).await?;
        return Ok(SchemaStatus::compare(backend, false, Vec::new(), history));
    }
    // The Any driver decodes neither timestamps nor SQLite's booleans: both as integers.
    let sql = match backend {
        DbBackend::Sqlite => {
            "SELECT version, description, \
             CAST(strftime('%s', installed_on) AS INTEGER) * 1000 AS applied_at_ms, \
             CAST(success AS INTEGER) AS ok, checksum FROM _sqlx_migrations ORDER BY version"
        }
        DbBackend::Postgres => {
            "SELECT version, description, \
             CAST(EXTRACT(EPOCH FROM installed_on) * 1000 AS BIGINT) AS applied_at_ms, \
             CASE WHEN success THEN 1 ELSE 0 END AS ok, checksum FROM _sqlx_migrations ORDER BY version"
        }
    };
    let rows = sqlx::query(sql).fetch_all(&mut *conn).await?;
    let history_table = table_exists(conn, backend, HISTORY_TABLE).await?;
    let releases: Vec<(i64, String)> = if history_table {
        sqlx::query(&format!("SELECT version, applied_by FROM {HISTORY_TABLE}"))
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|row| Ok((row.try_get("version")?, row.try_get("applied_by")?)))
            .collect::<Result<_, sqlx::Error>>()?
    } else {
        Vec::new()
    };
    let mut applied = Vec::with_capacity(rows.len());
    for row in &rows {
        let version: i64 = row.try_get("version")?;
        let ok: i64 = row.try_get("ok")?;
        let checksum: Vec<u8> = row.try_get("checksum")?;
        applied.push(Applied {
            version,
            description: row.try_get("description")?,
            applied_at_ms: row.try_get("applied_at_ms")?,
            checksum: hex(&checksum),
            success: ok != 0,
            applied_by: releases
                .iter()
                .find(|(v, _)| *v == version)
                .map(|(_, r)| r.clone()),
        });
    }
    Ok(SchemaStatus::compare(backend, true, applied, history_table))
}

/// The schema of the database `config` names, read without creating or changing anything: a
/// SQLite file that does not exist yet is a database with every migration pending (and is not
/// created); a SQLite file is opened read-only.
pub async fn read_configured(config: &EngineConfig) -> Result<SchemaStatus, sqlx::Error> {
    sqlx::any::install_default_drivers();
    let url = match config.db_backend {
        DbBackend::Sqlite => {
            let path = config.sqlite_path();
            if !path.exists() {
                return Ok(SchemaStatus::empty(DbBackend::Sqlite));
            }
            format!("sqlite://{}?mode=ro", path.display())
        }
        DbBackend::Postgres => config.database_url(),
    };
    let mut conn = AnyConnection::connect(&url).await?;
    let status = read(&mut conn, config.db_backend).await;
    let _ = conn.close().await;
    status
}

/// Who holds the migration lock in this database, if anyone can be seen holding it.
async fn lock_holder(conn: &mut AnyConnection) -> Option<LockHolder> {
    // A bigint advisory key shows in pg_locks as classid (high half), objid (low half), objsubid 1.
    let row = sqlx::query(
        "SELECT l.pid::bigint AS pid, a.application_name AS application_name, \
         host(a.client_addr) AS client_addr \
         FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
         AND l.classid::bigint = $1 AND l.objid::bigint = $2 \
         AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
         LIMIT 1",
    )
    .bind(MIGRATION_LOCK_ID >> 32)
    .bind(MIGRATION_LOCK_ID & 0xffff_ffff)
    .fetch_optional(&mut *conn)
    .await
    .ok()??;
    let text = |name: &str| {
        row.try_get::<Option<String>, _>(name)
            .ok()
            .flatten()
            .filter(|s| !s.is_empty())
    };
    Some(LockHolder {
        pid: row.try_get("pid").ok()?,
        application_name: text("application_name"),
        client_addr: text("client_addr"),
    })
}

/// The lock that serialises migrations of one database.
enum MigrationLock {
    /// PostgreSQL: advisory lock [`MIGRATION_LOCK_ID`], a session lock held by the connection
    /// until unlocked or the connection dies.
    Advisory,
    /// SQLite: an exclusive lock on this file beside the database (SQLite has no advisory
    /// locks, and two instances that both read the same pending list would both apply it, the
    /// second failing half-way); held while the open file is kept.
    File(std::path::PathBuf),
}

impl std::fmt::Display for MigrationLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Advisory => write!(f, "{MIGRATION_LOCK_ID}"),
            Self::File(path) => write!(f, "file {}", path.display()),
        }
    }
}

/// One try at a migration lock: taken (with the open lock file for SQLite, to keep), or held
/// by another instance, with who that is when it can be seen.
enum Attempt {
    Taken(Option<std::fs::File>),
    Held(Option<LockHolder>),
}

impl MigrationLock {
    /// The lock for the database `conn` is connected to; `None` for an in-memory SQLite
    /// database, which nobody shares.
    async fn of(conn: &mut AnyConnection, backend: DbBackend) -> Result<Option<Self>, SchemaError> {
        if backend == DbBackend::Postgres {
            return Ok(Some(Self::Advisory));
        }
        let file: String = sqlx::query("SELECT file FROM pragma_database_list WHERE name = 'main'")
            .fetch_one(&mut *conn)
            .await?
            .try_get("file")?;
        Ok((!file.is_empty()).then(|| Self::File(sqlite_lock_file(std::path::Path::new(&file)))))
    }

    async fn attempt(&self, conn: &mut AnyConnection) -> Result<Attempt, SchemaError> {
        match self {
            Self::Advisory => {
                let got: bool = sqlx::query("SELECT pg_try_advisory_lock($1) AS got")
                    .bind(MIGRATION_LOCK_ID)
                    .fetch_one(&mut *conn)
                    .await?
                    .try_get("got")?;
                Ok(if got {
                    Attempt::Taken(None)
                } else {
                    Attempt::Held(lock_holder(conn).await)
                })
            }
            Self::File(path) => match aragora_config::lock_file::try_lock_exclusive(path) {
                Ok(Some(file)) => Ok(Attempt::Taken(Some(file))),
                Ok(None) => Ok(Attempt::Held(None)),
                Err(source) => Err(SchemaError::LockFile {
                    path: path.clone(),
                    source,
                }),
            },
        }
    }

    /// Tries the lock every [`LOCK_RETRY`] until `patience` has passed; `on_wait` hears at once
    /// that someone else holds it, then every [`WAIT_REPORT_EVERY`]. Try-locks rather than
    /// blocking ones so that a waiter can say who it waits for and give up at its deadline.
    /// The open lock file (SQLite) is returned to be kept while migrating.
    async fn take(
        &self,
        conn: &mut AnyConnection,
        patience: Duration,
        on_wait: &mut (dyn FnMut(&Waiting) + Send),
    ) -> Result<(Option<std::fs::File>, Duration), SchemaError> {
        let started = Instant::now();
        let mut reported: Option<Instant> = None;
        loop {
            let holder = match self.attempt(conn).await? {
                Attempt::Taken(file) => return Ok((file, started.elapsed())),
                Attempt::Held(holder) => holder,
            };
            let waited = started.elapsed();
            if waited >= patience {
                return Err(SchemaError::LockTimeout {
                    lock: self.to_string(),
                    waited_secs: waited.as_secs(),
                    holder,
                });
            }
            if reported.is_none_or(|at| at.elapsed() >= WAIT_REPORT_EVERY) {
                let report = Waiting {
                    lock: self.to_string(),
                    holder,
                    // The first report says "waiting", the later ones how long.
                    waited: if reported.is_none() {
                        Duration::ZERO
                    } else {
                        waited
                    },
                    patience,
                };
                on_wait(&report);
                reported = Some(Instant::now());
            }
            tokio::time::sleep(LOCK_RETRY.min(patience.saturating_sub(waited))).await;
        }
    }
}

/// The file whose lock serialises migrations of the SQLite database `database`.
pub fn sqlite_lock_file(database: &std::path::Path) -> std::path::PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".migrate-lock");
    name.into()
}

/// Applies what is pending through `conn` (the lock, if any, already held): the applied list
/// read again first, a refusal when the database is newer or a migration changed, each pending
/// migration in its own transaction, its release recorded after it.
async fn apply_pending(
    conn: &mut AnyConnection,
    backend: DbBackend,
) -> Result<(Vec<AppliedNow>, usize), SchemaError> {
    let status = read(conn, backend).await?;
    if let Some(problem) = status.problem() {
        return Err(problem.into());
    }
    let pending: Vec<i64> = status.pending().map(|e| e.version).collect();
    let already = status.known.len() - pending.len();
    if pending.is_empty() && status.history_table {
        // Nothing to write: a start against an up-to-date database changes nothing.
        return Ok((Vec::new(), already));
    }
    conn.ensure_migrations_table().await?;
    sqlx::query(&format!(
        "CREATE TABLE IF NOT EXISTS {HISTORY_TABLE} (\
         version BIGINT PRIMARY KEY, applied_by TEXT NOT NULL, applied_at_ms BIGINT NOT NULL)"
    ))
    .execute(&mut *conn)
    .await?;
    let mut applied = Vec::new();
    for migration in known(backend).filter(|m| pending.contains(&m.version)) {
        let took = conn
            .apply(migration)
            .await
            .map_err(|source| SchemaError::Apply {
                version: migration.version,
                description: migration.description.to_string(),
                source,
            })?;
        sqlx::query(&format!(
            "INSERT INTO {HISTORY_TABLE} (version, applied_by, applied_at_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (version) DO NOTHING"
        ))
        .bind(migration.version)
        .bind(RELEASE)
        .bind(crate::model::now_ms())
        .execute(&mut *conn)
        .await?;
        tracing::info!(
            version = migration.version,
            description = %migration.description,
            took_ms = took.as_millis() as u64,
            "migration applied"
        );
        applied.push(AppliedNow {
            version: migration.version,
            description: migration.description.to_string(),
            took_ms: took.as_millis() as u64,
        });
    }
    Ok((applied, already))
}

/// Brings `store`'s schema up to date: on PostgreSQL under the runbook's advisory lock, waiting
/// at most `patience` for another instance to release it (`on_wait` hears about it); on SQLite
/// under an exclusive lock on a file beside the database, waited for the same way.
/// Refuses, changing nothing, a database newer than this binary or with a changed migration.
pub async fn upgrade(
    store: &SqlStore,
    patience: Duration,
    on_wait: &mut (dyn FnMut(&Waiting) + Send),
) -> Result<Upgraded, SchemaError> {
    let backend = crate::store::DebateStore::backend(store);
    let mut conn = store.pool().acquire().await?;
    let lock = MigrationLock::of(&mut conn, backend).await?;
    // The SQLite lock file stays open (locked) until this function returns.
    let (_lock_file, waited) = match &lock {
        Some(lock) => lock.take(&mut conn, patience, on_wait).await?,
        None => (None, Duration::ZERO),
    };
    let result = apply_pending(&mut conn, backend).await;
    if backend == DbBackend::Postgres {
        // A session-level lock: released here, or by PostgreSQL when the connection dies.
        if let Err(err) = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(MIGRATION_LOCK_ID)
            .execute(&mut *conn)
            .await
        {
            tracing::warn!(error = %err, "cannot release the migration lock; closing the connection releases it");
            conn.detach();
        }
    }
    let (applied, already_applied) = result?;
    Ok(Upgraded {
        applied,
        already_applied,
        lock: lock.map(|lock| lock.to_string()),
        waited_ms: waited.as_millis() as u64,
    })
}

/// What a start does with the schema: with `ARAGORA_AUTO_MIGRATE` (the default) [`upgrade`],
/// waiting up to `ARAGORA_MIGRATION_LOCK_WAIT`; without, a check that refuses a database with
/// anything pending. Either way a newer or changed schema is refused.
pub async fn prepare(
    store: &SqlStore,
    config: &EngineConfig,
    on_wait: &mut (dyn FnMut(&Waiting) + Send),
) -> Result<(), SchemaError> {
    if config.auto_migrate {
        let patience = Duration::from_secs(config.migration_lock_wait_secs);
        upgrade(store, patience, on_wait).await.map(|_| ())
    } else {
        let mut conn = store.pool().acquire().await?;
        let status = read(&mut conn, config.db_backend).await?;
        if let Some(problem) = status.problem() {
            return Err(problem.into());
        }
        let versions: Vec<i64> = status.pending().map(|e| e.version).collect();
        if versions.is_empty() {
            Ok(())
        } else {
            Err(SchemaProblem::Pending { versions }.into())
        }
    }
}
