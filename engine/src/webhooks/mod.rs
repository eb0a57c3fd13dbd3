//! Webhooks (the Operations Runbook's Webhook Delivery Manager): admins subscribe a URL to
//! event types; each event becomes one delivery row per subscription in the transaction that
//! records it (an outbox), and every replica's worker sends due rows under a lease, signed,
//! retried with backoff, behind a breaker per receiver shared by every replica, and dead-lettered when out of retries.
//!
//! | module | owns |
//! |---|---|
//! | [`outbox`] | the tables: subscriptions, deliveries, claiming and finishing |
//! | [`delivery`] | the worker: sending, outcomes, metrics |
//! | [`retry`] | backoff, `Retry-After` |
//! | [`breaker`] | the breaker of each receiver endpoint, shared by the replicas |
//! | [`egress`] | which URLs and addresses may be sent to |
//! | [`signing`] | the signature and delivery headers |
//! | [`secrets`] | subscription secrets encrypted at rest |
//! | [`pyjson`] | bodies written as Python's `json.dumps` writes them |

pub mod breaker;
pub mod delivery;
pub mod egress;
pub mod outbox;
pub mod pyjson;
pub mod retry;
pub mod secrets;
pub mod signing;

pub use delivery::{DeliverySettings, Webhooks};

use crate::model::{DebateEvent, EventKind};

/// What a subscription can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    DebateStart,
    DebateEnd,
    Consensus,
    /// A debate that ended failed or timed out (its `debate_end` is sent too).
    DebateFailed,
    /// A DR drill that failed, when its result is recorded.
    DrillFailed,
    /// An alert Alertmanager sent to control's sink (firing or resolved), one per alert.
    SloAlert,
}

impl EventType {
    pub const ALL: [Self; 6] = [
        Self::DebateStart,
        Self::DebateEnd,
        Self::Consensus,
        Self::DebateFailed,
        Self::DrillFailed,
        Self::SloAlert,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::DebateStart => "debate_start",
            Self::DebateEnd => "debate_end",
            Self::Consensus => "consensus",
            Self::DebateFailed => "debate_failed",
            Self::DrillFailed => "drill_failed",
            Self::SloAlert => "slo_alert",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == text)
    }

    /// The names, for messages.
    pub fn names() -> String {
        Self::ALL.map(Self::as_str).join(", ")
    }

    /// The webhook events a recorded debate event is.
    pub fn of_debate_event(event: &DebateEvent) -> Vec<Self> {
        match event.kind {
            EventKind::DebateStart => vec![Self::DebateStart],
            EventKind::Consensus => vec![Self::Consensus],
            EventKind::DebateEnd => {
                let failed = event
                    .data
                    .get("outcome")
                    .and_then(|o| o.as_str())
                    .is_some_and(|o| o == "failed" || o == "timed_out");
                if failed {
                    vec![Self::DebateEnd, Self::DebateFailed]
                } else {
                    vec![Self::DebateEnd]
                }
            }
            _ => Vec::new(),
        }
    }
}
