//! The webhook tables (migration 0009): subscriptions, and deliveries as an outbox. A delivery
//! row is written by [`enqueue`] inside the transaction that records its event, so an event is
//! never recorded without its deliveries nor announced with deliveries that then roll back.
//! Replicas take due rows with a lease ([`claim`]: one conditional UPDATE, so of replicas
//! racing for a row exactly one wins), and only the lease holder may record the outcome
//! ([`finish`]); a holder that died lets its lease run out and the row is taken again (at
//! least once: receivers deduplicate by delivery id).
//!
//! The queries take the store's pool or transaction and answer in `sqlx::Error`.

use super::EventType;
use crate::config::DbBackend;
use serde_json::{json, Value};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting for its first attempt or a retry.
    Pending,
    Delivered,
    /// Out of retries, or refused for good: in the dead-letter queue.
    Dead,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
        }
    }

    fn parse(text: &str) -> Result<Self, sqlx::Error> {
        match text {
            "pending" => Ok(Self::Pending),
            "delivered" => Ok(Self::Delivered),
            "dead" => Ok(Self::Dead),
            other => Err(corrupt(format!("unknown delivery state {other:?}"))),
        }
    }
}

fn corrupt(message: String) -> sqlx::Error {
    sqlx::Error::Decode(message.into())
}

/// A subscription as stored. `secret_sealed` is the encrypted secret ([`super::secrets`]).
#[derive(Debug, Clone)]
pub struct Subscription {
    pub id: String,
    pub owner: String,
    pub url: String,
    pub event_types: Vec<EventType>,
    pub secret_sealed: Option<String>,
    pub enabled: bool,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// A delivery as stored.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: String,
    pub subscription_id: String,
    pub event_type: String,
    pub body: String,
    pub state: DeliveryState,
    pub attempts: i64,
    pub next_attempt_at_ms: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub delivered_at_ms: Option<i64>,
}

/// A delivery this replica holds the lease of, with what sending it needs.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: String,
    pub subscription_id: String,
    pub event_type: String,
    pub body: String,
    /// Attempts made before this one.
    pub attempts: i64,
    pub url: String,
    pub secret_sealed: Option<String>,
}

/// How an attempt ended, as [`finish`] records it.
#[derive(Debug, Clone, PartialEq)]
pub enum Finish {
    Delivered {
        status: i64,
    },
    /// Failed; tried again at `at_ms`.
    Retry {
        at_ms: i64,
        status: Option<i64>,
        error: String,
    },
    Dead {
        status: Option<i64>,
        error: String,
    },
    /// Not attempted (the receiver's breaker is open): taken again at `at_ms`.
    Defer {
        at_ms: i64,
    },
}

const SUBSCRIPTION_COLUMNS: &str =
    "id, owner, url, event_types, secret_sealed, enabled, created_at_ms, updated_at_ms";
const DELIVERY_COLUMNS: &str = "id, subscription_id, event_type, body, state, attempts, \
    next_attempt_at_ms, last_status, last_error, created_at_ms, updated_at_ms, delivered_at_ms";

fn event_types_column(types: &[EventType]) -> String {
    types
        .iter()
        .map(|t| t.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

fn subscription_from(row: &AnyRow) -> Result<Subscription, sqlx::Error> {
    let types: String = row.try_get("event_types")?;
    let event_types = types
        .split(',')
        .filter(|t| !t.is_empty())
        .map(|t| EventType::parse(t).ok_or_else(|| corrupt(format!("unknown event type {t:?}"))))
        .collect::<Result<_, _>>()?;
    let enabled: i64 = row.try_get("enabled")?;
    Ok(Subscription {
        id: row.try_get("id")?,
        owner: row.try_get("owner")?,
        url: row.try_get("url")?,
        event_types,
        secret_sealed: row.try_get("secret_sealed")?,
        enabled: enabled != 0,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

fn delivery_from(row: &AnyRow) -> Result<Delivery, sqlx::Error> {
    let state: String = row.try_get("state")?;
    Ok(Delivery {
        id: row.try_get("id")?,
        subscription_id: row.try_get("subscription_id")?,
        event_type: row.try_get("event_type")?,
        body: row.try_get("body")?,
        state: DeliveryState::parse(&state)?,
        attempts: row.try_get("attempts")?,
        next_attempt_at_ms: row.try_get("next_attempt_at_ms")?,
        last_status: row.try_get("last_status")?,
        last_error: row.try_get("last_error")?,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
        delivered_at_ms: row.try_get("delivered_at_ms")?,
    })
}

pub async fn insert_subscription(pool: &AnyPool, s: &Subscription) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO webhook_subscriptions ({SUBSCRIPTION_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    ))
    .bind(&s.id)
    .bind(&s.owner)
    .bind(&s.url)
    .bind(event_types_column(&s.event_types))
    .bind(s.secret_sealed.as_deref())
    .bind(i64::from(s.enabled))
    .bind(s.created_at_ms)
    .bind(s.updated_at_ms)
    .execute(pool)
    .await?;
    Ok(())
}

/// Every subscription, oldest first.
pub async fn subscriptions(pool: &AnyPool) -> Result<Vec<Subscription>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions ORDER BY created_at_ms, id"
    ))
    .fetch_all(pool)
    .await?
    .iter()
    .map(subscription_from)
    .collect()
}

pub async fn subscription(pool: &AnyPool, id: &str) -> Result<Option<Subscription>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?
    .as_ref()
    .map(subscription_from)
    .transpose()
}

/// Pauses or resumes; false when there is no such subscription.
pub async fn set_enabled(
    pool: &AnyPool,
    id: &str,
    enabled: bool,
    at_ms: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE webhook_subscriptions SET enabled = $1, updated_at_ms = $2 WHERE id = $3",
    )
    .bind(i64::from(enabled))
    .bind(at_ms)
    .bind(id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Deletes a subscription and its deliveries (pending and dead ones included), atomically.
pub async fn delete_subscription(pool: &AnyPool, id: &str) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM webhook_deliveries WHERE subscription_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let done = sqlx::query("DELETE FROM webhook_subscriptions WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(done.rows_affected() == 1)
}

/// A subscription's most recently changed delivery.
pub async fn last_delivery(
    pool: &AnyPool,
    subscription_id: &str,
) -> Result<Option<Delivery>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE subscription_id = $1 \
         ORDER BY updated_at_ms DESC, id DESC LIMIT 1"
    ))
    .bind(subscription_id)
    .fetch_optional(pool)
    .await?
    .as_ref()
    .map(delivery_from)
    .transpose()
}

pub async fn delivery(pool: &AnyPool, id: &str) -> Result<Option<Delivery>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?
    .as_ref()
    .map(delivery_from)
    .transpose()
}

/// The dead-letter queue, most recently dead first, at most `limit` (at least 1), and how many
/// dead deliveries there are in all, read in one statement so the page and the total agree
/// (two statements could see a delivery die between them).
pub async fn dead_letters(pool: &AnyPool, limit: i64) -> Result<(Vec<Delivery>, i64), sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {DELIVERY_COLUMNS}, COUNT(*) OVER () AS total FROM webhook_deliveries \
         WHERE state = 'dead' ORDER BY updated_at_ms DESC, id DESC LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let total = match rows.first() {
        Some(row) => row.try_get("total")?,
        None => 0,
    };
    let dead = rows.iter().map(delivery_from).collect::<Result<_, _>>()?;
    Ok((dead, total))
}

/// Deliveries in the dead-letter queue.
pub async fn dead_letter_depth(pool: &AnyPool) -> Result<i64, sqlx::Error> {
    let row = sqlx::query("SELECT COUNT(*) AS depth FROM webhook_deliveries WHERE state = 'dead'")
        .fetch_one(pool)
        .await?;
    row.try_get("depth")
}

/// Puts a dead delivery back in the queue, due now, with its attempts counted from zero;
/// false when it is not dead (no such delivery, or pending or delivered).
pub async fn retry_dead(pool: &AnyPool, id: &str, now_ms: i64) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE webhook_deliveries SET state = 'pending', attempts = 0, next_attempt_at_ms = $1, \
         lease_holder = NULL, lease_until_ms = NULL, updated_at_ms = $2 \
         WHERE id = $3 AND state = 'dead'",
    )
    .bind(now_ms)
    .bind(now_ms)
    .bind(id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The body a receiver gets: the event type, ids and time, and the event's own payload, in
/// Python's `json.dumps` form ([`super::pyjson`]).
pub fn body(
    delivery_id: &str,
    subscription_id: &str,
    event: EventType,
    at_ms: i64,
    data: &Value,
) -> String {
    let value = json!({
        "delivery_id": delivery_id,
        "webhook_id": subscription_id,
        "event_type": event.as_str(),
        "timestamp": crate::model::format_ms(at_ms),
        "data": data,
    });
    super::pyjson::to_string(&value).expect("a JSON value always serialises")
}

/// Writes a delivery of `event` for every enabled subscription to it, on `conn` (the
/// transaction that records the event). Paused subscriptions get none: pausing stops the flow,
/// it does not queue it up. The number written.
pub async fn enqueue(
    conn: &mut AnyConnection,
    event: EventType,
    at_ms: i64,
    data: &Value,
) -> Result<usize, sqlx::Error> {
    let rows = sqlx::query("SELECT id, event_types FROM webhook_subscriptions WHERE enabled = 1")
        .fetch_all(&mut *conn)
        .await?;
    let mut written = 0;
    for row in rows {
        let types: String = row.try_get("event_types")?;
        if !types.split(',').any(|t| t == event.as_str()) {
            continue;
        }
        let subscription_id: String = row.try_get("id")?;
        let id = format!("dlv_{}", uuid::Uuid::new_v4().simple());
        let body = body(&id, &subscription_id, event, at_ms, data);
        let now = crate::model::now_ms();
        sqlx::query(
            "INSERT INTO webhook_deliveries (id, subscription_id, event_type, body, state, \
             attempts, next_attempt_at_ms, created_at_ms, updated_at_ms) \
             VALUES ($1, $2, $3, $4, 'pending', 0, $5, $6, $7)",
        )
        .bind(&id)
        .bind(&subscription_id)
        .bind(event.as_str())
        .bind(&body)
        .bind(now)
        .bind(now)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        written += 1;
    }
    Ok(written)
}

/// Deliveries of `event` for each of `items` to every enabled subscription of it, all in one
/// transaction: for events recorded outside the engine's own writes (control's alert sink),
/// so a notification is queued whole or not at all. A database no engine has migrated yet
/// has no subscriptions: nothing to queue, not an error.
pub async fn enqueue_all(
    store: &crate::store::SqlStore,
    event: EventType,
    at_ms: i64,
    items: &[Value],
) -> Result<usize, sqlx::Error> {
    let mut tx = store.pool().begin().await?;
    let mut written = 0;
    for data in items {
        match enqueue(&mut tx, event, at_ms, data).await {
            Ok(count) => written += count,
            Err(err) if no_webhook_tables(&err) => return Ok(0),
            Err(err) => return Err(err),
        }
    }
    tx.commit().await?;
    Ok(written)
}

/// PostgreSQL's undefined_table, or SQLite's "no such table".
fn no_webhook_tables(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db)
        if db.code().as_deref() == Some("42P01") || db.message().contains("no such table"))
}

/// Takes the lease of up to `limit` due deliveries of enabled subscriptions for `holder`
/// until `lease_until_ms`. The outer condition repeats the inner one: on PostgreSQL a row
/// another replica claimed meanwhile is re-checked after its lock and no longer matches (and
/// `SKIP LOCKED` passes over rows being claimed); SQLite runs one writer at a time.
pub async fn claim(
    pool: &AnyPool,
    backend: DbBackend,
    holder: &str,
    now_ms: i64,
    lease_until_ms: i64,
    limit: i64,
) -> Result<Vec<Claimed>, sqlx::Error> {
    let skip_locked = match backend {
        DbBackend::Postgres => "FOR UPDATE SKIP LOCKED",
        DbBackend::Sqlite => "",
    };
    let sql = format!(
        "UPDATE webhook_deliveries SET lease_holder = $1, lease_until_ms = $2 \
         WHERE id IN (SELECT id FROM webhook_deliveries \
            WHERE state = 'pending' AND next_attempt_at_ms <= $3 \
            AND (lease_until_ms IS NULL OR lease_until_ms < $4) \
            AND subscription_id IN (SELECT id FROM webhook_subscriptions WHERE enabled = 1) \
            ORDER BY next_attempt_at_ms, id LIMIT $5 {skip_locked}) \
         AND state = 'pending' AND (lease_until_ms IS NULL OR lease_until_ms < $6) \
         RETURNING id"
    );
    let ids: Vec<String> = sqlx::query(&sql)
        .bind(holder)
        .bind(lease_until_ms)
        .bind(now_ms)
        .bind(now_ms)
        .bind(limit)
        .bind(now_ms)
        .fetch_all(pool)
        .await?
        .iter()
        .map(|row| row.try_get("id"))
        .collect::<Result<_, _>>()?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders = (2..ids.len() + 2)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT d.id, d.subscription_id, d.event_type, d.body, d.attempts, s.url, s.secret_sealed \
         FROM webhook_deliveries d JOIN webhook_subscriptions s ON s.id = d.subscription_id \
         WHERE d.lease_holder = $1 AND d.id IN ({placeholders}) ORDER BY d.next_attempt_at_ms, d.id"
    );
    let mut query = sqlx::query(&sql).bind(holder);
    for id in &ids {
        query = query.bind(id);
    }
    query
        .fetch_all(pool)
        .await?
        .iter()
        .map(|row| {
            Ok(Claimed {
                id: row.try_get("id")?,
                subscription_id: row.try_get("subscription_id")?,
                event_type: row.try_get("event_type")?,
                body: row.try_get("body")?,
                attempts: row.try_get("attempts")?,
                url: row.try_get("url")?,
                secret_sealed: row.try_get("secret_sealed")?,
            })
        })
        .collect()
}

/// Records how an attempt ended and releases the lease, only while `holder` still holds it;
/// false when it no longer did (its lease ran out and another replica took the row).
pub async fn finish(
    pool: &AnyPool,
    id: &str,
    holder: &str,
    outcome: &Finish,
    now_ms: i64,
) -> Result<bool, sqlx::Error> {
    const RELEASE: &str = "lease_holder = NULL, lease_until_ms = NULL";
    let sql: String;
    let query = match outcome {
        Finish::Delivered { status } => {
            sql = format!(
                "UPDATE webhook_deliveries SET state = 'delivered', attempts = attempts + 1, \
                 last_status = $1, last_error = NULL, delivered_at_ms = $2, updated_at_ms = $3, \
                 {RELEASE} WHERE id = $4 AND lease_holder = $5"
            );
            sqlx::query(&sql).bind(*status).bind(now_ms).bind(now_ms)
        }
        Finish::Retry {
            at_ms,
            status,
            error,
        } => {
            sql = format!(
                "UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_at_ms = $1, \
                 last_status = $2, last_error = $3, updated_at_ms = $4, {RELEASE} \
                 WHERE id = $5 AND lease_holder = $6"
            );
            sqlx::query(&sql)
                .bind(*at_ms)
                .bind(*status)
                .bind(error.as_str())
                .bind(now_ms)
        }
        Finish::Dead { status, error } => {
            sql = format!(
                "UPDATE webhook_deliveries SET state = 'dead', attempts = attempts + 1, \
                 last_status = $1, last_error = $2, updated_at_ms = $3, {RELEASE} \
                 WHERE id = $4 AND lease_holder = $5"
            );
            sqlx::query(&sql)
                .bind(*status)
                .bind(error.as_str())
                .bind(now_ms)
        }
        Finish::Defer { at_ms } => {
            sql = format!(
                "UPDATE webhook_deliveries SET next_attempt_at_ms = $1, updated_at_ms = $2, \
                 {RELEASE} WHERE id = $3 AND lease_holder = $4"
            );
            sqlx::query(&sql).bind(*at_ms).bind(now_ms)
        }
    };
    let done = query.bind(id).bind(holder).execute(pool).await?;
    Ok(done.rows_affected() == 1)
}
