//! Agents and their circuit breakers: `GET /api/agents` (readers), and the admin endpoints
//! `GET /api/system/circuit-breakers` and `POST .../reset`.

use super::access::{Admin, Reader};
use super::AppState;
use crate::error::ApiError;
use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};

pub async fn agents(State(state): State<AppState>, _: Reader) -> Json<Value> {
    let defaults = state.agents.defaults();
    let agents: Vec<Value> = state
        .agents
        .all()
        .map(|agent| {
            json!({
                "name": agent.name(),
                "provider": agent.provider(),
                "model": agent.model(),
                "persona": agent.persona(),
                "llm": agent.is_llm(),
                "available": agent.available(),
                "default": defaults.iter().any(|d| d == agent.name()),
                "circuit_breaker": agent.breaker().map(|b| b.state()),
            })
        })
        .collect();
    let mut body = json!({"agents": agents, "defaults": defaults});
    if state.agents.defaults_are_offline() {
        body["note"] = json!(
            "debates use the built-in offline agents by default: they are deterministic and not LLMs. \
             Set two or more of ANTHROPIC_API_KEY, OPENAI_API_KEY, GEMINI_API_KEY, XAI_API_KEY, MISTRAL_API_KEY \
             (or ARAGORA_OPENAI_COMPATIBLE_BASE_URL) to debate with real models."
        );
    }
    Json(body)
}

fn breaker_view(state: &AppState, name: &str) -> Option<Value> {
    let agent = state.agents.get(name)?;
    let breaker = agent.breaker()?;
    let mut view = serde_json::to_value(breaker.snapshot()).ok()?;
    view["agent"] = json!(agent.name());
    view["provider"] = json!(agent.provider());
    Some(view)
}

pub async fn breakers(State(state): State<AppState>, _: Admin) -> Result<Json<Value>, ApiError> {
    let views: Vec<Value> = state
        .agents
        .names()
        .filter_map(|name| breaker_view(&state, name))
        .collect();
    Ok(Json(json!({"circuit_breakers": views})))
}

pub async fn reset_breaker(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
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
    Ok(Json(breaker_view(&state, &name).unwrap_or_default()))
}

pub async fn reset_all_breakers(
    State(state): State<AppState>,
    admin: Admin,
) -> Result<Json<Value>, ApiError> {
    for agent in state.agents.all() {
        if let Some(breaker) = agent.breaker() {
            breaker.reset();
        }
    }
    tracing::warn!(by = %admin.0.subject, "all circuit breakers reset");
    breakers(State(state), admin).await
}
