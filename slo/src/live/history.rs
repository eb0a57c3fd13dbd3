//! [`History`]: the error and total counts of each SLO at past evaluations, thinned as they age,
//! so a window's ratio is the difference between now and a window ago (what `rate()` over a
//! counter would say, without extrapolation).

use std::collections::{HashMap, VecDeque};

/// Error and total counts of each SLO (by name) at one moment; None when its SLI cannot be
/// counted from the registries.
#[derive(Debug, Clone)]
struct Sample {
    at: f64,
    counts: HashMap<String, Option<(f64, f64)>>,
}

/// Samples newest last. Those older than the longest window are dropped, and those older than
/// six hours thinned to one per five minutes.
pub struct History {
    samples: VecDeque<Sample>,
    keep_for: f64,
}

/// Beyond six hours one sample per five minutes is enough for the long windows.
const FINE_FOR_SECS: f64 = 6.0 * 3600.0;
const COARSE_STEP_SECS: f64 = 300.0;

impl History {
    /// Keeps samples `keep_for` seconds (the longest window) back.
    pub fn new(keep_for: f64) -> Self {
        Self {
            samples: VecDeque::new(),
            keep_for,
        }
    }

    /// Records the counts at `at` (seconds), then drops and thins old samples.
    pub fn record(&mut self, at: f64, counts: HashMap<String, Option<(f64, f64)>>) {
        self.samples.push_back(Sample { at, counts });
        while self
            .samples
            .front()
            .is_some_and(|oldest| at - oldest.at > self.keep_for + COARSE_STEP_SECS)
        {
            self.samples.pop_front();
        }
        let fine_after = at - FINE_FOR_SECS;
        let mut last_kept = f64::MIN;
        self.samples.retain(|sample| {
            if sample.at >= fine_after || sample.at - last_kept >= COARSE_STEP_SECS {
                last_kept = sample.at;
                true
            } else {
                false
            }
        });
    }

    /// The error ratio of `slo` over the last `window` seconds: from the newest sample at or
    /// before the window's start (the oldest one early on) to the newest. None without events
    /// or across a counter reset.
    pub fn error_ratio(&self, slo: &str, window: f64) -> Option<f64> {
        let newest = self.samples.back()?;
        let counts_of = |sample: &Sample| sample.counts.get(slo).copied().flatten();
        let since = newest.at - window;
        let start = self
            .samples
            .iter()
            .rev()
            .find(|s| s.at <= since)
            .or_else(|| self.samples.front());
        let (now, then) = (counts_of(newest)?, start.and_then(counts_of)?);
        let (errors, total) = (now.0 - then.0, now.1 - then.1);
        // A counter that went down was reset (a restart): no judgement across it.
        if total <= 0.0 || errors < 0.0 {
            return None;
        }
        Some(errors / total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(errors: f64, total: f64) -> HashMap<String, Option<(f64, f64)>> {
        HashMap::from([("a".to_string(), Some((errors, total)))])
    }

    #[test]
    fn a_window_differences_counts_and_a_reset_is_no_data() {
        let mut history = History::new(3600.0);
        history.record(0.0, counts(0.0, 100.0));
        history.record(60.0, counts(5.0, 200.0));
        assert_eq!(history.error_ratio("a", 60.0), Some(0.05));
        history.record(120.0, counts(0.0, 10.0));
        assert_eq!(history.error_ratio("a", 60.0), None, "counter reset");
        assert_eq!(history.error_ratio("b", 60.0), None, "unknown SLO");
    }

    #[test]
    fn old_samples_are_thinned_then_dropped() {
        let mut history = History::new(86_400.0);
        for minute in 0..(24 * 60 + 10) {
            history.record(minute as f64 * 60.0, counts(0.0, minute as f64));
        }
        let coarse = history
            .samples
            .iter()
            .filter(|s| s.at < history.samples.back().unwrap().at - FINE_FOR_SECS)
            .count();
        assert!(
            coarse <= 18 * 12 + 2,
            "one per five minutes past six hours: {coarse}"
        );
        let (oldest, newest) = (
            history.samples.front().unwrap().at,
            history.samples.back().unwrap().at,
        );
        assert!(oldest > 0.0, "the first samples were dropped");
        assert!(newest - oldest <= 86_400.0 + COARSE_STEP_SECS);
    }
}
