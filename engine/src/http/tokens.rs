//! `/api/auth`: who am I (`GET /me`), API keys (admins create, list and revoke them) and
//! short-lived JWTs minted for the caller (`POST /token`).
//!
//! A key is shown once, in the answer that creates it; listings show its public `ara_<id>`
//! prefix, never the secret or its hash. Creations and revocations are logged at warn with the
//! prefix, name, role and who did it.

use super::access::{check, Admin, Caller};
use super::body::{read_optional, ApiJson, ApiText};
use super::debates::ApiQuery;
use super::AppState;
use crate::error::{ApiError, ErrorBody};
use aragora_auth::{
    generate_key, AuthError, Identity, KeyStore, KeyView, Role, StoredKey, KEY_PREFIX,
};
use axum::extract::{MatchedPath, Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

/// Keys live at most ten years (a longer "forever" is no expiry at all: leave `ttl_secs` out).
const MAX_KEY_TTL_SECS: i64 = 10 * 365 * 24 * 3600;
const MAX_NAME_CHARS: usize = 64;

/// Who the credential is: subject, role, scope, kind, expiry, permissions (any credential).
#[utoipa::path(get, path = "/auth/me", operation_id = "me", tag = "auth",
    security(("bearer" = [])),
    responses((status = 200, description = "The caller.", body = Identity)))]
pub async fn me(Caller(caller): Caller) -> Json<Identity> {
    Json(caller.describe())
}

/// The body of `POST /api/auth/api-key`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// What the key is for, 1 to 64 characters, not blank (e.g. "ci-deploy").
    #[schema(required = true, value_type = String, min_length = 1, max_length = 64, pattern = r"\S")]
    name: Option<String>,
    #[schema(required = true, value_type = Role)]
    role: Option<String>,
    /// Seconds the key lives, 1 to 315360000 (ten years); leave it out for no expiry.
    #[schema(minimum = 1, maximum = 315360000)]
    ttl_secs: Option<i64>,
}

/// A key just created: the listing's view and the whole key, shown only now.
#[derive(Serialize, ToSchema)]
pub struct CreatedKey {
    #[serde(flatten)]
    view: KeyView,
    /// `ara_<id>_<secret>`: send it as `Authorization: Bearer`.
    key: String,
    note: &'static str,
}

/// `GET /api/auth/api-keys`.
#[derive(Serialize, ToSchema)]
pub struct KeyList {
    api_keys: Vec<KeyView>,
    /// Keys in all, across pages.
    total: usize,
    limit: i64,
    offset: i64,
}

/// A key after `DELETE /api/auth/api-key/{id}`.
#[derive(Serialize, ToSchema)]
pub struct RevokedKey {
    #[serde(flatten)]
    view: KeyView,
    /// True when it was revoked before this call.
    already_revoked: bool,
}

/// A JWT just minted.
#[derive(Serialize, ToSchema)]
pub struct MintedToken {
    token: String,
    /// Unix seconds.
    expires_at: i64,
    role: Role,
    subject: String,
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

/// Creates an API key (admins); the key is in this answer only.
#[utoipa::path(post, path = "/auth/api-key", operation_id = "create_api_key", tag = "auth",
    security(("bearer" = [])), request_body = CreateKey,
    responses((status = 201, description = "Created; `Location` names it.", body = CreatedKey,
        headers(("Location" = String, description = "The key's URL (for DELETE).")),
        links(("revoke" = (operation_id = "revoke_api_key", parameters(("id" = "$response.body#/id"))))))))]
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
    let body = CreatedKey {
        view: stored.view(crate::model::now_ms()),
        key: issued.key.clone(),
        note: "the key is shown only now; store it safely",
    };
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/api/auth/api-key/{}", stored.id))],
        Json(body),
    )
        .into_response())
}

/// The query of `GET /api/auth/api-keys`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct KeyListQuery {
    /// 1 to `ARAGORA_MAX_LIST_LIMIT` (default: that limit, 100 unless configured).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// 0 or more (default 0).
    #[param(minimum = 0)]
    offset: Option<i64>,
}

/// API keys newest first, revoked and expired ones included, a page at a time (admins); never
/// a secret.
///
/// `limit` defaults to `ARAGORA_MAX_LIST_LIMIT`, so a listing that fit in one answer still does.
#[utoipa::path(get, path = "/auth/api-keys", operation_id = "api_keys", tag = "auth",
    security(("bearer" = [])), params(KeyListQuery),
    responses((status = 200, description = "A page of keys.", body = KeyList)))]
pub async fn list_keys(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ApiQuery(query): ApiQuery<KeyListQuery>,
) -> Result<Json<KeyList>, ApiError> {
    let requested = query.limit.or(Some(i64::from(state.config.max_list_limit)));
    let limit = super::limits::list_limit(&state, &admin, requested)?;
    let offset = super::limits::list_offset(query.offset)?;
    let now = crate::model::now_ms();
    let listed = keys(&state)?.list_keys().await.map_err(store_failed)?;
    let api_keys = listed
        .iter()
        .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        .take(usize::try_from(limit).unwrap_or(0))
        .map(|key| key.view(now))
        .collect();
    Ok(Json(KeyList {
        api_keys,
        total: listed.len(),
        limit,
        offset,
    }))
}

/// Revokes an API key by its id or `ara_<id>` prefix (admins); idempotent.
///
/// A key already revoked answers 200 again (with `"already_revoked": true`), an unknown one 404.
#[utoipa::path(delete, path = "/auth/api-key/{id}", operation_id = "revoke_api_key", tag = "auth",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The key's id or its `ara_<id>` prefix.")),
    responses(
        (status = 200, description = "Revoked (now or before).", body = RevokedKey),
        (status = 404, description = "No such key.", body = ErrorBody),
    ))]
pub async fn revoke_key(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> Result<Json<RevokedKey>, ApiError> {
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
    Ok(Json(RevokedKey {
        view: key.view(crate::model::now_ms()),
        already_revoked: !revoked,
    }))
}

/// The body of `POST /api/auth/token`; empty for a token with the caller's own role.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MintToken {
    /// At most the caller's own (the default).
    #[schema(value_type = Option<Role>)]
    role: Option<String>,
    /// 1 to ARAGORA_JWT_TTL seconds (the default).
    #[schema(minimum = 1)]
    ttl_secs: Option<i64>,
}

/// Mints a short-lived JWT for the caller, with its role or a lower one (readers and up).
#[utoipa::path(post, path = "/auth/token", operation_id = "mint_token", tag = "auth",
    security(("bearer" = [])),
    request_body(content = Option<MintToken>, description = "Optional: no body for the caller's role and the longest life."),
    responses(
        (status = 200, description = "The token.", body = MintedToken),
        (status = 409, description = "ARAGORA_JWT_SECRET is not set: this engine cannot mint JWTs.", body = ErrorBody),
    ))]
pub async fn mint_token(
    State(state): State<AppState>,
    Caller(caller): Caller,
    route: MatchedPath,
    ApiText(body): ApiText,
) -> Result<Json<MintedToken>, ApiError> {
    // A share link reads one debate; it may not mint itself a wider credential.
    check(
        &state,
        route.as_str(),
        &caller,
        caller.require(Role::Reader),
    )?;
    let request: MintToken = read_optional(
        body.as_bytes(),
        r#"send {"role": "reader", "ttl_secs": 3600} or an empty body"#,
    )?;
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
    Ok(Json(MintedToken {
        token,
        expires_at: aragora_auth::unix_now() + ttl as i64,
        role,
        subject: caller.subject,
    }))
}
