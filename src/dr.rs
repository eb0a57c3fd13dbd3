//! `aragora backup ...` and `aragora drill ...`: configuration and output; the work is in the
//! chaos crate.

use crate::settings::{self, failed, Parts, Sources};
use crate::{ConfigArgs, EngineArgs};
use aragora_chaos::backup::{self, Target};
use aragora_chaos::{drill, manifest, retention, DrConfig};
use aragora_config::LogLevel;
use aragora_engine::EngineConfig;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Clone, Default)]
pub struct DrArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Data directory (overrides ARAGORA_DATA_DIR).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Backup directory (overrides ARAGORA_BACKUP_DIR).
    #[arg(long)]
    pub backup_dir: Option<PathBuf>,
}

#[derive(Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    #[default]
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum BackupCommand {
    /// Take a backup of the database now (online: the engine may keep running), then apply retention.
    Create {
        #[command(flatten)]
        dr: DrArgs,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// List the backups, newest first.
    List {
        #[command(flatten)]
        dr: DrArgs,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Check a backup (default: the latest) without touching any database: checksum, manifest, content.
    Verify {
        /// A backup id from `aragora backup list`, or `latest`.
        id: Option<String>,
        #[command(flatten)]
        dr: DrArgs,
    },
    /// Restore a backup (default: the latest) into the configured database or --into another.
    Restore {
        /// A backup id from `aragora backup list`, or `latest`.
        id: Option<String>,
        /// A SQLite file (or data directory) or a postgres:// URL to restore into instead.
        #[arg(long)]
        into: Option<String>,
        /// Replace a target database that holds debates (stop every engine using it first).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        dr: DrArgs,
    },
}

#[derive(Subcommand)]
pub enum DrillCommand {
    /// Restore the latest backup into a scratch database, verify it, serve a smoke debate from
    /// it, measure RTO and RPO. Exits 1 when the drill fails.
    Run {
        #[command(flatten)]
        dr: DrArgs,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// The recorded drills, newest first.
    History {
        #[command(flatten)]
        dr: DrArgs,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
}

fn configs(args: &DrArgs) -> Result<(EngineConfig, DrConfig), ExitCode> {
    let engine_args = EngineArgs {
        config: args.config.clone(),
        data_dir: args.data_dir.clone(),
        ..EngineArgs::default()
    };
    let sources = Sources {
        engine: engine_args,
        backup_dir: args.backup_dir.clone(),
        ..Sources::default()
    };
    match settings::load(Parts::DR, &sources) {
        Ok(loaded) => {
            // Quiet by default: the restored engine of a drill logs as much as a real one.
            let level = if std::env::var_os("ARAGORA_LOG_LEVEL").is_some() {
                loaded.engine.log_level
            } else {
                LogLevel::Warning
            };
            settings::init_logging(level, aragora_config::LogFormat::Text);
            Ok((loaded.engine, loaded.dr))
        }
        Err(problems) => Err(settings::refused(&problems)),
    }
}

fn show_progress() -> bool {
    std::io::stderr().is_terminal()
}

pub async fn backup(command: BackupCommand) -> ExitCode {
    match command {
        BackupCommand::Create { dr, output } => create(&dr, output).await,
        BackupCommand::List { dr, output } => list(&dr, output),
        BackupCommand::Verify { id, dr } => {
            let (engine, dr) = match configs(&dr) {
                Ok(configs) => configs,
                Err(code) => return code,
            };
            match backup::verify(&engine, &dr, id.as_deref(), show_progress()).await {
                Ok(manifest) => {
                    println!(
                        "ok: backup {} verifies (sha256, schema version {}, row counts)",
                        manifest.id, manifest.schema_version
                    );
                    ExitCode::SUCCESS
                }
                Err(err) => failed(err),
            }
        }
        BackupCommand::Restore {
            id,
            into,
            force,
            dr,
        } => {
            let (engine, dr) = match configs(&dr) {
                Ok(configs) => configs,
                Err(code) => return code,
            };
            let target = into
                .as_deref()
                .map(Target::parse)
                .unwrap_or_else(|| Target::primary(&engine));
            let dir = dr.backup_dir(&engine);
            let key = match dr.backup_key() {
                Ok(key) => key,
                Err(err) => return failed(err),
            };
            let restored = backup::restore(
                &dir,
                id.as_deref(),
                &target,
                force,
                key.as_ref(),
                show_progress(),
            );
            match restored.await {
                Ok((manifest, facts)) => {
                    println!(
                        "restored backup {} into {}: schema version {}, {} debates, {} events, {} receipts",
                        manifest.id,
                        target.describe(),
                        facts.schema_version,
                        facts.row_counts.get("debates").unwrap_or(&0),
                        facts.row_counts.get("debate_events").unwrap_or(&0),
                        facts.row_counts.get("receipts").unwrap_or(&0),
                    );
                    ExitCode::SUCCESS
                }
                Err(err) => failed(err),
            }
        }
    }
}

async fn create(args: &DrArgs, output: Output) -> ExitCode {
    let (engine, dr) = match configs(args) {
        Ok(configs) => configs,
        Err(code) => return code,
    };
    let manifest = match backup::create(&engine, &dr, show_progress()).await {
        Ok(manifest) => manifest,
        Err(err) => return failed(err),
    };
    let mut warnings = Vec::new();
    if let Err(err) = backup::record(&engine, &manifest).await {
        warnings.push(err.to_string());
    }
    let pruned = match retention::prune(&dr.backup_dir(&engine), dr.backup_keep_count, dr.max_age())
    {
        Ok(pruned) => pruned,
        Err(err) => {
            warnings.push(format!("retention: {err}"));
            Vec::new()
        }
    };
    match output {
        Output::Json => println!(
            "{}",
            json!({"backup": manifest, "pruned": pruned, "warnings": warnings})
        ),
        Output::Text => {
            println!(
                "backup {} taken: {} bytes in {:.2} s, schema version {}, {} debates",
                manifest.id,
                manifest.artifact_bytes,
                manifest.duration_seconds,
                manifest.schema_version,
                manifest.row_counts.get("debates").unwrap_or(&0)
            );
            for id in &pruned {
                println!("deleted old backup {id}");
            }
            for warning in &warnings {
                eprintln!("aragora: warning: {warning}");
            }
        }
    }
    ExitCode::SUCCESS
}

fn list(args: &DrArgs, output: Output) -> ExitCode {
    let (engine, dr) = match configs(args) {
        Ok(configs) => configs,
        Err(code) => return code,
    };
    let entries = match manifest::list(&dr.backup_dir(&engine)) {
        Ok(entries) => entries,
        Err(err) => return failed(err),
    };
    match output {
        Output::Json => {
            let backups: Vec<_> = entries
                .iter()
                .map(|entry| match &entry.manifest {
                    Ok(manifest) => json!(manifest),
                    Err(problem) => json!({"id": entry.id, "error": problem}),
                })
                .collect();
            println!("{}", json!({ "backups": backups }));
        }
        Output::Text => {
            if entries.is_empty() {
                println!("no backups in {}", dr.backup_dir(&engine).display());
            }
            for entry in &entries {
                match &entry.manifest {
                    Ok(m) => println!(
                        "{}  {}  {:8}  schema {}  {} bytes  {} debates",
                        m.id,
                        m.created_at,
                        m.backend,
                        m.schema_version,
                        m.artifact_bytes,
                        m.row_counts.get("debates").unwrap_or(&0)
                    ),
                    Err(problem) => println!("{}  UNREADABLE: {problem}", entry.id),
                }
            }
        }
    }
    ExitCode::SUCCESS
}

pub async fn drill(command: DrillCommand) -> ExitCode {
    match command {
        DrillCommand::Run { dr, output } => {
            let (engine, dr) = match configs(&dr) {
                Ok(configs) => configs,
                Err(code) => return code,
            };
            let report = drill::run(&engine, &dr, output == Output::Text && show_progress()).await;
            match output {
                Output::Json => println!("{}", json!(report)),
                Output::Text => println!("{}", report.summary()),
            }
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        DrillCommand::History { dr, output, limit } => {
            let (engine, _) = match configs(&dr) {
                Ok(configs) => configs,
                Err(code) => return code,
            };
            let drills = match drill::history(&engine, limit).await {
                Ok(drills) => drills,
                Err(err) => return failed(err),
            };
            match output {
                Output::Json => {
                    let drills: Vec<_> = drills
                        .iter()
                        .map(aragora_engine::http::drills::drill_json)
                        .collect();
                    println!("{}", json!({ "drills": drills }));
                }
                Output::Text => {
                    if drills.is_empty() {
                        println!("no drills recorded yet; run one with `aragora drill run`");
                    }
                    let seconds =
                        |v: Option<f64>| v.map_or("-".to_string(), |s| format!("{s:.2}s"));
                    for d in &drills {
                        println!(
                            "{}  {}  {:6}  RTO {} (target {}s)  RPO {} (target {}s)  backup {}",
                            aragora_engine::model::format_ms(d.started_at_ms),
                            d.id,
                            d.status,
                            seconds(d.rto_seconds),
                            d.rto_target_seconds,
                            seconds(d.rpo_seconds),
                            d.rpo_target_seconds,
                            d.backup_id.as_deref().unwrap_or("none")
                        );
                    }
                }
            }
            ExitCode::SUCCESS
        }
    }
}
