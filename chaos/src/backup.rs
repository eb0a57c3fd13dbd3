//! The backup operations the CLI and the scheduler share: create, verify, restore, and noting
//! a backup in the DR log. Each checks before it changes anything: a restore refuses a backup
//! whose checksum, backend, schema version or encryption key does not fit before the target is
//! touched, and checks the restored rows against the manifest before the copy replaces
//! anything.
//!
//! With `ARAGORA_ENCRYPTION_KEY` set, new backups are encrypted ([`crate::encryption`]). An
//! encrypted backup is decrypted into a temporary file, every chunk authenticated, before
//! anything reaches the target: SQLite's restored copy is a file beside the target renamed over
//! it only once checked; PostgreSQL's dump is decrypted in full into a private temporary
//! directory before `pg_restore` runs. Unencrypted backups restore with or without a key.

use crate::config::DrConfig;
use crate::encryption::{self, AuthenticationFailed, BackupKey, OpenError};
use crate::error::DrError;
use crate::facts::{self, Facts};
use crate::manifest::{self, Encryption, Manifest};
use crate::time::Timestamp;
use crate::{postgres, sqlite};
use aragora_engine::config::DbBackend;
use aragora_engine::dr_log::BackupRecord;
use aragora_engine::store::{DebateStore, SqlStore};
use aragora_engine::EngineConfig;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Where a restore writes.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// A SQLite database file.
    Sqlite(PathBuf),
    /// A PostgreSQL connection string.
    Postgres(String),
}

impl Target {
    /// The engine's own database.
    pub fn primary(engine: &EngineConfig) -> Self {
        match engine.db_backend {
            DbBackend::Sqlite => Self::Sqlite(sqlite::live_path(&engine.data_dir)),
            DbBackend::Postgres => Self::Postgres(engine.database_url()),
        }
    }

    /// `postgres://...` or a path to a SQLite file (a directory means its `aragora.db`).
    pub fn parse(text: &str) -> Self {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Self::Postgres(text.to_string());
        }
        let path = PathBuf::from(text);
        if path.is_dir() {
            Self::Sqlite(sqlite::live_path(&path))
        } else {
            Self::Sqlite(path)
        }
    }

    pub fn backend(&self) -> DbBackend {
        match self {
            Self::Sqlite(_) => DbBackend::Sqlite,
            Self::Postgres(_) => DbBackend::Postgres,
        }
    }

    /// For messages: the file, or the database name (never the password).
    pub fn describe(&self) -> String {
        match self {
            Self::Sqlite(path) => path.display().to_string(),
            Self::Postgres(url) => reqwest::Url::parse(url)
                .map(|u| format!("{}{}", u.host_str().unwrap_or(""), u.path()))
                .unwrap_or_else(|_| "the PostgreSQL database".into()),
        }
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, DrError> + Send + 'static,
) -> Result<T, DrError> {
    tokio::task::spawn_blocking(work).await.map_err(|err| {
        DrError::Task(format!(
            "a blocking task failed: {err}; this is a bug, please report it"
        ))
    })?
}

/// Takes a backup of the engine's database into the backup directory.
pub async fn create(
    engine: &EngineConfig,
    dr: &DrConfig,
    visible: bool,
) -> Result<Manifest, DrError> {
    let key = dr.backup_key()?;
    let dir = dr.backup_dir(engine);
    std::fs::create_dir_all(&dir).map_err(DrError::io(&dir))?;
    let started = Instant::now();
    let created_at = Timestamp::now();
    let created_at_ms = created_at.ms();
    let id = manifest::new_id(created_at_ms);
    let (artifact, compression) = match engine.db_backend {
        DbBackend::Sqlite => (format!("{id}.sqlite.zst"), "zstd"),
        DbBackend::Postgres => (format!("{id}.pgdump"), "pg_dump-custom"),
    };
    let artifact = match key {
        Some(_) => format!("{artifact}.enc"),
        None => artifact,
    };
    let partial = dir.join(format!("{artifact}.partial"));
    let taken = take(engine, &dir, &partial, key.as_ref(), visible).await;
    let (facts, artifact_bytes, sha256) = match taken {
        Ok(taken) => taken,
        Err(err) => {
            let _ = std::fs::remove_file(&partial);
            return Err(err);
        }
    };
    let final_path = dir.join(&artifact);
    std::fs::rename(&partial, &final_path).map_err(DrError::io(&final_path))?;
    let manifest = Manifest {
        format: match key {
            Some(_) => manifest::ENCRYPTED_MANIFEST_FORMAT,
            None => manifest::MANIFEST_FORMAT,
        },
        id,
        created_at: created_at.to_string(),
        created_at_ms,
        backend: engine.db_backend.as_str().to_string(),
        schema_version: facts.schema_version,
        row_counts: facts.row_counts,
        newest_data_at_ms: facts.newest_data_at_ms,
        artifact,
        artifact_bytes,
        sha256,
        compression: compression.to_string(),
        aragora_version: env!("CARGO_PKG_VERSION").to_string(),
        duration_seconds: started.elapsed().as_secs_f64(),
        encryption: key.map(|key| Encryption {
            algorithm: encryption::ALGORITHM.to_string(),
            key_id: key.id().to_string(),
        }),
    };
    manifest.write(&dir)?;
    Ok(manifest)
}

/// Writes the artifact to `partial` (encrypted with `key` when given); the snapshot's facts,
/// the artifact's size and SHA-256.
async fn take(
    engine: &EngineConfig,
    dir: &Path,
    partial: &Path,
    key: Option<&BackupKey>,
    visible: bool,
) -> Result<(Facts, u64, String), DrError> {
    match engine.db_backend {
        DbBackend::Sqlite => {
            let scratch = tempfile::Builder::new()
                .prefix(".snapshot-")
                .tempdir_in(dir)
                .map_err(DrError::io(dir))?;
            let snapshot = scratch.path().join("aragora.db");
            let facts = sqlite::snapshot(&sqlite::live_path(&engine.data_dir), &snapshot).await?;
            let (partial, key) = (partial.to_path_buf(), key.cloned());
            let (bytes, sha256) =
                blocking(move || sqlite::compress(&snapshot, &partial, key.as_ref(), visible))
                    .await?;
            Ok((facts, bytes, sha256))
        }
        DbBackend::Postgres => postgres::dump(&engine.database_url(), partial, key, visible).await,
    }
}

/// The primary's connection string; for SQLite with `sqlite_mode` (`ro`, `rw`), and an error
/// when the file does not exist rather than a new empty database.
pub fn primary_url(engine: &EngineConfig, sqlite_mode: &str) -> Result<String, DrError> {
    match engine.db_backend {
        DbBackend::Sqlite => {
            let path = sqlite::live_path(&engine.data_dir);
            if !path.exists() {
                return Err(DrError::NoSqliteDatabase { path });
            }
            Ok(format!("sqlite://{}?mode={sqlite_mode}", path.display()))
        }
        DbBackend::Postgres => Ok(engine.database_url()),
    }
}

/// Opens the primary for its DR log. Never creates a SQLite file: a backup or drill of a
/// database that does not exist must not leave an empty one behind.
pub async fn dr_log(engine: &EngineConfig) -> Result<SqlStore, DrError> {
    let url = primary_url(engine, "rw")?;
    SqlStore::connect(engine.db_backend, &url, 1)
        .await
        .map_err(|err| dr_log_error("opening the DR log", err))
}

/// A DR log failure, with the likely cause when the table is missing.
pub fn dr_log_error(what: &'static str, err: impl std::fmt::Display) -> DrError {
    DrError::Tool {
        tool: what,
        detail: format!(
            "{err}; the DR log tables come with migration 3: start an engine of this version on the database once"
        ),
    }
}

/// Notes a completed backup in the primary's DR log (for `aragora_backup_last_success_...`).
pub async fn record(engine: &EngineConfig, manifest: &Manifest) -> Result<(), DrError> {
    let store = dr_log(engine).await?;
    let recorded = store
        .record_backup(&BackupRecord {
            id: manifest.id.clone(),
            created_at_ms: manifest.created_at_ms,
            backend: manifest.backend.clone(),
            bytes: manifest.artifact_bytes as i64,
            sha256: manifest.sha256.clone(),
        })
        .await;
    store.close().await;
    recorded.map_err(|err| dr_log_error("recording the backup in the DR log", err))
}

/// What can be checked without a database: the manifest fits `backend` and this binary, the
/// artifact's size and SHA-256 match it, and an encrypted artifact is the manifest's and
/// `key` is its key. The key to decrypt with; `None` for an unencrypted backup.
pub async fn preflight(
    manifest: &Manifest,
    dir: &Path,
    backend: DbBackend,
    key: Option<&BackupKey>,
    visible: bool,
) -> Result<Option<BackupKey>, DrError> {
    if manifest.backend != backend.as_str() {
        return Err(DrError::BackendMismatch {
            id: manifest.id.clone(),
            backup: manifest.backend.clone(),
            target: backend.as_str().to_string(),
        });
    }
    let supported = SqlStore::latest_schema_version(backend);
    if manifest.schema_version > supported {
        return Err(DrError::SchemaTooNew {
            id: manifest.id.clone(),
            backup: manifest.schema_version,
            supported,
            made_by: manifest.aragora_version.clone(),
        });
    }
    let (checked, dir) = (manifest.clone(), dir.to_path_buf());
    let header = blocking(move || {
        checked.check_artifact(&dir, visible)?;
        let path = checked.artifact_path(&dir);
        encryption::inspect(&path).map_err(DrError::io(&path))
    })
    .await?;
    let header = header.map_err(|err| corrupted(manifest, err.to_string()))?;
    match (&manifest.encryption, header) {
        (None, None) => Ok(None),
        (Some(named), Some(header)) => {
            if named.key_id != header.key_id.to_string() {
                return Err(corrupted(
                    manifest,
                    format!(
                        "its manifest names key {}, its artifact key {}",
                        named.key_id, header.key_id
                    ),
                ));
            }
            encryption::check_key(&header, key).map_err(|err| match err {
                OpenError::NoKey { backup } => DrError::NoKey {
                    id: manifest.id.clone(),
                    backup_key: backup.to_string(),
                },
                OpenError::WrongKey { backup, configured } => DrError::WrongKey {
                    id: manifest.id.clone(),
                    backup_key: backup.to_string(),
                    configured_key: configured.to_string(),
                },
            })?;
            Ok(key.cloned())
        }
        (None, Some(_)) => Err(corrupted(
            manifest,
            "its artifact is encrypted but its manifest does not say so",
        )),
        (Some(_), None) => Err(corrupted(
            manifest,
            "its manifest says it is encrypted but its artifact is not",
        )),
    }
}

/// What a failed read of an artifact's content means: tampering when the encryption does not
/// authenticate, else a damaged artifact (`what` it does not do).
fn unreadable(manifest: &Manifest, what: &str, err: std::io::Error) -> DrError {
    if AuthenticationFailed::is(&err) {
        corrupted(manifest, err.to_string())
    } else {
        corrupted(manifest, format!("it does not {what}: {err}"))
    }
}

fn corrupted(manifest: &Manifest, detail: impl Into<String>) -> DrError {
    DrError::Corrupted {
        id: manifest.id.clone(),
        detail: detail.into(),
    }
}

/// Checks a backup without touching the live database: manifest, checksum, then a restore
/// into a scratch database whose schema version and rows must match the manifest.
pub async fn verify(
    engine: &EngineConfig,
    dr: &DrConfig,
    id: Option<&str>,
    visible: bool,
) -> Result<Manifest, DrError> {
    let key = dr.backup_key()?;
    let dir = dr.backup_dir(engine);
    let manifest = manifest::find(&dir, id)?;
    let backend = match manifest.backend.as_str() {
        "sqlite" => DbBackend::Sqlite,
        "postgres" => DbBackend::Postgres,
        other => {
            return Err(corrupted(
                &manifest,
                format!("its manifest names an unknown backend {other:?}"),
            ))
        }
    };
    let mut scratch_engine = engine.clone();
    scratch_engine.db_backend = backend;
    let scratch = Scratch::create(&scratch_engine, &dir, ".verify-").await?;
    let restored = restore_manifest(
        &manifest,
        &dir,
        &scratch.target,
        false,
        key.as_ref(),
        visible,
    )
    .await;
    let dropped = scratch.drop(&scratch_engine).await;
    restored?;
    dropped?;
    Ok(manifest)
}

/// A scratch database that verifies and drills restore into (never the live one): a new SQLite
/// file in a temporary directory beside the backups, or a new PostgreSQL database on the
/// primary's server. [`Scratch::drop`] removes the PostgreSQL database; the directory goes
/// when the value does.
pub struct Scratch {
    pub target: Target,
    /// The restored engine's data directory (and, for SQLite, the database's).
    pub dir: tempfile::TempDir,
    postgres: Option<postgres::Scratch>,
}

impl Scratch {
    pub async fn create(
        engine: &EngineConfig,
        backup_dir: &Path,
        prefix: &str,
    ) -> Result<Self, DrError> {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(backup_dir)
            .map_err(DrError::io(backup_dir))?;
        match engine.db_backend {
            DbBackend::Sqlite => Ok(Self {
                target: Target::Sqlite(crate::sqlite::live_path(dir.path())),
                dir,
                postgres: None,
            }),
            DbBackend::Postgres => {
                let scratch = postgres::create_scratch(&engine.database_url()).await?;
                Ok(Self {
                    target: Target::Postgres(scratch.url.clone()),
                    dir,
                    postgres: Some(scratch),
                })
            }
        }
    }

    /// A connection string for reading the restored copy.
    pub fn url(&self) -> String {
        match &self.target {
            Target::Sqlite(path) => format!("sqlite://{}?mode=ro", path.display()),
            Target::Postgres(url) => url.clone(),
        }
    }

    pub async fn drop(self, engine: &EngineConfig) -> Result<(), DrError> {
        if let Some(scratch) = &self.postgres {
            postgres::drop_scratch(&engine.database_url(), scratch).await?;
        }
        Ok(())
    }
}

/// Decrypts (with `key`) and decompresses a SQLite artifact to `restored` and checks it; its
/// facts.
async fn unpack_sqlite(
    manifest: &Manifest,
    dir: &Path,
    restored: &Path,
    key: Option<BackupKey>,
    visible: bool,
) -> Result<Facts, DrError> {
    let (artifact, target) = (manifest.artifact_path(dir), restored.to_path_buf());
    blocking(move || {
        Ok(sqlite::decompress(
            &artifact,
            &target,
            key.as_ref(),
            visible,
        ))
    })
    .await?
    .map_err(|err| unreadable(manifest, "decompress", err))?;
    sqlite::check(restored)
        .await?
        .map_err(|detail| corrupted(manifest, detail))
}

/// Restores the backup `id` (or the latest) into `target`, refusing a target that already holds
/// an aragora database (an engine may be using it) unless `force`; decrypts an encrypted
/// backup with `key`; checks the restored copy against the manifest. The restored facts.
pub async fn restore(
    dir: &Path,
    id: Option<&str>,
    target: &Target,
    force: bool,
    key: Option<&BackupKey>,
    visible: bool,
) -> Result<(Manifest, Facts), DrError> {
    let manifest = manifest::find(dir, id)?;
    restore_manifest(&manifest, dir, target, force, key, visible)
        .await
        .map(|facts| (manifest, facts))
}

/// `pg_restore` into `url`, then the restored rows checked against the manifest.
async fn restore_checked(
    manifest: &Manifest,
    url: &str,
    artifact: &Path,
    replace: bool,
    visible: bool,
) -> Result<Facts, DrError> {
    postgres::restore(url, artifact, replace, visible).await?;
    let mut conn = facts::connect(url).await?;
    let facts = facts::read(&mut conn).await;
    let _ = sqlx::Connection::close(conn).await;
    let facts = facts?;
    let differences = facts::differences(manifest, &facts);
    if !differences.is_empty() {
        return Err(corrupted(
            manifest,
            format!("after pg_restore: {}", differences.join("; ")),
        ));
    }
    Ok(facts)
}

/// Decrypts an encrypted PostgreSQL dump in full, authenticating every chunk, into a private
/// temporary directory beside the backups (removed when the value goes): `pg_restore` writes
/// into the target as it reads, so it must never see a chunk that might not authenticate.
async fn decrypted_dump(
    manifest: &Manifest,
    dir: &Path,
    key: BackupKey,
    visible: bool,
) -> Result<(tempfile::TempDir, PathBuf), DrError> {
    // tempfile makes the directory readable by its owner only.
    let scratch = tempfile::Builder::new()
        .prefix(".decrypted-")
        .tempdir_in(dir)
        .map_err(DrError::io(dir))?;
    let (artifact, plain) = (
        manifest.artifact_path(dir),
        scratch.path().join("backup.pgdump"),
    );
    let target = plain.clone();
    blocking(move || {
        Ok((|| -> std::io::Result<()> {
            let total = std::fs::metadata(&artifact)?.len();
            let bar = crate::progress::bytes(total, "decrypting", visible);
            let mut content = manifest::read_artifact(&artifact, Some(&key), &bar)?;
            let mut output = std::fs::File::create(&target)?;
            std::io::copy(&mut content, &mut output)?;
            output.sync_all()?;
            bar.finish_and_clear();
            Ok(())
        })())
    })
    .await?
    .map_err(|err| unreadable(manifest, "decrypt", err))?;
    Ok((scratch, plain))
}

pub async fn restore_manifest(
    manifest: &Manifest,
    dir: &Path,
    target: &Target,
    force: bool,
    key: Option<&BackupKey>,
    visible: bool,
) -> Result<Facts, DrError> {
    let decrypt_with = preflight(manifest, dir, target.backend(), key, visible).await?;
    let refuse = |debates: i64| DrError::TargetNotEmpty {
        target: target.describe(),
        debates,
    };
    let facts = match target {
        Target::Sqlite(path) => {
            if let Some(debates) = sqlite::debate_count(path).await {
                if !force {
                    return Err(refuse(debates));
                }
            }
            let parent = path.parent().unwrap_or(Path::new("."));
            std::fs::create_dir_all(parent).map_err(DrError::io(parent))?;
            let restoring = PathBuf::from(format!("{}.restoring", path.display()));
            let unpacked = unpack_sqlite(manifest, dir, &restoring, decrypt_with, visible).await;
            let facts = match unpacked {
                Ok(facts) => facts,
                Err(err) => {
                    let _ = std::fs::remove_file(&restoring);
                    return Err(err);
                }
            };
            let differences = facts::differences(manifest, &facts);
            if !differences.is_empty() {
                let _ = std::fs::remove_file(&restoring);
                return Err(corrupted(manifest, differences.join("; ")));
            }
            sqlite::install(&restoring, path)?;
            facts
        }
        Target::Postgres(url) => {
            let existing = postgres::debate_count(url).await?;
            if let Some(debates) = existing {
                if !force {
                    return Err(refuse(debates));
                }
            }
            // The decrypted copy lives until this arm ends: a rejected restore's cleanup reads
            // its table of contents.
            let (_decrypted, artifact) = match decrypt_with {
                Some(key) => {
                    let (scratch, plain) = decrypted_dump(manifest, dir, key, visible).await?;
                    (Some(scratch), plain)
                }
                None => (None, manifest.artifact_path(dir)),
            };
            let restored = restore_checked(manifest, url, &artifact, existing.is_some(), visible);
            match restored.await {
                Ok(facts) => facts,
                Err(err) if existing.is_none() => {
                    // pg_restore writes into the target itself: take its copy out of the
                    // database it found empty. A forced restore's target is left alone, since
                    // the failure may have come before pg_restore replaced anything.
                    if let Err(cleanup) = postgres::remove_restored(url, &artifact).await {
                        tracing::error!(error = %cleanup, "cannot remove a rejected restore's tables; drop them by hand before using the database");
                    }
                    return Err(err);
                }
                Err(err) => return Err(err),
            }
        }
    };
    Ok(facts)
}
