//! The Production Runbook's API token, `{loop_id}:{expires_timestamp}:{hmac_signature}`: the
//! signature is the hex HMAC-SHA256 of `{loop_id}:{expires_timestamp}` under
//! `ARAGORA_API_TOKEN`, exactly as the original platform's `generate_token(loop_id, ttl)` makes
//! it, so tokens operators' scripts mint keep working.

use crate::failure::FailureReason;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

fn mac(key: &str, signed: &str) -> HmacSha256 {
    let mut mac =
        HmacSha256::new_from_slice(key.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(signed.as_bytes());
    mac
}

/// A token for `loop_id` that expires at `expires` (Unix seconds).
pub fn mint(key: &str, loop_id: &str, expires: i64) -> String {
    let signed = format!("{loop_id}:{expires}");
    let signature = hex::encode(mac(key, &signed).finalize().into_bytes());
    format!("{signed}:{signature}")
}

/// Does `token` look like a loop token (so no other kind should be tried)?
pub(crate) fn looks_like(token: &str) -> bool {
    let mut parts = token.rsplitn(3, ':');
    let (Some(signature), Some(expires), Some(loop_id)) =
        (parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    !loop_id.is_empty()
        && !expires.is_empty()
        && expires.bytes().all(|b| b.is_ascii_digit())
        && signature.len() == 64
        && signature.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The loop id of a valid, unexpired token.
pub(crate) fn verify(token: &str, key: Option<&str>, now: i64) -> Result<String, FailureReason> {
    let mut parts = token.rsplitn(3, ':');
    let (Some(signature), Some(expires), Some(loop_id)) =
        (parts.next(), parts.next(), parts.next())
    else {
        return Err(FailureReason::Malformed);
    };
    let expires_text = expires;
    let expires: i64 = expires.parse().map_err(|_| FailureReason::Malformed)?;
    // Only the spelling `mint` writes (no leading zeros, lowercase hex): otherwise one
    // credential would have many spellings (found by fuzzing), each a different string to
    // anything that compares or records tokens as written.
    if expires.to_string() != expires_text || signature.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(FailureReason::Malformed);
    }
    let signature = hex::decode(signature).map_err(|_| FailureReason::Malformed)?;
    let key = key.ok_or(FailureReason::BadSignature)?;
    // Constant-time comparison (hmac's verify), before the expiry so a forged token learns
    // nothing from which answer it gets.
    mac(key, &format!("{loop_id}:{expires}"))
        .verify_slice(&signature)
        .map_err(|_| FailureReason::BadSignature)?;
    if expires <= now {
        return Err(FailureReason::Expired);
    }
    Ok(loop_id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "the-api-token";

    #[test]
    fn matches_the_original_platforms_signature() {
        // hmac.new(b"the-api-token", b"admin:1700000000", hashlib.sha256).hexdigest()
        let token = mint(KEY, "admin", 1_700_000_000);
        let (signed, signature) = token.rsplit_once(':').unwrap();
        assert_eq!(signed, "admin:1700000000");
        // Python's hmac/hashlib, as the original platform computes it.
        assert_eq!(
            signature,
            "7c1ce0e22707c920a423f0c49ee46b058648dbfeefbb1d45c449a0ec3c8dd8bb"
        );
        assert_eq!(verify(&token, Some(KEY), 1_699_999_999), Ok("admin".into()));
    }

    #[test]
    fn expired_tampered_and_unsigned_tokens_are_refused() {
        let token = mint(KEY, "admin", 1_000);
        assert_eq!(
            verify(&token, Some(KEY), 1_000),
            Err(FailureReason::Expired)
        );
        let tampered = token.replacen("admin:1000", "admin:9999", 1);
        assert_eq!(
            verify(&tampered, Some(KEY), 0),
            Err(FailureReason::BadSignature)
        );
        assert_eq!(
            verify(&token, Some("other"), 0),
            Err(FailureReason::BadSignature)
        );
        assert_eq!(verify(&token, None, 0), Err(FailureReason::BadSignature));
        assert_eq!(
            verify("admin:soon:zz", Some(KEY), 0),
            Err(FailureReason::Malformed)
        );
        assert!(looks_like(&token));
        assert!(!looks_like("admin:1000"));
    }

    #[test]
    fn only_the_spelling_mint_writes_verifies() {
        let token = mint(KEY, "admin", 5_000);
        assert_eq!(verify(&token, Some(KEY), 0), Ok("admin".into()));
        let zero_padded = token.replacen("admin:5000", "admin:05000", 1);
        assert_eq!(
            verify(&zero_padded, Some(KEY), 0),
            Err(FailureReason::Malformed)
        );
        let (signed, signature) = token.rsplit_once(':').unwrap();
        let shouted = format!("{signed}:{}", signature.to_ascii_uppercase());
        assert_eq!(
            verify(&shouted, Some(KEY), 0),
            Err(FailureReason::Malformed)
        );
    }

    #[test]
    fn a_debate_id_with_colons_stays_whole() {
        let token = mint(KEY, "urn:debate:42", 5_000);
        assert_eq!(verify(&token, Some(KEY), 0), Ok("urn:debate:42".into()));
    }
}
