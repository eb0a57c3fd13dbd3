//! Debate persistence: one trait, [`DebateStore`], and its SQL implementation for SQLite
//! (the embedded default, WAL mode) and PostgreSQL.
//!
//! Both backends run the same statements through sqlx's `Any` driver; the schema lives in
//! `migrations/sqlite` and `migrations/postgres` and is embedded in the binary; applying it
//! (on PostgreSQL under advisory lock [`MIGRATION_LOCK_ID`], so that replicas starting together
//! never race) and reading its state are [`crate::schema`]'s. An event and the debate row it changes are written in one transaction, before
//! the event is announced to anyone.

use crate::config::DbBackend;
use crate::dr_log::{self, BackupRecord, DrStatus, DrillRecord};
use crate::maintenance::{self, MaintenanceState};
use crate::model::{
    ConsensusRule, DebateEvent, DebateRecord, DebateStatus, EventKind, Fence, Lease, Outcome,
    StatusUpdate,
};
use crate::usage::{self, DebateUsage, ProviderUsage};
use async_trait::async_trait;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use std::time::{Duration, Instant};

/// The advisory lock every replica takes before migrating PostgreSQL (from the runbook).
pub const MIGRATION_LOCK_ID: i64 = 2_089_872_453;

/// How long [`SqlStore::migrate`] waits for another instance's migration lock (the default of
/// `ARAGORA_MIGRATION_LOCK_WAIT`).
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The schema could not be brought up to date, or this binary must not use it.
    #[error(transparent)]
    Schema(#[from] crate::schema::SchemaError),
    #[error("stored data is not readable: {0}")]
    Corrupt(String),
    /// The runtime shut down while a write was in progress; whether it committed is for the
    /// next start's replay to find out.
    #[error("the write was abandoned at shutdown")]
    Abandoned,
    /// The write was refused: this replica no longer holds the debate's lease (another
    /// replica adopted it). Nothing was written.
    #[error("debate {debate_id} is no longer held by this replica (lease lost to another)")]
    Fenced { debate_id: String },
}

/// What a replica asks for when it claims a debate's lease (see [`DebateStore::claim`]).
#[derive(Debug, Clone)]
pub struct Claim<'a> {
    /// The claiming replica.
    pub owner: &'a str,
    /// The lease epoch the claimer saw; the claim fails if anyone claimed since.
    pub seen_epoch: i64,
    pub now_ms: i64,
    /// The new lease's end.
    pub expires_at_ms: i64,
    /// Claim only a debate nobody holds: interrupted, or its lease expired before `now_ms`.
    pub only_expired: bool,
    /// How long a debate written before leases existed (no lease) counts as held after its
    /// last change (see [`DebateStore::adoptable`]).
    pub unleased_grace_ms: i64,
}

/// A debate that a renewal found still held, and whether someone asked to cancel it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Renewed {
    pub id: String,
    pub cancel_requested: bool,
}

/// A page of debates and the number of debates matching the filter.
#[derive(Debug, Clone)]
pub struct DebatePage {
    pub debates: Vec<DebateRecord>,
    pub total: i64,
}

/// A signed receipt as stored: its JSON and the id of the key that signed it.
#[derive(Debug, Clone)]
pub struct StoredReceipt {
    pub body: String,
    pub key_id: String,
}

/// Where debates and their events are kept.
#[async_trait]
pub trait DebateStore: Send + Sync + 'static {
    /// Round trip to the database; its latency.
    async fn ping(&self) -> Result<Duration, StoreError>;
    /// Which backend this is, for health output.
    fn backend(&self) -> DbBackend;
    /// Closes every connection (at shutdown).
    async fn close(&self);
    async fn insert_debate(&self, debate: &DebateRecord) -> Result<(), StoreError>;
    async fn debate(&self, id: &str) -> Result<Option<DebateRecord>, StoreError>;
    /// Newest first; `statuses` empty means all.
    async fn list_debates(
        &self,
        statuses: &[DebateStatus],
        limit: i64,
        offset: i64,
    ) -> Result<DebatePage, StoreError>;
    /// Appends `event` (its seq must be the debate's last seq + 1), applies `update` to the
    /// debate row and stores `receipt` if given, atomically. With a `fence`, only while the
    /// debate's owner and lease epoch are the fence's; otherwise nothing is written and the
    /// answer is [`StoreError::Fenced`].
    async fn append_event(
        &self,
        event: &DebateEvent,
        update: Option<&StatusUpdate>,
        receipt: Option<&StoredReceipt>,
        fence: Option<&Fence>,
    ) -> Result<(), StoreError>;
    /// A debate's signed receipt (JSON), if it has one.
    async fn receipt(&self, debate_id: &str) -> Result<Option<String>, StoreError>;
    /// Applies `update` only while the debate is in one of `from` (and, with a `fence`, still
    /// held under it); false when it was not.
    async fn transition(
        &self,
        id: &str,
        from: &[DebateStatus],
        update: &StatusUpdate,
        fence: Option<&Fence>,
    ) -> Result<bool, StoreError>;
    /// Takes the lease of debate `id` for `claim.owner`, in one conditional UPDATE, so of
    /// replicas racing for it exactly one wins: only while its epoch is still
    /// `claim.seen_epoch`, it is not final, and (with `only_expired`) nobody holds it. The
    /// winner's epoch is `seen_epoch + 1`; an interrupted debate becomes queued. True when
    /// this claim won.
    async fn claim(&self, id: &str, claim: &Claim<'_>) -> Result<bool, StoreError>;
    /// Debates nobody holds at `now_ms`, oldest first, at most `limit`: interrupted ones, and
    /// queued or running ones whose lease expired (one without a lease, written before
    /// leases existed, once `unleased_grace_ms` passed since its last change).
    async fn adoptable(
        &self,
        now_ms: i64,
        unleased_grace_ms: i64,
        limit: i64,
    ) -> Result<Vec<DebateRecord>, StoreError>;
    /// Extends to `expires_at_ms` the leases `owner` still holds among `ids` (one statement)
    /// and says which those are; a debate missing from the answer is no longer `owner`'s.
    async fn renew_leases(
        &self,
        owner: &str,
        ids: &[String],
        expires_at_ms: i64,
    ) -> Result<Vec<Renewed>, StoreError>;
    /// Notes that `by` asked at `at_ms` to cancel a debate another replica runs; false when
    /// the debate has already ended.
    async fn request_cancel(&self, id: &str, by: &str, at_ms: i64) -> Result<bool, StoreError>;
    /// Events with seq greater than `after_seq`, in order, at most `limit`.
    async fn events_after(
        &self,
        id: &str,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<DebateEvent>, StoreError>;
    /// Debates in any of `statuses`, oldest first.
    async fn debates_in(&self, statuses: &[DebateStatus]) -> Result<Vec<DebateRecord>, StoreError>;
    /// Notes a completed backup in the DR log.
    async fn record_backup(&self, backup: &BackupRecord) -> Result<(), StoreError>;
    /// Notes a finished DR drill in the DR log.
    async fn record_drill(&self, drill: &DrillRecord) -> Result<(), StoreError>;
    /// The newest `limit` drills, newest first.
    async fn drills(&self, limit: i64) -> Result<Vec<DrillRecord>, StoreError>;
    /// Latest backup, latest passed drill and the latest drill's RTO and RPO.
    async fn dr_status(&self) -> Result<DrStatus, StoreError>;
    /// The newest migration applied to the database, when the store keeps a schema (`/health`
    /// compares it with the binary's).
    async fn schema_version(&self) -> Result<Option<i64>, StoreError> {
        Ok(None)
    }
    /// Adds the tokens `provider` counted for one call of debate `debate_id` (migration 0010).
    async fn add_usage(
        &self,
        debate_id: &str,
        provider: &str,
        input_tokens: u64,
        output_tokens: u64,
    ) -> Result<(), StoreError>;
    /// The newest `limit` debates `created_by` created, each with its usage per provider, and
    /// the totals per provider over all of that principal's debates.
    async fn usage_of_creator(
        &self,
        created_by: &str,
        limit: i64,
    ) -> Result<(Vec<DebateUsage>, Vec<ProviderUsage>), StoreError>;
    /// The maintenance row (migration 0006), shared by every replica.
    async fn maintenance(&self) -> Result<MaintenanceState, StoreError>;
    /// Applies an admin's enable or disable; the state after it and whether it changed.
    async fn set_maintenance(
        &self,
        change: &maintenance::Change,
    ) -> Result<(MaintenanceState, bool), StoreError>;
}

/// [`DebateStore`] over SQLite or PostgreSQL.
#[derive(Clone)]
pub struct SqlStore {
    pool: AnyPool,
    backend: DbBackend,
}

/// Per-connection SQLite settings: WAL so readers never block the writer, writers wait for
/// each other instead of failing with "database is locked", and synchronous=NORMAL, which is
/// durable in WAL mode except across a power loss.
const SQLITE_PRAGMAS: &[&str] = &[
    "PRAGMA journal_mode=WAL",
    "PRAGMA busy_timeout=10000",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
];

const DEBATE_COLUMNS: &str = "id, topic, status, rounds, agents, consensus_rule, seed, \
    created_at_ms, started_at_ms, finished_at_ms, updated_at_ms, outcome, consensus_reached, \
    final_answer, error, last_seq, created_by, owner, lease_epoch, lease_expires_at_ms, \
    cancel_requested_at_ms";

/// The statuses a lease covers (a final debate needs no holder).
const UNFINISHED: &str = "('queued', 'running', 'interrupted')";

/// The condition "nobody holds it at $now": interrupted, or its lease expired; a debate
/// without a lease (from before leases) counts as held for `$grace` ms after its last change.
fn unheld(grace: usize, now: usize) -> String {
    format!(
        "(status = 'interrupted' OR COALESCE(lease_expires_at_ms, updated_at_ms + ${grace}) < ${now})"
    )
}

impl SqlStore {
    /// The pool, for the tables other modules own (`api_keys`).
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Claims a scheduled tick of `job` for `holder` (see [`dr_log::claim_scheduled_run`]):
    /// false when it was claimed already and must not run.
    pub async fn claim_scheduled_run(
        &self,
        job: &str,
        scheduled_for_ms: i64,
        holder: &str,
    ) -> Result<bool, StoreError> {
        let now = crate::model::now_ms();
        Ok(dr_log::claim_scheduled_run(&self.pool, job, scheduled_for_ms, holder, now).await?)
    }

    /// Notes that a claimed scheduled run ended.
    pub async fn finish_scheduled_run(
        &self,
        job: &str,
        scheduled_for_ms: i64,
    ) -> Result<(), StoreError> {
        let now = crate::model::now_ms();
        Ok(dr_log::finish_scheduled_run(&self.pool, job, scheduled_for_ms, now).await?)
    }

    /// Who claimed a scheduled tick of `job`, if anyone.
    pub async fn scheduled_run_holder(
        &self,
        job: &str,
        scheduled_for_ms: i64,
    ) -> Result<Option<String>, StoreError> {
        Ok(dr_log::scheduled_run_holder(&self.pool, job, scheduled_for_ms).await?)
    }

    /// Opens a pool. For SQLite the file is created if missing and put in WAL mode.
    pub async fn connect(
        backend: DbBackend,
        url: &str,
        pool_size: u32,
    ) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let options = AnyPoolOptions::new()
            .max_connections(pool_size)
            .acquire_timeout(Duration::from_secs(10));
        let options = match backend {
            DbBackend::Sqlite => options.after_connect(|conn, _| {
                Box::pin(async move {
                    for pragma in SQLITE_PRAGMAS {
                        sqlx::Executor::execute(&mut *conn, *pragma).await?;
                    }
                    Ok(())
                })
            }),
            DbBackend::Postgres => options,
        };
        let pool = options.connect(url).await?;
        Ok(Self { pool, backend })
    }

    /// Opens one connection (no pool, no retries), runs `SELECT 1`, closes it: a quick answer
    /// to "does this database answer?" for `aragora validate-env`.
    pub async fn check(url: &str) -> Result<Duration, StoreError> {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let started = Instant::now();
        let mut conn = sqlx::AnyConnection::connect(url).await?;
        sqlx::query("SELECT 1").execute(&mut conn).await?;
        let latency = started.elapsed();
        conn.close().await?;
        Ok(latency)
    }

    /// Brings the schema up to date (idempotent), as [`crate::schema::upgrade`] does, waiting
    /// up to [`DEFAULT_LOCK_WAIT`] for the migration lock and logging while it waits.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        crate::schema::upgrade(
            self,
            DEFAULT_LOCK_WAIT,
            &mut |waiting: &crate::schema::Waiting| tracing::warn!("{waiting}"),
        )
        .await?;
        Ok(())
    }

    /// The schema version this binary migrates to: the newest embedded migration of `backend`.
    pub fn latest_schema_version(backend: DbBackend) -> i64 {
        crate::schema::latest_known(backend)
    }

    fn placeholders(start: usize, count: usize) -> String {
        (start..start + count)
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn decode_debate(row: &AnyRow) -> Result<DebateRecord, StoreError> {
    let status: String = row.try_get("status")?;
    let agents: String = row.try_get("agents")?;
    let rule: String = row.try_get("consensus_rule")?;
    let outcome: Option<String> = row.try_get("outcome")?;
    let consensus_reached: Option<i64> = row.try_get("consensus_reached")?;
    Ok(DebateRecord {
        id: row.try_get("id")?,
        topic: row.try_get("topic")?,
        status: DebateStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown status {status:?}")))?,
        rounds: row.try_get("rounds")?,
        agents: serde_json::from_str(&agents)
            .map_err(|err| StoreError::Corrupt(format!("agents column: {err}")))?,
        consensus_rule: ConsensusRule::parse(&rule)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown consensus rule {rule:?}")))?,
        seed: row.try_get("seed")?,
        created_at_ms: row.try_get("created_at_ms")?,
        started_at_ms: row.try_get("started_at_ms")?,
        finished_at_ms: row.try_get("finished_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
        outcome: match outcome.as_deref() {
            None => None,
            Some(text) => Some(
                serde_json::from_value::<Outcome>(serde_json::Value::String(text.into()))
                    .map_err(|_| StoreError::Corrupt(format!("unknown outcome {text:?}")))?,
            ),
        },
        consensus_reached: consensus_reached.map(|v| v != 0),
        final_answer: row.try_get("final_answer")?,
        error: row.try_get("error")?,
        last_seq: row.try_get("last_seq")?,
        created_by: row.try_get("created_by")?,
        lease: Lease {
            owner: row.try_get("owner")?,
            epoch: row.try_get("lease_epoch")?,
            expires_at_ms: row.try_get("lease_expires_at_ms")?,
        },
        cancel_requested_at_ms: row.try_get("cancel_requested_at_ms")?,
    })
}

fn decode_event(row: &AnyRow) -> Result<DebateEvent, StoreError> {
    let kind: String = row.try_get("kind")?;
    let data: String = row.try_get("data")?;
    let debate_id: String = row.try_get("debate_id")?;
    let agent: Option<String> = row.try_get("agent")?;
    Ok(DebateEvent::new(
        &debate_id,
        row.try_get("seq")?,
        EventKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown event kind {kind:?}")))?,
        row.try_get("round")?,
        agent.as_deref(),
        serde_json::from_str(&data)
            .map_err(|err| StoreError::Corrupt(format!("event data: {err}")))?,
        row.try_get("created_at_ms")?,
    ))
}

/// The UPDATE that applies a [`StatusUpdate`]; parameters $1..$8 then the debate id as $9.
const UPDATE_DEBATE: &str = "UPDATE debates SET \
    status = COALESCE($1, status), \
    started_at_ms = COALESCE($2, started_at_ms), \
    finished_at_ms = COALESCE($3, finished_at_ms), \
    outcome = COALESCE($4, outcome), \
    consensus_reached = COALESCE($5, consensus_reached), \
    final_answer = COALESCE($6, final_answer), \
    error = COALESCE($7, error), \
    updated_at_ms = $8 \
    WHERE id = $9";

/// `sql` (an UPDATE of one debate) applied only under `fence`: the owner and epoch become
/// parameters `$first` and `$first + 1`, to be bound after the others.
fn fenced(sql: String, first: usize, fence: Option<&Fence>) -> (String, Option<Fence>) {
    match fence {
        Some(fence) => (
            format!(
                "{sql} AND owner = ${first} AND lease_epoch = ${}",
                first + 1
            ),
            Some(fence.clone()),
        ),
        None => (sql, None),
    }
}

fn bind_update<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    update: &'q StatusUpdate,
    id: &'q str,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    query
        .bind(update.status.map(DebateStatus::as_str))
        .bind(update.started_at_ms)
        .bind(update.finished_at_ms)
        .bind(update.outcome.map(Outcome::as_str))
        .bind(update.consensus_reached.map(i64::from))
        .bind(update.final_answer.as_deref())
        .bind(update.error.as_deref())
        .bind(crate::model::now_ms())
        .bind(id)
}

#[async_trait]
impl DebateStore for SqlStore {
    async fn ping(&self) -> Result<Duration, StoreError> {
        let started = Instant::now();
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(started.elapsed())
    }

    fn backend(&self) -> DbBackend {
        self.backend
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    async fn insert_debate(&self, d: &DebateRecord) -> Result<(), StoreError> {
        let agents = serde_json::to_string(&d.agents).unwrap_or_else(|_| "[]".into());
        sqlx::query(&format!(
            "INSERT INTO debates ({DEBATE_COLUMNS}) VALUES ({})",
            Self::placeholders(1, 21)
        ))
        .bind(&d.id)
        .bind(&d.topic)
        .bind(d.status.as_str())
        .bind(d.rounds)
        .bind(agents)
        .bind(d.consensus_rule.as_str())
        .bind(d.seed)
        .bind(d.created_at_ms)
        .bind(d.started_at_ms)
        .bind(d.finished_at_ms)
        .bind(d.updated_at_ms)
        .bind(d.outcome.map(Outcome::as_str))
        .bind(d.consensus_reached.map(i64::from))
        .bind(d.final_answer.as_deref())
        .bind(d.error.as_deref())
        .bind(d.last_seq)
        .bind(d.created_by.as_deref())
        .bind(d.lease.owner.as_deref())
        .bind(d.lease.epoch)
        .bind(d.lease.expires_at_ms)
        .bind(d.cancel_requested_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn debate(&self, id: &str) -> Result<Option<DebateRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {DEBATE_COLUMNS} FROM debates WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(decode_debate).transpose()
    }

    async fn list_debates(
        &self,
        statuses: &[DebateStatus],
        limit: i64,
        offset: i64,
    ) -> Result<DebatePage, StoreError> {
        let filter = if statuses.is_empty() {
            String::new()
        } else {
            format!(
                "WHERE status IN ({})",
                Self::placeholders(1, statuses.len())
            )
        };
        let n = statuses.len();
        let list_sql = format!(
            "SELECT {DEBATE_COLUMNS} FROM debates {filter} \
             ORDER BY created_at_ms DESC, id DESC LIMIT ${} OFFSET ${}",
            n + 1,
            n + 2
        );
        let mut list = sqlx::query(&list_sql);
        let count_sql = format!("SELECT COUNT(*) AS total FROM debates {filter}");
        let mut count = sqlx::query(&count_sql);
        for status in statuses {
            list = list.bind(status.as_str());
            count = count.bind(status.as_str());
        }
        let rows = list.bind(limit).bind(offset).fetch_all(&self.pool).await?;
        let total: i64 = count.fetch_one(&self.pool).await?.try_get("total")?;
        Ok(DebatePage {
            debates: rows.iter().map(decode_debate).collect::<Result<_, _>>()?,
            total,
        })
    }

    async fn append_event(
        &self,
        event: &DebateEvent,
        update: Option<&StatusUpdate>,
        receipt: Option<&StoredReceipt>,
        fence: Option<&Fence>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        // The row first: its UPDATE locks the debate, so an adoption (which changes the
        // epoch under the same lock) is either wholly before this write, which then matches
        // no row and writes nothing, or wholly after it, and then reads this event back.
        let empty = StatusUpdate::default();
        let (sql, fence) = fenced(UPDATE_DEBATE.to_string(), 10, fence);
        let mut query = bind_update(
            sqlx::query(&sql),
            update.unwrap_or(&empty),
            &event.debate_id,
        );
        if let Some(fence) = &fence {
            query = query.bind(&fence.owner).bind(fence.epoch);
        }
        if query.execute(&mut *tx).await?.rows_affected() == 0 && fence.is_some() {
            tx.rollback().await?;
            return Err(StoreError::Fenced {
                debate_id: event.debate_id.clone(),
            });
        }
        if let Some(receipt) = receipt {
            sqlx::query("INSERT INTO receipts (debate_id, body, key_id, issued_at_ms) VALUES ($1, $2, $3, $4)")
                .bind(&event.debate_id)
                .bind(&receipt.body)
                .bind(&receipt.key_id)
                .bind(event.at_ms)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO debate_events (debate_id, seq, kind, round, agent, data, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&event.debate_id)
        .bind(event.seq)
        .bind(event.kind.as_str())
        .bind(event.round)
        .bind(event.agent.as_deref())
        .bind(event.data.to_string())
        .bind(event.at_ms)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE debates SET last_seq = $1 WHERE id = $2")
            .bind(event.seq)
            .bind(&event.debate_id)
            .execute(&mut *tx)
            .await?;
        // The outbox: the event's webhook deliveries commit with it or not at all.
        let kinds = crate::webhooks::EventType::of_debate_event(event);
        if !kinds.is_empty() {
            let payload = serde_json::to_value(event)
                .map_err(|err| StoreError::Corrupt(format!("event does not serialise: {err}")))?;
            for kind in kinds {
                crate::webhooks::outbox::enqueue(&mut tx, kind, event.at_ms, &payload).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn receipt(&self, debate_id: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT body FROM receipts WHERE debate_id = $1")
            .bind(debate_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| row.try_get("body")).transpose()?)
    }

    async fn transition(
        &self,
        id: &str,
        from: &[DebateStatus],
        update: &StatusUpdate,
        fence: Option<&Fence>,
    ) -> Result<bool, StoreError> {
        let sql = format!(
            "{UPDATE_DEBATE} AND status IN ({})",
            Self::placeholders(10, from.len())
        );
        let (sql, fence) = fenced(sql, 10 + from.len(), fence);
        let mut query = bind_update(sqlx::query(&sql), update, id);
        for status in from {
            query = query.bind(status.as_str());
        }
        if let Some(fence) = &fence {
            query = query.bind(&fence.owner).bind(fence.epoch);
        }
        Ok(query.execute(&self.pool).await?.rows_affected() == 1)
    }

    async fn claim(&self, id: &str, claim: &Claim<'_>) -> Result<bool, StoreError> {
        let sql = format!(
            "UPDATE debates SET owner = $1, lease_epoch = lease_epoch + 1, \
             lease_expires_at_ms = $2, updated_at_ms = $3, \
             status = CASE WHEN status = 'interrupted' THEN 'queued' ELSE status END \
             WHERE id = $4 AND lease_epoch = $5 AND status IN {UNFINISHED} \
             AND ($6 = 0 OR {})",
            unheld(7, 8)
        );
        let claimed = sqlx::query(&sql)
            .bind(claim.owner)
            .bind(claim.expires_at_ms)
            .bind(claim.now_ms)
            .bind(id)
            .bind(claim.seen_epoch)
            .bind(i64::from(claim.only_expired))
            .bind(claim.unleased_grace_ms)
            .bind(claim.now_ms)
            .execute(&self.pool)
            .await?;
        Ok(claimed.rows_affected() == 1)
    }

    async fn adoptable(
        &self,
        now_ms: i64,
        unleased_grace_ms: i64,
        limit: i64,
    ) -> Result<Vec<DebateRecord>, StoreError> {
        let sql = format!(
            "SELECT {DEBATE_COLUMNS} FROM debates WHERE status IN {UNFINISHED} AND {} \
             ORDER BY created_at_ms, id LIMIT $3",
            unheld(1, 2)
        );
        let rows = sqlx::query(&sql)
            .bind(unleased_grace_ms)
            .bind(now_ms)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(decode_debate).collect()
    }

    async fn renew_leases(
        &self,
        owner: &str,
        ids: &[String],
        expires_at_ms: i64,
    ) -> Result<Vec<Renewed>, StoreError> {
        let mut renewed = Vec::with_capacity(ids.len());
        // One statement per interval for any realistic load; chunks keep each well inside
        // the backends' parameter limits.
        for chunk in ids.chunks(500) {
            let sql = format!(
                "UPDATE debates SET lease_expires_at_ms = $1 \
                 WHERE owner = $2 AND status IN ('queued', 'running') AND id IN ({}) \
                 RETURNING id, cancel_requested_at_ms",
                Self::placeholders(3, chunk.len())
            );
            let mut query = sqlx::query(&sql).bind(expires_at_ms).bind(owner);
            for id in chunk {
                query = query.bind(id);
            }
            for row in query.fetch_all(&self.pool).await? {
                let requested: Option<i64> = row.try_get("cancel_requested_at_ms")?;
                renewed.push(Renewed {
                    id: row.try_get("id")?,
                    cancel_requested: requested.is_some(),
                });
            }
        }
        Ok(renewed)
    }

    async fn request_cancel(&self, id: &str, by: &str, at_ms: i64) -> Result<bool, StoreError> {
        let sql = format!(
            "UPDATE debates SET cancel_requested_at_ms = COALESCE(cancel_requested_at_ms, $1), \
             cancel_requested_by = COALESCE(cancel_requested_by, $2) \
             WHERE id = $3 AND status IN {UNFINISHED}"
        );
        let done = sqlx::query(&sql)
            .bind(at_ms)
            .bind(by)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn events_after(
        &self,
        id: &str,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<DebateEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT debate_id, seq, kind, round, agent, data, created_at_ms FROM debate_events \
             WHERE debate_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(id)
        .bind(after_seq)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode_event).collect()
    }

    async fn debates_in(&self, statuses: &[DebateStatus]) -> Result<Vec<DebateRecord>, StoreError> {
        if statuses.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {DEBATE_COLUMNS} FROM debates WHERE status IN ({}) ORDER BY created_at_ms, id",
            Self::placeholders(1, statuses.len())
        );
        let mut query = sqlx::query(&sql);
        for status in statuses {
            query = query.bind(status.as_str());
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(decode_debate).collect()
    }

    async fn record_backup(&self, backup: &BackupRecord) -> Result<(), StoreError> {
        Ok(dr_log::record_backup(&self.pool, backup).await?)
    }

    async fn record_drill(&self, drill: &DrillRecord) -> Result<(), StoreError> {
        // A failed drill and its `drill_failed` deliveries are written together.
        let mut tx = self.pool.begin().await?;
        dr_log::record_drill(&mut tx, drill).await?;
        if drill.status == "failed" {
            let payload = serde_json::json!({
                "drill_id": drill.id,
                "status": drill.status,
                "started_at": crate::model::format_ms(drill.started_at_ms),
                "finished_at": crate::model::format_ms(drill.finished_at_ms),
                "backup_id": drill.backup_id,
                "rto_seconds": drill.rto_seconds,
                "rpo_seconds": drill.rpo_seconds,
                "rto_target_seconds": drill.rto_target_seconds,
                "rpo_target_seconds": drill.rpo_target_seconds,
            });
            crate::webhooks::outbox::enqueue(
                &mut tx,
                crate::webhooks::EventType::DrillFailed,
                drill.finished_at_ms,
                &payload,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn drills(&self, limit: i64) -> Result<Vec<DrillRecord>, StoreError> {
        Ok(dr_log::drills(&self.pool, limit).await?)
    }

    async fn schema_version(&self) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<Option<i64>, _>(0)?)
    }

    async fn dr_status(&self) -> Result<DrStatus, StoreError> {
        Ok(dr_log::status(&self.pool).await?)
    }

    async fn add_usage(
        &self,
        debate_id: &str,
        provider: &str,
        input_tokens: u64,
        output_tokens: u64,
    ) -> Result<(), StoreError> {
        Ok(usage::add(&self.pool, debate_id, provider, input_tokens, output_tokens).await?)
    }

    async fn usage_of_creator(
        &self,
        created_by: &str,
        limit: i64,
    ) -> Result<(Vec<DebateUsage>, Vec<ProviderUsage>), StoreError> {
        let debates = usage::of_creator(&self.pool, created_by, limit).await?;
        let totals = usage::totals_of_creator(&self.pool, created_by).await?;
        Ok((debates, totals))
    }

    async fn maintenance(&self) -> Result<MaintenanceState, StoreError> {
        Ok(maintenance::read(&self.pool).await?)
    }

    async fn set_maintenance(
        &self,
        change: &maintenance::Change,
    ) -> Result<(MaintenanceState, bool), StoreError> {
        Ok(maintenance::apply(&self.pool, change).await?)
    }
}
