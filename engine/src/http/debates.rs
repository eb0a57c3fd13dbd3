//! `/api/debates`: start, list, show, list messages of, and cancel debates.
//!
//! Handlers validate input, hand work to the orchestrator and render records; the debate
//! itself is in `crate::debate`.

use super::access::{check, DebateReader, Operator, Reader};
use super::{AppState, Core};
use crate::agents::AgentRegistry;
use crate::config::EngineConfig;
use crate::error::ApiError;
use crate::model::{
    format_ms, now_ms, ConsensusRule, DebateEvent, DebateRecord, DebateStatus, EventKind,
    EventPayload,
};
use crate::orchestrator::{AdmitError, CancelResult};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, MatchedPath, Path, Query, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// `axum::Json` whose rejections are rendered as the API's JSON errors.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// `axum::extract::Query` whose rejections are rendered as the API's JSON errors.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

// Keep the rejection types in use so the derive's `From` impls are the ones in `error.rs`.
const _: fn(JsonRejection, QueryRejection) = |_, _| {};

const MAX_AGENTS: usize = 8;
const MIN_AGENTS: usize = 2;

/// The body of `POST /api/debates`. `question` is accepted as a synonym of `topic`, and the
/// settings may also be nested under `config` (the cloud runbook's request shape).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateDebate {
    topic: Option<String>,
    question: Option<String>,
    rounds: Option<i64>,
    agents: Option<Vec<String>>,
    consensus: Option<String>,
    seed: Option<i64>,
    config: Option<CreateDebateConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateDebateConfig {
    rounds: Option<i64>,
    agents: Option<Vec<String>>,
    consensus: Option<String>,
    seed: Option<i64>,
}

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
        AdmitError::Draining => ApiError::unavailable(
            format!("{err}; retry, and the load balancer will send you to a ready replica"),
            2,
        ),
        AdmitError::Store(err) => ApiError::internal("could not save the debate", err),
    })?;
    let location = format!("/api/debates/{}", record.id);
    let body = json!({
        "debate_id": record.id,
        "status": record.status,
        "topic": record.topic,
        "rounds": record.rounds,
        "agents": record.agents,
        "consensus_rule": record.consensus_rule,
        "seed": record.seed,
        "created_at": format_ms(record.created_at_ms),
        "created_by": record.created_by,
        "links": {
            "self": location,
            "messages": format!("{location}/messages"),
            "websocket": format!("/ws?debate_id={}", record.id),
        },
    });
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(body),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    limit: Option<i64>,
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

/// The query of `GET /api/debates` in `uri` read and checked as the handler does (`fuzzing/`
/// tries any query through it).
pub fn parse_list_query(uri: &Uri) -> Result<ListParams, ApiError> {
    let Query(query) = Query::<ListQuery>::try_from_uri(uri)?;
    list_params(query)
}

fn list_params(query: ListQuery) -> Result<ListParams, ApiError> {
    let statuses = parse_status_filter(query.status.as_deref().unwrap_or(""))?;
    let limit = query.limit.unwrap_or(20);
    let offset = query.offset.unwrap_or(0);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit is {limit}; use 1 to 100"
        )));
    }
    if offset < 0 {
        return Err(ApiError::bad_request(format!(
            "offset is {offset}; use 0 or more"
        )));
    }
    Ok(ListParams {
        statuses,
        limit,
        offset,
    })
}

pub async fn list(
    State(state): State<AppState>,
    _: Reader,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let core = state.core()?;
    let ListParams {
        statuses,
        limit,
        offset,
    } = list_params(query)?;
    let page = core
        .store
        .list_debates(&statuses, limit, offset)
        .await
        .map_err(|err| ApiError::internal("could not list debates", err))?;
    let debates: Vec<Value> = page.debates.iter().map(summary).collect();
    Ok(Json(json!({
        "debates": debates,
        "total": page.total,
        "limit": limit,
        "offset": offset,
    })))
}

fn summary(record: &DebateRecord) -> Value {
    json!({
        "debate_id": record.id,
        "topic": record.topic,
        "status": record.status,
        "outcome": record.outcome,
        "rounds": record.rounds,
        "agents": record.agents,
        "consensus_rule": record.consensus_rule,
        "consensus_reached": record.consensus_reached,
        "created_at": format_ms(record.created_at_ms),
        "started_at": record.started_at_ms.map(format_ms),
        "finished_at": record.finished_at_ms.map(format_ms),
    })
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
fn message(event: &DebateEvent) -> Value {
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
    json!({
        "seq": event.seq,
        "round": event.round,
        "agent": event.agent,
        "type": event.kind,
        "phase": phase,
        "target": target,
        "choice": choice,
        "text": text,
        "provider": provider,
        "timestamp": event.timestamp,
    })
}

/// An agent's failed call as `agent_errors` lists it.
fn agent_error(event: &DebateEvent) -> Option<Value> {
    let EventPayload::Error { phase, message, .. } = event.payload().ok()? else {
        return None;
    };
    Some(
        json!({"seq": event.seq, "round": event.round, "agent": event.agent, "phase": phase, "message": message}),
    )
}

pub async fn show(
    State(state): State<AppState>,
    _: DebateReader,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (record, events) = load(&state, &id).await?;
    let messages: Vec<Value> = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::AgentMessage | EventKind::Critique))
        .map(message)
        .collect();
    let votes: Vec<Value> = events
        .iter()
        .filter(|e| e.kind == EventKind::Vote)
        .map(message)
        .collect();
    let errors: Vec<Value> = events.iter().filter_map(agent_error).collect();
    let consensus = events
        .iter()
        .rev()
        .find(|e| e.kind == EventKind::Consensus)
        .map(|e| e.data.clone());
    let current_round = events.iter().filter_map(|e| e.round).max().unwrap_or(0);
    let mut body = summary(&record);
    let extra = json!({
        "current_round": current_round,
        "seed": record.seed,
        "messages": messages,
        "votes": votes,
        "consensus": consensus,
        "final_answer": record.final_answer,
        "error": record.error,
        "agent_errors": errors,
        "last_seq": record.last_seq,
        "created_by": record.created_by,
        "replica": record.lease.owner,
        "cancel_requested_at": record.cancel_requested_at_ms.map(format_ms),
    });
    if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    Ok(Json(body))
}

pub async fn messages(
    State(state): State<AppState>,
    _: DebateReader,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (_, events) = load(&state, &id).await?;
    let messages: Vec<Value> = events
        .iter()
        .filter(|e| e.kind.is_message())
        .map(message)
        .collect();
    Ok(Json(
        json!({"debate_id": id, "total": messages.len(), "messages": messages}),
    ))
}

/// Cancels the debate wherever it runs: here directly, on another replica through a request
/// recorded in the database (that replica's next lease renewal acts on it). 200 with the
/// cancelled record once it is final; 202 with status `cancelling` when the replica that runs
/// it has not ended it within 10 s (it will, or it has died and whoever adopts it does).
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
            let mut body = summary(&record);
            body["status"] = json!("cancelling");
            body["message"] = json!(format!(
                "the replica running debate {id} has been asked to cancel it and has not yet; GET /api/debates/{id} shows when it is cancelled"
            ));
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
pub async fn verify_receipt(
    State(state): State<AppState>,
    _: Reader,
    body: String,
) -> Result<Json<Value>, ApiError> {
    match state.receipts.verify_json(&body) {
        Ok((receipt, verified)) => Ok(Json(json!({
            "valid": true,
            "debate_id": receipt.debate_id,
            "signed_with": verified.signed_with,
            "key_id": verified.key_id,
            "current": verified.is_current(),
            "key_source": verified.source.to_string(),
        }))),
        Err(crate::receipts::VerifyError::Malformed(reason)) => Err(ApiError::bad_request(format!(
            "the body is not a receipt ({reason}); send the JSON from GET /api/debates/{{id}}/receipt"
        ))),
        Err(err) => Ok(Json(json!({"valid": false, "reason": err.to_string()}))),
    }
}
