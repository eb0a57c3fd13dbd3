//! SQLite artifacts: an online snapshot with `VACUUM INTO` (a consistent read transaction;
//! in WAL mode the engine keeps writing meanwhile), compressed with zstd and, with a key,
//! encrypted; restored by decrypting and decompressing next to the target, checking it, and
//! renaming it into place.

use crate::encryption::BackupKey;
use crate::error::DrError;
use crate::facts::{self, Facts};
use crate::manifest::{read_artifact, ArtifactWriter};
use crate::progress;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The live database file of an engine configuration.
pub fn live_path(data_dir: &Path) -> PathBuf {
    data_dir.join("aragora.db")
}

fn url(path: &Path, mode: &str) -> String {
    format!("sqlite://{}?mode={mode}", path.display())
}

/// Takes a consistent snapshot of `live` into `snapshot` and reads its facts.
pub async fn snapshot(live: &Path, snapshot: &Path) -> Result<Facts, DrError> {
    if !live.exists() {
        return Err(DrError::NoSqliteDatabase {
            path: live.to_path_buf(),
        });
    }
    let mut conn = facts::connect(&url(live, "ro")).await?;
    // Wait for a writer's checkpoint instead of failing with "database is locked".
    sqlx::query("PRAGMA busy_timeout=10000")
        .execute(&mut conn)
        .await
        .map_err(DrError::db("preparing the snapshot"))?;
    let target = snapshot.display().to_string().replace('\'', "''");
    sqlx::query(&format!("VACUUM INTO '{target}'"))
        .execute(&mut conn)
        .await
        .map_err(DrError::db("taking the snapshot (VACUUM INTO)"))?;
    close(conn).await;
    let mut copy = facts::connect(&url(snapshot, "ro")).await?;
    let facts = facts::read(&mut copy).await;
    close(copy).await;
    facts
}

async fn close(conn: sqlx::AnyConnection) {
    use sqlx::Connection;
    let _ = conn.close().await;
}

/// Compresses `source` into `artifact`, encrypting it when `key` is given; returns the
/// artifact's size and SHA-256. Blocking.
pub fn compress(
    source: &Path,
    artifact: &Path,
    key: Option<&BackupKey>,
    visible: bool,
) -> Result<(u64, String), DrError> {
    let mut input = std::fs::File::open(source).map_err(DrError::io(source))?;
    let total = input.metadata().map_err(DrError::io(source))?.len();
    let io = DrError::io(artifact);
    let result = (|| -> std::io::Result<(u64, String)> {
        let writer = ArtifactWriter::create(artifact, key)?;
        let mut encoder = zstd::stream::Encoder::new(writer, 3)?;
        let bar = progress::bytes(total, "compressing", visible);
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let read = input.read(&mut buffer)?;
            if read == 0 {
                break;
            }
            encoder.write_all(&buffer[..read])?;
            bar.inc(read as u64);
        }
        bar.finish_and_clear();
        encoder.finish()?.finish()
    })();
    result.map_err(io)
}

/// Decompresses `artifact` into `target`, decrypting it first when `key` is given. Blocking.
/// A failure leaves a partial `target` for the caller to remove (it is never the live file).
pub fn decompress(
    artifact: &Path,
    target: &Path,
    key: Option<&BackupKey>,
    visible: bool,
) -> Result<(), std::io::Error> {
    let total = std::fs::metadata(artifact)?.len();
    let bar = progress::bytes(total, "decompressing", visible);
    let mut decoder = zstd::stream::Decoder::new(read_artifact(artifact, key, &bar)?)?;
    let mut output = std::fs::File::create(target)?;
    std::io::copy(&mut decoder, &mut output)?;
    output.sync_all()?;
    bar.finish_and_clear();
    Ok(())
}

/// `PRAGMA integrity_check` of a restored file, then its facts.
pub async fn check(path: &Path) -> Result<Result<Facts, String>, DrError> {
    let mut conn = facts::connect(&url(path, "ro")).await?;
    let verdict: Result<String, sqlx::Error> = sqlx::query("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .and_then(|row| sqlx::Row::try_get(&row, 0));
    let result = match verdict {
        Ok(verdict) if verdict == "ok" => Ok(facts::read(&mut conn).await?),
        Ok(verdict) => Err(format!(
            "the restored file fails SQLite's integrity check: {verdict}"
        )),
        Err(err) => Err(format!("the restored file is not a SQLite database: {err}")),
    };
    close(conn).await;
    Ok(result)
}

/// Moves a checked restored file over `target`, removing the target's WAL and shared-memory
/// files first (a stale WAL would be replayed onto the restored database).
pub fn install(restored: &Path, target: &Path) -> Result<(), DrError> {
    for suffix in ["-wal", "-shm"] {
        let side = PathBuf::from(format!("{}{suffix}", target.display()));
        match std::fs::remove_file(&side) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(DrError::io(&side)(err)),
        }
    }
    std::fs::rename(restored, target).map_err(DrError::io(target))
}

/// Debates in the SQLite file at `path`, or `None` when there is no such database yet.
pub async fn debate_count(path: &Path) -> Option<i64> {
    if !path.exists() {
        return None;
    }
    let mut conn = facts::connect(&url(path, "ro")).await.ok()?;
    let count = facts::debate_count(&mut conn).await;
    close(conn).await;
    count
}
