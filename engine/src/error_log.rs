//! The recent errors of every replica, for `GET /api/system/errors`: failed debates, agent
//! errors, failed retention cleanups, dead-lettered webhook deliveries, and whatever other code
//! records ([`ErrorLog::record`]).
//!
//! Once the engine has its database ([`ErrorLog::attach`]), each error is a row of the shared
//! table `system_errors` (migration 0011), written off the caller's path (a task of its own,
//! so a failed agent call never waits for it) and the table pruned to the newest [`CAPACITY`]
//! by the same insert: behind a load balancer every replica lists the same errors, and they
//! survive a restart. Each replica also keeps its own in a ring in memory (the newest
//! [`CAPACITY`]), so it lists an error it has just recorded before the row is written, and
//! those from before the database was attached or while it was away; the endpoint lists both,
//! each entry once (by its id). Every message is scrubbed of the configuration's secrets before it
//! is kept anywhere (provider errors may quote a key), and cut to [`MAX_MESSAGE_CHARS`].

use crate::model::now_ms;
use serde::Serialize;
use sqlx::{AnyPool, Row};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};

/// Entries kept in the shared table, and in the ring.
pub const CAPACITY: usize = 1000;
/// Longest message kept, in characters.
pub const MAX_MESSAGE_CHARS: usize = 1000;

/// What failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// A debate ended `failed`.
    DebateFailed,
    /// A debate ended `timed_out`.
    DebateTimedOut,
    /// An agent call failed (after its retries), or timed out.
    AgentError,
    /// A DR drill failed (read from the DR log, not recorded here).
    DrillFailed,
    /// A retention cleanup failed.
    RetentionFailed,
    /// A webhook delivery failed for good (dead-lettered).
    WebhookFailed,
}

impl ErrorKind {
    pub const ALL: [Self; 6] = [
        Self::DebateFailed,
        Self::DebateTimedOut,
        Self::AgentError,
        Self::DrillFailed,
        Self::RetentionFailed,
        Self::WebhookFailed,
    ];

    /// Its name in the API and in `system_errors.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DebateFailed => "debate_failed",
            Self::DebateTimedOut => "debate_timed_out",
            Self::AgentError => "agent_error",
            Self::DrillFailed => "drill_failed",
            Self::RetentionFailed => "retention_failed",
            Self::WebhookFailed => "webhook_failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

/// One error.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ErrorEntry {
    /// Unique to this entry: the ring's copy and the table's row are one error.
    #[serde(skip)]
    pub id: String,
    /// RFC 3339, UTC.
    pub at: String,
    #[serde(skip)]
    pub at_ms: i64,
    pub kind: ErrorKind,
    /// What went wrong, secrets masked as `***`.
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub debate_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
}

impl ErrorEntry {
    pub fn new(kind: ErrorKind, message: &str, at_ms: i64) -> Self {
        Self {
            id: uuid::Uuid::new_v4().simple().to_string(),
            at: crate::model::format_ms(at_ms),
            at_ms,
            kind,
            message: message.to_string(),
            debate_id: None,
            agent: None,
        }
    }

    pub fn debate(mut self, id: &str) -> Self {
        self.debate_id = Some(id.to_string());
        self
    }

    pub fn agent(mut self, name: &str) -> Self {
        self.agent = Some(name.to_string());
        self
    }
}

/// The log; clones share it.
#[derive(Clone, Default)]
pub struct ErrorLog {
    /// What is not in the shared table.
    entries: Arc<Mutex<VecDeque<ErrorEntry>>>,
    /// Values masked in every message (the configuration's secrets).
    secrets: Arc<Vec<String>>,
    shared: Arc<OnceLock<SharedTable>>,
}

#[derive(Clone)]
struct SharedTable {
    pool: AnyPool,
    /// Who recorded a row (the orchestrator's lease owner id).
    replica: String,
}

impl ErrorLog {
    /// A log masking `secrets` (see `aragora_config::redact::secret_values`).
    pub fn new(secrets: Vec<String>) -> Self {
        Self {
            entries: Arc::default(),
            secrets: Arc::new(secrets),
            shared: Arc::default(),
        }
    }

    /// From now on, errors go to `pool`'s shared table (a second call changes nothing).
    pub fn attach(&self, pool: AnyPool, replica: &str) {
        let _ = self.shared.set(SharedTable {
            pool,
            replica: replica.to_string(),
        });
    }

    /// Notes an error of `kind` now.
    pub fn record(&self, kind: ErrorKind, message: &str) {
        self.push(ErrorEntry::new(kind, message, now_ms()));
    }

    /// Notes an error with its context (debate, agent); its message is scrubbed here.
    pub fn push(&self, mut entry: ErrorEntry) {
        let scrubbed = aragora_config::scrub(&entry.message, &self.secrets);
        entry.message = match scrubbed.char_indices().nth(MAX_MESSAGE_CHARS) {
            Some((cut, _)) => format!("{}…", &scrubbed[..cut]),
            None => scrubbed,
        };
        if let (Some(table), Ok(runtime)) =
            (self.shared.get(), tokio::runtime::Handle::try_current())
        {
            let (table, row) = (table.clone(), entry.clone());
            runtime.spawn(async move {
                if let Err(err) = insert(&table, &row).await {
                    tracing::warn!(error = %err, kind = row.kind.as_str(), "cannot write an error to system_errors; only this replica lists it (from memory)");
                }
            });
        }
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() == CAPACITY {
            entries.pop_front();
        }
        entries.push_back(entry);
    }

    /// The newest `limit` of the shared table, newest first (none before [`Self::attach`]).
    pub async fn shared(&self, limit: usize) -> Result<Vec<ErrorEntry>, sqlx::Error> {
        let Some(table) = self.shared.get() else {
            return Ok(Vec::new());
        };
        let rows = sqlx::query(
            "SELECT id, at_ms, kind, message, debate_id, agent FROM system_errors \
             ORDER BY at_ms DESC, seq DESC LIMIT $1",
        )
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&table.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let kind: String = row.try_get("kind")?;
                let kind = ErrorKind::parse(&kind).ok_or_else(|| {
                    sqlx::Error::Decode(format!("unknown error kind {kind:?}").into())
                })?;
                let mut entry = ErrorEntry::new(
                    kind,
                    &row.try_get::<String, _>("message")?,
                    row.try_get("at_ms")?,
                );
                entry.id = row.try_get("id")?;
                entry.debate_id = row.try_get("debate_id")?;
                entry.agent = row.try_get("agent")?;
                Ok(entry)
            })
            .collect()
    }

    /// The newest `limit` of this replica's ring, newest first.
    pub fn recent(&self, limit: usize) -> Vec<ErrorEntry> {
        self.entries
            .lock()
            .map(|entries| entries.iter().rev().take(limit).cloned().collect())
            .unwrap_or_default()
    }
}

/// Writes `entry` and prunes the table to the newest [`CAPACITY`] rows.
async fn insert(table: &SharedTable, entry: &ErrorEntry) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO system_errors (id, at_ms, kind, message, debate_id, agent, replica) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&entry.id)
    .bind(entry.at_ms)
    .bind(entry.kind.as_str())
    .bind(&entry.message)
    .bind(entry.debate_id.as_deref())
    .bind(entry.agent.as_deref())
    .bind(&table.replica)
    .execute(&table.pool)
    .await?;
    sqlx::query(
        "DELETE FROM system_errors WHERE seq <= \
         (SELECT seq FROM system_errors ORDER BY seq DESC LIMIT 1 OFFSET $1)",
    )
    .bind(CAPACITY as i64)
    .execute(&table.pool)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_newest_and_masks_secrets() {
        let log = ErrorLog::new(vec!["sk-secret-key-1234".into()]);
        for i in 0..CAPACITY + 5 {
            log.record(ErrorKind::AgentError, &format!("call {i} failed"));
        }
        log.push(
            ErrorEntry::new(
                ErrorKind::AgentError,
                "401 from provider: key sk-secret-key-1234 is invalid",
                now_ms(),
            )
            .debate("d1")
            .agent("anthropic"),
        );
        let recent = log.recent(3);
        assert_eq!(recent.len(), 3);
        assert_eq!(recent[0].message, "401 from provider: key *** is invalid");
        assert_eq!(recent[0].debate_id.as_deref(), Some("d1"));
        assert_eq!(recent[1].message, format!("call {} failed", CAPACITY + 4));
        assert_eq!(log.recent(usize::MAX).len(), CAPACITY);
        assert_eq!(
            log.recent(usize::MAX).last().unwrap().message,
            "call 6 failed"
        );
    }

    #[test]
    fn kinds_are_stored_by_their_api_names() {
        for kind in ErrorKind::ALL {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
            assert_eq!(ErrorKind::parse(kind.as_str()), Some(kind));
        }
    }

    #[test]
    fn long_messages_are_cut() {
        let log = ErrorLog::default();
        log.record(ErrorKind::DebateFailed, &"é".repeat(MAX_MESSAGE_CHARS + 10));
        let kept = &log.recent(1)[0].message;
        assert_eq!(kept.chars().count(), MAX_MESSAGE_CHARS + 1);
    }
}
