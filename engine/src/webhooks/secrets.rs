//! Webhook signing secrets at rest: AES-256-GCM (RustCrypto's `aes-gcm`) under the key of
//! `ARAGORA_WEBHOOK_SECRET_KEY`, so a database dump or backup alone does not reveal them.
//! The engine must read a secret back to sign with it, so it is encrypted, not hashed.
//!
//! The AES key is the SHA-256 of the setting (any string of 32+ characters, like the receipt
//! key). Unset, a random key is generated into the data directory (`webhook-secret.key`, mode
//! 0600) the first time: fine for one engine; replicas sharing a database must share the
//! setting, or a replica cannot sign the deliveries of a subscription another one created
//! (such a delivery fails with a message naming the setting, and is retried by a replica
//! that can).
//!
//! Stored form: `v1:<key id>:<base64 of 12-byte random nonce ‖ ciphertext ‖ tag>`, the key id
//! being the first 8 bytes (16 hex) of the SHA-256 of the AES key, so a wrong key is named
//! before decrypting. The subscription id is the associated data: a ciphertext copied onto
//! another subscription does not decrypt.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use std::path::Path;

/// Where a generated key is kept, in the data directory.
pub const KEY_FILE: &str = "webhook-secret.key";
const FORMAT: &str = "v1";
const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read or write the webhook secret key file {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error("the stored secret was encrypted with key {stored}, but this engine's ARAGORA_WEBHOOK_SECRET_KEY is key {current}; give every replica the same ARAGORA_WEBHOOK_SECRET_KEY")]
    WrongKey { stored: String, current: String },
    #[error("the stored secret is not readable (changed or corrupt); set the subscription's secret again")]
    Corrupt,
}

/// The key webhook secrets are encrypted with. `Debug` shows only its id.
#[derive(Clone)]
pub struct SecretBox {
    cipher: Aes256Gcm,
    key_id: String,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretBox")
            .field("key_id", &self.key_id)
            .finish()
    }
}

impl SecretBox {
    /// The box of a key given as text (the setting, or the generated file's content).
    pub fn from_setting(setting: &str) -> Self {
        let key: [u8; 32] = Sha256::digest(setting.as_bytes()).into();
        let key_id = hex::encode(&Sha256::digest(key)[..8]);
        Self {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key)),
            key_id,
        }
    }

    /// The configured key, else the one generated into `data_dir` (made on first use).
    pub fn resolve(configured: Option<&str>, data_dir: &Path) -> Result<Self, SecretError> {
        if let Some(key) = configured {
            return Ok(Self::from_setting(key));
        }
        let path = data_dir.join(KEY_FILE);
        let file_error = |source| SecretError::File {
            path: path.display().to_string(),
            source,
        };
        let (key, generated) = aragora_config::files::read_or_generate_key(&path, || {
            hex::encode(rand::random::<[u8; 32]>())
        })
        .map_err(file_error)?;
        if generated {
            tracing::warn!(path = %path.display(), "generated a webhook secret key; set ARAGORA_WEBHOOK_ENCRYPTION_KEY to share one across replicas");
        }
        Ok(Self::from_setting(&key))
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// `secret` sealed for subscription `id`.
    pub fn seal(&self, id: &str, secret: &str) -> String {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: secret.as_bytes(),
                    aad: id.as_bytes(),
                },
            )
            .expect("AES-GCM encrypts any message shorter than 64 GiB");
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        format!(
            "{FORMAT}:{}:{}",
            self.key_id,
            base64::engine::general_purpose::STANDARD.encode(bytes)
        )
    }

    /// The secret `seal` stored for subscription `id`.
    pub fn open(&self, id: &str, stored: &str) -> Result<String, SecretError> {
        let mut parts = stored.splitn(3, ':');
        let (Some(FORMAT), Some(key_id), Some(data)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(SecretError::Corrupt);
        };
        if key_id != self.key_id {
            return Err(SecretError::WrongKey {
                stored: key_id.to_string(),
                current: self.key_id.clone(),
            });
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|_| SecretError::Corrupt)?;
        if bytes.len() < NONCE_LEN {
            return Err(SecretError::Corrupt);
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: id.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Corrupt)?;
        String::from_utf8(plain).map_err(|_| SecretError::Corrupt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_only_with_its_key_and_subscription() {
        let sealed_box = SecretBox::from_setting("a-webhook-secret-key-of-32-characters!");
        let stored = sealed_box.seal("wh_1", "receiver secret");
        assert!(!stored.contains("receiver secret"));
        assert_eq!(sealed_box.open("wh_1", &stored).unwrap(), "receiver secret");
        assert!(matches!(
            sealed_box.open("wh_2", &stored),
            Err(SecretError::Corrupt)
        ));
        let other = SecretBox::from_setting("another-webhook-secret-key-of-32-chars");
        assert!(matches!(
            other.open("wh_1", &stored),
            Err(SecretError::WrongKey { .. })
        ));
        let mut tampered = stored.clone();
        tampered.pop();
        tampered.push(if stored.ends_with('A') { 'B' } else { 'A' });
        assert!(sealed_box.open("wh_1", &tampered).is_err());
    }

    #[test]
    fn an_unset_key_is_generated_once_into_the_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        let first = SecretBox::resolve(None, dir.path()).unwrap();
        let again = SecretBox::resolve(None, dir.path()).unwrap();
        assert_eq!(first.key_id(), again.key_id());
        let stored = first.seal("wh", "s");
        assert_eq!(again.open("wh", &stored).unwrap(), "s");
    }
}
