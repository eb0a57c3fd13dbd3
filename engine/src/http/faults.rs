//! `/api/system/faults`, for admins: inject a fault for a duration, list the
//! active ones, clear one or all early. What each fault does is in `crate::faults`.

use super::access::Admin;
use super::body::ApiJson;
use super::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::faults::{Fault, FaultKind, FaultSpec};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use utoipa::ToSchema;

/// A fault lasts from one second to one day.
const DURATION_SECONDS: std::ops::RangeInclusive<i64> = 1..=86_400;
/// A slow agent is held up to ten minutes a call (past any sane `ARAGORA_AGENT_TIMEOUT`).
const DELAY_MS: std::ops::RangeInclusive<i64> = 1..=600_000;

/// The body of `POST /api/system/faults`. Numbers are signed so that a negative one gets the
/// range message rather than a type error.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InjectFault {
    /// What the fault does.
    #[schema(required = true, value_type = FaultKind)]
    kind: Option<String>,
    /// agent_slow and agent_failing only: the agent it applies to (default: every agent).
    agent: Option<String>,
    /// agent_slow only, and required there: 1 to 600000 ms added to each call.
    #[schema(minimum = 1, maximum = 600000)]
    delay_ms: Option<i64>,
    /// 1 to 86400 s the fault lasts.
    #[schema(required = true, value_type = i64, minimum = 1, maximum = 86400)]
    duration_seconds: Option<i64>,
}

/// `GET /api/system/faults`.
#[derive(Serialize, ToSchema)]
pub struct Faults {
    faults: Vec<Fault>,
}

/// What a clear removed.
#[derive(Serialize, ToSchema)]
pub struct Cleared {
    cleared: Vec<Fault>,
}

const ID: &str = "A fault's id, from GET /api/system/faults.";

fn kinds() -> String {
    FaultKind::ALL.map(FaultKind::as_str).join(", ")
}

fn in_range(
    name: &str,
    value: Option<i64>,
    range: &std::ops::RangeInclusive<i64>,
    unit: &str,
) -> Result<u64, ApiError> {
    let (low, high) = (range.start(), range.end());
    match value {
        Some(value) if range.contains(&value) => Ok(value.unsigned_abs()),
        Some(value) => Err(ApiError::invalid(format!(
            "\"{name}\" is {value}; use {low} to {high} ({unit})"
        ))),
        None => Err(ApiError::invalid(format!(
            "the body needs \"{name}\": {low} to {high} ({unit})"
        ))),
    }
}

/// Turns a request into a fault to inject, or says what is wrong with it.
fn validate(state: &AppState, request: InjectFault) -> Result<FaultSpec, ApiError> {
    let kind = request
        .kind
        .ok_or_else(|| ApiError::invalid(format!("the body needs \"kind\": one of {}", kinds())))?;
    let kind = FaultKind::parse(&kind).ok_or_else(|| {
        ApiError::invalid(format!("\"kind\" is {kind:?}; use one of {}", kinds()))
    })?;
    let duration = in_range(
        "duration_seconds",
        request.duration_seconds,
        &DURATION_SECONDS,
        "seconds the fault lasts",
    )?;
    let delay = match (kind, request.delay_ms) {
        (FaultKind::AgentSlow, delay_ms) => in_range(
            "delay_ms",
            delay_ms,
            &DELAY_MS,
            "milliseconds added to each call",
        )?,
        (_, None) => 0,
        (_, Some(_)) => {
            return Err(ApiError::invalid(format!(
                "\"delay_ms\" applies only to agent_slow, not to {}; remove it",
                kind.as_str()
            )))
        }
    };
    if let Some(agent) = &request.agent {
        if !kind.is_agent_fault() {
            return Err(ApiError::invalid(format!(
                "\"agent\" applies only to agent_slow and agent_failing, not to {}; remove it",
                kind.as_str()
            )));
        }
        if state.agents.get(agent).is_none() {
            let known: Vec<&str> = state.agents.names().collect();
            return Err(ApiError::invalid(format!(
                "unknown agent {agent:?}; available: {} (or leave \"agent\" out to affect every agent)",
                known.join(", ")
            )));
        }
    }
    Ok(FaultSpec {
        kind,
        agent: request.agent,
        delay: Duration::from_millis(delay),
        duration: Duration::from_secs(duration),
    })
}

fn location(fault: &Fault) -> String {
    format!("/api/system/faults/{}", fault.id)
}

fn unknown(id: &str) -> ApiError {
    ApiError::not_found(format!(
        "no active fault with id {id:?} (it may have expired); list them with GET /api/system/faults"
    ))
}

/// Injects a fault for a while (admins): what each kind does is in the README's chaos section.
#[utoipa::path(post, path = "/system/faults", operation_id = "inject_fault", tag = "system",
    security(("bearer" = [])), request_body = InjectFault,
    responses((status = 201, description = "Injected; `Location` names it.", body = Fault,
        headers(("Location" = String, description = "The fault's URL.")),
        links(
            ("fault" = (operation_id = "fault", parameters(("id" = "$response.body#/id")))),
            ("clear" = (operation_id = "clear_fault", parameters(("id" = "$response.body#/id")))),
        ))))]
pub async fn inject(
    State(state): State<AppState>,
    _: Admin,
    ApiJson(request): ApiJson<InjectFault>,
) -> Result<Response, ApiError> {
    let spec = validate(&state, request)?;
    let fault = state.faults.inject(spec);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location(&fault))],
        Json(fault),
    )
        .into_response())
}

/// The active faults (admins).
#[utoipa::path(get, path = "/system/faults", operation_id = "faults", tag = "system",
    security(("bearer" = [])),
    responses((status = 200, description = "The active faults.", body = Faults)))]
pub async fn list(State(state): State<AppState>, _: Admin) -> Json<Faults> {
    Json(Faults {
        faults: state.faults.list(),
    })
}

/// One active fault (admins).
#[utoipa::path(get, path = "/system/faults/{id}", operation_id = "fault", tag = "system",
    security(("bearer" = [])), params(("id" = String, Path, description = ID)),
    responses(
        (status = 200, description = "The fault.", body = Fault),
        (status = 404, description = "No active fault with this id.", body = ErrorBody),
    ))]
pub async fn show(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<Json<Fault>, ApiError> {
    let fault = state.faults.list().into_iter().find(|f| f.id == id);
    fault.map(Json).ok_or_else(|| unknown(&id))
}

/// Clears one fault early (admins).
#[utoipa::path(delete, path = "/system/faults/{id}", operation_id = "clear_fault", tag = "system",
    security(("bearer" = [])), params(("id" = String, Path, description = ID)),
    responses(
        (status = 200, description = "The fault cleared.", body = Cleared),
        (status = 404, description = "No active fault with this id.", body = ErrorBody),
    ))]
pub async fn clear(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<Json<Cleared>, ApiError> {
    let fault = state.faults.clear(&id).ok_or_else(|| unknown(&id))?;
    Ok(Json(Cleared {
        cleared: vec![fault],
    }))
}

/// Clears every fault (admins).
#[utoipa::path(delete, path = "/system/faults", operation_id = "clear_faults", tag = "system",
    security(("bearer" = [])),
    responses((status = 200, description = "The faults cleared.", body = Cleared)))]
pub async fn clear_all(State(state): State<AppState>, _: Admin) -> Json<Cleared> {
    Json(Cleared {
        cleared: state.faults.clear_all(),
    })
}
