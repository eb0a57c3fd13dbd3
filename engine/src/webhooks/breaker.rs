//! The circuit breaker of each receiver endpoint (`scheme://host[:port]`), shared by every
//! replica through the database (`webhook_breakers`, migration 0011): after `threshold`
//! consecutive failures in all (timeouts, connection failures, 429, 5xx, on whichever
//! replicas) it opens for the cooldown, and deliveries to that endpoint are put back in the
//! queue unattempted, so a dead receiver costs the others nothing and is tried `threshold`
//! times, not `threshold` times per replica. After the cooldown it is half-open: exactly one
//! delivery, the one whose replica takes the trial lease (a conditional UPDATE, so of replicas
//! racing for it one wins), is sent; its success closes the breaker (the row is deleted), its
//! failure opens it again. The others wait and look again after [`HALF_OPEN_RECHECK_MS`].
//!
//! The state is read from the table whenever it is shown (the list of subscriptions, and
//! `aragora_webhook_circuit_breaker_state` at every scrape), so it is the same on every
//! replica and moves from open to half-open with the clock, not only when a delivery ends.

use sqlx::{AnyPool, Row};
use std::collections::HashMap;
use std::time::Duration;

/// How long a delivery that found the breaker half-open, with another delivery's trial under
/// way, waits before it looks again.
pub const HALF_OPEN_RECHECK_MS: i64 = 1_000;

/// A breaker's state, as the `aragora_webhook_circuit_breaker_state` gauge shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn gauge(self) -> i64 {
        match self {
            Self::Closed => 0,
            Self::Open => 1,
            Self::HalfOpen => 2,
        }
    }

    /// The state of a row whose `open_until_ms` is `open_until_ms`, at `now_ms`.
    pub fn of(open_until_ms: Option<i64>, now_ms: i64) -> Self {
        match open_until_ms {
            Some(until) if until > now_ms => Self::Open,
            Some(_) => Self::HalfOpen,
            None => Self::Closed,
        }
    }
}

/// What a delivery to an endpoint may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Closed: send it.
    Send,
    /// Half-open, and this delivery holds the trial lease: send it, the one trial.
    Trial,
    /// Open, or another delivery's trial is under way: put it back until `until_ms`.
    Wait { until_ms: i64 },
}

/// The breakers' settings; the state is the database's.
#[derive(Debug, Clone, Copy)]
pub struct Breakers {
    threshold: i64,
    cooldown_ms: i64,
}

impl Breakers {
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold: i64::from(threshold.max(1)),
            cooldown_ms: i64::try_from(cooldown.as_millis()).unwrap_or(i64::MAX),
        }
    }

    /// Whether a delivery to `endpoint` may be sent now; a half-open breaker's trial lease is
    /// taken until `trial_until_ms` (the delivery's own lease).
    pub async fn admit(
        &self,
        pool: &AnyPool,
        endpoint: &str,
        now_ms: i64,
        trial_until_ms: i64,
    ) -> Result<Admission, sqlx::Error> {
        let row = sqlx::query("SELECT open_until_ms FROM webhook_breakers WHERE endpoint = $1")
            .bind(endpoint)
            .fetch_optional(pool)
            .await?;
        let open_until: Option<i64> = match row {
            Some(row) => row.try_get("open_until_ms")?,
            None => None,
        };
        match BreakerState::of(open_until, now_ms) {
            BreakerState::Closed => Ok(Admission::Send),
            BreakerState::Open => Ok(Admission::Wait {
                until_ms: open_until.unwrap_or(now_ms),
            }),
            BreakerState::HalfOpen => {
                let taken = sqlx::query(
                    "UPDATE webhook_breakers SET trial_until_ms = $1, updated_at_ms = $2 \
                     WHERE endpoint = $3 AND open_until_ms IS NOT NULL AND open_until_ms <= $4 \
                     AND (trial_until_ms IS NULL OR trial_until_ms < $5)",
                )
                .bind(trial_until_ms)
                .bind(now_ms)
                .bind(endpoint)
                .bind(now_ms)
                .bind(now_ms)
                .execute(pool)
                .await?
                .rows_affected();
                Ok(if taken == 1 {
                    Admission::Trial
                } else {
                    Admission::Wait {
                        until_ms: now_ms + HALF_OPEN_RECHECK_MS,
                    }
                })
            }
        }
    }

    /// A failure that counts against the receiver; the state after it. A failed trial opens
    /// the breaker again at once (its failures are past the threshold already).
    pub async fn failure(
        &self,
        pool: &AnyPool,
        endpoint: &str,
        now_ms: i64,
    ) -> Result<BreakerState, sqlx::Error> {
        let open_until = now_ms.saturating_add(self.cooldown_ms);
        let row = sqlx::query(
            "INSERT INTO webhook_breakers (endpoint, failures, open_until_ms, trial_until_ms, \
             updated_at_ms) VALUES ($1, 1, CASE WHEN 1 >= $2 THEN $3 ELSE NULL END, NULL, $4) \
             ON CONFLICT (endpoint) DO UPDATE SET failures = webhook_breakers.failures + 1, \
             open_until_ms = CASE WHEN webhook_breakers.failures + 1 >= $5 THEN $6 \
             ELSE webhook_breakers.open_until_ms END, trial_until_ms = NULL, updated_at_ms = $7 \
             RETURNING open_until_ms",
        )
        .bind(endpoint)
        .bind(self.threshold)
        .bind(open_until)
        .bind(now_ms)
        .bind(self.threshold)
        .bind(open_until)
        .bind(now_ms)
        .fetch_one(pool)
        .await?;
        Ok(BreakerState::of(row.try_get("open_until_ms")?, now_ms))
    }

    /// A 2xx: closes the breaker.
    pub async fn success(&self, pool: &AnyPool, endpoint: &str) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM webhook_breakers WHERE endpoint = $1")
            .bind(endpoint)
            .execute(pool)
            .await?;
        Ok(())
    }

    /// A trial that ended in neither (a refusal that is not the receiver's failure): the next
    /// delivery may be the trial.
    pub async fn release_trial(&self, pool: &AnyPool, endpoint: &str) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE webhook_breakers SET trial_until_ms = NULL WHERE endpoint = $1")
            .bind(endpoint)
            .execute(pool)
            .await?;
        Ok(())
    }
}

/// The state of `endpoint`'s breaker at `now_ms`.
pub async fn state(
    pool: &AnyPool,
    endpoint: &str,
    now_ms: i64,
) -> Result<BreakerState, sqlx::Error> {
    let row = sqlx::query("SELECT open_until_ms FROM webhook_breakers WHERE endpoint = $1")
        .bind(endpoint)
        .fetch_optional(pool)
        .await?;
    let open_until = match row {
        Some(row) => row.try_get("open_until_ms")?,
        None => None,
    };
    Ok(BreakerState::of(open_until, now_ms))
}

/// Every endpoint's breaker that is not closed, at `now_ms`.
pub async fn states(
    pool: &AnyPool,
    now_ms: i64,
) -> Result<HashMap<String, BreakerState>, sqlx::Error> {
    sqlx::query("SELECT endpoint, open_until_ms FROM webhook_breakers")
        .fetch_all(pool)
        .await?
        .iter()
        .map(|row| {
            Ok((
                row.try_get("endpoint")?,
                BreakerState::of(row.try_get("open_until_ms")?, now_ms),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_until_the_cooldown_then_half_open() {
        assert_eq!(BreakerState::of(None, 5), BreakerState::Closed);
        assert_eq!(BreakerState::of(Some(6), 5), BreakerState::Open);
        assert_eq!(BreakerState::of(Some(5), 5), BreakerState::HalfOpen);
        assert_eq!(
            [
                BreakerState::Closed,
                BreakerState::Open,
                BreakerState::HalfOpen
            ]
            .map(|s| s.gauge()),
            [0, 1, 2]
        );
    }
}
