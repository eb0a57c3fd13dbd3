//! `GET /api/auth/me/usage` (any credential): the token usage of the caller's own debates (those
//! its credential's subject created), per provider, from [`crate::usage`].

use super::access::Caller;
use super::debates::ApiQuery;
use super::AppState;
use crate::error::ApiError;
use crate::model::format_ms;
use crate::usage::ProviderUsage;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Debates listed when the query names no `limit` (or ARAGORA_MAX_LIST_LIMIT when smaller).
const DEFAULT_DEBATES: i64 = 50;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// Newest debates to list, 1 to ARAGORA_MAX_LIST_LIMIT (default 50).
    #[param(minimum = 1)]
    limit: Option<i64>,
}

/// One of the caller's debates and what its calls cost.
#[derive(Serialize, ToSchema)]
pub struct DebateUsageView {
    id: String,
    topic: String,
    status: String,
    /// RFC 3339.
    created_at: String,
    /// Per provider; empty when only offline agents spoke (they cost nothing).
    usage: Vec<ProviderUsage>,
}

/// `GET /api/auth/me/usage`.
#[derive(Serialize, ToSchema)]
pub struct MyUsage {
    /// The caller's newest debates, newest first.
    debates: Vec<DebateUsageView>,
    /// Per provider over every debate the caller created (not only those listed).
    totals: Vec<ProviderUsage>,
}

/// The token usage of the caller's own debates, per provider, as the providers counted it
/// (any credential; a debate is the caller's when its credential's subject created it).
#[utoipa::path(get, path = "/auth/me/usage", operation_id = "my_usage", tag = "auth",
    security(("bearer" = [])), params(UsageQuery),
    responses((status = 200, description = "The caller's debates and their usage.", body = MyUsage)))]
pub async fn mine(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiQuery(query): ApiQuery<UsageQuery>,
) -> Result<Json<MyUsage>, ApiError> {
    let default = DEFAULT_DEBATES.min(i64::from(state.config.max_list_limit));
    let limit = super::limits::list_limit(&state, &caller, Some(query.limit.unwrap_or(default)))?;
    let core = state.core()?;
    let (debates, totals) = core
        .store
        .usage_of_creator(&caller.subject, limit)
        .await
        .map_err(|err| ApiError::internal("could not read the token usage", err))?;
    let debates = debates
        .into_iter()
        .map(|debate| DebateUsageView {
            id: debate.id,
            topic: debate.topic,
            status: debate.status,
            created_at: format_ms(debate.created_at_ms),
            usage: debate.usage,
        })
        .collect();
    Ok(Json(MyUsage { debates, totals }))
}
