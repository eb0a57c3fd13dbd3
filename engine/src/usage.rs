//! Token usage per debate and provider (table `debate_usage`, migration 0010): what each
//! provider's answers said they cost (`usage` in their bodies, parsed by
//! [`crate::agents::providers`]), added up per debate as the calls come back, and read back
//! for the debates one principal created (`GET /api/auth/me/usage`).
//!
//! The queries take the store's pool and answer in `sqlx::Error`, as [`crate::dr_log`]'s do.

use serde::Serialize;
use sqlx::{AnyPool, Row};
use std::collections::BTreeMap;

/// Tokens one provider counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ProviderUsage {
    /// anthropic, openai, gemini, xai, mistral, openrouter or openai-compatible.
    pub provider: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
}

/// One debate and what its calls cost, per provider (empty for offline agents).
#[derive(Debug, Clone, PartialEq)]
pub struct DebateUsage {
    pub id: String,
    pub topic: String,
    pub status: String,
    pub created_at_ms: i64,
    pub usage: Vec<ProviderUsage>,
}

/// Adds one call's tokens to the debate's row for `provider`.
pub async fn add(
    pool: &AnyPool,
    debate_id: &str,
    provider: &str,
    input_tokens: u64,
    output_tokens: u64,
) -> Result<(), sqlx::Error> {
    // Both backends upsert the same way; the row is the running sum.
    sqlx::query(
        "INSERT INTO debate_usage (debate_id, provider, input_tokens, output_tokens) \
         VALUES ($1, $2, $3, $4) \
         ON CONFLICT (debate_id, provider) DO UPDATE SET \
         input_tokens = debate_usage.input_tokens + excluded.input_tokens, \
         output_tokens = debate_usage.output_tokens + excluded.output_tokens",
    )
    .bind(debate_id)
    .bind(provider)
    .bind(i64::try_from(input_tokens).unwrap_or(i64::MAX))
    .bind(i64::try_from(output_tokens).unwrap_or(i64::MAX))
    .execute(pool)
    .await?;
    Ok(())
}

fn decode_usage(row: &sqlx::any::AnyRow) -> Result<ProviderUsage, sqlx::Error> {
    Ok(ProviderUsage {
        provider: row.try_get("provider")?,
        input_tokens: row.try_get("input_tokens")?,
        output_tokens: row.try_get("output_tokens")?,
    })
}

/// The newest `limit` debates `created_by` created, newest first, each with its usage.
pub async fn of_creator(
    pool: &AnyPool,
    created_by: &str,
    limit: i64,
) -> Result<Vec<DebateUsage>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, topic, status, created_at_ms FROM debates WHERE created_by = $1 \
         ORDER BY created_at_ms DESC, id DESC LIMIT $2",
    )
    .bind(created_by)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let mut debates = rows
        .iter()
        .map(|row| {
            Ok(DebateUsage {
                id: row.try_get("id")?,
                topic: row.try_get("topic")?,
                status: row.try_get("status")?,
                created_at_ms: row.try_get("created_at_ms")?,
                usage: Vec::new(),
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    if debates.is_empty() {
        return Ok(debates);
    }
    let list = (2..debates.len() + 2)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ");
    // The creator again, so a debate id can only ever find its own creator's rows.
    let sql = format!(
        "SELECT u.debate_id, u.provider, u.input_tokens, u.output_tokens \
         FROM debate_usage u JOIN debates d ON d.id = u.debate_id \
         WHERE d.created_by = $1 AND u.debate_id IN ({list}) ORDER BY u.provider"
    );
    let mut query = sqlx::query(&sql).bind(created_by);
    for debate in &debates {
        query = query.bind(&debate.id);
    }
    let mut by_debate: BTreeMap<String, Vec<ProviderUsage>> = BTreeMap::new();
    for row in query.fetch_all(pool).await? {
        let id: String = row.try_get("debate_id")?;
        by_debate.entry(id).or_default().push(decode_usage(&row)?);
    }
    for debate in &mut debates {
        debate.usage = by_debate.remove(&debate.id).unwrap_or_default();
    }
    Ok(debates)
}

/// Every debate `created_by` created, summed per provider.
pub async fn totals_of_creator(
    pool: &AnyPool,
    created_by: &str,
) -> Result<Vec<ProviderUsage>, sqlx::Error> {
    // SUM of a BIGINT is NUMERIC on PostgreSQL: cast back so both backends decode an i64.
    let rows = sqlx::query(
        "SELECT u.provider AS provider, \
         CAST(SUM(u.input_tokens) AS BIGINT) AS input_tokens, \
         CAST(SUM(u.output_tokens) AS BIGINT) AS output_tokens \
         FROM debate_usage u JOIN debates d ON d.id = u.debate_id \
         WHERE d.created_by = $1 GROUP BY u.provider ORDER BY u.provider",
    )
    .bind(created_by)
    .fetch_all(pool)
    .await?;
    rows.iter().map(decode_usage).collect()
}
