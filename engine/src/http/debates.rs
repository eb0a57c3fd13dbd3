//! `/api/debates`: start, list, show, list messages of, and cancel debates.
//!
//! Handlers validate input, hand work to the orchestrator and render records; the debate
//! itself is in `crate::debate`.

use super::access::{check, DebateReader, Operator, Reader};
use super::body::{ApiJson, ApiText};
use super::{AppState, Core};
use crate::agents::AgentRegistry;
use crate::config::EngineConfig;
use crate::error::{ApiError, ErrorBody};
use crate::model::{
    format_ms, now_ms, ConsensusRule, DebateEvent, DebateRecord, DebateStatus, EventKind,
    EventPayload, Outcome, Phase as EventPhase,
};
use crate::orchestrator::{AdmitError, CancelResult};
use crate::receipts::{Receipt, SignedWith};
use axum::extract::rejection::QueryRejection;
use axum::extract::{MatchedPath, Path, Query, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeSet;
use utoipa::{IntoParams, ToSchema};

/// `axum::extract::Query` whose rejections are rendered as the API's JSON errors.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

// Keep the rejection type in use so the derive's `From` impl is the one in `error.rs`.
const _: fn(QueryRejection) = |_| {};

const MAX_AGENTS: usize = 8;
const MIN_AGENTS: usize = 2;

/// The body of `POST /api/debates`. `question` is accepted as a synonym of `topic`, and the
/// settings may also be nested under `config` (the cloud runbook's request shape).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDebate {
    /// The question the agents debate (required, or `question`): up to
    /// ARAGORA_MAX_TOPIC_LENGTH characters, not blank.
    topic: Option<String>,
    /// A synonym of `topic`.
    question: Option<String>,
    /// 1 to 12 (default ARAGORA_DEFAULT_ROUNDS).
    #[schema(minimum = 1, maximum = 12)]
    rounds: Option<i64>,
    /// 2 to 8 distinct names from GET /api/agents (default: the default agents).
    #[schema(min_items = 2, max_items = 8)]
    agents: Option<Vec<String>>,
    /// Default majority.
    #[schema(value_type = Option<ConsensusRule>)]
    consensus: Option<String>,
    /// Makes a debate of offline agents replayable; default: derived from the id.
    seed: Option<i64>,
    /// The same settings nested (the cloud runbook's request shape).
    config: Option<CreateDebateConfig>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDebateConfig {
    #[schema(minimum = 1, maximum = 12)]
    rounds: Option<i64>,
    #[schema(min_items = 2, max_items = 8)]
    agents: Option<Vec<String>>,
    #[schema(value_type = Option<ConsensusRule>)]
    consensus: Option<String>,
    seed: Option<i64>,
}

/// A debate just queued.
#[derive(Serialize, ToSchema)]
pub struct CreatedDebate {
    debate_id: String,
    status: DebateStatus,
    topic: String,
    rounds: i64,
    agents: Vec<String>,
    consensus_rule: ConsensusRule,
    seed: i64,
    /// RFC 3339.
    created_at: String,
    created_by: Option<String>,
    links: Links,
}

/// Where to follow a debate.
#[derive(Serialize, ToSchema)]
pub struct Links {
    #[serde(rename = "self")]
    self_: String,
    messages: String,
    websocket: String,
}

/// A debate as lists show it, without its state (see [`DebateSummary`]).
#[derive(Serialize, ToSchema)]
pub struct DebateFields {
    debate_id: String,
    topic: String,
    outcome: Option<Outcome>,
    rounds: i64,
    agents: Vec<String>,
    consensus_rule: ConsensusRule,
    consensus_reached: Option<bool>,
    /// RFC 3339, as are the other times.
    created_at: String,
    started_at: Option<String>,
    finished_at: Option<String>,
}

/// A debate as lists show it.
#[derive(Serialize, ToSchema)]
pub struct DebateSummary {
    #[serde(flatten)]
    fields: DebateFields,
    status: DebateStatus,
}

/// A page of `GET /api/debates`.
#[derive(Serialize, ToSchema)]
pub struct DebatePage {
    debates: Vec<DebateSummary>,
    /// Debates that match, on every page.
    total: i64,
    limit: i64,
    offset: i64,
}

/// A debate with its messages, votes and result.
#[derive(Serialize, ToSchema)]
pub struct DebateDetail {
    #[serde(flatten)]
    summary: DebateSummary,
    current_round: i64,
    seed: i64,
    /// Proposals, revisions and critiques.
    messages: Vec<DebateMessage>,
    votes: Vec<DebateMessage>,
    /// The last `consensus` event's data, once there is one.
    #[schema(value_type = Option<Object>)]
    consensus: Option<Value>,
    final_answer: Option<String>,
    error: Option<String>,
    /// Agents' failed calls.
    agent_errors: Vec<AgentCallError>,
    last_seq: i64,
    created_by: Option<String>,
    /// The replica that holds the debate.
    replica: Option<String>,
    cancel_requested_at: Option<String>,
}

/// An agent's words; fields a kind lacks are null.
#[derive(Serialize, ToSchema)]
pub struct DebateMessage {
    seq: i64,
    round: Option<i64>,
    agent: Option<String>,
    #[serde(rename = "type")]
    kind: EventKind,
    phase: Option<EventPhase>,
    /// The critiqued agent (critiques).
    target: Option<String>,
    /// The agent a vote chose.
    choice: Option<String>,
    text: Option<String>,
    provider: Option<String>,
    timestamp: String,
}

/// An agent's failed call.
#[derive(Serialize, ToSchema)]
pub struct AgentCallError {
    seq: i64,
    round: Option<i64>,
    agent: Option<String>,
    phase: EventPhase,
    message: String,
}

/// `GET /api/debates/{id}/messages`.
#[derive(Serialize, ToSchema)]
pub struct MessageList {
    debate_id: String,
    total: usize,
    messages: Vec<DebateMessage>,
}

/// A cancel the replica that runs the debate has not acted on yet.
#[derive(Serialize, ToSchema)]
pub struct CancelRequested {
    #[serde(flatten)]
    fields: DebateFields,
    status: Cancelling,
    message: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Cancelling {
    Cancelling,
}

/// What `POST /api/receipts/verify` found.
#[derive(Serialize, ToSchema)]
pub struct Verification {
    valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    debate_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    signed_with: Option<SignedWith>,
    /// Which key signed (its id, never its value).
    #[serde(skip_serializing_if = "Option::is_none")]
    key_id: Option<String>,
    /// Whether the current key signed.
    #[serde(skip_serializing_if = "Option::is_none")]
    current: Option<bool>,
    /// Where that key is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    key_source: Option<String>,
    /// Why the receipt is not valid.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

const DEBATE_ID: &str = "A debate's id (`debate_id`).";

fn new_debate_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The body of `POST /api/debates` read and checked as the handler does, without the HTTP
/// around it: the debate it would queue, or the error it would answer (`fuzzing/` tries any
/// bytes through it).
pub fn parse_create(
    config: &EngineConfig,
    agents: &AgentRegistry,
    body: &[u8],
) -> Result<DebateRecord, ApiError> {
    let Json(request) = Json::<CreateDebate>::from_bytes(body)?;
    validate(config, agents, request)
}

/// Turns a request into a queued debate record, or says what is wrong with it.
fn validate(
    config: &EngineConfig,
    registry: &AgentRegistry,
    request: CreateDebate,
) -> Result<DebateRecord, ApiError> {
    let nested = request.config.unwrap_or(CreateDebateConfig {
        rounds: None,
        agents: None,
        consensus: None,
        seed: None,
    });
    let topic = request.topic.or(request.question).ok_or_else(|| {
        ApiError::invalid(
            "the body needs a \"topic\" (or \"question\"): the question the agents debate",
        )
    })?;
    let topic = topic.trim().to_string();
    if topic.is_empty() {
        return Err(ApiError::invalid(
            "\"topic\" is empty; give the question the agents should debate",
        ));
    }
    let length = topic.chars().count();
    let limit = config.max_topic_chars;
    if length > limit {
        return Err(ApiError::invalid(format!(
            "\"topic\" is {length} characters; the limit is {limit} (ARAGORA_MAX_TOPIC_LENGTH)"
        )));
    }
    let rounds = request
        .rounds
        .or(nested.rounds)
        .unwrap_or(i64::from(config.default_rounds));
    if !(1..=12).contains(&rounds) {
        return Err(ApiError::invalid(format!(
            "\"rounds\" is {rounds}; use a number from 1 to 12"
        )));
    }
    let agents = request
        .agents
        .or(nested.agents)
        .unwrap_or_else(|| registry.defaults().to_vec());
    let known: Vec<&str> = registry.names().collect();
    let unknown: Vec<&String> = agents
        .iter()
        .filter(|a| !known.contains(&a.as_str()))
        .collect();
    if !unknown.is_empty() {
        return Err(ApiError::invalid(format!(
            "unknown agent(s) {unknown:?}; available: {}",
            known.join(", ")
        )));
    }
    if agents.iter().collect::<BTreeSet<_>>().len() != agents.len() {
        return Err(ApiError::invalid(
            "\"agents\" names an agent twice; list each agent once",
        ));
    }
    if !(MIN_AGENTS..=MAX_AGENTS).contains(&agents.len()) {
        return Err(ApiError::invalid(format!(
            "\"agents\" has {} agent(s); a debate needs {MIN_AGENTS} to {MAX_AGENTS}",
            agents.len()
        )));
    }
    let consensus_rule = match request.consensus.or(nested.consensus) {
        None => ConsensusRule::default(),
        Some(text) => ConsensusRule::parse(&text).ok_or_else(|| {
            ApiError::invalid(format!(
                "\"consensus\" is {text:?}; use majority, supermajority or unanimous"
            ))
        })?,
    };
    let id = new_debate_id();
    // Without an explicit seed, the id decides: every debate differs, and replays are exact.
    let seed = request.seed.or(nested.seed).unwrap_or_else(|| {
        id.bytes().fold(0i64, |acc, b| {
            acc.wrapping_mul(31).wrapping_add(i64::from(b))
        })
    });
    Ok(DebateRecord::queued(
        id,
        topic,
        rounds,
        agents,
        consensus_rule,
        seed,
        now_ms(),
    ))
}

/// Starts a debate (operators): 202 with the queued debate and where to follow it.
#[utoipa::path(post, path = "/debates", operation_id = "create_debate", tag = "debates",
    security(("bearer" = [])), request_body = CreateDebate,
    responses(
        (status = 202, description = "Queued; `Location` names it.", body = CreatedDebate,
            headers(("Location" = String, description = "The debate's URL.")),
            links(
                ("debate" = (operation_id = "debate", parameters(("id" = "$response.body#/debate_id")))),
                ("messages" = (operation_id = "debate_messages", parameters(("id" = "$response.body#/debate_id")))),
                ("receipt" = (operation_id = "debate_receipt", parameters(("id" = "$response.body#/debate_id")))),
                ("cancel" = (operation_id = "cancel_debate", parameters(("id" = "$response.body#/debate_id")))),
            ),
        ),
        (status = 429, description = "The queue is full; retry after `Retry-After` seconds.", body = ErrorBody),
        (status = 503, description = "Maintenance, draining, starting, or credentials cannot be checked yet; retry after `Retry-After` seconds.", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    Operator(caller): Operator,
    ApiJson(request): ApiJson<CreateDebate>,
) -> Result<Response, ApiError> {
    let core = state.core()?;
    let record = validate(&state.config, &state.agents, request)?.created_by(&caller.subject);
    // After validation, so a bad request learns what to fix even during a window.
    if let Some(refusal) = super::maintenance::refusal(&state).await {
        return Err(refusal);
    }
    let record = core.orchestrator.admit(record).await.map_err(|err| match err {
        AdmitError::QueueFull { .. } => ApiError::too_many(
            format!("{err}; retry later or raise ARAGORA_MAX_CONCURRENT_DEBATES / ARAGORA_DEBATE_QUEUE_SIZE"),
            5,
        ),
        AdmitError::ClientFull { .. } => super::limits::too_many(
            &state,
            super::limits::ClientLimit::Debates,
            &caller.subject,
            format!("{err}; wait for one of them to end (or cancel one) and retry"),
            5,
        ),
        AdmitError::Draining => ApiError::unavailable(
            format!("{err}; retry, and the load balancer will send you to a ready replica"),
            2,
        ),
        AdmitError::Store(err) => ApiError::internal("could not save the debate", err),
    })?;
    let location = format!("/api/debates/{}", record.id);
    let body = CreatedDebate {
        links: Links {
            self_: location.clone(),
            messages: format!("{location}/messages"),
            websocket: format!("/ws?debate_id={}", record.id),
        },
        debate_id: record.id,
        status: record.status,
        topic: record.topic,
        rounds: record.rounds,
        agents: record.agents,
        consensus_rule: record.consensus_rule,
        seed: record.seed,
        created_at: format_ms(record.created_at_ms),
        created_by: record.created_by,
    };
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(body),
    )
        .into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// A state, `active` (queued, running, interrupted), `finished`, or a comma-separated list.
    #[param(
        pattern = r"^\s*(active|finished|queued|running|completed|failed|cancelled|timed_out|interrupted)?\s*(,\s*(active|finished|queued|running|completed|failed|cancelled|timed_out|interrupted)?\s*)*$"
    )]
    status: Option<String>,
    /// 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// 0 or more (default 0).
    #[param(minimum = 0)]
    offset: Option<i64>,
}

/// `status` accepts a final or active state, `active` (queued, running, interrupted), or a
/// comma-separated list.
fn parse_status_filter(text: &str) -> Result<Vec<DebateStatus>, ApiError> {
    let mut statuses = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part {
            "active" => statuses.extend([
                DebateStatus::Queued,
                DebateStatus::Running,
                DebateStatus::Interrupted,
            ]),
            "finished" => statuses.extend(DebateStatus::ALL.into_iter().filter(|s| s.is_final())),
            other => statuses.push(DebateStatus::parse(other).ok_or_else(|| {
                let valid: Vec<&str> = DebateStatus::ALL.iter().map(|s| s.as_str()).collect();
                ApiError::bad_request(format!(
                    "status {other:?} is not a debate state; use active, finished or one of {}",
                    valid.join(", ")
                ))
            })?),
        }
    }
    Ok(statuses)
}

/// What `GET /api/debates` lists: its query checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListParams {
    pub statuses: Vec<DebateStatus>,
    pub limit: i64,
    pub offset: i64,
}

/// The query of `GET /api/debates` in `uri` read and checked as the handler does, with pages
/// of at most `max_limit` (`ARAGORA_MAX_LIST_LIMIT`); `fuzzing/` tries any query through it.
pub fn parse_list_query(uri: &Uri, max_limit: i64) -> Result<ListParams, ApiError> {
    let Query(query) = Query::<ListQuery>::try_from_uri(uri)?;
    list_params(query, |requested| {
        super::limits::page_size(max_limit, requested)
    })
}

/// The checked query; `limit` checks the page size (the handler's also counts a refusal).
fn list_params(
    query: ListQuery,
    limit: impl FnOnce(Option<i64>) -> Result<i64, ApiError>,
) -> Result<ListParams, ApiError> {
    Ok(ListParams {
        statuses: parse_status_filter(query.status.as_deref().unwrap_or(""))?,
        limit: limit(query.limit)?,
        offset: super::limits::list_offset(query.offset)?,
    })
}

/// Debates, newest first, a page at a time (readers).
#[utoipa::path(get, path = "/debates", operation_id = "debates", tag = "debates",
    security(("bearer" = [])), params(ListQuery),
    responses((status = 200, description = "A page of debates.", body = DebatePage)))]
pub async fn list(
    State(state): State<AppState>,
    Reader(caller): Reader,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<DebatePage>, ApiError> {
    let core = state.core()?;
    let ListParams {
        statuses,
        limit,
        offset,
    } = list_params(query, |requested| {
        super::limits::list_limit(&state, &caller, requested)
    })?;
    let page = core
        .store
        .list_debates(&statuses, limit, offset)
        .await
        .map_err(|err| ApiError::internal("could not list debates", err))?;
    let debates = page.debates.iter().map(summary).collect();
    Ok(Json(DebatePage {
        debates,
        total: page.total,
        limit,
        offset,
    }))
}

fn fields(record: &DebateRecord) -> DebateFields {
    DebateFields {
        debate_id: record.id.clone(),
        topic: record.topic.clone(),
        outcome: record.outcome,
        rounds: record.rounds,
        agents: record.agents.clone(),
        consensus_rule: record.consensus_rule,
        consensus_reached: record.consensus_reached,
        created_at: format_ms(record.created_at_ms),
        started_at: record.started_at_ms.map(format_ms),
        finished_at: record.finished_at_ms.map(format_ms),
    }
}

fn summary(record: &DebateRecord) -> DebateSummary {
    DebateSummary {
        fields: fields(record),
        status: record.status,
    }
}

/// The debate with this id, or 404 saying how to find one.
async fn find_debate<'a>(
    state: &'a AppState,
    id: &str,
) -> Result<(&'a Core, DebateRecord), ApiError> {
    let core = state.core()?;
    let record = core
        .store
        .debate(id)
        .await
        .map_err(|err| ApiError::internal("could not read the debate", err))?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no debate with id {id:?}; list debates with GET /api/debates"
            ))
        })?;
    Ok((core, record))
}

async fn load(state: &AppState, id: &str) -> Result<(DebateRecord, Vec<DebateEvent>), ApiError> {
    let (core, record) = find_debate(state, id).await?;
    let events = core
        .store
        .events_after(id, 0, i64::MAX)
        .await
        .map_err(|err| ApiError::internal("could not read the debate's events", err))?;
    Ok((record, events))
}

/// An agent's words as the API lists them; fields a kind lacks are null.
fn message(event: &DebateEvent) -> DebateMessage {
    let (phase, target, choice, text, provider) = match event.payload() {
        Ok(EventPayload::AgentMessage {
            phase,
            text,
            provider,
        }) => (Some(phase), None, None, Some(text), Some(provider)),
        Ok(EventPayload::Critique {
            phase,
            target,
            text,
            provider,
        }) => (Some(phase), Some(target), None, Some(text), Some(provider)),
        Ok(EventPayload::Vote {
            phase,
            choice,
            text,
            provider,
        }) => (Some(phase), None, choice, Some(text), Some(provider)),
        _ => (None, None, None, None, None),
    };
    DebateMessage {
        seq: event.seq,
        round: event.round,
        agent: event.agent.clone(),
        kind: event.kind,
        phase,
        target,
        choice,
        text,
        provider,
        timestamp: event.timestamp.clone(),
    }
}

/// An agent's failed call as `agent_errors` lists it.
fn agent_error(event: &DebateEvent) -> Option<AgentCallError> {
    let EventPayload::Error { phase, message, .. } = event.payload().ok()? else {
        return None;
    };
    Some(AgentCallError {
        seq: event.seq,
        round: event.round,
        agent: event.agent.clone(),
        phase,
        message,
    })
}

/// A debate with its messages, votes and result (readers, or a share link to it).
#[utoipa::path(get, path = "/debates/{id}", operation_id = "debate", tag = "debates",
    security(("bearer" = []), ("query_token" = [])),
    params(("id" = String, Path, description = DEBATE_ID)),
    responses(
        (status = 200, description = "The debate.", body = DebateDetail),
        (status = 404, description = "No such debate.", body = ErrorBody),
    ))]
pub async fn show(
    State(state): State<AppState>,
    _: DebateReader,
    Path(id): Path<String>,
) -> Result<Json<DebateDetail>, ApiError> {
    let (record, events) = load(&state, &id).await?;
    let messages = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::AgentMessage | EventKind::Critique))
        .map(message)
        .collect();
    let votes = events
        .iter()
        .filter(|e| e.kind == EventKind::Vote)
        .map(message)
        .collect();
    let agent_errors = events.iter().filter_map(agent_error).collect();
    let consensus = events
        .iter()
        .rev()
        .find(|e| e.kind == EventKind::Consensus)
        .map(|e| e.data.clone());
    let current_round = events.iter().filter_map(|e| e.round).max().unwrap_or(0);
    Ok(Json(DebateDetail {
        summary: summary(&record),
        current_round,
        seed: record.seed,
        messages,
        votes,
        consensus,
        final_answer: record.final_answer,
        error: record.error,
        agent_errors,
        last_seq: record.last_seq,
        created_by: record.created_by,
        replica: record.lease.owner,
        cancel_requested_at: record.cancel_requested_at_ms.map(format_ms),
    }))
}

/// A debate's messages, critiques and votes in order (readers, or a share link to it).
#[utoipa::path(get, path = "/debates/{id}/messages", operation_id = "debate_messages",
    tag = "debates", security(("bearer" = []), ("query_token" = [])),
    params(("id" = String, Path, description = DEBATE_ID)),
    responses(
        (status = 200, description = "The messages.", body = MessageList),
        (status = 404, description = "No such debate.", body = ErrorBody),
    ))]
pub async fn messages(
    State(state): State<AppState>,
    _: DebateReader,
    Path(id): Path<String>,
) -> Result<Json<MessageList>, ApiError> {
    let (_, events) = load(&state, &id).await?;
    let messages: Vec<DebateMessage> = events
        .iter()
        .filter(|e| e.kind.is_message())
        .map(message)
        .collect();
    Ok(Json(MessageList {
        debate_id: id,
        total: messages.len(),
        messages,
    }))
}

/// Cancels the debate wherever it runs: here directly, on another replica through a request
/// recorded in the database (that replica's next lease renewal acts on it). 200 with the
/// cancelled record once it is final; 202 with status `cancelling` when the replica that runs
/// it has not ended it within 10 s (it will, or it has died and whoever adopts it does).
#[utoipa::path(post, path = "/debates/{id}/cancel", operation_id = "cancel_debate",
    tag = "debates", security(("bearer" = [])),
    params(("id" = String, Path, description = DEBATE_ID)),
    responses(
        (status = 200, description = "Cancelled.", body = DebateSummary),
        (status = 202, description = "Asked of the replica that runs it, which has not acted yet.", body = CancelRequested),
        (status = 404, description = "No such debate.", body = ErrorBody),
        (status = 409, description = "The debate already ended.", body = ErrorBody),
    ))]
pub async fn cancel(
    State(state): State<AppState>,
    Operator(caller): Operator,
    route: MatchedPath,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (core, record) = find_debate(&state, &id).await?;
    // Operators cancel their own debates; admins anyone's.
    check(
        &state,
        route.as_str(),
        &caller,
        caller.require_cancel(record.created_by.as_deref()),
    )?;
    let result = core
        .orchestrator
        .cancel(&id, &caller.subject)
        .await
        .map_err(|err| ApiError::internal("could not cancel the debate", err))?;
    match result {
        CancelResult::Cancelled(record) => Ok(Json(summary(&record)).into_response()),
        CancelResult::Requested(record) => {
            let body = CancelRequested {
                fields: fields(&record),
                status: Cancelling::Cancelling,
                message: format!(
                    "the replica running debate {id} has been asked to cancel it and has not yet; GET /api/debates/{id} shows when it is cancelled"
                ),
            };
            Ok((StatusCode::ACCEPTED, Json(body)).into_response())
        }
        CancelResult::AlreadyFinal(record) => Err(ApiError::conflict(format!(
            "debate {id} already ended as {}; only queued or running debates can be cancelled",
            record.status.as_str()
        ))),
        CancelResult::NotFound => Err(ApiError::not_found(format!(
            "no debate with id {id:?}; list debates with GET /api/debates"
        ))),
    }
}

/// The signed receipt of a completed debate, as stored: save it and verify it offline with
/// `aragora receipt verify FILE`.
#[utoipa::path(get, path = "/debates/{id}/receipt", operation_id = "debate_receipt",
    tag = "receipts", security(("bearer" = []), ("query_token" = [])),
    params(("id" = String, Path, description = DEBATE_ID)),
    responses(
        (status = 200, description = "The signed receipt.", body = Receipt),
        (status = 404, description = "No such debate, or it ended without a receipt (`no_receipt`).", body = ErrorBody),
        (status = 409, description = "The debate has not ended yet.", body = ErrorBody),
    ))]
pub async fn receipt(
    State(state): State<AppState>,
    _: DebateReader,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (core, record) = find_debate(&state, &id).await?;
    if !record.status.is_final() {
        return Err(ApiError::conflict(format!(
            "debate {id} is {}; its receipt is issued when it completes",
            record.status.as_str()
        )));
    }
    let body = core
        .store
        .receipt(&id)
        .await
        .map_err(|err| ApiError::internal("could not read the receipt", err))?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no_receipt",
                format!(
                    "debate {id} ended as {}; receipts are issued only for completed debates",
                    record.status.as_str()
                ),
            )
        })?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// Verifies a receipt sent as the request body against the key ring. The answer names the key
/// (its id, whether it is current, where it is configured), never its value.
#[utoipa::path(post, path = "/receipts/verify", operation_id = "verify_receipt",
    tag = "receipts", security(("bearer" = [])), request_body = Receipt,
    responses((status = 200, description = "Whether the receipt is valid, and which key signed it.", body = Verification)))]
pub async fn verify_receipt(
    State(state): State<AppState>,
    _: Reader,
    ApiText(body): ApiText,
) -> Result<Json<Verification>, ApiError> {
    match state.receipts.verify_json(&body) {
        Ok((receipt, verified)) => Ok(Json(Verification {
            valid: true,
            debate_id: Some(receipt.debate_id),
            signed_with: Some(verified.signed_with),
            current: Some(verified.is_current()),
            key_source: Some(verified.source.to_string()),
            key_id: Some(verified.key_id),
            reason: None,
        })),
        Err(crate::receipts::VerifyError::Malformed(reason)) => Err(ApiError::bad_request(format!(
            "the body is not a receipt ({reason}); send the JSON from GET /api/debates/{{id}}/receipt"
        ))),
        Err(err) => Ok(Json(Verification {
            valid: false,
            debate_id: None,
            signed_with: None,
            key_id: None,
            current: None,
            key_source: None,
            reason: Some(err.to_string()),
        })),
    }
}
