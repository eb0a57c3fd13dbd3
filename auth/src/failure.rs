//! Why a request was refused. The [`FailureReason`] is for the log and the
//! `aragora_auth_failures_total{reason}` counter; the client learns only 401 or 403, because
//! telling an attacker which check failed helps them.

use crate::role::Role;

/// Why a credential did not authenticate (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureReason {
    /// No credential, and anonymous access is off.
    Missing,
    /// Not any credential's shape, or a JWT/claims that do not parse.
    Malformed,
    /// Past its `exp` / expiry timestamp.
    Expired,
    /// Signed with a secret this process does not hold, or altered.
    BadSignature,
    /// An API key that was revoked.
    Revoked,
    /// An API key id that no store holds, or whose secret does not match.
    UnknownKey,
}

impl FailureReason {
    pub const ALL: [FailureReason; 6] = [
        FailureReason::Missing,
        FailureReason::Malformed,
        FailureReason::Expired,
        FailureReason::BadSignature,
        FailureReason::Revoked,
        FailureReason::UnknownKey,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Missing => "missing",
            FailureReason::Malformed => "malformed",
            FailureReason::Expired => "expired",
            FailureReason::BadSignature => "bad_signature",
            FailureReason::Revoked => "revoked",
            FailureReason::UnknownKey => "unknown_key",
        }
    }
}

/// A refused request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// 401: no valid credential.
    #[error("not authenticated ({})", reason.as_str())]
    Unauthenticated { reason: FailureReason },
    /// 403: a valid credential without the role (or scope) the request needs.
    #[error("{subject} lacks the {needed} role this needs")]
    Forbidden { needed: Role, subject: String },
    /// 503: the key store could not be asked; the credential may be fine.
    #[error("credentials cannot be checked right now: {0}")]
    Unavailable(String),
}

impl AuthError {
    pub fn unauthenticated(reason: FailureReason) -> Self {
        Self::Unauthenticated { reason }
    }

    /// The `reason` label of `aragora_auth_failures_total`: one of [`FailureReason`], or
    /// `forbidden`; `None` for a store outage, which is not the caller's failure.
    pub fn metric_reason(&self) -> Option<&'static str> {
        match self {
            AuthError::Unauthenticated { reason } => Some(reason.as_str()),
            AuthError::Forbidden { .. } => Some("forbidden"),
            AuthError::Unavailable(_) => None,
        }
    }

    /// The HTTP status the refusal answers with.
    pub fn status(&self) -> u16 {
        match self {
            AuthError::Unauthenticated { .. } => 401,
            AuthError::Forbidden { .. } => 403,
            AuthError::Unavailable(_) => 503,
        }
    }

    /// The JSON error's `code` and `message`: the same for every reason of a status, so the
    /// answer says what to send without saying which check failed.
    pub fn public_code_and_message(&self) -> (&'static str, String) {
        match self {
            AuthError::Unauthenticated { .. } => (
                "unauthorized",
                "send a valid credential as `Authorization: Bearer <token>` (an API key, a JWT, or an API token); see GET /api/auth/me".into(),
            ),
            AuthError::Forbidden { needed, .. } => (
                "forbidden",
                format!("this credential may not do this; it needs the {needed} role"),
            ),
            AuthError::Unavailable(_) => (
                "auth_unavailable",
                "credentials cannot be checked right now; retry shortly".into(),
            ),
        }
    }

    /// As [`Self::public_code_and_message`], for components that check admins without a key
    /// store (the gateway's admin listener, the chaos proxy's API): a 401 says which
    /// credentials work there, since API keys are verified only by the engine that stores them.
    pub fn keyless_code_and_message(&self) -> (&'static str, String) {
        match self {
            AuthError::Unauthenticated { .. } => (
                "unauthorized",
                "send an admin credential as `Authorization: Bearer <token>`: ARAGORA_API_TOKEN, a loop token for loop admin (`aragora token create --loop admin`) or an admin JWT; API keys are verified by the engine, so exchange one for a JWT with POST /api/auth/token".into(),
            ),
            other => other.public_code_and_message(),
        }
    }

    /// `WWW-Authenticate` for a 401 (RFC 6750).
    pub const WWW_AUTHENTICATE: &'static str = "Bearer error=\"invalid_token\"";
}
