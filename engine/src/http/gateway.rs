//! `GET /api/system/upstreams` and `GET /api/system/rate-limits` (admins): the gateway's own
//! view of its engine replicas and of its rate limiter, fetched from its admin API
//! ([`GatewayAdmin`]: `ARAGORA_GATEWAY_ADMIN_URL`, or the address `aragora up` gives its
//! engine) and answered unchanged inside `{"source", "gateway"}`, so the admin console reads
//! every part through the one API it is served with.
//!
//! The gateway's admin API admits only stateless admin credentials; the engine signs each
//! request with a one-minute admin loop token (under `ARAGORA_API_TOKEN`) or admin JWT (under
//! `ARAGORA_JWT_SECRET`), never forwarding the caller's credential or sending the token itself,
//! or with the credential `aragora up` handed it for its own gateway.

use super::access::Admin;
use super::AppState;
use crate::error::{ApiError, ErrorBody};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use serde_json::Value;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use utoipa::ToSchema;

/// How long the gateway's admin API has to answer before the endpoint answers 502.
pub const GATEWAY_TIMEOUT: Duration = Duration::from_secs(2);

/// Lifetime of the credential minted for one request to the gateway.
const CREDENTIAL_TTL_SECS: i64 = 60;

/// Where the gateway's admin API is, set once: from `ARAGORA_GATEWAY_ADMIN_URL` at start, or
/// by `aragora up` once its gateway listens (its admin port may be chosen at bind time).
#[derive(Clone, Default)]
pub struct GatewayAdmin(Arc<OnceLock<GatewayTarget>>);

/// A gateway admin API and, when its owner has one, the bearer credential it accepts.
#[derive(Clone)]
struct GatewayTarget {
    url: String,
    bearer: Option<String>,
}

impl GatewayAdmin {
    /// Not configured until [`set`](Self::set).
    pub fn new() -> Self {
        Self::default()
    }

    /// At `url`; the request credential is minted from the engine's auth settings when
    /// `bearer` is None. False when it was already set (the first wins).
    pub fn set(&self, url: &str, bearer: Option<String>) -> bool {
        self.0
            .set(GatewayTarget {
                url: url.trim_end_matches('/').to_string(),
                bearer,
            })
            .is_ok()
    }

    /// The configured URL, if any.
    pub fn url(&self) -> Option<&str> {
        self.0.get().map(|target| target.url.as_str())
    }

    /// For a process that runs the gateway beside the engine (`aragora up`): when the engine
    /// has no secret to mint an admin credential with (neither ARAGORA_API_TOKEN nor
    /// ARAGORA_JWT_SECRET), a random admin token for the gateway's `api_token`, known only to
    /// this process, to hand to [`set`](Self::set); None when the engine can mint its own.
    pub fn private_token(engine_auth: &aragora_auth::AuthConfig) -> Option<String> {
        (engine_auth.api_token.is_none() && engine_auth.jwt_secret.is_none())
            .then(|| hex::encode(rand::random::<[u8; 32]>()))
    }
}

/// `url` without user, password or credential query parameters: what an answer may show.
fn shown(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            aragora_config::redact_query(parsed.as_str().trim_end_matches('/')).into_owned()
        }
        Err(_) => aragora_config::redact_url(url),
    }
}

/// The admin credential for one request: the one handed over, else a short-lived loop token
/// or JWT from the engine's own secrets; None when the engine has neither.
fn credential(state: &AppState, target: &GatewayTarget) -> Option<String> {
    if let Some(bearer) = &target.bearer {
        return Some(bearer.clone());
    }
    let auth = state.auth.config();
    let expires = aragora_auth::unix_now() + CREDENTIAL_TTL_SECS;
    if let Some(key) = &auth.api_token {
        return Some(aragora_auth::mint_loop_token(key, "admin", expires));
    }
    state
        .auth
        .mint_jwt(
            "engine",
            aragora_auth::Role::Admin,
            Some(CREDENTIAL_TTL_SECS as u64),
        )
        .ok()
}

fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(GATEWAY_TIMEOUT)
            .connect_timeout(GATEWAY_TIMEOUT)
            // The admin API is the gateway's own listener; a redirect would be someone else.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default()
    })
}

fn bad_gateway(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_GATEWAY, "bad_gateway", message)
}

/// The gateway's answer to `GET path` on its admin API, unchanged.
#[derive(Serialize, ToSchema)]
pub struct GatewayView {
    /// The gateway admin API asked (without credentials).
    #[schema(example = "http://127.0.0.1:9091")]
    source: String,
    /// The gateway's JSON body, as its admin API answered it (docs/gateway-admin-openapi.json).
    #[schema(value_type = Object)]
    gateway: Value,
}

async fn fetch(state: &AppState, path: &str) -> Result<Json<GatewayView>, ApiError> {
    let target = state.gateway_admin.0.get().ok_or_else(|| {
        ApiError::not_found(format!(
            "this engine does not know its gateway: set ARAGORA_GATEWAY_ADMIN_URL to the gateway's admin API \
             (e.g. http://127.0.0.1:9091) to read {path} through the engine, or ask the gateway's admin port directly"
        ))
    })?;
    let source = shown(&target.url);
    let mut request = client().get(format!("{}{path}", target.url));
    if let Some(token) = credential(state, target) {
        request = request.bearer_auth(token);
    }
    // reqwest's messages quote the URL whole: shown without its credentials instead.
    let response = request.send().await.map_err(|err| {
        if err.is_timeout() {
            bad_gateway(format!(
                "the gateway's admin API at {source} did not answer within {} s; is the gateway running and ARAGORA_GATEWAY_ADMIN_URL its admin address?",
                GATEWAY_TIMEOUT.as_secs()
            ))
        } else {
            bad_gateway(format!(
                "the gateway's admin API at {source} cannot be reached; is the gateway running and ARAGORA_GATEWAY_ADMIN_URL its admin address?"
            ))
        }
    })?;
    let status = response.status();
    let body: Value = response.json().await.map_err(|_| {
        bad_gateway(format!(
            "the gateway's admin API at {source} answered {status} with a body that is not JSON; is ARAGORA_GATEWAY_ADMIN_URL the gateway's admin address?"
        ))
    })?;
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return Err(bad_gateway(format!(
            "the gateway at {source} refused the engine's credential ({status}): give the engine and the gateway the same ARAGORA_API_TOKEN or ARAGORA_JWT_SECRET"
        )));
    }
    if !status.is_success() {
        let message = body["error"]["message"].as_str().unwrap_or("no message");
        return Err(bad_gateway(format!(
            "the gateway at {source} answered {status} to {path}: {message}"
        )));
    }
    Ok(Json(GatewayView {
        source,
        gateway: body,
    }))
}

/// The gateway's engine replicas (admins): each with its readiness and slow start, as the
/// gateway sees them; the body of the gateway admin API's `GET /api/system/upstreams`.
#[utoipa::path(get, path = "/system/upstreams", operation_id = "system_upstreams", tag = "system",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The gateway's answer.", body = GatewayView),
        (status = 404, description = "ARAGORA_GATEWAY_ADMIN_URL is not set.", body = ErrorBody),
        (status = 502, description = "The gateway did not answer (2 s), refused the engine's credential, or failed.", body = ErrorBody),
    ))]
pub async fn upstreams(
    State(state): State<AppState>,
    _: Admin,
) -> Result<Json<GatewayView>, ApiError> {
    fetch(&state, "/api/system/upstreams").await
}

/// The gateway's rate limiter (admins): its settings and the most refused clients; the body of
/// the gateway admin API's `GET /api/system/rate-limits`.
#[utoipa::path(get, path = "/system/rate-limits", operation_id = "system_rate_limits", tag = "system",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The gateway's answer.", body = GatewayView),
        (status = 404, description = "ARAGORA_GATEWAY_ADMIN_URL is not set.", body = ErrorBody),
        (status = 502, description = "The gateway did not answer (2 s), refused the engine's credential, or failed.", body = ErrorBody),
    ))]
pub async fn rate_limits(
    State(state): State<AppState>,
    _: Admin,
) -> Result<Json<GatewayView>, ApiError> {
    fetch(&state, "/api/system/rate-limits").await
}

#[cfg(test)]
mod tests {
    use super::shown;

    #[test]
    fn a_shown_url_has_no_credentials() {
        assert_eq!(
            shown("http://admin:hunter2@127.0.0.1:9091/"),
            "http://127.0.0.1:9091"
        );
        assert!(!shown("http://gw:9091/?token=abc").contains("abc"));
    }
}
