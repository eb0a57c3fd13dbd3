//! The runbooks' Receipt Retention Scheduler on the admin API (admins):
//! `GET /api/admin/schedulers/receipt-retention/status` (settings, next run, the run in
//! progress, the last run, totals) and `POST /api/admin/schedulers/receipt-retention/cleanup`
//! (a cleanup now; `?dry_run=true` or `{"dry_run": true}` counts what it would delete and
//! deletes nothing). What is deleted, and how replicas keep to one cleanup at a time, is in
//! [`crate::retention`].
//!
//! The query and the body refuse unknown fields: a misspelt `dry_run` must not become a real
//! cleanup.

use super::access::Admin;
use super::body::{read_optional, ApiBytes};
use super::debates::ApiQuery;
use super::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::model::{format_ms, now_ms};
use crate::retention::{Counts, Cutoffs, RetentionError, RunRecord, Trigger};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// The settings in force on this replica.
#[derive(Serialize, ToSchema)]
pub struct RetentionSettings {
    /// ARAGORA_RECEIPT_RETENTION_DAYS (0: receipts kept forever).
    retention_days: u32,
    /// ARAGORA_DEBATE_RETENTION_DAYS (0: finished debates kept forever).
    debate_retention_days: u32,
    /// ARAGORA_RECEIPT_CLEANUP_INTERVAL_HOURS.
    interval_hours: f64,
    /// ARAGORA_RETENTION_BATCH_SIZE: rows per statement.
    batch_size: u32,
    /// ARAGORA_WEBHOOK_DELIVERY_RETENTION_DAYS (0: finished deliveries kept forever).
    webhook_delivery_retention_days: u32,
}

/// One cleanup, as recorded.
#[derive(Serialize, ToSchema)]
pub struct RetentionRun {
    id: String,
    /// `scheduled` or `manual`.
    trigger: String,
    /// The replica that ran it.
    holder: String,
    /// `running`, `succeeded`, `failed` or `abandoned` (its replica stopped mid-run).
    status: String,
    started_at: String,
    finished_at: Option<String>,
    duration_seconds: Option<f64>,
    receipts_deleted: i64,
    debates_deleted: i64,
    events_deleted: i64,
    /// Finished webhook deliveries (delivered or dead).
    deliveries_deleted: i64,
    /// Receipts issued before this were past retention (null: kept forever).
    receipts_before: Option<String>,
    /// Finished debates that ended before this were past retention (null: kept forever).
    debates_before: Option<String>,
    /// Finished webhook deliveries last changed before this were past retention (null: kept
    /// forever).
    deliveries_before: Option<String>,
    error: Option<String>,
}

impl From<RunRecord> for RetentionRun {
    fn from(run: RunRecord) -> Self {
        Self {
            duration_seconds: run
                .finished_at_ms
                .map(|end| (end - run.started_at_ms).max(0) as f64 / 1000.0),
            id: run.id,
            trigger: run.trigger,
            holder: run.holder,
            status: run.status,
            started_at: format_ms(run.started_at_ms),
            finished_at: run.finished_at_ms.map(format_ms),
            receipts_deleted: run.deleted.receipts,
            debates_deleted: run.deleted.debates,
            events_deleted: run.deleted.events,
            deliveries_deleted: run.deleted.deliveries,
            receipts_before: run.cutoffs.receipts_before_ms.map(format_ms),
            debates_before: run.cutoffs.debates_before_ms.map(format_ms),
            deliveries_before: run.cutoffs.deliveries_before_ms.map(format_ms),
            error: run.error,
        }
    }
}

/// Totals over the kept runs (the newest 1000).
#[derive(Serialize, ToSchema)]
pub struct RetentionStats {
    total_runs: i64,
    total_receipts_deleted: i64,
    total_debates_deleted: i64,
    total_events_deleted: i64,
    total_deliveries_deleted: i64,
    /// Runs that did not succeed (failed or abandoned).
    failures: i64,
    /// Succeeded over all runs; 1.0 before the first.
    success_rate: f64,
}

/// `GET /api/admin/schedulers/receipt-retention/status`.
#[derive(Serialize, ToSchema)]
pub struct RetentionStatus {
    /// Whether this replica's scheduler runs (false when every retention is 0).
    running: bool,
    interval_hours: f64,
    retention_days: u32,
    debate_retention_days: u32,
    batch_size: u32,
    settings: RetentionSettings,
    /// When this replica's scheduler wakes next (one replica runs each tick).
    next_run_at: Option<String>,
    /// A cleanup going on now, on any replica.
    in_progress: Option<RetentionRun>,
    /// The newest finished cleanup, of any replica.
    last_run: Option<RetentionRun>,
    stats: RetentionStats,
}

fn settings(state: &AppState) -> RetentionSettings {
    let config = &state.config;
    RetentionSettings {
        retention_days: config.receipt_retention_days,
        debate_retention_days: config.debate_retention_days,
        interval_hours: config.receipt_cleanup_interval_hours,
        batch_size: config.retention_batch_size,
        webhook_delivery_retention_days: config.webhook_delivery_retention_days,
    }
}

fn refusal(err: RetentionError) -> ApiError {
    match err {
        RetentionError::Busy { .. } => {
            ApiError::new(StatusCode::CONFLICT, "cleanup_running", err.to_string())
        }
        RetentionError::Unavailable(_) => ApiError::unavailable(err.to_string(), 5),
        other => ApiError::internal("the retention cleanup failed", other),
    }
}

/// The Receipt Retention Scheduler's settings, schedule, runs and totals (admins).
#[utoipa::path(get, path = "/admin/schedulers/receipt-retention/status",
    operation_id = "receipt_retention_status", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "The scheduler.", body = RetentionStatus)))]
pub async fn status(
    State(state): State<AppState>,
    _: Admin,
) -> Result<Json<RetentionStatus>, ApiError> {
    let retention = &state.core()?.retention;
    let history = retention.history().await.map_err(refusal)?;
    let policy = retention.policy();
    let finished = history.total_runs;
    let stats = RetentionStats {
        total_runs: finished,
        total_receipts_deleted: history.deleted.receipts,
        total_debates_deleted: history.deleted.debates,
        total_events_deleted: history.deleted.events,
        total_deliveries_deleted: history.deleted.deliveries,
        failures: history.failures,
        success_rate: if finished == 0 {
            1.0
        } else {
            (finished - history.failures) as f64 / finished as f64
        },
    };
    let config = settings(&state);
    Ok(Json(RetentionStatus {
        running: policy.enabled(),
        interval_hours: config.interval_hours,
        retention_days: config.retention_days,
        debate_retention_days: config.debate_retention_days,
        batch_size: config.batch_size,
        settings: config,
        next_run_at: retention.next_run_ms(now_ms()).map(format_ms),
        in_progress: history.in_progress.map(RetentionRun::from),
        last_run: history.last.map(RetentionRun::from),
        stats,
    }))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CleanupQuery {
    /// true: count what a cleanup would delete, delete nothing.
    dry_run: Option<bool>,
}

/// The optional body of the cleanup.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CleanupBody {
    /// true: count what a cleanup would delete, delete nothing.
    dry_run: Option<bool>,
}

/// What a cleanup deleted, or a dry run would.
#[derive(Serialize, ToSchema)]
pub struct RetentionCleanup {
    dry_run: bool,
    /// For a dry run, what a cleanup now would delete.
    receipts_deleted: i64,
    debates_deleted: i64,
    events_deleted: i64,
    /// Finished webhook deliveries.
    deliveries_deleted: i64,
    receipts_before: Option<String>,
    debates_before: Option<String>,
    deliveries_before: Option<String>,
    /// The run as recorded (null for a dry run).
    run: Option<RetentionRun>,
}

/// Whether the call asks for a dry run: the query's `dry_run`, or the optional body's; both
/// given and different is a 422.
fn dry_run(query: &CleanupQuery, body: &[u8]) -> Result<bool, ApiError> {
    const SHAPE: &str = r#"send {"dry_run": true}, {"dry_run": false} or no body"#;
    let from_body = read_optional::<CleanupBody>(body, SHAPE)?.dry_run;
    match (query.dry_run, from_body) {
        (Some(a), Some(b)) if a != b => Err(ApiError::invalid(format!(
            "dry_run is {a} in the query but {b} in the body; give it once"
        ))),
        (a, b) => Ok(a.or(b).unwrap_or(false)),
    }
}

fn cleanup_of(
    dry_run: bool,
    counts: Counts,
    cutoffs: Cutoffs,
    run: Option<RetentionRun>,
) -> RetentionCleanup {
    RetentionCleanup {
        dry_run,
        receipts_deleted: counts.receipts,
        debates_deleted: counts.debates,
        events_deleted: counts.events,
        deliveries_deleted: counts.deliveries,
        receipts_before: cutoffs.receipts_before_ms.map(format_ms),
        debates_before: cutoffs.debates_before_ms.map(format_ms),
        deliveries_before: cutoffs.deliveries_before_ms.map(format_ms),
        run,
    }
}

/// Runs a cleanup now, or with `dry_run` counts what it would delete (admins). 409 while
/// another cleanup runs, on any replica.
#[utoipa::path(post, path = "/admin/schedulers/receipt-retention/cleanup",
    operation_id = "receipt_retention_cleanup", tag = "admin", security(("bearer" = [])),
    params(CleanupQuery),
    request_body(content = Option<CleanupBody>, description = "Optional: no body is a real cleanup."),
    responses(
        (status = 200, description = "Deleted (or, for a dry run, would delete).", body = RetentionCleanup),
        (status = 409, description = "Another cleanup is running.", body = ErrorBody),
    ))]
pub async fn cleanup(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ApiQuery(query): ApiQuery<CleanupQuery>,
    ApiBytes(body): ApiBytes,
) -> Result<Json<RetentionCleanup>, ApiError> {
    let dry = dry_run(&query, &body)?;
    let retention = state.core()?.retention.clone();
    if dry {
        let (counts, cutoffs) = retention.dry_run().await.map_err(refusal)?;
        return Ok(Json(cleanup_of(true, counts, cutoffs, None)));
    }
    tracing::warn!(by = %admin.subject, "retention cleanup requested");
    // Its own task: a client that hangs up does not stop a cleanup half-way.
    let run = tokio::spawn(async move { retention.run(Trigger::Manual).await })
        .await
        .map_err(|err| ApiError::internal("the retention cleanup stopped", err))?
        .map_err(refusal)?;
    Ok(Json(cleanup_of(
        false,
        run.deleted,
        run.cutoffs,
        Some(RetentionRun::from(run)),
    )))
}
