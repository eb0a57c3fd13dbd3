//! The fault proxies' HTTP API (Toxiproxy's shape, aragora's names): list the proxies, add and
//! remove faults at run time, and `/metrics`. Served by `aragora chaos proxy --api`; chaos
//! experiments drive it with their `proxy_fault` action.
//!
//! | method and path | does |
//! |---|---|
//! | `GET /proxies` | every proxy with its connections, bytes and faults |
//! | `GET /proxies/{name}` | one proxy |
//! | `POST /proxies/{name}/faults` | add a fault (a [`LinkFaultSpec`] as JSON): 201 with its id |
//! | `DELETE /proxies/{name}/faults/{id}` | remove one fault: 204 |
//! | `DELETE /proxies/{name}/faults` | remove all: 200 `{"removed": n}` |
//! | `GET /metrics`, `GET /healthz` | Prometheus text; liveness |
//!
//! Everything but `/metrics` and `/healthz` is for admins: `ARAGORA_API_TOKEN`, a loop token
//! for loop `admin`, or an admin JWT ([`Authenticator`] without a key store: API keys are the
//! engine's to verify). Refusals are JSON 401 (with `WWW-Authenticate`) or 403.
//!
//! Errors are the project's envelope (`aragora_telemetry::error_body`), unknown paths and wrong
//! methods included.

use crate::link_faults::{LinkFaultSpec, KINDS};
use crate::proxy::FaultProxy;
use aragora_auth::{AuthError, Authenticator};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;

/// A refused API request: its status, the envelope's stable `code`, and a message that says
/// what to send instead.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ProxyApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ProxyApiError {
    fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: message.into(),
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "validation_failed",
            message: message.into(),
        }
    }
}

impl IntoResponse for ProxyApiError {
    fn into_response(self) -> Response {
        let body = aragora_telemetry::error_body(self.code, &self.message);
        (self.status, Json(body)).into_response()
    }
}

impl From<JsonRejection> for ProxyApiError {
    fn from(rejection: JsonRejection) -> Self {
        let message = match &rejection {
            JsonRejection::MissingJsonContentType(_) => {
                "send the fault as JSON with the header Content-Type: application/json".to_string()
            }
            other => format!("{}; fix the JSON body and retry", other.body_text()),
        };
        Self {
            status: rejection.status(),
            code: aragora_telemetry::body_rejection_code(rejection.status()),
            message,
        }
    }
}

/// The proxies an API serves, and the registry their metrics are in.
pub struct Proxies {
    pub proxies: Vec<FaultProxy>,
    pub registry: prometheus::Registry,
}

impl Proxies {
    fn find(&self, name: &str) -> Result<&FaultProxy, ProxyApiError> {
        self.proxies
            .iter()
            .find(|proxy| proxy.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = self.proxies.iter().map(FaultProxy::name).collect();
                ProxyApiError::not_found(format!(
                    "no proxy named {name:?}; the proxies are: {}",
                    names.join(", ")
                ))
            })
    }
}

/// Lets admins through, and anyone to the scrape and the liveness probe.
async fn admins_only(
    State(auth): State<Arc<Authenticator>>,
    request: Request,
    next: Next,
) -> Response {
    let open =
        request.method() == Method::GET && matches!(request.uri().path(), "/metrics" | "/healthz");
    if open {
        return next.run(request).await;
    }
    let Err(err) = auth.require_admin(request.headers()).await else {
        return next.run(request).await;
    };
    // Which check failed is for the log (never the credential); the client gets the status.
    tracing::warn!(
        path = request.uri().path(),
        reason = err.metric_reason().unwrap_or("unavailable"),
        "proxy API request refused"
    );
    let (code, message) = err.keyless_code_and_message();
    let status = StatusCode::from_u16(err.status()).unwrap_or(StatusCode::UNAUTHORIZED);
    let mut response = ProxyApiError {
        status,
        code,
        message,
    }
    .into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(AuthError::WWW_AUTHENTICATE),
        );
    }
    response
}

/// The API over `proxies`, its admin endpoints checked by `auth`.
pub fn router(proxies: Arc<Proxies>, auth: Authenticator) -> Router {
    Router::new()
        .route("/proxies", get(list))
        .route("/proxies/{name}", get(show))
        .route("/proxies/{name}/faults", post(add).delete(clear))
        .route("/proxies/{name}/faults/{id}", delete(remove))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .fallback(|request: Request| async move {
            ProxyApiError::not_found(format!(
                "no endpoint at {}; the API serves /proxies, /metrics and /healthz",
                request.uri().path()
            ))
        })
        .method_not_allowed_fallback(|request: Request| async move {
            ProxyApiError {
                status: StatusCode::METHOD_NOT_ALLOWED,
                code: "method_not_allowed",
                message: format!(
                    "{} is not supported on {}",
                    request.method(),
                    request.uri().path()
                ),
            }
        })
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(auth),
            admins_only,
        ))
        .with_state(proxies)
}

async fn list(State(proxies): State<Arc<Proxies>>) -> Response {
    let statuses: Vec<_> = proxies.proxies.iter().map(FaultProxy::status).collect();
    Json(json!({ "proxies": statuses })).into_response()
}

async fn show(
    State(proxies): State<Arc<Proxies>>,
    Path(name): Path<String>,
) -> Result<Response, ProxyApiError> {
    Ok(Json(proxies.find(&name)?.status()).into_response())
}

async fn add(
    State(proxies): State<Arc<Proxies>>,
    Path(name): Path<String>,
    body: Result<Json<LinkFaultSpec>, JsonRejection>,
) -> Result<Response, ProxyApiError> {
    let proxy = proxies.find(&name)?;
    let Json(spec) = body.map_err(|rejection| {
        let mut error = ProxyApiError::from(rejection);
        if error.message.contains("kind") {
            error.message.push_str(&format!(" (kinds: {KINDS})"));
        }
        error
    })?;
    match proxy.add(spec) {
        Ok(view) => Ok((StatusCode::CREATED, Json(view)).into_response()),
        Err(problems) => Err(ProxyApiError::invalid(problems.join("; "))),
    }
}

async fn remove(
    State(proxies): State<Arc<Proxies>>,
    Path((name, id)): Path<(String, String)>,
) -> Result<Response, ProxyApiError> {
    let proxy = proxies.find(&name)?;
    if proxy.remove(&id) {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ProxyApiError::not_found(format!(
            "proxy {name:?} has no fault {id:?} (it may have expired); GET /proxies/{name} lists them"
        )))
    }
}

async fn clear(
    State(proxies): State<Arc<Proxies>>,
    Path(name): Path<String>,
) -> Result<Response, ProxyApiError> {
    let removed = proxies.find(&name)?.clear();
    Ok(Json(json!({ "removed": removed })).into_response())
}

async fn metrics(State(proxies): State<Arc<Proxies>>) -> Response {
    let text = aragora_telemetry::render(&proxies.registry);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
