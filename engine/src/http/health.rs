//! Probes, health checks and metrics. One computation, [`Readiness`], answers every "may this
//! replica get traffic" question, so they never disagree:
//!
//! | route | who | answers |
//! |---|---|---|
//! | `/healthz` | open | 200 while the process lives |
//! | `/readyz`, `/api/ready`, `/api/health/ready` | open | [`Readiness`]: 200 `{"status":"ready","database":"connected","redis","agents"}`, else 503 with `reason` |
//! | `/api/health`, `/api/v1/status` | open | the summary: version, status, database, redis, agents, active and queued debates, uptime |
//! | `/api/health/db` | open | the database: backend, latency, running debates |
//! | `/api/health/redis` | open | the Redis the replicas share: `connected` with latency, 503 `disconnected` with the reason, or 200 `not_configured` |
//! | `/health` | admin | the deep check: each dependency with `status` and `latency_ms`, and `overall` |
//! | `/metrics` | open | Prometheus text |
//!
//! Readiness needs the startup to have finished, the database to answer and, with
//! `ARAGORA_REQUIRE_DISTRIBUTED=true`, Redis to answer. Agents are reported but do not gate
//! it: every replica shares the same providers, and reads, watches and receipts still work
//! while their breakers are open. Nothing here says more about a secret than that it is set.
//!
//! While maintenance is on, a ready replica's readiness answer also carries `maintenance`
//! (`enabled`, `reason`: the refusal's message, `retry_after_seconds`): the gateways' health
//! checks read it there, so every gateway refuses new debates at the edge with no database of
//! its own. Maintenance leaves the replica ready: reads, watches and running debates go on.

use super::access::Admin;
use super::{AppState, Phase};
use crate::agents::breaker::BreakerState;
use crate::model::DebateStatus;
use crate::store::SqlStore;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use utoipa::ToSchema;

/// How long a probe waits for the database before calling it unreachable.
const DB_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// `{"status": "ok"}`.
#[derive(Serialize, ToSchema)]
pub struct Alive {
    #[schema(example = "ok")]
    status: &'static str,
}

/// Liveness: 200 while the process lives.
#[utoipa::path(get, path = "/healthz", operation_id = "healthz", tag = "health",
    responses((status = 200, description = "The process is alive.", body = Alive)))]
pub async fn live() -> Json<Alive> {
    Json(Alive { status: "ok" })
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Redis as a health check finds it.
#[derive(Debug, Clone, PartialEq)]
pub enum RedisHealth {
    /// `ARAGORA_REDIS_URL` is unset: this replica runs alone.
    NotConfigured,
    Connected(Duration),
    Disconnected(String),
}

impl RedisHealth {
    async fn probe(state: &AppState) -> Self {
        match &state.redis {
            None => Self::NotConfigured,
            Some(link) => match link.ping().await {
                Ok(latency) => Self::Connected(latency),
                Err(reason) => Self::Disconnected(reason),
            },
        }
    }

    fn label(&self) -> &'static str {
        match self {
            Self::NotConfigured => "not_configured",
            Self::Connected(_) => "connected",
            Self::Disconnected(_) => "disconnected",
        }
    }
}

/// Whether this replica may get traffic, and what each dependency said: the one owner of the
/// readiness answer (`/readyz`, `/api/ready`, `/api/health/ready`, the summary).
#[derive(Debug, Clone)]
pub struct Readiness {
    pub phase: Phase,
    pub database: Result<Duration, String>,
    pub redis: RedisHealth,
    /// `ARAGORA_REQUIRE_DISTRIBUTED`: an unreachable Redis makes the replica not ready.
    pub redis_required: bool,
    pub agents_available: usize,
}

impl Readiness {
    /// Asks the database and Redis (at once) and reads the phase and the agents.
    pub async fn check(state: &AppState) -> Self {
        let (database, redis) = tokio::join!(database_probe(state), RedisHealth::probe(state));
        Self {
            phase: state.phase(),
            database,
            redis,
            redis_required: state.config.require_distributed,
            agents_available: state.agents.available_count(),
        }
    }

    /// Why the replica is not ready, or None when it is.
    pub fn not_ready_reason(&self) -> Option<String> {
        match &self.phase {
            Phase::Starting(reason) => return Some(reason.clone()),
            Phase::Draining => return Some("draining: shutting down".into()),
            Phase::Ready => {}
        }
        if let Err(err) = &self.database {
            return Some(format!("database not answering: {err}"));
        }
        match &self.redis {
            RedisHealth::Disconnected(err) if self.redis_required => Some(format!(
                "Redis not answering ({err}) and ARAGORA_REQUIRE_DISTRIBUTED=true: this replica will not run alone"
            )),
            _ => None,
        }
    }

    /// 200 with each dependency's word when ready, else 503 with the same keys and `reason`.
    fn response(&self) -> (StatusCode, ReadyBody) {
        let reason = self.not_ready_reason();
        let status = if reason.is_none() {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        let body = ReadyBody {
            status: if reason.is_none() {
                "ready"
            } else {
                "not_ready"
            },
            database: self.database_label(),
            redis: self.redis.label(),
            agents: self.agents_label(),
            reason,
            maintenance: None,
        };
        (status, body)
    }

    fn database_label(&self) -> &'static str {
        if self.database.is_ok() {
            "connected"
        } else {
            "disconnected"
        }
    }

    fn agents_label(&self) -> &'static str {
        if self.agents_available > 0 {
            "available"
        } else {
            "unavailable"
        }
    }
}

/// The readiness answer.
#[derive(Serialize, ToSchema)]
pub struct ReadyBody {
    /// `ready` or `not_ready`.
    status: &'static str,
    /// `connected` or `disconnected`.
    database: &'static str,
    /// `connected`, `disconnected` or `not_configured`.
    redis: &'static str,
    /// `available` or `unavailable`.
    agents: &'static str,
    /// Why the replica is not ready (503 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// Present while maintenance is on: the gateways refuse new debates at the edge.
    #[serde(skip_serializing_if = "Option::is_none")]
    maintenance: Option<ReadyMaintenance>,
}

#[derive(Serialize, ToSchema)]
pub struct ReadyMaintenance {
    enabled: bool,
    /// The refusal's message.
    reason: String,
    retry_after_seconds: u64,
}

/// Readiness: 200 when this replica may get traffic, 503 with `reason` otherwise.
///
/// `/readyz`, `/api/ready` and `/api/health/ready`: one answer under the names the probes, the
/// Deployment Checklist and the Self-Hosted Guide's script use.
#[utoipa::path(get, path = "/readyz", operation_id = "ready", tag = "health",
    responses(
        (status = 200, description = "Ready.", body = ReadyBody),
        (status = 503, description = "Not ready; `reason` says why.", body = ReadyBody),
    ))]
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<ReadyBody>) {
    let (status, mut body) = Readiness::check(&state).await.response();
    if status == StatusCode::OK {
        let maintenance = super::maintenance::in_force(&state).await;
        if maintenance.enabled {
            body.maintenance = Some(ReadyMaintenance {
                enabled: true,
                reason: maintenance.refusal_message(),
                retry_after_seconds: maintenance.retry_after_seconds,
            });
        }
    }
    (status, Json(body))
}

async fn database_probe(state: &AppState) -> Result<Duration, String> {
    let core = state.core().map_err(|err| err.message)?;
    match tokio::time::timeout(DB_PROBE_TIMEOUT, core.store.ping()).await {
        Ok(Ok(latency)) => Ok(latency),
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err(format!("no answer within {DB_PROBE_TIMEOUT:?}")),
    }
}

/// The health summary.
#[derive(Serialize, ToSchema)]
pub struct Summary {
    /// `healthy` or `degraded`.
    status: &'static str,
    version: &'static str,
    database: &'static str,
    redis: &'static str,
    agents: &'static str,
    agents_available: usize,
    active_debates: usize,
    queued_debates: usize,
    uptime_seconds: u64,
    maintenance: crate::maintenance::PublicView,
    /// Why the replica is degraded (503 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// The health summary: 200 `healthy` when ready, 503 `degraded` otherwise.
///
/// `/api/health` and `/api/v1/status` (the deploy procedure's smoke test).
#[utoipa::path(get, path = "/api/health", operation_id = "health", tag = "health",
    responses(
        (status = 200, description = "Healthy.", body = Summary),
        (status = 503, description = "Degraded; `reason` says why.", body = Summary),
    ))]
pub async fn summary(State(state): State<AppState>) -> (StatusCode, Json<Summary>) {
    let readiness = Readiness::check(&state).await;
    let reason = readiness.not_ready_reason();
    let (running, queued) = state
        .core
        .get()
        .map(|core| core.orchestrator.load())
        .unwrap_or_default();
    let status = if reason.is_none() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Summary {
        status: if reason.is_none() {
            "healthy"
        } else {
            "degraded"
        },
        version: env!("CARGO_PKG_VERSION"),
        database: readiness.database_label(),
        redis: readiness.redis.label(),
        agents: readiness.agents_label(),
        agents_available: readiness.agents_available,
        active_debates: running,
        queued_debates: queued,
        uptime_seconds: state.started.elapsed().as_secs(),
        maintenance: super::maintenance::in_force(&state).await.public_view(),
        reason,
    };
    (status, Json(body))
}

/// The database as `/api/health/db` finds it.
#[derive(Serialize, ToSchema)]
pub struct DatabaseHealth {
    /// `connected` or `disconnected`.
    database: &'static str,
    /// `sqlite` or `postgres`.
    backend: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    running_debates: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// The database: backend, latency, running debates; 503 when it does not answer.
#[utoipa::path(get, path = "/api/health/db", operation_id = "health_db", tag = "health",
    responses(
        (status = 200, description = "The database answers.", body = DatabaseHealth),
        (status = 503, description = "The database does not answer; `error` says why.", body = DatabaseHealth),
    ))]
pub async fn database(State(state): State<AppState>) -> (StatusCode, Json<DatabaseHealth>) {
    let backend = state.config.db_backend.as_str();
    match database_probe(&state).await {
        Ok(latency) => {
            let mut running_debates = None;
            if let Ok(core) = state.core() {
                if let Ok(page) = core
                    .store
                    .list_debates(&[DebateStatus::Running], 1, 0)
                    .await
                {
                    running_debates = Some(page.total);
                }
            }
            let body = DatabaseHealth {
                database: "connected",
                backend,
                latency_ms: Some(millis(latency)),
                running_debates,
                error: None,
            };
            (StatusCode::OK, Json(body))
        }
        Err(err) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(DatabaseHealth {
                database: "disconnected",
                backend,
                latency_ms: None,
                running_debates: None,
                error: Some(err),
            }),
        ),
    }
}

/// The Redis the replicas share, as `/api/health/redis` finds it.
#[derive(Serialize, ToSchema)]
pub struct RedisBody {
    /// `connected`, `disconnected` or `not_configured`.
    redis: &'static str,
    /// `ARAGORA_REQUIRE_DISTRIBUTED`.
    required: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<&'static str>,
}

/// The Redis the replicas share: 200 `connected` or `not_configured`, 503 `disconnected`.
///
/// Not configured is a 200: a single replica needs no Redis, and a probe of it should not fail;
/// configured but not answering is a 503.
#[utoipa::path(get, path = "/api/health/redis", operation_id = "health_redis", tag = "health",
    responses(
        (status = 200, description = "Redis answers, or none is configured.", body = RedisBody),
        (status = 503, description = "The configured Redis does not answer.", body = RedisBody),
    ))]
pub async fn redis(State(state): State<AppState>) -> (StatusCode, Json<RedisBody>) {
    let required = state.config.require_distributed;
    let tls = state
        .config
        .redis_url
        .as_deref()
        .is_some_and(aragora_config::redis::uses_tls);
    let body = |redis, latency_ms, error| RedisBody {
        redis,
        required,
        tls: Some(tls),
        latency_ms,
        error,
        note: None,
    };
    match RedisHealth::probe(&state).await {
        RedisHealth::NotConfigured => (
            StatusCode::OK,
            Json(RedisBody {
                redis: "not_configured",
                required: false,
                tls: None,
                latency_ms: None,
                error: None,
                note: Some("ARAGORA_REDIS_URL is unset: this replica shares events with no other"),
            }),
        ),
        RedisHealth::Connected(latency) => (
            StatusCode::OK,
            Json(body("connected", Some(millis(latency)), None)),
        ),
        RedisHealth::Disconnected(err) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(body("disconnected", None, Some(err))),
        ),
    }
}

/// One check of the deep health report.
struct Check {
    status: &'static str,
    latency: Duration,
    detail: Value,
}

impl Check {
    fn timed(started: Instant, status: &'static str, detail: Value) -> Self {
        Self {
            status,
            latency: started.elapsed(),
            detail,
        }
    }

    fn render(self) -> Value {
        let mut body = self.detail;
        body["status"] = json!(self.status);
        body["latency_ms"] = json!(millis(self.latency));
        body
    }
}

/// The deep dependency check (admins): each dependency with `status` and `latency_ms`.
///
/// `overall` is `healthy`, `degraded` (something is wrong that does not stop debates: Redis
/// when not required, open breakers) or `unhealthy` (503: the database, the schema, the key
/// store, every agent, or a required Redis). `checks` has `database`, `redis`, `api_keys`,
/// `schema` and `agents`, each an object with `status` and `latency_ms` and its own details.
#[utoipa::path(get, path = "/health", operation_id = "health_deep", tag = "health",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "`healthy` or `degraded`.", body = Object),
        (status = 503, description = "`unhealthy`, or credentials cannot be checked yet.", body = Object),
    ))]
pub async fn deep(State(state): State<AppState>, _: Admin) -> (StatusCode, Json<Value>) {
    let readiness = Readiness::check(&state).await;
    let started = Instant::now();
    let database = match &readiness.database {
        Ok(latency) => Check {
            status: "ok",
            latency: *latency,
            detail: json!({"backend": state.config.db_backend.as_str()}),
        },
        Err(err) => Check::timed(
            started,
            "error",
            json!({"backend": state.config.db_backend.as_str(), "error": err}),
        ),
    };
    let redis = match &readiness.redis {
        RedisHealth::NotConfigured => {
            Check::timed(started, "not_configured", json!({"required": false}))
        }
        RedisHealth::Connected(latency) => Check {
            status: "ok",
            latency: *latency,
            detail: json!({"required": readiness.redis_required}),
        },
        RedisHealth::Disconnected(err) => Check::timed(
            started,
            "error",
            json!({"required": readiness.redis_required, "error": err}),
        ),
    };
    let checks = [
        ("database", database),
        ("redis", redis),
        ("api_keys", api_keys_check(&state).await),
        ("schema", schema_check(&state).await),
        ("agents", agents_check(&state)),
    ];
    let fatal = |name: &str, check: &Check| match name {
        "redis" => check.status == "error" && readiness.redis_required,
        _ => check.status == "error",
    };
    let overall = if checks.iter().any(|(name, check)| fatal(name, check)) {
        "unhealthy"
    } else if readiness.not_ready_reason().is_some()
        || checks
            .iter()
            .any(|(_, check)| !matches!(check.status, "ok" | "not_configured"))
    {
        "degraded"
    } else {
        "healthy"
    };
    let mut body = json!({
        "overall": overall,
        "version": env!("CARGO_PKG_VERSION"),
        "ready": readiness.not_ready_reason().is_none(),
        "checks": {},
    });
    if let Some(reason) = readiness.not_ready_reason() {
        body["reason"] = json!(reason);
    }
    for (name, check) in checks {
        body["checks"][name] = check.render();
    }
    let status = if overall == "unhealthy" {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (status, Json(body))
}

/// The `api_keys` table answers; how many keys are active (never which, nor any secret).
async fn api_keys_check(state: &AppState) -> Check {
    let started = Instant::now();
    let Some(keys) = state.auth.keys() else {
        return Check::timed(
            started,
            "error",
            json!({"error": "the API key store is not connected yet (the engine is starting)"}),
        );
    };
    match tokio::time::timeout(DB_PROBE_TIMEOUT, keys.list_keys()).await {
        Ok(Ok(keys)) => {
            let now = aragora_auth::unix_now() * 1000;
            let active = keys
                .iter()
                .filter(|key| {
                    key.revoked_at_ms.is_none() && key.expires_at_ms.is_none_or(|at| at > now)
                })
                .count();
            Check::timed(
                started,
                "ok",
                json!({"active": active, "total": keys.len()}),
            )
        }
        Ok(Err(err)) => Check::timed(started, "error", json!({"error": err.to_string()})),
        Err(_) => Check::timed(
            started,
            "error",
            json!({"error": format!("no answer within {DB_PROBE_TIMEOUT:?}")}),
        ),
    }
}

/// The newest applied migration against the newest this binary knows.
async fn schema_check(state: &AppState) -> Check {
    let started = Instant::now();
    let expected = SqlStore::latest_schema_version(state.config.db_backend);
    let core = match state.core() {
        Ok(core) => core,
        Err(err) => {
            return Check::timed(
                started,
                "error",
                json!({"error": err.message, "expected": expected}),
            )
        }
    };
    match tokio::time::timeout(DB_PROBE_TIMEOUT, core.store.schema_version()).await {
        Ok(Ok(applied)) if applied == Some(expected) => Check::timed(
            started,
            "ok",
            json!({"applied": applied, "expected": expected}),
        ),
        Ok(Ok(applied)) => Check::timed(
            started,
            "error",
            json!({
                "applied": applied,
                "expected": expected,
                "error": format!("the database's schema is at {applied:?}, this binary's is {expected}; run the binary that matches, or migrate"),
            }),
        ),
        Ok(Err(err)) => Check::timed(
            started,
            "error",
            json!({"error": err.to_string(), "expected": expected}),
        ),
        Err(_) => Check::timed(
            started,
            "error",
            json!({"error": format!("no answer within {DB_PROBE_TIMEOUT:?}"), "expected": expected}),
        ),
    }
}

/// Agents that can be called and the breakers that are open: `error` when none can be called,
/// `degraded` while any breaker is open.
fn agents_check(state: &AppState) -> Check {
    let started = Instant::now();
    let total = state.agents.all().count();
    let llm = state.agents.all().filter(|agent| agent.is_llm()).count();
    let open = state
        .agents
        .all()
        .filter(|agent| {
            agent
                .breaker()
                .is_some_and(|b| b.state() == BreakerState::Open)
        })
        .count();
    let available = state.agents.available_count();
    let status = if available == 0 {
        "error"
    } else if open > 0 {
        "degraded"
    } else {
        "ok"
    };
    Check::timed(
        started,
        status,
        json!({
            "available": available,
            "total": total,
            "llm": llm,
            "circuit_breakers_open": open,
            "offline_defaults": state.agents.defaults_are_offline(),
        }),
    )
}

/// Prometheus metrics (text exposition format).
///
/// Gauges that describe the moment are refreshed as they are scraped.
#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "health",
    responses((status = 200, description = "The Prometheus text format.", content_type = "text/plain; version=0.0.4", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let metrics = &state.metrics;
    metrics
        .database_up
        .set(i64::from(database_probe(&state).await.is_ok()));
    if let Some(bytes) = crate::metrics::resident_memory_bytes() {
        metrics.resident_memory.set(bytes);
    }
    if let Some(core) = state.core.get() {
        let oldest = core.orchestrator.oldest_running();
        metrics.oldest_running_debate.set(oldest.as_secs() as i64);
    }
    refresh_dr_gauges(&state).await;
    refresh_webhook_gauges(&state).await;
    // Sets aragora_maintenance_mode from the shared row (through the 1 s cache).
    super::maintenance::in_force(&state).await;
    (
        [(header::CONTENT_TYPE, aragora_telemetry::TEXT_CONTENT_TYPE)],
        state.metrics.render(),
    )
}

/// Sets the dead-letter depth and the breakers' states from the database (every replica shows
/// the same, as of this scrape).
async fn refresh_webhook_gauges(state: &AppState) {
    let Some(hooks) = state.core.get().and_then(|core| core.webhooks.clone()) else {
        return;
    };
    let depth = crate::webhooks::outbox::dead_letter_depth(hooks.pool());
    match tokio::time::timeout(DB_PROBE_TIMEOUT, depth).await {
        Ok(Ok(depth)) => hooks.metrics().dead_letter_depth.set(depth),
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "cannot count dead webhook deliveries for /metrics")
        }
        Err(_) => tracing::warn!("the webhook tables did not answer within 1 s for /metrics"),
    }
    match tokio::time::timeout(DB_PROBE_TIMEOUT, hooks.refresh_breaker_gauges()).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "cannot read the webhook breakers for /metrics")
        }
        Err(_) => tracing::warn!("the webhook breakers did not answer within 1 s for /metrics"),
    }
}

/// Sets the DR gauges from the DR log. Backups and drills may run in another process (the CLI,
/// another replica's scheduler), so the database, not this process, is the source of truth.
/// A scrape never waits long for it: on a slow or failing database the last values stay.
async fn refresh_dr_gauges(state: &AppState) {
    let Ok(core) = state.core() else { return };
    match tokio::time::timeout(DB_PROBE_TIMEOUT, core.store.dr_status()).await {
        Ok(Ok(status)) => state.metrics.dr.set(&status),
        Ok(Err(err)) => tracing::warn!(error = %err, "cannot read the DR log for /metrics"),
        Err(_) => tracing::warn!("the DR log did not answer within 1 s for /metrics"),
    }
}
