//! `aragora slo check`: everything wrong with a spec, each with what to do about it.

use crate::duration::PromDuration;
use crate::model::{Slo, SloSpec};
use crate::promql::{self, WINDOW_PLACEHOLDER};
use crate::rules::infrastructure::Exporter;
use aragora_telemetry::catalogue::{self, MetricDef, MetricKind};
use std::collections::HashSet;
use std::fmt;

/// Shortest period: the longest alert window (3d) must stay well inside it.
const MIN_PERIOD: PromDuration = PromDuration::days(7);
/// Longest period: the period rule averages the 5m SLI over all of it; beyond a quarter that
/// outlives the usual Prometheus retention.
const MAX_PERIOD: PromDuration = PromDuration::days(90);

/// One thing wrong with a spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The SLO it concerns; `None` for the spec as a whole.
    pub slo: Option<String>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.slo {
            Some(slo) => write!(f, "SLO {slo:?}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Everything `check` has to say of a spec: the problems that stop it, the notes that do
/// not, and the `le` bounds of histograms outside aragora that only a Prometheus can check.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Review {
    /// What must change before rules can be generated; each once, however many queries
    /// name its cause.
    pub problems: Vec<Problem>,
    /// Accepted, but worth saying (a metric of the user's own service, not checked here).
    pub notes: Vec<Problem>,
    /// `le` matchers on histograms outside the catalogue, for [`foreign_bucket_problem`].
    pub foreign_buckets: Vec<ForeignBucket>,
}

/// An `le="<bound>"` matcher on a histogram aragora does not export (a Sloth spec of the
/// user's own service): whether the bound is one of its buckets only the Prometheus that
/// scrapes it knows.
#[derive(Debug, Clone, PartialEq)]
pub struct ForeignBucket {
    pub slo: String,
    /// The histogram's name, without `_bucket`.
    pub metric: String,
    pub bound: String,
}

/// The metric namespace of aragora's own metrics: names in it are checked against the
/// catalogue, names outside it belong to the user's services.
pub const NAMESPACE: &str = "aragora_";

/// Every problem of `spec`; empty when rules can be generated from it.
pub fn check(spec: &SloSpec) -> Vec<Problem> {
    review(spec).problems
}

/// Every problem and note of `spec`.
pub fn review(spec: &SloSpec) -> Review {
    let mut review = Review::default();
    let problems = &mut review.problems;
    let mut spec_problem = |message: String| problems.push(Problem { slo: None, message });
    if !is_slug(&spec.service) {
        spec_problem(format!(
            "service {:?} must be lower-case letters, digits, - and _ (it becomes part of sloth_id)",
            spec.service
        ));
    }
    if spec.slos.is_empty() {
        spec_problem("the spec has no SLOs; add at least one under `slos`".into());
    }
    let mut seen = HashSet::new();
    for slo in &spec.slos {
        if !seen.insert(slo.name.as_str()) {
            spec_problem(format!(
                "two SLOs are named {:?}; give each a different name",
                slo.name
            ));
        }
    }
    let mut foreign = Vec::new();
    for slo in &spec.slos {
        let mut messages = Vec::new();
        check_slo(
            slo,
            &mut messages,
            &mut foreign,
            &mut review.foreign_buckets,
        );
        review
            .problems
            .extend(messages.into_iter().map(|message| Problem {
                slo: Some(slo.name.clone()),
                message,
            }));
    }
    // One note per foreign metric for the whole spec, in the order the queries name them.
    let mut noted = HashSet::new();
    for metric in foreign {
        if noted.insert(metric.clone()) {
            // The exporters of the infrastructure alerts are known: say whose it is.
            let whose = match Exporter::of(&metric) {
                Some(exporter) => format!(
                    "a metric of {} (Debian package {}), as the infrastructure alerts read",
                    exporter.program(),
                    exporter.package()
                ),
                None => "taken as your service's own".to_string(),
            };
            review.notes.push(Problem {
                slo: None,
                message: format!(
                    "{metric} is not an aragora metric (outside the {NAMESPACE} namespace): \
                     {whose}, so its name and labels are not checked against aragora's catalogue"
                ),
            });
        }
    }
    // A cause named by several queries (the error and the total query of one SLO) is one
    // problem: printed once.
    let mut said = HashSet::new();
    review
        .problems
        .retain(|problem| said.insert((problem.slo.clone(), problem.message.clone())));
    review
        .foreign_buckets
        .dedup_by(|a, b| a.slo == b.slo && a.metric == b.metric && a.bound == b.bound);
    review
}

fn check_slo(
    slo: &Slo,
    problems: &mut Vec<String>,
    foreign: &mut Vec<String>,
    foreign_buckets: &mut Vec<ForeignBucket>,
) {
    if !is_slug(&slo.name) {
        problems.push(format!(
            "the name must be lower-case letters, digits, - and _ (it becomes sloth_slo), not {:?}",
            slo.name
        ));
    }
    if !(slo.objective > 0.0 && slo.objective < 100.0) {
        problems.push(format!(
            "objective {} is outside (0, 100); it is a percent of good events, such as 99.9 \
             (100 would leave no error budget to alert on)",
            slo.objective
        ));
    }
    check_period(slo.period, problems);
    if !slo.alerting.name.is_empty() && !is_alert_name(&slo.alerting.name) {
        problems.push(format!(
            "alerting name {:?} is not a Prometheus alert name; use letters, digits and _",
            slo.alerting.name
        ));
    }
    for query in slo.queries() {
        check_windowing(query, problems);
        for selector in promql::selectors(query) {
            if catalogue_entry(&selector.metric).is_some() || selector.metric.starts_with(NAMESPACE)
            {
                check_metric(&selector, problems);
                continue;
            }
            let (metric, suffix) = histogram_base(&selector.metric);
            foreign.push(metric.to_string());
            if suffix == "_bucket" {
                if let Some(bound) = promql::le_bound(&selector.matchers) {
                    foreign_buckets.push(ForeignBucket {
                        slo: slo.name.clone(),
                        metric: metric.to_string(),
                        bound,
                    });
                }
            }
        }
    }
}

/// A series name without its histogram suffix, and the suffix (`""` when it has none).
fn histogram_base(series: &str) -> (&str, &'static str) {
    ["_bucket", "_count", "_sum"]
        .into_iter()
        .find_map(|suffix| series.strip_suffix(suffix).map(|base| (base, suffix)))
        .unwrap_or((series, ""))
}

/// The problem of a foreign histogram's `le` bound, given the bucket bounds the Prometheus at
/// `url` has for it (`+Inf` aside); `None` when the bound is one of them.
pub fn foreign_bucket_problem(
    bucket: &ForeignBucket,
    bounds: &[f64],
    url: &str,
) -> Option<Problem> {
    let message = bucket_message(&bucket.metric, &bucket.bound, bounds)?;
    Some(Problem {
        slo: Some(bucket.slo.clone()),
        message: format!("{message} (buckets as {url} has them)"),
    })
}

fn check_period(period: PromDuration, problems: &mut Vec<String>) {
    let day = PromDuration::days(1).seconds();
    if !period.seconds().is_multiple_of(day) || period < MIN_PERIOD || period > MAX_PERIOD {
        problems.push(format!(
            "period {period} does not fit the alert windows (5m to 3d): use whole days from \
             {}d to {}d, such as 30d",
            MIN_PERIOD.seconds() / day,
            MAX_PERIOD.seconds() / day
        ));
    }
}

/// Each rule is the query with `{{.window}}` replaced by its window, so a query without the
/// placeholder, or with a fixed range, would make every window measure the same thing.
fn check_windowing(query: &str, problems: &mut Vec<String>) {
    if !query.contains(WINDOW_PLACEHOLDER) {
        problems.push(format!(
            "query `{}` has no {WINDOW_PLACEHOLDER} placeholder, so all eight windows would measure \
             the same range; write ranges as [{WINDOW_PLACEHOLDER}]",
            query.trim()
        ));
    }
    let without = query.replace(WINDOW_PLACEHOLDER, "");
    if without.contains("{{") {
        problems.push(format!(
            "query `{}` has a template placeholder other than {WINDOW_PLACEHOLDER}; it is the only one",
            query.trim()
        ));
    }
    let fixed: Vec<&str> = without
        .split('[')
        .skip(1)
        .filter_map(|rest| rest.split(']').next())
        .filter(|range| !range.is_empty())
        .collect();
    if !fixed.is_empty() {
        problems.push(format!(
            "query `{}` has a fixed range [{}]; use [{WINDOW_PLACEHOLDER}] so each window's rule \
             measures its own window",
            query.trim(),
            fixed.join("], [")
        ));
    }
}

fn check_metric(selector: &promql::Selector, problems: &mut Vec<String>) {
    let Some((def, suffix)) = catalogue_entry(&selector.metric) else {
        problems.push(format!(
            "the query names {}, which aragora does not export; use a metric of \
             telemetry/src/catalogue.rs{}",
            selector.metric,
            closest(&selector.metric)
                .map(|name| format!(" (did you mean {name}?)"))
                .unwrap_or_default()
        ));
        return;
    };
    if suffix != "_bucket" {
        return;
    }
    let Some(bound) = promql::le_bound(&selector.matchers) else {
        return;
    };
    if let Some(message) = bucket_message(def.name, &bound, def.buckets) {
        problems.push(message);
    }
}

/// What is wrong with `le="<bound>"` on histogram `metric` whose bucket bounds are `buckets`,
/// with the bounds either side to use instead; `None` when it is one of them.
fn bucket_message(metric: &str, bound: &str, buckets: &[f64]) -> Option<String> {
    let value = bound.parse::<f64>().ok();
    let on_boundary = value.is_some_and(|value| {
        buckets
            .iter()
            .any(|b| (b - value).abs() <= 1e-9 * value.abs().max(1.0))
    });
    if on_boundary {
        return None;
    }
    Some(format!(
        "le=\"{bound}\" (a latency threshold of {} ms) is not a bucket boundary of {metric}, so \
         the ratio would count the wrong requests; use {} (bounds in seconds: {buckets:?})",
        value.map_or(bound.to_string(), |s| format!("{}", s * 1000.0)),
        neighbours(buckets, value.unwrap_or(f64::NAN)),
    ))
}

/// The catalogue metric a series name belongs to, with the histogram suffix it carries
/// (`aragora_request_latency_seconds_bucket` → the histogram and `_bucket`).
pub fn catalogue_entry(series: &str) -> Option<(&'static MetricDef, &'static str)> {
    catalogue::ALL.iter().find_map(|def| {
        if def.name == series {
            return Some((def, ""));
        }
        if def.kind != MetricKind::Histogram {
            return None;
        }
        ["_bucket", "_count", "_sum"]
            .into_iter()
            .find(|suffix| series.strip_suffix(suffix) == Some(def.name))
            .map(|suffix| (def, suffix))
    })
}

/// The catalogue name sharing the most words with `name` (`aragora_requests_total`, the
/// seeds' spelling, finds `aragora_http_requests_total`).
fn closest(name: &str) -> Option<&'static str> {
    let words = |text: &str| -> HashSet<String> {
        text.split('_')
            .filter(|word| *word != "aragora")
            .map(str::to_string)
            .collect()
    };
    let wanted = words(name);
    catalogue::ALL
        .iter()
        .map(|def| (words(def.name).intersection(&wanted).count(), def.name))
        .filter(|(shared, _)| *shared > 0)
        .max_by_key(|(shared, _)| *shared)
        .map(|(_, name)| name)
}

/// "300 ms or 500 ms": the bucket bounds either side of `seconds`.
fn neighbours(buckets: &[f64], seconds: f64) -> String {
    let below = buckets.iter().rev().find(|b| **b < seconds);
    let above = buckets.iter().find(|b| **b > seconds);
    let ms = |b: &f64| format!("{} ms", b * 1000.0);
    match (below, above) {
        (Some(b), Some(a)) => format!("{} or {}", ms(b), ms(a)),
        (Some(b), None) => ms(b),
        (None, Some(a)) => ms(a),
        (None, None) => "a bucket bound".into(),
    }
}

fn is_slug(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn is_alert_name(text: &str) -> bool {
    text.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}
