//! The built-in offline agents: no network, no model, deterministic given a debate's seed.
//!
//! They exist so that `aragora up` works on a machine with no provider key, and so that load
//! tests and drills exercise the whole debate path without paying for tokens. Each has a stance
//! and an agreeableness; the seed decides, per debate, whose position is the one the others may
//! rally to. Different seeds therefore give unanimous consensus, consensus with dissent, and no
//! consensus at all. Every text they write starts with `[offline agent, not an LLM]`.

use super::{
    injected_faults, Agent, AgentError, AgentReply, AgentRequest, AgentTask, CallObserver,
};
use crate::faults::Faults;
use async_trait::async_trait;
use std::time::Duration;

/// The label every offline message starts with, so nobody mistakes it for model output.
pub const OFFLINE_LABEL: &str = "[offline agent, not an LLM]";

/// A stance an offline agent argues from.
#[derive(Debug, Clone, Copy)]
pub struct Stance {
    pub name: &'static str,
    pub persona: &'static str,
    /// Chance in percent that the agent votes for the seed's anchor position rather than its own.
    pub agreeableness: u64,
    pub openings: &'static [&'static str],
    pub objections: &'static [&'static str],
    pub concessions: &'static [&'static str],
}

pub const OFFLINE_AGENTS: &[Stance] = &[
    Stance {
        name: "offline-pragmatist",
        persona: "favours the smallest measurable, reversible step",
        agreeableness: 70,
        openings: &[
            "start with the smallest change that can be measured within a week",
            "pick the option with the lowest cost of reversal and review it after one iteration",
            "choose what the current team can operate at 3 a.m. without a specialist",
        ],
        objections: &[
            "does not say how success would be measured",
            "assumes resources the team does not have",
            "optimises for an edge case at the expense of the common path",
        ],
        concessions: &[
            "keeping the measurable first step and adding a rollback criterion",
            "narrowing the scope to what can be shipped and observed",
        ],
    },
    Stance {
        name: "offline-skeptic",
        persona: "asks for evidence and names the risks",
        agreeableness: 30,
        openings: &[
            "do nothing until the failure modes are written down and the evidence is in",
            "treat every claimed benefit as unproven until a controlled comparison exists",
            "prefer the status quo unless the change removes a known, recurring failure",
        ],
        objections: &[
            "rests on an untested assumption",
            "ignores the cost of being wrong",
            "confuses correlation with cause",
        ],
        concessions: &[
            "accepting a trial only with an explicit stop condition",
            "agreeing to proceed if the risks are tracked and reviewed",
        ],
    },
    Stance {
        name: "offline-optimist",
        persona: "looks for the upside and moves fast",
        agreeableness: 60,
        openings: &[
            "take the bold option now; the upside compounds and the risks are manageable",
            "invest in the approach with the highest ceiling and learn along the way",
            "move quickly, because the cost of waiting is larger than the cost of mistakes",
        ],
        objections: &[
            "is too cautious to capture the opportunity",
            "underestimates how quickly the team can learn",
            "leaves value on the table",
        ],
        concessions: &[
            "adding checkpoints without slowing the first step",
            "keeping the ambition but staging the rollout",
        ],
    },
    Stance {
        name: "offline-contrarian",
        persona: "questions the premise and the consensus",
        agreeableness: 10,
        openings: &[
            "question the premise: the topic as posed may be the wrong problem to solve",
            "do the opposite of the consensus view and see what it reveals",
            "reframe the question around who bears the cost of each option",
        ],
        objections: &[
            "answers the question asked rather than the one that matters",
            "follows the crowd without examining why",
            "treats a trade-off as if it were free",
        ],
        concessions: &[
            "conceding the framing but keeping the objection on record",
            "granting the point while doubting the premise",
        ],
    },
];

/// A deterministic agent arguing from one [`Stance`].
pub struct OfflineAgent {
    stance: Stance,
    latency: Duration,
    faults: Faults,
}

impl OfflineAgent {
    pub fn new(stance: &Stance, latency: Duration, faults: Faults) -> Self {
        Self {
            stance: *stance,
            latency,
            faults,
        }
    }

    /// A number derived from the seed, this agent and the step: the same inputs always give
    /// the same number (splitmix64 over an FNV-1a hash of the parts).
    fn draw(&self, seed: i64, parts: &[&str]) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325 ^ (seed as u64);
        for part in std::iter::once(self.stance.name).chain(parts.iter().copied()) {
            for byte in part.bytes().chain(std::iter::once(0xff)) {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        }
        let mut z = hash.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn pick<'a>(&self, options: &'a [&'a str], seed: i64, parts: &[&str]) -> &'a str {
        options[(self.draw(seed, parts) % options.len() as u64) as usize]
    }

    fn vote(&self, request: &AgentRequest, positions: &[(String, String)]) -> AgentReply {
        // The anchor is the position every agent of this debate may rally to; the seed
        // chooses it, the same way for every agent.
        let anchor_index = (request.seed.unsigned_abs() % positions.len().max(1) as u64) as usize;
        let anchor = positions.get(anchor_index).map(|(agent, _)| agent.clone());
        let own = positions
            .iter()
            .find(|(agent, _)| agent == self.stance.name)
            .map(|(agent, _)| agent.clone());
        let roll = self.draw(request.seed, &["vote"]) % 100;
        let choice = match (anchor, own) {
            (Some(anchor), _) if roll < self.stance.agreeableness => anchor,
            (_, Some(own)) => own,
            (Some(anchor), None) => anchor,
            (None, None) => String::new(),
        };
        let reason = if choice == self.stance.name {
            "my own position still holds up best after the critiques"
        } else {
            "this position survived the critiques best"
        };
        AgentReply {
            text: format!("{OFFLINE_LABEL} I vote for {choice}: {reason}."),
            vote_for: Some(choice),
            provider: "offline".into(),
            input_tokens: 0,
            output_tokens: 0,
        }
    }
}

#[async_trait]
impl Agent for OfflineAgent {
    fn name(&self) -> &str {
        self.stance.name
    }

    fn provider(&self) -> &str {
        "offline"
    }

    fn model(&self) -> &str {
        "offline-deterministic (not an LLM)"
    }

    fn persona(&self) -> &str {
        self.stance.persona
    }

    fn is_llm(&self) -> bool {
        false
    }

    async fn respond(
        &self,
        request: &AgentRequest,
        _observer: &dyn CallObserver,
    ) -> Result<AgentReply, AgentError> {
        // Offline agents have no provider; they meet faults as if they had one.
        injected_faults(&self.faults, self.stance.name, "offline").await?;
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        let seed = request.seed;
        let round = request.round.to_string();
        let text = match &request.task {
            AgentTask::Propose => format!(
                "{OFFLINE_LABEL} On \"{}\": {}.",
                request.topic,
                self.pick(self.stance.openings, seed, &["open"])
            ),
            AgentTask::Critique { target, .. } => format!(
                "{OFFLINE_LABEL} {target}'s position {}.",
                self.pick(self.stance.objections, seed, &["object", &round, target])
            ),
            AgentTask::Revise { critiques, .. } => format!(
                "{OFFLINE_LABEL} After {} critique(s) in round {}, I revise by {}; my core view stands: {}.",
                critiques.len(),
                request.round - 1,
                self.pick(self.stance.concessions, seed, &["concede", &round]),
                self.pick(self.stance.openings, seed, &["open"])
            ),
            AgentTask::Vote { positions } => return Ok(self.vote(request, positions)),
        };
        Ok(AgentReply {
            text,
            vote_for: None,
            provider: "offline".into(),
            input_tokens: 0,
            output_tokens: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(seed: i64, task: AgentTask) -> AgentRequest {
        AgentRequest {
            debate_id: "d".into(),
            topic: "tabs or spaces".into(),
            round: 1,
            total_rounds: 2,
            seed,
            task,
        }
    }

    #[tokio::test]
    async fn same_seed_same_words_and_labelled_as_not_an_llm() {
        let agent = OfflineAgent::new(&OFFLINE_AGENTS[0], Duration::ZERO, Faults::default());
        let a = agent
            .respond(&request(7, AgentTask::Propose), &crate::agents::Unobserved)
            .await
            .unwrap();
        let b = agent
            .respond(&request(7, AgentTask::Propose), &crate::agents::Unobserved)
            .await
            .unwrap();
        assert_eq!(a, b);
        assert!(a.text.starts_with(OFFLINE_LABEL));
        assert!(a.text.contains("tabs or spaces"));
    }

    #[tokio::test]
    async fn votes_differ_across_seeds() {
        let agent = OfflineAgent::new(&OFFLINE_AGENTS[1], Duration::ZERO, Faults::default());
        let positions: Vec<(String, String)> = OFFLINE_AGENTS
            .iter()
            .take(3)
            .map(|s| (s.name.to_string(), "x".to_string()))
            .collect();
        let mut choices = std::collections::BTreeSet::new();
        for seed in 0..30 {
            let reply = agent
                .respond(
                    &request(
                        seed,
                        AgentTask::Vote {
                            positions: positions.clone(),
                        },
                    ),
                    &crate::agents::Unobserved,
                )
                .await
                .unwrap();
            choices.insert(reply.vote_for.unwrap());
        }
        assert!(
            choices.len() >= 2,
            "a skeptic that always votes the same way: {choices:?}"
        );
    }
}
