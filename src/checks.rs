//! Commands that check rather than run: `validate-env` and `receipt verify`.
//!
//! `validate-env` is "start minus binding": the process configuration of every part, loaded
//! and validated exactly as `up` and `control` load it, then what starting would touch
//! (the data directory, the database, Redis, the certificate), printed as the deployment
//! checklist has it: one line per check with a mark, then one verdict. Secret values (keys,
//! tokens, passwords in URLs) never reach the output, whatever a message quotes.

use crate::dr::Output;
use crate::settings::{self, print_problems, Parts, ProcessConfig, Sources, EXIT_BAD_CONFIG};
use crate::{ConfigArgs, EngineArgs};
use aragora_engine::agents::providers::ProviderKind;
use aragora_engine::config::DbBackend;
use aragora_engine::ConfigProblem;
use clap::Args;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct ValidateEnvArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// `json` for scripts: {"checks": [{name, ok, detail}], "problems": [{setting, message}], "verdict"}.
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

/// How long a database or Redis may take to answer before the check fails.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// One line of the checklist.
#[derive(Debug, Serialize)]
struct Check {
    name: String,
    ok: bool,
    detail: String,
}

impl Check {
    fn new(name: impl Into<String>, ok: bool, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ok,
            detail: detail.into(),
        }
    }
}

/// What `validate-env` found: the checklist and the problems, both already redacted.
#[derive(Debug, Serialize)]
struct Report {
    checks: Vec<Check>,
    problems: Vec<ProblemOut>,
    verdict: &'static str,
}

#[derive(Debug, Serialize)]
struct ProblemOut {
    setting: String,
    message: String,
}

pub async fn validate_env(args: &ValidateEnvArgs) -> ExitCode {
    let sources = Sources::engine(&EngineArgs {
        config: args.config.clone(),
        ..EngineArgs::default()
    });
    let (config, mut problems) =
        settings::read_and_validate(Parts::EVERYTHING, &sources, &aragora_config::process_env());
    let environment_problem = problems
        .iter()
        .find(|p| matches!(p.setting.as_str(), "ARAGORA_ENV" | "ARAGORA_ENVIRONMENT"));
    let mut checks = vec![
        match environment_problem {
            None => Check::new("Environment", true, config.engine.environment.as_str()),
            Some(problem) => Check::new("Environment", false, problem.message.clone()),
        },
        Check::new(
            "Configuration",
            problems.is_empty(),
            if problems.is_empty() {
                "engine, gateway, SLO, live SLO, DR and chaos settings valid".to_string()
            } else {
                format!("{} problem(s)", problems.len())
            },
        ),
    ];
    let touched = touch_what_starting_would(&config, &problems).await;
    for (check, problem) in touched {
        checks.push(check);
        problems.extend(problem);
    }
    let secrets = secrets_of(&config);
    let redact = |text: &str| aragora_config::scrub(text, &secrets);
    let verdict = if problems.is_empty() {
        "valid"
    } else {
        "invalid"
    };
    let report = Report {
        checks: checks
            .into_iter()
            .map(|check| Check {
                detail: redact(&check.detail),
                ..check
            })
            .collect(),
        problems: problems
            .iter()
            .map(|problem| ProblemOut {
                setting: problem.setting.clone(),
                message: redact(&problem.message),
            })
            .collect(),
        verdict,
    };
    match args.output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        ),
        Output::Text => print_text(&report),
    }
    if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_BAD_CONFIG)
    }
}

fn print_text(report: &Report) {
    for check in &report.checks {
        let mark = if check.ok { '✓' } else { '✗' };
        println!("{mark} {}: {}", check.name, check.detail);
    }
    if report.problems.is_empty() {
        println!("✓ Configuration is valid: every part would start");
    } else {
        let problems: Vec<ConfigProblem> = report
            .problems
            .iter()
            .map(|p| ConfigProblem::new(&p.setting, &p.message))
            .collect();
        print_problems(&problems);
        println!(
            "✗ {} problem(s): refusing to start until they are fixed",
            problems.len()
        );
    }
}

/// The checks of what a start would touch, each with the problem it found, if any. A check
/// whose setting already has a problem is skipped: its value is not what would be used.
async fn touch_what_starting_would(
    config: &ProcessConfig,
    problems: &[ConfigProblem],
) -> Vec<(Check, Option<ConfigProblem>)> {
    let has_problem = |setting: &str| problems.iter().any(|p| p.setting == setting);
    let engine = &config.engine;
    let mut touched = vec![data_dir_check(&engine.data_dir)];
    if !has_problem("DATABASE_URL") && !has_problem("ARAGORA_DB_BACKEND") {
        let database = database_check(engine).await;
        let reachable = database.1.is_none();
        touched.push(database);
        if reachable {
            touched.push(schema_check(engine).await);
        }
    }
    let mut redis_urls: Vec<&String> = [&engine.redis_url, &config.gateway.redis_url]
        .into_iter()
        .flatten()
        .collect();
    redis_urls.dedup();
    if !has_problem("ARAGORA_REDIS_URL") && !has_problem("REDIS_URL") {
        for url in redis_urls {
            touched.push(redis_check(url).await);
        }
    }
    touched.extend(
        provider_checks(engine)
            .into_iter()
            .map(|check| (check, None)),
    );
    if let Some(cert) = &config.gateway.tls_cert {
        touched.push((certificate_check(cert), None));
    }
    touched.push((signing_key_check(engine, &has_problem), None));
    touched.push((backup_encryption_check(&config.dr), None));
    touched
}

fn data_dir_check(dir: &Path) -> (Check, Option<ConfigProblem>) {
    let existing = dir.ancestors().find(|p| p.exists()).map(PathBuf::from);
    let problem = match existing {
        Some(path)
            if std::fs::metadata(&path)
                .map(|m| m.permissions().readonly())
                .unwrap_or(true) =>
        {
            Some(ConfigProblem::new(
                "ARAGORA_DATA_DIR",
                format!(
                    "{} is not writable; fix its permissions or choose another directory",
                    path.display()
                ),
            ))
        }
        None => Some(ConfigProblem::new(
            "ARAGORA_DATA_DIR",
            format!("{} cannot be created", dir.display()),
        )),
        _ => None,
    };
    let detail = match &problem {
        None => format!("{} writable", dir.display()),
        Some(problem) => problem.message.clone(),
    };
    (
        Check::new("Data directory", problem.is_none(), detail),
        problem,
    )
}

async fn database_check(engine: &aragora_engine::EngineConfig) -> (Check, Option<ConfigProblem>) {
    match engine.db_backend {
        DbBackend::Sqlite => {
            let file = engine.data_dir.join("aragora.db");
            let state = if file.exists() {
                "exists"
            } else {
                "created at the first start"
            };
            let detail = match sqlite_version().await {
                Ok(version) => format!("SQLite {version} at {} ({state})", file.display()),
                Err(err) => format!(
                    "SQLite at {} ({state}; version unknown: {err})",
                    file.display()
                ),
            };
            (Check::new("Database", true, detail), None)
        }
        DbBackend::Postgres => {
            let url = engine.database_url();
            let fail = |message: String| {
                let problem = ConfigProblem::new("DATABASE_URL", message);
                let check = Check::new(
                    "Database",
                    false,
                    format!(
                        "PostgreSQL at {}: {}",
                        without_credentials(&url),
                        problem.message
                    ),
                );
                (check, Some(problem))
            };
            match tokio::time::timeout(ANSWER_WITHIN, postgres_version(&url)).await {
                Ok(Ok((version, latency))) => {
                    let detail = format!(
                        "PostgreSQL {version} at {} ({} ms)",
                        without_credentials(&url),
                        latency.as_millis()
                    );
                    (Check::new("Database", true, detail), None)
                }
                Ok(Err(err)) => fail(format!("the database is unreachable ({err}); check the host, port, credentials and that PostgreSQL runs")),
                Err(_) => fail("the database did not answer within 5 s; check the host and port and any firewall".into()),
            }
        }
    }
}

/// The schema against this binary's migrations, read without writing, as a start would find
/// it: a newer, changed or failed schema is a problem; pending migrations are said, with what
/// applies them (the start itself, or `aragora migrate up` before it when `ARAGORA_AUTO_MIGRATE`
/// is false).
async fn schema_check(engine: &aragora_engine::EngineConfig) -> (Check, Option<ConfigProblem>) {
    let setting = match engine.db_backend {
        DbBackend::Sqlite => "ARAGORA_DATA_DIR",
        DbBackend::Postgres => "DATABASE_URL",
    };
    let latest = aragora_engine::schema::latest_known(engine.db_backend);
    let fail = |message: String| {
        let problem = ConfigProblem::new(setting, message);
        (
            Check::new("Schema", false, problem.message.clone()),
            Some(problem),
        )
    };
    let status = match tokio::time::timeout(
        ANSWER_WITHIN,
        aragora_engine::schema::read_configured(engine),
    )
    .await
    {
        Ok(Ok(status)) => status,
        Ok(Err(err)) => return fail(format!("cannot read the database's schema ({err}); check that this user may read it, then `aragora migrate status`")),
        Err(_) => return fail("the database did not answer the schema query within 5 s".to_string()),
    };
    if let Some(problem) = status.problem() {
        return fail(problem.to_string());
    }
    let pending = status.pending().count();
    let at = match status.current() {
        Some(version) => format!("at version {version}"),
        None => "empty".to_string(),
    };
    // Pending migrations are state a deployment step settles (an init container, a runbook
    // procedure), not a configuration problem: said, not refused.
    let detail = match (pending, engine.auto_migrate) {
        (0, _) => format!("{at}, up to date (this binary's latest is {latest})"),
        (n, true) => format!(
            "{at}; {n} pending, applied at the first start (ARAGORA_AUTO_MIGRATE) or by `aragora migrate up`"
        ),
        (n, false) => format!(
            "{at}; {n} pending and ARAGORA_AUTO_MIGRATE is false: run `aragora migrate up` (the migrate init container, or Procedure 5) before the engine starts, or it refuses to"
        ),
    };
    (Check::new("Schema", true, detail), None)
}

async fn sqlite_version() -> Result<String, sqlx::Error> {
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect("sqlite::memory:").await?;
    let (version,): (String,) = sqlx::query_as("SELECT sqlite_version()")
        .fetch_one(&mut conn)
        .await?;
    conn.close().await?;
    Ok(version)
}

/// The server's version and the round trip of one query.
async fn postgres_version(url: &str) -> Result<(String, Duration), sqlx::Error> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await?;
    let started = Instant::now();
    let (version,): (String,) = sqlx::query_as("SHOW server_version")
        .fetch_one(&mut conn)
        .await?;
    let latency = started.elapsed();
    conn.close().await?;
    Ok((version, latency))
}

async fn redis_check(url: &str) -> (Check, Option<ConfigProblem>) {
    let shown = without_credentials(url);
    match tokio::time::timeout(ANSWER_WITHIN, redis_version(url)).await {
        Ok(Ok(version)) => (
            Check::new(
                "Redis",
                true,
                format!("connected to {shown} (version {version})"),
            ),
            None,
        ),
        outcome => {
            let message = match outcome {
                Ok(Err(err)) => format!("Redis at {shown} does not answer ({err}); check the URL and that Redis runs"),
                _ => format!("Redis at {shown} did not answer within 5 s; check the host and port and any firewall"),
            };
            let check = Check::new("Redis", false, message.clone());
            (
                check,
                Some(ConfigProblem::new("ARAGORA_REDIS_URL", message)),
            )
        }
    }
}

async fn redis_version(url: &str) -> Result<String, fred::error::Error> {
    use fred::prelude::*;
    let client = Builder::from_config(Config::from_url(url)?)
        .with_connection_config(|connection| {
            connection.connection_timeout = ANSWER_WITHIN;
            connection.max_command_attempts = 1;
        })
        .build()?;
    client.init().await?;
    let info: String = client.info(Some(fred::types::InfoKind::Server)).await?;
    let _ = client.quit().await;
    Ok(info
        .lines()
        .find_map(|line| line.strip_prefix("redis_version:"))
        .unwrap_or("unknown")
        .trim()
        .to_string())
}

/// One line per provider that can take calls (its key is set: never its value).
fn provider_checks(engine: &aragora_engine::EngineConfig) -> Vec<Check> {
    let enabled: Vec<ProviderKind> = ProviderKind::ALL
        .into_iter()
        .filter(|kind| engine.provider_enabled(*kind))
        .collect();
    if enabled.is_empty() {
        return vec![Check::new(
            "AI providers",
            true,
            "none configured; the built-in offline agents debate",
        )];
    }
    enabled
        .into_iter()
        .map(|kind| {
            let how = match kind {
                ProviderKind::OpenaiCompatible => {
                    "ARAGORA_OPENAI_COMPATIBLE_BASE_URL set".to_string()
                }
                other => format!("{} set", other.key_env()),
            };
            Check::new(
                "AI provider",
                true,
                format!("{} configured ({how})", kind.as_str()),
            )
        })
        .collect()
}

fn certificate_check(cert: &Path) -> Check {
    match describe_certificate(cert) {
        Ok(detail) => Check::new("TLS certificate", true, detail),
        Err(err) => Check::new(
            "TLS certificate",
            false,
            format!("{}: {err}", cert.display()),
        ),
    }
}

/// Subject and days to expiry of the first certificate of a PEM file.
fn describe_certificate(cert: &Path) -> Result<String, String> {
    let pem = std::fs::read(cert).map_err(|err| format!("cannot be read: {err}"))?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).map_err(|err| err.to_string())?;
    let certificate = pem.parse_x509().map_err(|err| err.to_string())?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let days = (certificate.validity().not_after.timestamp() - now).div_euclid(86_400);
    let subject = certificate.subject().to_string();
    Ok(format!("{subject}, {days} days to expiry"))
}

fn signing_key_check(
    engine: &aragora_engine::EngineConfig,
    has_problem: &dyn Fn(&str) -> bool,
) -> Check {
    let name = "Receipt signing key";
    if has_problem("ARAGORA_RECEIPT_SIGNING_KEY")
        || has_problem("ARAGORA_RECEIPT_SIGNING_KEY_PREVIOUS")
    {
        return Check::new(name, false, "see the problems below");
    }
    let previous = match engine.receipt_signing_key_previous.len() {
        0 => String::new(),
        n => format!("; {n} earlier key(s) still verify"),
    };
    match &engine.receipt_signing_key {
        Some(key) => Check::new(
            name,
            true,
            format!("configured ({} characters){previous}", key.chars().count()),
        ),
        None => {
            let file = engine.data_dir.join(aragora_engine::receipts::KEY_FILE);
            let detail = if file.exists() {
                format!("generated earlier, kept in {}{previous}", file.display())
            } else {
                format!(
                    "not set; generated into {} at the first start (one node only)",
                    file.display()
                )
            };
            Check::new(name, true, detail)
        }
    }
}

/// Whether backups are encrypted: the key shown only as set (`***`) and by its id, never its
/// value; a malformed key is among the problems (which never quote it either).
fn backup_encryption_check(dr: &aragora_chaos::DrConfig) -> Check {
    let name = "Backup encryption";
    match dr.backup_key() {
        Ok(Some(key)) => Check::new(
            name,
            true,
            format!(
                "ARAGORA_ENCRYPTION_KEY=*** (key id {}): backups are encrypted (AES-256-GCM)",
                key.id()
            ),
        ),
        Ok(None) => Check::new(
            name,
            true,
            "off: ARAGORA_ENCRYPTION_KEY is not set, backups are stored unencrypted",
        ),
        Err(_) => Check::new(
            name,
            false,
            "ARAGORA_ENCRYPTION_KEY=***: see the problems below",
        ),
    }
}

/// Every secret value of every part of the configuration (fields named as secrets, passwords
/// in URLs): what [`aragora_config::scrub`] takes out of the report.
fn secrets_of(config: &ProcessConfig) -> Vec<String> {
    use aragora_config::redact::secret_values;
    let mut secrets = secret_values(&config.engine);
    secrets.extend(secret_values(&config.gateway));
    secrets.extend(secret_values(&config.slo));
    secrets.extend(secret_values(&config.live));
    secrets.extend(secret_values(&config.dr));
    secrets.extend(secret_values(&config.chaos));
    secrets.extend(config.dr.encryption_key.expose().map(str::to_string));
    // Longest first, so no part of a longer secret is left after a shorter one is taken out.
    secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
    secrets.dedup();
    secrets
}

/// `scheme://host:port/path` of a URL: credentials and query dropped (the checklist names
/// where it connected, nothing more).
fn without_credentials(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(not a URL)".into();
    };
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let rest = rest.split('?').next().unwrap_or(rest);
    format!("{scheme}://{rest}")
}

pub fn verify_receipt(
    file: &std::path::Path,
    config: ConfigArgs,
    data_dir: Option<PathBuf>,
) -> ExitCode {
    use aragora_engine::receipts::ReceiptKeys;
    let args = EngineArgs {
        config,
        data_dir,
        ..EngineArgs::default()
    };
    let config = match settings::load(Parts::ENGINE, &Sources::engine(&args)) {
        Ok(loaded) => loaded.engine,
        Err(problems) => return settings::refused(&problems),
    };
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(err) => {
            eprintln!("aragora: cannot read {}: {err}", file.display());
            return ExitCode::FAILURE;
        }
    };
    // A check changes nothing: without a configured key it reads a generated one, never makes one.
    let keys = match ReceiptKeys::existing(
        config.receipt_signing_key.as_deref(),
        &config.receipt_signing_key_previous,
        &config.data_dir,
    ) {
        Ok(Some(keys)) => keys,
        Ok(None) => {
            eprintln!(
                "aragora: no receipt signing key to verify with: set ARAGORA_RECEIPT_SIGNING_KEY (and ARAGORA_RECEIPT_SIGNING_KEY_PREVIOUS), or point --data-dir at the data directory holding {}",
                aragora_engine::receipts::KEY_FILE
            );
            return ExitCode::FAILURE;
        }
        Err(err) => {
            eprintln!("aragora: {err}");
            return ExitCode::FAILURE;
        }
    };
    match keys.verify_json(&text) {
        Ok((receipt, verified)) => {
            println!(
                "valid: receipt of debate {} ({:?}), signed with the {} key {} ({})",
                receipt.debate_id,
                receipt.outcome,
                if verified.is_current() {
                    "current"
                } else {
                    "previous"
                },
                verified.key_id,
                verified.source
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("INVALID: {}: {err}", file.display());
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_credentials_and_every_secret_is_found() {
        let url = "postgres://admin:hunter2@db.internal:5432/aragora?sslmode=require";
        assert_eq!(
            without_credentials(url),
            "postgres://db.internal:5432/aragora"
        );
        let env = aragora_config::env_map(&[
            ("ARAGORA_DB_BACKEND", "postgres"),
            ("DATABASE_URL", url),
            ("ARAGORA_REDIS_URL", "redis://u:redis-pw@127.0.0.1:6379"),
            ("ARAGORA_API_TOKEN", "admin-token"),
            ("OPENAI_API_KEY", "sk-test"),
        ]);
        let (config, _) =
            crate::settings::read_and_validate(Parts::EVERYTHING, &Sources::default(), &env);
        let secrets = secrets_of(&config);
        for secret in ["hunter2", "redis-pw", "admin-token", "sk-test"] {
            assert!(secrets.iter().any(|s| s == secret), "{secret}: {secrets:?}");
        }
    }
}
