//! `aragora`: the one binary. Parses the command line, loads and validates configuration, wires
//! the library crates together and runs them. No logic of its own beyond that.
//!
//! | module | owns |
//! |---|---|
//! | `settings` | the process configuration: every part read from file, environment and flags, then validated once; printing problems |
//! | `run` | `serve`, `gateway` and `up`: starting components, signals, shutdown order |
//! | `checks` | `validate-env` and `receipt verify` |
//! | `slo` | `slo check` and `slo generate`: SLO specs to Prometheus rules; `/api/slo` and `/api/slo/history` |
//! | `dr` | `backup` and `drill`: DR settings and output (the work is in the chaos crate) |
//! | `drill_api` | `POST`/`GET /api/drills/run`: a drill started through the engine's API and its progress |
//! | `control` | `control`: DR and chaos schedules and live SLO evaluation beside separate replicas |
//! | `chaos` | `chaos proxy`, `chaos check`, `chaos run`: fault proxies and chaos experiments |
//! | `migrate` | `migrate status`, `migrate check`, `migrate up`: the schema against this binary's migrations (Procedure 5) |
//! | `probe` | `probe`: the container's health check, a GET of each configured listener's `/healthz` |
//! | `token` | `token create`, `token list`, `token revoke`: API keys in the database, loop tokens, JWTs; `up`'s admin key |
//! | `openapi` | `openapi`: the OpenAPI documents as committed: the REST API's (the engine's and `/api/slo`), the gateway admin API's |

mod chaos;
mod checks;
mod control;
mod dr;
mod drill_api;
mod migrate;
mod openapi;
mod probe;
mod run;
mod settings;
mod slo;
mod token;
mod webhooks;

use clap::{Args, Parser, Subcommand};

// The gateway's request path allocates on worker threads and frees on the log writer's (and the
// other way round); glibc's arenas serialize that on a lock, mimalloc does not.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::path::PathBuf;
use std::process::ExitCode;

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
    Serve(EngineArgs),
    /// Run the edge gateway (TLS, readiness-gated routing) in front of engine replicas.
    Gateway(GatewayArgs),
    /// Run everything on this machine with embedded defaults: the engine (SQLite in ./data,
    /// offline agents) behind the gateway (self-signed certificate).
    Up(UpArgs),
    /// Check everything a start would (every part's settings, data directory, database, Redis,
    /// certificate, keys) without binding; one line per check, every problem; exit 78 on any.
    ValidateEnv(checks::ValidateEnvArgs),
    /// Debate receipts.
    #[command(subcommand)]
    Receipt(ReceiptCommand),
    /// Backups of the database: create, list, verify, restore.
    #[command(subcommand)]
    Backup(dr::BackupCommand),
    /// Disaster-recovery drills: restore the latest backup into a scratch database and prove it serves.
    #[command(subcommand)]
    Drill(dr::DrillCommand),
    /// SLOs: check a spec, generate Prometheus rules and their promtool tests.
    #[command(subcommand)]
    Slo(SloCommand),
    /// The control plane beside separately run engines and gateways: backup, drill and chaos
    /// schedules, and live SLO evaluation over Prometheus.
    Control(control::ControlArgs),
    /// Chaos engineering: fault proxies, and experiments that prove the system survives faults.
    #[command(subcommand)]
    Chaos(chaos::ChaosCommand),
    /// Database migrations (the runbook's Procedure 5): status, check (exit 1 pending, 2 newer
    /// or changed), up (under PostgreSQL advisory lock 2089872453).
    #[command(subcommand)]
    Migrate(migrate::MigrateCommand),
    /// Health check without curl: GET the given URLs, or the /healthz of every aragora listener
    /// this environment configures here (engine, gateway admin and HTTPS, control); exit 0 when
    /// one answers 2xx, 1 otherwise. The image's HEALTHCHECK.
    Probe(probe::ProbeArgs),
    /// Credentials: create API keys (in the database), loop tokens and JWTs; list and revoke keys.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Webhook subscriptions through the running engine's admin API: list, add, pause, resume,
    /// delete; the dead-letter queue and its retry.
    #[command(subcommand)]
    Webhooks(webhooks::WebhooksCommand),
    /// Print the OpenAPI 3.1 document of the REST API (what GET /api/openapi.json serves), or
    /// write it to FILE: `aragora openapi --out docs/openapi.json` refreshes the committed one;
    /// with --gateway-admin, the gateway admin API's (docs/gateway-admin-openapi.json).
    Openapi {
        /// Write here instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<std::path::PathBuf>,
        /// The gateway admin listener's document (what its GET /openapi.json serves).
        #[arg(long)]
        gateway_admin: bool,
    },
}

#[derive(Subcommand)]
enum SloCommand {
    /// Print every problem of an SLO spec, each with its fix; exit 78 on any. Metrics outside
    /// the aragora_ namespace (your own services') get a note, not a refusal.
    Check {
        #[command(flatten)]
        spec: SloSpecArg,
        #[command(flatten)]
        lookup: SloLookupArg,
    },
    /// Write the rule files and their promtool tests (alerts/ in this repository).
    Generate {
        #[command(flatten)]
        spec: SloSpecArg,
        #[command(flatten)]
        lookup: SloLookupArg,
        /// Directory to write into; created if missing.
        #[arg(long, default_value = "alerts")]
        out: PathBuf,
        /// Also write the Grafana dashboards into this directory (dashboards/ here).
        #[arg(long)]
        dashboards: Option<PathBuf>,
        /// Also write Alertmanager's configuration, receivers from the ARAGORA_ALERT_* settings,
        /// into this file (deploy/alertmanager/alertmanager.yml here).
        #[arg(long)]
        alertmanager: Option<PathBuf>,
        /// Also write the rules as prometheus-operator PrometheusRule objects (the same groups as
        /// the rule files) into this file (deploy/k8s/base/prometheus-rules.yaml here).
        #[arg(long)]
        prometheus_rule: Option<PathBuf>,
    },
    /// Show each SLO's error ratio, budget left, burn rates and alerts, as a table (or JSON).
    Status {
        /// A running aragora (engine or gateway) whose GET /api/slo to read.
        #[arg(long, conflicts_with = "prometheus_url")]
        url: Option<String>,
        /// Evaluate over this Prometheus' HTTP API instead.
        #[arg(long, env = "ARAGORA_PROMETHEUS_URL")]
        prometheus_url: Option<String>,
        #[command(flatten)]
        spec: SloSpecArg,
        /// Accept a self-signed certificate (what `aragora up` makes).
        #[arg(long)]
        insecure: bool,
        /// Print the statuses as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct SloSpecArg {
    /// Spec file: `version: aragora/v1`, Sloth `version: prometheus/v1`, or OpenSLO v1
    /// documents. Without it, the default SLOs with targets from SLO_AVAILABILITY_TARGET,
    /// SLO_LATENCY_P99_TARGET_MS and SLO_DEBATE_SUCCESS_TARGET.
    #[arg(long)]
    spec: Option<PathBuf>,
}

#[derive(Args)]
struct SloLookupArg {
    /// A Prometheus that scrapes the services a spec names: the latency thresholds on
    /// histograms outside aragora are checked against the bucket bounds it has for them.
    #[arg(long)]
    prometheus_url: Option<String>,
}

#[derive(Subcommand)]
enum ReceiptCommand {
    /// Verify a receipt file offline against the key ring: ARAGORA_RECEIPT_SIGNING_KEY, every key
    /// of ARAGORA_RECEIPT_SIGNING_KEY_PREVIOUS and the key generated in the data directory (never
    /// generating one). Says which key signed it. Exits 0 when valid, 1 when not.
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

#[derive(Args, Clone, Default)]
pub struct ConfigArgs {
    /// TOML file with this component's settings; environment variables override it.
    #[arg(long, env = "ARAGORA_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Args, Clone, Default)]
pub struct EngineArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// REST API port (overrides ARAGORA_PORT).
    #[arg(long)]
    pub api_port: Option<u16>,
    /// WebSocket port (overrides ARAGORA_WS_PORT).
    #[arg(long)]
    pub ws_port: Option<u16>,
    /// Address to bind (overrides ARAGORA_HOST).
    #[arg(long)]
    pub host: Option<String>,
    /// Data directory (overrides ARAGORA_DATA_DIR).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

#[derive(Args, Clone, Default)]
pub struct GatewayFlags {
    /// Plain HTTP port, redirecting to HTTPS (overrides ARAGORA_HTTP_PORT).
    #[arg(long)]
    pub http_port: Option<u16>,
    /// HTTPS port (overrides ARAGORA_HTTPS_PORT).
    #[arg(long)]
    pub https_port: Option<u16>,
    /// Admin listener port on loopback (overrides ARAGORA_ADMIN_PORT).
    #[arg(long)]
    pub admin_port: Option<u16>,
    /// PEM certificate chain (overrides ARAGORA_TLS_CERT).
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (overrides ARAGORA_TLS_KEY).
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
}

#[derive(Args, Clone, Default)]
pub struct GatewayArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(flatten)]
    pub flags: GatewayFlags,
    /// An engine replica, host:port; repeat for several (overrides ARAGORA_UPSTREAMS).
    #[arg(long = "upstream")]
    pub upstreams: Vec<String>,
}

#[derive(Args, Clone, Default)]
pub struct UpArgs {
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub gateway: GatewayFlags,
}

fn main() -> ExitCode {
    let code = run_command(Cli::parse());
    // The log writer runs on its own thread; its buffered lines (the shutdown story) go out
    // before the process does.
    aragora_telemetry::flush_logs();
    code
}

fn run_command(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Gateway(args) => run::gateway(&args),
        Command::Openapi { out, gateway_admin } => openapi::command(out.as_deref(), gateway_admin),
        Command::Receipt(ReceiptCommand::Verify {
            file,
            config,
            data_dir,
        }) => checks::verify_receipt(&file, config, data_dir),
        Command::Slo(SloCommand::Check { spec, lookup }) => {
            slo::check(spec.spec.as_deref(), lookup.prometheus_url.as_deref())
        }
        Command::Slo(SloCommand::Generate {
            spec,
            lookup,
            out,
            dashboards,
            alertmanager,
            prometheus_rule,
        }) => slo::generate(
            spec.spec.as_deref(),
            lookup.prometheus_url.as_deref(),
            &out,
            slo::Extras {
                dashboards: dashboards.as_deref(),
                alertmanager: alertmanager.as_deref(),
                prometheus_rule: prometheus_rule.as_deref(),
            },
        ),
        command => {
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
                match command {
                    Command::ValidateEnv(args) => checks::validate_env(&args).await,
                    Command::Serve(args) => run::serve(&args).await,
                    Command::Up(args) => run::up(&args).await,
                    Command::Backup(command) => dr::backup(command).await,
                    Command::Drill(command) => dr::drill(command).await,
                    Command::Chaos(command) => chaos::run(command).await,
                    Command::Control(args) => control::control(&args).await,
                    Command::Token(command) => token::run(command).await,
                    Command::Webhooks(command) => webhooks::run(command).await,
                    Command::Migrate(command) => migrate::run(command).await,
                    Command::Probe(args) => probe::run(&args).await,
                    Command::Slo(SloCommand::Status {
                        url,
                        prometheus_url,
                        spec,
                        insecure,
                        json,
                    }) => {
                        slo::status(slo::StatusArgs {
                            url,
                            prometheus_url,
                            spec: spec.spec,
                            insecure,
                            json,
                        })
                        .await
                    }
                    Command::Gateway(_)
                    | Command::Receipt(_)
                    | Command::Slo(_)
                    | Command::Openapi { .. } => {
                        unreachable!("handled above")
                    }
                }
            })
        }
    }
}

#[cfg(test)]
mod tests {
    /// clap checks a command's definition only when it is built: a clash (two arguments of one
    /// name, say) would otherwise surface as a panic in the user's shell.
    #[test]
    fn every_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
