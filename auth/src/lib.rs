//! Who may call aragora, and what they may do.
//!
//! Every credential arrives as `Authorization: Bearer ...` (or, for browsers' WebSockets, a
//! `token` query parameter or subprotocol, which the caller extracts) and is one of:
//!
//! - a **JWT** (HS256) signed with `ARAGORA_JWT_SECRET`, or with `ARAGORA_JWT_SECRET_PREVIOUS`
//!   during a rotation, carrying `sub`, `role`, `iat`, `exp` and `jti`;
//! - the runbook's **API token** `{loop_id}:{expires}:{hex HMAC-SHA256}` under
//!   `ARAGORA_API_TOKEN` (loop `admin` is an admin; a debate id may read that debate only);
//! - `ARAGORA_API_TOKEN` itself, an admin credential;
//! - an **API key** `ara_<id>_<secret>`, stored as a salted argon2 hash, looked up through a
//!   [`KeyStore`] and cached for a few seconds so a revocation reaches every replica quickly.
//!
//! [`Authenticator::authenticate`] turns a credential into a [`Principal`] (subject, [`Role`],
//! [`Scope`]) or an [`AuthError`] whose [`FailureReason`] goes to logs and metrics, never to the
//! client. Components ask the principal what it may do; they own which role each endpoint needs.
//!
//! | module | owns |
//! |---|---|
//! | `config` | [`AuthConfig`]: the settings, their defaults and validation |
//! | `role` | [`Role`], [`Scope`], [`Principal`] |
//! | `failure` | [`AuthError`], [`FailureReason`]: why a credential was refused |
//! | `jwt` | minting and verifying JWTs, [`Claims`] |
//! | `loop_token` | the runbook's `{loop_id}:{expires}:{signature}` tokens |
//! | `api_key` | API keys: format, hashing, [`StoredKey`], [`KeyStore`] |
//! | `authenticator` | [`Authenticator`]: which kind a credential is, verification, the key cache |
//! | `origin` | [`OriginPolicy`]: the browser origins `ARAGORA_ALLOWED_ORIGINS` admits |

mod api_key;
mod authenticator;
mod config;
mod failure;
mod jwt;
mod loop_token;
mod origin;
mod role;

pub use api_key::{
    generate_key, hash_secret, parse_key, IssuedKey, KeyStore, KeyStoreError, KeyView, StoredKey,
    KEY_PREFIX,
};
pub use authenticator::{bearer_token, Authenticator, CredentialKind};
pub use config::{AnonymousAccess, AuthConfig, SETTINGS};
pub use failure::{AuthError, FailureReason};
pub use jwt::{Claims, JwtError};
pub use loop_token::mint as mint_loop_token;
pub use origin::OriginPolicy;
pub use role::{Identity, Principal, Role, Scope, Via};

/// Seconds since the Unix epoch, the unit of `exp`, `iat` and loop token expiries.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}
