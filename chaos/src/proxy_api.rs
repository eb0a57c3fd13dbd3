//! The fault proxies' HTTP API (Toxiproxy's shape, aragora's names): list the proxies, add and
//! remove faults at run time, and `/metrics`. Served by `aragora chaos proxy --api`; chaos
//! experiments drive it with their `proxy_fault` action.
//!
//! | method and path | does |
//! |---|---|
//! | `GET /proxies` | every proxy with its connections, bytes and faults |
//! | `GET /proxies/{name}` | one proxy |
//! | `POST /proxies/{name}/faults` | add a fault (a [`FaultSpec`] as JSON): 201 with its id |
//! | `DELETE /proxies/{name}/faults/{id}` | remove one fault: 204 |
//! | `DELETE /proxies/{name}/faults` | remove all: 200 `{"removed": n}` |
//! | `GET /metrics`, `GET /healthz` | Prometheus text; liveness |

use crate::faults::{FaultSpec, KINDS};
use crate::proxy::FaultProxy;
use aragora_engine::error::ApiError;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;

/// The proxies an API serves, and the registry their metrics are in.
pub struct Proxies {
    pub proxies: Vec<FaultProxy>,
    pub registry: prometheus::Registry,
}

impl Proxies {
    fn find(&self, name: &str) -> Result<&FaultProxy, ApiError> {
        self.proxies
            .iter()
            .find(|proxy| proxy.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = self.proxies.iter().map(FaultProxy::name).collect();
                ApiError::not_found(format!(
                    "no proxy named {name:?}; the proxies are: {}",
                    names.join(", ")
                ))
            })
    }
}

pub fn router(proxies: Arc<Proxies>) -> Router {
    Router::new()
        .route("/proxies", get(list))
        .route("/proxies/{name}", get(show))
        .route("/proxies/{name}/faults", post(add).delete(clear))
        .route("/proxies/{name}/faults/{id}", delete(remove))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .with_state(proxies)
}

async fn list(State(proxies): State<Arc<Proxies>>) -> Response {
    let statuses: Vec<_> = proxies.proxies.iter().map(FaultProxy::status).collect();
    Json(json!({ "proxies": statuses })).into_response()
}

async fn show(
    State(proxies): State<Arc<Proxies>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(proxies.find(&name)?.status()).into_response())
}

async fn add(
    State(proxies): State<Arc<Proxies>>,
    Path(name): Path<String>,
    body: Result<Json<FaultSpec>, JsonRejection>,
) -> Result<Response, ApiError> {
    let proxy = proxies.find(&name)?;
    let Json(spec) = body.map_err(|rejection| {
        let mut error = ApiError::from(rejection);
        if error.message.contains("kind") {
            error.message.push_str(&format!(" (kinds: {KINDS})"));
        }
        error
    })?;
    match proxy.add(spec) {
        Ok(view) => Ok((StatusCode::CREATED, Json(view)).into_response()),
        Err(problems) => Err(ApiError::invalid(problems.join("; "))),
    }
}

async fn remove(
    State(proxies): State<Arc<Proxies>>,
    Path((name, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let proxy = proxies.find(&name)?;
    if proxy.remove(&id) {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found(format!(
            "proxy {name:?} has no fault {id:?} (it may have expired); GET /proxies/{name} lists them"
        )))
    }
}

async fn clear(
    State(proxies): State<Arc<Proxies>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let removed = proxies.find(&name)?.clear();
    Ok(Json(json!({ "removed": removed })).into_response())
}

async fn metrics(State(proxies): State<Arc<Proxies>>) -> Response {
    let text = aragora_telemetry::render(&proxies.registry);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
