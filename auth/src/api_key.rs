//! API keys for programs: `ara_<id>_<secret>`. The id is public (it names the key in logs,
//! listings and `revoke`); the secret is 32 random bytes, shown once at creation and stored only
//! as a salted argon2id hash (PHC string). Where keys are kept is the [`KeyStore`]'s business
//! (the engine's database, SQLite or PostgreSQL).

use crate::role::Role;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use async_trait::async_trait;
use rand::RngCore;
use serde::Serialize;

/// What every key starts with, so a leaked key is recognisable (secret scanners, logs).
pub const KEY_PREFIX: &str = "ara_";
const ID_BYTES: usize = 6;
const SECRET_BYTES: usize = 32;

/// A key as stored: everything but its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredKey {
    /// 12 hex digits; `ara_<id>` is how logs and listings name the key.
    pub id: String,
    pub name: String,
    pub role: Role,
    /// argon2id PHC string of the secret; never leaves the store's crate boundary in answers.
    #[serde(skip)]
    pub secret_hash: String,
    /// Who created it (a principal's subject, or `cli` for `aragora token create`).
    pub created_by: String,
    /// Unix milliseconds.
    pub created_at_ms: i64,
    pub expires_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
}

impl StoredKey {
    /// `ara_<id>`: the part of a key that may be shown anywhere.
    pub fn prefix(&self) -> String {
        format!("{KEY_PREFIX}{}", self.id)
    }

    /// The listing's view: no hash, plus the prefix and whether it still works.
    pub fn view(&self, now_ms: i64) -> KeyView {
        let state = if self.revoked_at_ms.is_some() {
            "revoked"
        } else if self.expires_at_ms.is_some_and(|at| at <= now_ms) {
            "expired"
        } else {
            "active"
        };
        KeyView {
            id: self.id.clone(),
            prefix: self.prefix(),
            name: self.name.clone(),
            role: self.role,
            created_by: self.created_by.clone(),
            created_at_ms: self.created_at_ms,
            expires_at_ms: self.expires_at_ms,
            revoked_at_ms: self.revoked_at_ms,
            state,
        }
    }
}

/// An API key as listings show it: never its secret or hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct KeyView {
    /// 12 hex digits.
    pub id: String,
    /// `ara_<id>`: how logs and listings name the key.
    pub prefix: String,
    pub name: String,
    pub role: Role,
    pub created_by: String,
    /// Unix milliseconds.
    pub created_at_ms: i64,
    pub expires_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
    /// `active`, `expired` or `revoked`.
    pub state: &'static str,
}

/// A freshly created key: the whole key (shown once) and what is stored.
#[derive(Debug)]
pub struct IssuedKey {
    pub key: String,
    pub stored: StoredKey,
}

#[derive(Debug, thiserror::Error)]
#[error("the API key store failed: {0}")]
pub struct KeyStoreError(pub String);

/// Where API keys are kept.
#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    async fn insert_key(&self, key: &StoredKey) -> Result<(), KeyStoreError>;
    async fn find_key(&self, id: &str) -> Result<Option<StoredKey>, KeyStoreError>;
    /// Every key, newest first, revoked ones included.
    async fn list_keys(&self) -> Result<Vec<StoredKey>, KeyStoreError>;
    /// Marks the key revoked at `at_ms`; false when there is no such key or it already was.
    async fn revoke_key(&self, id: &str, at_ms: i64) -> Result<bool, KeyStoreError>;
}

/// Splits `ara_<id>_<secret>` into id and secret.
pub fn parse_key(key: &str) -> Option<(&str, &str)> {
    let (id, secret) = key.strip_prefix(KEY_PREFIX)?.split_once('_')?;
    let hex =
        |part: &str, len: usize| part.len() == len && part.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(id, ID_BYTES * 2) && hex(secret, SECRET_BYTES * 2)).then_some((id, secret))
}

/// The salted argon2id hash of `secret`.
pub fn hash_secret(secret: &str) -> String {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .expect("argon2 hashes any input with default parameters")
}

/// Does `secret` match the stored hash? (argon2's comparison is constant-time.)
pub(crate) fn secret_matches(secret: &str, stored_hash: &str) -> bool {
    PasswordHash::new(stored_hash).is_ok_and(|hash| {
        Argon2::default()
            .verify_password(secret.as_bytes(), &hash)
            .is_ok()
    })
}

/// A new key for `role`, named `name`, valid for `ttl_ms` (forever when `None`).
pub fn generate_key(name: &str, role: Role, ttl_ms: Option<i64>, created_by: &str) -> IssuedKey {
    let mut id = [0u8; ID_BYTES];
    let mut secret = [0u8; SECRET_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut id);
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let (id, secret) = (hex::encode(id), hex::encode(secret));
    let now_ms = crate::unix_now() * 1000;
    IssuedKey {
        key: format!("{KEY_PREFIX}{id}_{secret}"),
        stored: StoredKey {
            secret_hash: hash_secret(&secret),
            id,
            name: name.to_string(),
            role,
            created_by: created_by.to_string(),
            created_at_ms: now_ms,
            expires_at_ms: ttl_ms.map(|ttl| now_ms + ttl),
            revoked_at_ms: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_parses_and_only_its_secret_matches_the_stored_hash() {
        let issued = generate_key("ci", Role::Operator, None, "cli");
        let (id, secret) = parse_key(&issued.key).unwrap();
        assert_eq!(id, issued.stored.id);
        assert!(issued.key.starts_with(&issued.stored.prefix()));
        assert!(!issued.stored.secret_hash.contains(secret));
        assert!(secret_matches(secret, &issued.stored.secret_hash));
        let other = generate_key("ci", Role::Operator, None, "cli");
        let (_, other_secret) = parse_key(&other.key).unwrap();
        assert!(!secret_matches(other_secret, &issued.stored.secret_hash));
        // Salted: the same secret hashes differently each time.
        assert_ne!(hash_secret(secret), issued.stored.secret_hash);
    }

    #[test]
    fn keys_of_the_wrong_shape_do_not_parse() {
        assert!(parse_key("ara_abc_def").is_none());
        assert!(parse_key("not-a-key").is_none());
        let issued = generate_key("x", Role::Reader, None, "cli");
        assert!(parse_key(&issued.key[..issued.key.len() - 1]).is_none());
    }

    #[test]
    fn the_listing_view_never_holds_the_hash() {
        let issued = generate_key("ci", Role::Admin, Some(1000), "cli");
        let view = serde_json::to_string(&issued.stored.view(issued.stored.created_at_ms)).unwrap();
        assert!(!view.contains(&issued.stored.secret_hash));
        assert!(view.contains("\"state\":\"active\""));
        let later =
            serde_json::to_string(&issued.stored.view(issued.stored.created_at_ms + 5000)).unwrap();
        assert!(later.contains("\"state\":\"expired\""));
    }
}
