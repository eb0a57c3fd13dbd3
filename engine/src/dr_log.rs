//! The disaster-recovery log: backups taken and DR drills run, kept in the primary database
//! (tables `backups` and `drills`) so that `GET /api/drills`, `aragora drill history` and every
//! replica's `/metrics` report the same history, whichever process took the backup or ran the
//! drill. The chaos crate does the work; this module only records and reads it. The table
//! `scheduled_runs` (migration 0007) holds one claim per scheduled job and tick, so no tick of
//! a backup, drill or chaos schedule runs twice, whichever process believes it leads.
//!
//! The queries take the store's pool and answer in `sqlx::Error`, which the store's own error
//! wraps: the store calls this module, never the other way round.

use serde::Serialize;
use sqlx::{AnyPool, Row};

/// One backup that completed (its artifact and manifest are on disk).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackupRecord {
    pub id: String,
    pub created_at_ms: i64,
    pub backend: String,
    pub bytes: i64,
    pub sha256: String,
}

/// One DR drill, passed or failed. `report` is the drill's full JSON report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DrillRecord {
    pub id: String,
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
    /// `passed` or `failed`.
    pub status: String,
    pub backup_id: Option<String>,
    pub rto_seconds: Option<f64>,
    pub rpo_seconds: Option<f64>,
    pub rto_target_seconds: f64,
    pub rpo_target_seconds: f64,
    pub report: String,
}

/// What the DR metrics show: the latest successes and the latest drill's measurements.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DrStatus {
    pub last_backup_ms: Option<i64>,
    pub last_drill_success_ms: Option<i64>,
    pub last_drill_failure_ms: Option<i64>,
    pub last_drill_rto_seconds: Option<f64>,
    pub last_drill_rpo_seconds: Option<f64>,
}

pub async fn record_backup(pool: &AnyPool, backup: &BackupRecord) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO backups (id, created_at_ms, backend, bytes, sha256) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&backup.id)
    .bind(backup.created_at_ms)
    .bind(&backup.backend)
    .bind(backup.bytes)
    .bind(&backup.sha256)
    .execute(pool)
    .await?;
    Ok(())
}

/// Records a drill on `conn` (the store's transaction, which also writes its webhooks).
pub async fn record_drill(
    conn: &mut sqlx::AnyConnection,
    drill: &DrillRecord,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO drills (id, started_at_ms, finished_at_ms, status, backup_id, rto_seconds, \
         rpo_seconds, rto_target_seconds, rpo_target_seconds, report) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(&drill.id)
    .bind(drill.started_at_ms)
    .bind(drill.finished_at_ms)
    .bind(&drill.status)
    .bind(drill.backup_id.as_deref())
    .bind(drill.rto_seconds)
    .bind(drill.rpo_seconds)
    .bind(drill.rto_target_seconds)
    .bind(drill.rpo_target_seconds)
    .bind(&drill.report)
    .execute(conn)
    .await?;
    Ok(())
}

/// The newest `limit` drills, newest first.
pub async fn drills(pool: &AnyPool, limit: i64) -> Result<Vec<DrillRecord>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, started_at_ms, finished_at_ms, status, backup_id, rto_seconds, rpo_seconds, \
         rto_target_seconds, rpo_target_seconds, report FROM drills \
         ORDER BY started_at_ms DESC, id DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(DrillRecord {
                id: row.try_get("id")?,
                started_at_ms: row.try_get("started_at_ms")?,
                finished_at_ms: row.try_get("finished_at_ms")?,
                status: row.try_get("status")?,
                backup_id: row.try_get("backup_id")?,
                rto_seconds: row.try_get("rto_seconds")?,
                rpo_seconds: row.try_get("rpo_seconds")?,
                rto_target_seconds: row.try_get("rto_target_seconds")?,
                rpo_target_seconds: row.try_get("rpo_target_seconds")?,
                report: row.try_get("report")?,
            })
        })
        .collect()
}

pub async fn status(pool: &AnyPool) -> Result<DrStatus, sqlx::Error> {
    let last_backup_ms: Option<i64> = sqlx::query("SELECT MAX(created_at_ms) AS last FROM backups")
        .fetch_one(pool)
        .await?
        .try_get("last")?;
    let last_drill_success_ms: Option<i64> =
        sqlx::query("SELECT MAX(finished_at_ms) AS last FROM drills WHERE status = 'passed'")
            .fetch_one(pool)
            .await?
            .try_get("last")?;
    let last_drill_failure_ms: Option<i64> =
        sqlx::query("SELECT MAX(finished_at_ms) AS last FROM drills WHERE status <> 'passed'")
            .fetch_one(pool)
            .await?
            .try_get("last")?;
    let latest = drills(pool, 1).await?.into_iter().next();
    Ok(DrStatus {
        last_backup_ms,
        last_drill_success_ms,
        last_drill_failure_ms,
        last_drill_rto_seconds: latest.as_ref().and_then(|d| d.rto_seconds),
        last_drill_rpo_seconds: latest.and_then(|d| d.rpo_seconds),
    })
}

/// How long claims of scheduled runs are kept (each claim prunes its job's older ones).
const SCHEDULED_RUNS_KEPT_MS: i64 = 30 * 24 * 3600 * 1000;

/// Claims the run of `job` scheduled for `scheduled_for_ms` for `holder` (table
/// `scheduled_runs`, migration 0007): true when this call inserted the claim, false when the
/// tick was claimed already (by anyone, this process included), so it must not run again.
/// Claims older than 30 days of the same job are deleted on the way.
pub async fn claim_scheduled_run(
    pool: &AnyPool,
    job: &str,
    scheduled_for_ms: i64,
    holder: &str,
    now_ms: i64,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO scheduled_runs (job, scheduled_for_ms, holder, started_at_ms) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (job, scheduled_for_ms) DO NOTHING",
    )
    .bind(job)
    .bind(scheduled_for_ms)
    .bind(holder)
    .bind(now_ms)
    .execute(pool)
    .await?
    .rows_affected();
    sqlx::query("DELETE FROM scheduled_runs WHERE job = $1 AND scheduled_for_ms < $2")
        .bind(job)
        .bind(scheduled_for_ms - SCHEDULED_RUNS_KEPT_MS)
        .execute(pool)
        .await?;
    Ok(inserted == 1)
}

/// Notes that the claimed run of `job` at `scheduled_for_ms` ended (whatever its outcome: the
/// backup and drill tables say that).
pub async fn finish_scheduled_run(
    pool: &AnyPool,
    job: &str,
    scheduled_for_ms: i64,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE scheduled_runs SET finished_at_ms = $3 WHERE job = $1 AND scheduled_for_ms = $2",
    )
    .bind(job)
    .bind(scheduled_for_ms)
    .bind(now_ms)
    .execute(pool)
    .await?;
    Ok(())
}

/// Who claimed the run of `job` at `scheduled_for_ms`, if anyone.
pub async fn scheduled_run_holder(
    pool: &AnyPool,
    job: &str,
    scheduled_for_ms: i64,
) -> Result<Option<String>, sqlx::Error> {
    let row =
        sqlx::query("SELECT holder FROM scheduled_runs WHERE job = $1 AND scheduled_for_ms = $2")
            .bind(job)
            .bind(scheduled_for_ms)
            .fetch_optional(pool)
            .await?;
    row.map(|row| row.try_get("holder")).transpose()
}
