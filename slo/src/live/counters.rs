//! [`CounterSource`]: SLI error ratios from the process's own registries (`aragora up`, where
//! no Prometheus scrapes), counted per SLO at each evaluation and differenced over a window.

use super::history::History;
use super::matchers::{parse_matchers, Matcher};
use super::source::{LiveError, SliSource};
use crate::model::{SliShape, Slo, SloSpec};
use prometheus::proto::MetricFamily;
use std::sync::{Mutex, RwLock};
use std::time::Duration;

/// A registry and the scrape job its samples would carry in Prometheus.
pub struct JobRegistry {
    pub job: String,
    pub registry: prometheus::Registry,
}

/// SLI error ratios from the process's own counters: every evaluation records the error and
/// total counts of each SLO; a window's ratio is the difference between now and the sample a
/// window ago (or the oldest one, early on). Samples older than the longest window are
/// dropped, and those older than six hours thinned to one per five minutes.
pub struct CounterSource {
    registries: RwLock<Vec<JobRegistry>>,
    history: Mutex<History>,
    clock: Box<dyn Fn() -> f64 + Send + Sync>,
}

impl CounterSource {
    pub fn new(registries: Vec<JobRegistry>, longest_window: Duration) -> Self {
        Self::with_clock(registries, longest_window, Box::new(unix_now))
    }

    /// With a clock of its own (seconds), for tests that move time.
    pub fn with_clock(
        registries: Vec<JobRegistry>,
        longest_window: Duration,
        clock: Box<dyn Fn() -> f64 + Send + Sync>,
    ) -> Self {
        Self {
            registries: RwLock::new(registries),
            history: Mutex::new(History::new(longest_window.as_secs_f64())),
            clock,
        }
    }

    /// Adds a component's registry (components start one after the other).
    pub fn add(&self, job: &str, registry: prometheus::Registry) {
        self.registries
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(JobRegistry {
                job: job.to_string(),
                registry,
            });
    }

    /// (errors, total) of an SLO now, from the gathered families of the job its selector names
    /// (any job when it names none). The default SLOs select `component`, which each
    /// registry puts on its own series, so they are matched like any other label.
    fn counts(slo: &Slo, gathered: &[(String, Vec<MetricFamily>)]) -> Option<(f64, f64)> {
        let shape = slo.shape.as_ref()?;
        let (metric, selector) = match shape {
            SliShape::Requests {
                metric, selector, ..
            }
            | SliShape::Latency {
                metric, selector, ..
            } => (metric, selector),
        };
        let mut matchers = parse_matchers(selector).ok()?;
        let job = matchers
            .iter()
            .position(|m| m.label == "job")
            .map(|at| matchers.remove(at));
        let families: Vec<&MetricFamily> = gathered
            .iter()
            .filter(|(name, _)| job.as_ref().is_none_or(|m| m.matches(name)))
            .flat_map(|(_, families)| families)
            .filter(|family| family.name() == metric)
            .collect();
        let error_matchers = match shape {
            SliShape::Requests { error, .. } => parse_matchers(error).ok()?,
            SliShape::Latency { .. } => Vec::new(),
        };
        let selected = |labels: &[prometheus::proto::LabelPair], matchers: &[Matcher]| {
            matchers.iter().all(|m| {
                let value = labels
                    .iter()
                    .find(|l| l.name() == m.label)
                    .map_or("", |l| l.value());
                m.matches(value)
            })
        };
        let (mut errors, mut total) = (0.0, 0.0);
        for metric in families.iter().flat_map(|f| f.get_metric()) {
            let labels = metric.get_label();
            if !selected(labels, &matchers) {
                continue;
            }
            match shape {
                SliShape::Requests { .. } => {
                    let value = metric.get_counter().get_value();
                    total += value;
                    if selected(labels, &error_matchers) {
                        errors += value;
                    }
                }
                SliShape::Latency {
                    threshold_seconds, ..
                } => {
                    let histogram = metric.get_histogram();
                    let count = histogram.get_sample_count() as f64;
                    let fast = histogram
                        .get_bucket()
                        .iter()
                        .find(|b| (b.upper_bound() - threshold_seconds).abs() < 1e-9)
                        .map_or(0.0, |b| b.cumulative_count() as f64);
                    total += count;
                    errors += count - fast;
                }
            }
        }
        Some((errors, total))
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[async_trait::async_trait]
impl SliSource for CounterSource {
    fn sample(&self, spec: &SloSpec) {
        let at = (self.clock)();
        // Each registry gathered once per sample, whatever the number of SLOs.
        let gathered: Vec<(String, Vec<MetricFamily>)> = self
            .registries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|r| (r.job.clone(), r.registry.gather()))
            .collect();
        let counts = spec
            .slos
            .iter()
            .map(|slo| (slo.name.clone(), Self::counts(slo, &gathered)))
            .collect();
        self.history
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(at, counts);
    }

    async fn error_ratio(&self, slo: &Slo, window: Duration) -> Result<Option<f64>, LiveError> {
        let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        Ok(history.error_ratio(&slo.name, window.as_secs_f64()))
    }
}
