//! Per-client limits: what keeps one client from taking a replica's WebSockets, its debate
//! queue or its database (by huge pages of a list) for itself.
//!
//! **A client is the credential's subject** ([`Principal::subject`]: a JWT's `sub`, `key:<id>`
//! for an API key, `admin-token` for `ARAGORA_API_TOKEN`, `loop:<id>` for the runbook's
//! tokens), so every process sharing a credential is one client, and one user holding two keys
//! is two. Callers admitted without a credential (`ARAGORA_AUTH_ANONYMOUS`) are one client
//! together, `anonymous`: behind the gateway the engine sees no client address, and per address
//! it is the gateway's rate limit that applies. Open WebSockets and debates queued or running
//! are counted across the replicas when they share Redis ([`crate::client_slots`]: leases that
//! a dead replica's slots outlive by at most `ARAGORA_CLIENT_LIMIT_LEASE_SECS`), and by this
//! replica alone without Redis or while it does not answer; the other limits are per
//! connection or per request. The message rate is this replica's.
//!
//! | limit | setting (default) | refusal | `aragora_client_limit_refusals_total{limit}` |
//! |---|---|---|---|
//! | WebSockets open | `ARAGORA_WS_MAX_CONNECTIONS_PER_CLIENT` (256) | 429 `client_limit` at the upgrade | `websockets_per_client` |
//! | subscriptions on one WebSocket | `ARAGORA_WS_MAX_SUBSCRIPTIONS` (100) | `error` event `client_limit`; the connection stays | `subscriptions_per_websocket` |
//! | messages on its WebSockets | `ARAGORA_WS_MAX_MESSAGES_PER_SECOND` (100, bursts of as many) | close 1008 (policy) with the setting named; the other connections stay | `messages_per_websocket` |
//! | debates queued or running | `ARAGORA_DEBATE_QUEUE_PER_CLIENT` (50) | 429 `client_limit` (the orchestrator counts) | `debates_per_client` |
//! | `limit` of a list query | `ARAGORA_MAX_LIST_LIMIT` (100) | 400 `invalid_request` | `list_limit` |
//!
//! Each refusal names its setting in the message and is counted. HTTP refusals are logged each
//! (as requests are); a WebSocket logs its first refusal of each kind only, so a client flooding
//! one connection cannot flood the log too.
//!
//! The message rate is there because the gateway's rate limit sees a WebSocket as one request:
//! without it one connection could have the engine replay a debate from the store at whatever
//! rate it can send subscribes (the load test measured 22,000 a second from one client). It is
//! the client's, shared by its open WebSockets, so reconnecting does not refill it while the
//! client holds another; a connection over it is closed rather than answered message by
//! message, since each answer would cost as much as the message. (A client with none left open
//! starts afresh: reconnecting is an upgrade request, under the gateway's rate limit.)

use super::AppState;
use crate::error::ApiError;
use aragora_auth::Principal;
use aragora_gcra::{Bucket, Gcra};
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
    Messages,
    Debates,
    ListLimit,
}

impl ClientLimit {
    /// The `limit` label (one of the catalogue's `CLIENT_LIMITS`).
    pub fn label(self) -> &'static str {
        match self {
            Self::WebSockets => "websockets_per_client",
            Self::Subscriptions => "subscriptions_per_websocket",
            Self::Messages => "messages_per_websocket",
            Self::Debates => "debates_per_client",
            Self::ListLimit => "list_limit",
        }
    }

    pub fn setting(self) -> &'static str {
        match self {
            Self::WebSockets => "ARAGORA_WS_MAX_CONNECTIONS_PER_CLIENT",
            Self::Subscriptions => "ARAGORA_WS_MAX_SUBSCRIPTIONS",
            Self::Messages => "ARAGORA_WS_MAX_MESSAGES_PER_SECOND",
            Self::Debates => "ARAGORA_DEBATE_QUEUE_PER_CLIENT",
            Self::ListLimit => "ARAGORA_MAX_LIST_LIMIT",
        }
    }
}

/// Counts one refusal by `limit` (see [`log`] for the log line).
pub fn count(state: &AppState, limit: ClientLimit) {
    state.metrics.client_limit_refused(limit.label());
}

/// Logs that `subject` reached `limit`.
pub fn log(limit: ClientLimit, subject: &str) {
    tracing::warn!(
        limit = limit.label(),
        setting = limit.setting(),
        subject,
        "refused: the client reached its limit"
    );
}

/// The refusals of one WebSocket: each counted, the first of each kind logged.
#[derive(Debug, Default)]
pub struct ConnectionRefusals(Vec<ClientLimit>);

impl ConnectionRefusals {
    pub fn refuse(&mut self, state: &AppState, limit: ClientLimit, subject: &str) {
        count(state, limit);
        if !self.0.contains(&limit) {
            self.0.push(limit);
            log(limit, subject);
        }
    }
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
    count(state, limit);
    log(limit, subject);
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
    page_size(i64::from(state.config.max_list_limit), requested).inspect_err(|_| {
        count(state, ClientLimit::ListLimit);
        log(ClientLimit::ListLimit, &principal.subject);
    })
}

/// A list query's page size checked against `max` (`ARAGORA_MAX_LIST_LIMIT`): 20 (or `max`
/// when smaller) when absent, 400 outside 1..=`max`.
pub fn page_size(max: i64, requested: Option<i64>) -> Result<i64, ApiError> {
    let limit = requested.unwrap_or(DEFAULT_PAGE.min(max));
    if (1..=max).contains(&limit) {
        return Ok(limit);
    }
    Err(ApiError::bad_request(format!(
        "limit is {limit}; use 1 to {max} (ARAGORA_MAX_LIST_LIMIT) and page on with offset"
    )))
}

/// Where a list query's page starts: 0 when absent, 400 when negative.
pub fn list_offset(requested: Option<i64>) -> Result<i64, ApiError> {
    match requested.unwrap_or(0) {
        offset if offset < 0 => Err(ApiError::bad_request(format!(
            "offset is {offset}; use 0 or more"
        ))),
        offset => Ok(offset),
    }
}

/// A client's message allowance: `rate` a second, in bursts of up to `rate` (a client that
/// subscribes to its 100 debates at connect is not refused), refilled continuously: the
/// gateway's GCRA ([`aragora_gcra`]) over one cell.
fn message_budget(rate: u32) -> Bucket {
    let rate = u64::from(rate.max(1));
    Bucket::new(Gcra::per_second(rate, rate).expect("a rate of at least 1"))
}

/// A client's open WebSockets and the message allowance they share.
#[derive(Debug)]
struct ClientEntry {
    open: usize,
    budget: Bucket,
}

/// Open WebSockets per client on this replica, and their message allowance.
#[derive(Debug, Default, Clone)]
pub struct ClientCounts(Arc<Mutex<HashMap<String, ClientEntry>>>);

impl ClientCounts {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ClientEntry>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One more for `client` (a client new here gets an allowance of `rate` messages a
    /// second), and how many it held here before: whoever decides the limit
    /// ([`crate::client_slots`]) refuses by dropping the slot. The slot is given back when the
    /// returned guard drops, however the connection ends.
    pub fn take(&self, client: &str, rate: u32) -> (ClientSlot, usize) {
        let mut counts = self.lock();
        let entry = counts
            .entry(client.to_string())
            .or_insert_with(|| ClientEntry {
                open: 0,
                budget: message_budget(rate),
            });
        let before = entry.open;
        entry.open += 1;
        let slot = ClientSlot {
            counts: self.clone(),
            client: client.to_string(),
            shared: None,
        };
        (slot, before)
    }

    /// What `client` holds now.
    pub fn held(&self, client: &str) -> usize {
        self.lock().get(client).map_or(0, |entry| entry.open)
    }
}

/// One open WebSocket of a client, counted in its [`ClientCounts`] while it lives.
#[derive(Debug)]
pub struct ClientSlot {
    counts: ClientCounts,
    client: String,
    /// Its place in the replicas' count, given back with it.
    shared: Option<crate::client_slots::Slot>,
}

impl ClientSlot {
    /// Keeps `slot` (the replicas' count of this connection) for as long as this one lives.
    pub fn with_shared(mut self, slot: crate::client_slots::Slot) -> Self {
        self.shared = Some(slot);
        self
    }

    /// Takes one message from the client's allowance; false when it is over its rate.
    pub fn take_message(&self) -> bool {
        self.counts
            .lock()
            .get_mut(&self.client)
            .is_none_or(|entry| entry.budget.take())
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock();
        if let Some(entry) = counts.get_mut(&self.client) {
            entry.open = entry.open.saturating_sub(1);
            if entry.open == 0 {
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
        let (first, before) = counts.take("key:a", 3);
        assert_eq!(before, 0);
        let (second, before) = counts.take("key:a", 3);
        assert_eq!(before, 1);
        let (refused, before) = counts.take("key:a", 3);
        assert_eq!(before, 2, "a third sees the two it would exceed");
        drop(refused);
        assert_eq!(
            counts.held("key:a"),
            2,
            "a refused one gives its place back"
        );
        assert_eq!(counts.take("key:b", 3).1, 0, "another client counts apart");
        // The allowance is the client's: its connections share it.
        assert!(first.take_message() && second.take_message() && first.take_message());
        assert!(!second.take_message(), "three a second between them");
        drop(first);
        assert_eq!(counts.held("key:a"), 1);
        let (third, before) = counts.take("key:a", 3);
        assert_eq!(before, 1, "a slot given back");
        assert!(!third.take_message(), "a new connection does not refill it");
        drop((second, third));
        assert_eq!(counts.held("key:a"), 0);
        assert!(counts.0.lock().unwrap().is_empty(), "no entry left behind");
    }

    #[test]
    fn a_budget_allows_a_burst_of_its_rate_then_its_rate() {
        let mut budget = message_budget(10);
        assert_eq!((0..20).filter(|_| budget.take_at(0.0)).count(), 10);
        assert_eq!((0..20).filter(|_| budget.take_at(0.5)).count(), 5);
        assert_eq!(
            (0..20).filter(|_| budget.take_at(60.5)).count(),
            10,
            "never more than a burst"
        );
    }

    #[test]
    fn every_limit_is_a_label_of_the_catalogue() {
        for limit in [
            ClientLimit::WebSockets,
            ClientLimit::Subscriptions,
            ClientLimit::Messages,
            ClientLimit::Debates,
            ClientLimit::ListLimit,
        ] {
            assert!(aragora_telemetry::catalogue::CLIENT_LIMITS.contains(&limit.label()));
        }
    }
}
