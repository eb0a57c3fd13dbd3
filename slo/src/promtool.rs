//! promtool unit tests generated beside the rules: for every alert, series that must fire it
//! and series that must not (zero traffic, a short blip, a burn below the alert's rate).

use crate::duration::PromDuration;
use crate::model::{Labels, SliShape, SloSpec};
use crate::rules::operational::{OperationalAlert, Scenario};
use crate::rules::sloth::{Ctx, Severity, PAGE, TICKET};
use crate::rules::{expand_labels, merge};
use serde::Serialize;

/// Evaluation step of the tests and of the input series.
const STEP: &str = "1m";
/// Requests (or debates) a minute in the synthetic SLO series.
const EVENTS_PER_MINUTE: f64 = 1000.0;

#[derive(Debug, Serialize)]
pub struct TestFile {
    pub rule_files: Vec<String>,
    pub evaluation_interval: String,
    pub tests: Vec<TestGroup>,
}

#[derive(Debug, Serialize)]
pub struct TestGroup {
    pub name: String,
    pub interval: String,
    pub input_series: Vec<InputSeries>,
    pub alert_rule_test: Vec<AlertTest>,
}

#[derive(Debug, Serialize)]
pub struct InputSeries {
    pub series: String,
    pub values: String,
}

#[derive(Debug, Serialize)]
pub struct AlertTest {
    pub eval_time: String,
    pub alertname: String,
    pub exp_alerts: Vec<ExpectedAlert>,
}

#[derive(Debug, Serialize)]
pub struct ExpectedAlert {
    pub exp_labels: Labels,
    pub exp_annotations: Labels,
}

/// Tests of the operational alerts.
pub fn operational_tests(rule_file: &str, alerts: &[OperationalAlert]) -> TestFile {
    let tests = alerts
        .iter()
        .flat_map(|alert| {
            std::iter::once((&alert.fires, true))
                .chain(alert.quiet.iter().map(|s| (s, false)))
                .map(move |(scenario, fires)| operational_group(alert, scenario, fires))
        })
        .collect();
    test_file(rule_file, tests)
}

fn operational_group(alert: &OperationalAlert, scenario: &Scenario, fires: bool) -> TestGroup {
    let expected: Vec<ExpectedAlert> = scenario
        .firing
        .iter()
        .map(|series_labels| {
            let labels = alert.alert_labels(series_labels);
            let annotations = alert
                .annotations()
                .into_iter()
                .map(|(k, v)| (k, expand_labels(&v, &labels)))
                .collect();
            ExpectedAlert {
                exp_labels: labels,
                exp_annotations: annotations,
            }
        })
        .collect();
    TestGroup {
        name: format!(
            "{} {}: {}",
            alert.name,
            if fires { "fires" } else { "stays quiet" },
            scenario.name
        ),
        interval: STEP.into(),
        input_series: scenario
            .series
            .iter()
            .map(|(series, values)| InputSeries {
                series: series.clone(),
                values: values.clone(),
            })
            .collect(),
        alert_rule_test: scenario
            .eval_at
            .iter()
            .map(|at| AlertTest {
                eval_time: at.to_string(),
                alertname: alert.name.into(),
                exp_alerts: if fires {
                    expected.iter().map(ExpectedAlert::clone_of).collect()
                } else {
                    Vec::new()
                },
            })
            .collect(),
    }
}

impl ExpectedAlert {
    fn clone_of(&self) -> Self {
        Self {
            exp_labels: self.exp_labels.clone(),
            exp_annotations: self.exp_annotations.clone(),
        }
    }
}

/// A stretch of time with a constant share of bad events.
#[derive(Debug, Clone, Copy)]
struct Phase {
    minutes: u64,
    error_ratio: f64,
}

/// One SLO scenario: phases, when to look, and which alerts must then fire.
struct SloScenario {
    name: &'static str,
    phases: Vec<Phase>,
    eval_at: Vec<PromDuration>,
    firing: Vec<Severity>,
}

fn slo_scenarios(budget: f64) -> Vec<SloScenario> {
    let phase = |minutes, error_ratio| Phase {
        minutes,
        error_ratio,
    };
    vec![
        SloScenario {
            name: "total outage pages (and tickets)",
            phases: vec![phase(20, 1.0)],
            eval_at: vec![PromDuration::minutes(10)],
            firing: vec![PAGE, TICKET],
        },
        SloScenario {
            name: "a steady 2x burn opens a ticket, no page",
            phases: vec![phase(90, 2.0 * budget)],
            eval_at: vec![PromDuration::minutes(80)],
            firing: vec![TICKET],
        },
        SloScenario {
            name: "zero traffic stays quiet",
            phases: vec![phase(60, 0.0)],
            eval_at: vec![PromDuration::minutes(10), PromDuration::minutes(50)],
            firing: vec![],
        },
        SloScenario {
            // 20x the budget for 5 minutes after 6 quiet hours: the short windows see it,
            // the long ones do not, so nothing fires.
            name: "a 5-minute blip after quiet hours stays quiet",
            phases: vec![
                phase(360, 0.0),
                phase(5, (20.0 * budget).min(1.0)),
                phase(40, 0.0),
            ],
            eval_at: vec![PromDuration::minutes(363), PromDuration::minutes(400)],
            firing: vec![],
        },
    ]
}

/// Tests of the SLO alerts, for each SLO whose SLI shape says which series to synthesise.
pub fn slo_tests(rule_file: &str, spec: &SloSpec) -> TestFile {
    let mut tests = Vec::new();
    for slo in &spec.slos {
        let Some(shape) = &slo.shape else { continue };
        let ctx = Ctx::new(spec, slo);
        let budget = slo.error_budget_ratio();
        for scenario in slo_scenarios(budget) {
            let alertname = ctx.alert_name();
            let exp_alerts = |at: PromDuration| -> Vec<ExpectedAlert> {
                let ratio = ratio_at(&scenario.phases, at);
                scenario
                    .firing
                    .iter()
                    .map(|severity| {
                        let labels = merge(&[&ctx.labels, &ctx.alert_labels(*severity)]);
                        let annotations = ctx
                            .alert_annotations(*severity)
                            .into_iter()
                            .map(|(k, v)| {
                                let v = if k == "current_burn_rate" {
                                    format!("{:.1}x", ratio / budget)
                                } else {
                                    expand_labels(&v, &labels)
                                };
                                (k, v)
                            })
                            .collect();
                        ExpectedAlert {
                            exp_labels: labels,
                            exp_annotations: annotations,
                        }
                    })
                    .collect()
            };
            tests.push(TestGroup {
                name: format!("{alertname} ({}): {}", slo.name, scenario.name),
                interval: STEP.into(),
                input_series: slo_series(shape, &scenario.phases),
                alert_rule_test: scenario
                    .eval_at
                    .iter()
                    .map(|at| AlertTest {
                        eval_time: at.to_string(),
                        alertname: alertname.clone(),
                        exp_alerts: exp_alerts(*at),
                    })
                    .collect(),
            });
        }
    }
    test_file(rule_file, tests)
}

fn ratio_at(phases: &[Phase], at: PromDuration) -> f64 {
    let mut end = 0;
    for phase in phases {
        end += phase.minutes * 60;
        if at.seconds() <= end {
            return phase.error_ratio;
        }
    }
    phases.last().map(|p| p.error_ratio).unwrap_or(0.0)
}

/// The counters of `shape` through `phases`: good and bad events, or fast and all requests.
fn slo_series(shape: &SliShape, phases: &[Phase]) -> Vec<InputSeries> {
    let bad = |p: &Phase| p.error_ratio * EVENTS_PER_MINUTE;
    let good = |p: &Phase| (1.0 - p.error_ratio) * EVENTS_PER_MINUTE;
    let all = |_: &Phase| EVENTS_PER_MINUTE;
    match shape {
        SliShape::Requests {
            metric,
            selector,
            error,
        } => {
            let base = equality_labels(selector);
            let (error_label, error_value) = example_match(error);
            let good_value = good_example(&error_label);
            vec![
                InputSeries {
                    series: series_name(metric, &base, &[(&error_label, good_value)]),
                    values: counter(phases, good),
                },
                InputSeries {
                    series: series_name(metric, &base, &[(&error_label, &error_value)]),
                    values: counter(phases, bad),
                },
            ]
        }
        SliShape::Latency {
            metric,
            selector,
            threshold_seconds,
        } => {
            let base = equality_labels(selector);
            vec![
                InputSeries {
                    series: series_name(
                        &format!("{metric}_bucket"),
                        &base,
                        &[("le", &threshold_seconds.to_string())],
                    ),
                    values: counter(phases, good),
                },
                InputSeries {
                    series: series_name(&format!("{metric}_count"), &base, &[]),
                    values: counter(phases, all),
                },
            ]
        }
    }
}

/// A counter increasing by `per_minute(phase)` a minute through the phases.
fn counter(phases: &[Phase], per_minute: impl Fn(&Phase) -> f64) -> String {
    let mut parts = vec!["0".to_string()];
    let mut value = 0.0;
    for phase in phases {
        // Rounded so 99.9% prints as 2 errors a minute, not 1.9999999999998863.
        let step = (per_minute(phase) * 1e6).round() / 1e6;
        parts.push(format!("{}+{step}x{}", value + step, phase.minutes - 1));
        value += step * phase.minutes as f64;
    }
    parts.join(" ")
}

/// The `name="value"` matchers of a selector, as labels.
fn equality_labels(selector: &str) -> Vec<(String, String)> {
    selector
        .split(',')
        .filter_map(|matcher| {
            let (name, value) = matcher.split_once('=')?;
            (!name.ends_with('!') && !value.starts_with('~')).then(|| {
                (
                    name.trim().to_string(),
                    value.trim().trim_matches('"').to_string(),
                )
            })
        })
        .collect()
}

/// A label value the matcher accepts: `status=~"5.."` → `("status", "500")`.
fn example_match(matcher: &str) -> (String, String) {
    let (name, value) = matcher.split_once('=').unwrap_or((matcher, ""));
    let value = value.trim_start_matches('~').trim().trim_matches('"');
    let first = value.split('|').next().unwrap_or(value);
    (name.trim().to_string(), first.replace('.', "0"))
}

/// A value of `label` that a good event carries.
fn good_example(label: &str) -> &'static str {
    match label {
        "status" | "code" => "200",
        "outcome" => "consensus",
        _ => "ok",
    }
}

fn series_name(metric: &str, base: &[(String, String)], extra: &[(&str, &str)]) -> String {
    let labels: Vec<String> = base
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain(extra.iter().copied())
        .map(|(k, v)| format!("{k}=\"{v}\""))
        .collect();
    format!("{metric}{{{}}}", labels.join(","))
}

fn test_file(rule_file: &str, tests: Vec<TestGroup>) -> TestFile {
    TestFile {
        rule_files: vec![rule_file.into()],
        evaluation_interval: STEP.into(),
        tests,
    }
}
