//! Who may call which endpoint: the one place the engine authenticates a request.
//!
//! Each handler names what it needs as its first extractor (before any body, so a caller
//! without the right credential learns nothing about the endpoint, not even a 400):
//!
//! | extractor | admits |
//! |---|---|
//! | [`Caller`] | any valid credential (a share link included) |
//! | [`Reader`], [`Operator`], [`Admin`] | that role or a higher one, over everything |
//! | [`DebateReader`] | a reader, or a share link to the `{id}` debate; also from `?token=` |
//!
//! A refusal is counted in `aragora_auth_failures_total{reason}` and logged with the route and
//! the credential's kind (an API key's public `ara_<id>` prefix at most, never a token or any
//! part of a secret); the client gets the same 401 (with `WWW-Authenticate`), 403 or 503 body
//! whatever the reason, from [`AuthError::public_code_and_message`].

use super::AppState;
use crate::error::ApiError;
use aragora_auth::{AuthError, Principal, Role};
use axum::extract::{FromRequestParts, MatchedPath, Path, Query};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use std::collections::HashMap;

/// The route template of a request, for logs (never its raw path or query).
fn route_of(parts: &Parts) -> String {
    parts
        .extensions
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into())
}

/// The kind of a presented credential and, for an API key, its public prefix: what a log may
/// say about a credential.
fn credential_hint(token: Option<&str>) -> (&'static str, Option<String>) {
    match token {
        None => ("none", None),
        Some(token) => {
            let key = aragora_auth::parse_key(token)
                .map(|(id, _)| format!("{}{id}", aragora_auth::KEY_PREFIX));
            (aragora_auth::CredentialKind::of(token).label(), key)
        }
    }
}

/// Counts, logs and renders a refusal.
pub(crate) fn refuse(
    state: &AppState,
    route: &str,
    token: Option<&str>,
    err: AuthError,
) -> ApiError {
    let (credential, key) = credential_hint(token);
    let key = key.unwrap_or_default();
    match err.metric_reason() {
        Some(reason) => {
            state.metrics.auth_failure(reason);
            if reason == "missing" {
                tracing::info!(reason, %route, credential, "request refused: no credential");
            } else {
                tracing::warn!(reason, %route, credential, %key, "request refused");
            }
        }
        None => {
            tracing::warn!(%route, credential, %key, error = %err, "credentials cannot be checked")
        }
    }
    api_error(&err)
}

/// The JSON answer to a refusal.
pub(crate) fn api_error(err: &AuthError) -> ApiError {
    let (code, message) = err.public_code_and_message();
    let status = StatusCode::from_u16(err.status()).unwrap_or(StatusCode::FORBIDDEN);
    let mut error = ApiError::new(status, code, message);
    match err {
        AuthError::Unauthenticated { .. } => error.challenge = Some(AuthError::WWW_AUTHENTICATE),
        AuthError::Unavailable(_) => error.retry_after = Some(2),
        AuthError::Forbidden { .. } => {}
    }
    error
}

/// The bearer token of `headers`, else `fallback` (a `token` query parameter or a WebSocket
/// subprotocol), authenticated; a refusal is counted and logged under `route`.
pub(crate) async fn authenticate(
    state: &AppState,
    route: &str,
    headers: &HeaderMap,
    fallback: Option<&str>,
) -> Result<Principal, ApiError> {
    let result = if headers.contains_key(axum::http::header::AUTHORIZATION) || fallback.is_none() {
        state.auth.authenticate_headers(headers).await
    } else {
        state.auth.authenticate(fallback).await
    };
    result.map_err(|err| {
        let token = aragora_auth::bearer_token(headers).or(fallback);
        refuse(state, route, token, err)
    })
}

/// A check of an authenticated principal (role, scope, ownership); a refusal is counted,
/// logged under `route` and rendered.
pub(crate) fn check(
    state: &AppState,
    route: &str,
    principal: &Principal,
    result: Result<(), AuthError>,
) -> Result<(), ApiError> {
    result.map_err(|err| {
        if let Some(reason) = err.metric_reason() {
            state.metrics.auth_failure(reason);
        }
        tracing::warn!(
            reason = err.metric_reason().unwrap_or("unavailable"),
            %route,
            subject = %principal.subject,
            role = %principal.role,
            credential = principal.via.kind(),
            "request refused: not allowed"
        );
        api_error(&err)
    })
}

/// The `token` query parameter, for share links and browsers that cannot set headers.
pub(crate) fn query_token(uri: &axum::http::Uri) -> Option<String> {
    Query::<HashMap<String, String>>::try_from_uri(uri)
        .ok()
        .and_then(|Query(mut query)| query.remove("token"))
        .filter(|token| !token.is_empty())
}

/// Any caller with a valid credential.
pub struct Caller(pub Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let route = route_of(parts);
        authenticate(state, &route, &parts.headers, None)
            .await
            .map(Caller)
    }
}

/// Authenticates and requires `role` over everything.
async fn with_role(parts: &Parts, state: &AppState, role: Role) -> Result<Principal, ApiError> {
    let route = route_of(parts);
    let principal = authenticate(state, &route, &parts.headers, None).await?;
    check(state, &route, &principal, principal.require(role))?;
    Ok(principal)
}

macro_rules! role_extractor {
    ($(#[$doc:meta])* $name:ident, $role:expr) => {
        $(#[$doc])*
        pub struct $name(pub Principal);

        impl FromRequestParts<AppState> for $name {
            type Rejection = ApiError;

            async fn from_request_parts(
                parts: &mut Parts,
                state: &AppState,
            ) -> Result<Self, ApiError> {
                with_role(parts, state, $role).await.map($name)
            }
        }
    };
}

role_extractor!(
    /// A reader or higher: list and read debates, receipts, agents, drills.
    Reader,
    Role::Reader
);
role_extractor!(
    /// An operator or higher: create debates, cancel one's own.
    Operator,
    Role::Operator
);
role_extractor!(
    /// An admin: circuit breakers, faults, keys and tokens, everything under /api/system.
    Admin,
    Role::Admin
);

/// A caller who may read and watch the `{id}` debate of the path: a reader, or a share link
/// to that debate. The credential may also come as `?token=` (links, browsers).
pub struct DebateReader(pub Principal);

impl FromRequestParts<AppState> for DebateReader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let route = route_of(parts);
        let token = query_token(&parts.uri);
        let principal = authenticate(state, &route, &parts.headers, token.as_deref()).await?;
        let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(ApiError::from)?;
        let id = params.get("id").map(String::as_str).unwrap_or_default();
        check(state, &route, &principal, principal.require_debate(id))?;
        Ok(DebateReader(principal))
    }
}

#[cfg(test)]
mod tests {
    use super::credential_hint;

    #[test]
    fn a_hint_names_the_kind_and_at_most_an_api_keys_public_prefix() {
        let key = format!("ara_0123456789ab_{}", "f".repeat(64));
        assert_eq!(
            credential_hint(Some(&key)),
            ("api_key", Some("ara_0123456789ab".into()))
        );
        assert_eq!(credential_hint(Some("a.b.c")), ("jwt", None));
        let loop_token = format!("admin:1:{}", "f".repeat(64));
        assert_eq!(credential_hint(Some(&loop_token)), ("loop_token", None));
        // Shaped like no loop token, so the authenticator compared it with ARAGORA_API_TOKEN.
        assert_eq!(credential_hint(Some("admin:1:ff")), ("api_token", None));
        assert_eq!(credential_hint(Some("s3cret")), ("api_token", None));
        assert_eq!(credential_hint(None), ("none", None));
    }
}
