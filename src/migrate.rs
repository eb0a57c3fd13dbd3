//! `aragora migrate status|check|up`: the runbook's Procedure 5 (check, back up, upgrade under
//! the advisory lock, check again) against the configured database, read as `serve` reads it
//! (`ARAGORA_DB_BACKEND`, `DATABASE_URL`, the data directory). The work is
//! `aragora_engine::schema`'s, the same code the engine runs at start.
//!
//! `status` and `check` only read: a SQLite file that does not exist yet shows every migration
//! pending and is not created; PostgreSQL is only queried.
//!
//! Exit codes (every subcommand):
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done; `check`: the schema is up to date |
//! | 1 | `check`: migrations are pending (run `aragora migrate up`) |
//! | 2 | the database is newer than this binary, an applied migration's checksum differs, or one failed part-way (refused; nothing changed) |
//! | 3 | the database could not be read, or a migration failed (rolled back) |
//! | 75 | `up`: another instance held the migration lock for all of `--wait` (nothing changed; try again) |
//! | 78 | configuration refused |

use crate::dr::Output;
use crate::token::{load_engine, StoreArgs};
use aragora_chaos::time::Timestamp;
use aragora_engine::schema::{self, Entry, SchemaError, SchemaStatus, State};
use aragora_engine::store::{DebateStore, SqlStore, MIGRATION_LOCK_ID};
use aragora_engine::{DbBackend, EngineConfig};
use clap::{Args, Subcommand};
use serde_json::json;
use std::process::ExitCode;
use std::time::Duration;

pub const EXIT_PENDING: u8 = 1;
pub const EXIT_INCOMPATIBLE: u8 = 2;
pub const EXIT_DATABASE: u8 = 3;
pub const EXIT_LOCK_TIMEOUT: u8 = 75;

#[derive(Subcommand)]
pub enum MigrateCommand {
    /// Every migration this binary knows, applied (when, checksum, by which release) or pending;
    /// applied versions this binary does not know; changed checksums. Reads only.
    Status(ReadArgs),
    /// Exit 0 when the schema is up to date; 1 when migrations are pending; 2 when the database
    /// is newer than this binary or a migration changed; 3 when it cannot be read. Reads only.
    Check(ReadArgs),
    /// Apply the pending migrations (PostgreSQL: under advisory lock 2089872453, taken with
    /// pg_try_advisory_lock, waiting for another instance that holds it). Take a backup first
    /// (`aragora backup create`).
    Up(UpArgs),
}

#[derive(Args)]
pub struct ReadArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[arg(long, value_enum, default_value_t)]
    output: Output,
}

#[derive(Args)]
pub struct UpArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Seconds to wait while another instance holds the migration lock (overrides
    /// ARAGORA_MIGRATION_LOCK_WAIT, default 300).
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(0..=86_400))]
    wait: Option<u64>,
    #[arg(long, value_enum, default_value_t)]
    output: Output,
}

pub async fn run(command: MigrateCommand) -> ExitCode {
    match command {
        MigrateCommand::Status(args) => read(&args, false).await,
        MigrateCommand::Check(args) => read(&args, true).await,
        MigrateCommand::Up(args) => up(&args).await,
    }
}

fn exit(code: u8) -> ExitCode {
    ExitCode::from(code)
}

/// Where the database is, for people: the SQLite file, or the URL without its password.
fn location(engine: &EngineConfig) -> String {
    match engine.db_backend {
        DbBackend::Sqlite => engine.sqlite_path().display().to_string(),
        DbBackend::Postgres => aragora_config::redact_url(&engine.database_url()),
    }
}

/// A database error as shown: never the password.
fn shown(engine: &EngineConfig, err: &impl std::fmt::Display) -> String {
    let secrets: Vec<String> = aragora_config::url_password(&engine.database_url())
        .map(str::to_string)
        .into_iter()
        .collect();
    aragora_config::scrub(&err.to_string(), &secrets)
}

/// What `check` concludes, with its exit code and the next step.
fn verdict(status: &SchemaStatus) -> (u8, &'static str, String) {
    if let Some(problem) = status.problem() {
        return (EXIT_INCOMPATIBLE, state_name(&problem), problem.to_string());
    }
    let pending: Vec<String> = status
        .pending()
        .map(|e| format!("{} ({})", e.version, e.description))
        .collect();
    if pending.is_empty() {
        (
            0,
            "up_to_date",
            format!(
                "the schema is up to date (version {}, this binary's latest)",
                schema::latest_known(status.backend)
            ),
        )
    } else {
        (
            EXIT_PENDING,
            "pending",
            format!(
                "{} pending: {}; take a backup (`aragora backup create`), then run `aragora migrate up`",
                if pending.len() == 1 {
                    "1 migration is".to_string()
                } else {
                    format!("{} migrations are", pending.len())
                },
                pending.join(", ")
            ),
        )
    }
}

fn state_name(problem: &schema::SchemaProblem) -> &'static str {
    match problem {
        schema::SchemaProblem::Newer { .. } => "newer_than_binary",
        schema::SchemaProblem::ChecksumMismatch { .. } => "checksum_mismatch",
        schema::SchemaProblem::Failed { .. } => "failed",
        schema::SchemaProblem::Pending { .. } => "pending",
    }
}

/// The first 16 hex digits of a checksum (a stored one may be anything, so never panics).
fn head(checksum: &str) -> &str {
    checksum.get(..16).unwrap_or(checksum)
}

fn at(ms: Option<i64>) -> String {
    ms.map_or("-".into(), |ms| Timestamp::from_ms(ms).to_string())
}

fn entry_json(entry: &Entry) -> serde_json::Value {
    let applied = entry.applied.as_ref();
    json!({
        "version": entry.version,
        "description": entry.description,
        "state": entry.state,
        "checksum": entry.checksum,
        "applied_at": applied.and_then(|a| a.applied_at_ms).map(|ms| Timestamp::from_ms(ms).to_string()),
        "applied_at_ms": applied.and_then(|a| a.applied_at_ms),
        "applied_by": applied.and_then(|a| a.applied_by.clone()),
        "database_checksum": applied.map(|a| a.checksum.clone()),
    })
}

fn status_json(engine: &EngineConfig, status: &SchemaStatus) -> serde_json::Value {
    let (code, state, message) = verdict(status);
    json!({
        "backend": status.backend,
        "database": location(engine),
        "initialised": status.initialised,
        "binary_release": schema::RELEASE,
        "latest_known": schema::latest_known(status.backend),
        "current": status.current(),
        "state": state,
        "up_to_date": code == 0,
        "message": message,
        "migrations": status.known.iter().map(entry_json).collect::<Vec<_>>(),
        "pending": status.pending().map(|e| e.version).collect::<Vec<_>>(),
        "newer_than_binary": status.unknown.iter().map(|a| json!({
            "version": a.version,
            "description": a.description,
            "applied_at": at(a.applied_at_ms),
            "applied_at_ms": a.applied_at_ms,
            "applied_by": a.applied_by,
            "checksum": a.checksum,
        })).collect::<Vec<_>>(),
        "checksum_mismatches": status.known.iter().filter(|e| e.state == State::ChecksumMismatch).map(|e| json!({
            "version": e.version,
            "description": e.description,
            "database_checksum": e.applied.as_ref().map(|a| a.checksum.clone()),
            "binary_checksum": e.checksum,
        })).collect::<Vec<_>>(),
    })
}

fn print_status_text(engine: &EngineConfig, status: &SchemaStatus) {
    println!(
        "{} database {}: schema version {}, this binary (aragora {}) knows up to {}",
        status.backend.as_str(),
        location(engine),
        status
            .current()
            .map_or("none (nothing applied yet)".into(), |v| v.to_string()),
        schema::RELEASE,
        schema::latest_known(status.backend)
    );
    if !status.initialised {
        println!(
            "  no migrations recorded yet{}",
            match status.backend {
                DbBackend::Sqlite if !engine.sqlite_path().exists() =>
                    " (the file does not exist; `aragora migrate up` or the first start creates it)",
                _ => "",
            }
        );
    }
    println!(
        "  {:<8} {:<20} {:<17} {:<25} {:<10} CHECKSUM (sha384)",
        "VERSION", "DESCRIPTION", "STATE", "APPLIED AT", "BY"
    );
    for entry in &status.known {
        let applied = entry.applied.as_ref();
        let checksum = match entry.state {
            State::ChecksumMismatch => format!(
                "{} (database) != {} (binary)",
                applied.map_or("", |a| head(&a.checksum)),
                head(&entry.checksum)
            ),
            _ => head(&entry.checksum).to_string(),
        };
        println!(
            "  {:<8} {:<20} {:<17} {:<25} {:<10} {checksum}…",
            entry.version,
            entry.description,
            match entry.state {
                State::Applied => "applied",
                State::Pending => "pending",
                State::ChecksumMismatch => "CHECKSUM MISMATCH",
                State::Failed => "FAILED",
            },
            at(applied.and_then(|a| a.applied_at_ms)),
            applied.and_then(|a| a.applied_by.as_deref()).unwrap_or("-"),
        );
    }
    for unknown in &status.unknown {
        println!(
            "  {:<8} {:<20} {:<17} {:<25} {:<10} {}…",
            unknown.version,
            unknown.description,
            "NEWER THAN BINARY",
            at(unknown.applied_at_ms),
            unknown.applied_by.as_deref().unwrap_or("-"),
            head(&unknown.checksum)
        );
    }
    println!("{}", verdict(status).2);
}

/// `status` (exit 0 once read) and `check` (exit by the verdict).
async fn read(args: &ReadArgs, check: bool) -> ExitCode {
    let engine = match load_engine(&args.store) {
        Ok(engine) => engine,
        Err(code) => return code,
    };
    let status = match schema::read_configured(&engine).await {
        Ok(status) => status,
        Err(err) => {
            eprintln!(
                "aragora: cannot read the schema of the {} database {}: {}",
                engine.db_backend.as_str(),
                location(&engine),
                shown(&engine, &err)
            );
            return exit(EXIT_DATABASE);
        }
    };
    let (code, _, message) = verdict(&status);
    match (args.output, check) {
        (Output::Json, _) => println!("{}", status_json(&engine, &status)),
        (Output::Text, false) => print_status_text(&engine, &status),
        (Output::Text, true) if code == 0 => println!("{message}"),
        (Output::Text, true) => eprintln!("aragora: {message}"),
    }
    if check {
        exit(code)
    } else {
        ExitCode::SUCCESS
    }
}

async fn up(args: &UpArgs) -> ExitCode {
    let engine = match load_engine(&args.store) {
        Ok(engine) => engine,
        Err(code) => return code,
    };
    let patience = Duration::from_secs(args.wait.unwrap_or(engine.migration_lock_wait_secs));
    let text = args.output == Output::Text;
    // Progress goes to stderr, so `--output json` keeps stdout to the one JSON object.
    match engine.db_backend {
        DbBackend::Sqlite => eprintln!(
            "SQLite: taking the migration lock file {} (waiting up to {} s)",
            aragora_engine::schema::sqlite_lock_file(&engine.sqlite_path()).display(),
            patience.as_secs()
        ),
        DbBackend::Postgres => eprintln!(
            "PostgreSQL: taking the migration lock {MIGRATION_LOCK_ID} (pg_try_advisory_lock; waiting up to {} s)",
            patience.as_secs()
        ),
    }
    if engine.db_backend == DbBackend::Sqlite {
        if let Err(err) = std::fs::create_dir_all(&engine.data_dir) {
            eprintln!(
                "aragora: cannot create the data directory {}: {err}",
                engine.data_dir.display()
            );
            return exit(EXIT_DATABASE);
        }
    }
    let store = match SqlStore::connect(engine.db_backend, &engine.database_url(), 1).await {
        Ok(store) => store,
        Err(err) => {
            eprintln!(
                "aragora: cannot open the {} database {}: {}",
                engine.db_backend.as_str(),
                location(&engine),
                shown(&engine, &err)
            );
            return exit(EXIT_DATABASE);
        }
    };
    let upgraded = schema::upgrade(&store, patience, &mut |waiting: &schema::Waiting| {
        eprintln!("{waiting}")
    })
    .await;
    store.close().await;
    let upgraded = match upgraded {
        Ok(upgraded) => upgraded,
        Err(err) => {
            let code = match &err {
                SchemaError::Refused(_) => EXIT_INCOMPATIBLE,
                SchemaError::LockTimeout { .. } => EXIT_LOCK_TIMEOUT,
                _ => EXIT_DATABASE,
            };
            eprintln!("aragora: {}", shown(&engine, &err));
            return exit(code);
        }
    };
    let latest = schema::latest_known(engine.db_backend);
    if text {
        for applied in &upgraded.applied {
            println!(
                "applied {} ({}) in {} ms",
                applied.version, applied.description, applied.took_ms
            );
        }
        if upgraded.applied.is_empty() {
            println!(
                "nothing to do: all {} migrations were already applied; the schema is at version {latest}",
                upgraded.already_applied
            );
        } else {
            println!(
                "{} applied, {} already applied (skipped); the schema is at version {latest}, this binary's latest. Check with `aragora migrate check`",
                upgraded.applied.len(),
                upgraded.already_applied
            );
        }
    } else {
        println!(
            "{}",
            json!({
                "backend": engine.db_backend,
                "database": location(&engine),
                "lock": upgraded.lock,
                "waited_ms": upgraded.waited_ms,
                "applied": upgraded.applied,
                "already_applied": upgraded.already_applied,
                "schema_version": latest,
            })
        );
    }
    ExitCode::SUCCESS
}
