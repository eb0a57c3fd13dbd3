//! The engine's configuration: typed, with a default and a doc line for every value.
//!
//! Sources, later ones winning: built-in defaults, an optional TOML file (keys are the field
//! names below), the `ARAGORA_*` environment variables of the operations runbooks, then
//! command-line flags. `EngineConfig` is one part of the process configuration
//! ([`aragora_config::Settings`]): read without judging, flags applied by the binary, then
//! validated once, returning every problem at once, each naming the setting and saying how to
//! fix it, so `aragora validate-env` and `aragora serve` refuse bad config with the same list.

use crate::agents::providers::ProviderKind;
use aragora_auth::AuthConfig;
pub use aragora_config::process_env;
pub use aragora_config::{ConfigProblem, Environment, LogFormat, LogLevel, Setting, Settings};
use aragora_config::{Env, FromEnv};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

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

impl FromEnv for DbBackend {
    fn from_env(raw: &str) -> Result<Self, String> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "sqlite" => Ok(Self::Sqlite),
            "postgres" | "postgresql" => Ok(Self::Postgres),
            _ => Err(format!("{raw:?} is not a backend; use sqlite or postgres")),
        }
    }
}

/// Everything `aragora serve` needs to run the debate engine. Its `Debug` hides the secrets
/// (keys, tokens, passwords in URLs): see [`aragora_config::redact`].
#[derive(Clone, Serialize, Deserialize, PartialEq)]
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
    pub auto_migrate: bool,
    pub migration_lock_wait_secs: u64,
    pub default_rounds: u32,
    pub max_concurrent_debates: usize,
    pub debate_queue_size: usize,
    /// Debates one client may have queued or running here (see `http::limits`).
    pub debate_queue_per_client: usize,
    pub debate_timeout_secs: u64,
    pub agent_timeout_secs: u64,
    pub offline_agent_latency_ms: u64,
    pub watchdog_interval_secs: u64,
    /// How long a replica's lease on a debate lasts unless renewed (see `orchestrator`).
    pub lease_secs: u64,
    /// How often a replica renews the leases of its debates and picks up cancel requests.
    pub lease_renew_secs: u64,
    pub drain_timeout_secs: u64,
    pub max_body_bytes: usize,
    pub max_topic_chars: usize,
    pub ws_heartbeat_secs: u64,
    pub ws_max_message_size: usize,
    /// WebSockets one client may hold open to this replica at once.
    pub ws_max_connections_per_client: usize,
    /// Debates one WebSocket may follow at once.
    pub ws_max_subscriptions: usize,
    /// Messages one client may send per second across its WebSockets (bursts of as many).
    pub ws_max_messages_per_second: u32,
    /// Largest `limit` a list query may ask for.
    pub max_list_limit: u32,
    /// Days a receipt is kept after it was issued (0: forever); see `retention`.
    pub receipt_retention_days: u32,
    /// Hours between scheduled retention cleanups (fractions allowed).
    pub receipt_cleanup_interval_hours: f64,
    /// Days a finished debate and its events are kept after it ended (0: forever).
    pub debate_retention_days: u32,
    /// Rows one retention statement deletes at most.
    pub retention_batch_size: u32,
    /// Days a finished (delivered or dead) webhook delivery is kept (0: forever).
    pub webhook_delivery_retention_days: u32,
    /// Who may call the engine (`[auth]` in TOML; env in [`aragora_auth::SETTINGS`]).
    pub auth: AuthConfig,
    pub environment: Environment,
    pub log_level: LogLevel,
    pub log_format: LogFormat,
    pub agent_max_retries: u32,
    pub agent_retry_base_ms: u64,
    pub agent_max_tokens: u32,
    pub agent_streaming: bool,
    pub circuit_breaker_threshold: u32,
    pub circuit_breaker_cooldown_secs: u64,
    pub openrouter_fallback_model: String,
    pub receipt_signing_key: Option<String>,
    /// Every earlier signing key, newest first (`ARAGORA_RECEIPT_SIGNING_KEY_PREVIOUS`,
    /// comma-separated; a TOML string of the same form or an array).
    #[serde(deserialize_with = "comma_list")]
    pub receipt_signing_key_previous: Vec<String>,
    pub redis_url: Option<String>,
    pub redis_ca_file: Option<PathBuf>,
    pub require_distributed: bool,
    /// Seconds a replica's lease on a client's WebSocket or debate slot lasts in Redis unless
    /// renewed (see `client_slots`).
    pub client_limit_lease_secs: u64,
    /// Prefix of the per-client limit keys in Redis.
    pub client_limit_key_prefix: String,
    /// The gateway admin API this engine reads upstreams and rate limits from
    /// (`GET /api/system/upstreams`, `/api/system/rate-limits`); `aragora up` sets its own.
    pub gateway_admin_url: Option<String>,
    /// Webhook delivery (see `webhooks`): request timeout, retries and their backoff, the
    /// per-endpoint breaker, the worker's pace, egress and the key of the secrets.
    pub webhook_timeout_ms: u64,
    pub webhook_max_retries: u32,
    pub webhook_backoff_base_ms: u64,
    pub webhook_backoff_max_ms: u64,
    pub webhook_breaker_threshold: u32,
    pub webhook_breaker_cooldown_ms: u64,
    pub webhook_poll_interval_ms: u64,
    pub webhook_concurrency: usize,
    pub webhook_concurrency_per_endpoint: usize,
    pub webhook_allow_http: bool,
    pub webhook_allow_private: bool,
    pub webhook_encryption_key: Option<String>,
    /// Per-provider key, base URL and model (`[providers.anthropic]` in TOML; env below).
    pub providers: BTreeMap<String, ProviderSettings>,
    /// Named agents (`[[agents]]` in TOML). Each provider with a key also gets one by default.
    pub agents: Vec<AgentSpec>,
}

/// One provider's connection settings. Env: the seeds' key variable (`ANTHROPIC_API_KEY`, ...),
/// `ARAGORA_<PROVIDER>_BASE_URL` and `ARAGORA_<PROVIDER>_MODEL`. `Debug` hides the key.
#[derive(Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderSettings {
    pub api_key: Option<String>,
    pub base_url: Option<String>,
    pub model: Option<String>,
}

impl std::fmt::Debug for EngineConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        aragora_config::redact::debug_redacted("EngineConfig", self, f)
    }
}

impl std::fmt::Debug for ProviderSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        aragora_config::redact::debug_redacted("ProviderSettings", self, f)
    }
}

/// A debate agent configured by name.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    pub name: String,
    /// anthropic, openai, gemini, xai, mistral, openrouter or openai-compatible.
    pub provider: String,
    /// The provider's model; the provider's default model when absent.
    pub model: Option<String>,
    /// How the agent argues (part of its system prompt).
    pub persona: Option<String>,
}

aragora_config::settings! {
    EngineConfig;
    host: ["ARAGORA_HOST"] "Address the API and WebSocket listeners bind to; `aragora up` binds 127.0.0.1 (only its gateway is reachable from outside) unless ARAGORA_HOST, --host or the config file says otherwise.";
    api_port: ["ARAGORA_PORT"] "REST API port; the WebSocket endpoint /ws is served here too. 0 picks a free port.";
    ws_port: ["ARAGORA_WS_PORT"] "Dedicated WebSocket port (serves /ws). 0 picks a free port.";
    data_dir: ["ARAGORA_DATA_DIR"] "Directory for the SQLite database, backups and certificates; created if missing.";
    db_backend: ["ARAGORA_DB_BACKEND"] "sqlite (the file aragora.db in the data directory) or postgres.";
    database_url: ["DATABASE_URL", "ARAGORA_POSTGRES_DSN"] "PostgreSQL connection string, required when the backend is postgres.";
    db_pool_size: ["ARAGORA_DB_POOL_SIZE"] "Database connections kept open.";
    db_connect_timeout_secs: ["ARAGORA_DB_CONNECT_TIMEOUT"] "Seconds to keep retrying the first database connection before giving up (readiness stays false meanwhile).";
    auto_migrate: ["ARAGORA_AUTO_MIGRATE"] "Apply pending migrations at start (as `aragora migrate up` does); false refuses to start while any are pending, for operators who migrate as a separate step (Procedure 5).";
    migration_lock_wait_secs: ["ARAGORA_MIGRATION_LOCK_WAIT"] "Seconds to wait for another instance's PostgreSQL migration lock (2089872453) before giving up; the default of `aragora migrate up --wait`.";
    default_rounds: ["ARAGORA_DEFAULT_ROUNDS"] "Rounds of a debate whose request does not say (1 to 12).";
    max_concurrent_debates: ["ARAGORA_MAX_CONCURRENT_DEBATES"] "Debates running at once on this replica; more wait in the queue.";
    debate_queue_size: ["ARAGORA_DEBATE_QUEUE_SIZE"] "Debates that may wait for a slot; beyond it new debates get 429.";
    debate_queue_per_client: ["ARAGORA_DEBATE_QUEUE_PER_CLIENT"] "Debates one client (the credential's subject: a JWT's sub, an API key, the admin token; anonymous callers are one client) may have queued or running, on all replicas together when they share ARAGORA_REDIS_URL (on this replica alone without it, or while Redis does not answer); beyond it that client's new debates get 429 `client_limit` while other clients' still go in.";
    debate_timeout_secs: ["ARAGORA_DEBATE_TIMEOUT"] "Seconds a debate may run before it ends as timed_out.";
    agent_timeout_secs: ["ARAGORA_AGENT_TIMEOUT"] "Seconds one agent call may take before it counts as failed.";
    offline_agent_latency_ms: ["ARAGORA_OFFLINE_AGENT_LATENCY_MS"] "Simulated think time of the built-in offline agents, for demos and load tests.";
    watchdog_interval_secs: ["ARAGORA_WATCHDOG_INTERVAL"] "Seconds between scans for debates stuck past their timeout.";
    lease_secs: ["ARAGORA_DEBATE_LEASE"] "Seconds a replica's hold on a debate lasts unless renewed; when it expires (the replica died or froze) another ready replica adopts the debate and resumes it from its events.";
    lease_renew_secs: ["ARAGORA_DEBATE_LEASE_RENEW"] "Seconds between renewals of this replica's debate leases (one statement for all), which also pick up cancels sent to other replicas; less than half ARAGORA_DEBATE_LEASE.";
    drain_timeout_secs: ["ARAGORA_DRAIN_TIMEOUT"] "On SIGTERM, seconds to let running debates finish before they are saved as interrupted.";
    max_body_bytes: ["ARAGORA_MAX_BODY_BYTES"] "Largest request body accepted; larger ones get 413.";
    max_topic_chars: ["ARAGORA_MAX_TOPIC_LENGTH"] "Longest debate topic accepted, in characters.";
    ws_heartbeat_secs: ["ARAGORA_WS_HEARTBEAT_INTERVAL"] "Seconds between heartbeat events on an idle WebSocket.";
    ws_max_message_size: ["ARAGORA_WS_MAX_MESSAGE_SIZE"] "Largest WebSocket message (and frame) accepted from a client, in bytes; a larger one closes the connection with 1009.";
    ws_max_connections_per_client: ["ARAGORA_WS_MAX_CONNECTIONS_PER_CLIENT"] "WebSockets one client (the credential's subject, as for ARAGORA_DEBATE_QUEUE_PER_CLIENT) may hold open, to all replicas together when they share ARAGORA_REDIS_URL (to this replica alone without it, or while Redis does not answer); one more gets 429 `client_limit` at the upgrade.";
    ws_max_subscriptions: ["ARAGORA_WS_MAX_SUBSCRIPTIONS"] "Debates one WebSocket may follow at once; one more subscription gets an `error` event with code `client_limit` (the connection stays open; unsubscribe first).";
    ws_max_messages_per_second: ["ARAGORA_WS_MAX_MESSAGES_PER_SECOND"] "Messages (subscribe, unsubscribe, ping) one client may send per second across its WebSockets, in bursts of as many; the connection that sends one more is closed with 1008 (policy).";
    max_list_limit: ["ARAGORA_MAX_LIST_LIMIT"] "Largest `limit` a list query (GET /api/debates, /api/drills, /api/auth/api-keys, /api/system/errors) may ask for; more gets 400. The default page is 20, or this when smaller.";
    receipt_retention_days: ["ARAGORA_RECEIPT_RETENTION_DAYS"] "Days a debate receipt is kept after it was issued (SOC 2 / compliance retention, ~7 years); older ones are deleted by the Receipt Retention Scheduler. 0 keeps receipts forever.";
    receipt_cleanup_interval_hours: ["ARAGORA_RECEIPT_CLEANUP_INTERVAL_HOURS"] "Hours between retention cleanups (fractions allowed, e.g. 0.5; one second to 8760). Ticks are multiples of it since the Unix epoch, so every replica wakes for the same tick and one runs it.";
    debate_retention_days: ["ARAGORA_DEBATE_RETENTION_DAYS"] "Days a finished debate and its events are kept after it ended; then deleted, unless its receipt is still inside ARAGORA_RECEIPT_RETENTION_DAYS. 0 keeps finished debates forever.";
    retention_batch_size: ["ARAGORA_RETENTION_BATCH_SIZE"] "Rows one retention delete removes at most (each batch its own short transaction, so no long lock); 1 to 5000.";
    webhook_delivery_retention_days: ["ARAGORA_WEBHOOK_DELIVERY_RETENTION_DAYS"] "Days a finished webhook delivery (delivered, or dead-lettered and not retried) is kept after its last attempt; then the retention cleanup deletes it, body (debate content) and all. Pending deliveries are never deleted. 0 keeps them forever.";
    environment: ["ARAGORA_ENV", "ARAGORA_ENVIRONMENT"] "development or production; production requires ARAGORA_JWT_SECRET.";
    log_level: ["ARAGORA_LOG_LEVEL"] "DEBUG, INFO, WARNING or ERROR.";
    log_format: ["ARAGORA_LOG_FORMAT"] "json (one object per line), text, or auto (unset): `aragora up` writes text when its log goes to a terminal, JSON otherwise; every other command JSON.";
    agent_max_retries: ["ARAGORA_AGENT_MAX_RETRIES"] "Retries of a provider call after a 429, 5xx or connection failure.";
    agent_retry_base_ms: ["ARAGORA_AGENT_RETRY_BASE_MS"] "First retry delay in ms; doubles each retry, with jitter; Retry-After wins when sent.";
    agent_max_tokens: ["ARAGORA_AGENT_MAX_TOKENS"] "Most tokens an LLM agent may write per message.";
    agent_streaming: ["ARAGORA_AGENT_STREAMING"] "Stream LLM answers (token_delta events to WebSocket subscribers).";
    circuit_breaker_threshold: ["ARAGORA_CIRCUIT_BREAKER_THRESHOLD"] "Consecutive failures that open an agent's circuit breaker.";
    circuit_breaker_cooldown_secs: ["ARAGORA_CIRCUIT_BREAKER_COOLDOWN"] "Seconds an open breaker waits before a half-open trial call.";
    openrouter_fallback_model: ["ARAGORA_OPENROUTER_FALLBACK_MODEL"] "OpenRouter model that answers when an agent's provider fails (needs OPENROUTER_API_KEY).";
    receipt_signing_key: ["ARAGORA_RECEIPT_SIGNING_KEY"] "HMAC-SHA256 key for debate receipts (32+ characters); generated into the data directory when unset outside production.";
    receipt_signing_key_previous: ["ARAGORA_RECEIPT_SIGNING_KEY_PREVIOUS"] "Every earlier receipt key, comma-separated (keys contain no commas; one key is a list of one); receipts signed with any of them still verify.";
    redis_url: ["ARAGORA_REDIS_URL", "REDIS_URL"] "Redis through which replicas share debate events, so a watcher on any replica sees every debate; unset, one replica. rediss:// connects with TLS.";
    redis_ca_file: ["ARAGORA_REDIS_CA_FILE"] "PEM file of the CA that signed a rediss:// server's certificate, trusted besides the system's roots (a private or self-signed Redis).";
    client_limit_lease_secs: ["ARAGORA_CLIENT_LIMIT_LEASE_SECS"] "Seconds a replica's hold on a client's WebSocket or debate slot lasts in Redis unless renewed (every third of it): a replica that dies frees its clients' slots within this; 1 to 3600.";
    client_limit_key_prefix: ["ARAGORA_CLIENT_LIMIT_KEY_PREFIX"] "Prefix of the per-client limit keys in Redis (one sorted set per client and limit); replicas that share limits must share it.";
    require_distributed: ["ARAGORA_REQUIRE_DISTRIBUTED"] "Multi-instance guard: true makes /readyz (and /api/ready) answer 503 naming Redis while Redis is unreachable, instead of serving alone with events no other replica sees; needs ARAGORA_REDIS_URL.";
    gateway_admin_url: ["ARAGORA_GATEWAY_ADMIN_URL"] "The gateway's admin API (http://host:9091) that GET /api/system/upstreams and /api/system/rate-limits read; `aragora up` sets it to its own gateway. The engine signs in there with ARAGORA_API_TOKEN (a one-minute admin loop token) or ARAGORA_JWT_SECRET (a one-minute admin JWT), so engine and gateway must share one of them. Unset, those two endpoints answer 404.";
    webhook_timeout_ms: ["ARAGORA_WEBHOOK_TIMEOUT_MS"] "Milliseconds a webhook receiver has to answer a delivery (connect included) before the attempt counts as failed and is retried; 100 to 300000.";
    webhook_max_retries: ["ARAGORA_WEBHOOK_MAX_RETRIES"] "Retries of a webhook delivery after a timeout, connection failure, 429 or 5xx before it is dead-lettered (GET /api/admin/webhooks/dead-letters); 0 to 50.";
    webhook_backoff_base_ms: ["ARAGORA_WEBHOOK_BACKOFF_BASE_MS"] "Delay before a webhook delivery's first retry in ms; doubles each retry up to ARAGORA_WEBHOOK_BACKOFF_MAX_MS, plus up to 10 % jitter; a 429's Retry-After wins. 1 to 3600000.";
    webhook_backoff_max_ms: ["ARAGORA_WEBHOOK_BACKOFF_MAX_MS"] "Longest delay between webhook retries in ms (and the most a Retry-After may ask); at least ARAGORA_WEBHOOK_BACKOFF_BASE_MS, at most 86400000.";
    webhook_breaker_threshold: ["ARAGORA_WEBHOOK_BREAKER_THRESHOLD"] "Consecutive failed deliveries to one receiver endpoint (scheme://host:port) that open its circuit breaker; while open, its deliveries wait unattempted. 1 to 1000.";
    webhook_breaker_cooldown_ms: ["ARAGORA_WEBHOOK_BREAKER_COOLDOWN_MS"] "Milliseconds an open webhook breaker stays open before one trial delivery (half-open); 1 to 86400000.";
    webhook_poll_interval_ms: ["ARAGORA_WEBHOOK_POLL_INTERVAL_MS"] "Milliseconds between the delivery worker's looks for due webhook deliveries (each replica runs one); 10 to 60000.";
    webhook_concurrency: ["ARAGORA_WEBHOOK_CONCURRENCY"] "Webhook deliveries one replica sends at once; 1 to 1000.";
    webhook_concurrency_per_endpoint: ["ARAGORA_WEBHOOK_CONCURRENCY_PER_ENDPOINT"] "Of those, the most one receiver endpoint (scheme://host:port) may hold at once, so a receiver that hangs until its timeout leaves the other slots to the other receivers (its further deliveries wait, unattempted); 1 to 1000, at most ARAGORA_WEBHOOK_CONCURRENCY counts.";
    webhook_allow_http: ["ARAGORA_WEBHOOK_ALLOW_HTTP"] "Allow http:// webhook URLs (default only https://); refused when ARAGORA_ENV=production.";
    webhook_allow_private: ["ARAGORA_WEBHOOK_ALLOW_PRIVATE"] "Allow webhooks to loopback, private, link-local and other non-public addresses (checked at creation and at every delivery, against every address the host resolves to); for tests and closed networks only.";
    webhook_encryption_key: ["ARAGORA_WEBHOOK_ENCRYPTION_KEY"] "Key (32+ characters, e.g. `openssl rand -hex 32`) that webhook secrets are encrypted with (AES-256-GCM of its SHA-256); generated into the data directory when unset. Replicas sharing a database must share it.";
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
            db_pool_size: 20,
            db_connect_timeout_secs: 30,
            auto_migrate: true,
            migration_lock_wait_secs: 300,
            default_rounds: 3,
            max_concurrent_debates: 10,
            debate_queue_size: 100,
            // Half the default queue: one client cannot take a replica's whole queue, and a
            // batch of 50 still goes in at once.
            debate_queue_per_client: 50,
            debate_timeout_secs: 900,
            agent_timeout_secs: 240,
            offline_agent_latency_ms: 0,
            watchdog_interval_secs: 30,
            // Three renewals per lease: two may be missed (a GC pause, a database hiccup)
            // before another replica takes over, and a dead replica's debates move on within
            // 15-20 s (the lease plus one scan of the adopter).
            lease_secs: 15,
            lease_renew_secs: 5,
            drain_timeout_secs: 30,
            max_body_bytes: 256 * 1024,
            max_topic_chars: 4000,
            ws_heartbeat_secs: 15,
            ws_max_message_size: 64 * 1024,
            // A browser with many tabs or a service watching many debates stays well below;
            // 256 idle WebSockets are about 5 MiB of engine memory (BENCHMARKS.md).
            ws_max_connections_per_client: 256,
            ws_max_subscriptions: 100,
            // A client subscribing to its 100 debates at connect is not refused.
            ws_max_messages_per_second: 100,
            max_list_limit: 100,
            // The runbooks' ~7 years (SOC 2), once a day.
            receipt_retention_days: 2555,
            receipt_cleanup_interval_hours: 24.0,
            // Debates are the users' own record: kept unless the operator says otherwise.
            debate_retention_days: 0,
            retention_batch_size: 500,
            // A month of delivery history and dead letters to retry, not the debates forever.
            webhook_delivery_retention_days: 30,
            auth: AuthConfig::default(),
            environment: Environment::Development,
            log_level: LogLevel::Info,
            log_format: LogFormat::Auto,
            agent_max_retries: 3,
            agent_retry_base_ms: 500,
            agent_max_tokens: 1024,
            agent_streaming: true,
            circuit_breaker_threshold: 5,
            circuit_breaker_cooldown_secs: 60,
            openrouter_fallback_model: "openai/gpt-4o-mini".into(),
            receipt_signing_key: None,
            receipt_signing_key_previous: Vec::new(),
            redis_url: None,
            redis_ca_file: None,
            require_distributed: false,
            client_limit_lease_secs: 15,
            client_limit_key_prefix: "aragora:client-limits:".into(),
            gateway_admin_url: None,
            // The runbook's WebhookDeliveryManager defaults.
            webhook_timeout_ms: 30_000,
            webhook_max_retries: 5,
            webhook_backoff_base_ms: 1_000,
            webhook_backoff_max_ms: 300_000,
            webhook_breaker_threshold: 5,
            webhook_breaker_cooldown_ms: 60_000,
            webhook_poll_interval_ms: 1_000,
            webhook_concurrency: 16,
            webhook_concurrency_per_endpoint: 4,
            webhook_allow_http: false,
            webhook_allow_private: false,
            webhook_encryption_key: None,
            providers: BTreeMap::new(),
            agents: Vec::new(),
        }
    }
}

impl Settings for EngineConfig {
    fn finish_read(&mut self, env: &Env, problems: &mut Vec<ConfigProblem>) {
        self.apply_provider_env(env);
        self.auth.overlay_env(env, problems);
    }

    fn validate(&self) -> Vec<ConfigProblem> {
        self.problems()
    }
}

impl EngineConfig {
    /// Provider keys, base URLs and models from the environment.
    fn apply_provider_env(&mut self, env: &Env) {
        for kind in ProviderKind::ALL {
            let prefix = provider_env_prefix(kind);
            let settings = self.providers.entry(kind.as_str().to_string()).or_default();
            let read = |name: &str| env.get(name).filter(|v| !v.is_empty()).cloned();
            if let Some(key) = read(kind.key_env()) {
                settings.api_key = Some(key);
            }
            if let Some(url) = read(&format!("{prefix}_BASE_URL")) {
                settings.base_url = Some(url);
            }
            if let Some(model) = read(&format!("{prefix}_MODEL")) {
                settings.model = Some(model);
            }
        }
    }

    /// The settings of one provider (empty when none are given).
    pub fn provider(&self, kind: ProviderKind) -> ProviderSettings {
        self.providers
            .get(kind.as_str())
            .cloned()
            .unwrap_or_default()
    }

    /// A provider can take calls when it has a key (or, for a self-hosted OpenAI-compatible
    /// server, a base URL).
    pub fn provider_enabled(&self, kind: ProviderKind) -> bool {
        let settings = self.provider(kind);
        match kind {
            ProviderKind::OpenaiCompatible => settings.base_url.is_some(),
            _ => settings.api_key.is_some(),
        }
    }

    fn validate_providers(&self, check: &mut impl FnMut(bool, &str, String)) {
        for name in self.providers.keys() {
            check(
                ProviderKind::parse(name).is_some(),
                "providers",
                format!(
                    "[providers.{name}] is not a provider; use one of {}",
                    provider_names()
                ),
            );
        }
        for kind in ProviderKind::ALL {
            let settings = self.provider(kind);
            if let Some(url) = &settings.base_url {
                check(
                    aragora_config::is_http_url(url),
                    &format!("{}_BASE_URL", provider_env_prefix(kind)),
                    format!("{url:?} is not an http(s) URL"),
                );
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for agent in &self.agents {
            let setting = format!("agents.{}", agent.name);
            check(
                !agent.name.trim().is_empty(),
                "agents",
                "an agent has an empty name".into(),
            );
            check(
                seen.insert(agent.name.clone()),
                &setting,
                "is defined twice; give each agent its own name".into(),
            );
            check(
                !agent.name.starts_with("offline-"),
                &setting,
                "names starting with offline- belong to the built-in offline agents; choose another".into(),
            );
            match ProviderKind::parse(&agent.provider) {
                None => check(
                    false,
                    &setting,
                    format!(
                        "provider {:?} is unknown; use one of {}",
                        agent.provider,
                        provider_names()
                    ),
                ),
                Some(kind) => check(
                    self.provider_enabled(kind),
                    &setting,
                    format!(
                        "uses {} but {} is not set",
                        kind.as_str(),
                        match kind {
                            ProviderKind::OpenaiCompatible => "ARAGORA_OPENAI_COMPATIBLE_BASE_URL",
                            other => other.key_env(),
                        }
                    ),
                ),
            }
        }
    }

    /// Each earlier receipt key: long enough, and not the current key (a rotation that forgot
    /// to change it). Named by position, never by value.
    fn validate_previous_receipt_keys(&self, check: &mut impl FnMut(bool, &str, String)) {
        const SETTING: &str = "ARAGORA_RECEIPT_SIGNING_KEY_PREVIOUS";
        let count = self.receipt_signing_key_previous.len();
        for (index, key) in self.receipt_signing_key_previous.iter().enumerate() {
            let which = if count == 1 {
                "the key".to_string()
            } else {
                format!("key {} of {count}", index + 1)
            };
            check(
                key.chars().count() >= 32,
                SETTING,
                format!(
                    "{which} is {} characters long; every earlier key is at least 32 (list them separated by commas, nothing else)",
                    key.chars().count()
                ),
            );
            check(
                self.receipt_signing_key.as_deref() != Some(key.as_str()),
                SETTING,
                format!("{which} is the same as ARAGORA_RECEIPT_SIGNING_KEY; list only the keys used before it"),
            );
        }
    }

    /// The retention settings: days up to a century, an interval of one second to a year,
    /// batches of 1 to 5000 rows (within both backends' bound-parameter limits).
    fn validate_retention(&self, check: &mut impl FnMut(bool, &str, String)) {
        for (setting, days) in [
            (
                "ARAGORA_RECEIPT_RETENTION_DAYS",
                self.receipt_retention_days,
            ),
            ("ARAGORA_DEBATE_RETENTION_DAYS", self.debate_retention_days),
            (
                "ARAGORA_WEBHOOK_DELIVERY_RETENTION_DAYS",
                self.webhook_delivery_retention_days,
            ),
        ] {
            check(
                days <= 36_500,
                setting,
                format!("is {days}; use 0 (keep forever) to 36500 days"),
            );
        }
        let hours = self.receipt_cleanup_interval_hours;
        check(
            hours.is_finite() && hours * 3600.0 >= 1.0 && hours <= 8760.0,
            "ARAGORA_RECEIPT_CLEANUP_INTERVAL_HOURS",
            format!(
                "is {hours}; use one second (0.0003) to 8760 hours, fractions allowed (default 24)"
            ),
        );
        check(
            (1..=5000).contains(&self.retention_batch_size),
            "ARAGORA_RETENTION_BATCH_SIZE",
            format!(
                "is {}; use 1 to 5000 rows per statement (default 500)",
                self.retention_batch_size
            ),
        );
    }

    fn validate_webhooks(&self, check: &mut impl FnMut(bool, &str, String)) {
        let ranges: [(&str, u64, u64, u64); 7] = [
            (
                "ARAGORA_WEBHOOK_TIMEOUT_MS",
                self.webhook_timeout_ms,
                100,
                300_000,
            ),
            (
                "ARAGORA_WEBHOOK_BACKOFF_BASE_MS",
                self.webhook_backoff_base_ms,
                1,
                3_600_000,
            ),
            (
                "ARAGORA_WEBHOOK_BACKOFF_MAX_MS",
                self.webhook_backoff_max_ms,
                1,
                86_400_000,
            ),
            (
                "ARAGORA_WEBHOOK_BREAKER_COOLDOWN_MS",
                self.webhook_breaker_cooldown_ms,
                1,
                86_400_000,
            ),
            (
                "ARAGORA_WEBHOOK_POLL_INTERVAL_MS",
                self.webhook_poll_interval_ms,
                10,
                60_000,
            ),
            (
                "ARAGORA_WEBHOOK_CONCURRENCY",
                self.webhook_concurrency as u64,
                1,
                1_000,
            ),
            (
                "ARAGORA_WEBHOOK_CONCURRENCY_PER_ENDPOINT",
                self.webhook_concurrency_per_endpoint as u64,
                1,
                1_000,
            ),
        ];
        for (setting, value, low, high) in ranges {
            check(
                (low..=high).contains(&value),
                setting,
                format!("is {value}; use {low} to {high}"),
            );
        }
        check(
            self.webhook_max_retries <= 50,
            "ARAGORA_WEBHOOK_MAX_RETRIES",
            format!("is {}; use 0 to 50 (default 5)", self.webhook_max_retries),
        );
        check(
            (1..=1_000).contains(&self.webhook_breaker_threshold),
            "ARAGORA_WEBHOOK_BREAKER_THRESHOLD",
            format!(
                "is {}; use 1 to 1000 failures (default 5)",
                self.webhook_breaker_threshold
            ),
        );
        check(
            self.webhook_backoff_max_ms >= self.webhook_backoff_base_ms,
            "ARAGORA_WEBHOOK_BACKOFF_MAX_MS",
            format!(
                "is {} but ARAGORA_WEBHOOK_BACKOFF_BASE_MS is {}; the cap must be at least the first delay",
                self.webhook_backoff_max_ms, self.webhook_backoff_base_ms
            ),
        );
        check(
            !(self.is_production() && self.webhook_allow_http),
            "ARAGORA_WEBHOOK_ALLOW_HTTP",
            "is true but ARAGORA_ENV=production; production sends webhooks over https only".into(),
        );
        if let Some(key) = &self.webhook_encryption_key {
            check(
                key.chars().count() >= 32,
                "ARAGORA_WEBHOOK_ENCRYPTION_KEY",
                format!(
                    "is {} characters long; use at least 32 (for example `openssl rand -hex 32`)",
                    key.chars().count()
                ),
            );
        }
    }

    /// Checks every value; empty when the config is usable.
    fn problems(&self) -> Vec<ConfigProblem> {
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
        if let Some(url) = &self.gateway_admin_url {
            check(
                aragora_config::is_http_url(url),
                "ARAGORA_GATEWAY_ADMIN_URL",
                format!(
                    "is {:?}; use the gateway's admin address as an http:// or https:// URL (e.g. http://127.0.0.1:9091)",
                    aragora_config::redact_url(url)
                ),
            );
        }
        check(
            self.host.parse::<std::net::IpAddr>().is_ok(),
            "ARAGORA_HOST",
            format!("{:?} is not an IP address; use 0.0.0.0 for all interfaces or 127.0.0.1 for local only", self.host),
        );
        check(
            (1..=86_400).contains(&self.migration_lock_wait_secs),
            "ARAGORA_MIGRATION_LOCK_WAIT",
            format!(
                "is {}; use 1 to 86400 seconds (default 300)",
                self.migration_lock_wait_secs
            ),
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
            (1..=1_000_000).contains(&self.debate_queue_per_client),
            "ARAGORA_DEBATE_QUEUE_PER_CLIENT",
            format!(
                "is {}; use 1 to 1000000 debates (default 50)",
                self.debate_queue_per_client
            ),
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
            (2..=3600).contains(&self.lease_secs),
            "ARAGORA_DEBATE_LEASE",
            format!("is {}; use 2 to 3600 seconds (default 15)", self.lease_secs),
        );
        check(
            self.lease_renew_secs >= 1 && self.lease_renew_secs * 2 < self.lease_secs,
            "ARAGORA_DEBATE_LEASE_RENEW",
            format!(
                "is {}; use at least 1 second and less than half ARAGORA_DEBATE_LEASE ({}), so a lease survives a missed renewal",
                self.lease_renew_secs, self.lease_secs
            ),
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
        check(
            (1..=1_000_000).contains(&self.ws_max_connections_per_client),
            "ARAGORA_WS_MAX_CONNECTIONS_PER_CLIENT",
            format!(
                "is {}; use 1 to 1000000 WebSockets (default 256)",
                self.ws_max_connections_per_client
            ),
        );
        check(
            (1..=100_000).contains(&self.ws_max_subscriptions),
            "ARAGORA_WS_MAX_SUBSCRIPTIONS",
            format!(
                "is {}; use 1 to 100000 subscriptions per WebSocket (default 100)",
                self.ws_max_subscriptions
            ),
        );
        check(
            (1..=100_000).contains(&self.ws_max_messages_per_second),
            "ARAGORA_WS_MAX_MESSAGES_PER_SECOND",
            format!(
                "is {}; use 1 to 100000 messages a second (default 100)",
                self.ws_max_messages_per_second
            ),
        );
        check(
            (1..=1000).contains(&self.max_list_limit),
            "ARAGORA_MAX_LIST_LIMIT",
            format!(
                "is {}; use 1 to 1000 items per page (default 100)",
                self.max_list_limit
            ),
        );
        self.validate_retention(&mut check);
        check(
            self.agent_max_retries <= 10,
            "ARAGORA_AGENT_MAX_RETRIES",
            format!("is {}; use 0 to 10", self.agent_max_retries),
        );
        check(
            (1..=600_000).contains(&self.agent_retry_base_ms),
            "ARAGORA_AGENT_RETRY_BASE_MS",
            format!("is {}; use 1 to 600000 ms", self.agent_retry_base_ms),
        );
        check(
            (16..=200_000).contains(&self.agent_max_tokens),
            "ARAGORA_AGENT_MAX_TOKENS",
            format!("is {}; use 16 to 200000", self.agent_max_tokens),
        );
        check(
            self.circuit_breaker_threshold >= 1,
            "ARAGORA_CIRCUIT_BREAKER_THRESHOLD",
            "is 0; use at least 1 failure".into(),
        );
        if let Some(key) = &self.receipt_signing_key {
            check(
                key.chars().count() >= 32,
                "ARAGORA_RECEIPT_SIGNING_KEY",
                format!(
                    "is {} characters long; use at least 32 (for example `openssl rand -hex 32`)",
                    key.chars().count()
                ),
            );
        }
        self.validate_previous_receipt_keys(&mut check);
        check(
            !self.is_production() || self.receipt_signing_key.is_some(),
            "ARAGORA_RECEIPT_SIGNING_KEY",
            "is required when ARAGORA_ENV=production, so receipts verify across replicas and restarts".into(),
        );
        check(
            (1..=3600).contains(&self.client_limit_lease_secs),
            "ARAGORA_CLIENT_LIMIT_LEASE_SECS",
            format!(
                "is {}; use 1 to 3600 seconds (default 15): how long a dead replica's clients wait for their slots",
                self.client_limit_lease_secs
            ),
        );
        check(
            !self.client_limit_key_prefix.is_empty(),
            "ARAGORA_CLIENT_LIMIT_KEY_PREFIX",
            "is empty; use a prefix of its own (default aragora:client-limits:) so the keys do not mix with others in Redis".into(),
        );
        check(
            !self.require_distributed || self.redis_url.is_some(),
            "ARAGORA_REQUIRE_DISTRIBUTED",
            "is true but ARAGORA_REDIS_URL is unset: set ARAGORA_REDIS_URL to the Redis the replicas share (redis://host:6379/0), or set ARAGORA_REQUIRE_DISTRIBUTED=false for a single replica".into(),
        );
        self.validate_webhooks(&mut check);
        self.validate_providers(&mut check);
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
        problems.extend(aragora_config::redis::problems(
            self.redis_url.as_deref(),
            self.redis_ca_file.as_deref(),
        ));
        problems.extend(self.auth.problems(self.environment));
        problems
    }

    /// The SQLite database file (in the data directory).
    pub fn sqlite_path(&self) -> PathBuf {
        self.data_dir.join("aragora.db")
    }

    /// The connection string the store opens.
    pub fn database_url(&self) -> String {
        match self.db_backend {
            DbBackend::Sqlite => format!("sqlite://{}?mode=rwc", self.sqlite_path().display()),
            DbBackend::Postgres => self.database_url.clone().unwrap_or_default(),
        }
    }

    /// Is this a production deployment (stricter checks, JSON logs)?
    pub fn is_production(&self) -> bool {
        self.environment == Environment::Production
    }
}

/// `ARAGORA_ANTHROPIC`, `ARAGORA_OPENAI_COMPATIBLE`, ...: the prefix of a provider's settings.
pub fn provider_env_prefix(kind: ProviderKind) -> String {
    format!(
        "ARAGORA_{}",
        kind.as_str().to_ascii_uppercase().replace('-', "_")
    )
}

fn provider_names() -> String {
    ProviderKind::ALL.map(|k| k.as_str()).join(", ")
}

/// A list setting written in TOML as one comma-separated string (the environment's form) or
/// as an array; read the same way either way (items trimmed, empty ones dropped).
fn comma_list<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        One(String),
        Many(Vec<String>),
    }
    let items = match Written::deserialize(deserializer)? {
        Written::One(text) => vec![text],
        Written::Many(items) => items,
    };
    Ok(items
        .iter()
        .flat_map(|item| item.split(','))
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_string)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    use aragora_config::env_map as env;
    use std::collections::HashMap;

    #[test]
    fn defaults_are_valid_and_match_the_runbook() {
        let config = EngineConfig::load(None, &HashMap::new()).expect("defaults valid");
        assert_eq!(config.api_port, 8080);
        assert_eq!(config.ws_port, 8765);
        assert_eq!(config.default_rounds, 3);
        assert_eq!(config.debate_timeout_secs, 900);
        assert_eq!(config.agent_timeout_secs, 240);
        assert_eq!(config.max_concurrent_debates, 10);
        assert_eq!(config.db_pool_size, 20);
        assert_eq!(config.db_backend, DbBackend::Sqlite);
    }

    #[test]
    fn retention_defaults_are_the_runbooks_and_bad_values_say_the_range() {
        let config = EngineConfig::load(None, &HashMap::new()).unwrap();
        assert_eq!(config.receipt_retention_days, 2555);
        assert_eq!(config.receipt_cleanup_interval_hours, 24.0);
        assert_eq!(config.debate_retention_days, 0);
        assert_eq!(config.retention_batch_size, 500);
        assert_eq!(config.webhook_delivery_retention_days, 30);
        let half = EngineConfig::load(
            None,
            &env(&[("ARAGORA_RECEIPT_CLEANUP_INTERVAL_HOURS", "0.5")]),
        )
        .unwrap();
        assert_eq!(half.receipt_cleanup_interval_hours, 0.5);
        for (name, value, says) in [
            (
                "ARAGORA_RECEIPT_RETENTION_DAYS",
                "36501",
                "0 (keep forever) to 36500",
            ),
            (
                "ARAGORA_DEBATE_RETENTION_DAYS",
                "99999",
                "0 (keep forever) to 36500",
            ),
            (
                "ARAGORA_WEBHOOK_DELIVERY_RETENTION_DAYS",
                "36501",
                "0 (keep forever) to 36500",
            ),
            ("ARAGORA_RECEIPT_CLEANUP_INTERVAL_HOURS", "0", "one second"),
            ("ARAGORA_RECEIPT_CLEANUP_INTERVAL_HOURS", "9000", "8760"),
            ("ARAGORA_RETENTION_BATCH_SIZE", "0", "1 to 5000"),
            ("ARAGORA_RETENTION_BATCH_SIZE", "5001", "1 to 5000"),
            ("ARAGORA_RECEIPT_RETENTION_DAYS", "-1", "whole number"),
        ] {
            let problems = EngineConfig::load(None, &env(&[(name, value)])).unwrap_err();
            assert_eq!(problems.len(), 1, "{name}={value}: {problems:?}");
            assert_eq!(problems[0].setting, name);
            assert!(problems[0].message.contains(says), "{problems:?}");
        }
    }

    #[test]
    fn production_refuses_http_webhooks() {
        let refused = |vars: &[(&str, &str)]| match EngineConfig::load(None, &env(vars)) {
            Ok(_) => Vec::new(),
            Err(problems) => problems
                .into_iter()
                .filter(|p| p.setting == "ARAGORA_WEBHOOK_ALLOW_HTTP")
                .map(|p| p.message)
                .collect(),
        };
        let problems = refused(&[
            ("ARAGORA_ENV", "production"),
            ("ARAGORA_WEBHOOK_ALLOW_HTTP", "true"),
        ]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("https only"), "{problems:?}");
        assert!(refused(&[("ARAGORA_ENV", "production")]).is_empty());
        assert!(refused(&[("ARAGORA_WEBHOOK_ALLOW_HTTP", "true")]).is_empty());
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
    fn per_client_limits_have_defaults_and_refuse_zero() {
        let config = EngineConfig::load(None, &HashMap::new()).unwrap();
        assert_eq!(config.ws_max_connections_per_client, 256);
        assert_eq!(config.ws_max_subscriptions, 100);
        assert_eq!(config.ws_max_messages_per_second, 100);
        assert_eq!(config.debate_queue_per_client, 50);
        assert_eq!(config.max_list_limit, 100);
        let limits = [
            "ARAGORA_WS_MAX_CONNECTIONS_PER_CLIENT",
            "ARAGORA_WS_MAX_SUBSCRIPTIONS",
            "ARAGORA_WS_MAX_MESSAGES_PER_SECOND",
            "ARAGORA_DEBATE_QUEUE_PER_CLIENT",
            "ARAGORA_MAX_LIST_LIMIT",
        ];
        let zero: Vec<(&str, &str)> = limits.iter().map(|name| (*name, "0")).collect();
        let problems = EngineConfig::load(None, &env(&zero)).unwrap_err();
        for name in limits {
            let problem = problems.iter().find(|p| p.setting == name);
            assert!(
                problem.is_some_and(|p| p.message.contains("use 1 to")),
                "{name}: {problems:?}"
            );
        }
        let problems =
            EngineConfig::load(None, &env(&[("ARAGORA_MAX_LIST_LIMIT", "5000")])).unwrap_err();
        assert_eq!(
            problems[0].setting, "ARAGORA_MAX_LIST_LIMIT",
            "{problems:?}"
        );
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
    fn environment_and_log_settings_are_values_with_named_problems() {
        let config = EngineConfig::load(
            None,
            &env(&[
                ("ARAGORA_ENVIRONMENT", "staging"),
                ("ARAGORA_LOG_LEVEL", "warning"),
                ("ARAGORA_LOG_FORMAT", "text"),
            ]),
        )
        .unwrap();
        assert_eq!(config.environment, Environment::Staging);
        assert_eq!(config.log_level, LogLevel::Warning);
        assert_eq!(config.log_format, LogFormat::Text);

        let problems = EngineConfig::load(
            None,
            &env(&[
                ("ARAGORA_ENV", "prod"),
                ("ARAGORA_LOG_LEVEL", "loud"),
                ("ARAGORA_LOG_FORMAT", "xml"),
            ]),
        )
        .unwrap_err();
        let settings: Vec<&str> = problems.iter().map(|p| p.setting.as_str()).collect();
        assert_eq!(
            settings,
            ["ARAGORA_ENV", "ARAGORA_LOG_LEVEL", "ARAGORA_LOG_FORMAT"],
            "{problems:?}"
        );
        assert!(problems[0]
            .message
            .contains("development, staging, test or production"));
    }

    #[test]
    fn postgres_without_a_url_says_what_to_set() {
        let problems =
            EngineConfig::load(None, &env(&[("ARAGORA_DB_BACKEND", "postgres")])).unwrap_err();
        assert_eq!(problems[0].setting, "DATABASE_URL");
        assert!(problems[0].message.contains("ARAGORA_POSTGRES_DSN"));
    }

    #[test]
    fn requiring_distributed_state_without_redis_says_what_to_set() {
        let problems =
            EngineConfig::load(None, &env(&[("ARAGORA_REQUIRE_DISTRIBUTED", "true")])).unwrap_err();
        assert_eq!(problems[0].setting, "ARAGORA_REQUIRE_DISTRIBUTED");
        assert!(
            problems[0].message.contains("set ARAGORA_REDIS_URL"),
            "{}",
            problems[0]
        );
        let config = EngineConfig::load(
            None,
            &env(&[
                ("ARAGORA_REQUIRE_DISTRIBUTED", "true"),
                ("ARAGORA_REDIS_URL", "rediss://127.0.0.1:6380"),
            ]),
        )
        .unwrap();
        assert!(config.require_distributed);
    }

    #[test]
    fn a_gateway_admin_url_must_be_http_and_is_shown_without_its_password() {
        let problems = EngineConfig::load(
            None,
            &env(&[("ARAGORA_GATEWAY_ADMIN_URL", "ops:hunter2@gw:9091")]),
        )
        .unwrap_err();
        assert_eq!(problems[0].setting, "ARAGORA_GATEWAY_ADMIN_URL");
        assert!(problems[0].message.contains("http://"), "{}", problems[0]);
        let config = EngineConfig::load(
            None,
            &env(&[("ARAGORA_GATEWAY_ADMIN_URL", "http://127.0.0.1:9091")]),
        )
        .unwrap();
        assert_eq!(
            config.gateway_admin_url.as_deref(),
            Some("http://127.0.0.1:9091")
        );
        let problems = EngineConfig::load(
            None,
            &env(&[("ARAGORA_GATEWAY_ADMIN_URL", "ftp://ops:hunter2@gw:9091")]),
        )
        .unwrap_err();
        assert!(!problems[0].message.contains("hunter2"), "{}", problems[0]);
    }

    #[test]
    fn every_field_is_a_documented_setting() {
        let value = toml::Value::try_from(EngineConfig {
            database_url: Some("x".into()),
            receipt_signing_key: Some("x".into()),
            receipt_signing_key_previous: vec!["x".into()],
            redis_url: Some("x".into()),
            redis_ca_file: Some("x".into()),
            webhook_encryption_key: Some("x".into()),
            gateway_admin_url: Some("x".into()),
            ..EngineConfig::default()
        })
        .unwrap();
        // `providers`, `agents` and `auth` are tables, documented in their own README sections.
        let keys: Vec<&String> = value
            .as_table()
            .unwrap()
            .keys()
            .filter(|k| !["providers", "agents", "auth"].contains(&k.as_str()))
            .collect();
        for key in &keys {
            assert!(
                SETTINGS.iter().any(|s| s.key == key.as_str()),
                "{key} has no SETTINGS entry"
            );
        }
        assert_eq!(keys.len(), SETTINGS.len());
    }

    #[test]
    fn debug_shows_the_settings_but_no_secret() {
        let config = EngineConfig::load(
            None,
            &env(&[
                ("ARAGORA_DB_BACKEND", "postgres"),
                ("DATABASE_URL", "postgres://app:pg-pass-1@db:5432/aragora"),
                (
                    "ARAGORA_REDIS_URL",
                    "redis://u:redis-pass-1@127.0.0.1:6379/0",
                ),
                ("ARAGORA_JWT_SECRET", "jwt-secret-jwt-secret-jwt-secret-1"),
                ("ARAGORA_API_TOKEN", "api-token-1"),
                (
                    "ARAGORA_RECEIPT_SIGNING_KEY",
                    "receipt-key-receipt-key-receipt-key-1",
                ),
                (
                    "ARAGORA_RECEIPT_SIGNING_KEY_PREVIOUS",
                    "receipt-key-previous-receipt-key-previous-1",
                ),
                ("OPENAI_API_KEY", "sk-openai-1"),
            ]),
        )
        .unwrap();
        let shown = format!("{config:?} {:?}", config.provider(ProviderKind::Openai));
        for secret in [
            "pg-pass-1",
            "redis-pass-1",
            "jwt-secret-jwt",
            "api-token-1",
            "receipt-key-",
            "sk-openai-1",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.starts_with("EngineConfig { "), "{shown}");
        assert!(
            shown.contains("postgres://app:***@db:5432/aragora"),
            "{shown}"
        );
        assert!(shown.contains("api_port: 8080"), "{shown}");
    }

    #[test]
    fn provider_keys_and_agents_come_from_env_and_toml() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("agents.toml");
        std::fs::write(
            &file,
            "[[agents]]\nname = \"claude-critic\"\nprovider = \"anthropic\"\npersona = \"a harsh critic\"\n\n[providers.anthropic]\nmodel = \"claude-x\"\n",
        )
        .unwrap();
        let config = EngineConfig::load(
            Some(&file),
            &env(&[
                ("ANTHROPIC_API_KEY", "k"),
                ("ARAGORA_ANTHROPIC_BASE_URL", "http://127.0.0.1:9/v1"),
            ]),
        )
        .unwrap();
        let anthropic = config.provider(ProviderKind::Anthropic);
        assert_eq!(anthropic.api_key.as_deref(), Some("k"));
        assert_eq!(anthropic.model.as_deref(), Some("claude-x"));
        assert!(config.provider_enabled(ProviderKind::Anthropic));
        assert!(!config.provider_enabled(ProviderKind::Openai));
        assert_eq!(config.agents[0].name, "claude-critic");

        let problems = EngineConfig::load(Some(&file), &HashMap::new()).unwrap_err();
        assert!(
            problems
                .iter()
                .any(|p| p.message.contains("ANTHROPIC_API_KEY is not set")),
            "{problems:?}"
        );
        let problems = EngineConfig::load(
            None,
            &env(&[
                ("ARAGORA_RECEIPT_SIGNING_KEY", "short"),
                ("ARAGORA_OPENAI_BASE_URL", "ftp://x"),
            ]),
        )
        .unwrap_err();
        let settings: Vec<&str> = problems.iter().map(|p| p.setting.as_str()).collect();
        assert!(
            settings.contains(&"ARAGORA_RECEIPT_SIGNING_KEY"),
            "{problems:?}"
        );
        assert!(
            settings.contains(&"ARAGORA_OPENAI_BASE_URL"),
            "{problems:?}"
        );
    }

    #[test]
    fn earlier_receipt_keys_are_a_comma_separated_list_checked_key_by_key() {
        const A: &str = "receipt-key-a-receipt-key-a-receipt-key-a";
        const B: &str = "receipt-key-b-receipt-key-b-receipt-key-b";
        const C: &str = "receipt-key-c-receipt-key-c-receipt-key-c";
        let config = EngineConfig::load(
            None,
            &env(&[
                ("ARAGORA_RECEIPT_SIGNING_KEY", C),
                (
                    "ARAGORA_RECEIPT_SIGNING_KEY_PREVIOUS",
                    &format!("{B}, {A},"),
                ),
            ]),
        )
        .unwrap();
        assert_eq!(config.receipt_signing_key_previous, [B, A]);
        let one = EngineConfig::load(
            None,
            &env(&[
                ("ARAGORA_RECEIPT_SIGNING_KEY", C),
                ("ARAGORA_RECEIPT_SIGNING_KEY_PREVIOUS", A),
            ]),
        )
        .unwrap();
        assert_eq!(one.receipt_signing_key_previous, [A], "one key stays valid");

        let problems = EngineConfig::load(
            None,
            &env(&[
                ("ARAGORA_RECEIPT_SIGNING_KEY", C),
                (
                    "ARAGORA_RECEIPT_SIGNING_KEY_PREVIOUS",
                    &format!("{B},short-key,{C}"),
                ),
            ]),
        )
        .unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems
            .iter()
            .all(|p| p.setting == "ARAGORA_RECEIPT_SIGNING_KEY_PREVIOUS"));
        assert!(
            problems[0]
                .message
                .contains("key 2 of 3 is 9 characters long"),
            "{problems:?}"
        );
        assert!(
            problems[1]
                .message
                .contains("key 3 of 3 is the same as ARAGORA_RECEIPT_SIGNING_KEY"),
            "{problems:?}"
        );
        for problem in &problems {
            for key in [B, C, "short-key"] {
                assert!(!problem.message.contains(key), "{problem}");
            }
        }
    }

    #[test]
    fn earlier_receipt_keys_in_toml_are_a_string_or_an_array() {
        let dir = tempfile::tempdir().unwrap();
        let keys = [
            "receipt-key-b-receipt-key-b-receipt-key-b",
            "receipt-key-a-receipt-key-a-receipt-key-a",
        ];
        for written in [
            format!(
                "receipt_signing_key_previous = \"{},{}\"\n",
                keys[0], keys[1]
            ),
            format!(
                "receipt_signing_key_previous = [\"{}\", \"{}\"]\n",
                keys[0], keys[1]
            ),
        ] {
            let file = dir.path().join("engine.toml");
            std::fs::write(&file, &written).unwrap();
            let config = EngineConfig::load(Some(&file), &HashMap::new()).unwrap();
            assert_eq!(config.receipt_signing_key_previous, keys, "{written}");
        }
    }
}
