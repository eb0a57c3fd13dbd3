//! The debate's data: its states, its events, and the request that starts one.
//!
//! Plain data with no I/O. The store persists these types and the HTTP layer renders them.
//! An event's content is an [`EventPayload`], one variant per kind with typed fields; its serde
//! form (`type` + `data`) is the stored and wire form, so the store keeps `data` as JSON and
//! [`DebateEvent::payload`] reads it back. A [`Step`] names what a resumed debate must not
//! record twice.

use chrono::{TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Where a debate is in its life. `queued` and `running` are active; `interrupted` means a
/// drain stopped it and the next start resumes it; the others are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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

/// Which part of a debate a step is. Agent steps carry theirs in the payload's `phase`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// `debate_start`.
    Start,
    /// `round_start`.
    Round,
    /// Round 1: an agent's first position.
    Proposal,
    /// Later rounds: an agent's position in the light of the critiques it received.
    Revision,
    Critique,
    Vote,
    Consensus,
    /// `debate_end`.
    End,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Round => "round",
            Self::Proposal => "proposal",
            Self::Revision => "revision",
            Self::Critique => "critique",
            Self::Vote => "vote",
            Self::Consensus => "consensus",
            Self::End => "end",
        }
    }
}

/// A step's identity: a resumed debate skips every step whose identity is already recorded.
/// Debate-wide steps (start, consensus, end) have neither round nor agent; a round's start has
/// no agent.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Step {
    pub phase: Phase,
    pub round: Option<i64>,
    pub agent: Option<String>,
}

impl Step {
    /// A step of the whole debate: start, consensus or end.
    pub fn debate(phase: Phase) -> Self {
        Self {
            phase,
            round: None,
            agent: None,
        }
    }

    pub fn round_start(round: i64) -> Self {
        Self {
            phase: Phase::Round,
            round: Some(round),
            agent: None,
        }
    }

    pub fn agent(phase: Phase, round: i64, agent: &str) -> Self {
        Self {
            phase,
            round: Some(round),
            agent: Some(agent.to_string()),
        }
    }
}

/// What an event says, one variant per kind of debate event, as its `type` and `data` appear
/// on the wire and in the store (`#[serde(tag = "type", content = "data")]`). Field order is
/// the order the JSON has always had.
///
/// Connection notices of `/ws` (heartbeats, subscription errors) belong to no debate and are
/// not here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum EventPayload {
    DebateStart {
        topic: String,
        rounds: i64,
        agents: Vec<String>,
        consensus_rule: ConsensusRule,
        seed: i64,
    },
    RoundStart {
        round: i64,
        of: i64,
    },
    /// A proposal or a revision.
    AgentMessage {
        phase: Phase,
        text: String,
        provider: String,
    },
    Critique {
        phase: Phase,
        target: String,
        text: String,
        provider: String,
    },
    Vote {
        phase: Phase,
        /// The agent whose position this vote chose; `None` when the answer named none.
        choice: Option<String>,
        text: String,
        provider: String,
    },
    Consensus {
        reached: bool,
        rule: ConsensusRule,
        winner: Option<String>,
        /// Valid votes per chosen agent.
        votes: BTreeMap<String, usize>,
        dissenting: Vec<String>,
        final_answer: Option<String>,
    },
    DebateEnd {
        status: DebateStatus,
        outcome: Outcome,
        final_answer: Option<String>,
        error: Option<String>,
        duration_ms: i64,
    },
    /// An agent's call failed at one step; the debate goes on without that answer.
    Error {
        phase: Phase,
        message: String,
        /// Absent from the first version's events.
        #[serde(default)]
        error_type: String,
        provider: String,
    },
    /// Streamed text of a message being written; never stored.
    TokenDelta {
        phase: Phase,
        delta: String,
    },
    AgentFallbackTriggered {
        phase: Phase,
        from_provider: String,
        to_provider: String,
        model: String,
        reason: String,
    },
}

/// A stored event whose `data` does not fit its `type`.
#[derive(Debug, thiserror::Error)]
#[error("a {kind} event's data does not fit its type: {source}")]
pub struct PayloadError {
    pub kind: &'static str,
    #[source]
    pub source: serde_json::Error,
}

impl EventPayload {
    pub fn kind(&self) -> EventKind {
        match self {
            Self::DebateStart { .. } => EventKind::DebateStart,
            Self::RoundStart { .. } => EventKind::RoundStart,
            Self::AgentMessage { .. } => EventKind::AgentMessage,
            Self::Critique { .. } => EventKind::Critique,
            Self::Vote { .. } => EventKind::Vote,
            Self::Consensus { .. } => EventKind::Consensus,
            Self::DebateEnd { .. } => EventKind::DebateEnd,
            Self::Error { .. } => EventKind::Error,
            Self::TokenDelta { .. } => EventKind::TokenDelta,
            Self::AgentFallbackTriggered { .. } => EventKind::AgentFallbackTriggered,
        }
    }

    /// The phase of the step this event records; `None` for notes that complete no step (a
    /// fallback precedes its step's message, streamed text is never stored).
    pub fn step_phase(&self) -> Option<Phase> {
        match self {
            Self::DebateStart { .. } => Some(Phase::Start),
            Self::RoundStart { .. } => Some(Phase::Round),
            Self::Consensus { .. } => Some(Phase::Consensus),
            Self::DebateEnd { .. } => Some(Phase::End),
            Self::AgentMessage { phase, .. }
            | Self::Critique { phase, .. }
            | Self::Vote { phase, .. }
            | Self::Error { phase, .. } => Some(*phase),
            Self::TokenDelta { .. } | Self::AgentFallbackTriggered { .. } => None,
        }
    }

    /// The event's `type` and `data` as stored and sent.
    pub fn into_parts(self) -> (EventKind, Value) {
        let kind = self.kind();
        let data = match serde_json::to_value(self) {
            Ok(Value::Object(mut tagged)) => tagged.remove("data").unwrap_or(Value::Null),
            _ => unreachable!("an adjacently tagged enum of plain fields serializes to an object"),
        };
        (kind, data)
    }

    /// Reads a stored event's `type` and `data` back.
    pub fn from_parts(kind: EventKind, data: &Value) -> Result<Self, PayloadError> {
        let tagged = serde_json::json!({"type": kind, "data": data});
        serde_json::from_value(tagged).map_err(|source| PayloadError {
            kind: kind.as_str(),
            source,
        })
    }
}

/// One persisted step of a debate. `seq` starts at 1 and has no gaps within a debate.
///
/// `kind` and `data` are the stored form, kept as they were written (the store and the wire
/// carry them unchanged); [`DebateEvent::payload`] reads them as an [`EventPayload`].
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

    /// An event saying `payload`, at `round` and by `agent` where those apply.
    pub fn of(
        debate_id: &str,
        seq: i64,
        round: Option<i64>,
        agent: Option<&str>,
        payload: EventPayload,
        at_ms: i64,
    ) -> Self {
        let (kind, data) = payload.into_parts();
        Self::new(debate_id, seq, kind, round, agent, data, at_ms)
    }

    pub fn payload(&self) -> Result<EventPayload, PayloadError> {
        EventPayload::from_parts(self.kind, &self.data)
    }

    /// The step this event records, if it records one.
    pub fn step(&self, payload: &EventPayload) -> Option<Step> {
        Some(Step {
            phase: payload.step_phase()?,
            round: self.round,
            agent: self.agent.clone(),
        })
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
    /// The subject of the principal that created it (`None` for debates from before
    /// authentication); operators may cancel only their own.
    pub created_by: Option<String>,
    /// Which replica holds it and until when: see [`Lease`].
    pub lease: Lease,
    /// When a cancel reached a replica that does not run it; the owner ends it at its next
    /// lease renewal.
    pub cancel_requested_at_ms: Option<i64>,
}

/// A replica's hold on a debate. The replica that runs (or queues) a debate renews
/// `expires_at_ms`; once it passes, another replica may adopt the debate, which increments
/// `epoch`. Writes of a debate's events carry the [`Fence`] (owner and epoch) they were
/// claimed under, so a replica that lost the lease writes nothing more.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lease {
    /// The replica id (generated at each start) of the holder; `None` before the first claim.
    pub owner: Option<String>,
    pub epoch: i64,
    pub expires_at_ms: Option<i64>,
}

impl Lease {
    /// The fence of this lease, when someone holds it.
    pub fn fence(&self) -> Option<Fence> {
        Some(Fence {
            owner: self.owner.clone()?,
            epoch: self.epoch,
        })
    }
}

/// The fencing token of a write: applied only while the debate's owner and lease epoch are
/// still these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub owner: String,
    pub epoch: i64,
}

impl DebateRecord {
    /// A new debate's first row: queued at `now_ms`, nothing run yet.
    pub fn queued(
        id: String,
        topic: String,
        rounds: i64,
        agents: Vec<String>,
        consensus_rule: ConsensusRule,
        seed: i64,
        now_ms: i64,
    ) -> Self {
        Self {
            id,
            topic,
            status: DebateStatus::Queued,
            rounds,
            agents,
            consensus_rule,
            seed,
            created_at_ms: now_ms,
            started_at_ms: None,
            finished_at_ms: None,
            updated_at_ms: now_ms,
            outcome: None,
            consensus_reached: None,
            final_answer: None,
            error: None,
            last_seq: 0,
            created_by: None,
            lease: Lease::default(),
            cancel_requested_at_ms: None,
        }
    }

    /// The record, created by `subject`.
    pub fn created_by(mut self, subject: &str) -> Self {
        self.created_by = Some(subject.to_string());
        self
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Each kind's `data` as the engine before typed payloads stored it (`Value::to_string` of
    /// its `json!`), one per variant.
    const STORED: &[(EventKind, &str)] = &[
        (
            EventKind::DebateStart,
            r#"{"agents":["offline-skeptic","offline-optimist"],"consensus_rule":"supermajority","rounds":2,"seed":-42,"topic":"Should we ship on Fridays?"}"#,
        ),
        (EventKind::RoundStart, r#"{"of":2,"round":1}"#),
        (
            EventKind::AgentMessage,
            r#"{"phase":"proposal","provider":"offline","text":"Ship small, behind a flag."}"#,
        ),
        (
            EventKind::AgentMessage,
            r#"{"phase":"revision","provider":"anthropic","text":"Ship small; roll back fast."}"#,
        ),
        (
            EventKind::Critique,
            r#"{"phase":"critique","provider":"offline","target":"offline-optimist","text":"Where is the rollback?"}"#,
        ),
        (
            EventKind::Vote,
            r#"{"choice":"offline-skeptic","phase":"vote","provider":"offline","text":"I vote for offline-skeptic."}"#,
        ),
        (
            EventKind::Vote,
            r#"{"choice":null,"phase":"vote","provider":"openai","text":"No position convinces me."}"#,
        ),
        (
            EventKind::Consensus,
            r#"{"dissenting":["offline-optimist"],"final_answer":"Ship small, behind a flag.","reached":true,"rule":"majority","votes":{"offline-optimist":1,"offline-skeptic":2},"winner":"offline-skeptic"}"#,
        ),
        (
            EventKind::Consensus,
            r#"{"dissenting":[],"final_answer":null,"reached":false,"rule":"unanimous","votes":{"a":1,"b":1},"winner":null}"#,
        ),
        (
            EventKind::DebateEnd,
            r#"{"duration_ms":1234,"error":null,"final_answer":"Ship small, behind a flag.","outcome":"consensus","status":"completed"}"#,
        ),
        (
            EventKind::DebateEnd,
            r#"{"duration_ms":0,"error":"cancelled by request","final_answer":null,"outcome":"cancelled","status":"cancelled"}"#,
        ),
        (
            EventKind::Error,
            r#"{"error_type":"timeout","message":"no answer within ARAGORA_AGENT_TIMEOUT (30 s)","phase":"critique","provider":"gemini"}"#,
        ),
        (
            EventKind::AgentFallbackTriggered,
            r#"{"from_provider":"anthropic","model":"openai/gpt-4o-mini","phase":"proposal","reason":"HTTP 503","to_provider":"openrouter"}"#,
        ),
        (
            EventKind::TokenDelta,
            r#"{"delta":"Ship ","phase":"revision"}"#,
        ),
    ];

    #[test]
    fn stored_payloads_of_every_kind_read_back_and_render_byte_identical() {
        for (kind, stored) in STORED {
            let data: Value = serde_json::from_str(stored).unwrap();
            let payload = EventPayload::from_parts(*kind, &data)
                .unwrap_or_else(|err| panic!("{stored} does not read as {kind:?}: {err}"));
            assert_eq!(payload.kind(), *kind);
            let (rendered_kind, rendered) = payload.into_parts();
            assert_eq!(rendered_kind, *kind);
            assert_eq!(rendered, data, "{kind:?} renders the same value");
            assert_eq!(
                &rendered.to_string(),
                stored,
                "{kind:?} renders the same bytes"
            );
        }
        let kinds: std::collections::HashSet<&str> =
            STORED.iter().map(|(kind, _)| kind.as_str()).collect();
        assert_eq!(kinds.len(), 10, "every kind of debate event is covered");
    }

    /// The first version's error events had no `error_type`; a resume must still read them.
    #[test]
    fn an_error_event_of_the_first_version_reads_back() {
        let stored = json!({"message": "HTTP 503", "phase": "proposal", "provider": "offline"});
        let payload = EventPayload::from_parts(EventKind::Error, &stored).unwrap();
        let EventPayload::Error {
            phase, error_type, ..
        } = &payload
        else {
            panic!("an error reads as an error: {payload:?}");
        };
        assert_eq!((*phase, error_type.as_str()), (Phase::Proposal, ""));
        assert_eq!(payload.step_phase(), Some(Phase::Proposal));
    }

    /// The payload's own JSON is the wire's `type` and `data`.
    #[test]
    fn an_event_serializes_as_it_always_has() {
        let payload = EventPayload::RoundStart { round: 1, of: 3 };
        let event = DebateEvent::of("d1", 2, Some(1), None, payload, 0);
        assert_eq!(
            serde_json::to_string(&event).unwrap(),
            r#"{"type":"round_start","debate_id":"d1","seq":2,"round":1,"agent":null,"data":{"of":3,"round":1},"timestamp":"1970-01-01T00:00:00.000Z"}"#
        );
    }

    #[test]
    fn a_payload_missing_a_required_field_is_refused_with_its_kind() {
        let err = EventPayload::from_parts(
            EventKind::Critique,
            &json!({"phase": "critique", "text": "no target"}),
        )
        .unwrap_err();
        assert_eq!(err.kind, "critique");
        assert!(err.to_string().contains("target"), "{err}");
        assert!(EventPayload::from_parts(EventKind::Heartbeat, &json!({})).is_err());
    }

    #[test]
    fn a_step_is_named_by_phase_round_and_agent() {
        let message = EventPayload::AgentMessage {
            phase: Phase::Revision,
            text: "t".into(),
            provider: "offline".into(),
        };
        let event = DebateEvent::of("d1", 5, Some(2), Some("a"), message.clone(), 0);
        assert_eq!(
            event.step(&message),
            Some(Step::agent(Phase::Revision, 2, "a"))
        );
        let fallback = EventPayload::AgentFallbackTriggered {
            phase: Phase::Revision,
            from_provider: "x".into(),
            to_provider: "openrouter".into(),
            model: "m".into(),
            reason: "r".into(),
        };
        assert_eq!(event.step(&fallback), None, "a fallback completes no step");
        let start = DebateEvent::of(
            "d1",
            1,
            None,
            None,
            EventPayload::RoundStart { round: 1, of: 1 },
            0,
        );
        assert_eq!(
            start.step(&start.payload().unwrap()).unwrap().phase,
            Phase::Round
        );
    }
}
