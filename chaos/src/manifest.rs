//! The manifest written beside every backup artifact, backup ids, listing a backup directory
//! and checking an artifact against its manifest.
//!
//! A backup is `<id>.manifest.json` plus the artifact it names. The manifest is written last
//! (artifact first, both through a temporary name and a rename), so a backup cut short by a
//! crash has no manifest and is never listed, restored or counted by retention.

use crate::error::DrError;
use crate::progress;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Format of [`Manifest`]; bumped if fields change.
pub const MANIFEST_FORMAT: u32 = 1;
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
    /// SHA-256 of the artifact file, hex.
    pub sha256: String,
    /// `zstd` (SQLite) or `pg_dump-custom` (PostgreSQL's own compressed archive format).
    pub compression: String,
    pub aragora_version: String,
    pub duration_seconds: f64,
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

    /// Writes the manifest atomically (temporary file, then rename).
    pub fn write(&self, dir: &Path) -> Result<(), DrError> {
        let path = Self::path(dir, &self.id);
        let partial = path.with_extension("partial");
        let text = serde_json::to_string_pretty(self).expect("a manifest serialises");
        std::fs::write(&partial, text).map_err(DrError::io(&partial))?;
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

fn parse(text: &str) -> Result<Manifest, String> {
    let manifest: Manifest =
        serde_json::from_str(text).map_err(|err| format!("its manifest is not readable: {err}"))?;
    if manifest.format != MANIFEST_FORMAT {
        return Err(format!(
            "its manifest has format {}, this aragora reads format {MANIFEST_FORMAT}",
            manifest.format
        ));
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
