//! [`Authenticator`]: which kind of credential a bearer token is, its verification, and the
//! short cache of API key lookups.
//!
//! The kinds are told apart by shape, so each token is tried against one verifier only:
//! `ara_` is an API key, two dots a JWT, `loop:expires:64-hex` the runbook's token, anything
//! else is compared with `ARAGORA_API_TOKEN`. API key answers (good or bad) are cached for
//! `ARAGORA_API_KEY_CACHE_SECONDS`, keyed by the SHA-256 of the whole key: argon2 is slow on
//! purpose, and the cache bounds how long a revocation made on another replica takes to arrive.

use crate::api_key::{self, KeyStore};
use crate::config::AuthConfig;
use crate::failure::{AuthError, FailureReason};
use crate::jwt::{self, JwtError};
use crate::loop_token;
use crate::role::{Principal, Role, Scope, Via};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Past this many cached answers the cache starts over (it is a few seconds deep anyway).
const CACHE_LIMIT: usize = 10_000;

type CachedAnswer = (Instant, Result<Principal, FailureReason>);

/// Verifies credentials for one component.
pub struct Authenticator {
    config: AuthConfig,
    keys: OnceLock<Arc<dyn KeyStore>>,
    cache: Mutex<HashMap<[u8; 32], CachedAnswer>>,
    /// Whether key id is still usable (not revoked, not deleted), as last read: what a
    /// long-lived connection re-checks, so that thousands of them ask the database once per
    /// key and cache period, not once each.
    standing: Mutex<HashMap<String, (Instant, bool)>>,
}

/// The token of `Authorization: Bearer <token>`, if the header is there and says Bearer.
pub fn bearer_token(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

/// Which verifier a bearer token goes to, told apart by shape alone (nothing is verified).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    /// `ara_<id>_<secret>`, checked against the key store.
    ApiKey,
    /// Three dot-separated parts, an HS256 JWT.
    Jwt,
    /// The runbook's `{loop_id}:{expires}:{64 hex}`.
    LoopToken,
    /// Anything else, compared with `ARAGORA_API_TOKEN`.
    ApiToken,
}

impl CredentialKind {
    pub fn of(token: &str) -> Self {
        if token.starts_with(api_key::KEY_PREFIX) {
            Self::ApiKey
        } else if token.matches('.').count() == 2 {
            Self::Jwt
        } else if loop_token::looks_like(token) {
            Self::LoopToken
        } else {
            Self::ApiToken
        }
    }

    /// The label logs use for it.
    pub fn label(self) -> &'static str {
        match self {
            Self::ApiKey => "api_key",
            Self::Jwt => "jwt",
            Self::LoopToken => "loop_token",
            Self::ApiToken => "api_token",
        }
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Authenticator {
    /// `keys` is where API keys live; without one (the gateway, the chaos proxy) API keys are
    /// refused and the stateless credentials still work.
    pub fn new(config: AuthConfig, keys: Option<Arc<dyn KeyStore>>) -> Self {
        let auth = Self {
            config,
            keys: OnceLock::new(),
            cache: Mutex::new(HashMap::new()),
            standing: Mutex::new(HashMap::new()),
        };
        if let Some(keys) = keys {
            auth.attach_keys(keys);
        }
        auth
    }

    /// Where API keys live, once the database answers (the engine starts before it does;
    /// until then an API key gets 503, not 401). Only the first call counts.
    pub fn attach_keys(&self, keys: Arc<dyn KeyStore>) {
        let _ = self.keys.set(keys);
    }

    /// The key store, once attached.
    pub fn keys(&self) -> Option<&Arc<dyn KeyStore>> {
        self.keys.get()
    }

    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// Who presents `token` (`None`: no credential at all).
    pub async fn authenticate(&self, token: Option<&str>) -> Result<Principal, AuthError> {
        let Some(token) = token else {
            return self
                .config
                .anonymous_role()
                .map(Principal::anonymous)
                .ok_or(AuthError::unauthenticated(FailureReason::Missing));
        };
        let found = match CredentialKind::of(token) {
            CredentialKind::ApiKey => return self.api_key(token).await,
            CredentialKind::Jwt => self.jwt(token),
            CredentialKind::LoopToken => self.loop_token(token),
            CredentialKind::ApiToken => self.api_token(token),
        };
        found.map_err(AuthError::unauthenticated)
    }

    /// [`Self::authenticate`] on a request's `Authorization` header.
    pub async fn authenticate_headers(
        &self,
        headers: &http::HeaderMap,
    ) -> Result<Principal, AuthError> {
        if headers.contains_key(http::header::AUTHORIZATION) && bearer_token(headers).is_none() {
            return Err(AuthError::unauthenticated(FailureReason::Malformed));
        }
        self.authenticate(bearer_token(headers)).await
    }

    fn jwt(&self, token: &str) -> Result<Principal, FailureReason> {
        let secrets: Vec<&str> = [&self.config.jwt_secret, &self.config.jwt_secret_previous]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        let claims = jwt::verify(token, &secrets)?;
        Ok(Principal {
            subject: claims.sub,
            role: claims.role,
            scope: Scope::All,
            via: Via::Jwt { jti: claims.jti },
            expires_at: Some(claims.exp),
        })
    }

    fn loop_token(&self, token: &str) -> Result<Principal, FailureReason> {
        let expires = token.rsplit(':').nth(1).and_then(|e| e.parse::<i64>().ok());
        let loop_id =
            loop_token::verify(token, self.config.api_token.as_deref(), crate::unix_now())?;
        let (role, scope) = if loop_id == "admin" {
            (Role::Admin, Scope::All)
        } else {
            (Role::Reader, Scope::Debate(loop_id.clone()))
        };
        Ok(Principal {
            subject: format!("loop:{loop_id}"),
            role,
            scope,
            via: Via::LoopToken,
            expires_at: expires,
        })
    }

    fn api_token(&self, token: &str) -> Result<Principal, FailureReason> {
        let Some(expected) = &self.config.api_token else {
            return Err(FailureReason::Malformed);
        };
        // Comparing digests keeps the time taken independent of where the tokens differ.
        if digest(token) == digest(expected) {
            Ok(Principal {
                subject: "admin-token".into(),
                role: Role::Admin,
                scope: Scope::All,
                via: Via::ApiToken,
                expires_at: None,
            })
        } else {
            Err(FailureReason::BadSignature)
        }
    }

    async fn api_key(&self, key: &str) -> Result<Principal, AuthError> {
        let Some((id, secret)) = api_key::parse_key(key) else {
            return Err(AuthError::unauthenticated(FailureReason::Malformed));
        };
        let Some(store) = self.keys.get() else {
            return Err(AuthError::Unavailable(
                "API keys are checked against the database, which is not connected yet".into(),
            ));
        };
        let ttl = Duration::from_secs(self.config.api_key_cache_secs);
        let cache_key = digest(key);
        if let Some((at, answer)) = self.cached(&cache_key) {
            let expired =
                matches!(&answer, Ok(p) if p.expires_at.is_some_and(|e| e <= crate::unix_now()));
            if at.elapsed() < ttl && !expired {
                return answer.map_err(AuthError::unauthenticated);
            }
        }
        let stored = store
            .find_key(id)
            .await
            .map_err(|err| AuthError::Unavailable(err.to_string()))?;
        let now_ms = crate::unix_now() * 1000;
        let answer = match stored {
            None => Err(FailureReason::UnknownKey),
            Some(stored) if !api_key::secret_matches(secret, &stored.secret_hash) => {
                Err(FailureReason::UnknownKey)
            }
            Some(stored) if stored.revoked_at_ms.is_some() => Err(FailureReason::Revoked),
            Some(stored) if stored.expires_at_ms.is_some_and(|at| at <= now_ms) => {
                Err(FailureReason::Expired)
            }
            Some(stored) => Ok(Principal {
                subject: format!("key:{}", stored.id),
                role: stored.role,
                scope: Scope::All,
                via: Via::ApiKey {
                    id: stored.id.clone(),
                    name: stored.name.clone(),
                },
                expires_at: stored.expires_at_ms.map(|ms| ms / 1000),
            }),
        };
        if !ttl.is_zero() {
            if let Ok(mut cache) = self.cache.lock() {
                if cache.len() >= CACHE_LIMIT {
                    cache.clear();
                }
                cache.insert(cache_key, (Instant::now(), answer.clone()));
            }
        }
        answer.map_err(AuthError::unauthenticated)
    }

    fn cached(&self, key: &[u8; 32]) -> Option<CachedAnswer> {
        self.cache.lock().ok()?.get(key).cloned()
    }

    /// Whether API key `id`, accepted earlier, still stands (not revoked or deleted since), as
    /// the key store says at most `ARAGORA_API_KEY_CACHE_SECONDS` ago. For connections that
    /// outlive a request: a WebSocket asks at each heartbeat.
    pub async fn key_still_stands(&self, id: &str) -> Result<bool, AuthError> {
        let ttl = Duration::from_secs(self.config.api_key_cache_secs);
        let known = self
            .standing
            .lock()
            .ok()
            .and_then(|standing| standing.get(id).copied());
        if let Some((at, stands)) = known {
            if at.elapsed() < ttl {
                return Ok(stands);
            }
        }
        let Some(store) = self.keys.get() else {
            return Err(AuthError::Unavailable(
                "API keys are checked against the database, which is not connected yet".into(),
            ));
        };
        let stands = store
            .find_key(id)
            .await
            .map_err(|err| AuthError::Unavailable(err.to_string()))?
            .is_some_and(|stored| stored.revoked_at_ms.is_none());
        if !ttl.is_zero() {
            if let Ok(mut standing) = self.standing.lock() {
                if standing.len() >= CACHE_LIMIT {
                    standing.clear();
                }
                standing.insert(id.to_string(), (Instant::now(), stands));
            }
        }
        Ok(stands)
    }

    /// Forgets cached answers for key `id`, so a revocation on this replica is immediate.
    pub fn forget_key(&self, id: &str) {
        if let Ok(mut standing) = self.standing.lock() {
            standing.remove(id);
        }
        if let Ok(mut cache) = self.cache.lock() {
            cache.retain(|_, (_, answer)| !matches!(answer, Ok(p) if matches!(&p.via, Via::ApiKey { id: cached, .. } if cached == id)));
        }
    }

    /// Admits an admin over everything (the admin endpoints of the gateway and the chaos
    /// proxy). Without a key store an API key is a credential this component cannot check:
    /// refused as unknown (401, see [`AuthError::keyless_code_and_message`]), not as an outage.
    pub async fn require_admin(&self, headers: &http::HeaderMap) -> Result<Principal, AuthError> {
        let principal = match self.authenticate_headers(headers).await {
            Err(AuthError::Unavailable(_)) if self.keys.get().is_none() => {
                Err(AuthError::unauthenticated(FailureReason::UnknownKey))
            }
            found => found,
        }?;
        principal.require(Role::Admin)?;
        Ok(principal)
    }

    /// A JWT for `subject` with `role`, valid for `ttl_secs` or `ARAGORA_JWT_TTL`.
    pub fn mint_jwt(
        &self,
        subject: &str,
        role: Role,
        ttl_secs: Option<u64>,
    ) -> Result<String, JwtError> {
        let secret = self
            .config
            .jwt_secret
            .as_deref()
            .ok_or(JwtError::NoSecret)?;
        jwt::mint(
            secret,
            subject,
            role,
            ttl_secs.unwrap_or(self.config.jwt_ttl_secs),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api_key::{generate_key, KeyStoreError, StoredKey};
    use async_trait::async_trait;

    const SECRET: &str = "jwt-secret-jwt-secret-jwt-secret-!";
    const PREVIOUS: &str = "old-secret-old-secret-old-secret-!";
    const TOKEN: &str = "operator-api-token";

    #[derive(Default)]
    struct MemoryKeys(Mutex<Vec<StoredKey>>);

    #[async_trait]
    impl KeyStore for MemoryKeys {
        async fn insert_key(&self, key: &StoredKey) -> Result<(), KeyStoreError> {
            self.0.lock().unwrap().push(key.clone());
            Ok(())
        }
        async fn find_key(&self, id: &str) -> Result<Option<StoredKey>, KeyStoreError> {
            Ok(self.0.lock().unwrap().iter().find(|k| k.id == id).cloned())
        }
        async fn list_keys(&self) -> Result<Vec<StoredKey>, KeyStoreError> {
            Ok(self.0.lock().unwrap().clone())
        }
        async fn revoke_key(&self, id: &str, at_ms: i64) -> Result<bool, KeyStoreError> {
            let mut keys = self.0.lock().unwrap();
            let key = keys
                .iter_mut()
                .find(|k| k.id == id && k.revoked_at_ms.is_none());
            Ok(key.map(|k| k.revoked_at_ms = Some(at_ms)).is_some())
        }
    }

    fn config() -> AuthConfig {
        AuthConfig {
            jwt_secret: Some(SECRET.into()),
            jwt_secret_previous: Some(PREVIOUS.into()),
            api_token: Some(TOKEN.into()),
            api_key_cache_secs: 60,
            ..AuthConfig::default()
        }
    }

    fn reason(result: Result<Principal, AuthError>) -> FailureReason {
        match result {
            Err(AuthError::Unauthenticated { reason }) => reason,
            other => panic!("expected a 401, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn each_stateless_credential_kind_authenticates() {
        let auth = Authenticator::new(config(), None);
        let admin = auth.authenticate(Some(TOKEN)).await.unwrap();
        assert_eq!((admin.role, admin.via.kind()), (Role::Admin, "api_token"));

        let jwt = auth.mint_jwt("alice", Role::Operator, None).unwrap();
        let alice = auth.authenticate(Some(&jwt)).await.unwrap();
        assert_eq!(
            (alice.subject.as_str(), alice.role),
            ("alice", Role::Operator)
        );

        let old = jwt::mint(PREVIOUS, "bob", Role::Reader, 60).unwrap();
        assert_eq!(auth.authenticate(Some(&old)).await.unwrap().subject, "bob");
        let rotated = Authenticator::new(
            AuthConfig {
                jwt_secret_previous: None,
                ..config()
            },
            None,
        );
        assert_eq!(
            reason(rotated.authenticate(Some(&old)).await),
            FailureReason::BadSignature
        );

        let far = crate::unix_now() + 3600;
        let loop_admin = loop_token::mint(TOKEN, "admin", far);
        assert_eq!(
            auth.authenticate(Some(&loop_admin)).await.unwrap().role,
            Role::Admin
        );
        let share = loop_token::mint(TOKEN, "debate-1", far);
        let shared = auth.authenticate(Some(&share)).await.unwrap();
        assert_eq!(shared.scope, Scope::Debate("debate-1".into()));
        assert!(shared.require(Role::Reader).is_err());
    }

    #[tokio::test]
    async fn missing_and_wrong_credentials_are_refused_unless_anonymous_is_on() {
        let auth = Authenticator::new(config(), None);
        assert_eq!(
            reason(auth.authenticate(None).await),
            FailureReason::Missing
        );
        assert_eq!(
            reason(auth.authenticate(Some("wrong-token")).await),
            FailureReason::BadSignature
        );
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(
            reason(auth.authenticate_headers(&headers).await),
            FailureReason::Malformed
        );
        let demo = Authenticator::new(
            AuthConfig {
                anonymous: crate::config::AnonymousAccess(Some(Role::Reader)),
                ..config()
            },
            None,
        );
        assert_eq!(demo.authenticate(None).await.unwrap().role, Role::Reader);
        assert_eq!(
            reason(demo.authenticate(Some("wrong-token")).await),
            FailureReason::BadSignature,
            "a bad credential is refused even when anonymous access is on"
        );
    }

    #[tokio::test]
    async fn without_a_key_store_only_stateless_admins_pass_and_api_keys_get_401() {
        let auth = Authenticator::new(config(), None);
        let headers = |token: &str| {
            let mut headers = http::HeaderMap::new();
            let value = format!("Bearer {token}").parse().unwrap();
            headers.insert(http::header::AUTHORIZATION, value);
            headers
        };
        assert!(auth.require_admin(&headers(TOKEN)).await.is_ok());
        let reader = auth.mint_jwt("alice", Role::Reader, None).unwrap();
        assert_eq!(
            auth.require_admin(&headers(&reader))
                .await
                .unwrap_err()
                .status(),
            403
        );
        let key = generate_key("ci", Role::Admin, None, "cli").key;
        assert_eq!(
            auth.require_admin(&headers(&key))
                .await
                .unwrap_err()
                .status(),
            401
        );
        assert_eq!(
            auth.require_admin(&http::HeaderMap::new())
                .await
                .unwrap_err()
                .status(),
            401
        );
    }

    #[tokio::test]
    async fn api_keys_work_until_revoked_and_the_revoking_replica_forgets_at_once() {
        let store = Arc::new(MemoryKeys::default());
        let auth = Authenticator::new(config(), Some(store.clone()));
        let issued = generate_key("ci", Role::Operator, None, "cli");
        store.insert_key(&issued.stored).await.unwrap();
        let principal = auth.authenticate(Some(&issued.key)).await.unwrap();
        assert_eq!(principal.subject, format!("key:{}", issued.stored.id));

        let wrong_secret = format!("{}_{}", issued.stored.prefix(), "0".repeat(64));
        assert_eq!(
            reason(auth.authenticate(Some(&wrong_secret)).await),
            FailureReason::UnknownKey
        );

        store.revoke_key(&issued.stored.id, 1).await.unwrap();
        assert!(
            auth.authenticate(Some(&issued.key)).await.is_ok(),
            "another replica's cache still trusts it for a few seconds"
        );
        auth.forget_key(&issued.stored.id);
        assert_eq!(
            reason(auth.authenticate(Some(&issued.key)).await),
            FailureReason::Revoked
        );
    }
}
