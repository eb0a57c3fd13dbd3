//! The signatures on a delivery (HMAC-SHA256 from the `hmac` and `sha2` crates), sent when its
//! subscription has a secret:
//!
//! | header | value |
//! |---|---|
//! | `X-Webhook-Signature` | `sha256=<hex HMAC of the exact body>`: the runbook's header |
//! | `X-Aragora-Signature` | `t=<unix seconds>,v1=<hex HMAC of "<t>.<body>">`: the time is signed too, so a receiver can refuse a replayed delivery (one older than, say, 5 minutes) |
//!
//! and on every delivery `X-Aragora-Delivery` (its id, the same on every retry: receivers
//! deduplicate by it), `X-Aragora-Event` (the event type) and `X-Aragora-Attempt` (1, 2, …).

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const SIGNATURE: &str = "x-webhook-signature";
pub const TIMESTAMPED_SIGNATURE: &str = "x-aragora-signature";
pub const DELIVERY: &str = "x-aragora-delivery";
pub const EVENT: &str = "x-aragora-event";
pub const ATTEMPT: &str = "x-aragora-attempt";

fn hmac_hex(secret: &str, parts: &[&[u8]]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    for part in parts {
        mac.update(part);
    }
    hex::encode(mac.finalize().into_bytes())
}

/// `X-Webhook-Signature`'s value.
pub fn signature(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", hmac_hex(secret, &[body]))
}

/// `X-Aragora-Signature`'s value at `unix_seconds`.
pub fn timestamped(secret: &str, body: &[u8], unix_seconds: i64) -> String {
    let t = unix_seconds.to_string();
    format!("t={t},v1={}", hmac_hex(secret, &[t.as_bytes(), b".", body]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hmac_sha256_of_the_body_and_of_time_dot_body() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let stamped = timestamped("Jefe", b"do ya want for nothing?", 1);
        assert_eq!(
            stamped,
            format!(
                "t=1,v1={}",
                &signature("Jefe", b"1.do ya want for nothing?")[7..]
            )
        );
    }
}
