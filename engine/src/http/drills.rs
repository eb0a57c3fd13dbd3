//! `GET /api/drills`: the DR drill history from the DR log, newest first.

use super::access::Reader;
use super::debates::ApiQuery;
use super::AppState;
use crate::dr_log::DrillRecord;
use crate::error::ApiError;
use crate::model::format_ms;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DrillQuery {
    /// 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
}

/// `GET /api/drills`.
#[derive(Serialize, ToSchema)]
pub struct Drills {
    /// Newest first; each drill's `report` is the drill's own JSON report.
    #[schema(value_type = Vec<Object>)]
    drills: Vec<Value>,
}

/// A drill as the API shows it: timestamps in RFC 3339, the report as JSON.
pub fn drill_json(drill: &DrillRecord) -> Value {
    json!({
        "id": drill.id,
        "status": drill.status,
        "started_at": format_ms(drill.started_at_ms),
        "finished_at": format_ms(drill.finished_at_ms),
        "backup_id": drill.backup_id,
        "rto_seconds": drill.rto_seconds,
        "rpo_seconds": drill.rpo_seconds,
        "rto_target_seconds": drill.rto_target_seconds,
        "rpo_target_seconds": drill.rpo_target_seconds,
        "report": serde_json::from_str::<Value>(&drill.report).unwrap_or(Value::Null),
    })
}

/// The DR drill history, newest first (readers).
#[utoipa::path(get, path = "/drills", operation_id = "drills", tag = "drills",
    security(("bearer" = [])), params(DrillQuery),
    responses((status = 200, description = "The drills.", body = Drills)))]
pub async fn list(
    State(state): State<AppState>,
    Reader(caller): Reader,
    ApiQuery(query): ApiQuery<DrillQuery>,
) -> Result<Json<Drills>, ApiError> {
    let core = state.core()?;
    let limit = super::limits::list_limit(&state, &caller, query.limit)?;
    let drills = core
        .store
        .drills(limit)
        .await
        .map_err(|err| ApiError::internal("could not read the drill history", err))?;
    let drills: Vec<Value> = drills.iter().map(drill_json).collect();
    Ok(Json(Drills { drills }))
}
