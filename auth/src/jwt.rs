//! JWTs (HS256, `jsonwebtoken`): minted with `ARAGORA_JWT_SECRET`, verified with it or, during
//! a rotation, with `ARAGORA_JWT_SECRET_PREVIOUS`.

use crate::failure::FailureReason;
use crate::role::Role;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// Clock skew tolerated between the replica that minted a token and the one checking it.
const LEEWAY_SECS: u64 = 5;

/// What an aragora JWT carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: Role,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
}

#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("ARAGORA_JWT_SECRET is not set; set a secret of at least 32 characters to mint JWTs")]
    NoSecret,
    #[error("cannot sign the JWT: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

/// A JWT for `sub` with `role`, valid for `ttl_secs` from now.
pub(crate) fn mint(secret: &str, sub: &str, role: Role, ttl_secs: u64) -> Result<String, JwtError> {
    let now = crate::unix_now();
    let claims = Claims {
        sub: sub.to_string(),
        role,
        iat: now,
        exp: now + ttl_secs as i64,
        jti: uuid::Uuid::new_v4().to_string(),
    };
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )?)
}

/// The claims of `token` if one of `secrets` signed it and it has not expired.
pub(crate) fn verify(token: &str, secrets: &[&str]) -> Result<Claims, FailureReason> {
    if secrets.is_empty() {
        // No secret: nothing this process could have signed.
        return Err(FailureReason::BadSignature);
    }
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = LEEWAY_SECS;
    validation.set_required_spec_claims(&["exp", "sub"]);
    let mut reason = FailureReason::BadSignature;
    for secret in secrets {
        match jsonwebtoken::decode::<Claims>(
            token,
            &DecodingKey::from_secret(secret.as_bytes()),
            &validation,
        ) {
            Ok(data) => return Ok(data.claims),
            Err(err) => match err.kind() {
                // The next secret may be the one that signed it.
                ErrorKind::InvalidSignature => continue,
                ErrorKind::ExpiredSignature => return Err(FailureReason::Expired),
                _ => reason = FailureReason::Malformed,
            },
        }
        break;
    }
    Err(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "a-jwt-secret-of-at-least-32-characters";
    const OTHER: &str = "another-jwt-secret-of-32-characters!!";

    #[test]
    fn a_minted_token_verifies_with_its_secret_only() {
        let token = mint(SECRET, "alice", Role::Operator, 60).unwrap();
        let claims = verify(&token, &[SECRET]).unwrap();
        assert_eq!(
            (claims.sub.as_str(), claims.role),
            ("alice", Role::Operator)
        );
        assert_eq!(claims.exp - claims.iat, 60);
        assert_eq!(verify(&token, &[OTHER]), Err(FailureReason::BadSignature));
        assert_eq!(verify(&token, &[OTHER, SECRET]).unwrap(), claims);
    }

    #[test]
    fn expired_tampered_and_garbage_tokens_are_refused_with_their_reason() {
        let now = crate::unix_now();
        let expired = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &Claims {
                sub: "alice".into(),
                role: Role::Admin,
                iat: now - 7200,
                exp: now - 3600,
                jti: "j".into(),
            },
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        assert_eq!(verify(&expired, &[SECRET]), Err(FailureReason::Expired));

        // A reader's token whose payload is swapped for an admin's (signed elsewhere).
        let reader = mint(SECRET, "alice", Role::Reader, 60).unwrap();
        let admin = mint(OTHER, "alice", Role::Admin, 60).unwrap();
        let mut parts: Vec<&str> = reader.split('.').collect();
        parts[1] = admin.split('.').nth(1).unwrap();
        assert_eq!(
            verify(&parts.join("."), &[SECRET]),
            Err(FailureReason::BadSignature)
        );
        assert_eq!(verify("a.b.c", &[SECRET]), Err(FailureReason::Malformed));
    }
}
