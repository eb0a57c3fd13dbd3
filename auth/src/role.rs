//! Roles, scopes and the authenticated caller.
//!
//! Roles are ordered: `reader` < `operator` < `admin`, each allowed what the one below it is.
//! A scope narrows a credential to one debate (the runbook token with a debate id as its loop).

use crate::failure::AuthError;
use aragora_config::FromEnv;
use serde::{Deserialize, Serialize};
use std::fmt;

/// What a caller may do.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// List, get and watch debates, receipts and agents.
    Reader,
    /// Also create debates, and cancel those it created.
    Operator,
    /// Also everything administrative: breakers, faults, drills, rate limits, tokens,
    /// maintenance, and cancelling anyone's debate.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Reader, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(raw: &str) -> Option<Role> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str().eq_ignore_ascii_case(raw.trim()))
    }

    /// What this role may do, for `GET /api/auth/me`.
    pub fn permissions(self) -> &'static [&'static str] {
        match self {
            Role::Reader => &[
                "debates:read",
                "debates:watch",
                "receipts:read",
                "agents:read",
            ],
            Role::Operator => &[
                "debates:read",
                "debates:watch",
                "receipts:read",
                "agents:read",
                "debates:create",
                "debates:cancel:own",
            ],
            Role::Admin => &[
                "debates:read",
                "debates:watch",
                "receipts:read",
                "agents:read",
                "debates:create",
                "debates:cancel:any",
                "system:admin",
                "tokens:admin",
            ],
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromEnv for Role {
    fn from_env(raw: &str) -> Result<Self, String> {
        Role::parse(raw)
            .ok_or_else(|| format!("{raw:?} is not a role; use reader, operator or admin"))
    }
}

/// Which resources a credential reaches.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(tag = "kind", content = "debate_id", rename_all = "snake_case")]
pub enum Scope {
    /// Whatever its role allows.
    All,
    /// Reading and watching this one debate, nothing else (a share link).
    Debate(String),
}

/// Which kind of credential authenticated a caller.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Via {
    Jwt { jti: String },
    ApiToken,
    LoopToken,
    ApiKey { id: String, name: String },
    Anonymous,
}

impl Via {
    pub fn kind(&self) -> &'static str {
        match self {
            Via::Jwt { .. } => "jwt",
            Via::ApiToken => "api_token",
            Via::LoopToken => "loop_token",
            Via::ApiKey { .. } => "api_key",
            Via::Anonymous => "anonymous",
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Principal {
    /// Who: a JWT's `sub`, `key:<id>` for an API key, `admin-token`, `loop:<id>`, `anonymous`.
    /// Debates record it as their creator.
    pub subject: String,
    pub role: Role,
    pub scope: Scope,
    pub via: Via,
    /// Unix seconds after which the credential stops working, when it has an end.
    pub expires_at: Option<i64>,
}

impl Principal {
    /// Admits a caller whose role is at least `needed` over everything (not one debate).
    pub fn require(&self, needed: Role) -> Result<(), AuthError> {
        if self.scope == Scope::All && self.role >= needed {
            Ok(())
        } else {
            Err(AuthError::Forbidden {
                needed,
                subject: self.subject.clone(),
            })
        }
    }

    /// Admits reading or watching debate `id`: any reader, or a share link to that debate.
    pub fn require_debate(&self, id: &str) -> Result<(), AuthError> {
        match &self.scope {
            Scope::All => self.require(Role::Reader),
            Scope::Debate(debate) if debate == id => Ok(()),
            Scope::Debate(_) => Err(AuthError::Forbidden {
                needed: Role::Reader,
                subject: self.subject.clone(),
            }),
        }
    }

    /// May this caller cancel a debate created by `creator`? Admins may cancel any; operators
    /// their own.
    pub fn require_cancel(&self, creator: Option<&str>) -> Result<(), AuthError> {
        self.require(Role::Operator)?;
        if self.role >= Role::Admin || creator == Some(self.subject.as_str()) {
            Ok(())
        } else {
            Err(AuthError::Forbidden {
                needed: Role::Admin,
                subject: self.subject.clone(),
            })
        }
    }

    pub fn anonymous(role: Role) -> Self {
        Self {
            subject: "anonymous".into(),
            role,
            scope: Scope::All,
            via: Via::Anonymous,
            expires_at: None,
        }
    }

    /// `GET /api/auth/me`'s body.
    pub fn describe(&self) -> Identity {
        let permissions: &[&'static str] = match self.scope {
            Scope::All => self.role.permissions(),
            Scope::Debate(_) => &["debate:read", "debate:watch"],
        };
        Identity {
            subject: self.subject.clone(),
            role: self.role,
            scope: self.scope.clone(),
            credential: self.via.clone(),
            expires_at: self.expires_at,
            permissions: permissions.to_vec(),
        }
    }
}

/// Who a caller is, as `GET /api/auth/me` tells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Identity {
    pub subject: String,
    pub role: Role,
    pub scope: Scope,
    /// The kind of credential, and for a JWT its `jti`, for an API key its id and name.
    pub credential: Via,
    /// Unix seconds after which the credential stops working, when it has an end.
    pub expires_at: Option<i64>,
    pub permissions: Vec<&'static str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(role: Role, scope: Scope) -> Principal {
        Principal {
            subject: "alice".into(),
            role,
            scope,
            via: Via::ApiToken,
            expires_at: None,
        }
    }

    #[test]
    fn roles_are_ordered_and_each_allows_what_the_lower_one_does() {
        let reader = principal(Role::Reader, Scope::All);
        assert!(reader.require(Role::Reader).is_ok());
        assert!(reader.require(Role::Operator).is_err());
        let admin = principal(Role::Admin, Scope::All);
        for role in Role::ALL {
            assert!(admin.require(role).is_ok());
        }
    }

    #[test]
    fn a_share_link_reads_its_debate_and_nothing_else() {
        let link = principal(Role::Reader, Scope::Debate("d1".into()));
        assert!(link.require_debate("d1").is_ok());
        assert!(link.require_debate("d2").is_err());
        assert!(link.require(Role::Reader).is_err(), "cannot list debates");
    }

    #[test]
    fn operators_cancel_only_their_own_debates_and_admins_any() {
        let operator = principal(Role::Operator, Scope::All);
        assert!(operator.require_cancel(Some("alice")).is_ok());
        assert!(operator.require_cancel(Some("bob")).is_err());
        assert!(operator.require_cancel(None).is_err());
        assert!(principal(Role::Admin, Scope::All)
            .require_cancel(Some("bob"))
            .is_ok());
        assert!(principal(Role::Reader, Scope::All)
            .require_cancel(Some("alice"))
            .is_err());
    }
}
