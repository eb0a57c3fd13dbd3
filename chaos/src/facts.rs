//! What a database holds, read the same way from the live database, a snapshot and a restored
//! copy, so a manifest and a restore can be compared: schema version, rows per table, and
//! the newest debate change.

use crate::error::DrError;
use sqlx::{AnyConnection, Connection, Row};
use std::collections::BTreeMap;

/// The tables whose rows a manifest counts: the debates, their events and their receipts.
/// (The DR log itself changes with every backup and is not compared.)
pub const COUNTED_TABLES: &[&str] = &["debates", "debate_events", "receipts"];

#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    pub schema_version: i64,
    pub row_counts: BTreeMap<String, i64>,
    pub newest_data_at_ms: Option<i64>,
}

/// Opens one connection through sqlx's `Any` driver.
pub async fn connect(url: &str) -> Result<AnyConnection, DrError> {
    sqlx::any::install_default_drivers();
    AnyConnection::connect(url)
        .await
        .map_err(DrError::db("connecting"))
}

pub async fn read(conn: &mut AnyConnection) -> Result<Facts, DrError> {
    let schema_version: Option<i64> = sqlx::query("SELECT MAX(version) AS v FROM _sqlx_migrations")
        .fetch_one(&mut *conn)
        .await
        .map_err(DrError::db("reading the schema version"))?
        .try_get("v")
        .map_err(DrError::db("reading the schema version"))?;
    let mut row_counts = BTreeMap::new();
    for table in COUNTED_TABLES {
        let count: i64 = sqlx::query(&format!("SELECT COUNT(*) AS n FROM {table}"))
            .fetch_one(&mut *conn)
            .await
            .and_then(|row| row.try_get("n"))
            .map_err(DrError::db(&format!("counting {table}")))?;
        row_counts.insert(table.to_string(), count);
    }
    Ok(Facts {
        schema_version: schema_version.unwrap_or(0),
        row_counts,
        newest_data_at_ms: newest_data_ms(conn).await?,
    })
}

/// The newest debate change (each event also updates its debate's `updated_at_ms`).
pub async fn newest_data_ms(conn: &mut AnyConnection) -> Result<Option<i64>, DrError> {
    sqlx::query("SELECT MAX(updated_at_ms) AS newest FROM debates")
        .fetch_one(&mut *conn)
        .await
        .and_then(|row| row.try_get("newest"))
        .map_err(DrError::db("reading the newest debate change"))
}

/// Debates in the database, or `None` when it has no `debates` table (an empty database).
pub async fn debate_count(conn: &mut AnyConnection) -> Option<i64> {
    sqlx::query("SELECT COUNT(*) AS n FROM debates")
        .fetch_one(&mut *conn)
        .await
        .and_then(|row| row.try_get("n"))
        .ok()
}

/// Compares a restored copy with its manifest; the differences, empty when it matches.
pub fn differences(manifest: &crate::manifest::Manifest, restored: &Facts) -> Vec<String> {
    let mut differences = Vec::new();
    if restored.schema_version != manifest.schema_version {
        differences.push(format!(
            "schema version {} restored, the manifest says {}",
            restored.schema_version, manifest.schema_version
        ));
    }
    for (table, expected) in &manifest.row_counts {
        let actual = restored.row_counts.get(table).copied().unwrap_or(0);
        if actual != *expected {
            differences.push(format!(
                "{table}: {actual} rows restored, the manifest says {expected}"
            ));
        }
    }
    differences
}
