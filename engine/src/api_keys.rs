//! The API key table (`api_keys`, migration 0004) behind [`aragora_auth::KeyStore`]: the
//! engine's database keeps the keys, so every replica sees a creation or a revocation (after at
//! most `ARAGORA_API_KEY_CACHE_SECONDS`), on SQLite and PostgreSQL alike. Only the argon2 hash
//! of a key's secret is stored.

use crate::store::SqlStore;
use aragora_auth::{KeyStore, KeyStoreError, Role, StoredKey};
use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::Row;

const KEY_COLUMNS: &str =
    "id, name, role, secret_hash, created_by, created_at_ms, expires_at_ms, revoked_at_ms";

fn failed(err: sqlx::Error) -> KeyStoreError {
    KeyStoreError(err.to_string())
}

fn key_from_row(row: &AnyRow) -> Result<StoredKey, KeyStoreError> {
    let role: String = row.try_get("role").map_err(failed)?;
    Ok(StoredKey {
        id: row.try_get("id").map_err(failed)?,
        name: row.try_get("name").map_err(failed)?,
        role: Role::parse(&role)
            .ok_or_else(|| KeyStoreError(format!("api_keys holds an unknown role {role:?}")))?,
        secret_hash: row.try_get("secret_hash").map_err(failed)?,
        created_by: row.try_get("created_by").map_err(failed)?,
        created_at_ms: row.try_get("created_at_ms").map_err(failed)?,
        expires_at_ms: row.try_get("expires_at_ms").map_err(failed)?,
        revoked_at_ms: row.try_get("revoked_at_ms").map_err(failed)?,
    })
}

#[async_trait]
impl KeyStore for SqlStore {
    async fn insert_key(&self, key: &StoredKey) -> Result<(), KeyStoreError> {
        sqlx::query(&format!(
            "INSERT INTO api_keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(&key.id)
        .bind(&key.name)
        .bind(key.role.as_str())
        .bind(&key.secret_hash)
        .bind(&key.created_by)
        .bind(key.created_at_ms)
        .bind(key.expires_at_ms)
        .bind(key.revoked_at_ms)
        .execute(self.pool())
        .await
        .map_err(failed)?;
        Ok(())
    }

    async fn find_key(&self, id: &str) -> Result<Option<StoredKey>, KeyStoreError> {
        sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(failed)?
            .as_ref()
            .map(key_from_row)
            .transpose()
    }

    async fn list_keys(&self) -> Result<Vec<StoredKey>, KeyStoreError> {
        sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at_ms DESC, id"
        ))
        .fetch_all(self.pool())
        .await
        .map_err(failed)?
        .iter()
        .map(key_from_row)
        .collect()
    }

    async fn revoke_key(&self, id: &str, at_ms: i64) -> Result<bool, KeyStoreError> {
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at_ms = $1 WHERE id = $2 AND revoked_at_ms IS NULL",
        )
        .bind(at_ms)
        .bind(id)
        .execute(self.pool())
        .await
        .map_err(failed)?;
        Ok(done.rows_affected() > 0)
    }
}
