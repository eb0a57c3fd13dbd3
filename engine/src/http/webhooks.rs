//! `/api/admin/webhooks` (admins): subscriptions (create, list, show, pause, resume, delete),
//! the dead-letter queue and the retry of a dead delivery. What delivery does is
//! [`crate::webhooks`]'.
//!
//! A subscription's secret is write-only: it is encrypted at rest and never shown again; a
//! view says only `has_secret`. Views show the URL's endpoint and path, never its query (a
//! receiver's token may be there) — the URL as given is the creator's to keep.

use super::access::Admin;
use super::body::ApiJson;
use super::debates::ApiQuery;
use super::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::model::{format_ms, now_ms};
use crate::webhooks::breaker::BreakerState;
use crate::webhooks::outbox::{self, Delivery, DeliveryState, Subscription};
use crate::webhooks::{EventType, Webhooks};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

/// Longest URL accepted.
const MAX_URL_CHARS: usize = 2048;
/// Secrets: 16 to 256 characters (shorter ones are guessable).
const MIN_SECRET_CHARS: usize = 16;
const MAX_SECRET_CHARS: usize = 256;

/// The body of `POST /api/admin/webhooks`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// `https://...` (http only with ARAGORA_WEBHOOK_ALLOW_HTTP); no private, loopback or
    /// link-local host unless ARAGORA_WEBHOOK_ALLOW_PRIVATE. At most 2048 characters.
    #[schema(required = true, value_type = String, max_length = 2048)]
    url: Option<String>,
    /// One or more of debate_start, debate_end, consensus, debate_failed, drill_failed,
    /// slo_alert.
    #[schema(required = true, value_type = Vec<String>, min_items = 1)]
    event_types: Option<Vec<String>>,
    /// HMAC key of the signatures, 16 to 256 characters; write-only. Without it, deliveries
    /// are unsigned.
    #[schema(min_length = 16, max_length = 256)]
    secret: Option<String>,
    /// False creates it paused (default true).
    enabled: Option<bool>,
}

/// A delivery as listed.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    id: String,
    webhook_id: String,
    event_type: String,
    state: DeliveryState,
    attempts: i64,
    /// When it is (or was to be) tried next.
    next_attempt_at: String,
    /// The receiver's last HTTP status, if it answered.
    last_status: Option<i64>,
    last_error: Option<String>,
    created_at: String,
    updated_at: String,
    delivered_at: Option<String>,
}

impl From<&Delivery> for DeliveryView {
    fn from(d: &Delivery) -> Self {
        Self {
            id: d.id.clone(),
            webhook_id: d.subscription_id.clone(),
            event_type: d.event_type.clone(),
            state: d.state,
            attempts: d.attempts,
            next_attempt_at: format_ms(d.next_attempt_at_ms),
            last_status: d.last_status,
            last_error: d.last_error.clone(),
            created_at: format_ms(d.created_at_ms),
            updated_at: format_ms(d.updated_at_ms),
            delivered_at: d.delivered_at_ms.map(format_ms),
        }
    }
}

/// A subscription as shown: never its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    id: String,
    url: String,
    event_types: Vec<String>,
    /// `active` or `paused`.
    state: &'static str,
    has_secret: bool,
    /// Who created it.
    owner: String,
    created_at: String,
    updated_at: String,
    /// Its most recently changed delivery, if any.
    last_delivery: Option<DeliveryView>,
    /// The breaker of its endpoint (shared by every replica).
    breaker: BreakerState,
}

/// `GET /api/admin/webhooks`.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookList {
    webhooks: Vec<WebhookView>,
}

/// `GET /api/admin/webhooks/dead-letters`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetters {
    deliveries: Vec<DeliveryView>,
    /// Dead deliveries in all (the queue's depth).
    total: i64,
}

/// The query of the dead-letter queue.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterQuery {
    /// 1 to ARAGORA_MAX_LIST_LIMIT (default 100, or that limit when smaller).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
}

fn webhooks(state: &AppState) -> Result<Arc<Webhooks>, ApiError> {
    state.core()?.webhooks.clone().ok_or_else(|| {
        ApiError::unavailable("webhooks need the engine's database, which this engine does not have yet; retry shortly", 2)
    })
}

fn store_failed(err: sqlx::Error) -> ApiError {
    ApiError::internal("the webhook tables could not be read or written", err)
}

fn unknown(id: &str) -> ApiError {
    ApiError::not_found(format!(
        "no webhook with id {id:?}; list them with GET /api/admin/webhooks"
    ))
}

async fn view(hooks: &Webhooks, s: &Subscription) -> Result<WebhookView, ApiError> {
    let last = outbox::last_delivery(hooks.pool(), &s.id)
        .await
        .map_err(store_failed)?;
    Ok(WebhookView {
        id: s.id.clone(),
        url: s.url.clone(),
        event_types: s
            .event_types
            .iter()
            .map(|t| t.as_str().to_string())
            .collect(),
        state: if s.enabled { "active" } else { "paused" },
        has_secret: s.secret_sealed.is_some(),
        owner: s.owner.clone(),
        created_at: format_ms(s.created_at_ms),
        updated_at: format_ms(s.updated_at_ms),
        last_delivery: last.as_ref().map(DeliveryView::from),
        breaker: hooks.breaker(&s.url).await.map_err(store_failed)?,
    })
}

/// The event types of a body, each known, at least one, no repeats (kept in the order given).
fn parse_event_types(given: Option<Vec<String>>) -> Result<Vec<EventType>, ApiError> {
    let names = given.unwrap_or_default();
    if names.is_empty() {
        return Err(ApiError::invalid(format!(
            "the body needs \"event_types\": a non-empty list of {}",
            EventType::names()
        )));
    }
    let mut types = Vec::new();
    for name in &names {
        let parsed = EventType::parse(name.trim()).ok_or_else(|| {
            ApiError::invalid(format!(
                "\"event_types\" holds {name:?}, which is not an event type; use {}",
                EventType::names()
            ))
        })?;
        if !types.contains(&parsed) {
            types.push(parsed);
        }
    }
    Ok(types)
}

fn parse_secret(secret: Option<String>) -> Result<Option<String>, ApiError> {
    let Some(secret) = secret else {
        return Ok(None);
    };
    let chars = secret.chars().count();
    if !(MIN_SECRET_CHARS..=MAX_SECRET_CHARS).contains(&chars) {
        return Err(ApiError::invalid(format!(
            "\"secret\" is {chars} characters; use {MIN_SECRET_CHARS} to {MAX_SECRET_CHARS} (e.g. `openssl rand -hex 32`), or leave it out for unsigned deliveries"
        )));
    }
    if secret.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "\"secret\" must not contain control characters",
        ));
    }
    Ok(Some(secret))
}

/// Subscribes a URL to event types (admins). The secret, if given, is never shown again.
#[utoipa::path(post, path = "/admin/webhooks", operation_id = "create_webhook", tag = "admin",
    security(("bearer" = [])), request_body = CreateWebhook,
    responses(
        (status = 201, description = "Created; `Location` names it.", body = WebhookView,
            headers(("Location" = String, description = "The subscription's URL."))),
        (status = 422, description = "A bad URL, an address egress refuses, an unknown event type or a bad secret.", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ApiJson(request): ApiJson<CreateWebhook>,
) -> Result<Response, ApiError> {
    let hooks = webhooks(&state)?;
    let raw = request.url.as_deref().map(str::trim).unwrap_or_default();
    if raw.is_empty() {
        return Err(ApiError::invalid(
            "the body needs \"url\": the https:// URL deliveries are POSTed to",
        ));
    }
    if raw.chars().count() > MAX_URL_CHARS {
        return Err(ApiError::invalid(format!(
            "\"url\" is longer than {MAX_URL_CHARS} characters"
        )));
    }
    let event_types = parse_event_types(request.event_types)?;
    let secret = parse_secret(request.secret)?;
    let policy = hooks.egress();
    let url = policy
        .check_url(raw)
        .map_err(|err| ApiError::invalid(format!("\"url\": {err}")))?;
    // Every address the host has now; each delivery checks again (DNS may change).
    policy
        .resolve(&url)
        .await
        .map_err(|err| ApiError::invalid(format!("\"url\": {err}")))?;
    let id = format!("wh_{}", uuid::Uuid::new_v4().simple());
    let now = now_ms();
    let subscription = Subscription {
        secret_sealed: secret.map(|s| hooks.secrets().seal(&id, &s)),
        id,
        owner: admin.subject.clone(),
        url: url.to_string(),
        event_types,
        enabled: request.enabled.unwrap_or(true),
        created_at_ms: now,
        updated_at_ms: now,
    };
    outbox::insert_subscription(hooks.pool(), &subscription)
        .await
        .map_err(store_failed)?;
    tracing::warn!(webhook = %subscription.id, endpoint = %crate::webhooks::egress::endpoint(&url), by = %admin.subject, "webhook subscription created");
    let body = view(&hooks, &subscription).await?;
    Ok((
        StatusCode::CREATED,
        [(
            header::LOCATION,
            format!("/api/admin/webhooks/{}", subscription.id),
        )],
        Json(body),
    )
        .into_response())
}

/// Every subscription with its last delivery and breaker (admins); never a secret.
#[utoipa::path(get, path = "/admin/webhooks", operation_id = "webhooks", tag = "admin",
    security(("bearer" = [])),
    responses((status = 200, description = "The subscriptions, oldest first.", body = WebhookList)))]
pub async fn list(
    State(state): State<AppState>,
    Admin(_): Admin,
) -> Result<Json<WebhookList>, ApiError> {
    let hooks = webhooks(&state)?;
    let subscriptions = outbox::subscriptions(hooks.pool())
        .await
        .map_err(store_failed)?;
    let mut webhooks = Vec::with_capacity(subscriptions.len());
    for s in &subscriptions {
        webhooks.push(view(&hooks, s).await?);
    }
    Ok(Json(WebhookList { webhooks }))
}

async fn find(hooks: &Webhooks, id: &str) -> Result<Subscription, ApiError> {
    outbox::subscription(hooks.pool(), id)
        .await
        .map_err(store_failed)?
        .ok_or_else(|| unknown(id))
}

/// One subscription (admins).
#[utoipa::path(get, path = "/admin/webhooks/{id}", operation_id = "webhook", tag = "admin",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The subscription's id (`wh_...`).")),
    responses(
        (status = 200, description = "The subscription.", body = WebhookView),
        (status = 404, description = "No such subscription.", body = ErrorBody),
    ))]
pub async fn show(
    State(state): State<AppState>,
    Admin(_): Admin,
    Path(id): Path<String>,
) -> Result<Json<WebhookView>, ApiError> {
    let hooks = webhooks(&state)?;
    let s = find(&hooks, &id).await?;
    Ok(Json(view(&hooks, &s).await?))
}

async fn set_enabled(
    state: &AppState,
    admin: &aragora_auth::Principal,
    id: &str,
    enabled: bool,
) -> Result<Json<WebhookView>, ApiError> {
    let hooks = webhooks(state)?;
    if !outbox::set_enabled(hooks.pool(), id, enabled, now_ms())
        .await
        .map_err(store_failed)?
    {
        return Err(unknown(id));
    }
    tracing::warn!(webhook = %id, enabled, by = %admin.subject, "webhook subscription paused or resumed");
    let s = find(&hooks, id).await?;
    Ok(Json(view(&hooks, &s).await?))
}

/// Pauses a subscription (admins; idempotent): no deliveries are made or queued for it until
/// it is resumed (events meanwhile are not sent later).
#[utoipa::path(post, path = "/admin/webhooks/{id}/pause", operation_id = "pause_webhook", tag = "admin",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The subscription's id.")),
    responses(
        (status = 200, description = "Paused.", body = WebhookView),
        (status = 404, description = "No such subscription.", body = ErrorBody),
    ))]
pub async fn pause(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> Result<Json<WebhookView>, ApiError> {
    set_enabled(&state, &admin, &id, false).await
}

/// Resumes a paused subscription (admins; idempotent).
#[utoipa::path(post, path = "/admin/webhooks/{id}/resume", operation_id = "resume_webhook", tag = "admin",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The subscription's id.")),
    responses(
        (status = 200, description = "Active.", body = WebhookView),
        (status = 404, description = "No such subscription.", body = ErrorBody),
    ))]
pub async fn resume(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> Result<Json<WebhookView>, ApiError> {
    set_enabled(&state, &admin, &id, true).await
}

/// Deletes a subscription and its deliveries, dead ones included (admins).
#[utoipa::path(delete, path = "/admin/webhooks/{id}", operation_id = "delete_webhook", tag = "admin",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The subscription's id.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 404, description = "No such subscription.", body = ErrorBody),
    ))]
pub async fn delete(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let hooks = webhooks(&state)?;
    if !outbox::delete_subscription(hooks.pool(), &id)
        .await
        .map_err(store_failed)?
    {
        return Err(unknown(&id));
    }
    tracing::warn!(webhook = %id, by = %admin.subject, "webhook subscription deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// The dead-letter queue, most recently dead first (admins).
#[utoipa::path(get, path = "/admin/webhooks/dead-letters", operation_id = "webhook_dead_letters", tag = "admin",
    security(("bearer" = [])), params(DeadLetterQuery),
    responses((status = 200, description = "Dead deliveries.", body = DeadLetters)))]
pub async fn dead_letters(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ApiQuery(query): ApiQuery<DeadLetterQuery>,
) -> Result<Json<DeadLetters>, ApiError> {
    let requested = query.limit.or(Some(i64::from(state.config.max_list_limit)));
    let limit = super::limits::list_limit(&state, &admin, requested)?;
    let hooks = webhooks(&state)?;
    let (dead, total) = outbox::dead_letters(hooks.pool(), limit)
        .await
        .map_err(store_failed)?;
    hooks.metrics().dead_letter_depth.set(total);
    Ok(Json(DeadLetters {
        deliveries: dead.iter().map(DeliveryView::from).collect(),
        total,
    }))
}

/// Puts a dead delivery back in the queue, due now, with a fresh set of retries (admins). The
/// receiver gets the same delivery id and body.
#[utoipa::path(post, path = "/admin/webhooks/deliveries/{id}/retry", operation_id = "retry_webhook_delivery", tag = "admin",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The delivery's id (`dlv_...`).")),
    responses(
        (status = 202, description = "Queued again.", body = DeliveryView),
        (status = 404, description = "No such delivery.", body = ErrorBody),
        (status = 409, description = "The delivery is not dead (pending or delivered).", body = ErrorBody),
    ))]
pub async fn retry(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let hooks = webhooks(&state)?;
    let requeued = outbox::retry_dead(hooks.pool(), &id, now_ms())
        .await
        .map_err(store_failed)?;
    let delivery = outbox::delivery(hooks.pool(), &id)
        .await
        .map_err(store_failed)?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no webhook delivery with id {id:?}; see GET /api/admin/webhooks/dead-letters"
            ))
        })?;
    if !requeued {
        return Err(ApiError::conflict(format!(
            "delivery {id} is {}, not dead; only dead-lettered deliveries are retried",
            delivery.state.as_str()
        )));
    }
    tracing::warn!(delivery = %id, by = %admin.subject, "dead webhook delivery queued again");
    Ok((StatusCode::ACCEPTED, Json(DeliveryView::from(&delivery))).into_response())
}
