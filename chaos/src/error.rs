//! What can go wrong with a backup, a restore or a drill, each saying what to do next.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DrError {
    #[error("no backup in {dir}; take one with `aragora backup create`")]
    NoBackup { dir: PathBuf },
    #[error("no backup {id} in {dir}; `aragora backup list` shows the backups there are")]
    NotFound { id: String, dir: PathBuf },
    #[error("backup {id} is corrupted ({detail}); do not restore it: pick another from `aragora backup list` and check it with `aragora backup verify ID`")]
    Corrupted { id: String, detail: String },
    #[error("backup {id} is a {backup} backup but the target database is {target}; restore it into a {backup} database, or pick a {target} backup")]
    BackendMismatch {
        id: String,
        backup: String,
        target: String,
    },
    #[error("backup {id} has schema version {backup}, newer than this aragora's {supported} (it was made by aragora {made_by}); restore it with that version or a newer one")]
    SchemaTooNew {
        id: String,
        backup: i64,
        supported: i64,
        made_by: String,
    },
    #[error("the target {target} already holds an aragora database ({debates} debates) that an engine may be using; stop every engine using it and pass --force to replace it, or restore --into a new database")]
    TargetNotEmpty { target: String, debates: i64 },
    #[error("there is no SQLite database at {path}; check ARAGORA_DATA_DIR (or --data-dir), or start the engine once to create it")]
    NoSqliteDatabase { path: PathBuf },
    #[error("backup {id} is encrypted (key {backup_key}) and ARAGORA_ENCRYPTION_KEY is not set; set ARAGORA_ENCRYPTION_KEY to the key this backup was made with")]
    NoKey { id: String, backup_key: String },
    #[error("backup {id} was encrypted with key {backup_key}, but ARAGORA_ENCRYPTION_KEY is key {configured_key}; set ARAGORA_ENCRYPTION_KEY to the key this backup was made with (a key's id is the first 16 hex characters of its SHA-256)")]
    WrongKey {
        id: String,
        backup_key: String,
        configured_key: String,
    },
    /// A malformed `ARAGORA_ENCRYPTION_KEY` (the message never quotes it).
    #[error("{0}")]
    InvalidKey(String),
    #[error("{tool} failed: {detail}")]
    Tool { tool: &'static str, detail: String },
    #[error("database error while {during}: {source}")]
    Database { during: String, source: sqlx::Error },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A background task that died (a panic in blocking file work).
    #[error("{0}")]
    Task(String),
}

impl DrError {
    /// An I/O error on `path`.
    pub fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DrError + '_ {
        move |source| DrError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// A database error while doing `during`.
    pub fn db(during: &str) -> impl FnOnce(sqlx::Error) -> DrError + '_ {
        move |source| DrError::Database {
            during: during.to_string(),
            source,
        }
    }
}
