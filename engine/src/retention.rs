//! Retention of receipts and finished debates: the runbooks' Receipt Retention Scheduler.
//!
//! Receipts older than `ARAGORA_RECEIPT_RETENTION_DAYS` (by `issued_at_ms`) are deleted, and,
//! with `ARAGORA_DEBATE_RETENTION_DAYS`, finished debates (by `finished_at_ms`) with their
//! events once they have no receipt left: a debate's receipt outlives it never, and a receipt
//! still inside its own retention keeps its debate (deleting the debate would take the receipt
//! with it, through the foreign key). Finished webhook deliveries (delivered or dead, whose
//! bodies hold debate content) last changed before `ARAGORA_WEBHOOK_DELIVERY_RETENTION_DAYS`
//! go too; pending ones never.
//!
//! Deletions go in batches of `ARAGORA_RETENTION_BATCH_SIZE` rows, each statement (a debate
//! group: its events, then the debates, in one transaction) its own short transaction, so no
//! lock is held for long on either backend and debates keep being written meanwhile.
//!
//! One cleanup at a time across replicas: a run first takes the lease row (migration 0008,
//! `retention_lease`, one conditional UPDATE), renews it before every batch and stops if it was
//! lost; a scheduled tick is also claimed in `scheduled_runs` (keyed by job and tick, as the DR
//! schedules are), so of replicas that wake for the same tick one runs it. Ticks are multiples
//! of `ARAGORA_RECEIPT_CLEANUP_INTERVAL_HOURS` since the Unix epoch, the same on every
//! replica. Each run is a row of `retention_runs` (the newest [`RUNS_KEPT`] are kept), which
//! the status endpoint reads, so every replica reports the same history.

use crate::config::EngineConfig;
use crate::error_log::{ErrorKind, ErrorLog};
use crate::faults::Faults;
use crate::metrics::EngineMetrics;
use crate::model::now_ms;
use serde::Serialize;
use sqlx::{AnyPool, Row};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The job's name in `scheduled_runs`, in logs and in the API's paths.
pub const JOB: &str = "receipt-retention";
/// How long a run's hold on the lease lasts unless renewed (it is renewed before every batch,
/// so only a replica that died or froze mid-run lets it lapse).
const LEASE_MS: i64 = 30_000;
/// Runs kept in `retention_runs`: years of daily runs.
pub const RUNS_KEPT: i64 = 1000;
const MS_PER_DAY: i64 = 86_400_000;
/// A webhook delivery past retention: finished (delivered or dead) and last changed before
/// `$1`.
const FINISHED_DELIVERY: &str = "state IN ('delivered', 'dead') AND updated_at_ms < $1";
/// The statuses a debate ends in; only these are ever deleted.
const FINAL: &str = "('completed', 'failed', 'cancelled', 'timed_out')";

/// What the settings ask for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// 0: receipts are kept forever.
    pub receipt_retention_days: u32,
    /// 0: finished debates are kept forever.
    pub debate_retention_days: u32,
    pub interval_hours: f64,
    pub batch_size: u32,
    /// 0: finished webhook deliveries are kept forever.
    pub delivery_retention_days: u32,
}

impl Policy {
    pub fn of(config: &EngineConfig) -> Self {
        Self {
            receipt_retention_days: config.receipt_retention_days,
            debate_retention_days: config.debate_retention_days,
            interval_hours: config.receipt_cleanup_interval_hours,
            batch_size: config.retention_batch_size,
            delivery_retention_days: config.webhook_delivery_retention_days,
        }
    }

    /// Whether there is anything to delete ever (else the scheduler does not run).
    pub fn enabled(&self) -> bool {
        self.receipt_retention_days > 0
            || self.debate_retention_days > 0
            || self.delivery_retention_days > 0
    }

    pub fn interval_ms(&self) -> i64 {
        ((self.interval_hours * 3_600_000.0).round() as i64).max(1)
    }

    /// The scheduled tick at or before `now_ms`.
    pub fn tick_at_or_before(&self, now_ms: i64) -> i64 {
        now_ms - now_ms.rem_euclid(self.interval_ms())
    }

    /// What is old at `now_ms`.
    pub fn cutoffs(&self, now_ms: i64) -> Cutoffs {
        let before = |days: u32| (days > 0).then(|| now_ms - i64::from(days) * MS_PER_DAY);
        Cutoffs {
            receipts_before_ms: before(self.receipt_retention_days),
            debates_before_ms: before(self.debate_retention_days),
            deliveries_before_ms: before(self.delivery_retention_days),
        }
    }
}

/// Rows older than these are past retention (`None`: kept forever).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cutoffs {
    pub receipts_before_ms: Option<i64>,
    pub debates_before_ms: Option<i64>,
    /// Finished webhook deliveries last changed before this.
    pub deliveries_before_ms: Option<i64>,
}

impl Cutoffs {
    /// The receipt cutoff as a bound: a receipt issued at or after it is kept.
    fn receipt_bound(&self) -> i64 {
        self.receipts_before_ms.unwrap_or(i64::MIN)
    }
}

/// Rows deleted by a run, or that a dry run would delete.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Counts {
    pub receipts: i64,
    pub debates: i64,
    pub events: i64,
    /// Finished webhook deliveries.
    pub deliveries: i64,
}

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Scheduled,
    Manual,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Manual => "manual",
        }
    }
}

/// A run as `retention_runs` keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    pub id: String,
    pub holder: String,
    pub trigger: String,
    pub started_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    /// `running`, `succeeded`, `failed`, or `abandoned` (its replica stopped mid-run).
    pub status: String,
    pub deleted: Counts,
    pub cutoffs: Cutoffs,
    pub error: Option<String>,
}

/// The history the status endpoint shows: totals over the kept runs, the newest run, and the
/// run holding the lease now.
#[derive(Debug, Clone, PartialEq)]
pub struct History {
    pub last: Option<RunRecord>,
    pub in_progress: Option<RunRecord>,
    pub total_runs: i64,
    pub failures: i64,
    pub deleted: Counts,
}

#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    /// Another run holds the lease.
    #[error("a cleanup is already running (run {run_id} on replica {holder}); wait for it to finish, GET /api/admin/schedulers/receipt-retention/status shows it")]
    Busy { holder: String, run_id: String },
    /// The lease lapsed mid-run (this replica stalled past it) and another run may have taken
    /// it: this one stopped before its next batch.
    #[error("the cleanup lost its lease (it stalled longer than {} s) and stopped; what it deleted before stays deleted", LEASE_MS / 1000)]
    LeaseLost,
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The database's schema predates migration 0008.
    #[error("the retention tables are missing (run `aragora migrate up`): {0}")]
    Schema(String),
}

/// The scheduler and the cleanup: one per engine, cheap to clone.
#[derive(Clone)]
pub struct Retention {
    inner: Arc<Inner>,
}

struct Inner {
    pool: AnyPool,
    policy: Policy,
    /// This replica (the orchestrator's lease owner id): who holds the lease.
    holder: String,
    metrics: EngineMetrics,
    faults: Faults,
    errors: ErrorLog,
}

impl Retention {
    /// The retention of `store`'s database (its own pool: the tables are this module's).
    pub fn new(
        store: &crate::store::SqlStore,
        policy: Policy,
        holder: &str,
        metrics: EngineMetrics,
        faults: Faults,
        errors: ErrorLog,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                pool: store.pool().clone(),
                policy,
                holder: holder.to_string(),
                metrics,
                faults,
                errors,
            }),
        }
    }

    pub fn policy(&self) -> Policy {
        self.inner.policy
    }

    /// When this replica's scheduler wakes next (`None`: retention is off).
    pub fn next_run_ms(&self, now_ms: i64) -> Option<i64> {
        let policy = self.inner.policy;
        policy
            .enabled()
            .then(|| policy.tick_at_or_before(now_ms) + policy.interval_ms())
    }

    /// Starts the scheduler (nothing when retention is off): at every tick, claim it and run.
    pub fn start(&self) {
        if !self.inner.policy.enabled() {
            tracing::info!("receipt, debate and webhook delivery retention are off (all 0 days): no cleanup runs");
            return;
        }
        let retention = self.clone();
        tokio::spawn(async move {
            loop {
                let now = now_ms();
                let Some(next) = retention.next_run_ms(now) else {
                    return;
                };
                tokio::time::sleep(Duration::from_millis((next - now).max(0) as u64)).await;
                retention.scheduled_tick(next).await;
            }
        });
    }

    async fn scheduled_tick(&self, tick_ms: i64) {
        let inner = &self.inner;
        match crate::dr_log::claim_scheduled_run(&inner.pool, JOB, tick_ms, &inner.holder, now_ms())
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!(
                    job = JOB,
                    tick_ms,
                    "tick claimed by another replica; skipped"
                );
                return;
            }
            Err(err) => {
                tracing::warn!(job = JOB, tick_ms, error = %err, "cannot claim the retention tick; the lease alone keeps the cleanup single");
            }
        }
        match self.run(Trigger::Scheduled).await {
            Ok(_) => {}
            Err(RetentionError::Busy { holder, run_id }) => {
                tracing::info!(job = JOB, %holder, %run_id, "a cleanup is running already; tick skipped");
            }
            // Logged, counted and recorded by `run`.
            Err(_) => {}
        }
        if let Err(err) =
            crate::dr_log::finish_scheduled_run(&inner.pool, JOB, tick_ms, now_ms()).await
        {
            tracing::warn!(job = JOB, error = %err, "cannot mark the retention tick finished");
        }
    }

    fn gate(&self) -> Result<(), RetentionError> {
        match self.inner.faults.database_unavailable() {
            Some(fault) => Err(RetentionError::Unavailable(fault)),
            None => Ok(()),
        }
    }

    /// What a cleanup now would delete, deleting nothing.
    pub async fn dry_run(&self) -> Result<(Counts, Cutoffs), RetentionError> {
        self.gate()?;
        let cutoffs = self.inner.policy.cutoffs(now_ms());
        let pool = &self.inner.pool;
        let receipts = match cutoffs.receipts_before_ms {
            Some(before) => {
                sqlx::query("SELECT COUNT(*) AS n FROM receipts WHERE issued_at_ms < $1")
                    .bind(before)
                    .fetch_one(pool)
                    .await?
                    .try_get("n")?
            }
            None => 0,
        };
        let (debates, events) = match cutoffs.debates_before_ms {
            Some(before) => {
                let debates: i64 = sqlx::query(&format!(
                    "SELECT COUNT(*) AS n FROM debates d WHERE {}",
                    expired_debate(1, 2)
                ))
                .bind(before)
                .bind(cutoffs.receipt_bound())
                .fetch_one(pool)
                .await?
                .try_get("n")?;
                let events: i64 = sqlx::query(&format!(
                    "SELECT COUNT(*) AS n FROM debate_events WHERE debate_id IN \
                     (SELECT d.id FROM debates d WHERE {})",
                    expired_debate(1, 2)
                ))
                .bind(before)
                .bind(cutoffs.receipt_bound())
                .fetch_one(pool)
                .await?
                .try_get("n")?;
                (debates, events)
            }
            None => (0, 0),
        };
        let deliveries = match cutoffs.deliveries_before_ms {
            Some(before) => sqlx::query(&format!(
                "SELECT COUNT(*) AS n FROM webhook_deliveries WHERE {FINISHED_DELIVERY}"
            ))
            .bind(before)
            .fetch_one(pool)
            .await?
            .try_get("n")?,
            None => 0,
        };
        Ok((
            Counts {
                receipts,
                debates,
                events,
                deliveries,
            },
            cutoffs,
        ))
    }

    /// One cleanup: takes the lease, deletes in batches, records the run. Counted in the
    /// metrics, logged, and a failure goes to the error log.
    pub async fn run(&self, trigger: Trigger) -> Result<RunRecord, RetentionError> {
        self.gate()?;
        let inner = &self.inner;
        let started = Instant::now();
        let run_id = uuid::Uuid::new_v4().to_string();
        let started_at_ms = now_ms();
        let cutoffs = inner.policy.cutoffs(started_at_ms);
        self.acquire(&run_id, trigger, started_at_ms, cutoffs)
            .await?;
        tracing::info!(job = JOB, run = %run_id, trigger = trigger.as_str(), receipts_before_ms = ?cutoffs.receipts_before_ms, debates_before_ms = ?cutoffs.debates_before_ms, deliveries_before_ms = ?cutoffs.deliveries_before_ms, "retention cleanup starts");
        let mut deleted = Counts::default();
        let result = self.delete_all(&run_id, cutoffs, &mut deleted).await;
        let seconds = started.elapsed().as_secs_f64();
        let (status, error) = match &result {
            Ok(()) => ("succeeded", None),
            Err(err) => ("failed", Some(err.to_string())),
        };
        let record = RunRecord {
            id: run_id.clone(),
            holder: inner.holder.clone(),
            trigger: trigger.as_str().into(),
            started_at_ms,
            finished_at_ms: Some(now_ms()),
            status: status.into(),
            deleted,
            cutoffs,
            error: error.clone(),
        };
        if let Err(err) = self.finish(&record).await {
            tracing::warn!(job = JOB, run = %run_id, error = %err, "cannot record the end of the cleanup; its lease lapses by itself");
        }
        let metrics = &inner.metrics;
        metrics.receipts_deleted.inc_by(deleted.receipts as u64);
        metrics.debates_deleted.inc_by(deleted.debates as u64);
        metrics
            .webhooks
            .deliveries_deleted
            .inc_by(deleted.deliveries as u64);
        metrics
            .receipt_cleanup
            .with_label_values(&[if result.is_ok() { "success" } else { "failure" }])
            .inc();
        metrics
            .receipt_cleanup_duration
            .with_label_values::<&str>(&[])
            .observe(seconds);
        match result {
            Ok(()) => {
                tracing::info!(job = JOB, run = %run_id, receipts = deleted.receipts, debates = deleted.debates, events = deleted.events, deliveries = deleted.deliveries, seconds, "retention cleanup done");
                Ok(record)
            }
            Err(err) => {
                tracing::error!(job = JOB, run = %run_id, error = %err, receipts = deleted.receipts, debates = deleted.debates, "retention cleanup failed");
                inner.errors.record(
                    ErrorKind::RetentionFailed,
                    &format!("retention cleanup {run_id} failed: {err}"),
                );
                Err(err)
            }
        }
    }

    async fn acquire(
        &self,
        run_id: &str,
        trigger: Trigger,
        now: i64,
        cutoffs: Cutoffs,
    ) -> Result<(), RetentionError> {
        let pool = &self.inner.pool;
        let holder = &self.inner.holder;
        let taken = sqlx::query(
            "UPDATE retention_lease SET holder = $1, run_id = $2, expires_at_ms = $3 \
             WHERE id = 1 AND (holder IS NULL OR expires_at_ms < $4)",
        )
        .bind(holder)
        .bind(run_id)
        .bind(now + LEASE_MS)
        .bind(now)
        .execute(pool)
        .await
        .map_err(schema_or_database)?
        .rows_affected();
        if taken == 0 {
            let row = sqlx::query("SELECT holder, run_id FROM retention_lease WHERE id = 1")
                .fetch_one(pool)
                .await?;
            return Err(RetentionError::Busy {
                holder: row
                    .try_get::<Option<String>, _>("holder")?
                    .unwrap_or_default(),
                run_id: row
                    .try_get::<Option<String>, _>("run_id")?
                    .unwrap_or_default(),
            });
        }
        // Holding the lease, no other run is going: one left `running` died with its replica.
        sqlx::query(
            "UPDATE retention_runs SET status = 'abandoned', finished_at_ms = $1 \
             WHERE status = 'running'",
        )
        .bind(now)
        .execute(pool)
        .await?;
        sqlx::query(
            "INSERT INTO retention_runs (id, holder, triggered_by, started_at_ms, status, \
             receipts_before_ms, debates_before_ms, deliveries_before_ms) \
             VALUES ($1, $2, $3, $4, 'running', $5, $6, $7)",
        )
        .bind(run_id)
        .bind(holder)
        .bind(trigger.as_str())
        .bind(now)
        .bind(cutoffs.receipts_before_ms)
        .bind(cutoffs.debates_before_ms)
        .bind(cutoffs.deliveries_before_ms)
        .execute(pool)
        .await?;
        Ok(())
    }

    /// Extends the lease before a batch; [`RetentionError::LeaseLost`] when it is not ours.
    async fn renew(&self, run_id: &str) -> Result<(), RetentionError> {
        self.gate()?;
        let renewed = sqlx::query(
            "UPDATE retention_lease SET expires_at_ms = $1 WHERE id = 1 AND run_id = $2",
        )
        .bind(now_ms() + LEASE_MS)
        .bind(run_id)
        .execute(&self.inner.pool)
        .await?
        .rows_affected();
        if renewed == 1 {
            Ok(())
        } else {
            Err(RetentionError::LeaseLost)
        }
    }

    async fn delete_all(
        &self,
        run_id: &str,
        cutoffs: Cutoffs,
        deleted: &mut Counts,
    ) -> Result<(), RetentionError> {
        let batch = i64::from(self.inner.policy.batch_size);
        if let Some(before) = cutoffs.receipts_before_ms {
            loop {
                self.renew(run_id).await?;
                let gone = sqlx::query(
                    "DELETE FROM receipts WHERE debate_id IN (SELECT debate_id FROM receipts \
                     WHERE issued_at_ms < $1 ORDER BY issued_at_ms LIMIT $2)",
                )
                .bind(before)
                .bind(batch)
                .execute(&self.inner.pool)
                .await?
                .rows_affected();
                deleted.receipts += gone as i64;
                if (gone as i64) < batch {
                    break;
                }
            }
        }
        if let Some(before) = cutoffs.debates_before_ms {
            loop {
                self.renew(run_id).await?;
                let expired = sqlx::query(&format!(
                    "SELECT d.id, d.last_seq FROM debates d WHERE {} \
                     ORDER BY d.finished_at_ms, d.id LIMIT $3",
                    expired_debate(1, 2)
                ))
                .bind(before)
                .bind(cutoffs.receipt_bound())
                .bind(batch)
                .fetch_all(&self.inner.pool)
                .await?;
                let mut found = Vec::with_capacity(expired.len());
                for row in &expired {
                    found.push((
                        row.try_get::<String, _>("id")?,
                        row.try_get::<i64, _>("last_seq")?,
                    ));
                }
                for group in groups(&found, batch) {
                    self.renew(run_id).await?;
                    let (debates, events) = self.delete_debates(&group, cutoffs).await?;
                    deleted.debates += debates;
                    deleted.events += events;
                }
                if (found.len() as i64) < batch {
                    break;
                }
            }
        }
        if let Some(before) = cutoffs.deliveries_before_ms {
            loop {
                self.renew(run_id).await?;
                // The condition again outside: a dead delivery retried meanwhile is pending.
                let gone = sqlx::query(&format!(
                    "DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM \
                     webhook_deliveries WHERE {FINISHED_DELIVERY} ORDER BY updated_at_ms LIMIT $2) \
                     AND state IN ('delivered', 'dead')"
                ))
                .bind(before)
                .bind(batch)
                .execute(&self.inner.pool)
                .await?
                .rows_affected();
                deleted.deliveries += gone as i64;
                if (gone as i64) < batch {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Deletes a group of expired debates and their events in one transaction; the rows of
    /// each table it deleted.
    async fn delete_debates(
        &self,
        ids: &[String],
        cutoffs: Cutoffs,
    ) -> Result<(i64, i64), RetentionError> {
        let before = cutoffs.debates_before_ms.unwrap_or(i64::MIN);
        let list = placeholders(3, ids.len());
        let mut tx = self.inner.pool.begin().await?;
        // The condition again, so a debate that changed since it was picked stays. Events
        // first: they refer to their debate.
        let mut deleted = [0u64; 2];
        for (count, (table, column)) in deleted
            .iter_mut()
            .zip([("debate_events", "debate_id"), ("debates", "id")])
        {
            let sql = format!(
                "DELETE FROM {table} WHERE {column} IN \
                 (SELECT d.id FROM debates d WHERE d.id IN ({list}) AND {})",
                expired_debate(1, 2)
            );
            let mut query = sqlx::query(&sql).bind(before).bind(cutoffs.receipt_bound());
            for id in ids {
                query = query.bind(id);
            }
            *count = query.execute(&mut *tx).await?.rows_affected();
        }
        let [events, debates] = deleted;
        tx.commit().await?;
        Ok((debates as i64, events as i64))
    }

    async fn finish(&self, record: &RunRecord) -> Result<(), sqlx::Error> {
        let pool = &self.inner.pool;
        sqlx::query(
            "UPDATE retention_runs SET finished_at_ms = $1, status = $2, receipts_deleted = $3, \
             debates_deleted = $4, events_deleted = $5, deliveries_deleted = $6, error = $7 \
             WHERE id = $8",
        )
        .bind(record.finished_at_ms)
        .bind(&record.status)
        .bind(record.deleted.receipts)
        .bind(record.deleted.debates)
        .bind(record.deleted.events)
        .bind(record.deleted.deliveries)
        .bind(record.error.as_deref())
        .bind(&record.id)
        .execute(pool)
        .await?;
        sqlx::query(
            "UPDATE retention_lease SET holder = NULL, run_id = NULL, expires_at_ms = NULL \
             WHERE id = 1 AND run_id = $1",
        )
        .bind(&record.id)
        .execute(pool)
        .await?;
        // Bounded history: the newest RUNS_KEPT runs.
        sqlx::query(
            "DELETE FROM retention_runs WHERE started_at_ms < (SELECT started_at_ms FROM \
             retention_runs ORDER BY started_at_ms DESC LIMIT 1 OFFSET $1)",
        )
        .bind(RUNS_KEPT - 1)
        .execute(pool)
        .await?;
        Ok(())
    }

    /// Totals, the newest run and the one in progress.
    pub async fn history(&self) -> Result<History, RetentionError> {
        self.gate()?;
        let pool = &self.inner.pool;
        let totals = sqlx::query(
            // PostgreSQL sums BIGINTs into NUMERIC: cast back, for one decoder on both.
            "SELECT COUNT(*) AS runs, \
             CAST(COALESCE(SUM(CASE WHEN status = 'succeeded' THEN 0 ELSE 1 END), 0) AS BIGINT) AS failures, \
             CAST(COALESCE(SUM(receipts_deleted), 0) AS BIGINT) AS receipts, \
             CAST(COALESCE(SUM(debates_deleted), 0) AS BIGINT) AS debates, \
             CAST(COALESCE(SUM(events_deleted), 0) AS BIGINT) AS events, \
             CAST(COALESCE(SUM(deliveries_deleted), 0) AS BIGINT) AS deliveries \
             FROM retention_runs WHERE status <> 'running'",
        )
        .fetch_one(pool)
        .await
        .map_err(schema_or_database)?;
        let last = sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} FROM retention_runs WHERE status <> 'running' \
             ORDER BY started_at_ms DESC, id DESC LIMIT 1"
        ))
        .fetch_optional(pool)
        .await?;
        let in_progress = sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} FROM retention_runs WHERE id = \
             (SELECT run_id FROM retention_lease WHERE id = 1 AND expires_at_ms >= $1)"
        ))
        .bind(now_ms())
        .fetch_optional(pool)
        .await?;
        Ok(History {
            last: last.as_ref().map(decode_run).transpose()?,
            in_progress: in_progress.as_ref().map(decode_run).transpose()?,
            total_runs: totals.try_get("runs")?,
            failures: totals.try_get("failures")?,
            deleted: Counts {
                receipts: totals.try_get("receipts")?,
                debates: totals.try_get("debates")?,
                events: totals.try_get("events")?,
                deliveries: totals.try_get("deliveries")?,
            },
        })
    }
}

const RUN_COLUMNS: &str = "id, holder, triggered_by, started_at_ms, finished_at_ms, status, \
    receipts_deleted, debates_deleted, events_deleted, deliveries_deleted, receipts_before_ms, \
    debates_before_ms, deliveries_before_ms, error";

fn decode_run(row: &sqlx::any::AnyRow) -> Result<RunRecord, sqlx::Error> {
    Ok(RunRecord {
        id: row.try_get("id")?,
        holder: row.try_get("holder")?,
        trigger: row.try_get("triggered_by")?,
        started_at_ms: row.try_get("started_at_ms")?,
        finished_at_ms: row.try_get("finished_at_ms")?,
        status: row.try_get("status")?,
        deleted: Counts {
            receipts: row.try_get("receipts_deleted")?,
            debates: row.try_get("debates_deleted")?,
            events: row.try_get("events_deleted")?,
            deliveries: row.try_get("deliveries_deleted")?,
        },
        cutoffs: Cutoffs {
            receipts_before_ms: row.try_get("receipts_before_ms")?,
            debates_before_ms: row.try_get("debates_before_ms")?,
            deliveries_before_ms: row.try_get("deliveries_before_ms")?,
        },
        error: row.try_get("error")?,
    })
}

/// A missing table means a schema before migration 0008.
fn schema_or_database(err: sqlx::Error) -> RetentionError {
    let text = err.to_string();
    if text.contains("retention_")
        && (text.contains("no such table") || text.contains("does not exist"))
    {
        RetentionError::Schema(text)
    } else {
        RetentionError::Database(err)
    }
}

/// The condition on debate `d` past retention: final, finished before `$before`, and without
/// a receipt issued at or after `$receipts_kept_from` (a receipt inside its own retention keeps
/// its debate).
fn expired_debate(before: usize, receipts_kept_from: usize) -> String {
    format!(
        "d.status IN {FINAL} AND d.finished_at_ms < ${before} AND NOT EXISTS \
         (SELECT 1 FROM receipts r WHERE r.debate_id = d.id AND r.issued_at_ms >= ${receipts_kept_from})"
    )
}

/// Debates split into groups of about `batch` events each (a debate with more is a group of
/// its own): each group is one short transaction.
fn groups(debates: &[(String, i64)], batch: i64) -> Vec<Vec<String>> {
    let mut groups = Vec::new();
    let mut current = Vec::new();
    let mut rows = 0;
    for (id, last_seq) in debates {
        // Its events and its own row.
        let size = last_seq.max(&0) + 1;
        if !current.is_empty() && rows + size > batch {
            groups.push(std::mem::take(&mut current));
            rows = 0;
        }
        current.push(id.clone());
        rows += size;
    }
    if !current.is_empty() {
        groups.push(current);
    }
    groups
}

fn placeholders(start: usize, count: usize) -> String {
    (start..start + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}
