//! Retention: after each backup, delete backups beyond the newest `keep_count` and those older
//! than the maximum age. The newest backup is always kept, whatever its age, and backups whose
//! manifest cannot be read are left for a person to look at rather than deleted blind.

use crate::error::DrError;
use crate::manifest::{self, Manifest};
use crate::time::Timestamp;
use std::path::Path;
use std::time::Duration;

/// Which of `manifests` (newest first) to delete at `now_ms`.
pub fn select(
    manifests: &[Manifest],
    keep_count: usize,
    max_age: Duration,
    now_ms: i64,
) -> Vec<&Manifest> {
    let max_age_ms = i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX);
    manifests
        .iter()
        .enumerate()
        .skip(1)
        .filter(|(index, m)| {
            *index >= keep_count.max(1) || now_ms.saturating_sub(m.created_at_ms) > max_age_ms
        })
        .map(|(_, m)| m)
        .collect()
}

/// Deletes what [`select`] picks in `dir`; the ids deleted.
pub fn prune(dir: &Path, keep_count: usize, max_age: Duration) -> Result<Vec<String>, DrError> {
    let manifests: Vec<Manifest> = manifest::list(dir)?
        .into_iter()
        .filter_map(|entry| entry.manifest.ok())
        .collect();
    let now_ms = Timestamp::now().ms();
    let mut deleted = Vec::new();
    for doomed in select(&manifests, keep_count, max_age, now_ms) {
        // Manifest first: a backup without one is never listed, even if the artifact stays.
        let path = Manifest::path(dir, &doomed.id);
        std::fs::remove_file(&path).map_err(DrError::io(&path))?;
        let artifact = doomed.artifact_path(dir);
        match std::fs::remove_file(&artifact) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(DrError::io(&artifact)(err)),
        }
        deleted.push(doomed.id.clone());
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn backup(id: &str, created_at_ms: i64) -> Manifest {
        Manifest {
            format: 1,
            id: id.into(),
            created_at: String::new(),
            created_at_ms,
            backend: "sqlite".into(),
            schema_version: 3,
            row_counts: BTreeMap::new(),
            newest_data_at_ms: None,
            artifact: format!("{id}.sqlite.zst"),
            artifact_bytes: 0,
            sha256: String::new(),
            compression: "zstd".into(),
            aragora_version: "0".into(),
            duration_seconds: 0.0,
            encryption: None,
        }
    }

    const HOUR: i64 = 3_600_000;

    #[test]
    fn keeps_the_newest_by_count_and_age() {
        let now = 100 * HOUR;
        let backups = [
            backup("d", now),
            backup("c", now - HOUR),
            backup("b", now - 2 * HOUR),
            backup("a", now - 30 * HOUR),
        ];
        let ids = |picked: Vec<&Manifest>| picked.iter().map(|m| m.id.clone()).collect::<Vec<_>>();
        assert_eq!(
            ids(select(&backups, 2, Duration::from_secs(48 * 3600), now)),
            ["b", "a"]
        );
        assert_eq!(
            ids(select(&backups, 10, Duration::from_secs(24 * 3600), now)),
            ["a"]
        );
    }

    #[test]
    fn the_newest_backup_survives_however_old() {
        let now = 100 * HOUR;
        let backups = [backup("b", now - 50 * HOUR), backup("a", now - 60 * HOUR)];
        let picked = select(&backups, 1, Duration::from_secs(3600), now);
        assert_eq!(picked.len(), 1);
        assert_eq!(picked[0].id, "a");
    }
}
