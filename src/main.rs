//! `aragora`: the one binary. Parses the command line, loads and validates configuration, wires
//! the library crates together and runs them. No logic of its own beyond that.

use anyhow::Context;
use aragora_engine::config::{process_env, DbBackend};
use aragora_engine::{Bound, ConfigProblem, EngineConfig};
use aragora_telemetry::LogFormat;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Exit code for configuration a command refuses to run with (as `sysexits` EX_CONFIG).
const EXIT_BAD_CONFIG: u8 = 78;

#[derive(Parser)]
#[command(
    name = "aragora",
    version,
    about = "Edge gateway and SRE control plane in front of a multi-agent debate engine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the debate engine: REST API and WebSocket streaming.
    Serve(ServeArgs),
    /// Run everything on this machine with embedded defaults (SQLite in ./data, offline agents).
    Up(ServeArgs),
    /// Check the configuration (and that the database answers); print every problem; exit non-zero on any.
    ValidateEnv(ConfigArgs),
    /// Debate receipts.
    #[command(subcommand)]
    Receipt(ReceiptCommand),
}

#[derive(Subcommand)]
enum ReceiptCommand {
    /// Verify a receipt file offline against ARAGORA_RECEIPT_SIGNING_KEY (and _PREVIOUS), or the
    /// key generated in the data directory. Exits 0 when valid, 1 when not.
    Verify {
        /// The receipt, as saved from GET /api/debates/{id}/receipt.
        file: PathBuf,
        #[command(flatten)]
        config: ConfigArgs,
        /// Data directory holding a generated key (overrides ARAGORA_DATA_DIR).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Args, Clone)]
struct ConfigArgs {
    /// TOML file with engine settings; environment variables override it.
    #[arg(long, env = "ARAGORA_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Args, Clone)]
struct ServeArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// REST API port (overrides ARAGORA_PORT).
    #[arg(long)]
    api_port: Option<u16>,
    /// WebSocket port (overrides ARAGORA_WS_PORT).
    #[arg(long)]
    ws_port: Option<u16>,
    /// Address to bind (overrides ARAGORA_HOST).
    #[arg(long)]
    host: Option<String>,
    /// Data directory (overrides ARAGORA_DATA_DIR).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

fn print_problems(problems: &[ConfigProblem]) {
    eprintln!(
        "aragora: the configuration has {} problem(s):",
        problems.len()
    );
    for problem in problems {
        eprintln!("  - {problem}");
    }
}

/// Loads config from file and environment, then applies command-line flags, validating the result.
fn load_config(args: &ServeArgs) -> Result<EngineConfig, Vec<ConfigProblem>> {
    let mut config = EngineConfig::load(args.config.config.as_deref(), &process_env())?;
    if let Some(port) = args.api_port {
        config.api_port = port;
    }
    if let Some(port) = args.ws_port {
        config.ws_port = port;
    }
    if let Some(host) = &args.host {
        config.host = host.clone();
    }
    if let Some(dir) = &args.data_dir {
        config.data_dir = dir.clone();
    }
    let problems = config.validate();
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(problems)
    }
}

fn init_logging(config: &EngineConfig) {
    let format = if config.log_format == "text" {
        LogFormat::Text
    } else {
        LogFormat::Json
    };
    aragora_telemetry::init_logging(&config.log_level, format);
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(err) => {
            tracing::error!(error = %err, "cannot listen for SIGTERM; only Ctrl-C will stop the server");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}

fn display_host(bound: &std::net::SocketAddr) -> String {
    if bound.ip().is_unspecified() {
        format!("127.0.0.1:{}", bound.port())
    } else {
        bound.to_string()
    }
}

async fn run_engine(config: EngineConfig, banner: bool) -> anyhow::Result<()> {
    let backend = config.db_backend;
    let data_dir = config.data_dir.clone();
    aragora_engine::serve(config, shutdown_signal(), move |bound: Bound| {
        // One machine-readable line (tests and scripts read the ports from it) ...
        println!(
            "aragora engine listening api={} ws={}",
            bound.api, bound.ws
        );
        if banner {
            // ... and, for `aragora up`, a short guide for the person at the terminal.
            let api = display_host(&bound.api);
            let ws = display_host(&bound.ws);
            let storage = match backend {
                DbBackend::Sqlite => format!("SQLite at {}", data_dir.join("aragora.db").display()),
                DbBackend::Postgres => "PostgreSQL (DATABASE_URL)".to_string(),
            };
            println!("  REST API   http://{api}/api/debates");
            println!("  WebSocket  ws://{ws}/ws  (also ws://{api}/ws)");
            println!("  Health     http://{api}/readyz   Metrics http://{api}/metrics");
            println!("  Storage    {storage}");
            println!("  Try:       curl -s -XPOST http://{api}/api/debates -H 'content-type: application/json' -d '{{\"topic\":\"Tabs or spaces?\"}}'");
            println!("  Stop with Ctrl-C (running debates are saved and resumed on the next start).");
        }
    })
    .await
    .context("the engine stopped with an error")
}

async fn validate_env(args: &ConfigArgs) -> ExitCode {
    let serve_args = ServeArgs {
        config: args.clone(),
        api_port: None,
        ws_port: None,
        host: None,
        data_dir: None,
    };
    let mut problems = match load_config(&serve_args) {
        Ok(config) => check_environment(&config).await,
        Err(problems) => problems,
    };
    problems.dedup();
    if problems.is_empty() {
        println!("aragora: configuration is valid and the database answers");
        ExitCode::SUCCESS
    } else {
        print_problems(&problems);
        ExitCode::from(EXIT_BAD_CONFIG)
    }
}

fn verify_receipt(
    file: &std::path::Path,
    config: ConfigArgs,
    data_dir: Option<PathBuf>,
) -> ExitCode {
    use aragora_engine::receipts::ReceiptKeys;
    let args = ServeArgs {
        config,
        api_port: None,
        ws_port: None,
        host: None,
        data_dir,
    };
    let config = match load_config(&args) {
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

/// Checks what static validation cannot: the data directory and the database.
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("aragora: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        match cli.command {
            Command::ValidateEnv(args) => validate_env(&args).await,
            Command::Serve(args) => serve(&args, false).await,
            Command::Up(args) => serve(&args, true).await,
            Command::Receipt(ReceiptCommand::Verify {
                file,
                config,
                data_dir,
            }) => verify_receipt(&file, config, data_dir),
        }
    })
}

async fn serve(args: &ServeArgs, banner: bool) -> ExitCode {
    let config = match load_config(args) {
        Ok(config) => config,
        Err(problems) => {
            print_problems(&problems);
            eprintln!(
                "aragora: refusing to start; `aragora validate-env` checks a fix without starting"
            );
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    init_logging(&config);
    match run_engine(config, banner).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("aragora: {err:#}");
            ExitCode::FAILURE
        }
    }
}
