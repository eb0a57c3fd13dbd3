//! `aragora chaos ...`: the fault proxy (`proxy`), checking an experiment (`check`) and running
//! one (`run`). Flags, output and exit codes; the work is in the chaos crate.

use crate::run::shutdown_signal;
use crate::settings::EXIT_BAD_CONFIG;
use aragora_chaos::experiment::{self, runner};
use aragora_chaos::proxy::{FaultProxy, ProxySpec};
use aragora_chaos::proxy_api::{self, Proxies};
use clap::{Args, Subcommand};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Subcommand)]
pub enum ChaosCommand {
    /// Run fault proxies (TCP relays that add latency, limit bandwidth, reset, black-hole or
    /// refuse connections) with an HTTP API to add and remove faults while they run.
    Proxy {
        /// A proxy as NAME=LISTEN=UPSTREAM, e.g. engine=127.0.0.1:18080=127.0.0.1:8080; repeat for several.
        #[arg(long = "proxy", required = true)]
        proxies: Vec<String>,
        /// Address of the HTTP API (Toxiproxy's port by default); keep it on loopback.
        #[arg(long, default_value = "127.0.0.1:8474")]
        api: SocketAddr,
    },
    /// Check an experiment file without running it; print every problem; exit 78 on any.
    Check(ExperimentArgs),
    /// Run an experiment: steady state before, method, steady state after, rollbacks (always).
    /// Exits 0 when the hypothesis held, 1 when it did not, 2 when the method could not be
    /// carried out or was interrupted, 78 when the file is invalid.
    Run {
        #[command(flatten)]
        experiment: ExperimentArgs,
        /// Where to write the JSON report (default: data/chaos/<experiment>-<time>.json).
        #[arg(long)]
        report: Option<PathBuf>,
        /// Print the report as JSON on standard output instead of the readable summary.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct ExperimentArgs {
    /// The experiment (YAML, `version: aragora.chaos/v1`); chaos/experiments/ has examples.
    pub file: PathBuf,
    /// A value for ${NAME} in the file, as NAME=VALUE; repeat for several. Wins over the
    /// environment and the file's `configuration:`.
    #[arg(long = "var", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
}

fn parse_var(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .filter(|(name, _)| !name.is_empty())
        .ok_or_else(|| format!("{text:?}: write NAME=VALUE"))
}

pub async fn run(command: ChaosCommand) -> ExitCode {
    match command {
        ChaosCommand::Proxy { proxies, api } => proxy(&proxies, api).await,
        ChaosCommand::Check(args) => match load(&args) {
            Ok(loaded) => {
                println!(
                    "{}: valid ({} probes, {} method steps, {} rollbacks)",
                    args.file.display(),
                    loaded.steady_state.len(),
                    loaded.method.len(),
                    loaded.rollbacks.len()
                );
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        ChaosCommand::Run {
            experiment,
            report,
            json,
        } => run_experiment(&experiment, report, json).await,
    }
}

fn load(args: &ExperimentArgs) -> Result<experiment::Experiment, ExitCode> {
    let vars: BTreeMap<String, String> = args.vars.iter().cloned().collect();
    experiment::load(&args.file, &vars).map_err(|err| {
        eprintln!("aragora: {err}");
        ExitCode::from(EXIT_BAD_CONFIG)
    })
}

async fn proxy(specs: &[String], api: SocketAddr) -> ExitCode {
    crate::settings::init_logging(
        aragora_config::LogLevel::Info,
        aragora_config::LogFormat::Text,
    );
    // The API's admin endpoints take the stateless admin credentials of the environment.
    let (auth, problems) = aragora_auth::AuthConfig::from_env(&aragora_config::process_env());
    if !problems.is_empty() {
        return crate::settings::refused(&problems);
    }
    let registry = prometheus::Registry::new();
    let mut proxies = Vec::new();
    for text in specs {
        let spec = match ProxySpec::parse(text) {
            Ok(spec) => spec,
            Err(message) => {
                eprintln!("aragora: --proxy {message}");
                return ExitCode::from(EXIT_BAD_CONFIG);
            }
        };
        if proxies.iter().any(|p: &FaultProxy| p.name() == spec.name) {
            eprintln!(
                "aragora: two proxies are named {:?}; give each its own name",
                spec.name
            );
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
        match FaultProxy::start(spec.clone(), Some(&registry)).await {
            Ok(proxy) => {
                println!(
                    "aragora chaos proxy {} listening={} upstream={}",
                    proxy.name(),
                    proxy.address(),
                    spec.upstream
                );
                proxies.push(proxy);
            }
            Err(err) => {
                eprintln!("aragora: {err}; pick a free port for --proxy");
                return ExitCode::FAILURE;
            }
        }
    }
    let listener = match tokio::net::TcpListener::bind(api).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!(
                "aragora: cannot listen on {api} for the proxy API: {err}; move it with --api"
            );
            return ExitCode::FAILURE;
        }
    };
    let bound = listener.local_addr().unwrap_or(api);
    println!("aragora chaos proxy api=http://{bound}  (POST /proxies/NAME/faults to add a fault)");
    let router = proxy_api::router(
        Arc::new(Proxies { proxies, registry }),
        aragora_auth::Authenticator::new(auth, None),
    );
    match axum::serve(listener, router)
        .with_graceful_shutdown(shutdown_signal())
        .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("aragora: the proxy API stopped: {err}");
            ExitCode::FAILURE
        }
    }
}

/// `chaos` in the data directory, where reports go without `--report`.
fn default_report_dir() -> PathBuf {
    std::env::var_os("ARAGORA_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("data"))
        .join("chaos")
}

async fn run_experiment(args: &ExperimentArgs, report: Option<PathBuf>, json: bool) -> ExitCode {
    let loaded = match load(args) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let (abort_tx, abort) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        eprintln!("aragora: stopping the experiment; rolling back (this is not interruptible)");
        let _ = abort_tx.send(true);
    });
    let started = std::time::Instant::now();
    let progress = move |line: &str| eprintln!("{:>7.1}s  {line}", started.elapsed().as_secs_f64());
    let outcome = runner::run(
        &loaded,
        runner::RunOptions {
            source: args.file.display().to_string(),
            progress: &progress,
            abort,
        },
    )
    .await;
    let path = report.unwrap_or_else(|| default_report_dir().join(outcome.file_name()));
    let written = outcome.write(&path);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&outcome).unwrap_or_default()
        );
    } else {
        print!("{}", runner::render(&outcome));
    }
    match written {
        Ok(()) => eprintln!("report: {}", path.display()),
        Err(err) => eprintln!(
            "aragora: cannot write the report to {}: {err}; pass --report PATH",
            path.display()
        ),
    }
    ExitCode::from(outcome.status.exit_code())
}
