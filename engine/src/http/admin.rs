//! Agents and their circuit breakers: `GET /api/agents` (readers), and the admin endpoints
//! `GET /api/system/circuit-breakers` and `POST .../reset`.

use super::access::{Admin, Reader};
use super::AppState;
use crate::agents::breaker::{BreakerSnapshot, BreakerState};
use crate::error::{ApiError, ErrorBody};
use axum::extract::{Path, State};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

/// One agent of `GET /api/agents`.
#[derive(Serialize, ToSchema)]
pub struct AgentView {
    name: String,
    provider: String,
    model: String,
    persona: String,
    /// False for the built-in offline agents (deterministic, no provider).
    llm: bool,
    available: bool,
    /// Whether a debate that names no agents gets this one.
    default: bool,
    /// Null for agents without one (offline agents never call out).
    circuit_breaker: Option<BreakerState>,
}

/// `GET /api/agents`.
#[derive(Serialize, ToSchema)]
pub struct Agents {
    agents: Vec<AgentView>,
    defaults: Vec<String>,
    /// Present when the defaults are the offline agents: how to debate with real models.
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<&'static str>,
}

/// The agents a debate may name, their providers and breakers (readers).
#[utoipa::path(get, path = "/agents", operation_id = "agents", tag = "agents",
    security(("bearer" = [])),
    responses((status = 200, description = "The agents.", body = Agents)))]
pub async fn agents(State(state): State<AppState>, _: Reader) -> Json<Agents> {
    let defaults = state.agents.defaults();
    let agents: Vec<AgentView> = state
        .agents
        .all()
        .map(|agent| AgentView {
            name: agent.name().into(),
            provider: agent.provider().into(),
            model: agent.model().into(),
            persona: agent.persona().into(),
            llm: agent.is_llm(),
            available: agent.available(),
            default: defaults.iter().any(|d| d == agent.name()),
            circuit_breaker: agent.breaker().map(|b| b.state()),
        })
        .collect();
    let note = state.agents.defaults_are_offline().then_some(
        "debates use the built-in offline agents by default: they are deterministic and not LLMs. \
         Set two or more of ANTHROPIC_API_KEY, OPENAI_API_KEY, GEMINI_API_KEY, XAI_API_KEY, MISTRAL_API_KEY \
         (or ARAGORA_OPENAI_COMPATIBLE_BASE_URL) to debate with real models.",
    );
    Json(Agents {
        agents,
        defaults: defaults.to_vec(),
        note,
    })
}

/// An agent's circuit breaker.
#[derive(Serialize, ToSchema)]
pub struct BreakerView {
    agent: String,
    provider: String,
    #[serde(flatten)]
    breaker: BreakerSnapshot,
}

/// `GET /api/system/circuit-breakers`.
#[derive(Serialize, ToSchema)]
pub struct Breakers {
    circuit_breakers: Vec<BreakerView>,
}

fn breaker_view(state: &AppState, name: &str) -> Option<BreakerView> {
    let agent = state.agents.get(name)?;
    let breaker = agent.breaker()?;
    Some(BreakerView {
        agent: agent.name().into(),
        provider: agent.provider().into(),
        breaker: breaker.snapshot(),
    })
}

/// Every agent's circuit breaker (admins).
#[utoipa::path(get, path = "/system/circuit-breakers", operation_id = "circuit_breakers",
    tag = "system", security(("bearer" = [])),
    responses((status = 200, description = "The breakers.", body = Breakers)))]
pub async fn breakers(State(state): State<AppState>, _: Admin) -> Result<Json<Breakers>, ApiError> {
    let circuit_breakers = state
        .agents
        .names()
        .filter_map(|name| breaker_view(&state, name))
        .collect();
    Ok(Json(Breakers { circuit_breakers }))
}

/// Closes one agent's circuit breaker (admins).
#[utoipa::path(post, path = "/system/circuit-breakers/{agent}/reset",
    operation_id = "reset_circuit_breaker", tag = "system", security(("bearer" = [])),
    params(("agent" = String, Path, description = "An agent's name, from GET /api/agents.")),
    responses(
        (status = 200, description = "The breaker, closed.", body = BreakerView),
        (status = 404, description = "No such agent, or one without a breaker.", body = ErrorBody),
    ))]
pub async fn reset_breaker(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(name): Path<String>,
) -> Result<Json<BreakerView>, ApiError> {
    let agent = state.agents.get(&name).ok_or_else(|| {
        ApiError::not_found(format!(
            "no agent named {name:?}; list them with GET /api/agents"
        ))
    })?;
    let breaker = agent.breaker().ok_or_else(|| {
        ApiError::not_found(format!(
            "{name} has no circuit breaker (offline agents never call out)"
        ))
    })?;
    breaker.reset();
    tracing::warn!(agent = %name, by = %admin.subject, "circuit breaker reset");
    breaker_view(&state, &name)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("{name} has no circuit breaker")))
}

/// Closes every agent's circuit breaker (admins).
#[utoipa::path(post, path = "/system/circuit-breakers/reset",
    operation_id = "reset_circuit_breakers", tag = "system", security(("bearer" = [])),
    responses((status = 200, description = "The breakers, closed.", body = Breakers)))]
pub async fn reset_all_breakers(
    State(state): State<AppState>,
    admin: Admin,
) -> Result<Json<Breakers>, ApiError> {
    for agent in state.agents.all() {
        if let Some(breaker) = agent.breaker() {
            breaker.reset();
        }
    }
    tracing::warn!(by = %admin.0.subject, "all circuit breakers reset");
    breakers(State(state), admin).await
}
