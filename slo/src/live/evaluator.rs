//! [`Evaluator`]: every SLO's ratios, burn rates, budget and page/ticket state per window, over
//! any [`SliSource`]; kept as the latest result, published as gauges, sent to Alertmanager.

use super::alertmanager::AlertmanagerSink;
use super::gauges::SloGauges;
use super::series::{rfc3339, BurnRates, HistoryPoint, Series, SloHistory, SERIES_KEEP_SECS};
use super::source::{LiveError, SliSource, TimeRange};
use super::status::{AlertStatus, SloStatus, WindowStatus};
use crate::duration::PromDuration;
use crate::model::SloSpec;
use crate::rules::sloth::{BurnWindow, Severity, PAGE, TICKET};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Evaluates a spec's SLOs over and over and keeps the latest result.
pub struct Evaluator {
    spec: SloSpec,
    source: Arc<dyn SliSource>,
    /// Multiplies every window: 1 in production; drills and tests shrink time with it.
    window_scale: f64,
    gauges: std::sync::OnceLock<SloGauges>,
    alertmanager: Option<AlertmanagerSink>,
    latest: RwLock<Vec<SloStatus>>,
    last_error: RwLock<Option<LiveError>>,
    /// Every evaluation, bounded ([`SERIES_KEEP_SECS`]): the history when the source keeps none.
    series: RwLock<Series>,
}

/// Why a history cannot be given.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HistoryError {
    #[error("there is no SLO {slo:?}; the SLOs are {}", known.join(", "))]
    UnknownSlo { slo: String, known: Vec<String> },
    #[error("seconds is {0}; use 1 to {SERIES_KEEP_SECS} (the evaluator keeps a day)")]
    BadSpan(u64),
    #[error(transparent)]
    Source(#[from] LiveError),
}

/// Steps a Prometheus history is cut into.
const RANGE_STEPS: f64 = 240.0;

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

impl Evaluator {
    pub fn new(spec: SloSpec, source: Arc<dyn SliSource>) -> Self {
        Self {
            spec,
            source,
            window_scale: 1.0,
            gauges: std::sync::OnceLock::new(),
            alertmanager: None,
            latest: RwLock::new(Vec::new()),
            last_error: RwLock::new(None),
            series: RwLock::new(Series::default()),
        }
    }

    pub fn window_scale(mut self, scale: f64) -> Self {
        self.window_scale = scale;
        self
    }

    /// Publishes every evaluation in these gauges from now on (the first call wins).
    pub fn set_gauges(&self, gauges: SloGauges) {
        let _ = self.gauges.set(gauges);
    }

    pub fn alertmanager(mut self, url: &str) -> Self {
        self.alertmanager = Some(AlertmanagerSink::new(url));
        self
    }

    pub fn spec(&self) -> &SloSpec {
        &self.spec
    }

    fn scaled(&self, window: PromDuration) -> Duration {
        Duration::from_secs_f64((window.seconds() as f64 * self.window_scale).max(0.001))
    }

    /// One evaluation of every SLO.
    pub async fn evaluate(&self) -> Result<Vec<SloStatus>, LiveError> {
        self.source.sample(&self.spec);
        let mut statuses = Vec::new();
        for slo in &self.spec.slos {
            let budget = slo.error_budget_ratio();
            let mut windows = Vec::new();
            // The alert policy's windows, then the period (the budget's window).
            for window in Self::windows_of(slo) {
                let error_ratio = self.source.error_ratio(slo, self.scaled(window)).await?;
                windows.push(WindowStatus {
                    window: window.to_string(),
                    error_ratio,
                    burn_rate: error_ratio.map(|r| r / budget),
                });
            }
            let period = slo.period.to_string();
            let burn = |w: PromDuration| {
                windows
                    .iter()
                    .find(|s| s.window == w.to_string())
                    .and_then(|s| s.burn_rate)
                    .unwrap_or(0.0)
            };
            let alerts = [PAGE, TICKET]
                .iter()
                .map(|severity| alert_status(severity, slo.period, &burn))
                .collect();
            let remaining = windows
                .iter()
                .find(|w| w.window == period)
                .and_then(|w| w.error_ratio)
                .map(|ratio| 1.0 - ratio / budget);
            let status = SloStatus {
                sloth_id: slo.id(&self.spec.service),
                service: self.spec.service.clone(),
                slo: slo.name.clone(),
                description: slo.description.clone(),
                objective_percent: slo.objective,
                period,
                error_budget_ratio: budget,
                windows,
                error_budget_remaining_ratio: remaining,
                alerts,
            };
            if let Some(gauges) = self.gauges.get() {
                gauges.publish(&status);
            }
            statuses.push(status);
        }
        self.series
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .record(&statuses, now_secs());
        *self.latest.write().unwrap_or_else(|e| e.into_inner()) = statuses.clone();
        Ok(statuses)
    }

    /// The windows evaluated for `slo`: the alert policy's, then the period.
    fn windows_of(slo: &crate::model::Slo) -> Vec<PromDuration> {
        let mut evaluated = crate::rules::sloth::alert_windows();
        evaluated.retain(|window| *window != slo.period);
        evaluated.push(slo.period);
        evaluated
    }

    /// SLO `name`'s SLI and burn rates over the last `seconds`: from the source when it keeps
    /// history (Prometheus, `query_range`), else from this evaluator's own series.
    pub async fn history(&self, name: &str, seconds: u64) -> Result<SloHistory, HistoryError> {
        let slo = self
            .spec
            .slos
            .iter()
            .find(|slo| slo.name == name)
            .ok_or_else(|| HistoryError::UnknownSlo {
                slo: name.to_string(),
                known: self.spec.slos.iter().map(|s| s.name.clone()).collect(),
            })?;
        if !(1..=SERIES_KEEP_SECS).contains(&seconds) {
            return Err(HistoryError::BadSpan(seconds));
        }
        let end = now_secs();
        let range = TimeRange {
            start: end - seconds as f64,
            end,
            step: (seconds as f64 / RANGE_STEPS).max(1.0),
        };
        let budget = slo.error_budget_ratio();
        let mut columns = Vec::new();
        for window in Self::windows_of(slo) {
            match self
                .source
                .error_ratio_range(slo, self.scaled(window), &range)
                .await?
            {
                Some(values) => columns.push((window.to_string(), values)),
                None => {
                    return Ok(SloHistory {
                        slo: slo.name.clone(),
                        source: "live",
                        points: self
                            .series
                            .read()
                            .unwrap_or_else(|e| e.into_inner())
                            .since(&slo.name, range.start),
                    })
                }
            }
        }
        // Every column has the same steps; a step missing from one is a null there.
        let mut steps: Vec<f64> = columns
            .iter()
            .flat_map(|(_, values)| values.iter().map(|(at, _)| *at))
            .collect();
        steps.sort_by(f64::total_cmp);
        steps.dedup();
        let value_at = |values: &[(f64, Option<f64>)], at: f64| {
            values
                .iter()
                .find(|(t, _)| (*t - at).abs() < 1e-6)
                .and_then(|(_, v)| *v)
        };
        let points = steps
            .into_iter()
            .map(|at| {
                let error_ratio = columns.first().and_then(|(_, v)| value_at(v, at));
                HistoryPoint {
                    at: rfc3339(at),
                    sli: error_ratio.map(|r| 1.0 - r),
                    error_ratio,
                    burn_rates: BurnRates(
                        columns
                            .iter()
                            .map(|(w, v)| (w.clone(), value_at(v, at).map(|r| r / budget)))
                            .collect(),
                    ),
                    at_secs: at,
                }
            })
            .collect();
        Ok(SloHistory {
            slo: slo.name.clone(),
            source: "prometheus",
            points,
        })
    }

    /// The latest evaluation (empty before the first).
    pub fn latest(&self) -> Vec<SloStatus> {
        self.latest
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Why the last evaluation or alert delivery failed, if it did.
    pub fn last_error(&self) -> Option<LiveError> {
        self.last_error
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Evaluates every `interval` until `stop` turns true; failures are logged once per change
    /// and kept in [`last_error`](Self::last_error), never fatal.
    pub async fn run(
        self: Arc<Self>,
        interval: Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stop.wait_for(|stop| *stop) => return,
            }
            let outcome = match self.evaluate().await {
                Ok(statuses) => match &self.alertmanager {
                    Some(sink) => sink.send(&self.spec, &statuses, interval).await,
                    None => Ok(()),
                },
                Err(err) => Err(err),
            };
            let error = outcome.err();
            let mut last = self.last_error.write().unwrap_or_else(|e| e.into_inner());
            if *last != error {
                match &error {
                    Some(err) => {
                        tracing::warn!(error = %err, "SLO evaluation failed; retrying every interval")
                    }
                    None if last.is_some() => tracing::info!("SLO evaluation recovered"),
                    None => {}
                }
                *last = error;
            }
        }
    }
}

/// Whether a severity's alert fires, given burn rates by window.
fn alert_status(
    severity: &Severity,
    period: PromDuration,
    burn: &dyn Fn(PromDuration) -> f64,
) -> AlertStatus {
    let holds = |w: &BurnWindow| {
        let factor = w.factor(period);
        (burn(w.long) > factor && burn(w.short) > factor).then(|| {
            format!(
                "burning {:.1}x over {} and {:.1}x over {} (threshold {factor:.1}x)",
                burn(w.long),
                w.long,
                burn(w.short),
                w.short
            )
        })
    };
    let reason = holds(&severity.quick).or_else(|| holds(&severity.slow));
    AlertStatus {
        sloth_severity: severity.sloth.into(),
        severity: severity.severity.into(),
        firing: reason.is_some(),
        reason: reason.unwrap_or_else(|| "within budget".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::CounterSource;
    use crate::settings::{SloSettings, ENGINE_JOB, GATEWAY_JOB};
    use aragora_telemetry::catalogue as cat;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A gateway's and an engine's registries with the catalogue's metrics, and a clock the
    /// test moves.
    struct Rig {
        requests: prometheus::IntCounterVec,
        latency: prometheus::HistogramVec,
        debates: prometheus::IntCounterVec,
        now: Arc<AtomicU64>,
        evaluator: Evaluator,
        gauges: prometheus::Registry,
    }

    fn rig() -> Rig {
        let gateway = cat::component_registry(cat::GATEWAY);
        let engine = cat::component_registry(cat::ENGINE);
        let now = Arc::new(AtomicU64::new(1_000_000));
        let clock = now.clone();
        let source = CounterSource::with_clock(
            vec![],
            Duration::from_secs(30 * 86_400),
            Box::new(move || clock.load(Ordering::SeqCst) as f64),
        );
        source.add(GATEWAY_JOB, gateway.clone());
        source.add(ENGINE_JOB, engine.clone());
        let evaluator = Evaluator::new(SloSettings::default().default_spec(), Arc::new(source));
        let gauges = prometheus::Registry::new();
        evaluator.set_gauges(SloGauges::register(&gauges));
        Rig {
            requests: cat::HTTP_REQUESTS_TOTAL.counter(&gateway),
            latency: cat::REQUEST_LATENCY_SECONDS.histogram(&gateway),
            debates: cat::DEBATES_TOTAL.counter(&engine),
            now,
            evaluator,
            gauges,
        }
    }

    impl Rig {
        fn traffic(&self, ok: u64, failed: u64, seconds: f64) {
            let route = ["GET", "/api/debates"];
            self.requests
                .with_label_values(&[route[0], route[1], "200"])
                .inc_by(ok);
            self.requests
                .with_label_values(&[route[0], route[1], "503"])
                .inc_by(failed);
            for _ in 0..ok + failed {
                self.latency.with_label_values(&route).observe(seconds);
            }
        }

        fn advance(&self, seconds: u64) {
            self.now.fetch_add(seconds, Ordering::SeqCst);
        }

        async fn status(&self, slo: &str) -> SloStatus {
            let statuses = self.evaluator.evaluate().await.unwrap();
            statuses.into_iter().find(|s| s.slo == slo).unwrap()
        }
    }

    fn firing(status: &SloStatus, severity: &str) -> bool {
        status
            .alerts
            .iter()
            .any(|a| a.sloth_severity == severity && a.firing)
    }

    #[tokio::test]
    async fn no_traffic_is_no_data_not_an_outage() {
        let rig = rig();
        let status = rig.status("availability").await;
        assert!(status.windows.iter().all(|w| w.error_ratio.is_none()));
        assert_eq!(status.error_budget_remaining_ratio, None);
        assert!(!firing(&status, "page") && !firing(&status, "ticket"));
        rig.advance(600);
        let status = rig.status("availability").await;
        assert!(status.windows.iter().all(|w| w.burn_rate.is_none()));
    }

    #[tokio::test]
    async fn an_outage_pages_and_recovery_clears_the_page() {
        let rig = rig();
        rig.traffic(10_000, 0, 0.01);
        rig.status("availability").await;
        // An hour of total outage, sampled every minute.
        for _ in 0..60 {
            rig.advance(60);
            rig.traffic(0, 100, 0.01);
            rig.status("availability").await;
        }
        let status = rig.status("availability").await;
        let burn_5m = status.window("5m").unwrap().burn_rate.unwrap();
        assert!(burn_5m > 900.0, "all failing is a 1000x burn: {burn_5m}");
        assert!(firing(&status, "page"), "{status:#?}");
        assert!(
            status.error_budget_remaining_ratio.unwrap() < 0.0,
            "budget overspent"
        );
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&rig.gauges.gather())
            .unwrap();
        assert!(text.contains(
            "aragora_slo_alert_firing{sloth_service=\"aragora\",sloth_severity=\"page\",sloth_slo=\"availability\"} 1"
        ), "{text}");

        // Success again: the page holds until its short windows (5m, 30m) are clean, the
        // ticket longer (its 2h and 6h windows still hold the outage).
        for _ in 0..31 {
            rig.advance(60);
            rig.traffic(100, 0, 0.01);
            rig.status("availability").await;
        }
        let status = rig.status("availability").await;
        assert_eq!(status.window("5m").unwrap().error_ratio, Some(0.0));
        assert_eq!(status.window("30m").unwrap().error_ratio, Some(0.0));
        assert!(!firing(&status, "page"), "{status:#?}");
        assert!(firing(&status, "ticket"), "{status:#?}");
    }

    #[tokio::test]
    async fn slow_requests_burn_the_latency_budget_and_failed_debates_the_success_one() {
        let rig = rig();
        rig.traffic(1000, 0, 0.01);
        rig.debates.with_label_values(&["consensus"]).inc_by(90);
        rig.status("latency").await;
        rig.advance(300);
        rig.traffic(90, 0, 0.01);
        rig.traffic(10, 0, 2.0);
        rig.debates.with_label_values(&["consensus"]).inc_by(8);
        rig.debates.with_label_values(&["failed"]).inc_by(2);
        rig.debates.with_label_values(&["cancelled"]).inc_by(50);
        let latency = rig.status("latency").await;
        let ratio = latency.window("5m").unwrap().error_ratio.unwrap();
        assert!(
            (ratio - 0.10).abs() < 1e-9,
            "10 of 100 slower than 500 ms: {ratio}"
        );
        let success = rig.status("debate-success").await;
        let ratio = success.window("5m").unwrap().error_ratio.unwrap();
        assert!(
            (ratio - 0.2).abs() < 1e-9,
            "2 of 10 failed, cancelled ones aside: {ratio}"
        );
    }

    #[tokio::test]
    async fn the_windows_are_the_alert_policys_and_the_period() {
        let status = rig().status("availability").await;
        let windows: Vec<&str> = status.windows.iter().map(|w| w.window.as_str()).collect();
        assert_eq!(windows, ["5m", "30m", "1h", "2h", "6h", "1d", "3d", "30d"]);
    }
}
