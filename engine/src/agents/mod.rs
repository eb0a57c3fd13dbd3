//! Debate agents behind one trait, and the registry that names them.
//!
//! The debate state machine only ever talks to [`Agent`]; whether the words come from an LLM
//! provider or from the built-in offline agents is invisible to it. Offline agents are always
//! registered, are deterministic given a debate's seed, and say plainly that they are not LLMs.

mod offline;

pub use offline::{OfflineAgent, OFFLINE_AGENTS};

use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// What the debate asks of an agent at one step.
#[derive(Debug, Clone)]
pub enum AgentTask {
    /// First round: put forward a position on the topic.
    Propose,
    /// Criticise another agent's current position.
    Critique { target: String, position: String },
    /// Later rounds: restate one's position in the light of critiques received.
    Revise {
        position: String,
        critiques: Vec<(String, String)>,
    },
    /// The final vote: choose one of the positions, by agent name.
    Vote { positions: Vec<(String, String)> },
}

impl AgentTask {
    /// The phase name recorded in events (`data.phase`).
    pub fn phase(&self) -> &'static str {
        match self {
            Self::Propose => "proposal",
            Self::Critique { .. } => "critique",
            Self::Revise { .. } => "revision",
            Self::Vote { .. } => "vote",
        }
    }
}

/// One call to an agent.
#[derive(Debug, Clone)]
pub struct AgentRequest {
    pub debate_id: String,
    pub topic: String,
    pub round: i64,
    pub total_rounds: i64,
    /// The debate's seed; offline agents derive every choice from it.
    pub seed: i64,
    pub task: AgentTask,
}

/// An agent's answer. For a vote, `vote_for` names the chosen agent's position.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentReply {
    pub text: String,
    pub vote_for: Option<String>,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum AgentError {
    #[error("agent did not answer within {0:?}")]
    Timeout(Duration),
    #[error("agent failed: {0}")]
    Failed(String),
}

impl AgentError {
    /// The `status` label of `aragora_agent_calls_total`.
    pub fn status_label(&self) -> &'static str {
        match self {
            Self::Timeout(_) => "timeout",
            Self::Failed(_) => "error",
        }
    }
}

/// Something that takes part in debates.
#[async_trait]
pub trait Agent: Send + Sync + 'static {
    /// Unique name, used in requests (`"agents": [...]`) and as a metric label.
    fn name(&self) -> &str;
    /// `offline`, `anthropic`, `openai`, ...
    fn provider(&self) -> &str;
    /// The model behind it; offline agents say they are not an LLM.
    fn model(&self) -> &str;
    /// Whether it can take calls now (a provider key is set, its breaker is closed).
    fn available(&self) -> bool {
        true
    }
    async fn respond(&self, request: &AgentRequest) -> Result<AgentReply, AgentError>;
}

/// The agents this engine can put in a debate, by name.
#[derive(Clone, Default)]
pub struct AgentRegistry {
    agents: BTreeMap<String, Arc<dyn Agent>>,
    defaults: Vec<String>,
}

impl AgentRegistry {
    /// The built-in offline agents; the first three debate when a request names none.
    pub fn offline(latency: Duration) -> Self {
        let mut registry = Self::default();
        for stance in OFFLINE_AGENTS {
            registry.register(Arc::new(OfflineAgent::new(stance, latency)));
        }
        registry.defaults = OFFLINE_AGENTS
            .iter()
            .take(3)
            .map(|s| s.name.to_string())
            .collect();
        registry
    }

    pub fn register(&mut self, agent: Arc<dyn Agent>) {
        self.agents.insert(agent.name().to_string(), agent);
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Agent>> {
        self.agents.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.agents.keys().map(String::as_str)
    }

    /// Agents used when a debate request does not name any.
    pub fn defaults(&self) -> &[String] {
        &self.defaults
    }

    pub fn available_count(&self) -> usize {
        self.agents.values().filter(|a| a.available()).count()
    }
}
