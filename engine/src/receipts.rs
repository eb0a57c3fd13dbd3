//! Signed receipts: tamper-evident records of completed debates.
//!
//! A receipt names the debate, hashes its topic and final answer (SHA-256), lists the
//! participants, rounds, outcome and timestamps, and is signed with HMAC-SHA256 under
//! `ARAGORA_RECEIPT_SIGNING_KEY`. The signed bytes are the receipt's canonical JSON (fields in
//! declaration order) with `signature` empty, so a receipt saved to a file and reformatted still
//! verifies, while any changed value or added field does not.
//!
//! Keys form a ring: the current key signs; it, every key of
//! `ARAGORA_RECEIPT_SIGNING_KEY_PREVIOUS` (comma-separated, all earlier keys: the runbook keeps
//! them indefinitely) and a generated key found in the data directory verify. Each receipt
//! names its key by `key_id` (signed with it), so verification looks the key up instead of
//! trying each: the cost stays one HMAC however many rotations the ring holds, and a receipt
//! whose key is not in the ring is refused as such. Nothing else verifies.

use crate::model::{format_ms, now_ms, ConsensusRule, DebateRecord, Outcome};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

type HmacSha256 = Hmac<Sha256>;

/// Format version of [`Receipt`]; bumped if fields change.
pub const RECEIPT_VERSION: u32 = 1;
/// The file a generated key is kept in, inside the data directory.
pub const KEY_FILE: &str = "receipt-signing.key";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Participant {
    pub name: String,
    pub provider: String,
    pub model: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceiptConsensus {
    pub reached: bool,
    pub rule: ConsensusRule,
    pub winner: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    #[schema(minimum = 1, maximum = 1)]
    pub receipt_version: u32,
    pub debate_id: String,
    pub topic_sha256: String,
    pub participants: Vec<Participant>,
    pub rounds: i64,
    pub outcome: Outcome,
    pub consensus: ReceiptConsensus,
    pub final_answer_sha256: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: String,
    pub issued_at: String,
    /// First 16 hex digits of SHA-256 of the signing key: which key signed, without revealing it.
    pub key_id: String,
    /// HMAC-SHA256, hex, over the canonical JSON of this receipt with `signature` empty.
    pub signature: String,
}

/// Whether a valid receipt was signed with the current key or an earlier one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SignedWith {
    Current,
    Previous,
}

/// Where a key of the ring comes from; what answers and logs name instead of its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// `ARAGORA_RECEIPT_SIGNING_KEY`.
    Configured,
    /// The key generated into the data directory (`receipt-signing.key`).
    Generated,
    /// The `n`th key (from 1) of `ARAGORA_RECEIPT_SIGNING_KEY_PREVIOUS`.
    Previous(usize),
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Configured => f.write_str("ARAGORA_RECEIPT_SIGNING_KEY"),
            Self::Generated => write!(f, "the generated key file {KEY_FILE}"),
            Self::Previous(n) => write!(f, "ARAGORA_RECEIPT_SIGNING_KEY_PREVIOUS key {n}"),
        }
    }
}

/// Which key of the ring verified a receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub key_id: String,
    pub signed_with: SignedWith,
    pub source: KeySource,
}

impl Verified {
    pub fn is_current(&self) -> bool {
        self.signed_with == SignedWith::Current
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VerifyError {
    #[error("not a receipt: {0}")]
    Malformed(String),
    #[error("signed with key {key_id}, which is not in the key ring: neither ARAGORA_RECEIPT_SIGNING_KEY nor any key of ARAGORA_RECEIPT_SIGNING_KEY_PREVIOUS (nor a generated key); add the key it was signed with to ARAGORA_RECEIPT_SIGNING_KEY_PREVIOUS")]
    UnknownKey { key_id: String },
    #[error("the signature does not match: the receipt was changed after it was signed")]
    BadSignature,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read or create the receipt signing key {path}: {source}; set ARAGORA_RECEIPT_SIGNING_KEY instead")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot read the generated receipt signing key {path} (kept so receipts it signed still verify): {source}; make it readable, or move it away if no receipt was signed with it")]
    Unreadable {
        path: String,
        source: std::io::Error,
    },
}

/// One key of the ring.
struct RingKey {
    bytes: Vec<u8>,
    source: KeySource,
}

/// The keys by key id: the one that signs, and every earlier one that still verifies.
struct Ring {
    current_id: String,
    keys: HashMap<String, RingKey>,
}

/// The receipt key ring: the current key signs; it and every earlier key verify, each
/// receipt by the key its `key_id` names (one lookup, however many rotations the ring holds).
/// Cheap to clone (shared).
#[derive(Clone)]
pub struct ReceiptKeys {
    ring: Arc<Ring>,
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn key_id(key: &[u8]) -> String {
    sha256_hex(key)[..16].to_string()
}

impl ReceiptKeys {
    /// The ring of `current` (from `ARAGORA_RECEIPT_SIGNING_KEY`) and `previous` (the keys of
    /// `ARAGORA_RECEIPT_SIGNING_KEY_PREVIOUS`, in order).
    pub fn new(current: &str, previous: &[String]) -> Self {
        Self::ring(current, KeySource::Configured, previous, None)
    }

    /// `current` signs; `previous`, then `extra` (a generated key no longer current), verify.
    /// A key listed twice keeps its first place.
    fn ring(
        current: &str,
        source: KeySource,
        previous: &[String],
        extra: Option<(&str, KeySource)>,
    ) -> Self {
        let current_id = key_id(current.as_bytes());
        let mut keys = HashMap::new();
        let all = std::iter::once((current, source))
            .chain(
                previous
                    .iter()
                    .enumerate()
                    .map(|(index, key)| (key.as_str(), KeySource::Previous(index + 1))),
            )
            .chain(extra);
        for (key, source) in all {
            keys.entry(key_id(key.as_bytes())).or_insert(RingKey {
                bytes: key.as_bytes().to_vec(),
                source,
            });
        }
        Self {
            ring: Arc::new(Ring { current_id, keys }),
        }
    }

    /// The configured key, or one generated once and kept in `data_dir/receipt-signing.key`
    /// (mode 0600) so receipts keep verifying across restarts of a single node. A generated
    /// key found there while a key is configured stays in the ring: setting
    /// `ARAGORA_RECEIPT_SIGNING_KEY` later must not orphan the receipts it signed.
    pub fn resolve(
        configured: Option<&str>,
        previous: &[String],
        data_dir: &Path,
    ) -> Result<Self, KeyError> {
        let path = data_dir.join(KEY_FILE);
        if let Some(key) = configured {
            return Self::configured(key, previous, &path);
        }
        let file_error = |source| KeyError::File {
            path: path.display().to_string(),
            source,
        };
        let (key, generated) = aragora_config::files::read_or_generate_key(&path, || {
            hex::encode(rand::random::<[u8; 32]>())
        })
        .map_err(file_error)?;
        if generated {
            tracing::warn!(path = %path.display(), "generated a receipt signing key; set ARAGORA_RECEIPT_SIGNING_KEY to share one across replicas");
        }
        Ok(Self::ring(&key, KeySource::Generated, previous, None))
    }

    /// The ring as [`resolve`](Self::resolve) builds it, but never generating a key (for
    /// drills and checks, which change nothing): `None` when no key is configured and none was
    /// generated.
    pub fn existing(
        configured: Option<&str>,
        previous: &[String],
        data_dir: &Path,
    ) -> Result<Option<Self>, KeyError> {
        let path = data_dir.join(KEY_FILE);
        if let Some(key) = configured {
            return Self::configured(key, previous, &path).map(Some);
        }
        match read_generated(&path)? {
            Some(key) => Ok(Some(Self::ring(&key, KeySource::Generated, previous, None))),
            None => Ok(None),
        }
    }

    fn configured(key: &str, previous: &[String], generated: &Path) -> Result<Self, KeyError> {
        let generated = read_generated(generated)?;
        let extra = generated.as_deref().map(|key| (key, KeySource::Generated));
        Ok(Self::ring(key, KeySource::Configured, previous, extra))
    }

    /// The id of the key that signs.
    pub fn key_id(&self) -> String {
        self.ring.current_id.clone()
    }

    /// How many keys verify (the current one included).
    pub fn len(&self) -> usize {
        self.ring.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ring.keys.is_empty()
    }

    fn mac(key: &[u8], receipt: &Receipt) -> HmacSha256 {
        let unsigned = Receipt {
            signature: String::new(),
            ..receipt.clone()
        };
        let canonical = serde_json::to_vec(&unsigned).unwrap_or_default();
        let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
        mac.update(&canonical);
        mac
    }

    /// Fills in `key_id` and `signature` (the key id is signed too).
    pub fn sign(&self, mut receipt: Receipt) -> Receipt {
        let current = &self.ring.keys[&self.ring.current_id];
        receipt.key_id = self.key_id();
        receipt.signature =
            hex::encode(Self::mac(&current.bytes, &receipt).finalize().into_bytes());
        receipt
    }

    /// Checks a receipt's signature under the key its `key_id` names, if the ring holds it.
    pub fn verify(&self, receipt: &Receipt) -> Result<Verified, VerifyError> {
        let key = self
            .ring
            .keys
            .get(&receipt.key_id)
            .ok_or_else(|| VerifyError::UnknownKey {
                key_id: receipt.key_id.clone(),
            })?;
        let signature = hex::decode(&receipt.signature).map_err(|_| VerifyError::BadSignature)?;
        Self::mac(&key.bytes, receipt)
            .verify_slice(&signature)
            .map_err(|_| VerifyError::BadSignature)?;
        Ok(Verified {
            key_id: receipt.key_id.clone(),
            signed_with: if receipt.key_id == self.ring.current_id {
                SignedWith::Current
            } else {
                SignedWith::Previous
            },
            source: key.source,
        })
    }

    /// Parses and verifies a receipt given as JSON text (a file, a request body).
    pub fn verify_json(&self, text: &str) -> Result<(Receipt, Verified), VerifyError> {
        let malformed = |err: serde_json::Error| VerifyError::Malformed(err.to_string());
        // serde would read a receipt from an array too, field by field.
        if !text.trim_start().starts_with('{') {
            return Err(VerifyError::Malformed("not a JSON object".into()));
        }
        // Read straight into the receipt, not through a `Value`: a `Value` keeps the last of
        // two equal keys, so a receipt holding a field twice would verify with one value while
        // another reader shows the other. Read this way, a repeated field is refused.
        let receipt: Receipt = serde_json::from_str(text).map_err(malformed)?;
        if receipt.receipt_version != RECEIPT_VERSION {
            return Err(VerifyError::Malformed(format!(
                "receipt_version {} is not {RECEIPT_VERSION}",
                receipt.receipt_version
            )));
        }
        let verified = self.verify(&receipt)?;
        Ok((receipt, verified))
    }
}

/// The generated key kept at `path`, if there is one.
fn read_generated(path: &Path) -> Result<Option<String>, KeyError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text.trim().to_string())),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(KeyError::Unreadable {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// The unsigned receipt of a completed debate.
pub fn receipt_for(
    record: &DebateRecord,
    participants: Vec<Participant>,
    outcome: Outcome,
    winner: Option<String>,
    final_answer: Option<&str>,
    finished_at_ms: i64,
) -> Receipt {
    Receipt {
        receipt_version: RECEIPT_VERSION,
        debate_id: record.id.clone(),
        topic_sha256: sha256_hex(record.topic.as_bytes()),
        participants,
        rounds: record.rounds,
        outcome,
        consensus: ReceiptConsensus {
            reached: outcome == Outcome::Consensus,
            rule: record.consensus_rule,
            winner,
        },
        final_answer_sha256: final_answer.map(|answer| sha256_hex(answer.as_bytes())),
        created_at: format_ms(record.created_at_ms),
        started_at: record.started_at_ms.map(format_ms),
        finished_at: format_ms(finished_at_ms),
        issued_at: format_ms(now_ms()),
        key_id: String::new(),
        signature: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Receipt {
        Receipt {
            receipt_version: 1,
            debate_id: "d-1".into(),
            topic_sha256: sha256_hex(b"topic"),
            participants: vec![Participant {
                name: "a".into(),
                provider: "offline".into(),
                model: "m".into(),
            }],
            rounds: 2,
            outcome: Outcome::Consensus,
            consensus: ReceiptConsensus {
                reached: true,
                rule: ConsensusRule::Majority,
                winner: Some("a".into()),
            },
            final_answer_sha256: Some(sha256_hex(b"answer")),
            created_at: format_ms(0),
            started_at: Some(format_ms(1)),
            finished_at: format_ms(2),
            issued_at: format_ms(3),
            key_id: String::new(),
            signature: String::new(),
        }
    }

    const OLD: &str = "old-key-old-key-old-key-old-key-old-key";
    const NEW: &str = "new-key-new-key-new-key-new-key-new-key";
    const OLDER: &str = "older-key-older-key-older-key-older-key";
    const STRANGER: &str = "stranger-stranger-stranger-stranger";

    fn previous(keys: &[&str]) -> Vec<String> {
        keys.iter().map(|k| k.to_string()).collect()
    }

    #[test]
    fn a_signed_receipt_verifies_even_reformatted() {
        let keys = ReceiptKeys::new(NEW, &[]);
        let signed = keys.sign(sample());
        assert_eq!(signed.key_id, key_id(NEW.as_bytes()));
        let verified = keys.verify(&signed).unwrap();
        assert_eq!(verified.signed_with, SignedWith::Current);
        assert!(verified.is_current());
        assert_eq!(verified.key_id, signed.key_id);
        assert_eq!(verified.source, KeySource::Configured);
        let pretty = serde_json::to_string_pretty(&signed).unwrap();
        assert_eq!(
            keys.verify_json(&pretty).unwrap().1.signed_with,
            SignedWith::Current
        );
    }

    #[test]
    fn a_receipt_holding_a_field_twice_is_refused_not_verified_with_either_value() {
        let keys = ReceiptKeys::new(NEW, &[]);
        let signed = serde_json::to_string(&keys.sign(sample())).unwrap();
        // The signed value first, another after it: a reader keeping the last sees 3 rounds.
        let doubled = signed.replacen("{", "{\"rounds\":3,", 1);
        let refused = keys.verify_json(&doubled);
        assert!(
            matches!(&refused, Err(VerifyError::Malformed(message)) if message.contains("duplicate field")),
            "{refused:?}"
        );
        assert!(matches!(
            keys.verify_json("[1]"),
            Err(VerifyError::Malformed(message)) if message == "not a JSON object"
        ));
    }

    #[test]
    fn any_change_breaks_the_signature() {
        let keys = ReceiptKeys::new(NEW, &previous(&[OLD]));
        let signed = keys.sign(sample());
        let mut tampered = signed.clone();
        tampered.rounds = 3;
        assert_eq!(keys.verify(&tampered), Err(VerifyError::BadSignature));
        let mut tampered = signed.clone();
        tampered.consensus.winner = Some("b".into());
        assert_eq!(keys.verify(&tampered), Err(VerifyError::BadSignature));
        // The key id is signed too: pointing it at another key of the ring does not verify.
        let mut tampered = signed.clone();
        tampered.key_id = key_id(OLD.as_bytes());
        assert_eq!(keys.verify(&tampered), Err(VerifyError::BadSignature));
        let mut tampered = signed.clone();
        tampered.signature = "not hex".into();
        assert_eq!(keys.verify(&tampered), Err(VerifyError::BadSignature));
        let mut value = serde_json::to_value(&signed).unwrap();
        value["extra"] = serde_json::json!(true);
        assert!(matches!(
            keys.verify_json(&value.to_string()),
            Err(VerifyError::Malformed(_))
        ));
    }

    #[test]
    fn rotation_accepts_the_previous_key_and_nothing_else() {
        let before = ReceiptKeys::new(OLD, &[]).sign(sample());
        let during = ReceiptKeys::new(NEW, &previous(&[OLD]));
        let verified = during.verify(&before).unwrap();
        assert_eq!(verified.signed_with, SignedWith::Previous);
        assert_eq!(verified.source, KeySource::Previous(1));
        let after = ReceiptKeys::new(NEW, &[]);
        assert_eq!(
            after.verify(&before),
            Err(VerifyError::UnknownKey {
                key_id: key_id(OLD.as_bytes())
            })
        );
        let stranger = ReceiptKeys::new(STRANGER, &previous(&[NEW]));
        assert!(matches!(
            stranger.verify(&before),
            Err(VerifyError::UnknownKey { .. })
        ));
    }

    #[test]
    fn every_earlier_key_of_the_ring_verifies_its_receipts() {
        let oldest = ReceiptKeys::new(OLDER, &[]).sign(sample());
        let middle = ReceiptKeys::new(OLD, &previous(&[OLDER])).sign(sample());
        let ring = ReceiptKeys::new(NEW, &previous(&[OLD, OLDER]));
        assert_eq!(ring.len(), 3);
        let verified = ring.verify(&oldest).unwrap();
        assert_eq!(
            (verified.signed_with, verified.source, verified.key_id),
            (
                SignedWith::Previous,
                KeySource::Previous(2),
                key_id(OLDER.as_bytes())
            )
        );
        assert_eq!(ring.verify(&middle).unwrap().source, KeySource::Previous(1));
        let current = ring.sign(sample());
        assert!(ring.verify(&current).unwrap().is_current());
        // Signed with a key outside the ring: refused, naming its key id only.
        let foreign = ReceiptKeys::new(STRANGER, &[]).sign(sample());
        let refused = ring.verify(&foreign).unwrap_err();
        let message = refused.to_string();
        assert!(message.contains(&foreign.key_id), "{message}");
        assert!(
            message.contains("ARAGORA_RECEIPT_SIGNING_KEY_PREVIOUS"),
            "{message}"
        );
        for key in [NEW, OLD, OLDER, STRANGER] {
            assert!(!message.contains(key), "{message}");
        }
    }

    #[test]
    fn a_key_listed_twice_keeps_its_first_place() {
        let ring = ReceiptKeys::new(NEW, &previous(&[OLD, NEW, OLD]));
        assert_eq!(ring.len(), 2);
        let signed = ring.sign(sample());
        assert_eq!(ring.verify(&signed).unwrap().source, KeySource::Configured);
        let old = ReceiptKeys::new(OLD, &[]).sign(sample());
        assert_eq!(ring.verify(&old).unwrap().source, KeySource::Previous(1));
    }

    #[test]
    fn a_generated_key_is_kept_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = ReceiptKeys::resolve(None, &[], dir.path()).unwrap();
        let second = ReceiptKeys::resolve(None, &[], dir.path()).unwrap();
        assert_eq!(first.key_id(), second.key_id());
        let signed = first.sign(sample());
        assert_eq!(second.verify(&signed).unwrap().source, KeySource::Generated);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_generated_key_still_verifies_once_a_key_is_configured() {
        let dir = tempfile::tempdir().unwrap();
        let generated = ReceiptKeys::resolve(None, &[], dir.path()).unwrap();
        let before = generated.sign(sample());
        let configured = ReceiptKeys::resolve(Some(NEW), &previous(&[OLD]), dir.path()).unwrap();
        assert_eq!(configured.key_id(), key_id(NEW.as_bytes()));
        assert_eq!(configured.len(), 3);
        let verified = configured.verify(&before).unwrap();
        assert_eq!(
            (verified.signed_with, verified.source),
            (SignedWith::Previous, KeySource::Generated)
        );
        assert!(configured.sign(sample()).key_id != before.key_id);
    }

    #[test]
    fn existing_never_generates_a_key() {
        let dir = tempfile::tempdir().unwrap();
        assert!(ReceiptKeys::existing(None, &[], dir.path())
            .unwrap()
            .is_none());
        assert!(!dir.path().join(KEY_FILE).exists());
        let configured = ReceiptKeys::existing(Some(NEW), &[], dir.path())
            .unwrap()
            .unwrap();
        assert_eq!(configured.len(), 1);
        assert!(!dir.path().join(KEY_FILE).exists());
        let generated = ReceiptKeys::resolve(None, &[], dir.path()).unwrap();
        let found = ReceiptKeys::existing(None, &previous(&[OLD]), dir.path())
            .unwrap()
            .unwrap();
        assert_eq!(found.key_id(), generated.key_id());
        assert_eq!(found.len(), 2);
    }

    #[test]
    fn an_unreadable_generated_key_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the key file should be: it exists but cannot be read as a key.
        std::fs::create_dir(dir.path().join(KEY_FILE)).unwrap();
        let err = ReceiptKeys::resolve(Some(NEW), &[], dir.path())
            .err()
            .expect("refused");
        assert!(matches!(err, KeyError::Unreadable { .. }), "{err}");
        assert!(err.to_string().contains(KEY_FILE), "{err}");
        assert!(!err.to_string().contains(NEW), "{err}");
    }

    #[test]
    fn key_sources_are_named_without_values() {
        assert_eq!(
            KeySource::Configured.to_string(),
            "ARAGORA_RECEIPT_SIGNING_KEY"
        );
        assert_eq!(
            KeySource::Previous(2).to_string(),
            "ARAGORA_RECEIPT_SIGNING_KEY_PREVIOUS key 2"
        );
        assert!(KeySource::Generated.to_string().contains(KEY_FILE));
    }
}
