//! PostgreSQL artifacts: `pg_dump -Fc` (compressed custom format) run in a snapshot exported
//! by the connection that counted the rows, so the manifest describes exactly what was dumped;
//! restored with `pg_restore`. Both tools come from Debian's `postgresql-client`.

use crate::error::DrError;
use crate::facts::{self, Facts};
use crate::progress;
use sqlx::{Connection, Row};
use std::path::Path;
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

/// Dumps the database at `url` into `artifact` and returns the facts of the dumped snapshot.
pub async fn dump(url: &str, artifact: &Path, visible: bool) -> Result<Facts, DrError> {
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
    let dumped = run_tool(
        "pg_dump",
        Command::new("pg_dump")
            .arg("--format=custom")
            .arg(format!("--snapshot={snapshot}"))
            .arg("--no-owner")
            .arg("--no-privileges")
            .arg("--file")
            .arg(artifact)
            .arg(format!("--dbname={url}")),
        visible,
    )
    .await;
    let _ = sqlx::query("COMMIT").execute(&mut conn).await;
    let _ = conn.close().await;
    dumped.map(|()| facts)
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
}
