//! Maintenance mode (the Self-Hosted Guide's 7.4 Maintenance Windows): while it is on, new
//! debates are refused with 503 and `Retry-After`; reads, WebSocket watches and the debates
//! already running or queued go on, so an operator can wait for `active_debates` to reach 0
//! before a backup or an upgrade.
//!
//! The truth is the one-row `maintenance` table (migration 0006), so an enable on one replica
//! holds on every replica of the database, SQLite alone or PostgreSQL behind many replicas.
//! Each replica reads it through [`Switch`], a cache of at most [`CACHE_FOR`]: a change made
//! on another replica is in force here within that bound (plus one read), and the replica that
//! made the change knows at once. Gateways learn it from each replica's `/readyz` (the
//! `maintenance` field), with no database of their own.
//!
//! | item | what |
//! |---|---|
//! | [`MaintenanceState`] | the row: on or off, reason, `Retry-After`, who changed it, when |
//! | [`Change`] | an admin's enable (reason, retry after) or disable |
//! | [`Switch`] | the cached read every new-debate request consults |
//! | [`read`], [`apply`] | the SQL over the pool (`sqlx::Error`; the store wraps it) |

use crate::store::DebateStore;
use prometheus::IntGauge;
use serde::Serialize;
use sqlx::{AnyPool, Row};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a replica trusts its last read of the table: the bound on how late another
/// replica's enable or disable takes effect here. One second keeps the read to one indexed
/// single-row query per second per replica under any load.
pub const CACHE_FOR: Duration = Duration::from_secs(1);

/// How long a read may take before the last known state is used instead.
const READ_TIMEOUT: Duration = Duration::from_secs(1);

/// `Retry-After` of a maintenance refusal when the admin names none.
pub const DEFAULT_RETRY_AFTER_SECONDS: u64 = 60;

/// The longest `Retry-After` an admin may ask for: a day.
pub const MAX_RETRY_AFTER_SECONDS: u64 = 86_400;

/// The longest reason, in characters (it is shown in every refusal).
pub const MAX_REASON_CHARS: usize = 200;

/// The reason shown when the admin gives none.
pub const DEFAULT_REASON: &str = "scheduled maintenance";

/// The maintenance row as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MaintenanceState {
    pub enabled: bool,
    /// Why, as the admin said (None while off).
    pub reason: Option<String>,
    pub retry_after_seconds: u64,
    /// Who made the current state (the principal's subject), if anyone has.
    pub changed_by: Option<String>,
    /// When the current state began (Unix ms), if it was ever changed.
    pub since_ms: Option<i64>,
}

impl Default for MaintenanceState {
    fn default() -> Self {
        Self {
            enabled: false,
            reason: None,
            retry_after_seconds: DEFAULT_RETRY_AFTER_SECONDS,
            changed_by: None,
            since_ms: None,
        }
    }
}

impl MaintenanceState {
    /// The message of a refused new debate.
    pub fn refusal_message(&self) -> String {
        format!(
            "maintenance: {}; reads and running debates continue; retry after {} s",
            self.reason.as_deref().unwrap_or(DEFAULT_REASON),
            self.retry_after_seconds
        )
    }

    /// What anyone may see (the open `/api/health`): on or off, why, since when.
    pub fn public_view(&self) -> PublicView {
        PublicView {
            enabled: self.enabled,
            reason: self.reason.clone(),
            retry_after_seconds: self.retry_after_seconds,
            since: self.since_ms.map(crate::model::format_ms),
        }
    }

    /// [`Self::public_view`] and who changed it, for credentialed callers (the admin
    /// endpoints, `/api/admin/stats`).
    pub fn view(&self) -> View {
        View {
            public: self.public_view(),
            changed_by: self.changed_by.clone(),
        }
    }
}

/// Maintenance mode as anyone may see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PublicView {
    pub enabled: bool,
    /// Why, as the admin said (null while off).
    pub reason: Option<String>,
    /// What a refused debate's `Retry-After` says.
    pub retry_after_seconds: u64,
    /// When the current state began (RFC 3339), if it was ever changed.
    pub since: Option<String>,
}

/// Maintenance mode as an admin (or a reader of `/api/admin/stats`) sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct View {
    #[serde(flatten)]
    pub public: PublicView,
    /// Who made the current state (a principal's subject), if anyone has.
    pub changed_by: Option<String>,
}

/// What an admin asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Enable {
        reason: Option<String>,
        retry_after_seconds: Option<u64>,
        by: String,
        at_ms: i64,
    },
    Disable {
        by: String,
        at_ms: i64,
    },
}

const COLUMNS: &str = "enabled, reason, retry_after_seconds, changed_by, changed_at_ms";

/// The row; the default (off) if it is missing.
pub async fn read(pool: &AnyPool) -> Result<MaintenanceState, sqlx::Error> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM maintenance WHERE id = 1"))
        .fetch_optional(pool)
        .await?;
    let Some(row) = row else {
        return Ok(MaintenanceState::default());
    };
    let enabled: i64 = row.try_get("enabled")?;
    let retry: i64 = row.try_get("retry_after_seconds")?;
    Ok(MaintenanceState {
        enabled: enabled != 0,
        reason: row.try_get("reason")?,
        retry_after_seconds: u64::try_from(retry).unwrap_or(DEFAULT_RETRY_AFTER_SECONDS),
        changed_by: row.try_get("changed_by")?,
        since_ms: row.try_get("changed_at_ms")?,
    })
}

/// Applies `change` and answers the state after it, and whether it changed anything. Enabling
/// what is on keeps who and since (the window began then) but takes a new reason or retry
/// after if given; disabling what is off changes nothing. Each is one conditional UPDATE, so
/// two admins at once on two replicas agree on who switched it.
pub async fn apply(
    pool: &AnyPool,
    change: &Change,
) -> Result<(MaintenanceState, bool), sqlx::Error> {
    let changed = match change {
        Change::Enable {
            reason,
            retry_after_seconds,
            by,
            at_ms,
        } => {
            let retry = retry_after_seconds.map(|s| i64::try_from(s).unwrap_or(i64::MAX));
            let switched = sqlx::query(
                "UPDATE maintenance SET enabled = 1, reason = $1, retry_after_seconds = $2, \
                 changed_by = $3, changed_at_ms = $4 WHERE id = 1 AND enabled = 0",
            )
            .bind(reason.as_deref().unwrap_or(DEFAULT_REASON))
            .bind(retry.unwrap_or(DEFAULT_RETRY_AFTER_SECONDS as i64))
            .bind(by)
            .bind(at_ms)
            .execute(pool)
            .await?
            .rows_affected()
                == 1;
            if !switched && (reason.is_some() || retry.is_some()) {
                sqlx::query(
                    "UPDATE maintenance SET reason = COALESCE($1, reason), \
                     retry_after_seconds = COALESCE($2, retry_after_seconds) WHERE id = 1",
                )
                .bind(reason.as_deref())
                .bind(retry)
                .execute(pool)
                .await?;
            }
            switched
        }
        Change::Disable { by, at_ms } => {
            sqlx::query(
                "UPDATE maintenance SET enabled = 0, reason = NULL, changed_by = $1, \
                 changed_at_ms = $2 WHERE id = 1 AND enabled = 1",
            )
            .bind(by)
            .bind(at_ms)
            .execute(pool)
            .await?
            .rows_affected()
                == 1
        }
    };
    Ok((read(pool).await?, changed))
}

/// This replica's view of the maintenance row: read at most once per [`CACHE_FOR`], and the
/// `aragora_maintenance_mode` gauge kept equal to it.
pub struct Switch {
    last: Mutex<Option<(Instant, MaintenanceState)>>,
    gauge: IntGauge,
}

impl Switch {
    pub fn new(gauge: IntGauge) -> Self {
        Self {
            last: Mutex::new(None),
            gauge,
        }
    }

    fn cached(&self) -> Option<(Instant, MaintenanceState)> {
        self.last.lock().ok().and_then(|last| last.clone())
    }

    /// Takes `state` as the current one (after a read, or this replica's own change).
    pub fn remember(&self, state: &MaintenanceState) {
        self.gauge.set(i64::from(state.enabled));
        if let Ok(mut last) = self.last.lock() {
            *last = Some((Instant::now(), state.clone()));
        }
    }

    /// The state in force: the cached one while fresh, else the table's. A database that does
    /// not answer within a second leaves the last known state (off if none): it is the
    /// database that new debates need anyway, so they fail on it rather than on this.
    pub async fn current(&self, store: &dyn DebateStore) -> MaintenanceState {
        let cached = self.cached();
        if let Some((at, state)) = &cached {
            if at.elapsed() < CACHE_FOR {
                return state.clone();
            }
        }
        match tokio::time::timeout(READ_TIMEOUT, store.maintenance()).await {
            Ok(Ok(state)) => {
                self.remember(&state);
                state
            }
            Ok(Err(err)) => self.stale(cached, &err.to_string()),
            Err(_) => self.stale(cached, "no answer within 1 s"),
        }
    }

    fn stale(&self, cached: Option<(Instant, MaintenanceState)>, why: &str) -> MaintenanceState {
        tracing::warn!(error = %why, "cannot read the maintenance state; using the last known one");
        cached.map(|(_, state)| state).unwrap_or_default()
    }
}
