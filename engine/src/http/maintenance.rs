//! The Self-Hosted Guide's maintenance window (7.4) on the public API:
//! `POST /api/admin/maintenance/enable|disable` and `GET /api/admin/maintenance` (admins),
//! `GET /api/admin/stats` (readers: counts only, no debate's content). What maintenance mode
//! does and how replicas share it is in [`crate::maintenance`].
//!
//! The enable body is optional (the guide's `curl -X POST` sends none):
//! `{"reason": "...", "retry_after_seconds": N}`, reason 1 to 200 characters, retry after 1 to
//! 86400 s. Both calls are idempotent and answer the state in force with `changed`.

use super::access::{Admin, Reader};
use super::body::{read_optional, ApiBytes};
use super::AppState;
use crate::error::ApiError;
use crate::maintenance::{
    Change, MaintenanceState, View, MAX_REASON_CHARS, MAX_RETRY_AFTER_SECONDS,
};
use crate::model::{now_ms, DebateStatus};
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// The body of `POST /api/admin/maintenance/enable`. The number is signed so that a negative
/// one gets the range message rather than a type error.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnableBody {
    /// Shown in every refusal: 1 to 200 characters, one line (default "scheduled maintenance").
    #[schema(min_length = 1, max_length = 200)]
    reason: Option<String>,
    /// What refused debates' `Retry-After` says: 1 to 86400 (default 300).
    #[schema(minimum = 1, maximum = 86400)]
    retry_after_seconds: Option<i64>,
}

/// Maintenance mode after a change, and whether this call changed it.
#[derive(Serialize, ToSchema)]
pub struct Changed {
    #[serde(flatten)]
    state: View,
    changed: bool,
}

/// The optional JSON body: nothing (or only whitespace) is the defaults; malformed JSON is a
/// 400, JSON of the wrong shape a 422, each saying what to send.
fn parse_enable(body: &[u8]) -> Result<(Option<String>, Option<u64>), ApiError> {
    const SHAPE: &str = r#"send {"reason": "...", "retry_after_seconds": N} or no body"#;
    let parsed: EnableBody = read_optional(body, SHAPE)?;
    let reason = match parsed.reason {
        None => None,
        Some(reason) => {
            let reason = reason.trim().to_string();
            let chars = reason.chars().count();
            if chars == 0 || chars > MAX_REASON_CHARS {
                return Err(ApiError::invalid(format!(
                    "\"reason\" must be 1 to {MAX_REASON_CHARS} characters (it has {chars}); leave it out for the default"
                )));
            }
            if reason.chars().any(char::is_control) {
                return Err(ApiError::invalid(
                    "\"reason\" must be one line of text, without control characters",
                ));
            }
            Some(reason)
        }
    };
    let retry = match parsed.retry_after_seconds {
        None => None,
        Some(seconds) => match u64::try_from(seconds) {
            Ok(s) if (1..=MAX_RETRY_AFTER_SECONDS).contains(&s) => Some(s),
            _ => {
                return Err(ApiError::invalid(format!(
                "\"retry_after_seconds\" is {seconds}; it must be 1 to {MAX_RETRY_AFTER_SECONDS}"
            )))
            }
        },
    };
    Ok((reason, retry))
}

async fn change(state: &AppState, change: Change) -> Result<Json<Changed>, ApiError> {
    let core = state.core()?;
    let (now, changed) = core
        .store
        .set_maintenance(&change)
        .await
        .map_err(|err| ApiError::internal("could not change maintenance mode", err))?;
    state.maintenance.remember(&now);
    if changed {
        tracing::warn!(
            enabled = now.enabled,
            by = now.changed_by.as_deref().unwrap_or_default(),
            reason = now.reason.as_deref().unwrap_or_default(),
            "maintenance mode changed"
        );
    }
    Ok(Json(Changed {
        state: now.view(),
        changed,
    }))
}

/// Turns maintenance mode on (admins): new debates are refused with 503 and `Retry-After`;
/// reads, watches and running debates go on. Idempotent; the body is optional.
#[utoipa::path(post, path = "/admin/maintenance/enable", operation_id = "maintenance_enable",
    tag = "admin", security(("bearer" = [])),
    request_body(content = Option<EnableBody>, description = "Optional: no body for the defaults."),
    responses((status = 200, description = "Maintenance is on.", body = Changed)))]
pub async fn enable(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ApiBytes(body): ApiBytes,
) -> Result<Json<Changed>, ApiError> {
    let (reason, retry_after_seconds) = parse_enable(&body)?;
    let enable = Change::Enable {
        reason,
        retry_after_seconds,
        by: admin.subject,
        at_ms: now_ms(),
    };
    change(&state, enable).await
}

/// Turns maintenance mode off (admins). Idempotent.
#[utoipa::path(post, path = "/admin/maintenance/disable", operation_id = "maintenance_disable",
    tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "Maintenance is off.", body = Changed)))]
pub async fn disable(
    State(state): State<AppState>,
    Admin(admin): Admin,
) -> Result<Json<Changed>, ApiError> {
    let disable = Change::Disable {
        by: admin.subject,
        at_ms: now_ms(),
    };
    change(&state, disable).await
}

/// Maintenance mode as it is (admins).
#[utoipa::path(get, path = "/admin/maintenance", operation_id = "maintenance_show",
    tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "Maintenance mode.", body = View)))]
pub async fn show(State(state): State<AppState>, _: Admin) -> Result<Json<View>, ApiError> {
    let core = state.core()?;
    let now = core
        .store
        .maintenance()
        .await
        .map_err(|err| ApiError::internal("could not read maintenance mode", err))?;
    state.maintenance.remember(&now);
    Ok(Json(now.view()))
}

/// The maintenance state a request is judged by (the cache), off while the engine starts.
pub async fn in_force(state: &AppState) -> MaintenanceState {
    match state.core.get() {
        Some(core) => state.maintenance.current(core.store.as_ref()).await,
        None => MaintenanceState::default(),
    }
}

/// The 503 of a new debate while maintenance is on; None while it is off.
pub async fn refusal(state: &AppState) -> Option<ApiError> {
    let now = in_force(state).await;
    now.enabled.then(|| {
        ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "maintenance",
            now.refusal_message(),
        )
        .retry_after(now.retry_after_seconds)
    })
}

/// Debates by status across replicas and on this one, maintenance, API keys, uptime (readers).
///
/// Counts for the guide's `watch ... | jq .active_debates`: across every replica (from the
/// database) and on this one; the maintenance state; API keys; uptime. No debate's content.
#[utoipa::path(get, path = "/admin/stats", operation_id = "stats", tag = "admin",
    security(("bearer" = [])),
    responses((status = 200, description = "The counts.", body = Stats)))]
pub async fn stats(State(state): State<AppState>, _: Reader) -> Result<Json<Stats>, ApiError> {
    let core = state.core()?;
    let failed = |err| ApiError::internal("could not count debates", err);
    let mut by_status = BTreeMap::new();
    let mut total = 0;
    for status in DebateStatus::ALL {
        let count = core
            .store
            .list_debates(&[status], 0, 0)
            .await
            .map_err(failed)?
            .total;
        total += count;
        by_status.insert(status.as_str().to_string(), count);
    }
    let running = by_status["running"];
    let queued = by_status["queued"];
    let (here_running, here_queued) = core.orchestrator.load();
    let api_keys = match state.auth.keys() {
        Some(keys) => {
            let listed = keys
                .list_keys()
                .await
                .map_err(|err| ApiError::internal("could not count API keys", err.0))?;
            let now = now_ms();
            let active = listed
                .iter()
                .filter(|k| k.revoked_at_ms.is_none() && k.expires_at_ms.is_none_or(|at| at > now))
                .count();
            KeyCounts {
                total: listed.len(),
                active,
            }
        }
        None => KeyCounts {
            total: 0,
            active: 0,
        },
    };
    Ok(Json(Stats {
        active_debates: running + queued,
        running_debates: running,
        queued_debates: queued,
        total_debates: total,
        debates_by_status: by_status,
        this_replica: ReplicaLoad {
            running_debates: here_running,
            queued_debates: here_queued,
        },
        maintenance: in_force(&state).await.view(),
        api_keys,
        uptime_seconds: state.started.elapsed().as_secs(),
    }))
}

/// `GET /api/admin/stats`.
#[derive(Serialize, ToSchema)]
pub struct Stats {
    /// Running and queued, across every replica.
    active_debates: i64,
    running_debates: i64,
    queued_debates: i64,
    total_debates: i64,
    /// Every debate state with its count.
    debates_by_status: BTreeMap<String, i64>,
    this_replica: ReplicaLoad,
    maintenance: View,
    api_keys: KeyCounts,
    uptime_seconds: u64,
}

#[derive(Serialize, ToSchema)]
pub struct ReplicaLoad {
    running_debates: usize,
    queued_debates: usize,
}

#[derive(Serialize, ToSchema)]
pub struct KeyCounts {
    total: usize,
    active: usize,
}

#[cfg(test)]
mod tests {
    use super::parse_enable;

    #[test]
    fn the_enable_body_is_optional_and_checked() {
        assert_eq!(parse_enable(b"").unwrap(), (None, None));
        assert_eq!(parse_enable(b" \n").unwrap(), (None, None));
        assert_eq!(
            parse_enable(br#"{"reason": " upgrade to 2.1 ", "retry_after_seconds": 120}"#).unwrap(),
            (Some("upgrade to 2.1".into()), Some(120))
        );
        for (body, status, says) in [
            (&b"{"[..], 400, "not valid JSON"),
            (br#"{"reason": 5}"#, 422, "reason"),
            (br#"{"why": "x"}"#, 422, "unknown field"),
            (
                br#"{"reason": "a", "reason": "b"}"#,
                422,
                "duplicate field `reason`",
            ),
            (
                br#"{"retry_after_seconds": 5, "retry_after_seconds": 9}"#,
                422,
                "duplicate field `retry_after_seconds`",
            ),
            (br#"["a"]"#, 422, "an array"),
            (br#"{"reason": ""}"#, 422, "1 to 200"),
            (br#"{"reason": "a\nb"}"#, 422, "one line"),
            (br#"{"retry_after_seconds": 0}"#, 422, "1 to 86400"),
            (br#"{"retry_after_seconds": -3}"#, 422, "is -3"),
            (br#"{"retry_after_seconds": 86401}"#, 422, "1 to 86400"),
        ] {
            let err = parse_enable(body).unwrap_err();
            assert_eq!(
                err.status.as_u16(),
                status,
                "{}",
                String::from_utf8_lossy(body)
            );
            assert!(err.message.contains(says), "{}", err.message);
        }
    }
}
