//! PostgreSQL artifacts: `pg_dump -Fc` (compressed custom format) run in a snapshot exported
//! by the connection that counted the rows, so the manifest describes exactly what was dumped,
//! its output piped through the encryptor when there is a key; restored with `pg_restore`
//! (from a decrypted temporary copy when encrypted). Both tools come from Debian's
//! `postgresql-client`.

use crate::encryption::BackupKey;
use crate::error::DrError;
use crate::facts::{self, Facts};
use crate::manifest::ArtifactWriter;
use crate::progress;
use sqlx::{Connection, Row};
use std::io::Read;
use std::path::Path;
use std::process::Stdio;
use tokio::process::Command;

const MISSING_TOOL: &str =
    "is it installed? (Debian/Ubuntu: apt-get install postgresql-client; it must be as new as the server)";

async fn run_tool(tool: &'static str, command: &mut Command, visible: bool) -> Result<(), DrError> {
    let bar = progress::spinner(&format!("running {tool}"), visible);
    let output = command.kill_on_drop(true).output().await;
    bar.finish_and_clear();
    let output = output.map_err(|err| DrError::Tool {
        tool,
        detail: format!("cannot run it ({err}); {MISSING_TOOL}"),
    })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(DrError::Tool {
            tool,
            detail: format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        })
    }
}

/// Dumps the database at `url` into `artifact` (encrypted when `key` is given); the facts of
/// the dumped snapshot, and the artifact's size and SHA-256.
pub async fn dump(
    url: &str,
    artifact: &Path,
    key: Option<&BackupKey>,
    visible: bool,
) -> Result<(Facts, u64, String), DrError> {
    let mut conn = facts::connect(url).await?;
    sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut conn)
        .await
        .map_err(DrError::db("starting the snapshot"))?;
    let snapshot: String = sqlx::query("SELECT pg_export_snapshot() AS s")
        .fetch_one(&mut conn)
        .await
        .and_then(|row| row.try_get("s"))
        .map_err(DrError::db("exporting the snapshot"))?;
    let facts = facts::read(&mut conn).await?;
    // The exporting transaction stays open until pg_dump is done with the snapshot.
    let bar = progress::spinner("running pg_dump", visible);
    let (url_owned, artifact_owned, key) = (url.to_string(), artifact.to_path_buf(), key.cloned());
    let dumped = tokio::task::spawn_blocking(move || {
        dump_snapshot(&url_owned, &snapshot, &artifact_owned, key.as_ref())
    })
    .await
    .unwrap_or_else(|err| {
        Err(DrError::Task(format!(
            "the pg_dump task failed: {err}; this is a bug, please report it"
        )))
    });
    bar.finish_and_clear();
    let _ = sqlx::query("COMMIT").execute(&mut conn).await;
    let _ = conn.close().await;
    dumped.map(|(bytes, sha256)| (facts, bytes, sha256))
}

/// Runs `pg_dump -Fc` in `snapshot` with its output piped into the artifact writer, so an
/// encrypted backup's plaintext never reaches the disk. Blocking.
fn dump_snapshot(
    url: &str,
    snapshot: &str,
    artifact: &Path,
    key: Option<&BackupKey>,
) -> Result<(u64, String), DrError> {
    let mut child = std::process::Command::new("pg_dump")
        .arg("--format=custom")
        .arg(format!("--snapshot={snapshot}"))
        .arg("--no-owner")
        .arg("--no-privileges")
        .arg(format!("--dbname={url}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| DrError::Tool {
            tool: "pg_dump",
            detail: format!("cannot run it ({err}); {MISSING_TOOL}"),
        })?;
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    // Read stderr meanwhile: a pg_dump blocked on a full stderr pipe would never finish stdout.
    let complaints = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let written = ArtifactWriter::create(artifact, key).and_then(|mut writer| {
        std::io::copy(&mut stdout, &mut writer)?;
        writer.finish()
    });
    if written.is_err() {
        let _ = child.kill();
    }
    let status = child.wait();
    let complaints = complaints.join().unwrap_or_default();
    match status {
        Ok(status) if status.success() => written.map_err(DrError::io(artifact)),
        Ok(status) => Err(DrError::Tool {
            tool: "pg_dump",
            detail: format!("{status}: {}", complaints.trim()),
        }),
        Err(err) => Err(DrError::Tool {
            tool: "pg_dump",
            detail: format!("cannot wait for it: {err}"),
        }),
    }
}

/// Restores `artifact` into the database at `url`. `replace` drops what the dump recreates.
pub async fn restore(
    url: &str,
    artifact: &Path,
    replace: bool,
    visible: bool,
) -> Result<(), DrError> {
    let mut command = Command::new("pg_restore");
    command
        .arg("--no-owner")
        .arg("--no-privileges")
        .arg("--exit-on-error")
        .arg("--jobs=2")
        .arg(format!("--dbname={url}"));
    if replace {
        command.arg("--clean").arg("--if-exists");
    }
    command.arg(artifact);
    run_tool("pg_restore", &mut command, visible).await
}

/// Drops the tables that restoring `artifact` created in the database at `url`: a restore
/// that failed, or whose rows do not match the manifest, must not leave its copy behind
/// looking like a restored database. Tables come from the artifact's own table of contents
/// (`pg_restore --list`), so nothing the backup does not hold is touched.
pub async fn remove_restored(url: &str, artifact: &Path) -> Result<(), DrError> {
    let listing = Command::new("pg_restore")
        .arg("--list")
        .arg(artifact)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|err| DrError::Tool {
            tool: "pg_restore",
            detail: format!("cannot run it ({err}); {MISSING_TOOL}"),
        })?;
    if !listing.status.success() {
        return Err(DrError::Tool {
            tool: "pg_restore",
            detail: format!(
                "cannot list the backup's tables to remove them ({}): {}",
                listing.status,
                String::from_utf8_lossy(&listing.stderr).trim()
            ),
        });
    }
    let tables = restored_tables(&String::from_utf8_lossy(&listing.stdout));
    if tables.is_empty() {
        return Ok(());
    }
    let mut conn = facts::connect(url).await?;
    let drop = format!("DROP TABLE IF EXISTS {} CASCADE", tables.join(", "));
    let dropped = sqlx::query(&drop)
        .execute(&mut conn)
        .await
        .map_err(DrError::db("removing the tables of a rejected restore"));
    let _ = sqlx::Connection::close(conn).await;
    dropped.map(|_| ())
}

/// The quoted `schema.table` names of the TABLE entries of a `pg_restore --list` listing
/// (lines such as `215; 1259 16390 TABLE public debates postgres`).
fn restored_tables(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter(|line| !line.starts_with(';'))
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                [_, _, _, "TABLE", schema, table, ..] => Some(format!(
                    "\"{}\".\"{}\"",
                    schema.replace('"', "\"\""),
                    table.replace('"', "\"\"")
                )),
                _ => None,
            }
        })
        .collect()
}

/// A database on the primary's server, created for a drill and dropped with [`drop_scratch`].
pub struct Scratch {
    pub name: String,
    pub url: String,
}

/// `url` with its database name replaced.
fn with_database(url: &str, name: &str) -> Result<String, DrError> {
    let mut parsed = reqwest::Url::parse(url).map_err(|err| DrError::Tool {
        tool: "the drill",
        detail: format!("DATABASE_URL is not a URL ({err})"),
    })?;
    parsed.set_path(&format!("/{name}"));
    Ok(parsed.to_string())
}

pub async fn create_scratch(primary_url: &str) -> Result<Scratch, DrError> {
    let name = format!("aragora_drill_{}", uuid::Uuid::new_v4().simple());
    let mut conn = facts::connect(primary_url).await?;
    let created = sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .map_err(DrError::db(
            "creating the scratch database (the user needs CREATEDB)",
        ));
    let _ = conn.close().await;
    created?;
    Ok(Scratch {
        url: with_database(primary_url, &name)?,
        name,
    })
}

pub async fn drop_scratch(primary_url: &str, scratch: &Scratch) -> Result<(), DrError> {
    let mut conn = facts::connect(primary_url).await?;
    let dropped = sqlx::query(&format!(
        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
        scratch.name
    ))
    .execute(&mut conn)
    .await
    .map_err(DrError::db("dropping the scratch database"));
    let _ = conn.close().await;
    dropped.map(|_| ())
}

/// Debates in the database at `url`, or `None` when it has no debates table yet.
pub async fn debate_count(url: &str) -> Result<Option<i64>, DrError> {
    let mut conn = facts::connect(url).await?;
    let count = facts::debate_count(&mut conn).await;
    let _ = conn.close().await;
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scratch_url_keeps_the_server_and_credentials() {
        let url = with_database(
            "postgres://u:p@db.example:5433/aragora?sslmode=require",
            "scratch",
        )
        .unwrap();
        assert_eq!(
            url,
            "postgres://u:p@db.example:5433/scratch?sslmode=require"
        );
    }

    #[test]
    fn a_listing_names_only_its_tables() {
        let listing =
            "; Archive created at 2026-12-01\n;\n215; 1259 16390 TABLE public debates postgres\n\
                       216; 1259 16391 TABLE public debate_events postgres\n\
                       3350; 2606 16400 CONSTRAINT public debates debates_pkey postgres\n\
                       3351; 1259 16401 INDEX public debates_status_idx postgres\n";
        assert_eq!(
            restored_tables(listing),
            ["\"public\".\"debates\"", "\"public\".\"debate_events\""]
        );
    }
}
