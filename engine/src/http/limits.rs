//! Per-client limits: what keeps one client from taking a replica's WebSockets, its debate
//! queue or its database (by huge pages of a list) for itself.
//!
//! **A client is the credential's subject** ([`Principal::subject`]: a JWT's `sub`, `key:<id>`
//! for an API key, `admin-token` for `ARAGORA_API_TOKEN`, `loop:<id>` for the runbook's
//! tokens), so every process sharing a credential is one client, and one user holding two keys
//! is two. Callers admitted without a credential (`ARAGORA_AUTH_ANONYMOUS`) are one client
//! together, `anonymous`: behind the gateway the engine sees no client address, and per address
//! it is the gateway's rate limit that applies. The counts are this replica's: N replicas let a
//! client hold N times as much, which is what each replica can bear.
//!
//! | limit | setting (default) | refusal | `aragora_client_limit_refusals_total{limit}` |
//! |---|---|---|---|
//! | WebSockets open | `ARAGORA_WS_MAX_CONNECTIONS_PER_CLIENT` (256) | 429 `client_limit` at the upgrade | `websockets_per_client` |
//! | subscriptions on one WebSocket | `ARAGORA_WS_MAX_SUBSCRIPTIONS` (100) | `error` event `client_limit`; the connection stays | `subscriptions_per_websocket` |
//! | debates queued or running | `ARAGORA_DEBATE_QUEUE_PER_CLIENT` (50) | 429 `client_limit` (the orchestrator counts) | `debates_per_client` |
//! | `limit` of a list query | `ARAGORA_MAX_LIST_LIMIT` (100) | 400 `invalid_request` | `list_limit` |
//!
//! Each refusal names its setting in the message, is counted and logged with the subject.

use super::AppState;
use crate::error::ApiError;
use aragora_auth::Principal;
use axum::http::StatusCode;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The error code of every per-client refusal.
pub const CODE: &str = "client_limit";

/// Page size of a list query that names no `limit`.
const DEFAULT_PAGE: i64 = 20;

/// One per-client limit: its label on the refusal counter and its setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientLimit {
    WebSockets,
    Subscriptions,
    Debates,
    ListLimit,
}

impl ClientLimit {
    /// The `limit` label (one of the catalogue's `CLIENT_LIMITS`).
    pub fn label(self) -> &'static str {
        match self {
            Self::WebSockets => "websockets_per_client",
            Self::Subscriptions => "subscriptions_per_websocket",
            Self::Debates => "debates_per_client",
            Self::ListLimit => "list_limit",
        }
    }

    pub fn setting(self) -> &'static str {
        match self {
            Self::WebSockets => "ARAGORA_WS_MAX_CONNECTIONS_PER_CLIENT",
            Self::Subscriptions => "ARAGORA_WS_MAX_SUBSCRIPTIONS",
            Self::Debates => "ARAGORA_DEBATE_QUEUE_PER_CLIENT",
            Self::ListLimit => "ARAGORA_MAX_LIST_LIMIT",
        }
    }
}

/// Counts and logs one refusal by `limit` of `subject`.
pub fn count(state: &AppState, limit: ClientLimit, subject: &str) {
    state.metrics.client_limit_refused(limit.label());
    tracing::warn!(
        limit = limit.label(),
        setting = limit.setting(),
        subject,
        "refused: the client reached its limit"
    );
}

/// A 429 `client_limit` for `subject`, counted; `message` says what was refused and how to
/// get in again.
pub fn too_many(
    state: &AppState,
    limit: ClientLimit,
    subject: &str,
    message: impl Into<String>,
    retry_after: u64,
) -> ApiError {
    count(state, limit, subject);
    ApiError::new(StatusCode::TOO_MANY_REQUESTS, CODE, message).retry_after(retry_after)
}

/// The page size a list query asked for: 20 (or `ARAGORA_MAX_LIST_LIMIT` when smaller) when
/// absent, 400 outside 1..=`ARAGORA_MAX_LIST_LIMIT`, counted. Every list endpoint pages
/// through this one function.
pub fn list_limit(
    state: &AppState,
    principal: &Principal,
    requested: Option<i64>,
) -> Result<i64, ApiError> {
    let max = i64::from(state.config.max_list_limit);
    let limit = requested.unwrap_or(DEFAULT_PAGE.min(max));
    if (1..=max).contains(&limit) {
        return Ok(limit);
    }
    count(state, ClientLimit::ListLimit, &principal.subject);
    Err(ApiError::bad_request(format!(
        "limit is {limit}; use 1 to {max} (ARAGORA_MAX_LIST_LIMIT) and page on with offset"
    )))
}

/// Open WebSockets per client on this replica.
#[derive(Debug, Default, Clone)]
pub struct ClientCounts(Arc<Mutex<HashMap<String, usize>>>);

impl ClientCounts {
    /// One more for `client` when it holds fewer than `max`; the slot is given back when the
    /// returned guard drops, however the connection ends.
    pub fn try_take(&self, client: &str, max: usize) -> Option<ClientSlot> {
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let held = counts.entry(client.to_string()).or_default();
        if *held >= max {
            return None;
        }
        *held += 1;
        Some(ClientSlot {
            counts: self.clone(),
            client: client.to_string(),
        })
    }

    /// What `client` holds now.
    pub fn held(&self, client: &str) -> usize {
        let counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        counts.get(client).copied().unwrap_or(0)
    }
}

/// One open WebSocket of a client, counted in its [`ClientCounts`] while it lives.
#[derive(Debug)]
pub struct ClientSlot {
    counts: ClientCounts,
    client: String,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = counts.get_mut(&self.client) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                // No entry per client that ever connected: the map holds only open ones.
                counts.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_up_to_its_limit_and_its_slots_back_as_they_drop() {
        let counts = ClientCounts::default();
        let first = counts.try_take("key:a", 2).expect("first");
        let second = counts.try_take("key:a", 2).expect("second");
        assert!(counts.try_take("key:a", 2).is_none(), "a third is refused");
        assert!(counts.try_take("key:b", 2).is_some(), "another client is not");
        drop(first);
        assert_eq!(counts.held("key:a"), 1);
        let third = counts.try_take("key:a", 2).expect("a slot given back");
        drop((second, third));
        assert_eq!(counts.held("key:a"), 0);
        assert!(counts.0.lock().unwrap().is_empty(), "no entry left behind");
    }

    #[test]
    fn every_limit_is_a_label_of_the_catalogue() {
        for limit in [
            ClientLimit::WebSockets,
            ClientLimit::Subscriptions,
            ClientLimit::Debates,
            ClientLimit::ListLimit,
        ] {
            assert!(aragora_telemetry::catalogue::CLIENT_LIMITS.contains(&limit.label()));
        }
    }
}
