//! The engine's configuration: typed, with a default and a doc line for every value.
//!
//! Sources, later ones winning: built-in defaults, an optional TOML file (keys are the field
//! names below), the `ARAGORA_*` environment variables of the operations runbooks, then
//! command-line flags. [`EngineConfig::load`] never stops at the first mistake: it returns every
//! problem at once, each naming the setting and saying how to fix it, so `aragora validate-env`
//! and `aragora serve` refuse bad config with the same list.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Which database holds debates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DbBackend {
    Sqlite,
    Postgres,
}

impl DbBackend {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// One thing wrong with the configuration: which setting, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub setting: String,
    pub message: String,
}

impl ConfigProblem {
    pub fn new(setting: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            setting: setting.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.setting, self.message)
    }
}

/// A documented setting: its TOML key, the environment variables that set it, and what it does.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    pub key: &'static str,
    pub env: &'static [&'static str],
    pub doc: &'static str,
}

/// A value that can be read from an environment variable.
trait FromEnv: Sized {
    fn from_env(raw: &str) -> Result<Self, String>;
}

macro_rules! number_from_env {
    ($($t:ty),*) => {$(
        impl FromEnv for $t {
            fn from_env(raw: &str) -> Result<Self, String> {
                raw.trim().parse().map_err(|_| {
                    format!("{raw:?} is not a whole number between {} and {}", <$t>::MIN, <$t>::MAX)
                })
            }
        }
    )*};
}
number_from_env!(u16, u32, u64, usize);

impl FromEnv for String {
    fn from_env(raw: &str) -> Result<Self, String> {
        Ok(raw.to_string())
    }
}

impl FromEnv for PathBuf {
    fn from_env(raw: &str) -> Result<Self, String> {
        if raw.trim().is_empty() {
            return Err("is empty; give a directory path".into());
        }
        Ok(PathBuf::from(raw))
    }
}

impl FromEnv for Option<String> {
    fn from_env(raw: &str) -> Result<Self, String> {
        Ok((!raw.is_empty()).then(|| raw.to_string()))
    }
}

impl FromEnv for Vec<String> {
    fn from_env(raw: &str) -> Result<Self, String> {
        Ok(raw
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(str::to_string)
            .collect())
    }
}

impl FromEnv for DbBackend {
    fn from_env(raw: &str) -> Result<Self, String> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "sqlite" => Ok(Self::Sqlite),
            "postgres" | "postgresql" => Ok(Self::Postgres),
            _ => Err(format!("{raw:?} is not a backend; use sqlite or postgres")),
        }
    }
}

/// Declares the config struct's settings once: field, environment variables, doc line.
/// Generates [`SETTINGS`] (for docs and `validate-env`) and the environment overlay.
macro_rules! settings {
    ($($field:ident: [$($env:literal),*] $doc:literal;)*) => {
        /// Every setting of [`EngineConfig`], in the order the README documents them.
        pub const SETTINGS: &[Setting] = &[
            $(Setting { key: stringify!($field), env: &[$($env),*], doc: $doc }),*
        ];

        impl EngineConfig {
            fn apply_env(&mut self, env: &HashMap<String, String>, problems: &mut Vec<ConfigProblem>) {
                $(
                    for name in [$($env),*] {
                        if let Some(raw) = env.get(name) {
                            match FromEnv::from_env(raw) {
                                Ok(value) => self.$field = value,
                                Err(message) => problems.push(ConfigProblem::new(name, message)),
                            }
                            break;
                        }
                    }
                )*
            }
        }
    };
}

/// Everything `aragora serve` needs to run the debate engine.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    pub host: String,
    pub api_port: u16,
    pub ws_port: u16,
    pub data_dir: PathBuf,
    pub db_backend: DbBackend,
    pub database_url: Option<String>,
    pub db_pool_size: u32,
    pub db_connect_timeout_secs: u64,
    pub default_rounds: u32,
    pub max_concurrent_debates: usize,
    pub debate_queue_size: usize,
    pub debate_timeout_secs: u64,
    pub agent_timeout_secs: u64,
    pub offline_agent_latency_ms: u64,
    pub watchdog_interval_secs: u64,
    pub drain_timeout_secs: u64,
    pub max_body_bytes: usize,
    pub max_topic_chars: usize,
    pub ws_heartbeat_secs: u64,
    pub ws_max_message_size: usize,
    pub jwt_secret: Option<String>,
    pub api_token: Option<String>,
    pub allowed_origins: Vec<String>,
    pub environment: String,
    pub log_level: String,
    pub log_format: String,
}

settings! {
    host: ["ARAGORA_HOST"] "Address the API and WebSocket listeners bind to.";
    api_port: ["ARAGORA_PORT"] "REST API port; the WebSocket endpoint /ws is served here too. 0 picks a free port.";
    ws_port: ["ARAGORA_WS_PORT"] "Dedicated WebSocket port (serves /ws). 0 picks a free port.";
    data_dir: ["ARAGORA_DATA_DIR"] "Directory for the SQLite database, backups and certificates; created if missing.";
    db_backend: ["ARAGORA_DB_BACKEND"] "sqlite (the file aragora.db in the data directory) or postgres.";
    database_url: ["DATABASE_URL", "ARAGORA_POSTGRES_DSN"] "PostgreSQL connection string, required when the backend is postgres.";
    db_pool_size: ["ARAGORA_DB_POOL_SIZE"] "Database connections kept open.";
    db_connect_timeout_secs: ["ARAGORA_DB_CONNECT_TIMEOUT"] "Seconds to keep retrying the first database connection before giving up (readiness stays false meanwhile).";
    default_rounds: ["ARAGORA_DEFAULT_ROUNDS"] "Rounds of a debate whose request does not say (1 to 12).";
    max_concurrent_debates: ["ARAGORA_MAX_CONCURRENT_DEBATES"] "Debates running at once on this replica; more wait in the queue.";
    debate_queue_size: ["ARAGORA_DEBATE_QUEUE_SIZE"] "Debates that may wait for a slot; beyond it new debates get 429.";
    debate_timeout_secs: ["ARAGORA_DEBATE_TIMEOUT"] "Seconds a debate may run before it ends as timed_out.";
    agent_timeout_secs: ["ARAGORA_AGENT_TIMEOUT"] "Seconds one agent call may take before it counts as failed.";
    offline_agent_latency_ms: ["ARAGORA_OFFLINE_AGENT_LATENCY_MS"] "Simulated think time of the built-in offline agents, for demos and load tests.";
    watchdog_interval_secs: ["ARAGORA_WATCHDOG_INTERVAL"] "Seconds between scans for debates stuck past their timeout.";
    drain_timeout_secs: ["ARAGORA_DRAIN_TIMEOUT"] "On SIGTERM, seconds to let running debates finish before they are saved as interrupted.";
    max_body_bytes: ["ARAGORA_MAX_BODY_BYTES"] "Largest request body accepted; larger ones get 413.";
    max_topic_chars: ["ARAGORA_MAX_TOPIC_LENGTH"] "Longest debate topic accepted, in characters.";
    ws_heartbeat_secs: ["ARAGORA_WS_HEARTBEAT_INTERVAL"] "Seconds between heartbeat events on an idle WebSocket.";
    ws_max_message_size: ["ARAGORA_WS_MAX_MESSAGE_SIZE"] "Largest WebSocket message accepted from a client, in bytes.";
    jwt_secret: ["ARAGORA_JWT_SECRET"] "Secret for signing tokens; at least 32 characters; required in production.";
    api_token: ["ARAGORA_API_TOKEN"] "Bearer token for admin endpoints.";
    allowed_origins: ["ARAGORA_ALLOWED_ORIGINS"] "Comma-separated CORS origins (scheme://host[:port]); a wildcard is refused.";
    environment: ["ARAGORA_ENV", "ARAGORA_ENVIRONMENT"] "development or production; production requires ARAGORA_JWT_SECRET.";
    log_level: ["ARAGORA_LOG_LEVEL"] "DEBUG, INFO, WARNING or ERROR.";
    log_format: ["ARAGORA_LOG_FORMAT"] "json (one object per line) or text.";
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".into(),
            api_port: 8080,
            ws_port: 8765,
            data_dir: PathBuf::from("./data"),
            db_backend: DbBackend::Sqlite,
            database_url: None,
            db_pool_size: 10,
            db_connect_timeout_secs: 30,
            default_rounds: 3,
            max_concurrent_debates: 5,
            debate_queue_size: 100,
            debate_timeout_secs: 900,
            agent_timeout_secs: 240,
            offline_agent_latency_ms: 0,
            watchdog_interval_secs: 30,
            drain_timeout_secs: 30,
            max_body_bytes: 256 * 1024,
            max_topic_chars: 4000,
            ws_heartbeat_secs: 15,
            ws_max_message_size: 64 * 1024,
            jwt_secret: None,
            api_token: None,
            allowed_origins: vec!["http://localhost:3000".into()],
            environment: "development".into(),
            log_level: "INFO".into(),
            log_format: "json".into(),
        }
    }
}

const LOG_LEVELS: &[&str] = &[
    "trace", "debug", "info", "warning", "warn", "error", "critical",
];

impl EngineConfig {
    /// Reads defaults, then `file` (TOML) if given, then `env`, and validates the result.
    /// Returns every problem found, not just the first.
    pub fn load(
        file: Option<&Path>,
        env: &HashMap<String, String>,
    ) -> Result<Self, Vec<ConfigProblem>> {
        let mut problems = Vec::new();
        let mut config = match file {
            Some(path) => Self::from_file(path).unwrap_or_else(|problem| {
                problems.push(problem);
                Self::default()
            }),
            None => Self::default(),
        };
        config.apply_env(env, &mut problems);
        problems.extend(config.validate());
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(problems)
        }
    }

    fn from_file(path: &Path) -> Result<Self, ConfigProblem> {
        let setting = format!("config file {}", path.display());
        let text = std::fs::read_to_string(path)
            .map_err(|err| ConfigProblem::new(&setting, format!("cannot be read: {err}")))?;
        toml::from_str(&text).map_err(|err| {
            ConfigProblem::new(
                &setting,
                format!("is not valid: {}", err.to_string().trim()),
            )
        })
    }

    /// Checks every value; empty when the config is usable.
    pub fn validate(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, setting: &str, message: String| {
            if !ok {
                problems.push(ConfigProblem::new(setting, message));
            }
        };
        check(
            self.api_port == 0 || self.api_port != self.ws_port,
            "ARAGORA_WS_PORT",
            format!(
                "is the same as ARAGORA_PORT ({}); give the WebSocket listener its own port",
                self.api_port
            ),
        );
        check(
            self.host.parse::<std::net::IpAddr>().is_ok(),
            "ARAGORA_HOST",
            format!("{:?} is not an IP address; use 0.0.0.0 for all interfaces or 127.0.0.1 for local only", self.host),
        );
        check(
            (1..=12).contains(&self.default_rounds),
            "ARAGORA_DEFAULT_ROUNDS",
            format!(
                "is {}; use a number of rounds from 1 to 12",
                self.default_rounds
            ),
        );
        check(
            (1..=10_000).contains(&self.max_concurrent_debates),
            "ARAGORA_MAX_CONCURRENT_DEBATES",
            format!("is {}; use 1 to 10000", self.max_concurrent_debates),
        );
        check(
            self.debate_queue_size <= 1_000_000,
            "ARAGORA_DEBATE_QUEUE_SIZE",
            format!("is {}; use at most 1000000", self.debate_queue_size),
        );
        check(
            self.debate_timeout_secs >= 1,
            "ARAGORA_DEBATE_TIMEOUT",
            "is 0; give the seconds a debate may run (default 900)".into(),
        );
        check(
            (1..=self.debate_timeout_secs.max(1)).contains(&self.agent_timeout_secs),
            "ARAGORA_AGENT_TIMEOUT",
            format!(
                "is {}; use at least 1 and at most ARAGORA_DEBATE_TIMEOUT ({})",
                self.agent_timeout_secs, self.debate_timeout_secs
            ),
        );
        check(
            self.watchdog_interval_secs >= 1,
            "ARAGORA_WATCHDOG_INTERVAL",
            "is 0; use at least 1 second".into(),
        );
        check(
            (1..=1000).contains(&self.db_pool_size),
            "ARAGORA_DB_POOL_SIZE",
            format!("is {}; use 1 to 1000 connections", self.db_pool_size),
        );
        check(
            self.max_body_bytes >= 1024,
            "ARAGORA_MAX_BODY_BYTES",
            format!("is {}; use at least 1024 bytes", self.max_body_bytes),
        );
        check(
            self.max_topic_chars >= 1 && self.max_topic_chars < self.max_body_bytes,
            "ARAGORA_MAX_TOPIC_LENGTH",
            format!(
                "is {}; use at least 1 and less than ARAGORA_MAX_BODY_BYTES ({})",
                self.max_topic_chars, self.max_body_bytes
            ),
        );
        check(
            self.ws_heartbeat_secs >= 1,
            "ARAGORA_WS_HEARTBEAT_INTERVAL",
            "is 0; use at least 1 second".into(),
        );
        check(
            self.ws_max_message_size >= 256,
            "ARAGORA_WS_MAX_MESSAGE_SIZE",
            format!("is {}; use at least 256 bytes", self.ws_max_message_size),
        );
        if let Some(secret) = &self.jwt_secret {
            check(
                secret.chars().count() >= 32,
                "ARAGORA_JWT_SECRET",
                format!(
                    "is {} characters long; use at least 32 (for example the output of `openssl rand -hex 32`)",
                    secret.chars().count()
                ),
            );
        }
        check(
            matches!(
                self.environment.as_str(),
                "development" | "production" | "staging" | "test"
            ),
            "ARAGORA_ENV",
            format!(
                "{:?} is not an environment; use development, staging, test or production",
                self.environment
            ),
        );
        check(
            self.environment != "production" || self.jwt_secret.is_some(),
            "ARAGORA_JWT_SECRET",
            "is required when ARAGORA_ENV=production; set a secret of at least 32 characters"
                .into(),
        );
        for origin in &self.allowed_origins {
            let well_formed = origin.split_once("://").is_some_and(|(scheme, host)| {
                matches!(scheme, "http" | "https") && !host.is_empty() && !host.contains('/')
            });
            check(
                !origin.contains('*'),
                "ARAGORA_ALLOWED_ORIGINS",
                format!("contains the wildcard {origin:?}; list each origin explicitly (https://app.example.com)"),
            );
            check(
                origin.contains('*') || well_formed,
                "ARAGORA_ALLOWED_ORIGINS",
                format!("{origin:?} is not an origin; write scheme://host[:port] with no path"),
            );
        }
        check(
            LOG_LEVELS.contains(&self.log_level.to_ascii_lowercase().as_str()),
            "ARAGORA_LOG_LEVEL",
            format!(
                "{:?} is not a level; use DEBUG, INFO, WARNING or ERROR",
                self.log_level
            ),
        );
        check(
            matches!(self.log_format.as_str(), "json" | "text"),
            "ARAGORA_LOG_FORMAT",
            format!("{:?} is not a format; use json or text", self.log_format),
        );
        if self.db_backend == DbBackend::Postgres {
            match &self.database_url {
                None => check(
                    false,
                    "DATABASE_URL",
                    "is required when ARAGORA_DB_BACKEND=postgres; set it (or ARAGORA_POSTGRES_DSN) to postgres://user:password@host:5432/aragora".into(),
                ),
                Some(url) => check(
                    url.starts_with("postgres://") || url.starts_with("postgresql://"),
                    "DATABASE_URL",
                    "does not start with postgres:// or postgresql://; give a PostgreSQL connection string".into(),
                ),
            }
        }
        problems
    }

    /// The connection string the store opens.
    pub fn database_url(&self) -> String {
        match self.db_backend {
            DbBackend::Sqlite => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("aragora.db").display()
            ),
            DbBackend::Postgres => self.database_url.clone().unwrap_or_default(),
        }
    }

    /// Is this a production deployment (stricter checks, JSON logs)?
    pub fn is_production(&self) -> bool {
        self.environment == "production"
    }
}

/// A snapshot of the process environment, the input of [`EngineConfig::load`].
pub fn process_env() -> HashMap<String, String> {
    std::env::vars().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_valid_and_match_the_runbook() {
        let config = EngineConfig::load(None, &HashMap::new()).expect("defaults valid");
        assert_eq!(config.api_port, 8080);
        assert_eq!(config.ws_port, 8765);
        assert_eq!(config.default_rounds, 3);
        assert_eq!(config.debate_timeout_secs, 900);
        assert_eq!(config.agent_timeout_secs, 240);
        assert_eq!(config.max_concurrent_debates, 5);
        assert_eq!(config.db_backend, DbBackend::Sqlite);
    }

    #[test]
    fn environment_overrides_defaults() {
        let config = EngineConfig::load(
            None,
            &env(&[
                ("ARAGORA_PORT", "9000"),
                ("ARAGORA_DB_BACKEND", "postgres"),
                ("ARAGORA_POSTGRES_DSN", "postgres://x@h/db"),
            ]),
        )
        .unwrap();
        assert_eq!(config.api_port, 9000);
        assert_eq!(config.db_backend, DbBackend::Postgres);
        assert_eq!(config.database_url(), "postgres://x@h/db");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let problems = EngineConfig::load(
            None,
            &env(&[
                ("ARAGORA_JWT_SECRET", "short"),
                ("ARAGORA_ALLOWED_ORIGINS", "https://ok.example.com,*"),
                ("ARAGORA_PORT", "eighty"),
                ("ARAGORA_DEFAULT_ROUNDS", "99"),
            ]),
        )
        .unwrap_err();
        let settings: Vec<&str> = problems.iter().map(|p| p.setting.as_str()).collect();
        assert!(settings.contains(&"ARAGORA_JWT_SECRET"), "{problems:?}");
        assert!(
            settings.contains(&"ARAGORA_ALLOWED_ORIGINS"),
            "{problems:?}"
        );
        assert!(settings.contains(&"ARAGORA_PORT"), "{problems:?}");
        assert!(settings.contains(&"ARAGORA_DEFAULT_ROUNDS"), "{problems:?}");
        assert!(problems.iter().any(|p| p.message.contains("at least 32")));
    }

    #[test]
    fn toml_file_is_read_and_unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.toml");
        std::fs::write(&good, "api_port = 9100\ndefault_rounds = 2\n").unwrap();
        let config =
            EngineConfig::load(Some(&good), &env(&[("ARAGORA_DEFAULT_ROUNDS", "4")])).unwrap();
        assert_eq!(config.api_port, 9100);
        assert_eq!(config.default_rounds, 4, "environment wins over the file");

        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "api_prot = 9100\n").unwrap();
        let problems = EngineConfig::load(Some(&bad), &HashMap::new()).unwrap_err();
        assert!(problems[0].message.contains("api_prot"), "{problems:?}");
    }

    #[test]
    fn postgres_without_a_url_says_what_to_set() {
        let problems =
            EngineConfig::load(None, &env(&[("ARAGORA_DB_BACKEND", "postgres")])).unwrap_err();
        assert_eq!(problems[0].setting, "DATABASE_URL");
        assert!(problems[0].message.contains("ARAGORA_POSTGRES_DSN"));
    }

    #[test]
    fn every_field_is_a_documented_setting() {
        let fields = toml::to_string(&EngineConfig {
            jwt_secret: Some("x".into()),
            api_token: Some("x".into()),
            database_url: Some("x".into()),
            ..EngineConfig::default()
        })
        .unwrap();
        let keys: Vec<&str> = fields
            .lines()
            .filter_map(|l| l.split(" = ").next())
            .collect();
        for key in keys.iter().filter(|k| !k.is_empty()) {
            assert!(
                SETTINGS.iter().any(|s| s.key == *key),
                "{key} has no SETTINGS entry"
            );
        }
        assert_eq!(
            keys.iter().filter(|k| !k.is_empty()).count(),
            SETTINGS.len()
        );
    }
}
