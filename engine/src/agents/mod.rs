//! Debate agents behind one trait, and the registry that names them.
//!
//! The debate state machine only ever talks to [`Agent`]; whether the words come from an LLM
//! provider or from the built-in offline agents is invisible to it. Offline agents are always
//! registered, are deterministic given a debate's seed, and say plainly that they are not LLMs.
//! Each provider with a key gets an LLM agent (plus any `[[agents]]` from the config file); when
//! at least two LLM agents exist they are the default debaters, otherwise the offline ones are.

pub mod breaker;
mod llm;
mod offline;
pub mod providers;

pub use breaker::{BreakerSnapshot, BreakerState, CircuitBreaker};
pub use llm::{parse_vote, task_prompt, Fallback, LlmAgent};
pub use offline::{OfflineAgent, OFFLINE_AGENTS, OFFLINE_LABEL};

use crate::config::EngineConfig;
use crate::faults::Faults;
use crate::metrics::EngineMetrics;
use async_trait::async_trait;
use providers::{
    http_client, ProviderClient, ProviderEndpoint, ProviderError, ProviderErrorKind, ProviderKind,
    RetryPolicy,
};
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
    /// The provider that actually answered (OpenRouter when the fallback did).
    pub provider: String,
    /// Tokens the provider counted for the call (its `usage`); 0 for offline agents.
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// Why an agent call failed. `error_type` is the label of `aragora_agent_errors_total`
/// (`timeout`, `rate_limited`, `server_error`, `client_error`, `malformed_response`,
/// `connection`, `circuit_open`, `not_configured`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct AgentError {
    pub error_type: &'static str,
    pub message: String,
}

impl AgentError {
    pub fn new(error_type: &'static str, message: impl Into<String>) -> Self {
        Self {
            error_type,
            message: message.into(),
        }
    }

    pub fn timeout(limit: Duration) -> Self {
        Self::new(
            "timeout",
            format!(
                "no answer within ARAGORA_AGENT_TIMEOUT ({} s)",
                limit.as_secs_f64()
            ),
        )
    }

    /// The `status` label of `aragora_agent_calls_total`.
    pub fn status_label(&self) -> &'static str {
        if self.error_type == "timeout" {
            "timeout"
        } else {
            "error"
        }
    }
}

/// Hears what happens during a call: streamed text and fallbacks.
pub trait CallObserver: Send + Sync {
    fn token_delta(&self, _text: &str) {}
    fn fallback(&self, _from_provider: &str, _to_provider: &str, _model: &str, _reason: &str) {}
}

/// An observer that ignores everything.
pub struct Unobserved;
impl CallObserver for Unobserved {}

/// Injected faults ([`Faults`]) meet a call where the provider would: a slow fault holds the
/// answer back, a failing fault answers as a provider's 503 does. Agents call this inside the
/// agent timeout and their breaker's permit, so timeouts, breakers and fallbacks react as they
/// do to a real outage.
pub(crate) async fn injected_faults(
    faults: &Faults,
    agent: &str,
    provider: &'static str,
) -> Result<(), ProviderError> {
    let effect = faults.agent_effect(agent);
    if !effect.delay.is_zero() {
        tokio::time::sleep(effect.delay).await;
    }
    match effect.failure {
        None => Ok(()),
        Some(fault) => Err(ProviderError {
            provider,
            kind: ProviderErrorKind::ServerError,
            message: format!("HTTP 503 Service Unavailable: {fault}"),
            retry_after: None,
        }),
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
    /// How it argues.
    fn persona(&self) -> &str;
    /// Whether a language model writes its words.
    fn is_llm(&self) -> bool;
    /// Its circuit breaker, if it has one.
    fn breaker(&self) -> Option<&CircuitBreaker> {
        None
    }
    /// Whether it can take calls now (its breaker is not open).
    fn available(&self) -> bool {
        self.breaker()
            .is_none_or(|b| b.state() != BreakerState::Open)
    }
    async fn respond(
        &self,
        request: &AgentRequest,
        observer: &dyn CallObserver,
    ) -> Result<AgentReply, AgentError>;
}

/// The agents this engine can put in a debate, by name.
#[derive(Clone, Default)]
pub struct AgentRegistry {
    agents: BTreeMap<String, Arc<dyn Agent>>,
    defaults: Vec<String>,
}

/// Personas given to the per-provider default agents, in turn, so a debate has contrast.
const DEFAULT_PERSONAS: &[&str] = &[
    "a pragmatic engineer who favours what can be measured and reversed",
    "a skeptical reviewer who asks for evidence and names the risks",
    "an optimistic strategist who looks for the upside and the long game",
];

/// The model an agent of `kind` uses when nothing says otherwise.
pub fn default_model(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::Anthropic => "claude-sonnet-4-5",
        ProviderKind::Openai => "gpt-4o",
        ProviderKind::Gemini => "gemini-2.0-flash",
        ProviderKind::Xai => "grok-3",
        ProviderKind::Mistral => "mistral-large-latest",
        ProviderKind::Openrouter => "openai/gpt-4o-mini",
        ProviderKind::OpenaiCompatible => "llama3.1",
    }
}

/// The public API base URL of `kind` (none for a self-hosted OpenAI-compatible server).
pub fn default_base_url(kind: ProviderKind) -> Option<&'static str> {
    Some(match kind {
        ProviderKind::Anthropic => "https://api.anthropic.com/v1",
        ProviderKind::Openai => "https://api.openai.com/v1",
        ProviderKind::Gemini => "https://generativelanguage.googleapis.com/v1beta",
        ProviderKind::Xai => "https://api.x.ai/v1",
        ProviderKind::Mistral => "https://api.mistral.ai/v1",
        ProviderKind::Openrouter => "https://openrouter.ai/api/v1",
        ProviderKind::OpenaiCompatible => return None,
    })
}

impl AgentRegistry {
    /// The built-in offline agents only; the first three debate by default.
    pub fn offline(latency: Duration, faults: &Faults) -> Self {
        let mut registry = Self::default();
        for stance in OFFLINE_AGENTS {
            registry.register(Arc::new(OfflineAgent::new(stance, latency, faults.clone())));
        }
        registry.defaults = OFFLINE_AGENTS
            .iter()
            .take(3)
            .map(|s| s.name.to_string())
            .collect();
        registry
    }

    /// Offline agents plus an LLM agent per configured provider and per `[[agents]]` entry,
    /// all subject to `faults`. Assumes a validated config.
    pub fn from_config(config: &EngineConfig, metrics: &EngineMetrics, faults: &Faults) -> Self {
        let mut registry = Self::offline(
            Duration::from_millis(config.offline_agent_latency_ms),
            faults,
        );
        let http = http_client(Duration::from_secs(10));
        let retry = RetryPolicy {
            max_retries: config.agent_max_retries,
            base_delay: Duration::from_millis(config.agent_retry_base_ms),
            max_delay: Duration::from_secs(config.agent_timeout_secs),
        };
        let client = |kind: ProviderKind| {
            let settings = config.provider(kind);
            let base_url = settings
                .base_url
                .or_else(|| default_base_url(kind).map(str::to_string))
                .unwrap_or_default();
            ProviderClient::new(
                http.clone(),
                ProviderEndpoint {
                    kind,
                    base_url,
                    api_key: settings.api_key,
                },
                retry,
            )
        };
        let fallback = config
            .provider_enabled(ProviderKind::Openrouter)
            .then(|| Fallback {
                client: client(ProviderKind::Openrouter),
                model: config.openrouter_fallback_model.clone(),
            });
        let mut specs: Vec<(String, ProviderKind, Option<String>, Option<String>)> =
            ProviderKind::ALL
                .into_iter()
                .filter(|kind| *kind != ProviderKind::Openrouter && config.provider_enabled(*kind))
                .map(|kind| (kind.as_str().to_string(), kind, None, None))
                .collect();
        specs.extend(config.agents.iter().filter_map(|spec| {
            let kind = ProviderKind::parse(&spec.provider)?;
            Some((
                spec.name.clone(),
                kind,
                spec.model.clone(),
                spec.persona.clone(),
            ))
        }));
        let mut llm_names = Vec::new();
        for (index, (name, kind, model, persona)) in specs.into_iter().enumerate() {
            let model = model
                .or_else(|| config.provider(kind).model)
                .unwrap_or_else(|| default_model(kind).to_string());
            let persona = persona
                .unwrap_or_else(|| DEFAULT_PERSONAS[index % DEFAULT_PERSONAS.len()].to_string());
            let breaker = CircuitBreaker::new(
                config.circuit_breaker_threshold,
                Duration::from_secs(config.circuit_breaker_cooldown_secs),
                metrics.circuit_breaker_state.with_label_values(&[&name]),
            );
            // The fallback must not be the provider that just failed.
            let fallback = fallback
                .clone()
                .filter(|_| kind != ProviderKind::Openrouter);
            registry.register(Arc::new(LlmAgent {
                name: name.clone(),
                model,
                persona,
                client: client(kind),
                breaker,
                fallback,
                stream: config.agent_streaming,
                max_tokens: config.agent_max_tokens,
                tokens: metrics.tokens_used.clone(),
                faults: faults.clone(),
            }));
            llm_names.push(name);
        }
        if llm_names.len() >= 2 {
            llm_names.truncate(8);
            registry.defaults = llm_names;
        }
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

    pub fn all(&self) -> impl Iterator<Item = &Arc<dyn Agent>> {
        self.agents.values()
    }

    /// Agents used when a debate request does not name any.
    pub fn defaults(&self) -> &[String] {
        &self.defaults
    }

    /// Whether the defaults are the offline agents (no two LLM providers configured).
    pub fn defaults_are_offline(&self) -> bool {
        self.defaults
            .iter()
            .filter_map(|name| self.get(name))
            .all(|agent| !agent.is_llm())
    }

    pub fn available_count(&self) -> usize {
        self.agents.values().filter(|a| a.available()).count()
    }
}
