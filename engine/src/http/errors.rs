//! `GET /api/system/errors?limit=` (admins): the most recent errors, newest first.
//!
//! Three sources, merged by time: the shared table of the [`ErrorLog`](crate::error_log::ErrorLog)
//! (failed and timed-out debates, agent errors, failed retention cleanups, dead-lettered
//! webhook deliveries, of every replica: the newest 1000 in the database), this replica's own
//! ring in memory (what it recorded a moment ago, or while the database was away), and the DR
//! log's failed drills. Every replica answers the same, bar its own unwritten errors. Messages are scrubbed of the
//! configuration's secrets when recorded; a drill's are scrubbed here.

use super::access::Admin;
use super::debates::ApiQuery;
use super::AppState;
use crate::error::ApiError;
use crate::error_log::{ErrorEntry, ErrorKind};
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ErrorsQuery {
    /// 1 to ARAGORA_MAX_LIST_LIMIT (default 20).
    #[param(minimum = 1)]
    limit: Option<i64>,
}

/// `GET /api/system/errors`.
#[derive(Serialize, ToSchema)]
pub struct Errors {
    /// Newest first.
    errors: Vec<ErrorEntry>,
    /// Where the errors come from: the database (every replica's), and the DR log.
    scope: &'static str,
}

/// A failed drill as an error: its first failures from the report.
fn drill_error(drill: &crate::dr_log::DrillRecord, secrets: &[String]) -> ErrorEntry {
    let report: serde_json::Value = serde_json::from_str(&drill.report).unwrap_or_default();
    let failures: Vec<String> = report["failures"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|failure| match failure.as_str() {
            Some(text) => text.to_string(),
            None => failure.to_string(),
        })
        .collect();
    let message = if failures.is_empty() {
        format!("DR drill {} failed", drill.id)
    } else {
        format!("DR drill {} failed: {}", drill.id, failures.join("; "))
    };
    ErrorEntry::new(
        ErrorKind::DrillFailed,
        &aragora_config::scrub(&message, secrets),
        drill.finished_at_ms,
    )
}

/// The most recent errors (admins) of every replica: failed debates, agent errors, failed
/// cleanups and dead-lettered webhook deliveries, and failed DR drills from the DR log; each
/// with its time, kind, message and, where it has one, its debate and agent.
#[utoipa::path(get, path = "/system/errors", operation_id = "system_errors", tag = "system",
    security(("bearer" = [])), params(ErrorsQuery),
    responses((status = 200, description = "The errors, newest first.", body = Errors)))]
pub async fn list(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiQuery(query): ApiQuery<ErrorsQuery>,
) -> Result<Json<Errors>, ApiError> {
    let limit = super::limits::list_limit(&state, &caller, query.limit)?;
    // This replica's own (written to the table or not yet, or not at all while the database
    // was away), then every replica's from the table; one entry per error.
    let mut errors = state.errors.recent(limit as usize);
    match state.errors.shared(limit as usize).await {
        Ok(shared) => {
            let mine: std::collections::HashSet<String> =
                errors.iter().map(|e| e.id.clone()).collect();
            errors.extend(shared.into_iter().filter(|e| !mine.contains(&e.id)));
        }
        Err(err) => {
            tracing::warn!(error = %err, "cannot read system_errors for /api/system/errors")
        }
    }
    if let Some(core) = state.core.get() {
        // The drill history is the DR log's; an engine whose database is away still shows
        // its own errors.
        match core.store.drills(limit).await {
            Ok(drills) => {
                let secrets = aragora_config::redact::secret_values(&state.config);
                errors.extend(
                    drills
                        .iter()
                        .filter(|drill| drill.status != "passed")
                        .map(|drill| drill_error(drill, &secrets)),
                );
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot read failed drills for /api/system/errors")
            }
        }
    }
    errors.sort_by_key(|entry| std::cmp::Reverse(entry.at_ms));
    errors.truncate(limit as usize);
    Ok(Json(Errors {
        errors,
        scope: "every replica's recent errors (the database, the newest 1000; and this replica's memory) and failed DR drills (the DR log)",
    }))
}
