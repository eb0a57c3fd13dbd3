//! When a failed delivery is tried again, and when a receiver is left alone: the runbook's
//! backoff (`min(base * 2^attempt, max) + jitter`, 1 s → 2 s → 4 s … 300 s by default), a
//! receiver's `Retry-After` when it sends one, and a circuit breaker per receiver endpoint
//! (`scheme://host[:port]`): after `threshold` consecutive failures it opens for the cooldown,
//! and deliveries to that endpoint are put back in the queue unattempted, so a dead receiver
//! costs the others nothing. After the cooldown it is half-open: the next result closes it or
//! opens it again.
//!
//! The breaker is each replica's own (in memory): replicas learn a receiver is down each by
//! itself, within `threshold` failures.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// The delay before retry `attempt` (0 for the first retry): the runbook's exponential delay,
/// capped, plus up to 10 % of it at random so that receivers recovering from an outage are not
/// hit by every queued delivery at the same instant.
pub fn backoff(attempt: u32, base: Duration, max: Duration, jitter: f64) -> Duration {
    let doubled = base.saturating_mul(2u32.saturating_pow(attempt.min(31)));
    let delay = doubled.min(max);
    delay + delay.mul_f64(jitter.clamp(0.0, 1.0) * 0.1)
}

/// A `Retry-After` value: delay-seconds or an HTTP date, as a delay from `now`; capped at
/// `max` (a receiver cannot park a delivery for a year).
pub fn retry_after(value: &str, now: std::time::SystemTime, max: Duration) -> Option<Duration> {
    let value = value.trim();
    let delay = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => httpdate::parse_http_date(value)
            .ok()?
            .duration_since(now)
            .unwrap_or(Duration::ZERO),
    };
    Some(delay.min(max))
}

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
}

#[derive(Debug, Default, Clone, Copy)]
struct Entry {
    failures: u32,
    /// While in the future, the breaker is open.
    open_until_ms: Option<i64>,
}

/// The breakers of every endpoint this replica delivered to.
#[derive(Debug)]
pub struct Breakers {
    threshold: u32,
    cooldown_ms: i64,
    entries: Mutex<HashMap<String, Entry>>,
}

impl Breakers {
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cooldown_ms: i64::try_from(cooldown.as_millis()).unwrap_or(i64::MAX),
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Entry>) -> T) -> T {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut entries)
    }

    pub fn state(&self, endpoint: &str, now_ms: i64) -> BreakerState {
        self.with(|entries| state_of(entries.get(endpoint).copied().unwrap_or_default(), now_ms))
    }

    /// When the breaker of `endpoint` lets deliveries through again, if it is open now.
    pub fn open_until(&self, endpoint: &str, now_ms: i64) -> Option<i64> {
        self.with(|entries| {
            entries
                .get(endpoint)
                .and_then(|e| e.open_until_ms)
                .filter(|until| *until > now_ms)
        })
    }

    /// A 2xx: closes the breaker.
    pub fn success(&self, endpoint: &str) -> BreakerState {
        self.with(|entries| {
            entries.remove(endpoint);
        });
        BreakerState::Closed
    }

    /// A failure that counts (timeout, connection, 429, 5xx); the state after it.
    pub fn failure(&self, endpoint: &str, now_ms: i64) -> BreakerState {
        self.with(|entries| {
            let entry = entries.entry(endpoint.to_string()).or_default();
            entry.failures = entry.failures.saturating_add(1);
            // A half-open trial that fails opens it again at once.
            if entry.failures >= self.threshold {
                entry.open_until_ms = Some(now_ms.saturating_add(self.cooldown_ms));
            }
            state_of(*entry, now_ms)
        })
    }
}

fn state_of(entry: Entry, now_ms: i64) -> BreakerState {
    match entry.open_until_ms {
        Some(until) if until > now_ms => BreakerState::Open,
        Some(_) => BreakerState::HalfOpen,
        None => BreakerState::Closed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runbooks_progression_doubles_to_the_cap_with_at_most_ten_percent_jitter() {
        let (base, max) = (Duration::from_secs(1), Duration::from_secs(300));
        let delays: Vec<u64> = (0..10)
            .map(|a| backoff(a, base, max, 0.0).as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300]);
        assert_eq!(backoff(2, base, max, 1.0), Duration::from_millis(4400));
        assert_eq!(backoff(60, base, max, 0.0), max);
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date_and_is_capped() {
        let now = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let max = Duration::from_secs(300);
        assert_eq!(retry_after("7", now, max), Some(Duration::from_secs(7)));
        assert_eq!(retry_after("99999", now, max), Some(max));
        let date = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(retry_after(&date, now, max), Some(Duration::from_secs(30)));
        assert_eq!(retry_after("soon", now, max), None);
    }

    #[test]
    fn the_breaker_opens_after_the_threshold_and_half_opens_after_the_cooldown() {
        let breakers = Breakers::new(5, Duration::from_secs(60));
        let e = "https://r.example";
        for _ in 0..4 {
            assert_eq!(breakers.failure(e, 0), BreakerState::Closed);
        }
        assert_eq!(breakers.failure(e, 0), BreakerState::Open);
        assert_eq!(breakers.open_until(e, 1), Some(60_000));
        assert_eq!(
            breakers.state("https://other.example", 1),
            BreakerState::Closed
        );
        assert_eq!(breakers.state(e, 60_000), BreakerState::HalfOpen);
        assert_eq!(breakers.failure(e, 60_001), BreakerState::Open);
        breakers.success(e);
        assert_eq!(breakers.state(e, 60_002), BreakerState::Closed);
    }
}
