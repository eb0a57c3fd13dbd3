//! The SLO model every reader produces and every renderer consumes: plain data, no I/O.

use crate::duration::PromDuration;
use std::collections::BTreeMap;

/// Labels, sorted so generated files are stable.
pub type Labels = BTreeMap<String, String>;

/// The SLOs of one service.
#[derive(Debug, Clone, PartialEq)]
pub struct SloSpec {
    pub service: String,
    /// Added to every rule of every SLO.
    pub labels: Labels,
    pub slos: Vec<Slo>,
}

/// One objective: "`objective`% of events are good over `period`".
#[derive(Debug, Clone, PartialEq)]
pub struct Slo {
    pub name: String,
    pub description: String,
    /// Percent, in (0, 100).
    pub objective: f64,
    /// The rolling window the objective holds over (Sloth's SLO period).
    pub period: PromDuration,
    pub labels: Labels,
    pub sli: Sli,
    /// What the SLI counts, when the spec said so in the project's own terms. It lets the
    /// promtool tests synthesise series; SLIs given as bare queries get rules but no tests.
    pub shape: Option<SliShape>,
    pub alerting: Alerting,
}

/// The SLI as Sloth has it: queries with a `{{.window}}` placeholder for the range.
#[derive(Debug, Clone, PartialEq)]
pub enum Sli {
    Events {
        error_query: String,
        total_query: String,
    },
    Raw {
        error_ratio_query: String,
    },
}

/// The SLI kinds of the project's own spec format.
#[derive(Debug, Clone, PartialEq)]
pub enum SliShape {
    /// Events of a counter; errors are those also matching `error`.
    Requests {
        metric: String,
        selector: String,
        error: String,
    },
    /// Requests slower than `threshold_seconds`, from a histogram's buckets.
    Latency {
        metric: String,
        selector: String,
        threshold_seconds: f64,
    },
}

/// The alerts of one SLO (Sloth's `alerting` block).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Alerting {
    /// Alert name shared by the page and the ticket alert (they differ by `sloth_severity`).
    pub name: String,
    pub labels: Labels,
    pub annotations: Labels,
    pub page: AlertMeta,
    pub ticket: AlertMeta,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct AlertMeta {
    pub disable: bool,
    pub labels: Labels,
    pub annotations: Labels,
}

impl Slo {
    /// Sloth's id: `service-slo`.
    pub fn id(&self, service: &str) -> String {
        format!("{service}-{}", self.name)
    }

    /// The error budget as a ratio, computed as Sloth does (`(100 - objective) / 100`), so
    /// thresholds print identically (`0.0009999999999999432` for 99.9).
    pub fn error_budget_ratio(&self) -> f64 {
        (100.0 - self.objective) / 100.0
    }

    /// Every query of the SLI, for checks.
    pub fn queries(&self) -> Vec<&str> {
        match &self.sli {
            Sli::Events {
                error_query,
                total_query,
            } => vec![error_query, total_query],
            Sli::Raw { error_ratio_query } => vec![error_ratio_query],
        }
    }
}

impl SliShape {
    /// The Sloth events SLI this shape stands for. Written once here so the default spec, the
    /// example Sloth and OpenSLO specs and the generated rules all say the same thing.
    pub fn to_sli(&self) -> Sli {
        match self {
            SliShape::Requests {
                metric,
                selector,
                error,
            } => Sli::Events {
                error_query: format!(
                    "sum(rate({metric}{{{}}}[{{{{.window}}}}]))",
                    join_matchers(selector, error)
                ),
                total_query: format!("sum(rate({metric}{{{selector}}}[{{{{.window}}}}]))"),
            },
            SliShape::Latency {
                metric,
                selector,
                threshold_seconds,
            } => {
                let bucket = format!("le=\"{threshold_seconds}\"");
                let total = format!("sum(rate({metric}_count{{{selector}}}[{{{{.window}}}}]))");
                Sli::Events {
                    error_query: format!(
                        "{total} - sum(rate({metric}_bucket{{{}}}[{{{{.window}}}}]))",
                        join_matchers(selector, &bucket)
                    ),
                    total_query: total,
                }
            }
        }
    }
}

fn join_matchers(first: &str, second: &str) -> String {
    match (first.is_empty(), second.is_empty()) {
        (true, _) => second.to_string(),
        (_, true) => first.to_string(),
        _ => format!("{first},{second}"),
    }
}
