//! A per-agent circuit breaker: stop calling a provider that keeps failing, try again later.
//!
//! CLOSED (calls pass) → OPEN after `threshold` consecutive failures (calls are refused at once,
//! no request is sent) → HALF_OPEN once `cooldown` has passed (one trial call passes) → CLOSED on
//! its success, OPEN again on its failure. The state is exported as
//! `aragora_circuit_breaker_state{agent}`: 0 closed, 1 open, 2 half-open.

use prometheus::IntGauge;
use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    fn gauge_value(self) -> i64 {
        match self {
            Self::Closed => 0,
            Self::Open => 1,
            Self::HalfOpen => 2,
        }
    }
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    consecutive_failures: u32,
    opened_at: Option<Instant>,
    trial_in_flight: bool,
}

/// What `/api/system/circuit-breakers` shows for one agent.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BreakerSnapshot {
    pub state: BreakerState,
    pub consecutive_failures: u32,
    pub failure_threshold: u32,
    pub cooldown_seconds: f64,
    /// Seconds until an open breaker lets a trial call through.
    pub retry_in_seconds: Option<f64>,
}

#[derive(Clone)]
pub struct CircuitBreaker {
    inner: Arc<Mutex<Inner>>,
    threshold: u32,
    cooldown: Duration,
    gauge: IntGauge,
}

/// Permission for one call. Dropping it without [`CallPermit::succeeded`] counts as a failure
/// (the call was abandoned, for example by the agent timeout).
pub struct CallPermit {
    breaker: CircuitBreaker,
    settled: bool,
}

impl CallPermit {
    pub fn succeeded(mut self) {
        self.settled = true;
        self.breaker.record(true);
    }

    pub fn failed(mut self) {
        self.settled = true;
        self.breaker.record(false);
    }
}

impl Drop for CallPermit {
    fn drop(&mut self) {
        if !self.settled {
            self.breaker.record(false);
        }
    }
}

impl CircuitBreaker {
    pub fn new(threshold: u32, cooldown: Duration, gauge: IntGauge) -> Self {
        gauge.set(0);
        Self {
            inner: Arc::new(Mutex::new(Inner {
                state: BreakerState::Closed,
                consecutive_failures: 0,
                opened_at: None,
                trial_in_flight: false,
            })),
            threshold: threshold.max(1),
            cooldown,
            gauge,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, inner: &mut Inner, state: BreakerState) {
        if inner.state != state {
            tracing::warn!(from = ?inner.state, to = ?state, failures = inner.consecutive_failures, "circuit breaker changed state");
        }
        inner.state = state;
        self.gauge.set(state.gauge_value());
    }

    /// A permit to call, or how long until a trial is allowed.
    pub fn try_call(&self) -> Result<CallPermit, Duration> {
        let mut inner = self.lock();
        match inner.state {
            BreakerState::Closed => {}
            BreakerState::Open => {
                let elapsed = inner.opened_at.map(|t| t.elapsed()).unwrap_or_default();
                if elapsed < self.cooldown {
                    return Err(self.cooldown - elapsed);
                }
                self.set(&mut inner, BreakerState::HalfOpen);
                inner.trial_in_flight = true;
            }
            BreakerState::HalfOpen => {
                if inner.trial_in_flight {
                    return Err(Duration::ZERO);
                }
                inner.trial_in_flight = true;
            }
        }
        Ok(CallPermit {
            breaker: self.clone(),
            settled: false,
        })
    }

    fn record(&self, success: bool) {
        let mut inner = self.lock();
        inner.trial_in_flight = false;
        if success {
            inner.consecutive_failures = 0;
            inner.opened_at = None;
            self.set(&mut inner, BreakerState::Closed);
            return;
        }
        inner.consecutive_failures += 1;
        let trip =
            inner.state == BreakerState::HalfOpen || inner.consecutive_failures >= self.threshold;
        if trip {
            inner.opened_at = Some(Instant::now());
            self.set(&mut inner, BreakerState::Open);
        }
    }

    /// Closes the breaker by hand (admin reset).
    pub fn reset(&self) {
        let mut inner = self.lock();
        inner.consecutive_failures = 0;
        inner.opened_at = None;
        inner.trial_in_flight = false;
        self.set(&mut inner, BreakerState::Closed);
    }

    pub fn snapshot(&self) -> BreakerSnapshot {
        let inner = self.lock();
        let retry_in = match (inner.state, inner.opened_at) {
            (BreakerState::Open, Some(at)) => {
                Some(self.cooldown.saturating_sub(at.elapsed()).as_secs_f64())
            }
            _ => None,
        };
        BreakerSnapshot {
            state: inner.state,
            consecutive_failures: inner.consecutive_failures,
            failure_threshold: self.threshold,
            cooldown_seconds: self.cooldown.as_secs_f64(),
            retry_in_seconds: retry_in,
        }
    }

    pub fn state(&self) -> BreakerState {
        self.lock().state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(cooldown: Duration) -> CircuitBreaker {
        CircuitBreaker::new(3, cooldown, IntGauge::new("g", "g").unwrap())
    }

    #[test]
    fn opens_after_threshold_consecutive_failures_only() {
        let b = breaker(Duration::from_secs(60));
        b.try_call().unwrap().failed();
        b.try_call().unwrap().failed();
        b.try_call().unwrap().succeeded();
        b.try_call().unwrap().failed();
        b.try_call().unwrap().failed();
        assert_eq!(
            b.state(),
            BreakerState::Closed,
            "a success resets the count"
        );
        b.try_call().unwrap().failed();
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.gauge.get(), 1);
        let wait = b.try_call().err().expect("refused while open");
        assert!(wait > Duration::from_secs(59));
    }

    #[test]
    fn half_open_lets_one_trial_through_and_closes_or_reopens() {
        let b = breaker(Duration::ZERO);
        for _ in 0..3 {
            b.try_call().unwrap().failed();
        }
        let trial = b.try_call().expect("cooldown over: a trial");
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(b.gauge.get(), 2);
        assert!(b.try_call().is_err(), "only one trial at a time");
        trial.failed();
        assert_eq!(b.state(), BreakerState::Open, "a failed trial reopens");
        b.try_call().unwrap().succeeded();
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.gauge.get(), 0);
    }

    #[test]
    fn an_abandoned_call_counts_as_a_failure_and_reset_closes() {
        let b = breaker(Duration::from_secs(60));
        for _ in 0..3 {
            drop(b.try_call().unwrap());
        }
        assert_eq!(b.state(), BreakerState::Open);
        b.reset();
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.try_call().is_ok());
    }
}
