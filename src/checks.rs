//! Commands that check rather than run: `validate-env` and `receipt verify`.

use crate::settings::{engine_config, print_problems, EXIT_BAD_CONFIG};
use crate::{ConfigArgs, EngineArgs};
use aragora_engine::config::DbBackend;
use aragora_engine::{ConfigProblem, EngineConfig};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

pub async fn validate_env(args: &ConfigArgs) -> ExitCode {
    let serve_args = EngineArgs {
        config: args.clone(),
        api_port: None,
        ws_port: None,
        host: None,
        data_dir: None,
    };
    let mut problems = match engine_config(&serve_args) {
        Ok(config) => check_environment(&config).await,
        Err(problems) => problems,
    };
    problems.extend(crate::dr::dr_config().err().unwrap_or_default());
    problems.dedup();
    if problems.is_empty() {
        println!("aragora: configuration is valid and the database answers");
        ExitCode::SUCCESS
    } else {
        print_problems(&problems);
        ExitCode::from(EXIT_BAD_CONFIG)
    }
}

pub fn verify_receipt(
    file: &std::path::Path,
    config: ConfigArgs,
    data_dir: Option<PathBuf>,
) -> ExitCode {
    use aragora_engine::receipts::ReceiptKeys;
    let args = EngineArgs {
        config,
        api_port: None,
        ws_port: None,
        host: None,
        data_dir,
    };
    let config = match engine_config(&args) {
        Ok(config) => config,
        Err(problems) => {
            print_problems(&problems);
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(err) => {
            eprintln!("aragora: cannot read {}: {err}", file.display());
            return ExitCode::FAILURE;
        }
    };
    let keys = match ReceiptKeys::resolve(
        config.receipt_signing_key.as_deref(),
        config.receipt_signing_key_previous.as_deref(),
        &config.data_dir,
    ) {
        Ok(keys) => keys,
        Err(err) => {
            eprintln!("aragora: {err}");
            return ExitCode::FAILURE;
        }
    };
    match keys.verify_json(&text) {
        Ok((receipt, signed_with)) => {
            println!(
                "valid: receipt of debate {} ({:?}), signed with the {} key {}",
                receipt.debate_id,
                receipt.outcome,
                match signed_with {
                    aragora_engine::receipts::SignedWith::Current => "current",
                    aragora_engine::receipts::SignedWith::Previous => "previous",
                },
                receipt.key_id
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("INVALID: {}: {err}", file.display());
            ExitCode::FAILURE
        }
    }
}

async fn check_environment(config: &EngineConfig) -> Vec<ConfigProblem> {
    let mut problems = Vec::new();
    let dir = &config.data_dir;
    let existing = dir.ancestors().find(|p| p.exists()).map(PathBuf::from);
    match existing {
        Some(path)
            if std::fs::metadata(&path)
                .map(|m| m.permissions().readonly())
                .unwrap_or(true) =>
        {
            problems.push(ConfigProblem::new(
                "ARAGORA_DATA_DIR",
                format!(
                    "{} is not writable; fix its permissions or choose another directory",
                    path.display()
                ),
            ));
        }
        None => problems.push(ConfigProblem::new(
            "ARAGORA_DATA_DIR",
            format!("{} cannot be created", dir.display()),
        )),
        _ => {}
    }
    if config.db_backend == DbBackend::Postgres {
        let url = config.database_url();
        let check = aragora_engine::store::SqlStore::check(&url);
        match tokio::time::timeout(Duration::from_secs(5), check).await {
            Ok(Ok(_latency)) => {}
            Ok(Err(err)) => problems.push(ConfigProblem::new("DATABASE_URL", format!("the database is unreachable ({err}); check the host, port, credentials and that PostgreSQL runs"))),
            Err(_) => problems.push(ConfigProblem::new("DATABASE_URL", "the database did not answer within 5 s; check the host and port and any firewall")),
        }
    }
    problems
}
