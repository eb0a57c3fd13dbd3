//! `GET /api/drills`: the DR drill history from the DR log, newest first.

use super::access::Reader;
use super::debates::ApiQuery;
use super::AppState;
use crate::dr_log::DrillRecord;
use crate::error::ApiError;
use crate::model::format_ms;
use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
pub struct DrillQuery {
    limit: Option<i64>,
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

pub async fn list(
    State(state): State<AppState>,
    Reader(caller): Reader,
    ApiQuery(query): ApiQuery<DrillQuery>,
) -> Result<Json<Value>, ApiError> {
    let core = state.core()?;
    let limit = super::limits::list_limit(&state, &caller, query.limit)?;
    let drills = core
        .store
        .drills(limit)
        .await
        .map_err(|err| ApiError::internal("could not read the drill history", err))?;
    let drills: Vec<Value> = drills.iter().map(drill_json).collect();
    Ok(Json(json!({ "drills": drills })))
}
