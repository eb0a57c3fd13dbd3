//! Probes and metrics: `/healthz` (alive), `/readyz` (send me traffic), `/api/health`,
//! `/api/health/db` and `/metrics`.
//!
//! While maintenance is on, a ready replica's `/readyz` also carries `maintenance` (`enabled`,
//! `reason`: the refusal's message, `retry_after_seconds`): the gateways' health checks read it there, so every gateway refuses
//! new debates at the edge while maintenance is on, with no database of its own. Maintenance
//! leaves the replica ready: reads, watches and running debates go on.

use super::{AppState, Phase};
use crate::model::DebateStatus;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};
use std::time::Duration;

/// How long a probe waits for the database before calling it unreachable.
const DB_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

pub async fn live() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// 200 only when migrations ran, the database answers and the process is not draining.
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let not_ready = |reason: String| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready", "reason": reason})),
        )
    };
    match state.phase() {
        Phase::Starting(reason) => not_ready(reason),
        Phase::Draining => not_ready("draining: shutting down".into()),
        Phase::Ready => match database_probe(&state).await {
            Ok(_) => {
                let mut body = json!({"status": "ready"});
                let maintenance = super::maintenance::in_force(&state).await;
                if maintenance.enabled {
                    body["maintenance"] = json!({
                        "enabled": true,
                        "reason": maintenance.refusal_message(),
                        "retry_after_seconds": maintenance.retry_after_seconds,
                    });
                }
                (StatusCode::OK, Json(body))
            }
            Err(err) => not_ready(format!("database not answering: {err}")),
        },
    }
}

async fn database_probe(state: &AppState) -> Result<Duration, String> {
    let core = state.core().map_err(|err| err.message)?;
    match tokio::time::timeout(DB_PROBE_TIMEOUT, core.store.ping()).await {
        Ok(Ok(latency)) => Ok(latency),
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err(format!("no answer within {DB_PROBE_TIMEOUT:?}")),
    }
}

pub async fn summary(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let database = database_probe(&state).await;
    let ready = state.phase() == Phase::Ready && database.is_ok();
    let (running, queued) = state
        .core
        .get()
        .map(|core| core.orchestrator.load())
        .unwrap_or_default();
    let body = json!({
        "status": if ready { "healthy" } else { "degraded" },
        "version": env!("CARGO_PKG_VERSION"),
        "database": if database.is_ok() { "connected" } else { "disconnected" },
        "agents_available": state.agents.available_count(),
        "active_debates": running,
        "queued_debates": queued,
        "uptime_seconds": state.started.elapsed().as_secs(),
        "maintenance": super::maintenance::in_force(&state).await.public_view(),
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

pub async fn database(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let backend = state.config.db_backend.as_str();
    match database_probe(&state).await {
        Ok(latency) => {
            let mut body = json!({
                "database": "connected",
                "backend": backend,
                "latency_ms": latency.as_secs_f64() * 1000.0,
            });
            if let Ok(core) = state.core() {
                if let Ok(page) = core
                    .store
                    .list_debates(&[DebateStatus::Running], 1, 0)
                    .await
                {
                    body["running_debates"] = json!(page.total);
                }
            }
            (StatusCode::OK, Json(body))
        }
        Err(err) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"database": "disconnected", "backend": backend, "error": err})),
        ),
    }
}

/// Gauges that describe the moment are refreshed as they are scraped.
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
    // Sets aragora_maintenance_mode from the shared row (through the 1 s cache).
    super::maintenance::in_force(&state).await;
    (
        [(header::CONTENT_TYPE, aragora_telemetry::TEXT_CONTENT_TYPE)],
        state.metrics.render(),
    )
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
