//! `/api/auth`: who am I (`GET /me`), API keys (admins create, list and revoke them) and
//! short-lived JWTs minted for the caller (`POST /token`).
//!
//! A key is shown once, in the answer that creates it; listings show its public `ara_<id>`
//! prefix, never the secret or its hash. Creations and revocations are logged at warn with the
//! prefix, name, role and who did it.

use super::access::{check, Admin, Caller};
use super::debates::{ApiJson, ApiQuery};
use super::AppState;
use crate::error::ApiError;
use aragora_auth::{generate_key, AuthError, KeyStore, Role, StoredKey, KEY_PREFIX};
use axum::extract::{MatchedPath, Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// Keys live at most ten years (a longer "forever" is no expiry at all: leave `ttl_secs` out).
const MAX_KEY_TTL_SECS: i64 = 10 * 365 * 24 * 3600;
const MAX_NAME_CHARS: usize = 64;

pub async fn me(Caller(caller): Caller) -> Json<Value> {
    Json(caller.describe())
}

/// The body of `POST /api/auth/api-key`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    name: Option<String>,
    role: Option<String>,
    ttl_secs: Option<i64>,
}

fn roles() -> String {
    Role::ALL.map(Role::as_str).join(", ")
}

/// A role named in a body, or what to write instead.
fn parse_role(role: &str) -> Result<Role, ApiError> {
    Role::parse(role)
        .ok_or_else(|| ApiError::invalid(format!("\"role\" is {role:?}; use one of {}", roles())))
}

fn keys(state: &AppState) -> Result<Arc<dyn KeyStore>, ApiError> {
    state.auth.keys().cloned().ok_or_else(|| {
        ApiError::unavailable(
            "API keys live in the database, which is not connected yet; retry shortly",
            2,
        )
    })
}

fn store_failed(err: aragora_auth::KeyStoreError) -> ApiError {
    ApiError::internal("the API key store failed", err)
}

pub async fn create_key(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ApiJson(request): ApiJson<CreateKey>,
) -> Result<Response, ApiError> {
    let name = request.name.as_deref().map(str::trim).unwrap_or_default();
    if name.is_empty() {
        return Err(ApiError::invalid(
            "the body needs a non-empty \"name\" saying what the key is for (e.g. \"ci-deploy\")",
        ));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::invalid(format!(
            "\"name\" is {} characters; use at most {MAX_NAME_CHARS}",
            name.chars().count()
        )));
    }
    let role = parse_role(request.role.as_deref().ok_or_else(|| {
        ApiError::invalid(format!("the body needs \"role\": one of {}", roles()))
    })?)?;
    let ttl_ms = match request.ttl_secs {
        None => None,
        Some(ttl) if (1..=MAX_KEY_TTL_SECS).contains(&ttl) => Some(ttl * 1000),
        Some(ttl) => {
            return Err(ApiError::invalid(format!(
                "\"ttl_secs\" is {ttl}; use 1 to {MAX_KEY_TTL_SECS} (ten years), or leave it out for a key that does not expire"
            )))
        }
    };
    let store = keys(&state)?;
    let issued = generate_key(name, role, ttl_ms, &admin.subject);
    store
        .insert_key(&issued.stored)
        .await
        .map_err(store_failed)?;
    let stored = &issued.stored;
    tracing::warn!(key = %stored.prefix(), name = %stored.name, role = %stored.role, by = %admin.subject, "API key created");
    let mut body = stored.view(crate::model::now_ms());
    body["key"] = json!(issued.key);
    body["note"] = json!("the key is shown only now; store it safely");
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/api/auth/api-key/{}", stored.id))],
        Json(body),
    )
        .into_response())
}

/// The query of `GET /api/auth/api-keys`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyListQuery {
    limit: Option<i64>,
    offset: Option<i64>,
}

/// Keys newest first, a page at a time: `limit` (default and at most `ARAGORA_MAX_LIST_LIMIT`,
/// so a listing that fit in one answer still does) from `offset`.
pub async fn list_keys(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ApiQuery(query): ApiQuery<KeyListQuery>,
) -> Result<Json<Value>, ApiError> {
    let requested = query.limit.or(Some(i64::from(state.config.max_list_limit)));
    let limit = super::limits::list_limit(&state, &admin, requested)?;
    let offset = query.offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::bad_request(format!(
            "offset is {offset}; use 0 or more"
        )));
    }
    let now = crate::model::now_ms();
    let listed = keys(&state)?.list_keys().await.map_err(store_failed)?;
    let views: Vec<Value> = listed
        .iter()
        .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        .take(usize::try_from(limit).unwrap_or(0))
        .map(|key| key.view(now))
        .collect();
    Ok(Json(json!({
        "api_keys": views,
        "total": listed.len(),
        "limit": limit,
        "offset": offset,
    })))
}

/// Revokes a key by its id or its `ara_<id>` prefix. Revoking is idempotent: a key already
/// revoked answers 200 again (with `"already_revoked": true`), an unknown one 404.
pub async fn revoke_key(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = id.strip_prefix(KEY_PREFIX).unwrap_or(&id).to_string();
    let store = keys(&state)?;
    let unknown = || {
        ApiError::not_found(format!(
            "no API key with id {id:?}; list them with GET /api/auth/api-keys"
        ))
    };
    let key: StoredKey = store
        .find_key(&id)
        .await
        .map_err(store_failed)?
        .ok_or_else(unknown)?;
    let revoked = store
        .revoke_key(&id, crate::model::now_ms())
        .await
        .map_err(store_failed)?;
    // This replica stops trusting it at once; the others within ARAGORA_API_KEY_CACHE_SECONDS.
    state.auth.forget_key(&id);
    if revoked {
        tracing::warn!(key = %key.prefix(), name = %key.name, role = %key.role, by = %admin.subject, "API key revoked");
    }
    let key = store
        .find_key(&id)
        .await
        .map_err(store_failed)?
        .unwrap_or(key);
    let mut body = key.view(crate::model::now_ms());
    body["already_revoked"] = json!(!revoked);
    Ok(Json(body))
}

/// The body of `POST /api/auth/token`; empty for a token with the caller's own role.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MintToken {
    role: Option<String>,
    ttl_secs: Option<i64>,
}

pub async fn mint_token(
    State(state): State<AppState>,
    Caller(caller): Caller,
    route: MatchedPath,
    body: String,
) -> Result<Json<Value>, ApiError> {
    // A share link reads one debate; it may not mint itself a wider credential.
    check(
        &state,
        route.as_str(),
        &caller,
        caller.require(Role::Reader),
    )?;
    let request: MintToken = if body.trim().is_empty() {
        MintToken::default()
    } else {
        serde_json::from_str(&body).map_err(|err| {
            ApiError::bad_request(format!(
                "{err}; send {{\"role\": \"reader\", \"ttl_secs\": 3600}} or an empty body"
            ))
        })?
    };
    let role = match request.role.as_deref() {
        None => caller.role,
        Some(role) => parse_role(role)?,
    };
    check(
        &state,
        route.as_str(),
        &caller,
        caller.require(role).map_err(|_| AuthError::Forbidden {
            needed: role,
            subject: caller.subject.clone(),
        }),
    )?;
    let max = state.auth.config().jwt_ttl_secs;
    let ttl = match request.ttl_secs {
        None => max,
        Some(ttl) if ttl >= 1 && ttl.unsigned_abs() <= max => ttl.unsigned_abs(),
        Some(ttl) => {
            return Err(ApiError::invalid(format!(
                "\"ttl_secs\" is {ttl}; use 1 to {max} (ARAGORA_JWT_TTL)"
            )))
        }
    };
    let token = state
        .auth
        .mint_jwt(&caller.subject, role, Some(ttl))
        .map_err(|err| match err {
            aragora_auth::JwtError::NoSecret => ApiError::new(
                StatusCode::CONFLICT,
                "jwt_disabled",
                "this engine cannot mint JWTs: ARAGORA_JWT_SECRET is not set; set a secret of at least 32 characters (`openssl rand -base64 32`)",
            ),
            other => ApiError::internal("could not sign the JWT", other),
        })?;
    tracing::info!(subject = %caller.subject, %role, ttl_secs = ttl, "JWT minted");
    Ok(Json(json!({
        "token": token,
        "expires_at": aragora_auth::unix_now() + ttl as i64,
        "role": role,
        "subject": caller.subject,
    })))
}
