//! The debate's data: its states, its events, and the request that starts one.
//!
//! Plain data with no I/O. The store persists these types and the HTTP layer renders them.

use chrono::{TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where a debate is in its life. `queued` and `running` are active; `interrupted` means a
/// drain stopped it and the next start resumes it; the others are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DebateStatus {
    Queued,
    Running,
    Completed,
    Failed,
    Cancelled,
    TimedOut,
    Interrupted,
}

impl DebateStatus {
    pub const ALL: [DebateStatus; 7] = [
        Self::Queued,
        Self::Running,
        Self::Completed,
        Self::Failed,
        Self::Cancelled,
        Self::TimedOut,
        Self::Interrupted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::TimedOut => "timed_out",
            Self::Interrupted => "interrupted",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == text)
    }

    /// A final state never changes again.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Failed | Self::Cancelled | Self::TimedOut
        )
    }
}

/// How the final vote decides whether the agents reached consensus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ConsensusRule {
    /// More than half of the votes for one proposal.
    #[default]
    Majority,
    /// At least two thirds of the votes for one proposal.
    Supermajority,
    /// Every vote for the same proposal.
    Unanimous,
}

impl ConsensusRule {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Majority => "majority",
            Self::Supermajority => "supermajority",
            Self::Unanimous => "unanimous",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Majority, Self::Supermajority, Self::Unanimous]
            .into_iter()
            .find(|rule| rule.as_str() == text)
    }

    /// Whether `votes` of `total` for the leading proposal reach this rule.
    pub fn reached(self, votes: usize, total: usize) -> bool {
        if total == 0 {
            return false;
        }
        match self {
            Self::Majority => votes * 2 > total,
            Self::Supermajority => votes * 3 >= total * 2,
            Self::Unanimous => votes == total,
        }
    }
}

/// How a finished debate ended; the `outcome` label of `aragora_debates_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Consensus,
    NoConsensus,
    Failed,
    TimedOut,
    Cancelled,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Consensus => "consensus",
            Self::NoConsensus => "no_consensus",
            Self::Failed => "failed",
            Self::TimedOut => "timed_out",
            Self::Cancelled => "cancelled",
        }
    }

    /// How the debate-success SLO counts this outcome: `Some(true)` a success, `Some(false)` a
    /// failure, `None` neither.
    ///
    /// - consensus and no_consensus: **success**. The engine did its job; whether agents agree
    ///   is the debate's answer, not a fault.
    /// - failed (every agent or the store failed) and timed_out: **failure**. Input is validated
    ///   before a debate exists, so these are system or provider faults.
    /// - cancelled: **neither**. A user chose to stop it.
    ///
    /// So the SLI is `sum(rate(aragora_debates_total{outcome=~"consensus|no_consensus"}[w]))
    /// / sum(rate(aragora_debates_total{outcome!="cancelled"}[w]))`.
    pub fn slo_success(self) -> Option<bool> {
        match self {
            Self::Consensus | Self::NoConsensus => Some(true),
            Self::Failed | Self::TimedOut => Some(false),
            Self::Cancelled => None,
        }
    }

    pub const ALL: [Outcome; 5] = [
        Self::Consensus,
        Self::NoConsensus,
        Self::Failed,
        Self::TimedOut,
        Self::Cancelled,
    ];

    pub fn status(self) -> DebateStatus {
        match self {
            Self::Consensus | Self::NoConsensus => DebateStatus::Completed,
            Self::Failed => DebateStatus::Failed,
            Self::TimedOut => DebateStatus::TimedOut,
            Self::Cancelled => DebateStatus::Cancelled,
        }
    }
}

/// The kinds of event a WebSocket subscriber receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    DebateStart,
    RoundStart,
    AgentMessage,
    Critique,
    Vote,
    Consensus,
    DebateEnd,
    Error,
    Heartbeat,
    /// Streamed text of a message being written; not persisted, no seq.
    TokenDelta,
    /// An agent's provider failed (or its breaker was open) and OpenRouter answered instead.
    AgentFallbackTriggered,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DebateStart => "debate_start",
            Self::RoundStart => "round_start",
            Self::AgentMessage => "agent_message",
            Self::Critique => "critique",
            Self::Vote => "vote",
            Self::Consensus => "consensus",
            Self::DebateEnd => "debate_end",
            Self::Error => "error",
            Self::Heartbeat => "heartbeat",
            Self::TokenDelta => "token_delta",
            Self::AgentFallbackTriggered => "agent_fallback_triggered",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::DebateStart,
            Self::RoundStart,
            Self::AgentMessage,
            Self::Critique,
            Self::Vote,
            Self::Consensus,
            Self::DebateEnd,
            Self::Error,
            Self::Heartbeat,
            Self::TokenDelta,
            Self::AgentFallbackTriggered,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == text)
    }

    /// Events that carry an agent's words, listed by `GET /api/debates/{id}/messages`.
    pub fn is_message(self) -> bool {
        matches!(self, Self::AgentMessage | Self::Critique | Self::Vote)
    }
}

/// One persisted step of a debate. `seq` starts at 1 and has no gaps within a debate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DebateEvent {
    #[serde(rename = "type")]
    pub kind: EventKind,
    pub debate_id: String,
    pub seq: i64,
    pub round: Option<i64>,
    pub agent: Option<String>,
    pub data: Value,
    pub timestamp: String,
    /// `timestamp` as Unix milliseconds, for the store.
    #[serde(skip)]
    pub at_ms: i64,
}

impl DebateEvent {
    pub fn new(
        debate_id: &str,
        seq: i64,
        kind: EventKind,
        round: Option<i64>,
        agent: Option<&str>,
        data: Value,
        at_ms: i64,
    ) -> Self {
        Self {
            kind,
            debate_id: debate_id.to_string(),
            seq,
            round,
            agent: agent.map(str::to_string),
            data,
            timestamp: format_ms(at_ms),
            at_ms,
        }
    }
}

/// A debate's row: what it is about and where it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct DebateRecord {
    pub id: String,
    pub topic: String,
    pub status: DebateStatus,
    pub rounds: i64,
    pub agents: Vec<String>,
    pub consensus_rule: ConsensusRule,
    pub seed: i64,
    pub created_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    pub updated_at_ms: i64,
    pub outcome: Option<Outcome>,
    pub consensus_reached: Option<bool>,
    pub final_answer: Option<String>,
    pub error: Option<String>,
    pub last_seq: i64,
}

/// Fields a state transition sets; `None` leaves a column as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatusUpdate {
    pub status: Option<DebateStatus>,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    pub outcome: Option<Outcome>,
    pub consensus_reached: Option<bool>,
    pub final_answer: Option<String>,
    pub error: Option<String>,
}

impl StatusUpdate {
    pub fn to(status: DebateStatus) -> Self {
        Self {
            status: Some(status),
            ..Self::default()
        }
    }
}

pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// RFC 3339 with milliseconds, UTC: what every timestamp in the API looks like.
pub fn format_ms(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
