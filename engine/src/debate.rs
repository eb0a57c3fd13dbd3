//! The debate state machine: rounds of positions and critiques, a vote, and an end.
//!
//! No HTTP here. A debate is driven by [`run_debate`], which reads the debate's events back from
//! the store first and skips every step already recorded, so the same function starts a new
//! debate and resumes one that a drain interrupted. Each step is one event, persisted before it
//! is announced; a step is identified by a [`Step`] (phase, round, agent), and each event says
//! what it says as an [`EventPayload`], written and read back typed (the stored JSON is the
//! payload's own serde form).
//!
//! ```text
//! queued ─► running ─┬─► completed (consensus | no consensus)
//!                    ├─► failed     (every agent failed, or the store failed)
//!                    ├─► timed_out  (ARAGORA_DEBATE_TIMEOUT)
//!                    ├─► cancelled  (POST .../cancel)
//!                    └─► interrupted (drain) ─► queued on the next start
//! ```
//!
//! Each round: every agent states its position (a proposal in round 1, a revision in the light
//! of the critiques it received afterwards), then every agent criticises the next agent's
//! position. After the last round every agent votes for one position; the debate's consensus
//! rule decides whether the leading position is the consensus.

use crate::agents::{
    Agent, AgentError, AgentRegistry, AgentReply, AgentRequest, AgentTask, CallObserver,
};
use crate::error_log::{ErrorEntry, ErrorKind, ErrorLog};
use crate::events::EventHub;
use crate::metrics::EngineMetrics;
use crate::model::{
    now_ms, DebateEvent, DebateRecord, DebateStatus, EventPayload, Fence, Outcome, Phase,
    StatusUpdate, Step,
};
use crate::receipts::{receipt_for, Participant, ReceiptKeys};
use crate::store::{DebateStore, StoreError, StoredReceipt};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Why a running debate is asked to stop early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// A user cancelled it.
    Cancelled,
    /// The process is draining; the debate is saved as interrupted and resumed later.
    Draining,
    /// The watchdog found it past its timeout.
    TimedOut,
    /// Another replica adopted it (this one's lease expired): stop without writing anything.
    LeaseLost,
}

/// How a call to [`run_debate`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    Finished(Outcome),
    Interrupted,
}

/// What a debate needs from the engine.
#[derive(Clone)]
pub struct DebateDeps {
    pub store: Arc<dyn DebateStore>,
    pub hub: EventHub,
    pub agents: AgentRegistry,
    pub metrics: EngineMetrics,
    pub agent_timeout: Duration,
    pub debate_timeout: Duration,
    pub receipts: ReceiptKeys,
    /// Where failed debates and agent errors are noted for `GET /api/system/errors`.
    pub errors: ErrorLog,
}

/// A debate that must end as failed, and why.
struct Failure(String);

enum StepError {
    Failed(Failure),
    Store(StoreError),
}

impl From<StoreError> for StepError {
    fn from(err: StoreError) -> Self {
        Self::Store(err)
    }
}

/// The phase an agent task records its answer under.
fn task_phase(task: &AgentTask) -> Phase {
    match task {
        AgentTask::Propose => Phase::Proposal,
        AgentTask::Revise { .. } => Phase::Revision,
        AgentTask::Critique { .. } => Phase::Critique,
        AgentTask::Vote { .. } => Phase::Vote,
    }
}

/// What the recorded events say has happened so far.
#[derive(Default)]
struct Transcript {
    done: HashSet<Step>,
    /// Each agent's latest position (proposal or revision).
    positions: BTreeMap<String, String>,
    /// Critiques received, by (round, target agent): (critic, text).
    critiques: HashMap<(i64, String), Vec<(String, String)>>,
    votes: BTreeMap<String, String>,
    ended: bool,
}

impl Transcript {
    /// Reads the recorded events back. A stored payload that does not fit its type stops the
    /// resume: guessing which step it was could record a step twice.
    fn replay(events: &[DebateEvent]) -> Result<Self, StoreError> {
        let mut transcript = Self::default();
        for event in events {
            let payload = event.payload().map_err(|err| {
                StoreError::Corrupt(format!(
                    "debate {} event {}: {err}",
                    event.debate_id, event.seq
                ))
            })?;
            transcript.record(event, &payload);
        }
        Ok(transcript)
    }

    fn record(&mut self, event: &DebateEvent, payload: &EventPayload) {
        let Some(step) = event.step(payload) else {
            return;
        };
        self.done.insert(step);
        if matches!(payload, EventPayload::DebateEnd { .. }) {
            self.ended = true;
        }
        let Some(agent) = event.agent.clone() else {
            return;
        };
        match payload {
            EventPayload::AgentMessage { text, .. } => {
                self.positions.insert(agent, text.clone());
            }
            EventPayload::Critique { target, text, .. } => {
                self.critiques
                    .entry((event.round.unwrap_or(0), target.clone()))
                    .or_default()
                    .push((agent, text.clone()));
            }
            EventPayload::Vote { choice, .. } => {
                self.votes.insert(agent, choice.clone().unwrap_or_default());
            }
            _ => {}
        }
    }

    fn is_done(&self, step: &Step) -> bool {
        self.done.contains(step)
    }
}

/// Writes a debate's events in seq order: persisted first, then announced.
struct Recorder<'a> {
    deps: &'a DebateDeps,
    debate_id: String,
    next_seq: i64,
    /// The lease this runner writes under; `None` for a debate nobody leased (tests).
    fence: Option<Fence>,
    /// The write in progress. A cancel or deadline drops the debate's future mid-write, but a
    /// database may still commit what it was sent; the write runs as its own task so that
    /// [`Recorder::resync`] can wait for its verdict instead of racing it (reading the old last
    /// seq, then colliding on it with the final event).
    in_flight: Option<JoinHandle<Result<(), StoreError>>>,
}

impl Recorder<'_> {
    async fn emit(
        &mut self,
        round: Option<i64>,
        agent: Option<&str>,
        payload: EventPayload,
        update: Option<&StatusUpdate>,
    ) -> Result<DebateEvent, StoreError> {
        self.emit_with_receipt(round, agent, payload, update, None)
            .await
    }

    async fn emit_with_receipt(
        &mut self,
        round: Option<i64>,
        agent: Option<&str>,
        payload: EventPayload,
        update: Option<&StatusUpdate>,
        receipt: Option<&StoredReceipt>,
    ) -> Result<DebateEvent, StoreError> {
        let event = DebateEvent::of(
            &self.debate_id,
            self.next_seq,
            round,
            agent,
            payload,
            now_ms(),
        );
        let store = self.deps.store.clone();
        let (written, update, receipt, fence) = (
            event.clone(),
            update.cloned(),
            receipt.cloned(),
            self.fence.clone(),
        );
        let write = self.in_flight.insert(tokio::spawn(async move {
            store
                .append_event(&written, update.as_ref(), receipt.as_ref(), fence.as_ref())
                .await
        }));
        let verdict = write.await;
        self.in_flight = None;
        match verdict {
            Ok(written) => written?,
            Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            Err(_) => return Err(StoreError::Abandoned),
        }
        self.next_seq += 1;
        self.deps.hub.publish(event.clone());
        Ok(event)
    }

    /// Re-reads the last seq: after an interrupted step an event may have been committed
    /// without this recorder knowing.
    async fn resync(&mut self) -> Result<(), StoreError> {
        if let Some(write) = self.in_flight.take() {
            // Its outcome is in the store either way; only the seq it left matters here.
            let _ = write.await;
        }
        if let Some(record) = self.deps.store.debate(&self.debate_id).await? {
            self.next_seq = record.last_seq + 1;
        }
        Ok(())
    }
}

/// Runs (or resumes) one debate to its end, or until `stop` asks it to stop. Every write is
/// fenced by `record.lease` (when it has an owner): once another replica adopts the debate,
/// this ends with [`StoreError::Fenced`] having written nothing more.
pub async fn run_debate(
    deps: &DebateDeps,
    record: DebateRecord,
    mut stop: watch::Receiver<Option<StopReason>>,
) -> Result<RunEnd, StoreError> {
    let events = deps.store.events_after(&record.id, 0, i64::MAX).await?;
    let mut transcript = Transcript::replay(&events)?;
    let fence = record.lease.fence();
    let mut recorder = Recorder {
        deps,
        debate_id: record.id.clone(),
        next_seq: record.last_seq + 1,
        fence: fence.clone(),
        in_flight: None,
    };
    if transcript.ended {
        return Ok(RunEnd::Finished(record.outcome.unwrap_or(Outcome::Failed)));
    }
    let started_at_ms = record.started_at_ms.unwrap_or_else(now_ms);
    if transcript.is_done(&Step::debate(Phase::Start)) {
        let update = StatusUpdate::to(DebateStatus::Running);
        let from = [
            DebateStatus::Queued,
            DebateStatus::Interrupted,
            DebateStatus::Running,
        ];
        let moved = deps
            .store
            .transition(&record.id, &from, &update, fence.as_ref())
            .await?;
        if !moved && fence.is_some() {
            return Err(StoreError::Fenced {
                debate_id: record.id.clone(),
            });
        }
        tracing::info!(debate_id = %record.id, last_seq = record.last_seq, "resuming debate");
    } else {
        let update = StatusUpdate {
            started_at_ms: Some(started_at_ms),
            ..StatusUpdate::to(DebateStatus::Running)
        };
        let start = EventPayload::DebateStart {
            topic: record.topic.clone(),
            rounds: record.rounds,
            agents: record.agents.clone(),
            consensus_rule: record.consensus_rule,
            seed: record.seed,
        };
        recorder.emit(None, None, start, Some(&update)).await?;
    }

    let elapsed = Duration::from_millis((now_ms() - started_at_ms).max(0) as u64);
    let deadline = Instant::now() + deps.debate_timeout.saturating_sub(elapsed);
    let body = debate_body(deps, &record, &mut transcript, &mut recorder);
    let stop_requested = async {
        match stop.wait_for(Option::is_some).await {
            Ok(reason) => *reason,
            // The orchestrator dropped the sender: treat as a drain, which loses nothing.
            Err(_) => Some(StopReason::Draining),
        }
    };
    let ending = tokio::select! {
        result = body => match result {
            Ok(ending) => Ending::Completed(ending),
            Err(StepError::Failed(Failure(reason))) => Ending::Failed(reason),
            Err(StepError::Store(err)) => return Err(err),
        },
        _ = tokio::time::sleep_until(deadline.into()) => Ending::TimedOut,
        reason = stop_requested => match reason {
            Some(StopReason::Cancelled) => Ending::Cancelled,
            Some(StopReason::TimedOut) => Ending::TimedOut,
            Some(StopReason::Draining) | None => Ending::Interrupted,
            Some(StopReason::LeaseLost) => {
                return Err(StoreError::Fenced {
                    debate_id: record.id.clone(),
                })
            }
        },
    };
    recorder.resync().await?;
    finish(deps, &record, &mut recorder, started_at_ms, ending).await
}

/// The result of the rounds and the vote.
struct Verdict {
    reached: bool,
    winner: Option<String>,
    final_answer: Option<String>,
}

enum Ending {
    Completed(Verdict),
    Failed(String),
    TimedOut,
    Cancelled,
    Interrupted,
}

async fn finish(
    deps: &DebateDeps,
    record: &DebateRecord,
    recorder: &mut Recorder<'_>,
    started_at_ms: i64,
    ending: Ending,
) -> Result<RunEnd, StoreError> {
    let (outcome, final_answer, error, reached, winner) = match ending {
        Ending::Interrupted => {
            let update = StatusUpdate::to(DebateStatus::Interrupted);
            deps.store
                .transition(
                    &record.id,
                    &[DebateStatus::Running],
                    &update,
                    recorder.fence.as_ref(),
                )
                .await?;
            tracing::info!(debate_id = %record.id, "debate interrupted by drain; the next start resumes it");
            return Ok(RunEnd::Interrupted);
        }
        Ending::Completed(Verdict {
            reached,
            winner,
            final_answer,
        }) => {
            let outcome = if reached {
                Outcome::Consensus
            } else {
                Outcome::NoConsensus
            };
            (outcome, final_answer, None, Some(reached), winner)
        }
        Ending::Failed(reason) => (Outcome::Failed, None, Some(reason), None, None),
        Ending::TimedOut => (
            Outcome::TimedOut,
            None,
            Some(format!(
                "the debate ran longer than ARAGORA_DEBATE_TIMEOUT ({} s)",
                deps.debate_timeout.as_secs()
            )),
            None,
            None,
        ),
        Ending::Cancelled => (
            Outcome::Cancelled,
            None,
            Some("cancelled by request".into()),
            None,
            None,
        ),
    };
    let finished_at_ms = now_ms();
    let duration_ms = (finished_at_ms - started_at_ms).max(0);
    let update = StatusUpdate {
        status: Some(outcome.status()),
        finished_at_ms: Some(finished_at_ms),
        outcome: Some(outcome),
        consensus_reached: reached,
        final_answer: final_answer.clone(),
        error: error.clone(),
        ..StatusUpdate::default()
    };
    let end = EventPayload::DebateEnd {
        status: outcome.status(),
        outcome,
        final_answer: final_answer.clone(),
        error,
        duration_ms,
    };
    // Completed debates get a signed receipt, stored with their end in one transaction.
    let receipt = (outcome.status() == DebateStatus::Completed).then(|| {
        let participants = record
            .agents
            .iter()
            .map(|name| {
                let agent = deps.agents.get(name);
                Participant {
                    name: name.clone(),
                    provider: agent.map(|a| a.provider().to_string()).unwrap_or_default(),
                    model: agent.map(|a| a.model().to_string()).unwrap_or_default(),
                }
            })
            .collect();
        let unsigned = receipt_for(
            record,
            participants,
            outcome,
            winner,
            final_answer.as_deref(),
            finished_at_ms,
        );
        let signed = deps.receipts.sign(unsigned);
        StoredReceipt {
            body: serde_json::to_string(&signed).unwrap_or_default(),
            key_id: signed.key_id,
        }
    });
    recorder
        .emit_with_receipt(None, None, end, Some(&update), receipt.as_ref())
        .await?;
    if receipt.is_some() {
        deps.metrics.receipts_issued.inc();
    }
    deps.metrics
        .debates
        .with_label_values(&[outcome.as_str()])
        .inc();
    deps.metrics
        .debate_duration
        .with_label_values(&[outcome.as_str()])
        .observe(duration_ms as f64 / 1000.0);
    tracing::info!(debate_id = %record.id, outcome = outcome.as_str(), duration_ms, "debate finished");
    let failed = match outcome {
        Outcome::Failed => Some(ErrorKind::DebateFailed),
        Outcome::TimedOut => Some(ErrorKind::DebateTimedOut),
        _ => None,
    };
    if let (Some(kind), Some(error)) = (failed, update.error.as_deref()) {
        deps.errors
            .push(ErrorEntry::new(kind, error, finished_at_ms).debate(&record.id));
    }
    Ok(RunEnd::Finished(outcome))
}

/// Streams an agent's text to subscribers while it is written, and notes fallbacks so they
/// can be recorded as events once the call returns.
struct StepObserver<'a> {
    hub: &'a EventHub,
    debate_id: &'a str,
    round: i64,
    agent: &'a str,
    phase: Phase,
    fallbacks: Mutex<Vec<EventPayload>>,
}

impl CallObserver for StepObserver<'_> {
    fn token_delta(&self, text: &str) {
        self.hub
            .publish_delta(self.debate_id, self.round, self.agent, self.phase, text);
    }

    fn fallback(&self, from_provider: &str, to_provider: &str, model: &str, reason: &str) {
        if let Ok(mut fallbacks) = self.fallbacks.lock() {
            fallbacks.push(EventPayload::AgentFallbackTriggered {
                phase: self.phase,
                from_provider: from_provider.to_string(),
                to_provider: to_provider.to_string(),
                model: model.to_string(),
                reason: reason.to_string(),
            });
        }
    }
}

/// Calls one agent with the agent timeout, and counts the call.
async fn call_agent(
    deps: &DebateDeps,
    agent: &Arc<dyn Agent>,
    request: AgentRequest,
    observer: &dyn CallObserver,
) -> Result<AgentReply, AgentError> {
    let started = Instant::now();
    let debate_id = request.debate_id.clone();
    let call = agent.respond(&request, observer);
    let result = match tokio::time::timeout(deps.agent_timeout, call).await {
        Ok(result) => result,
        Err(_) => Err(AgentError::timeout(deps.agent_timeout)),
    };
    if let Err(err) = &result {
        deps.metrics
            .agent_errors
            .with_label_values(&[agent.name(), err.error_type])
            .inc();
        deps.errors.push(
            ErrorEntry::new(
                ErrorKind::AgentError,
                &format!("{} ({})", err.message, err.error_type),
                now_ms(),
            )
            .debate(&debate_id)
            .agent(agent.name()),
        );
    }
    let status = match &result {
        Ok(_) => "success",
        Err(err) => err.status_label(),
    };
    let labels = [agent.name(), agent.provider()];
    deps.metrics
        .agent_latency
        .with_label_values(&labels)
        .observe(started.elapsed().as_secs_f64());
    deps.metrics
        .agent_calls
        .with_label_values(&[agent.name(), agent.provider(), status])
        .inc();
    result
}

/// Adds what a provider said a call cost to the debate's usage (`GET /api/auth/me/usage`).
/// Written as soon as the answer is in, before its event: the tokens are spent whether or not
/// the event lands. A failed write is logged, never the debate's failure.
async fn record_usage(deps: &DebateDeps, debate_id: &str, reply: &AgentReply) {
    if reply.input_tokens == 0 && reply.output_tokens == 0 {
        return;
    }
    if let Err(err) = deps
        .store
        .add_usage(
            debate_id,
            &reply.provider,
            reply.input_tokens,
            reply.output_tokens,
        )
        .await
    {
        tracing::warn!(%debate_id, provider = %reply.provider, error = %err, "the call's token usage is not recorded");
    }
}

/// Runs one phase: asks every agent that has not yet done this step, concurrently, then
/// records the answers in the debate's agent order.
async fn phase(
    deps: &DebateDeps,
    record: &DebateRecord,
    transcript: &mut Transcript,
    recorder: &mut Recorder<'_>,
    round: i64,
    tasks: Vec<(String, AgentTask)>,
) -> Result<(), StoreError> {
    let pending: Vec<(String, AgentTask)> = tasks
        .into_iter()
        .filter(|(agent, task)| !transcript.is_done(&Step::agent(task_phase(task), round, agent)))
        .collect();
    let observers: Vec<StepObserver> = pending
        .iter()
        .map(|(name, task)| StepObserver {
            hub: &deps.hub,
            debate_id: &record.id,
            round,
            agent: name,
            phase: task_phase(task),
            fallbacks: Mutex::default(),
        })
        .collect();
    let calls = pending
        .iter()
        .zip(&observers)
        .map(|((name, task), observer)| {
            let request = AgentRequest {
                debate_id: record.id.clone(),
                topic: record.topic.clone(),
                round,
                total_rounds: record.rounds,
                seed: record.seed,
                task: task.clone(),
            };
            async move {
                match deps.agents.get(name) {
                    Some(agent) => call_agent(deps, agent, request, observer).await,
                    None => Err(AgentError::new(
                        "not_configured",
                        format!("agent {name} is not configured on this engine"),
                    )),
                }
            }
        });
    let replies = futures::future::join_all(calls).await;
    for (((name, task), reply), observer) in pending.iter().zip(replies).zip(&observers) {
        let fallbacks =
            std::mem::take(&mut *observer.fallbacks.lock().unwrap_or_else(|e| e.into_inner()));
        for fallback in fallbacks {
            if let EventPayload::AgentFallbackTriggered { from_provider, .. } = &fallback {
                deps.metrics
                    .agent_fallbacks
                    .with_label_values(&[name.as_str(), from_provider.as_str()])
                    .inc();
            }
            recorder
                .emit(Some(round), Some(name), fallback, None)
                .await?;
        }
        if let Ok(reply) = &reply {
            record_usage(deps, &record.id, reply).await;
        }
        let provider = match &reply {
            Ok(reply) => reply.provider.clone(),
            Err(_) => deps
                .agents
                .get(name)
                .map(|a| a.provider().to_string())
                .unwrap_or_default(),
        };
        let phase = task_phase(task);
        let payload = match (reply, task) {
            (Err(err), _) => {
                tracing::warn!(debate_id = %record.id, agent = %name, phase = phase.as_str(), error = %err, "agent call failed");
                EventPayload::Error {
                    phase,
                    message: err.to_string(),
                    error_type: err.error_type.to_string(),
                    provider,
                }
            }
            (Ok(reply), AgentTask::Critique { target, .. }) => EventPayload::Critique {
                phase,
                target: target.clone(),
                text: reply.text,
                provider,
            },
            (Ok(reply), AgentTask::Vote { .. }) => EventPayload::Vote {
                phase,
                choice: reply.vote_for,
                text: reply.text,
                provider,
            },
            (Ok(reply), _) => EventPayload::AgentMessage {
                phase,
                text: reply.text,
                provider,
            },
        };
        let event = recorder
            .emit(Some(round), Some(name), payload.clone(), None)
            .await?;
        transcript.record(&event, &payload);
    }
    Ok(())
}

async fn debate_body(
    deps: &DebateDeps,
    record: &DebateRecord,
    transcript: &mut Transcript,
    recorder: &mut Recorder<'_>,
) -> Result<Verdict, StepError> {
    let agents = &record.agents;
    for round in 1..=record.rounds {
        if !transcript.is_done(&Step::round_start(round)) {
            let start = EventPayload::RoundStart {
                round,
                of: record.rounds,
            };
            let event = recorder
                .emit(Some(round), None, start.clone(), None)
                .await?;
            transcript.record(&event, &start);
        }
        let positions = agents
            .iter()
            .map(|agent| {
                let task = match transcript.positions.get(agent) {
                    Some(position) if round > 1 => AgentTask::Revise {
                        position: position.clone(),
                        critiques: transcript
                            .critiques
                            .get(&(round - 1, agent.clone()))
                            .cloned()
                            .unwrap_or_default(),
                    },
                    _ => AgentTask::Propose,
                };
                (agent.clone(), task)
            })
            .collect();
        phase(deps, record, transcript, recorder, round, positions).await?;
        if transcript.positions.is_empty() {
            return Err(StepError::Failed(Failure(
                "every agent failed to state a position; see the error events for each agent's reason".into(),
            )));
        }
        let critiques = agents
            .iter()
            .enumerate()
            .filter_map(|(i, critic)| {
                let target = (1..agents.len())
                    .map(|step| &agents[(i + step) % agents.len()])
                    .find(|candidate| transcript.positions.contains_key(*candidate))?;
                let position = transcript.positions[target].clone();
                Some((
                    critic.clone(),
                    AgentTask::Critique {
                        target: target.clone(),
                        position,
                    },
                ))
            })
            .collect();
        phase(deps, record, transcript, recorder, round, critiques).await?;
    }

    let vote_round = record.rounds;
    let positions: Vec<(String, String)> = agents
        .iter()
        .filter_map(|agent| Some((agent.clone(), transcript.positions.get(agent)?.clone())))
        .collect();
    let ballots = agents
        .iter()
        .map(|agent| {
            let task = AgentTask::Vote {
                positions: positions.clone(),
            };
            (agent.clone(), task)
        })
        .collect();
    phase(deps, record, transcript, recorder, vote_round, ballots).await?;

    let valid: BTreeMap<&String, &String> = transcript
        .votes
        .iter()
        .filter(|(_, choice)| transcript.positions.contains_key(*choice))
        .collect();
    if valid.is_empty() {
        return Err(StepError::Failed(Failure(
            "no agent cast a valid vote; see the error events for each agent's reason".into(),
        )));
    }
    let mut tally: BTreeMap<&String, usize> = BTreeMap::new();
    for choice in valid.values() {
        *tally.entry(choice).or_default() += 1;
    }
    let top = tally.values().copied().max().unwrap_or(0);
    let leaders: Vec<&String> = tally
        .iter()
        .filter(|(_, count)| **count == top)
        .map(|(choice, _)| *choice)
        .collect();
    let winner = (leaders.len() == 1).then(|| leaders[0].clone());
    let reached = winner.is_some() && record.consensus_rule.reached(top, valid.len());
    let final_answer = winner
        .as_ref()
        .filter(|_| reached)
        .and_then(|w| transcript.positions.get(w).cloned());
    let dissenting: Vec<&String> = valid
        .iter()
        .filter(|(_, choice)| Some(**choice) != winner.as_ref())
        .map(|(voter, _)| *voter)
        .collect();
    if !transcript.is_done(&Step::debate(Phase::Consensus)) {
        let consensus = EventPayload::Consensus {
            reached,
            rule: record.consensus_rule,
            winner: winner.clone(),
            votes: tally
                .into_iter()
                .map(|(choice, count)| (choice.clone(), count))
                .collect(),
            dissenting: dissenting.into_iter().cloned().collect(),
            final_answer: final_answer.clone(),
        };
        recorder.emit(None, None, consensus, None).await?;
    }
    Ok(Verdict {
        reached,
        winner,
        final_answer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_records_under_the_phase_its_agent_names() {
        let tasks = [
            AgentTask::Propose,
            AgentTask::Revise {
                position: String::new(),
                critiques: Vec::new(),
            },
            AgentTask::Critique {
                target: String::new(),
                position: String::new(),
            },
            AgentTask::Vote {
                positions: Vec::new(),
            },
        ];
        for task in tasks {
            assert_eq!(task_phase(&task).as_str(), task.phase());
        }
    }
}
