//! Signed receipts: tamper-evident records of completed debates.
//!
//! A receipt names the debate, hashes its topic and final answer (SHA-256), lists the
//! participants, rounds, outcome and timestamps, and is signed with HMAC-SHA256 under
//! `ARAGORA_RECEIPT_SIGNING_KEY`. The signed bytes are the receipt's canonical JSON (fields in
//! declaration order) with `signature` empty, so a receipt saved to a file and reformatted still
//! verifies, while any changed value or added field does not. Verification accepts the current
//! key and, during a rotation, `ARAGORA_RECEIPT_SIGNING_KEY_PREVIOUS`; nothing else.

use crate::model::{format_ms, now_ms, ConsensusRule, DebateRecord, Outcome};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;

type HmacSha256 = Hmac<Sha256>;

/// Format version of [`Receipt`]; bumped if fields change.
pub const RECEIPT_VERSION: u32 = 1;
/// The file a generated key is kept in, inside the data directory.
pub const KEY_FILE: &str = "receipt-signing.key";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Participant {
    pub name: String,
    pub provider: String,
    pub model: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptConsensus {
    pub reached: bool,
    pub rule: ConsensusRule,
    pub winner: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
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

/// Which key a valid receipt was signed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SignedWith {
    Current,
    Previous,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VerifyError {
    #[error("not a receipt: {0}")]
    Malformed(String),
    #[error("the signature does not match: the receipt was changed, or signed with a key that is neither ARAGORA_RECEIPT_SIGNING_KEY nor ARAGORA_RECEIPT_SIGNING_KEY_PREVIOUS")]
    BadSignature,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read or create the receipt signing key {path}: {source}; set ARAGORA_RECEIPT_SIGNING_KEY instead")]
    File {
        path: String,
        source: std::io::Error,
    },
}

/// The signing key and, during a rotation, the one before it.
#[derive(Clone)]
pub struct ReceiptKeys {
    current: Vec<u8>,
    previous: Option<Vec<u8>>,
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn key_id(key: &[u8]) -> String {
    sha256_hex(key)[..16].to_string()
}

impl ReceiptKeys {
    pub fn new(current: &str, previous: Option<&str>) -> Self {
        Self {
            current: current.as_bytes().to_vec(),
            previous: previous.map(|k| k.as_bytes().to_vec()),
        }
    }

    /// The configured key, or one generated once and kept in `data_dir/receipt-signing.key`
    /// (mode 0600) so receipts keep verifying across restarts of a single node.
    pub fn resolve(
        configured: Option<&str>,
        previous: Option<&str>,
        data_dir: &Path,
    ) -> Result<Self, KeyError> {
        if let Some(key) = configured {
            return Ok(Self::new(key, previous));
        }
        let path = data_dir.join(KEY_FILE);
        let file_error = |source| KeyError::File {
            path: path.display().to_string(),
            source,
        };
        let key = match std::fs::read_to_string(&path) {
            Ok(text) => text.trim().to_string(),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(data_dir).map_err(file_error)?;
                let key = hex::encode(rand::random::<[u8; 32]>());
                write_private(&path, &key).map_err(file_error)?;
                tracing::warn!(path = %path.display(), "generated a receipt signing key; set ARAGORA_RECEIPT_SIGNING_KEY to share one across replicas");
                key
            }
            Err(err) => return Err(file_error(err)),
        };
        Ok(Self::new(&key, previous))
    }

    pub fn key_id(&self) -> String {
        key_id(&self.current)
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

    /// Fills in `key_id` and `signature`.
    pub fn sign(&self, mut receipt: Receipt) -> Receipt {
        receipt.key_id = self.key_id();
        receipt.signature = hex::encode(Self::mac(&self.current, &receipt).finalize().into_bytes());
        receipt
    }

    /// Checks a receipt's signature against the current key, then the previous one.
    pub fn verify(&self, receipt: &Receipt) -> Result<SignedWith, VerifyError> {
        let signature = hex::decode(&receipt.signature).map_err(|_| VerifyError::BadSignature)?;
        if Self::mac(&self.current, receipt)
            .verify_slice(&signature)
            .is_ok()
        {
            return Ok(SignedWith::Current);
        }
        match &self.previous {
            Some(previous)
                if Self::mac(previous, receipt)
                    .verify_slice(&signature)
                    .is_ok() =>
            {
                Ok(SignedWith::Previous)
            }
            _ => Err(VerifyError::BadSignature),
        }
    }

    /// Parses and verifies a receipt given as JSON text (a file, a request body).
    pub fn verify_json(&self, text: &str) -> Result<(Receipt, SignedWith), VerifyError> {
        let receipt: Receipt =
            serde_json::from_str(text).map_err(|err| VerifyError::Malformed(err.to_string()))?;
        if receipt.receipt_version != RECEIPT_VERSION {
            return Err(VerifyError::Malformed(format!(
                "receipt_version {} is not {RECEIPT_VERSION}",
                receipt.receipt_version
            )));
        }
        let signed_with = self.verify(&receipt)?;
        Ok((receipt, signed_with))
    }
}

fn write_private(path: &Path, key: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(key.as_bytes())
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

    #[test]
    fn a_signed_receipt_verifies_even_reformatted() {
        let keys = ReceiptKeys::new(NEW, None);
        let signed = keys.sign(sample());
        assert_eq!(keys.verify(&signed), Ok(SignedWith::Current));
        let pretty = serde_json::to_string_pretty(&signed).unwrap();
        assert_eq!(keys.verify_json(&pretty).unwrap().1, SignedWith::Current);
    }

    #[test]
    fn any_change_breaks_the_signature() {
        let keys = ReceiptKeys::new(NEW, None);
        let signed = keys.sign(sample());
        let mut tampered = signed.clone();
        tampered.rounds = 3;
        assert_eq!(keys.verify(&tampered), Err(VerifyError::BadSignature));
        let mut tampered = signed.clone();
        tampered.consensus.winner = Some("b".into());
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
        let before = ReceiptKeys::new(OLD, None).sign(sample());
        let during = ReceiptKeys::new(NEW, Some(OLD));
        assert_eq!(during.verify(&before), Ok(SignedWith::Previous));
        let after = ReceiptKeys::new(NEW, None);
        assert_eq!(after.verify(&before), Err(VerifyError::BadSignature));
        let stranger = ReceiptKeys::new("stranger-stranger-stranger-stranger", Some(NEW));
        assert_eq!(stranger.verify(&before), Err(VerifyError::BadSignature));
    }

    #[test]
    fn a_generated_key_is_kept_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = ReceiptKeys::resolve(None, None, dir.path()).unwrap();
        let second = ReceiptKeys::resolve(None, None, dir.path()).unwrap();
        assert_eq!(first.key_id(), second.key_id());
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
}
