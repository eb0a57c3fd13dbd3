//! An agent backed by an LLM provider: prompts for each debate task, a circuit breaker, and
//! OpenRouter as fallback when the provider fails or its breaker is open.

use super::breaker::CircuitBreaker;
use super::providers::{Completion, Prompt, ProviderClient, ProviderError};
use super::{
    injected_faults, Agent, AgentError, AgentReply, AgentRequest, AgentTask, CallObserver,
};
use crate::faults::Faults;
use async_trait::async_trait;
use prometheus::IntCounterVec;

/// Where a failing agent's calls go instead.
#[derive(Clone)]
pub struct Fallback {
    pub client: ProviderClient,
    pub model: String,
}

pub struct LlmAgent {
    pub name: String,
    pub model: String,
    pub persona: String,
    pub client: ProviderClient,
    pub breaker: CircuitBreaker,
    pub fallback: Option<Fallback>,
    pub stream: bool,
    pub max_tokens: u32,
    /// `aragora_tokens_used_total{provider,direction}`.
    pub tokens: IntCounterVec,
    /// Injected faults, met in front of each call to the provider (not to the fallback: a
    /// provider outage is what they model, and OpenRouter is what answers one).
    pub faults: Faults,
}

impl From<ProviderError> for AgentError {
    fn from(err: ProviderError) -> Self {
        AgentError::new(err.kind.as_str(), err.to_string())
    }
}

/// The system prompt: who the agent is and how to answer.
fn system_prompt(name: &str, persona: &str) -> String {
    format!(
        "You are {name}, one of several agents in a structured debate. Your persona: {persona}. \
         Argue from that persona, engage with the other agents' arguments, and be concise: \
         at most 150 words, plain text, no headings."
    )
}

/// The user message for one debate task.
pub fn task_prompt(request: &AgentRequest) -> String {
    let topic = &request.topic;
    match &request.task {
        AgentTask::Propose => format!(
            "Debate topic: {topic}\n\nRound {} of {}. State your position on the topic and the main reason for it.",
            request.round, request.total_rounds
        ),
        AgentTask::Critique { target, position } => format!(
            "Debate topic: {topic}\n\n{target} holds this position:\n{position}\n\nGive the strongest objection to it."
        ),
        AgentTask::Revise { position, critiques } => {
            let received: String = critiques
                .iter()
                .map(|(critic, text)| format!("- {critic}: {text}\n"))
                .collect();
            format!(
                "Debate topic: {topic}\n\nYour position so far:\n{position}\n\nCritiques you received:\n{received}\nRestate your position for round {} of {}, revised where the critiques are right.",
                request.round, request.total_rounds
            )
        }
        AgentTask::Vote { positions } => {
            let listed: String = positions
                .iter()
                .map(|(agent, text)| format!("[{agent}] {text}\n"))
                .collect();
            format!(
                "Debate topic: {topic}\n\nFinal positions:\n{listed}\nVote for the strongest position (you may choose your own). \
                 Answer with a first line `VOTE: <agent name>` and then one sentence of reason."
            )
        }
    }
}

/// The agent a vote names: the `VOTE:` line first, else the first position named anywhere.
pub fn parse_vote(text: &str, positions: &[(String, String)]) -> Option<String> {
    let lower = text.to_lowercase();
    let names = || positions.iter().map(|(agent, _)| agent);
    if let Some(line) = lower.lines().find_map(|l| l.trim().strip_prefix("vote:")) {
        if let Some(name) = names().find(|name| line.contains(&name.to_lowercase())) {
            return Some(name.clone());
        }
    }
    names()
        .filter_map(|name| lower.find(&name.to_lowercase()).map(|at| (at, name)))
        .min_by_key(|(at, _)| *at)
        .map(|(_, name)| name.clone())
}

impl LlmAgent {
    fn count_tokens(&self, provider: &str, completion: &Completion) {
        self.tokens
            .with_label_values(&[provider, "input"])
            .inc_by(completion.input_tokens);
        self.tokens
            .with_label_values(&[provider, "output"])
            .inc_by(completion.output_tokens);
    }

    fn reply(
        &self,
        request: &AgentRequest,
        completion: Completion,
        provider: &str,
    ) -> Result<AgentReply, AgentError> {
        let Completion {
            text,
            input_tokens,
            output_tokens,
        } = completion;
        let vote_for = match &request.task {
            AgentTask::Vote { positions } => {
                Some(parse_vote(&text, positions).ok_or_else(|| {
                    AgentError::new(
                        "malformed_response",
                        format!(
                            "the vote names none of the positions: {}",
                            text.chars().take(120).collect::<String>()
                        ),
                    )
                })?)
            }
            _ => None,
        };
        Ok(AgentReply {
            text: text.trim().to_string(),
            vote_for,
            provider: provider.to_string(),
            input_tokens,
            output_tokens,
        })
    }

    async fn call_fallback(
        &self,
        request: &AgentRequest,
        prompt: &Prompt,
        observer: &dyn CallObserver,
        primary: AgentError,
    ) -> Result<AgentReply, AgentError> {
        let Some(fallback) = &self.fallback else {
            return Err(primary);
        };
        let to = fallback.client.kind().as_str();
        observer.fallback(
            self.client.kind().as_str(),
            to,
            &fallback.model,
            &primary.message,
        );
        let prompt = Prompt {
            model: fallback.model.clone(),
            ..prompt.clone()
        };
        let delta = |text: &str| observer.token_delta(text);
        match fallback.client.complete(&prompt, &delta).await {
            Ok(completion) => {
                self.count_tokens(to, &completion);
                self.reply(request, completion, to)
            }
            Err(err) => Err(AgentError::new(
                err.kind.as_str(),
                format!(
                    "{}; the OpenRouter fallback failed too: {err}",
                    primary.message
                ),
            )),
        }
    }
}

#[async_trait]
impl Agent for LlmAgent {
    fn name(&self) -> &str {
        &self.name
    }

    fn provider(&self) -> &str {
        self.client.kind().as_str()
    }

    fn model(&self) -> &str {
        &self.model
    }

    fn persona(&self) -> &str {
        &self.persona
    }

    fn is_llm(&self) -> bool {
        true
    }

    fn breaker(&self) -> Option<&CircuitBreaker> {
        Some(&self.breaker)
    }

    async fn respond(
        &self,
        request: &AgentRequest,
        observer: &dyn CallObserver,
    ) -> Result<AgentReply, AgentError> {
        let prompt = Prompt {
            model: self.model.clone(),
            system: system_prompt(&self.name, &self.persona),
            user: task_prompt(request),
            max_tokens: self.max_tokens,
            stream: self.stream,
        };
        let primary = match self.breaker.try_call() {
            Ok(permit) => {
                let delta = |text: &str| observer.token_delta(text);
                let provider = self.client.kind().as_str();
                let answer = match injected_faults(&self.faults, &self.name, provider).await {
                    Ok(()) => self.client.complete(&prompt, &delta).await,
                    Err(injected) => Err(injected),
                };
                match answer {
                    Ok(completion) => {
                        permit.succeeded();
                        self.count_tokens(self.provider(), &completion);
                        return self.reply(request, completion, self.provider());
                    }
                    Err(err) => {
                        permit.failed();
                        AgentError::from(err)
                    }
                }
            }
            Err(wait) => AgentError::new(
                "circuit_open",
                format!(
                    "the circuit breaker of {} is open after repeated failures; next trial in {:.0} s",
                    self.name,
                    wait.as_secs_f64()
                ),
            ),
        };
        self.call_fallback(request, &prompt, observer, primary)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn positions() -> Vec<(String, String)> {
        ["anthropic", "openai", "gemini"]
            .iter()
            .map(|n| (n.to_string(), "x".to_string()))
            .collect()
    }

    #[test]
    fn votes_are_read_from_the_vote_line_first() {
        assert_eq!(
            parse_vote("VOTE: openai\nbecause anthropic was vague", &positions()).as_deref(),
            Some("openai")
        );
        assert_eq!(
            parse_vote("I pick Gemini's view.", &positions()).as_deref(),
            Some("gemini")
        );
        assert_eq!(parse_vote("None of them.", &positions()), None);
    }
}
