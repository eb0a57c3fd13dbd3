//! The engine's HTTP surface: [`app`] builds the router shared by `main` and the tests.
//!
//! Every response is JSON (errors as `{"error": {"code", "message"}}`, unknown paths and wrong
//! methods included), and every request is counted under its route template, never its raw path.

pub mod access;
mod admin;
mod body;
mod debates;
pub mod drills;
mod errors;
mod faults;
pub mod gateway;
mod health;
pub mod limits;
mod maintenance;
pub mod openapi;
mod retention;
mod tokens;
mod unread_body;
mod usage;
mod webhooks;
pub mod ws;
pub mod ws_wire;

pub use debates::{parse_create, parse_list_query, ListParams};

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
use axum::routing::{get, MethodRouter};
use axum::Router;
use openapi::Endpoint;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;
use tokio::sync::watch;
use utoipa_axum::routes;

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
    /// The Receipt Retention Scheduler of this replica.
    pub retention: crate::retention::Retention,
    /// Webhook subscriptions and delivery; None where the store is not SQL (in-process tests).
    pub webhooks: Option<Arc<crate::webhooks::Webhooks>>,
}

/// Everything a handler can reach.
pub struct Shared {
    pub config: EngineConfig,
    pub metrics: EngineMetrics,
    pub hub: EventHub,
    /// The Redis the replicas share (`ARAGORA_REDIS_URL`), for health checks; None when unset.
    pub redis: Option<crate::fanout::RedisLink>,
    pub agents: AgentRegistry,
    /// Faults injected for chaos experiments; agents and the store consult them.
    pub faults: Faults,
    pub receipts: ReceiptKeys,
    /// This replica's recent errors (`GET /api/system/errors`).
    pub errors: crate::error_log::ErrorLog,
    /// Maintenance mode as this replica last read it from the database (at most 1 s old).
    pub maintenance: crate::maintenance::Switch,
    /// Verifies credentials; API keys once the database is connected.
    pub auth: Arc<aragora_auth::Authenticator>,
    pub core: OnceLock<Core>,
    pub phase: Mutex<Phase>,
    /// Flips to true when WebSockets must close (code 1001, going away).
    pub closing: watch::Receiver<bool>,
    /// Open WebSockets per client on this replica, for `ARAGORA_WS_MAX_CONNECTIONS_PER_CLIENT`
    /// (and their message allowance).
    pub websockets: limits::ClientCounts,
    /// The per-client counts across replicas (WebSockets, debates), or this replica's.
    pub slots: crate::client_slots::ClientSlots,
    pub started: Instant,
    /// The OpenAPI document `GET /api/openapi.json` serves: this engine's routes and its
    /// extras' ([`openapi::document_with`]), rendered once.
    pub openapi: String,
    /// The gateway admin API `GET /api/system/upstreams` and `/rate-limits` read.
    pub gateway_admin: gateway::GatewayAdmin,
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

/// The full API router: REST, health, metrics and `/ws`, built from [`api_routes`] alone.
pub fn app(state: AppState) -> Router {
    app_with(state, None)
}

/// [`app`] with `extra` routes (the binary's `/api/slo`, [`crate::Extras`]) merged in before
/// the layers, so they are counted under their route template, answer CORS preflights and
/// get the JSON fallbacks like the engine's own; their handlers check access themselves.
pub fn app_with(state: AppState, extra: Option<Router>) -> Router {
    let router = api_routes()
        .into_iter()
        .fold(Router::new(), |router, endpoint| {
            router.route(&endpoint.path, endpoint.handlers.2)
        })
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state.clone());
    match extra {
        Some(extra) => router.merge(extra),
        None => router,
    }
    .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
    .layer(cors(&state))
    .layer(axum::middleware::map_response(credentials_only_with_origin))
    .layer(axum::middleware::from_fn_with_state(
        state.clone(),
        record_request,
    ))
    // Outermost, so a refusal by any layer above still leaves a connection that can be reused.
    .layer(axum::middleware::from_fn(unread_body::finish_unread_body))
}

/// tower-http's CORS sends `Access-Control-Allow-Credentials` to every origin; a browser
/// ignores it without `Allow-Origin`, but an unlisted origin should not be told either.
async fn credentials_only_with_origin(mut response: Response) -> Response {
    use axum::http::header;
    if !response
        .headers()
        .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
    {
        response
            .headers_mut()
            .remove(header::ACCESS_CONTROL_ALLOW_CREDENTIALS);
    }
    response
}

/// CORS for exactly the origins of `ARAGORA_ALLOWED_ORIGINS`: a listed origin's preflight is
/// answered with its own origin and `Allow-Credentials`; any other origin gets no
/// `Access-Control-Allow-Origin` (so the browser refuses), and is counted as reason `origin`.
fn cors(state: &AppState) -> tower_http::cors::CorsLayer {
    use axum::http::{header, HeaderValue, Method};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let policy = aragora_auth::OriginPolicy::new(&state.auth.config().allowed_origins);
    let metrics = state.metrics.clone();
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(
            move |origin: &HeaderValue, request: &axum::http::request::Parts| {
                let allowed = origin.to_str().is_ok_and(|o| policy.allows(o));
                if !allowed && request.method == Method::OPTIONS {
                    metrics.auth_failure("origin");
                    tracing::warn!(
                        path = %request.uri.path(),
                        "CORS preflight from an origin not in ARAGORA_ALLOWED_ORIGINS refused"
                    );
                }
                allowed
            },
        ))
        .allow_credentials(true)
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::HeaderName::from_static("x-request-id"),
        ])
        .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS])
}

/// The path template of every route of the API listener, for tests that hold each against
/// the role table (a new route without an access check fails them; a method a route does not
/// serve answers 405 before any check).
pub fn route_table() -> Vec<String> {
    api_routes()
        .into_iter()
        .map(|endpoint| endpoint.path)
        .collect()
}

/// Every route of the API listener, its template and its handlers: the one list the router and
/// the OpenAPI document ([`openapi::document`]) are built from, and that a test holds against
/// `aragora_telemetry::ROUTES` (the templates the gateway labels requests with, where a path
/// missing from it counts as `unmatched`). Each entry is a `routes!` of the handlers of one
/// path: their methods and path come from each handler's `#[utoipa::path]`.
fn api_routes() -> Vec<Endpoint> {
    // Served under /api and, identically, under /api/v1 (the document's `x-aliases`).
    let versioned = || {
        [
            routes!(debates::create, debates::list),
            routes!(debates::show),
            routes!(debates::messages),
            routes!(debates::cancel),
            routes!(debates::receipt),
            routes!(debates::verify_receipt),
            routes!(drills::list),
            routes!(admin::agents),
            routes!(admin::breakers),
            routes!(admin::reset_all_breakers),
            routes!(admin::reset_breaker),
            routes!(faults::inject, faults::list, faults::clear_all),
            routes!(faults::show, faults::clear),
            routes!(tokens::me),
            routes!(usage::mine),
            routes!(tokens::create_key),
            routes!(tokens::list_keys),
            routes!(tokens::revoke_key),
            routes!(tokens::mint_token),
            routes!(maintenance::show),
            routes!(maintenance::enable),
            routes!(maintenance::disable),
            routes!(maintenance::stats),
            routes!(retention::status),
            routes!(retention::cleanup),
            routes!(errors::list),
            routes!(gateway::upstreams),
            routes!(gateway::rate_limits),
            routes!(webhooks::create, webhooks::list),
            routes!(webhooks::dead_letters),
            routes!(webhooks::show, webhooks::delete),
            routes!(webhooks::pause),
            routes!(webhooks::resume),
            routes!(webhooks::retry),
            routes!(openapi::serve),
        ]
    };
    let mut routes: Vec<Endpoint> = versioned()
        .into_iter()
        .map(|handlers| Endpoint::at("/api", handlers))
        .collect();
    routes.extend(
        versioned()
            .into_iter()
            .map(|handlers| Endpoint::alias_under("/api/v1", "/api", handlers)),
    );
    // Health under the names the source documents use (see `health`'s table): aliases of one
    // handler each, so a probe and a script never disagree.
    routes.push(Endpoint::at("", routes!(health::summary)));
    routes.push(Endpoint::alias(
        "/api/v1/status",
        "",
        routes!(health::summary),
    ));
    routes.push(Endpoint::at("", routes!(health::database)));
    routes.push(Endpoint::at("", routes!(health::redis)));
    routes.push(Endpoint::at("", routes!(health::ready)));
    routes.push(Endpoint::alias("/api/ready", "", routes!(health::ready)));
    routes.push(Endpoint::alias(
        "/api/health/ready",
        "",
        routes!(health::ready),
    ));
    routes.push(Endpoint::at("", routes!(health::deep)));
    routes.push(Endpoint::at("", routes!(health::live)));
    routes.push(Endpoint::at("", routes!(health::metrics)));
    routes.push(Endpoint::at("", routes!(ws::upgrade)));
    routes
}

/// The dedicated WebSocket listener (`--ws-port`): `/ws` and the probes only.
pub fn ws_app(state: AppState) -> Router {
    probe_routes()
        .into_iter()
        .fold(
            Router::new().route("/ws", get(ws::upgrade)),
            |router, (path, handlers)| router.route(&path, handlers),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            record_request,
        ))
        .with_state(state)
}

/// The probes, as [`api_routes`] serves them (the same handlers under the same paths).
fn probe_routes() -> Vec<(String, MethodRouter<AppState>)> {
    api_routes()
        .into_iter()
        .filter(|endpoint| ["/healthz", "/readyz", "/metrics"].contains(&endpoint.path.as_str()))
        .map(|endpoint| (endpoint.path, endpoint.handlers.2))
        .collect()
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
    let method = aragora_telemetry::method_label(request.method().as_str());
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

#[cfg(test)]
mod tests {
    use super::api_routes;

    #[test]
    fn every_route_the_engine_serves_is_a_telemetry_route() {
        let missing: Vec<String> = api_routes()
            .into_iter()
            .map(|endpoint| endpoint.path)
            .filter(|path| !aragora_telemetry::ROUTES.contains(&path.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "add {missing:?} to aragora_telemetry::ROUTES, or the gateway labels them `unmatched`"
        );
    }

    #[test]
    fn every_telemetry_route_is_served() {
        let served: Vec<String> = api_routes().into_iter().map(|e| e.path).collect();
        // These are the binary's (the live SLO evaluator's, the drill runner's, the console's
        // pages), merged into this router by `aragora serve`/`up` (and documented with it:
        // src/openapi.rs; the pages are not API).
        let binarys = ["/api/slo", "/api/slo/history", "/api/drills/run"];
        let stale: Vec<&str> = aragora_telemetry::ROUTES
            .iter()
            .copied()
            .filter(|route| {
                !binarys.contains(route) && !aragora_telemetry::PAGE_ROUTES.contains(route)
            })
            .filter(|route| !served.iter().any(|path| path == route))
            .collect();
        assert!(stale.is_empty(), "{stale:?} are in ROUTES but not served");
    }
}
