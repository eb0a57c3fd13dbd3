//! The process configuration: every part a command starts (engine, gateway, SLO targets, live
//! evaluation, DR, chaos schedule) read from its file and the environment, the command line's
//! flags applied, and only then validated, once, so all problems of all parts come out together
//! and a flag can fix what the environment got wrong. Every command loads through [`load`];
//! `validate-env` through [`read_and_validate`], which is the same minus refusing.

use crate::{EngineArgs, GatewayArgs, UpArgs};
use aragora_chaos::experiment::scheduled::ChaosConfig;
use aragora_chaos::DrConfig;
use aragora_config::{ConfigProblem, Env, LogFormat, LogLevel, Setting, Settings};
use aragora_engine::EngineConfig;
use aragora_gateway::GatewayConfig;
use aragora_slo::live::LiveSettings;
use aragora_slo::receivers::ReceiverSettings;
use aragora_slo::SloSettings;
use std::path::PathBuf;

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

/// Prints every problem and gives the exit code for configuration a command refuses (78).
pub fn refused(problems: &[ConfigProblem]) -> std::process::ExitCode {
    print_problems(problems);
    std::process::ExitCode::from(EXIT_BAD_CONFIG)
}

/// Prints `aragora: <err>` and gives the exit code of a command that failed (1).
pub fn failed(err: impl std::fmt::Display) -> std::process::ExitCode {
    eprintln!("aragora: {err}");
    std::process::ExitCode::FAILURE
}

/// How a command runs the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayRole {
    /// `aragora gateway`: upstreams and a certificate must be configured.
    Standalone,
    /// `aragora up`: in front of the embedded engine (its upstream) with a self-signed
    /// certificate generated when none is configured, and no drain delay unless one is set.
    Embedded,
}

/// The parts a command starts: those it validates (the others are read but not judged).
#[derive(Debug, Clone, Copy, Default)]
pub struct Parts {
    pub engine: bool,
    pub gateway: Option<GatewayRole>,
    pub slo: bool,
    pub live: bool,
    pub dr: bool,
    pub chaos: bool,
    /// The Alertmanager receivers (`ARAGORA_ALERT_*`): control's webhook sink.
    pub alerting: bool,
}

impl Parts {
    /// `serve`: the engine, its SLO evaluation and (optionally) the DR schedules.
    pub const SERVE: Self = Self {
        engine: true,
        gateway: None,
        slo: true,
        live: true,
        dr: true,
        chaos: false,
        alerting: false,
    };
    /// `up`: what `serve` runs, behind the embedded gateway.
    pub const UP: Self = Self {
        gateway: Some(GatewayRole::Embedded),
        ..Self::SERVE
    };
    /// `gateway`.
    pub const GATEWAY: Self = Self {
        engine: false,
        gateway: Some(GatewayRole::Standalone),
        slo: false,
        live: false,
        dr: false,
        chaos: false,
        alerting: false,
    };
    /// `control`: DR and chaos schedules, the live evaluation over Prometheus, the webhook sink.
    pub const CONTROL: Self = Self {
        chaos: true,
        alerting: true,
        ..Self::SERVE
    };
    /// `validate-env`: every part, as `up` and `control` would start them.
    pub const EVERYTHING: Self = Self {
        chaos: true,
        alerting: true,
        ..Self::UP
    };
    /// `backup` and `drill`.
    pub const DR: Self = Self {
        engine: true,
        dr: true,
        ..Self::NONE
    };
    /// `receipt verify`.
    pub const ENGINE: Self = Self {
        engine: true,
        ..Self::NONE
    };
    /// `slo check` and `slo generate` with the default SLOs.
    pub const SLO: Self = Self {
        slo: true,
        ..Self::NONE
    };
    const NONE: Self = Self {
        engine: false,
        gateway: None,
        slo: false,
        live: false,
        dr: false,
        chaos: false,
        alerting: false,
    };
}

/// What the command line says: each part's file and the flags that override settings.
#[derive(Clone, Default)]
pub struct Sources {
    pub engine: EngineArgs,
    pub gateway: GatewayArgs,
    pub backup_dir: Option<PathBuf>,
}

impl Sources {
    pub fn engine(args: &EngineArgs) -> Self {
        Self {
            engine: args.clone(),
            ..Self::default()
        }
    }

    pub fn gateway(args: &GatewayArgs) -> Self {
        Self {
            gateway: args.clone(),
            ..Self::default()
        }
    }

    /// `up` reads no gateway file: `--config` is the engine's.
    pub fn up(args: &UpArgs) -> Self {
        Self {
            engine: args.engine.clone(),
            gateway: GatewayArgs {
                flags: args.gateway.clone(),
                ..GatewayArgs::default()
            },
            backup_dir: None,
        }
    }
}

/// Every part of the process configuration. After [`load`] the parts the command asked for
/// are valid; the others hold what was read (defaults where a value did not parse).
#[derive(Debug, Clone)]
pub struct ProcessConfig {
    pub engine: EngineConfig,
    pub gateway: GatewayConfig,
    pub slo: SloSettings,
    pub live: LiveSettings,
    pub dr: DrConfig,
    pub chaos: ChaosConfig,
    pub receivers: ReceiverSettings,
}

/// The configuration of `parts`, or every problem of all of them.
pub fn load(parts: Parts, sources: &Sources) -> Result<ProcessConfig, Vec<ConfigProblem>> {
    let (config, problems) = read_and_validate(parts, sources, &aragora_config::process_env());
    aragora_config::checked(config, problems)
}

/// Reads every part (file, environment, flags), then validates those in `parts`: the config
/// as read and every problem of the parts asked for, without duplicates (the engine and the
/// gateway share `ARAGORA_REDIS_URL`).
pub fn read_and_validate(
    parts: Parts,
    sources: &Sources,
    env: &Env,
) -> (ProcessConfig, Vec<ConfigProblem>) {
    let mut problems = Vec::new();
    let mut keep = |wanted: bool, found: Vec<ConfigProblem>| {
        if wanted {
            problems.extend(found);
        }
    };

    let (mut engine, mut read) = EngineConfig::read(sources.engine.config.config.as_deref(), env);
    apply_engine_flags(&mut engine, &mut read, &sources.engine);
    if parts.gateway == Some(GatewayRole::Embedded) {
        keep_embedded_engine_local(&mut engine, sources, env);
    }
    keep(parts.engine, read);

    let (mut gateway, mut read) =
        GatewayConfig::read(sources.gateway.config.config.as_deref(), env);
    apply_gateway_flags(&mut gateway, &mut read, &sources.gateway);
    if parts.gateway == Some(GatewayRole::Embedded) {
        complete_embedded_gateway(&mut gateway, &engine, env);
    }
    keep(parts.gateway.is_some(), read);

    let (slo, read) = SloSettings::read(None, env);
    keep(parts.slo, read);
    let (live, read) = LiveSettings::read(None, env);
    keep(parts.live, read);

    let dr_file = env
        .get("ARAGORA_DR_CONFIG")
        .filter(|file| !file.is_empty())
        .map(PathBuf::from);
    let (mut dr, read) = DrConfig::read(dr_file.as_deref(), env);
    if let Some(dir) = &sources.backup_dir {
        dr.backup_dir = Some(dir.clone());
    }
    keep(parts.dr, read);

    let (chaos, read) = ChaosConfig::read(None, env);
    keep(parts.chaos, read);
    let (receivers, read) = ReceiverSettings::read(None, env);
    keep(parts.alerting, read);

    if parts.engine {
        problems.extend(engine.validate());
    }
    match parts.gateway {
        Some(GatewayRole::Standalone) => problems.extend(gateway.validate()),
        Some(GatewayRole::Embedded) => {
            problems.extend(gateway.validate_settings());
            // Unset, `up` generates its own; a half-given pair or a bad file is still wrong.
            if gateway.tls_cert.is_some() || gateway.tls_key.is_some() {
                problems.extend(gateway.validate_certificate());
            }
        }
        None => {}
    }
    if parts.slo {
        problems.extend(slo.validate());
    }
    if parts.live {
        problems.extend(live.validate());
    }
    if parts.dr {
        problems.extend(dr.validate());
    }
    if parts.chaos {
        problems.extend(chaos.validate());
    }
    if parts.alerting {
        problems.extend(receivers.validate());
    }

    if aragora_auth::AuthConfig::environment_in(env) == aragora_config::Environment::Production {
        problems.extend(aragora_config::placeholder_problems(env));
    }

    let mut seen = std::collections::HashSet::new();
    problems.retain(|problem| seen.insert(problem.clone()));
    let config = ProcessConfig {
        engine,
        gateway,
        slo,
        live,
        dr,
        chaos,
        receivers,
    };
    (config, problems)
}

/// Sets `field` from a flag: the flag wins over file and environment, so what they got wrong
/// about this setting (a value that did not parse) no longer counts.
fn flag<T: Clone>(
    field: &mut T,
    value: Option<&T>,
    key: &str,
    settings: &[Setting],
    problems: &mut Vec<ConfigProblem>,
) {
    let Some(value) = value else { return };
    *field = value.clone();
    if let Some(setting) = settings.iter().find(|s| s.key == key) {
        problems.retain(|problem| !setting.env.contains(&problem.setting.as_str()));
    }
}

fn apply_engine_flags(config: &mut EngineConfig, read: &mut Vec<ConfigProblem>, args: &EngineArgs) {
    let settings = aragora_engine::config::SETTINGS;
    flag(
        &mut config.api_port,
        args.api_port.as_ref(),
        "api_port",
        settings,
        read,
    );
    flag(
        &mut config.ws_port,
        args.ws_port.as_ref(),
        "ws_port",
        settings,
        read,
    );
    flag(&mut config.host, args.host.as_ref(), "host", settings, read);
    flag(
        &mut config.data_dir,
        args.data_dir.as_ref(),
        "data_dir",
        settings,
        read,
    );
}

fn apply_gateway_flags(
    config: &mut GatewayConfig,
    read: &mut Vec<ConfigProblem>,
    args: &GatewayArgs,
) {
    let settings = aragora_gateway::SETTINGS;
    let flags = &args.flags;
    flag(
        &mut config.http_port,
        flags.http_port.as_ref(),
        "http_port",
        settings,
        read,
    );
    flag(
        &mut config.https_port,
        flags.https_port.as_ref(),
        "https_port",
        settings,
        read,
    );
    flag(
        &mut config.admin_port,
        flags.admin_port.as_ref(),
        "admin_port",
        settings,
        read,
    );
    let cert = flags.tls_cert.clone().map(Some);
    flag(
        &mut config.tls_cert,
        cert.as_ref(),
        "tls_cert",
        settings,
        read,
    );
    let key = flags.tls_key.clone().map(Some);
    flag(&mut config.tls_key, key.as_ref(), "tls_key", settings, read);
    let upstreams = (!args.upstreams.is_empty()).then(|| args.upstreams.clone());
    flag(
        &mut config.upstreams,
        upstreams.as_ref(),
        "upstreams",
        settings,
        read,
    );
}

/// Where `aragora up` binds its engine unless told otherwise.
pub const EMBEDDED_ENGINE_HOST: &str = "127.0.0.1";

/// `aragora up` binds its engine to loopback: the only way in from outside is then its gateway
/// (TLS, rate limits, later authentication). A host chosen explicitly (ARAGORA_HOST, --host,
/// `host` in the config file) still wins, even 0.0.0.0.
fn keep_embedded_engine_local(engine: &mut EngineConfig, sources: &Sources, env: &Env) {
    let host_env = aragora_engine::config::SETTINGS
        .iter()
        .find(|setting| setting.key == "host")
        .map_or(&[][..], |setting| setting.env);
    let chosen = host_env.iter().any(|name| env.contains_key(*name))
        || sources.engine.host.is_some()
        || aragora_config::file_sets(sources.engine.config.config.as_deref(), "host");
    if !chosen {
        engine.host = EMBEDDED_ENGINE_HOST.to_string();
    }
}

/// What `aragora up` provides itself, before validation: the embedded engine as upstream
/// (replaced by its real port once bound), and no drain delay unless one is configured
/// (nothing sits in front of it). The certificate is generated only once everything is valid.
fn complete_embedded_gateway(config: &mut GatewayConfig, engine: &EngineConfig, env: &Env) {
    if config.upstreams.is_empty() {
        config.upstreams = vec![format!("127.0.0.1:{}", engine.api_port.max(1))];
    }
    if !env.contains_key("ARAGORA_GATEWAY_DRAIN_DELAY") {
        config.drain_delay_secs = 0;
    }
}

/// Installs the log subscriber. `format` is resolved by the caller when `auto` should depend
/// on the terminal (`up`, [`LogFormat::resolve`]); `auto` left here is JSON, the default of
/// every command nobody watches.
pub fn init_logging(level: LogLevel, format: LogFormat) {
    let format = match format.resolve(false, false) {
        LogFormat::Text => aragora_telemetry::LogFormat::Text,
        LogFormat::Json | LogFormat::Auto => aragora_telemetry::LogFormat::Json,
    };
    aragora_telemetry::init_logging(level.directive(), format);
}

#[cfg(test)]
mod tests {
    use super::*;
    use aragora_config::env_map;

    fn settings_named(problems: &[ConfigProblem]) -> Vec<&str> {
        problems.iter().map(|p| p.setting.as_str()).collect()
    }

    #[test]
    fn problems_of_every_part_come_out_together() {
        let env = env_map(&[
            ("ARAGORA_DEFAULT_ROUNDS", "99"),
            ("ARAGORA_GATEWAY_THREADS", "0"),
            ("SLO_AVAILABILITY_TARGET", "most"),
            ("ARAGORA_SLO_WINDOW_SCALE", "2"),
            ("ARAGORA_BACKUP_KEEP_COUNT", "0"),
            ("ARAGORA_CHAOS_SCHEDULE", "often"),
        ]);
        let (_, problems) = read_and_validate(Parts::EVERYTHING, &Sources::default(), &env);
        let named = settings_named(&problems);
        for setting in [
            "ARAGORA_DEFAULT_ROUNDS",
            "ARAGORA_GATEWAY_THREADS",
            "SLO_AVAILABILITY_TARGET",
            "ARAGORA_SLO_WINDOW_SCALE",
            "ARAGORA_BACKUP_KEEP_COUNT",
            "ARAGORA_CHAOS_SCHEDULE",
            // A schedule with nothing to run.
            "ARAGORA_CHAOS_EXPERIMENTS",
        ] {
            assert!(named.contains(&setting), "{setting} missing: {problems:?}");
        }
        assert_eq!(problems.len(), 7, "{problems:?}");

        // `serve` starts no gateway and no chaos schedule: their problems are not its own.
        let (_, problems) = read_and_validate(Parts::SERVE, &Sources::default(), &env);
        let named = settings_named(&problems);
        assert!(!named.contains(&"ARAGORA_GATEWAY_THREADS"), "{problems:?}");
        assert!(!named.contains(&"ARAGORA_CHAOS_SCHEDULE"), "{problems:?}");
        assert!(named.contains(&"ARAGORA_DEFAULT_ROUNDS"), "{problems:?}");
    }

    #[test]
    fn flags_are_applied_before_validation() {
        let env = env_map(&[("ARAGORA_HOST", "everywhere"), ("ARAGORA_PORT", "eighty")]);
        let (_, problems) = read_and_validate(Parts::SERVE, &Sources::default(), &env);
        assert_eq!(
            settings_named(&problems),
            ["ARAGORA_PORT", "ARAGORA_HOST"],
            "{problems:?}"
        );

        // Valid flags replace what the environment got wrong.
        let fixed = Sources::engine(&EngineArgs {
            host: Some("127.0.0.1".into()),
            api_port: Some(9000),
            ..EngineArgs::default()
        });
        let (config, problems) = read_and_validate(Parts::SERVE, &fixed, &env);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            (config.engine.host.as_str(), config.engine.api_port),
            ("127.0.0.1", 9000)
        );

        // An invalid flag is judged like any other value.
        let clash = Sources::engine(&EngineArgs {
            api_port: Some(8765),
            ..EngineArgs::default()
        });
        let (_, problems) = read_and_validate(Parts::SERVE, &clash, &env_map(&[]));
        assert_eq!(
            settings_named(&problems),
            ["ARAGORA_WS_PORT"],
            "{problems:?}"
        );
    }

    #[test]
    fn up_keeps_the_engine_on_loopback_unless_a_host_is_chosen() {
        let (config, _) = read_and_validate(Parts::UP, &Sources::default(), &env_map(&[]));
        assert_eq!(config.engine.host, EMBEDDED_ENGINE_HOST);
        let (config, _) = read_and_validate(Parts::SERVE, &Sources::default(), &env_map(&[]));
        assert_eq!(config.engine.host, "0.0.0.0", "`serve` keeps its default");

        let chosen = env_map(&[("ARAGORA_HOST", "0.0.0.0")]);
        let (config, _) = read_and_validate(Parts::UP, &Sources::default(), &chosen);
        assert_eq!(config.engine.host, "0.0.0.0", "ARAGORA_HOST wins");
        let flag = Sources::up(&UpArgs {
            engine: EngineArgs {
                host: Some("0.0.0.0".into()),
                ..EngineArgs::default()
            },
            ..UpArgs::default()
        });
        let (config, _) = read_and_validate(Parts::UP, &flag, &env_map(&[]));
        assert_eq!(config.engine.host, "0.0.0.0", "--host wins");

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("engine.toml");
        std::fs::write(&file, "host = \"0.0.0.0\"\n").unwrap();
        let from_file = Sources::up(&UpArgs {
            engine: EngineArgs {
                config: crate::ConfigArgs { config: Some(file) },
                ..EngineArgs::default()
            },
            ..UpArgs::default()
        });
        let (config, _) = read_and_validate(Parts::UP, &from_file, &env_map(&[]));
        assert_eq!(config.engine.host, "0.0.0.0", "the file's host wins");
    }

    #[test]
    fn the_embedded_gateway_needs_no_upstream_or_certificate_but_the_standalone_one_does() {
        let env = env_map(&[]);
        let (config, problems) = read_and_validate(Parts::UP, &Sources::default(), &env);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(config.gateway.upstreams, ["127.0.0.1:8080"]);
        assert_eq!(config.gateway.drain_delay_secs, 0);

        let (_, problems) = read_and_validate(Parts::GATEWAY, &Sources::default(), &env);
        let named = settings_named(&problems);
        assert!(named.contains(&"ARAGORA_UPSTREAMS"), "{problems:?}");
        assert!(named.contains(&"ARAGORA_TLS_CERT"), "{problems:?}");
    }
}
