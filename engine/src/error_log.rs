//! The recent errors of this replica, for `GET /api/system/errors`: failed debates, agent
//! errors, failed retention cleanups, and whatever other code records ([`ErrorLog::record`]).
//!
//! A ring in memory, per replica: the newest [`CAPACITY`] entries, lost at restart. Errors
//! happen on the replica that runs the work, and a ring costs nothing on the debate path (no
//! write to the database per failed agent call); what must survive a restart and be the same
//! on every replica is read from the database by the endpoint instead (failed DR drills, from
//! the DR log). Every message is scrubbed of the configuration's secrets before it is kept
//! (provider errors may quote a key), and cut to [`MAX_MESSAGE_CHARS`].

use crate::model::now_ms;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// Entries kept per replica.
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

/// One error.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ErrorEntry {
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

/// The ring; clones share it.
#[derive(Clone, Default)]
pub struct ErrorLog {
    entries: Arc<Mutex<VecDeque<ErrorEntry>>>,
    /// Values masked in every message (the configuration's secrets).
    secrets: Arc<Vec<String>>,
}

impl ErrorLog {
    /// A log masking `secrets` (see `aragora_config::redact::secret_values`).
    pub fn new(secrets: Vec<String>) -> Self {
        Self {
            entries: Arc::default(),
            secrets: Arc::new(secrets),
        }
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
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() == CAPACITY {
            entries.pop_front();
        }
        entries.push_back(entry);
    }

    /// The newest `limit`, newest first.
    pub fn recent(&self, limit: usize) -> Vec<ErrorEntry> {
        self.entries
            .lock()
            .map(|entries| entries.iter().rev().take(limit).cloned().collect())
            .unwrap_or_default()
    }
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
    fn long_messages_are_cut() {
        let log = ErrorLog::default();
        log.record(ErrorKind::DebateFailed, &"é".repeat(MAX_MESSAGE_CHARS + 10));
        let kept = &log.recent(1)[0].message;
        assert_eq!(kept.chars().count(), MAX_MESSAGE_CHARS + 1);
    }
}
