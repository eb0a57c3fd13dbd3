//! Configuration of each component from its file, the environment and command-line flags.

use crate::{EngineArgs, GatewayArgs, GatewayFlags};
use aragora_engine::config::process_env;
use aragora_engine::{ConfigProblem, EngineConfig};
use aragora_gateway::GatewayConfig;
use aragora_telemetry::LogFormat;

/// Exit code for configuration a command refuses to run with (as `sysexits` EX_CONFIG).
pub const EXIT_BAD_CONFIG: u8 = 78;

pub fn print_problems(problems: &[ConfigProblem]) {
    eprintln!(
        "aragora: the configuration has {} problem(s):",
        problems.len()
    );
    for problem in problems {
        eprintln!("  - {problem}");
    }
}

fn validated<T>(value: T, problems: Vec<ConfigProblem>) -> Result<T, Vec<ConfigProblem>> {
    if problems.is_empty() {
        Ok(value)
    } else {
        Err(problems)
    }
}

/// Engine config: file, environment, then flags; validated.
pub fn engine_config(args: &EngineArgs) -> Result<EngineConfig, Vec<ConfigProblem>> {
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
    validated(config, problems)
}

fn apply_gateway_flags(config: &mut GatewayConfig, flags: &GatewayFlags) {
    if let Some(port) = flags.http_port {
        config.http_port = port;
    }
    if let Some(port) = flags.https_port {
        config.https_port = port;
    }
    if let Some(port) = flags.admin_port {
        config.admin_port = port;
    }
    if let Some(cert) = &flags.tls_cert {
        config.tls_cert = Some(cert.clone());
    }
    if let Some(key) = &flags.tls_key {
        config.tls_key = Some(key.clone());
    }
}

/// Gateway config: file, environment, then flags. `complete` fills what `aragora up` provides
/// itself (the embedded engine as upstream, a generated certificate) before validation.
pub fn gateway_config(
    args: &GatewayArgs,
    complete: impl FnOnce(&mut GatewayConfig),
) -> Result<GatewayConfig, Vec<ConfigProblem>> {
    let (mut config, mut problems) =
        GatewayConfig::read(args.config.config.as_deref(), &process_env());
    apply_gateway_flags(&mut config, &args.flags);
    if !args.upstreams.is_empty() {
        config.upstreams = args.upstreams.clone();
    }
    complete(&mut config);
    problems.extend(config.validate());
    problems.dedup();
    validated(config, problems)
}

pub fn init_logging(level: &str, format: &str) {
    let format = if format == "text" {
        LogFormat::Text
    } else {
        LogFormat::Json
    };
    aragora_telemetry::init_logging(level, format);
}
