//! Credentials as they arrive: bearer tokens of every kind, the `Authorization` header around
//! them, a browser's `Origin`.

use aragora_auth::{
    hash_secret, mint_loop_token, AuthConfig, Authenticator, KeyStore, KeyStoreError, OriginPolicy,
    Role, StoredKey, Via,
};
use async_trait::async_trait;
use futures::executor::block_on;
use http::{HeaderMap, HeaderValue};
use std::sync::{Arc, OnceLock};

/// The secrets the target's authenticator holds; the committed seeds carry credentials made
/// with them (`fuzz/corpus/credential/`), so mutations start from tokens that verify.
pub const JWT_SECRET: &str = "fuzz-jwt-secret-of-at-least-32-characters";
pub const API_TOKEN: &str = "fuzz-api-token-of-some-length";
/// The one API key the target's key store holds.
pub const API_KEY: &str =
    "ara_0123456789ab_00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const API_KEY_ID: &str = "0123456789ab";

/// A key store holding [`API_KEY`] alone.
struct OneKey(StoredKey);

#[async_trait]
impl KeyStore for OneKey {
    async fn insert_key(&self, _: &StoredKey) -> Result<(), KeyStoreError> {
        Err(KeyStoreError("read-only".into()))
    }
    async fn find_key(&self, id: &str) -> Result<Option<StoredKey>, KeyStoreError> {
        Ok((id == self.0.id).then(|| self.0.clone()))
    }
    async fn list_keys(&self) -> Result<Vec<StoredKey>, KeyStoreError> {
        Ok(vec![self.0.clone()])
    }
    async fn revoke_key(&self, _: &str, _: i64) -> Result<bool, KeyStoreError> {
        Ok(false)
    }
}

fn authenticator() -> &'static Authenticator {
    static AUTH: OnceLock<Authenticator> = OnceLock::new();
    AUTH.get_or_init(|| {
        let config = AuthConfig {
            jwt_secret: Some(JWT_SECRET.into()),
            api_token: Some(API_TOKEN.into()),
            allowed_origins: vec!["https://app.example.com".into()],
            ..AuthConfig::default()
        };
        let secret = API_KEY.rsplit('_').next().expect("the key has a secret");
        let key = StoredKey {
            id: API_KEY_ID.into(),
            name: "fuzz".into(),
            role: Role::Operator,
            secret_hash: hash_secret(secret),
            created_by: "fuzz".into(),
            created_at_ms: 0,
            expires_at_ms: None,
            revoked_at_ms: None,
        };
        Authenticator::new(config, Some(Arc::new(OneKey(key))))
    })
}

/// A bearer token, as itself and inside `Authorization: Bearer`; then as an `Origin`.
pub fn credential(data: &[u8]) {
    let auth = authenticator();
    if let Ok(token) = std::str::from_utf8(data) {
        let answer = block_on(auth.authenticate(Some(token)));
        if let Ok(principal) = &answer {
            // Only the credentials the secrets made are accepted, each exactly as minted.
            match &principal.via {
                Via::ApiToken => assert_eq!(token, API_TOKEN),
                Via::ApiKey { .. } => assert_eq!(token, API_KEY),
                Via::LoopToken => {
                    let loop_id = principal.subject.strip_prefix("loop:").expect("loop:<id>");
                    let expires = principal.expires_at.expect("a loop token expires");
                    assert_eq!(
                        token,
                        mint_loop_token(API_TOKEN, loop_id, expires),
                        "a loop token other than the one minted for its loop and expiry verifies"
                    );
                }
                Via::Jwt { .. } => assert_eq!(token.matches('.').count(), 2),
                Via::Anonymous => panic!("a token authenticated as anonymous"),
            }
        }
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}")) {
            headers.insert(http::header::AUTHORIZATION, value);
            let via_header = block_on(auth.authenticate_headers(&headers));
            // The header trims what surrounds the token; the bare token is taken as given.
            if token.trim() == token && !token.is_empty() {
                assert_eq!(
                    via_header.as_ref().ok(),
                    answer.as_ref().ok(),
                    "the header and the bare token get different answers"
                );
            }
        }
    }
    if let Ok(origin) = std::str::from_utf8(data) {
        let allowed = OriginPolicy::new(&auth.config().allowed_origins).allows(origin);
        // Whatever the spelling (case, default port, a trailing slash), nothing but that origin.
        let lower = origin.trim().to_ascii_lowercase();
        assert!(
            !allowed
                || (lower.starts_with("https://app.example.com")
                    && !lower["https://app.example.com".len()..]
                        .trim_start_matches(":443")
                        .contains(|c: char| c != '/')),
            "{origin:?}"
        );
    }
}
