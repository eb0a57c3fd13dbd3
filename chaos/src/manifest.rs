//! The manifest written beside every backup artifact, backup ids, listing a backup directory
//! and checking an artifact against its manifest.
//!
//! A backup is `<id>.manifest.json` plus the artifact it names. The manifest is written last
//! (artifact first, both through a temporary name and a rename), so a backup cut short by a
//! crash has no manifest and is never listed, restored or counted by retention.
//!
//! An encrypted backup's manifest has format 2 and names the key in `encryption`; unencrypted
//! ones keep format 1, so an aragora that predates encryption still reads them and refuses an
//! encrypted one by its format instead of failing to decompress it.

use crate::encryption::{BackupKey, Decrypting, Sealing};
use crate::error::DrError;
use crate::progress;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// Format of [`Manifest`]; bumped if fields change.
pub const MANIFEST_FORMAT: u32 = 1;
/// Format of an encrypted backup's manifest: format 1 plus `encryption`.
pub const ENCRYPTED_MANIFEST_FORMAT: u32 = 2;
const MANIFEST_SUFFIX: &str = ".manifest.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub id: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub created_at_ms: i64,
    /// `sqlite` or `postgres`.
    pub backend: String,
    /// The newest applied migration of the backed-up database.
    pub schema_version: i64,
    /// Rows per table in the backed-up snapshot.
    pub row_counts: BTreeMap<String, i64>,
    /// The newest debate change in the snapshot (Unix ms), the RPO's reference point.
    pub newest_data_at_ms: Option<i64>,
    /// File name of the artifact, in the manifest's directory.
    pub artifact: String,
    pub artifact_bytes: u64,
    /// SHA-256 of the artifact file as stored, hex: of the ciphertext when encrypted, so it
    /// is checked without the key (it catches damage; the encryption's own authentication
    /// catches deliberate change).
    pub sha256: String,
    /// `zstd` (SQLite) or `pg_dump-custom` (PostgreSQL's own compressed archive format): the
    /// format inside the encryption, when encrypted.
    pub compression: String,
    pub aragora_version: String,
    pub duration_seconds: f64,
    /// Set when the artifact is encrypted: with what, and which key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,
}

/// How an encrypted artifact is encrypted: see [`crate::encryption`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Encryption {
    /// `aes-256-gcm-stream-be32`.
    pub algorithm: String,
    /// The key's id (first 16 hex of its SHA-256), never the key.
    pub key_id: String,
}

/// A backup found in a directory: its id, and its manifest or why it cannot be read.
#[derive(Debug, Clone)]
pub struct BackupEntry {
    pub id: String,
    pub manifest: Result<Manifest, String>,
}

/// A new backup id: sortable by time (`aragora-20261126T140512123Z-1a2b`), unique enough for
/// two backups in the same millisecond.
pub fn new_id(now_ms: i64) -> String {
    let time = chrono::DateTime::from_timestamp_millis(now_ms).unwrap_or_default();
    let suffix: u16 = rand_suffix();
    format!("aragora-{}-{suffix:04x}", time.format("%Y%m%dT%H%M%S%3fZ"))
}

fn rand_suffix() -> u16 {
    let bytes = uuid::Uuid::new_v4();
    u16::from_be_bytes([bytes.as_bytes()[0], bytes.as_bytes()[1]])
}

impl Manifest {
    pub fn path(dir: &Path, id: &str) -> PathBuf {
        dir.join(format!("{id}{MANIFEST_SUFFIX}"))
    }

    pub fn artifact_path(&self, dir: &Path) -> PathBuf {
        dir.join(&self.artifact)
    }

    /// The manifest's file text, which [`parse`] reads back as the same manifest.
    pub fn to_text(&self) -> String {
        serde_json::to_string_pretty(self).expect("a manifest serialises")
    }

    /// Writes the manifest atomically (temporary file, then rename).
    pub fn write(&self, dir: &Path) -> Result<(), DrError> {
        let path = Self::path(dir, &self.id);
        let partial = path.with_extension("partial");
        std::fs::write(&partial, self.to_text()).map_err(DrError::io(&partial))?;
        std::fs::rename(&partial, &path).map_err(DrError::io(&path))
    }

    pub fn read(dir: &Path, id: &str) -> Result<Self, DrError> {
        let path = Self::path(dir, id);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(DrError::NotFound {
                    id: id.to_string(),
                    dir: dir.to_path_buf(),
                })
            }
            Err(err) => return Err(DrError::io(&path)(err)),
        };
        parse(&text).map_err(|detail| DrError::Corrupted {
            id: id.to_string(),
            detail,
        })
    }

    /// Recomputes the artifact's SHA-256 and compares it, and its size, with the manifest.
    pub fn check_artifact(&self, dir: &Path, show_progress: bool) -> Result<(), DrError> {
        let path = self.artifact_path(dir);
        let corrupted = |detail: String| DrError::Corrupted {
            id: self.id.clone(),
            detail,
        };
        let bytes = std::fs::metadata(&path)
            .map_err(|err| {
                corrupted(format!(
                    "its artifact {} cannot be read: {err}",
                    path.display()
                ))
            })?
            .len();
        if bytes != self.artifact_bytes {
            return Err(corrupted(format!(
                "the artifact is {bytes} bytes, the manifest says {}",
                self.artifact_bytes
            )));
        }
        let (_, actual) = sha256_file(&path, show_progress)?;
        if actual != self.sha256 {
            return Err(corrupted(format!(
                "the artifact's sha256 is {actual}, the manifest says {}",
                self.sha256
            )));
        }
        Ok(())
    }
}

/// A writer that hashes what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes an artifact file: through the encryptor when there is a key, hashing exactly the
/// bytes that reach the file (what the manifest's size and sha256 describe).
pub struct ArtifactWriter {
    sealing: Sealing<Hashing<BufWriter<std::fs::File>>>,
}

impl ArtifactWriter {
    pub fn create(path: &Path, key: Option<&BackupKey>) -> io::Result<Self> {
        let file = std::fs::File::create(path)?;
        let hashing = Hashing {
            inner: BufWriter::new(file),
            hasher: Sha256::new(),
            written: 0,
        };
        Ok(Self {
            sealing: Sealing::new(key, hashing)?,
        })
    }

    /// Seals the last chunk, flushes and syncs the file; its size and SHA-256 (hex).
    pub fn finish(self) -> io::Result<(u64, String)> {
        let mut hashing = self.sealing.finish()?;
        hashing.flush()?;
        hashing.inner.get_ref().sync_all()?;
        Ok((hashing.written, hex::encode(hashing.hasher.finalize())))
    }
}

impl Write for ArtifactWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sealing.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.sealing.flush()
    }
}

/// Reads an artifact's content: decrypting it with `key` when given (the artifact is then
/// encrypted), as stored when not. `progress` sees the bytes read from the file.
pub fn read_artifact(
    path: &Path,
    key: Option<&BackupKey>,
    progress: &indicatif::ProgressBar,
) -> io::Result<Box<dyn Read + Send>> {
    let file = BufReader::with_capacity(1 << 20, std::fs::File::open(path)?);
    let file = progress.wrap_read(file);
    Ok(match key {
        Some(key) => Box::new(Decrypting::open(file, Some(key))?),
        None => Box::new(file),
    })
}

/// Size and SHA-256 (hex) of a file, with a progress bar. Blocking.
pub fn sha256_file(path: &Path, show_progress: bool) -> Result<(u64, String), DrError> {
    let mut file = std::fs::File::open(path).map_err(DrError::io(path))?;
    let bytes = file.metadata().map_err(DrError::io(path))?.len();
    let bar = progress::bytes(bytes, "checking sha256", show_progress);
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buffer).map_err(DrError::io(path))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        bar.inc(read as u64);
    }
    bar.finish_and_clear();
    Ok((bytes, hex::encode(hasher.finalize())))
}

/// A manifest's text read and checked: the manifest, or what is wrong with it.
pub fn parse(text: &str) -> Result<Manifest, String> {
    let manifest: Manifest =
        serde_json::from_str(text).map_err(|err| format!("its manifest is not readable: {err}"))?;
    match (manifest.format, &manifest.encryption) {
        (MANIFEST_FORMAT, None) | (ENCRYPTED_MANIFEST_FORMAT, Some(_)) => {}
        (MANIFEST_FORMAT, Some(_)) | (ENCRYPTED_MANIFEST_FORMAT, None) => {
            return Err(format!(
                "its manifest has format {} but {} `encryption`; it was edited by hand or damaged",
                manifest.format,
                if manifest.encryption.is_some() { "names" } else { "lacks" }
            ))
        }
        (other, _) => {
            return Err(format!(
                "its manifest has format {other}, this aragora reads formats {MANIFEST_FORMAT} (unencrypted) and {ENCRYPTED_MANIFEST_FORMAT} (encrypted)"
            ))
        }
    }
    Ok(manifest)
}

/// Every backup in `dir`, newest first. A missing directory holds no backups.
pub fn list(dir: &Path) -> Result<Vec<BackupEntry>, DrError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(DrError::io(dir)(err)),
    };
    let mut backups = Vec::new();
    for entry in entries {
        let entry = entry.map_err(DrError::io(dir))?;
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(id) = name.strip_suffix(MANIFEST_SUFFIX) else {
            continue;
        };
        let manifest = std::fs::read_to_string(entry.path())
            .map_err(|err| format!("cannot read its manifest: {err}"))
            .and_then(|text| parse(&text));
        backups.push(BackupEntry {
            id: id.to_string(),
            manifest,
        });
    }
    // Ids start with the UTC time, so the newest sorts last.
    backups.sort_by(|a, b| b.id.cmp(&a.id));
    Ok(backups)
}

/// The newest backup in `dir`, with a readable manifest; an unreadable newest one is an error
/// (silently using an older one would hide a broken backup from a drill).
pub fn latest(dir: &Path) -> Result<Manifest, DrError> {
    let newest = list(dir)?
        .into_iter()
        .next()
        .ok_or_else(|| DrError::NoBackup {
            dir: dir.to_path_buf(),
        })?;
    newest.manifest.map_err(|detail| DrError::Corrupted {
        id: newest.id,
        detail,
    })
}

/// `latest` for "latest" (or no id), else the named backup.
pub fn find(dir: &Path, id: Option<&str>) -> Result<Manifest, DrError> {
    match id {
        None | Some("latest") => latest(dir),
        Some(id) => Manifest::read(dir, id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A manifest as aragora wrote them before encryption existed.
    const FORMAT_1: &str = r#"{"format": 1, "id": "aragora-20261126T140512123Z-1a2b",
        "created_at": "2026-11-26T14:05:12.123Z", "created_at_ms": 1795701912123,
        "backend": "sqlite", "schema_version": 3, "row_counts": {"debates": 2},
        "newest_data_at_ms": null, "artifact": "aragora-20261126T140512123Z-1a2b.sqlite.zst",
        "artifact_bytes": 10, "sha256": "00", "compression": "zstd",
        "aragora_version": "0.1.0", "duration_seconds": 0.1}"#;

    #[test]
    fn a_manifest_from_before_encryption_still_reads_and_writes_back_the_same() {
        let manifest = parse(FORMAT_1).unwrap();
        assert_eq!(manifest.encryption, None);
        let written = serde_json::to_value(&manifest).unwrap();
        assert!(written.get("encryption").is_none(), "{written}");
        assert_eq!(
            written,
            serde_json::from_str::<serde_json::Value>(FORMAT_1).unwrap()
        );
    }

    #[test]
    fn an_encrypted_manifest_is_format_2_and_names_its_key() {
        let mut manifest = parse(FORMAT_1).unwrap();
        manifest.format = ENCRYPTED_MANIFEST_FORMAT;
        manifest.encryption = Some(Encryption {
            algorithm: crate::encryption::ALGORITHM.into(),
            key_id: "0123456789abcdef".into(),
        });
        let text = serde_json::to_string(&manifest).unwrap();
        assert_eq!(parse(&text).unwrap(), manifest);
        // Each half without the other is refused, as is a format from the future.
        let mut lacking: serde_json::Value = serde_json::from_str(&text).unwrap();
        lacking.as_object_mut().unwrap().remove("encryption");
        assert!(parse(&lacking.to_string()).unwrap_err().contains("lacks"));
        let mut naming: serde_json::Value = serde_json::from_str(&text).unwrap();
        naming["format"] = 1.into();
        assert!(parse(&naming.to_string()).unwrap_err().contains("names"));
        naming["format"] = 3.into();
        assert!(parse(&naming.to_string()).unwrap_err().contains("format 3"));
    }

    #[test]
    fn ids_sort_by_time() {
        let earlier = new_id(1_700_000_000_000);
        let later = new_id(1_700_000_000_001);
        assert!(earlier < later, "{earlier} {later}");
        assert!(
            earlier.starts_with("aragora-20231114T221320000Z-"),
            "{earlier}"
        );
    }
}
