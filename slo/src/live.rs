//! Live SLO evaluation: for every SLO, the SLI error ratio and burn rate per window, the error
//! budget left, and whether the page and ticket burn-rate alerts would fire, computed the way
//! the generated rules compute them.
//!
//! Two sources of SLI numbers: [`CounterSource`] reads the process's own registries (the
//! gateway's and the engine's, in `aragora up`, where there is no Prometheus) and keeps a
//! history of counts to difference; [`PrometheusSource`] asks a Prometheus server over its
//! HTTP API. [`Evaluator`] turns either into [`SloStatus`]es, `aragora_slo_*` gauges and,
//! when an Alertmanager is configured, alerts posted to its API.

use crate::duration::PromDuration;
use crate::model::{Sli, SliShape, Slo, SloSpec};
use crate::promql::WINDOW_PLACEHOLDER;
use crate::rules::sloth::{BurnWindow, Severity, PAGE, TICKET};
use prometheus::proto::MetricFamily;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// The windows of Sloth's SLI recording rules below the period.
pub const WINDOWS: &[PromDuration] = &[
    PromDuration::minutes(5),
    PromDuration::minutes(30),
    PromDuration::hours(1),
    PromDuration::hours(2),
    PromDuration::hours(6),
    PromDuration::days(1),
    PromDuration::days(3),
];

/// One window of one SLO.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct WindowStatus {
    pub window: String,
    /// Failed share of events in the window; None without events (no traffic is not an outage).
    pub error_ratio: Option<f64>,
    /// `error_ratio` over the error budget: 1 spends the budget exactly over the period.
    pub burn_rate: Option<f64>,
}

/// A burn-rate alert of one SLO and whether it fires now.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct AlertStatus {
    /// `page` or `ticket` (Sloth's `sloth_severity`).
    pub sloth_severity: String,
    /// `critical` or `warning`, what Alertmanager routes on.
    pub severity: String,
    pub firing: bool,
    /// Which condition holds (or none), in words.
    pub reason: String,
}

/// Everything known about one SLO now.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct SloStatus {
    pub sloth_id: String,
    pub service: String,
    pub slo: String,
    pub description: String,
    pub objective_percent: f64,
    pub period: String,
    pub error_budget_ratio: f64,
    pub windows: Vec<WindowStatus>,
    /// Share of the period's budget not spent yet (negative once overspent).
    pub error_budget_remaining_ratio: Option<f64>,
    pub alerts: Vec<AlertStatus>,
}

impl SloStatus {
    pub fn window(&self, name: &str) -> Option<&WindowStatus> {
        self.windows.iter().find(|w| w.window == name)
    }
}

/// Where SLI error ratios come from.
#[async_trait::async_trait]
pub trait SliSource: Send + Sync {
    /// The SLI's error ratio over the last `window`, None when there were no events.
    async fn error_ratio(&self, slo: &Slo, window: Duration) -> Result<Option<f64>, String>;

    /// Called once per evaluation before any `error_ratio`: a moment to sample counters.
    fn sample(&self, _spec: &SloSpec) {}
}

/// SLI error ratios from a Prometheus server's `/api/v1/query`, with the spec's own queries.
pub struct PrometheusSource {
    client: reqwest::Client,
    base_url: String,
}

impl PrometheusSource {
    pub fn new(base_url: &str) -> Self {
        Self {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("an HTTP client"),
            base_url: base_url.trim_end_matches('/').to_string(),
        }
    }

    /// The query of the SLI's error ratio over `window`, as the recording rule has it.
    pub fn query(slo: &Slo, window: Duration) -> String {
        let range = PromDuration(window.as_secs().max(1)).to_string();
        let fill = |query: &str| query.replace(WINDOW_PLACEHOLDER, &range);
        match &slo.sli {
            Sli::Events {
                error_query,
                total_query,
            } => format!("({}) / ({})", fill(error_query), fill(total_query)),
            Sli::Raw { error_ratio_query } => fill(error_ratio_query),
        }
    }
}

#[async_trait::async_trait]
impl SliSource for PrometheusSource {
    async fn error_ratio(&self, slo: &Slo, window: Duration) -> Result<Option<f64>, String> {
        let url = format!("{}/api/v1/query", self.base_url);
        let response = self
            .client
            .get(&url)
            .query(&[("query", Self::query(slo, window))])
            .send()
            .await
            .map_err(|err| format!("Prometheus at {} does not answer: {err}", self.base_url))?;
        let body: serde_json::Value = response
            .json()
            .await
            .map_err(|err| format!("Prometheus answered something that is not JSON: {err}"))?;
        if body["status"] != "success" {
            return Err(format!(
                "Prometheus refused the query of SLO {}: {}",
                slo.name, body["error"]
            ));
        }
        let value = body["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok());
        Ok(value.filter(|v| v.is_finite()))
    }
}

/// One label matcher of a selector (`status=~"5.."`).
#[derive(Debug, Clone)]
struct Matcher {
    label: String,
    regex: Option<regex::Regex>,
    value: String,
    negate: bool,
}

impl Matcher {
    fn matches(&self, value: &str) -> bool {
        let hit = match &self.regex {
            Some(regex) => regex.is_match(value),
            None => self.value == value,
        };
        hit != self.negate
    }
}

/// `a="x",b=~"y|z"` into matchers; PromQL regexes are anchored.
fn parse_matchers(text: &str) -> Result<Vec<Matcher>, String> {
    let mut matchers = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let op_at = rest
            .find(['=', '!'])
            .ok_or_else(|| format!("no operator in matcher {rest:?}"))?;
        let label = rest[..op_at].trim().to_string();
        let after = &rest[op_at..];
        let (op, after) = ["=~", "!~", "!=", "="]
            .iter()
            .find_map(|op| after.strip_prefix(op).map(|a| (*op, a)))
            .ok_or_else(|| format!("bad operator in matcher {rest:?}"))?;
        let after = after.trim_start();
        let quote = after.chars().next().filter(|c| *c == '"' || *c == '\'');
        let quote = quote.ok_or_else(|| format!("unquoted value in matcher {rest:?}"))?;
        let end = after[1..]
            .find(quote)
            .ok_or_else(|| format!("unterminated value in matcher {rest:?}"))?;
        let value = after[1..1 + end].to_string();
        let regex = match op {
            "=~" | "!~" => Some(
                regex::Regex::new(&format!("^(?:{value})$"))
                    .map_err(|err| format!("bad regex {value:?}: {err}"))?,
            ),
            _ => None,
        };
        matchers.push(Matcher {
            label,
            regex,
            value,
            negate: op.starts_with('!'),
        });
        rest = after[1 + end + 1..]
            .trim_start()
            .trim_start_matches(',')
            .trim();
    }
    Ok(matchers)
}

/// A registry and the scrape job its samples would carry in Prometheus.
pub struct JobRegistry {
    pub job: String,
    pub registry: prometheus::Registry,
}

/// Error and total counts of each SLO (by name) at one moment.
#[derive(Debug, Clone)]
struct Sample {
    at: f64,
    counts: std::collections::HashMap<String, Option<(f64, f64)>>,
}

/// SLI error ratios from the process's own counters: every evaluation records the error and
/// total counts of each SLO; a window's ratio is the difference between now and the sample a
/// window ago (or the oldest one, early on). Samples older than the longest window are
/// dropped, and those older than six hours thinned to one per five minutes.
pub struct CounterSource {
    registries: RwLock<Vec<JobRegistry>>,
    history: Mutex<VecDeque<Sample>>,
    clock: Box<dyn Fn() -> f64 + Send + Sync>,
    keep_for: f64,
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
            history: Mutex::new(VecDeque::new()),
            clock,
            keep_for: longest_window.as_secs_f64(),
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

    /// (errors, total) of an SLO now, from the gathered families of the job its selector names.
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
        let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        history.push_back(Sample { at, counts });
        while history
            .front()
            .is_some_and(|oldest| at - oldest.at > self.keep_for + 300.0)
        {
            history.pop_front();
        }
        // Thin what is older than six hours to one sample per five minutes.
        let fine_after = at - 6.0 * 3600.0;
        let mut last_kept = f64::MIN;
        history.retain(|sample| {
            if sample.at >= fine_after || sample.at - last_kept >= 300.0 {
                last_kept = sample.at;
                true
            } else {
                false
            }
        });
    }

    async fn error_ratio(&self, slo: &Slo, window: Duration) -> Result<Option<f64>, String> {
        let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        let Some(newest) = history.back() else {
            return Ok(None);
        };
        let counts_of = |sample: &Sample| sample.counts.get(&slo.name).copied().flatten();
        let since = newest.at - window.as_secs_f64();
        // The newest sample at or before the window's start; the oldest one early on.
        let start = history
            .iter()
            .rev()
            .find(|s| s.at <= since)
            .or_else(|| history.front());
        let (Some(now), Some(then)) = (counts_of(newest), start.and_then(counts_of)) else {
            return Ok(None);
        };
        let (errors, total) = (now.0 - then.0, now.1 - then.1);
        // A counter that went down was reset (a restart): no judgement across it.
        if total <= 0.0 || errors < 0.0 {
            return Ok(None);
        }
        Ok(Some(errors / total))
    }
}

/// The `aragora_slo_*` gauges, registered in the registry the caller serves.
#[derive(Clone)]
pub struct SloGauges {
    sli_error_ratio: prometheus::GaugeVec,
    burn_rate: prometheus::GaugeVec,
    budget_remaining: prometheus::GaugeVec,
    objective: prometheus::GaugeVec,
    alert_firing: prometheus::GaugeVec,
}

impl SloGauges {
    pub fn register(registry: &prometheus::Registry) -> Self {
        use aragora_telemetry::catalogue as cat;
        Self {
            sli_error_ratio: cat::SLO_SLI_ERROR_RATIO.float_gauge_vec(registry),
            burn_rate: cat::SLO_BURN_RATE.float_gauge_vec(registry),
            budget_remaining: cat::SLO_ERROR_BUDGET_REMAINING_RATIO.float_gauge_vec(registry),
            objective: cat::SLO_OBJECTIVE_RATIO.float_gauge_vec(registry),
            alert_firing: cat::SLO_ALERT_FIRING.float_gauge_vec(registry),
        }
    }

    fn publish(&self, status: &SloStatus) {
        let (service, slo) = (status.service.as_str(), status.slo.as_str());
        self.objective
            .with_label_values(&[service, slo])
            .set(status.objective_percent / 100.0);
        // No events: the series is removed rather than showing a made-up zero.
        let set = |gauge: &prometheus::GaugeVec, labels: &[&str], value: Option<f64>| match value {
            Some(value) => gauge.with_label_values(labels).set(value),
            None => {
                let _ = gauge.remove_label_values(labels);
            }
        };
        for window in &status.windows {
            let labels = [service, slo, window.window.as_str()];
            set(&self.sli_error_ratio, &labels, window.error_ratio);
            set(&self.burn_rate, &labels, window.burn_rate);
        }
        set(
            &self.budget_remaining,
            &[service, slo],
            status.error_budget_remaining_ratio,
        );
        for alert in &status.alerts {
            self.alert_firing
                .with_label_values(&[service, slo, alert.sloth_severity.as_str()])
                .set(if alert.firing { 1.0 } else { 0.0 });
        }
    }
}

/// Posts firing and resolved SLO alerts to an Alertmanager's `/api/v2/alerts`, as Prometheus
/// does: a firing alert is re-sent every evaluation with an end a few intervals ahead (so it
/// resolves by itself if aragora stops), a cleared one once with its end set to now.
pub struct AlertmanagerSink {
    client: reqwest::Client,
    url: String,
    /// Alerts sent as firing last time, by (alertname, sloth_slo, sloth_severity).
    firing: Mutex<std::collections::HashMap<(String, String, String), serde_json::Value>>,
}

impl AlertmanagerSink {
    pub fn new(base_url: &str) -> Self {
        Self {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("an HTTP client"),
            url: format!("{}/api/v2/alerts", base_url.trim_end_matches('/')),
            firing: Mutex::new(Default::default()),
        }
    }

    async fn send(
        &self,
        spec: &SloSpec,
        statuses: &[SloStatus],
        interval: Duration,
    ) -> Result<(), String> {
        let now = chrono::Utc::now();
        let ends = now + chrono::Duration::from_std(interval * 4).unwrap_or_default();
        let mut batch = Vec::new();
        let mut still_firing = std::collections::HashMap::new();
        for (slo, status) in spec.slos.iter().zip(statuses) {
            let ctx = crate::rules::sloth::Ctx::new(spec, slo);
            for alert in status.alerts.iter().filter(|a| a.firing) {
                let mut labels = serde_json::Map::new();
                for (name, value) in &ctx.labels {
                    labels.insert(name.clone(), value.clone().into());
                }
                labels.insert("alertname".into(), ctx.alert_name().into());
                labels.insert("severity".into(), alert.severity.clone().into());
                labels.insert("sloth_severity".into(), alert.sloth_severity.clone().into());
                let burn = status.window("5m").and_then(|w| w.burn_rate).unwrap_or(0.0);
                let body = serde_json::json!({
                    "labels": labels,
                    "annotations": {
                        "summary": format!("{} SLO {} error budget burn rate is too high", status.service, status.slo),
                        "description": format!("{}; current burn rate {burn:.2}x (5m)", alert.reason),
                        "runbook_url": format!("{}#{}", crate::rules::sloth::RUNBOOK_URL, ctx.alert_name().to_lowercase()),
                    },
                    "startsAt": now.to_rfc3339(),
                    "endsAt": ends.to_rfc3339(),
                    "generatorURL": "aragora://slo/live",
                });
                let key = (
                    ctx.alert_name(),
                    status.slo.clone(),
                    alert.sloth_severity.to_string(),
                );
                still_firing.insert(key, body.clone());
                batch.push(body);
            }
        }
        {
            let mut firing = self.firing.lock().unwrap_or_else(|e| e.into_inner());
            for (key, mut body) in firing.drain() {
                if !still_firing.contains_key(&key) {
                    body["endsAt"] = now.to_rfc3339().into();
                    batch.push(body);
                }
            }
            *firing = still_firing;
        }
        if batch.is_empty() {
            return Ok(());
        }
        let response = self
            .client
            .post(&self.url)
            .json(&batch)
            .send()
            .await
            .map_err(|err| format!("Alertmanager at {} does not answer: {err}", self.url))?;
        if !response.status().is_success() {
            return Err(format!(
                "Alertmanager refused the alerts ({}): {}",
                response.status(),
                response.text().await.unwrap_or_default()
            ));
        }
        Ok(())
    }
}

/// How the live evaluation runs (`aragora up`, `aragora serve`).
#[derive(Debug, Clone, PartialEq)]
pub struct LiveSettings {
    pub evaluation_interval_secs: u64,
    pub window_scale: f64,
    pub prometheus_url: Option<String>,
    pub alertmanager_url: Option<String>,
}

impl Default for LiveSettings {
    fn default() -> Self {
        Self {
            evaluation_interval_secs: 10,
            window_scale: 1.0,
            prometheus_url: None,
            alertmanager_url: None,
        }
    }
}

aragora_config::settings! {
    LiveSettings;
    evaluation_interval_secs: ["ARAGORA_SLO_EVALUATION_INTERVAL"] "Seconds between live SLO evaluations (GET /api/slo, aragora_slo_* gauges, alerts to Alertmanager).";
    window_scale: ["ARAGORA_SLO_WINDOW_SCALE"] "Multiplies every SLO window in the live evaluation; 1 in production, below 1 to rehearse burn-rate alerts in minutes.";
    prometheus_url: ["ARAGORA_PROMETHEUS_URL"] "Evaluate SLOs over this Prometheus' HTTP API instead of the process's own counters (required for `aragora serve`).";
    alertmanager_url: ["ARAGORA_ALERTMANAGER_URL"] "Send the live evaluation's burn-rate alerts to this Alertmanager (its /api/v2/alerts); none by default.";
}

impl LiveSettings {
    /// Defaults, then the environment; every problem at once.
    pub fn from_env(
        env: &std::collections::HashMap<String, String>,
    ) -> Result<Self, Vec<aragora_config::ConfigProblem>> {
        let mut settings = Self::default();
        let mut problems = Vec::new();
        settings.apply_env(env, &mut problems);
        if settings.evaluation_interval_secs == 0 {
            problems.push(aragora_config::ConfigProblem::new(
                "ARAGORA_SLO_EVALUATION_INTERVAL",
                "is 0; use at least 1 second",
            ));
        }
        if !(settings.window_scale > 0.0 && settings.window_scale <= 1.0) {
            problems.push(aragora_config::ConfigProblem::new(
                "ARAGORA_SLO_WINDOW_SCALE",
                format!(
                    "is {}; use a number in (0, 1] (1 is real time)",
                    settings.window_scale
                ),
            ));
        }
        for (key, url) in [
            ("ARAGORA_PROMETHEUS_URL", &settings.prometheus_url),
            ("ARAGORA_ALERTMANAGER_URL", &settings.alertmanager_url),
        ] {
            if let Some(url) = url {
                if !aragora_config::is_http_url(url) {
                    problems.push(aragora_config::ConfigProblem::new(
                        key,
                        format!("is {url:?}; use an http:// or https:// URL"),
                    ));
                }
            }
        }
        aragora_config::checked(settings, problems)
    }
}

/// Evaluates a spec's SLOs over and over and keeps the latest result.
pub struct Evaluator {
    spec: SloSpec,
    source: Arc<dyn SliSource>,
    /// Multiplies every window: 1 in production; drills and tests shrink time with it.
    window_scale: f64,
    gauges: std::sync::OnceLock<SloGauges>,
    alertmanager: Option<AlertmanagerSink>,
    latest: RwLock<Vec<SloStatus>>,
    last_error: RwLock<Option<String>>,
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
    pub async fn evaluate(&self) -> Result<Vec<SloStatus>, String> {
        self.source.sample(&self.spec);
        let mut statuses = Vec::new();
        for slo in &self.spec.slos {
            let budget = slo.error_budget_ratio();
            let mut windows = Vec::new();
            for window in WINDOWS.iter().chain(std::iter::once(&slo.period)) {
                if windows
                    .iter()
                    .any(|w: &WindowStatus| w.window == window.to_string())
                {
                    continue;
                }
                let error_ratio = self.source.error_ratio(slo, self.scaled(*window)).await?;
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
        *self.latest.write().unwrap_or_else(|e| e.into_inner()) = statuses.clone();
        Ok(statuses)
    }

    /// The latest evaluation (empty before the first).
    pub fn latest(&self) -> Vec<SloStatus> {
        self.latest
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Why the last evaluation or alert delivery failed, if it did.
    pub fn last_error(&self) -> Option<String> {
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

/// A plain-text table of statuses, for `aragora slo status`.
pub fn render_table(statuses: &[SloStatus]) -> String {
    let percent = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.3}%", v * 100.0));
    let times = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}x"));
    let mut out = format!(
        "{:<16} {:>9} {:>10} {:>10} {:>8} {:>8} {:>8} {:>8}  {}\n",
        "SLO",
        "OBJECTIVE",
        "ERR 30D",
        "BUDGET",
        "BURN 5M",
        "BURN 1H",
        "BURN 6H",
        "BURN 3D",
        "ALERTS"
    );
    for status in statuses {
        let window = |name: &str| status.window(name).cloned();
        let firing: Vec<&str> = status
            .alerts
            .iter()
            .filter(|a| a.firing)
            .map(|a| a.sloth_severity.as_str())
            .collect();
        out.push_str(&format!(
            "{:<16} {:>8}% {:>10} {:>10} {:>8} {:>8} {:>8} {:>8}  {}\n",
            status.slo,
            status.objective_percent,
            percent(window(&status.period).and_then(|w| w.error_ratio)),
            percent(status.error_budget_remaining_ratio),
            times(window("5m").and_then(|w| w.burn_rate)),
            times(window("1h").and_then(|w| w.burn_rate)),
            times(window("6h").and_then(|w| w.burn_rate)),
            times(window("3d").and_then(|w| w.burn_rate)),
            if firing.is_empty() {
                "none".to_string()
            } else {
                firing.join(", ")
            },
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let gateway = prometheus::Registry::new();
        let engine = prometheus::Registry::new();
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

    #[test]
    fn prometheus_queries_fill_the_window() {
        let spec = SloSettings::default().default_spec();
        let query = PrometheusSource::query(&spec.slos[0], Duration::from_secs(3600));
        assert!(
            query.contains("[1h]") && !query.contains(WINDOW_PLACEHOLDER),
            "{query}"
        );
        assert!(query.starts_with('(') && query.contains(") / ("), "{query}");
    }

    #[test]
    fn matchers_follow_promql() {
        let matchers = parse_matchers(r#"job="a", status=~"5..",outcome!="cancelled""#).unwrap();
        assert_eq!(matchers.len(), 3);
        assert!(
            matchers[1].matches("503") && !matchers[1].matches("1503"),
            "anchored"
        );
        assert!(!matchers[2].matches("cancelled") && matchers[2].matches("failed"));
        assert!(parse_matchers("status=5").is_err(), "unquoted value");
    }

    #[test]
    fn live_settings_are_validated_and_documented() {
        let problems = LiveSettings::from_env(&aragora_config::env_map(&[
            ("ARAGORA_SLO_WINDOW_SCALE", "2"),
            ("ARAGORA_ALERTMANAGER_URL", "localhost:9093"),
        ]))
        .unwrap_err();
        let named: Vec<&str> = problems.iter().map(|p| p.setting.as_str()).collect();
        assert_eq!(
            named,
            ["ARAGORA_SLO_WINDOW_SCALE", "ARAGORA_ALERTMANAGER_URL"]
        );
        let readme = include_str!("../../README.md");
        for setting in SETTINGS {
            assert!(
                readme.contains(&format!("| `{}` |", setting.key)),
                "{}",
                setting.key
            );
        }
    }
}
