//! The generic cell rate algorithm (GCRA): the one rate limiter aragora has. The gateway's
//! per-client request limit (`aragora_gateway::limit`, one cell per client address) and the
//! engine's per-client WebSocket message allowance (`aragora_engine::http::limits`, one
//! [`Bucket`] per client) are both this.
//!
//! A cell is one number, its theoretical arrival time (TAT): when the client's allowance would
//! be whole again at the steady rate. A request is admitted while the TAT is no further ahead
//! of now than the burst allows (`burst - 1` intervals), and pushes it one interval on. This is
//! exactly a token bucket of `burst` tokens refilled continuously at the rate, held in one
//! float instead of two.
//!
//! Time is seconds as `f64` since an instant the owner picks (a [`Bucket`] its creation, the
//! gateway its limiter's), so the arithmetic can be tested at chosen instants.

use std::time::Instant;

/// What float arithmetic on instants may be off by; never a request's worth.
const ROUNDING: f64 = 1e-9;

/// Seconds rounded up, unless only rounding put them above a whole second.
fn whole_secs(seconds: f64) -> u64 {
    (seconds - ROUNDING).ceil().max(0.0) as u64
}

/// What the limiter decided for one request, and what the `RateLimit-*` headers say.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    pub allowed: bool,
    /// The burst capacity (`RateLimit-Limit`).
    pub limit: u64,
    pub remaining: u64,
    /// Seconds until the client's allowance is whole again (`RateLimit-Reset`).
    pub reset_secs: u64,
    /// Seconds to wait before a refused request can succeed (`Retry-After`); 0 when allowed.
    pub retry_after_secs: u64,
}

/// A rate: `burst` requests at once, then one every `interval` seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gcra {
    /// Seconds between requests at the steady rate.
    interval: f64,
    burst: u64,
}

impl Gcra {
    /// `per_minute` on average, `burst` at once (at least 1); `None` when `per_minute` is 0
    /// (no limit).
    pub fn per_minute(per_minute: u64, burst: u64) -> Option<Self> {
        (per_minute > 0).then(|| Self {
            interval: 60.0 / per_minute as f64,
            burst: burst.max(1),
        })
    }

    /// `per_second` on average, `burst` at once (at least 1); `None` when `per_second` is 0.
    pub fn per_second(per_second: u64, burst: u64) -> Option<Self> {
        (per_second > 0).then(|| Self {
            interval: 1.0 / per_second as f64,
            burst: burst.max(1),
        })
    }

    /// The steady rate, per minute.
    pub fn per_minute_rate(&self) -> u64 {
        (60.0 / self.interval).round() as u64
    }

    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// How long a cell that has taken its whole burst needs to be whole again, in seconds.
    pub fn window_secs(&self) -> f64 {
        self.interval * self.burst as f64
    }

    /// Decides one request at `now` for the cell whose TAT is `tat` (a client not seen before
    /// has any TAT at or before `now`), moving the TAT on when the request is admitted.
    pub fn check(&self, tat: &mut f64, now: f64) -> Decision {
        let capacity = self.burst as f64 * self.interval;
        let current = tat.max(now);
        // How far the client is ahead of the steady rate, against how far it may be. Compared
        // as differences, not as `now < tat + interval - capacity`: that sum rounds, and with a
        // burst of 1 it refused a client's very first request at some instants.
        let ahead = current - now;
        let slack = capacity - self.interval;
        if ahead > slack + ROUNDING {
            return Decision {
                allowed: false,
                limit: self.burst,
                remaining: 0,
                reset_secs: whole_secs(ahead),
                retry_after_secs: whole_secs(ahead - slack).max(1),
            };
        }
        let new_tat = current + self.interval;
        *tat = new_tat;
        // The epsilon keeps float rounding (47.999... for 48) from costing a request.
        let remaining = ((slack - ahead) / self.interval + ROUNDING).floor() as u64;
        Decision {
            allowed: true,
            limit: self.burst,
            remaining: remaining.min(self.burst - 1),
            reset_secs: whole_secs(new_tat - now),
            retry_after_secs: 0,
        }
    }

    /// Whether a cell with this TAT is whole again at `now` (it can be forgotten: a client
    /// seen afresh gets the same answers).
    pub fn is_whole(tat: f64, now: f64) -> bool {
        tat <= now
    }
}

/// One cell with its own clock: a single client's allowance.
#[derive(Debug, Clone)]
pub struct Bucket {
    gcra: Gcra,
    started: Instant,
    tat: f64,
}

impl Bucket {
    /// A whole allowance of `gcra`.
    pub fn new(gcra: Gcra) -> Self {
        Self {
            gcra,
            started: Instant::now(),
            tat: 0.0,
        }
    }

    /// Takes one request's allowance now; false when the client is over its rate.
    pub fn take(&mut self) -> bool {
        let now = self.started.elapsed().as_secs_f64();
        self.take_at(now)
    }

    /// [`take`](Self::take) at `now`, seconds since the bucket was made.
    pub fn take_at(&mut self, now: f64) -> bool {
        self.gcra.check(&mut self.tat, now).allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_steady_rate_then_never_more_than_a_burst() {
        // As a token bucket of 10 refilled at 10 a second.
        let mut bucket = Bucket::new(Gcra::per_second(10, 10).unwrap());
        assert_eq!((0..20).filter(|_| bucket.take_at(0.0)).count(), 10);
        assert_eq!((0..20).filter(|_| bucket.take_at(0.5)).count(), 5);
        assert_eq!(
            (0..20).filter(|_| bucket.take_at(60.5)).count(),
            10,
            "never more than a burst"
        );
    }

    #[test]
    fn a_decision_says_what_is_left_and_when_to_retry() {
        let gcra = Gcra::per_minute(60, 3).unwrap();
        let mut tat = 0.0;
        let remaining: Vec<u64> = (0..3)
            .map(|_| gcra.check(&mut tat, 0.0).remaining)
            .collect();
        assert_eq!(remaining, vec![2, 1, 0]);
        let refused = gcra.check(&mut tat, 0.0);
        assert_eq!(
            (
                refused.allowed,
                refused.retry_after_secs,
                refused.reset_secs
            ),
            (false, 1, 3)
        );
        assert!(!Gcra::is_whole(tat, 2.5));
        assert!(Gcra::is_whole(tat, 3.0));
        assert_eq!(
            (gcra.per_minute_rate(), gcra.burst(), gcra.window_secs()),
            (60, 3, 3.0)
        );
        assert!(Gcra::per_minute(0, 5).is_none() && Gcra::per_second(0, 5).is_none());
    }

    #[test]
    fn a_burst_of_one_admits_a_first_request_at_any_instant() {
        // Instants at which `now + 60 - 60` rounds above `now`.
        for now in [0.1, 0.7, 1.1, 123.456, 5.5e-5] {
            let gcra = Gcra::per_minute(1, 1).unwrap();
            let mut tat = now;
            assert!(gcra.check(&mut tat, now).allowed, "at {now}");
            let refused = gcra.check(&mut tat, now);
            assert_eq!((refused.allowed, refused.retry_after_secs), (false, 60));
        }
    }
}
