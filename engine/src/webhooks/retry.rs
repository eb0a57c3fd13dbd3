//! When a failed delivery is tried again: the runbook's backoff (`min(base * 2^attempt, max) +
//! jitter`, 1 s → 2 s → 4 s … 300 s by default), or a receiver's `Retry-After` when it sends
//! one (capped at the backoff's maximum). When a receiver is left alone altogether is
//! [`super::breaker`]'s.

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
}
