//! The engine's HTTP surface: [`app`] builds the router shared by `main` and the tests.
//!
//! Every response is JSON (errors as `{"error": {"code", "message"}}`, unknown paths and wrong
//! methods included), and every request is counted under its route template, never its raw path.

mod admin;
mod debates;
pub mod drills;
mod faults;
mod health;
pub mod ws;

use crate::agents::AgentRegistry;
use crate::config::EngineConfig;
use crate::error::ApiError;
use crate::events::EventHub;
use crate::faults::Faults;
use crate::metrics::EngineMetrics;
use crate::orchestrator::Orchestrator;
use crate::receipts::ReceiptKeys;
use crate::store::DebateStore;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;
use tokio::sync::watch;

/// Where the process is in its life, as `/readyz` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    Starting(String),
    Ready,
    Draining,
}

/// The parts that exist only once the database answers and migrations ran.
pub struct Core {
    pub store: Arc<dyn DebateStore>,
    pub orchestrator: Orchestrator,
}

/// Everything a handler can reach.
pub struct Shared {
    pub config: EngineConfig,
    pub metrics: EngineMetrics,
    pub hub: EventHub,
    pub agents: AgentRegistry,
    /// Faults injected for chaos experiments; agents and the store consult them.
    pub faults: Faults,
    pub receipts: ReceiptKeys,
    pub core: OnceLock<Core>,
    pub phase: Mutex<Phase>,
    /// Flips to true when WebSockets must close (code 1001, going away).
    pub closing: watch::Receiver<bool>,
    pub started: Instant,
}

#[derive(Clone)]
pub struct AppState(pub Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    /// The store and orchestrator, or 503 while the engine is still starting.
    pub fn core(&self) -> Result<&Core, ApiError> {
        self.core.get().ok_or_else(|| {
            let reason = match self.phase() {
                Phase::Starting(reason) => reason,
                _ => "starting".into(),
            };
            ApiError::unavailable(
                format!("the engine is not ready yet ({reason}); retry shortly"),
                2,
            )
        })
    }

    pub fn phase(&self) -> Phase {
        self.phase
            .lock()
            .map(|p| p.clone())
            .unwrap_or(Phase::Draining)
    }

    pub fn set_phase(&self, phase: Phase) {
        self.metrics.ready.set(i64::from(phase == Phase::Ready));
        if let Ok(mut current) = self.phase.lock() {
            *current = phase;
        }
    }
}

/// The full API router: REST, health, metrics and `/ws`.
pub fn app(state: AppState) -> Router {
    let debates = Router::new()
        .route("/debates", post(debates::create).get(debates::list))
        .route("/debates/{id}", get(debates::show))
        .route("/debates/{id}/messages", get(debates::messages))
        .route("/debates/{id}/cancel", post(debates::cancel))
        .route("/debates/{id}/receipt", get(debates::receipt))
        .route("/receipts/verify", post(debates::verify_receipt))
        .route("/drills", get(drills::list))
        .route("/agents", get(admin::agents))
        .route("/system/circuit-breakers", get(admin::breakers))
        .route(
            "/system/circuit-breakers/reset",
            post(admin::reset_all_breakers),
        )
        .route(
            "/system/circuit-breakers/{agent}/reset",
            post(admin::reset_breaker),
        )
        .route(
            "/system/faults",
            post(faults::inject)
                .get(faults::list)
                .delete(faults::clear_all),
        )
        .route(
            "/system/faults/{id}",
            get(faults::show).delete(faults::clear),
        );
    Router::new()
        .nest("/api", debates.clone())
        .nest("/api/v1", debates)
        .route("/api/health", get(health::summary))
        .route("/api/health/db", get(health::database))
        .merge(probe_routes())
        .route("/ws", get(ws::upgrade))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            record_request,
        ))
        .with_state(state)
}

/// The dedicated WebSocket listener (`--ws-port`): `/ws` and the probes only.
pub fn ws_app(state: AppState) -> Router {
    Router::new()
        .route("/ws", get(ws::upgrade))
        .merge(probe_routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            record_request,
        ))
        .with_state(state)
}

fn probe_routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(health::live))
        .route("/readyz", get(health::ready))
        .route("/metrics", get(health::metrics))
}

async fn not_found(request: Request) -> ApiError {
    ApiError::not_found(format!(
        "no endpoint at {}; see the README for the API's paths",
        request.uri().path()
    ))
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} is not supported on {}",
            request.method(),
            request.uri().path()
        ),
    )
}

/// Counts every request and observes its latency under the route template.
async fn record_request(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = aragora_telemetry::method_label(request.method());
    let response = next.run(request).await.into_response();
    let status = response.status();
    state
        .metrics
        .http_requests
        .with_label_values(&[method, route.as_str(), status.as_str()])
        .inc();
    state
        .metrics
        .request_latency
        .with_label_values(&[method, route.as_str()])
        .observe(started.elapsed().as_secs_f64());
    // A 503 from /readyz is the probe doing its job, not a failure.
    if status.is_server_error() && route != "/readyz" {
        tracing::warn!(%method, %route, status = status.as_u16(), "request failed");
    }
    response
}
