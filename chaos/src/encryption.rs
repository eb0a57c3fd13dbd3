//! Backups encrypted at rest: the key (`ARAGORA_ENCRYPTION_KEY`), the encrypted artifact's
//! format, and the streaming encryptor and decryptor.
//!
//! The cipher is AES-256-GCM (RustCrypto's `aes-gcm`) in the STREAM construction of its `aead`
//! crate (`StreamBE32`: a 7-byte random nonce prefix, a 32-bit chunk counter and a last-chunk
//! flag in each chunk's nonce), so a backup of any size is encrypted and decrypted a chunk at a
//! time. STREAM authenticates every chunk, their order and the end: a changed, reordered or cut
//! short artifact fails to decrypt. Nothing here is hand-written cryptography; this module only
//! frames the chunks.
//!
//! An encrypted artifact is a header followed by the chunks:
//!
//! | bytes | what |
//! |---|---|
//! | 8 | magic `ARAGENC` + 0x1a |
//! | 1 | format version (1) |
//! | 8 | key id: the first 8 bytes (16 hex) of the SHA-256 of the key, so a wrong key is recognised before decrypting |
//! | 4 | plaintext bytes per chunk, big-endian |
//! | 7 | the STREAM nonce prefix, random per backup |
//!
//! Each chunk is its plaintext (the chunk size; the last one shorter or empty) encrypted with
//! the whole header as associated data, plus its 16-byte tag, so the header cannot be changed
//! either. What is encrypted is the backend's own artifact (SQLite: the zstd-compressed
//! snapshot; PostgreSQL: `pg_dump -Fc`): compression comes before encryption.

use aes_gcm::aead::stream::{DecryptorBE32, EncryptorBE32};
use aes_gcm::aead::{KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key};
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, Engine};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::io::{self, Read, Write};
use std::path::Path;

pub const MAGIC: [u8; 8] = *b"ARAGENC\x1a";
pub const FORMAT_VERSION: u8 = 1;
/// Magic, version, key id, chunk size, nonce prefix.
pub const HEADER_LEN: usize = 8 + 1 + 8 + 4 + 7;
/// What the manifest calls this scheme.
pub const ALGORITHM: &str = "aes-256-gcm-stream-be32";
/// Plaintext bytes per chunk: large enough that the 16-byte tags cost nothing, small enough
/// that a chunk in memory does not matter.
pub const CHUNK_LEN: u32 = 64 * 1024;
const TAG_LEN: usize = 16;
/// The largest chunk size a header may declare (a corrupt header must not make a reader
/// allocate gigabytes).
const MAX_CHUNK_LEN: u32 = 16 * 1024 * 1024;
const NONCE_PREFIX_LEN: usize = 7;

/// How to make a key, for every message about one.
pub const MAKE_A_KEY: &str = "make one with `openssl rand -base64 32`";

/// The raw value of `ARAGORA_ENCRYPTION_KEY` as configured (unset when empty). Its `Debug`
/// never shows the value, so a configuration printed for debugging cannot leak it.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeySetting(Option<String>);

impl KeySetting {
    pub fn new(raw: &str) -> Self {
        let raw = raw.trim();
        Self((!raw.is_empty()).then(|| raw.to_string()))
    }

    pub fn is_set(&self) -> bool {
        self.0.is_some()
    }

    /// The key, if one is set; a malformed value is the message of its problem.
    pub fn key(&self) -> Result<Option<BackupKey>, String> {
        self.0.as_deref().map(BackupKey::parse).transpose()
    }

    /// The raw value, for redacting it from output that might quote it.
    pub fn expose(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl fmt::Debug for KeySetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_set() { "***" } else { "unset" })
    }
}

impl aragora_config::FromEnv for KeySetting {
    fn from_env(raw: &str) -> Result<Self, String> {
        Ok(Self::new(raw))
    }
}

/// Identifies a key without revealing it: the first 8 bytes of its SHA-256, shown as 16 hex.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KeyId([u8; 8]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// A 256-bit backup key. `Debug` shows only its id.
#[derive(Clone)]
pub struct BackupKey {
    key: Key<Aes256Gcm>,
    id: KeyId,
}

impl fmt::Debug for BackupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BackupKey(id {})", self.id)
    }
}

fn base64_engine(alphabet: &base64::alphabet::Alphabet) -> GeneralPurpose {
    GeneralPurpose::new(
        alphabet,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    )
}

impl BackupKey {
    /// 64 hex characters, or base64 (standard or URL-safe alphabet, padded or not) of 32
    /// bytes. The error never quotes the value.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).expect("64 hex digits decode")
        } else {
            let url_safe = text.contains(['-', '_']);
            let alphabet = if url_safe {
                base64::alphabet::URL_SAFE
            } else {
                base64::alphabet::STANDARD
            };
            base64_engine(&alphabet).decode(text).map_err(|_| {
                format!(
                    "is neither 64 hex characters nor base64 ({} characters); give a 32-byte key, {MAKE_A_KEY}",
                    text.chars().count()
                )
            })?
        };
        let bytes: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            format!(
                "decodes to {} bytes, a key is 32 bytes (AES-256); {MAKE_A_KEY}",
                bytes.len()
            )
        })?;
        let digest = Sha256::digest(bytes);
        Ok(Self {
            key: bytes.into(),
            id: KeyId(digest[..8].try_into().expect("8 of 32 bytes")),
        })
    }

    pub fn id(&self) -> KeyId {
        self.id
    }
}

/// What an encrypted artifact's header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub version: u8,
    pub key_id: KeyId,
    pub chunk_len: u32,
    pub nonce_prefix: [u8; NONCE_PREFIX_LEN],
}

/// Why an artifact's header cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("its encryption header is cut short ({0} bytes, a header is {HEADER_LEN})")]
    Short(usize),
    #[error("its encryption header has format version {0}, this aragora reads version {FORMAT_VERSION}; restore it with a newer aragora")]
    Version(u8),
    #[error("its encryption header declares chunks of {0} bytes, which no aragora writes")]
    ChunkLen(u32),
}

impl Header {
    fn new(key: &BackupKey) -> Self {
        Self {
            version: FORMAT_VERSION,
            key_id: key.id,
            chunk_len: CHUNK_LEN,
            nonce_prefix: rand::random(),
        }
    }

    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..8].copy_from_slice(&MAGIC);
        out[8] = self.version;
        out[9..17].copy_from_slice(&self.key_id.0);
        out[17..21].copy_from_slice(&self.chunk_len.to_be_bytes());
        out[21..].copy_from_slice(&self.nonce_prefix);
        out
    }

    /// The header at the start of `bytes`: `Ok(None)` when `bytes` does not start with the
    /// magic (an unencrypted artifact).
    pub fn decode(bytes: &[u8]) -> Result<Option<Self>, HeaderError> {
        if bytes.len() < MAGIC.len() || bytes[..MAGIC.len()] != MAGIC {
            return Ok(None);
        }
        if bytes.len() < HEADER_LEN {
            return Err(HeaderError::Short(bytes.len()));
        }
        let version = bytes[8];
        if version != FORMAT_VERSION {
            return Err(HeaderError::Version(version));
        }
        let chunk_len = u32::from_be_bytes(bytes[17..21].try_into().expect("4 bytes"));
        if chunk_len == 0 || chunk_len > MAX_CHUNK_LEN {
            return Err(HeaderError::ChunkLen(chunk_len));
        }
        Ok(Some(Self {
            version,
            key_id: KeyId(bytes[9..17].try_into().expect("8 bytes")),
            chunk_len,
            nonce_prefix: bytes[21..HEADER_LEN].try_into().expect("7 bytes"),
        }))
    }
}

/// Reads up to `buffer.len()` bytes, stopping early only at the end of `reader`.
fn read_full(reader: &mut impl Read, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}

/// The header of the file at `path`, or `None` when it is not encrypted. Blocking.
pub fn inspect(path: &Path) -> io::Result<Result<Option<Header>, HeaderError>> {
    let mut file = std::fs::File::open(path)?;
    let mut start = [0u8; HEADER_LEN];
    let read = read_full(&mut file, &mut start)?;
    Ok(Header::decode(&start[..read]))
}

/// The error a chunk that does not decrypt becomes: the artifact was changed, reordered or
/// cut short after it was written (or the header lies about the key).
#[derive(Debug, thiserror::Error)]
#[error("its encrypted data does not authenticate (AES-256-GCM): the artifact was changed or cut short after it was written")]
pub struct AuthenticationFailed;

impl AuthenticationFailed {
    /// Whether `err` (from a [`Decrypting`] reader, possibly through a decoder) is one.
    pub fn is(err: &io::Error) -> bool {
        err.get_ref().is_some_and(|inner| inner.is::<Self>())
    }
}

/// A writer that encrypts what passes through it into `inner`: the header first, then one
/// encrypted chunk per [`CHUNK_LEN`] bytes. [`Encrypting::finish`] writes the last chunk;
/// without it the artifact does not decrypt (as a cut-short one should not).
pub struct Encrypting<W: Write> {
    inner: W,
    stream: Option<EncryptorBE32<Aes256Gcm>>,
    header: [u8; HEADER_LEN],
    buffer: Vec<u8>,
    chunk_len: usize,
}

fn crypto_failed(_: aes_gcm::aead::Error) -> io::Error {
    // Encryption fails only past STREAM's 2^32 chunks (256 TiB at 64 KiB a chunk).
    io::Error::other("AES-256-GCM encryption failed: the backup is larger than one stream holds")
}

impl<W: Write> Encrypting<W> {
    pub fn new(key: &BackupKey, mut inner: W) -> io::Result<Self> {
        let header = Header::new(key);
        let encoded = header.encode();
        inner.write_all(&encoded)?;
        let stream = EncryptorBE32::from_aead(
            Aes256Gcm::new(&key.key),
            header.nonce_prefix.as_slice().into(),
        );
        let chunk_len = header.chunk_len as usize;
        Ok(Self {
            inner,
            stream: Some(stream),
            header: encoded,
            buffer: Vec::with_capacity(chunk_len + TAG_LEN),
            chunk_len,
        })
    }

    /// Encrypts the final chunk (possibly empty) and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        let stream = self.stream.take().expect("finish runs once");
        let sealed = stream
            .encrypt_last(Payload {
                msg: &self.buffer,
                aad: &self.header,
            })
            .map_err(crypto_failed)?;
        self.inner.write_all(&sealed)?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for Encrypting<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let stream = self.stream.as_mut().expect("not finished");
        // A full buffer is sealed only once more data comes: until then it may be the last
        // chunk, which STREAM seals differently.
        if self.buffer.len() == self.chunk_len && !data.is_empty() {
            stream
                .encrypt_next_in_place(&self.header, &mut self.buffer)
                .map_err(crypto_failed)?;
            self.inner.write_all(&self.buffer)?;
            self.buffer.clear();
        }
        let taken = data.len().min(self.chunk_len - self.buffer.len());
        self.buffer.extend_from_slice(&data[..taken]);
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A writer that encrypts when it has a key and passes the bytes through when not.
pub enum Sealing<W: Write> {
    Plain(W),
    /// Boxed: the cipher's key schedule makes it a kilobyte beside a plain writer.
    Encrypted(Box<Encrypting<W>>),
}

impl<W: Write> Sealing<W> {
    pub fn new(key: Option<&BackupKey>, inner: W) -> io::Result<Self> {
        Ok(match key {
            Some(key) => Self::Encrypted(Box::new(Encrypting::new(key, inner)?)),
            None => Self::Plain(inner),
        })
    }

    pub fn finish(self) -> io::Result<W> {
        match self {
            Self::Plain(inner) => Ok(inner),
            Self::Encrypted(encrypting) => (*encrypting).finish(),
        }
    }
}

impl<W: Write> Write for Sealing<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(inner) => inner.write(data),
            Self::Encrypted(encrypting) => encrypting.write(data),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(inner) => inner.flush(),
            Self::Encrypted(encrypting) => encrypting.flush(),
        }
    }
}

/// Why an encrypted artifact cannot be opened with the key at hand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("it is encrypted (key {backup}) and no ARAGORA_ENCRYPTION_KEY is set")]
    NoKey { backup: KeyId },
    #[error("it was encrypted with key {backup}, ARAGORA_ENCRYPTION_KEY is key {configured}")]
    WrongKey { backup: KeyId, configured: KeyId },
}

/// Checks that `key` is the one `header` names.
pub fn check_key(header: &Header, key: Option<&BackupKey>) -> Result<(), OpenError> {
    match key {
        None => Err(OpenError::NoKey {
            backup: header.key_id,
        }),
        Some(key) if key.id != header.key_id => Err(OpenError::WrongKey {
            backup: header.key_id,
            configured: key.id,
        }),
        Some(_) => Ok(()),
    }
}

/// A reader of the plaintext of an encrypted artifact, authenticating each chunk before any of
/// its bytes are returned. A chunk that fails is an [`AuthenticationFailed`] error; so is an
/// artifact that ends before its last chunk.
pub struct Decrypting<R: Read> {
    inner: R,
    stream: Option<DecryptorBE32<Aes256Gcm>>,
    header: [u8; HEADER_LEN],
    /// The next sealed chunk, read ahead to learn whether it is the last.
    pending: Vec<u8>,
    /// Decrypted bytes not yet returned, from `position`.
    plain: Vec<u8>,
    position: usize,
    sealed_len: usize,
}

impl<R: Read> Decrypting<R> {
    /// Reads the header from `inner` and checks the key against it.
    pub fn open(mut inner: R, key: Option<&BackupKey>) -> io::Result<Self> {
        let mut encoded = [0u8; HEADER_LEN];
        let read = read_full(&mut inner, &mut encoded)?;
        let header = match Header::decode(&encoded[..read]) {
            Ok(Some(header)) => header,
            Ok(None) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "it is not an encrypted artifact",
                ))
            }
            Err(err) => return Err(io::Error::new(io::ErrorKind::InvalidData, err)),
        };
        check_key(&header, key).map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))?;
        let key = key.expect("checked");
        let stream = DecryptorBE32::from_aead(
            Aes256Gcm::new(&key.key),
            header.nonce_prefix.as_slice().into(),
        );
        let sealed_len = header.chunk_len as usize + TAG_LEN;
        let mut reader = Self {
            inner,
            stream: Some(stream),
            header: encoded,
            pending: vec![0u8; sealed_len],
            plain: Vec::with_capacity(sealed_len),
            position: 0,
            sealed_len,
        };
        let first = read_full(&mut reader.inner, &mut reader.pending)?;
        reader.pending.truncate(first);
        Ok(reader)
    }

    /// Decrypts the pending chunk into `plain`, reading the one after it first.
    fn refill(&mut self) -> io::Result<()> {
        let Some(mut stream) = self.stream.take() else {
            self.plain.clear();
            self.position = 0;
            return Ok(());
        };
        let mut following = vec![0u8; self.sealed_len];
        let read = read_full(&mut self.inner, &mut following)?;
        following.truncate(read);
        let mut chunk = std::mem::replace(&mut self.pending, following);
        let failed = |_| io::Error::new(io::ErrorKind::InvalidData, AuthenticationFailed);
        if self.pending.is_empty() {
            // Nothing follows: this is the last chunk (STREAM refuses it if it was not sealed
            // as the last, which is how a cut-short artifact is caught).
            let plain = stream
                .decrypt_last(Payload {
                    msg: &chunk,
                    aad: &self.header,
                })
                .map_err(failed)?;
            chunk = plain;
        } else {
            stream
                .decrypt_next_in_place(&self.header, &mut chunk)
                .map_err(failed)?;
            self.stream = Some(stream);
        }
        self.plain = chunk;
        self.position = 0;
        Ok(())
    }
}

impl<R: Read> Read for Decrypting<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.position == self.plain.len() {
            if self.stream.is_none() {
                return Ok(0);
            }
            self.refill()?;
        }
        let n = out.len().min(self.plain.len() - self.position);
        out[..n].copy_from_slice(&self.plain[self.position..self.position + n]);
        self.position += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn key() -> BackupKey {
        BackupKey::parse(HEX_KEY).unwrap()
    }

    fn seal(key: &BackupKey, plain: &[u8], write_size: usize) -> Vec<u8> {
        let mut writer = Encrypting::new(key, Vec::new()).unwrap();
        for piece in plain.chunks(write_size.max(1)) {
            writer.write_all(piece).unwrap();
        }
        writer.finish().unwrap()
    }

    fn open(key: &BackupKey, sealed: &[u8]) -> io::Result<Vec<u8>> {
        let mut reader = Decrypting::open(sealed, Some(key))?;
        let mut plain = Vec::new();
        reader.read_to_end(&mut plain)?;
        Ok(plain)
    }

    fn sample(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn keys_parse_from_hex_and_every_base64_form_alike() {
        let bytes: Vec<u8> = (0u8..32).collect();
        let id = key().id();
        use base64::engine::general_purpose::{
            STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD,
        };
        for form in [
            HEX_KEY.to_uppercase(),
            STANDARD.encode(&bytes),
            STANDARD_NO_PAD.encode(&bytes),
            URL_SAFE.encode(&bytes),
            URL_SAFE_NO_PAD.encode(&bytes),
            format!("  {}\n", STANDARD.encode(&bytes)),
        ] {
            assert_eq!(BackupKey::parse(&form).unwrap().id(), id, "{form}");
        }
        // A key whose base64 has URL-safe characters (0xfb 0xff ... encodes to `-_`).
        let url_bytes = [0xfbu8; 32];
        assert!(URL_SAFE_NO_PAD.encode(url_bytes).contains(['-', '_']));
        assert!(BackupKey::parse(&URL_SAFE_NO_PAD.encode(url_bytes)).is_ok());
        assert!(BackupKey::parse(&STANDARD.encode(url_bytes)).is_ok());
    }

    #[test]
    fn the_key_id_is_the_start_of_the_keys_sha256() {
        let expected = hex::encode(Sha256::digest((0u8..32).collect::<Vec<_>>()));
        assert_eq!(key().id().to_string(), expected[..16]);
        assert!(!format!("{:?}", key()).contains(HEX_KEY));
    }

    #[test]
    fn malformed_keys_are_refused_without_quoting_them() {
        use base64::engine::general_purpose::STANDARD;
        for (bad, says) in [
            ("secret-passphrase!", "neither 64 hex characters nor base64"),
            (&STANDARD.encode([7u8; 16]) as &str, "decodes to 16 bytes"),
            (&HEX_KEY[..62], "neither 64 hex"),
            (&format!("{HEX_KEY}00"), "neither 64 hex characters"),
        ] {
            let message = BackupKey::parse(bad).unwrap_err();
            assert!(message.contains(says), "{bad}: {message}");
            assert!(message.contains("openssl rand -base64 32"), "{message}");
            assert!(!message.contains(bad), "quotes the value: {message}");
        }
    }

    #[test]
    fn the_setting_never_shows_its_value() {
        let setting = KeySetting::new(HEX_KEY);
        assert_eq!(format!("{setting:?}"), "***");
        assert_eq!(format!("{:?}", KeySetting::new("  ")), "unset");
        assert!(!KeySetting::new("").is_set());
    }

    #[test]
    fn the_header_round_trips_and_is_recognised() {
        let header = Header::new(&key());
        let encoded = header.encode();
        assert_eq!(&encoded[..8], b"ARAGENC\x1a");
        assert_eq!(encoded.len(), 28);
        assert_eq!(Header::decode(&encoded), Ok(Some(header.clone())));
        // Unencrypted artifacts: zstd and pg_dump's custom format.
        assert_eq!(
            Header::decode(&[0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0, 0]),
            Ok(None)
        );
        assert_eq!(Header::decode(b"PGDMP\x01\x0e\x00"), Ok(None));
        assert_eq!(Header::decode(&[]), Ok(None));
        assert_eq!(Header::decode(&encoded[..12]), Err(HeaderError::Short(12)));
        let mut newer = encoded;
        newer[8] = 2;
        assert_eq!(Header::decode(&newer), Err(HeaderError::Version(2)));
        let mut huge = encoded;
        huge[17..21].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            Header::decode(&huge),
            Err(HeaderError::ChunkLen(_))
        ));
    }

    #[test]
    fn what_is_sealed_opens_at_every_size_and_write_pattern() {
        let key = key();
        let chunk = CHUNK_LEN as usize;
        for len in [0, 1, chunk - 1, chunk, chunk + 1, 2 * chunk, 3 * chunk + 17] {
            let plain = sample(len);
            for write_size in [1000, chunk, 7 * chunk] {
                let sealed = seal(&key, &plain, write_size);
                let chunks = len.div_ceil(chunk).max(1);
                assert_eq!(sealed.len(), HEADER_LEN + len + chunks * TAG_LEN, "{len}");
                assert_eq!(open(&key, &sealed).unwrap(), plain, "{len} by {write_size}");
            }
        }
    }

    #[test]
    fn the_ciphertext_does_not_hold_the_plaintext_and_differs_each_time() {
        let plain = b"Backups, debate 0: tabs or spaces?".repeat(100);
        let (one, two) = (seal(&key(), &plain, 4096), seal(&key(), &plain, 4096));
        let needle = b"tabs or spaces";
        assert!(!one.windows(needle.len()).any(|w| w == needle));
        assert_ne!(one, two, "a fresh nonce prefix per artifact");
    }

    #[test]
    fn a_changed_truncated_or_extended_artifact_does_not_authenticate() {
        let key = key();
        let chunk = CHUNK_LEN as usize;
        let sealed = seal(&key, &sample(2 * chunk + 100), 8192);
        let refused = |bytes: &[u8], what: &str| {
            let err = open(&key, bytes).expect_err(what);
            assert!(AuthenticationFailed::is(&err), "{what}: {err}");
        };
        let mut flipped = sealed.clone();
        flipped[HEADER_LEN + chunk + 5] ^= 1;
        refused(&flipped, "a flipped bit");
        // Cut at a chunk boundary: every remaining chunk authenticates, but none is the last.
        refused(
            &sealed[..HEADER_LEN + 2 * (chunk + TAG_LEN)],
            "cut at a chunk boundary",
        );
        refused(&sealed[..sealed.len() - 1], "one byte short");
        refused(&sealed[..HEADER_LEN], "only the header");
        let mut longer = sealed.clone();
        longer.extend_from_slice(&[0u8; 40]);
        refused(&longer, "bytes appended");
        // The header is authenticated too: a changed chunk size or nonce prefix fails.
        let mut header_changed = sealed.clone();
        header_changed[HEADER_LEN - 1] ^= 1;
        refused(&header_changed, "a changed nonce prefix");
    }

    #[test]
    fn the_wrong_key_or_none_is_named_by_id_before_decrypting() {
        let sealed = seal(&key(), b"data", 4);
        let other = BackupKey::parse(&"ab".repeat(32)).unwrap();
        let err = Decrypting::open(sealed.as_slice(), Some(&other))
            .err()
            .unwrap();
        let message = err.to_string();
        assert!(message.contains(&key().id().to_string()), "{message}");
        assert!(message.contains(&other.id().to_string()), "{message}");
        let err = Decrypting::open(sealed.as_slice(), None).err().unwrap();
        assert!(
            err.to_string().contains("no ARAGORA_ENCRYPTION_KEY"),
            "{err}"
        );
        let header = Header::decode(&sealed).unwrap().unwrap();
        assert_eq!(
            check_key(&header, Some(&other)),
            Err(OpenError::WrongKey {
                backup: key().id(),
                configured: other.id()
            })
        );
    }

    #[test]
    fn an_authentication_failure_survives_a_zstd_decoder() {
        let key = key();
        let mut compressed =
            zstd::stream::Encoder::new(Encrypting::new(&key, Vec::new()).unwrap(), 3).unwrap();
        compressed.write_all(&sample(300_000)).unwrap();
        let mut sealed = compressed.finish().unwrap().finish().unwrap();
        let middle = sealed.len() / 2;
        sealed[middle] ^= 0xff;
        let decrypting = Decrypting::open(sealed.as_slice(), Some(&key)).unwrap();
        let mut decoder = zstd::stream::Decoder::new(decrypting).unwrap();
        let err = io::copy(&mut decoder, &mut io::sink()).unwrap_err();
        assert!(AuthenticationFailed::is(&err), "{err}");
    }
}
