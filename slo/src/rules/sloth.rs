//! Sloth-compatible rules for each SLO: names, labels and expressions as `sloth generate`
//! writes them, so dashboards and alert routing made for Sloth work unchanged.

use super::{merge, Rule, RuleFile, RuleGroup};
use crate::duration::PromDuration;
use crate::model::{AlertMeta, Labels, Sli, Slo, SloSpec};
use crate::promql::WINDOW_PLACEHOLDER;

/// Where each alert's `runbook_url` points unless the spec gives one: followed by `#` and the
/// alert name in lower case (a heading of that page).
pub const RUNBOOK_URL: &str = "https://github.com/aragora/aragora/blob/main/alerts/README.md";

/// One multiwindow burn-rate condition: the error budget share it would spend over `long`
/// (Google SRE workbook, table 5-8), checked over a long and a short window.
#[derive(Debug, Clone, Copy)]
pub struct BurnWindow {
    pub short: PromDuration,
    pub long: PromDuration,
    pub budget_percent: f64,
}

impl BurnWindow {
    /// How many times faster than "exactly the budget over the period": 14.4, 6, 3 and 1 for
    /// a 30-day period.
    pub fn factor(&self, period: PromDuration) -> f64 {
        self.budget_percent * period.seconds() as f64 / (100.0 * self.long.seconds() as f64)
    }
}

/// The two conditions of one alert: either fires it.
#[derive(Debug, Clone, Copy)]
pub struct Severity {
    pub sloth: &'static str,
    /// What Alertmanager routes on, shared with the operational alerts.
    pub severity: &'static str,
    pub quick: BurnWindow,
    pub slow: BurnWindow,
}

pub const PAGE: Severity = Severity {
    sloth: "page",
    severity: "critical",
    quick: BurnWindow {
        short: PromDuration::minutes(5),
        long: PromDuration::hours(1),
        budget_percent: 2.0,
    },
    slow: BurnWindow {
        short: PromDuration::minutes(30),
        long: PromDuration::hours(6),
        budget_percent: 5.0,
    },
};

pub const TICKET: Severity = Severity {
    sloth: "ticket",
    severity: "warning",
    quick: BurnWindow {
        short: PromDuration::hours(2),
        long: PromDuration::days(1),
        budget_percent: 10.0,
    },
    slow: BurnWindow {
        short: PromDuration::hours(6),
        long: PromDuration::days(3),
        budget_percent: 10.0,
    },
};

/// Every window the burn-rate alerts read (each condition's short and long one), shortest
/// first: the recording rules' windows and the live evaluation's, from this one policy.
pub fn alert_windows() -> Vec<PromDuration> {
    let mut windows: Vec<PromDuration> = [PAGE, TICKET]
        .iter()
        .flat_map(|s| [s.quick.short, s.quick.long, s.slow.short, s.slow.long])
        .collect();
    windows.sort();
    windows.dedup();
    windows
}

/// Sloth's recording rule of the SLI error ratio over `window`.
pub fn sli_metric(window: PromDuration) -> String {
    format!("slo:sli_error:ratio_rate{window}")
}

/// The rules of every SLO of the spec, in Sloth's group layout.
pub fn rule_file(spec: &SloSpec) -> RuleFile {
    let groups = spec
        .slos
        .iter()
        .flat_map(|slo| {
            let ctx = Ctx::new(spec, slo);
            [
                RuleGroup {
                    name: format!("sloth-slo-sli-recordings-{}", ctx.id),
                    rules: ctx.sli_rules(),
                },
                RuleGroup {
                    name: format!("sloth-slo-meta-recordings-{}", ctx.id),
                    rules: ctx.meta_rules(),
                },
                RuleGroup {
                    name: format!("sloth-slo-alerts-{}", ctx.id),
                    rules: ctx.alert_rules(),
                },
            ]
        })
        .filter(|group| !group.rules.is_empty())
        .collect();
    RuleFile { groups }
}

/// One SLO with what every rule of it needs.
pub struct Ctx<'a> {
    pub slo: &'a Slo,
    pub service: &'a str,
    pub id: String,
    /// `sloth_id`, `sloth_service`, `sloth_slo`.
    pub id_labels: Labels,
    /// The id labels plus the spec's and the SLO's labels.
    pub labels: Labels,
}

impl<'a> Ctx<'a> {
    pub fn new(spec: &'a SloSpec, slo: &'a Slo) -> Self {
        let id = slo.id(&spec.service);
        let id_labels = Labels::from([
            ("sloth_id".to_string(), id.clone()),
            ("sloth_service".to_string(), spec.service.clone()),
            ("sloth_slo".to_string(), slo.name.clone()),
        ]);
        let labels = merge(&[&spec.labels, &slo.labels, &id_labels]);
        Self {
            slo,
            service: &spec.service,
            id,
            id_labels,
            labels,
        }
    }

    /// `{sloth_id="…", sloth_service="…", sloth_slo="…"}`, as Sloth writes its filters.
    pub fn filter(&self) -> String {
        let matchers: Vec<String> = self
            .id_labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect();
        format!("{{{}}}", matchers.join(", "))
    }

    /// The alert name: the spec's, or `<Service><Slo>BudgetBurn`.
    pub fn alert_name(&self) -> String {
        if !self.slo.alerting.name.is_empty() {
            return self.slo.alerting.name.clone();
        }
        format!("{}{}BudgetBurn", camel(self.service), camel(&self.slo.name))
    }

    fn windows(&self) -> Vec<PromDuration> {
        let mut windows = alert_windows();
        windows.retain(|window| *window != self.slo.period);
        windows
    }

    fn sli_rules(&self) -> Vec<Rule> {
        let mut rules: Vec<Rule> = self
            .windows()
            .into_iter()
            .map(|window| {
                let expr = match &self.slo.sli {
                    Sli::Events {
                        error_query,
                        total_query,
                    } => format!("({error_query})\n/\n({total_query})\n"),
                    Sli::Raw { error_ratio_query } => format!("({error_ratio_query})"),
                }
                .replace(WINDOW_PLACEHOLDER, &window.to_string());
                let labels = merge(&[&self.labels, &window_label(window)]);
                Rule::record(&sli_metric(window), expr, labels)
            })
            .collect();
        // The period ratio averages the 5m ratio over the period (Sloth's optimisation): a
        // 30-day rate over raw counters would cost far more, for an informative number.
        let short = sli_metric(PAGE.quick.short);
        let period = self.slo.period;
        let filter = self.filter();
        rules.push(Rule::record(
            &sli_metric(period),
            format!(
                "sum_over_time({short}{filter}[{period}])\n/ ignoring (sloth_window)\ncount_over_time({short}{filter}[{period}])\n"
            ),
            // Sloth gives this rule only the window label, its series inheriting the rest;
            // the SLO's labels make each SLO's rule distinct for promtool's duplicate lint.
            merge(&[&self.labels, &window_label(period)]),
        ));
        rules
    }

    fn meta_rules(&self) -> Vec<Rule> {
        let objective = self.slo.objective / 100.0;
        let filter = self.filter();
        let burn_rate = |window: PromDuration| {
            format!(
                "{}{filter}\n/ on(sloth_id, sloth_slo, sloth_service) group_left\nslo:error_budget:ratio{filter}\n",
                sli_metric(window)
            )
        };
        let info_labels = merge(&[
            &self.labels,
            &Labels::from([
                ("sloth_version".to_string(), "aragora".to_string()),
                ("sloth_mode".to_string(), "cli-gen-prom".to_string()),
                ("sloth_spec".to_string(), "prometheus/v1".to_string()),
                (
                    "sloth_objective".to_string(),
                    format!("{}", self.slo.objective),
                ),
            ]),
        ]);
        let days = self.slo.period.seconds() as f64 / 86_400.0;
        vec![
            Rule::record(
                "slo:objective:ratio",
                format!("vector({objective})"),
                self.labels.clone(),
            ),
            Rule::record(
                "slo:error_budget:ratio",
                format!("vector(1-{objective})"),
                self.labels.clone(),
            ),
            Rule::record(
                "slo:time_period:days",
                format!("vector({days})"),
                self.labels.clone(),
            ),
            Rule::record(
                "slo:current_burn_rate:ratio",
                burn_rate(PAGE.quick.short),
                self.labels.clone(),
            ),
            Rule::record(
                "slo:period_burn_rate:ratio",
                burn_rate(self.slo.period),
                self.labels.clone(),
            ),
            Rule::record(
                "slo:period_error_budget_remaining:ratio",
                format!("1 - slo:period_burn_rate:ratio{filter}"),
                self.labels.clone(),
            ),
            Rule::record("sloth_slo_info", "vector(1)".into(), info_labels),
        ]
    }

    fn alert_rules(&self) -> Vec<Rule> {
        let alerting = &self.slo.alerting;
        [(PAGE, &alerting.page), (TICKET, &alerting.ticket)]
            .into_iter()
            .filter(|(_, meta)| !meta.disable)
            .map(|(severity, _)| self.alert_rule(severity))
            .collect()
    }

    /// The labels an alert of `severity` carries besides those of its series.
    pub fn alert_labels(&self, severity: Severity) -> Labels {
        let meta = self.meta(severity);
        merge(&[
            &self.slo.alerting.labels,
            &meta.labels,
            &Labels::from([
                ("severity".to_string(), severity.severity.to_string()),
                ("sloth_severity".to_string(), severity.sloth.to_string()),
            ]),
        ])
    }

    fn meta(&self, severity: Severity) -> &AlertMeta {
        if severity.sloth == PAGE.sloth {
            &self.slo.alerting.page
        } else {
            &self.slo.alerting.ticket
        }
    }

    /// Annotations as templates; Prometheus expands `$labels` and the burn-rate query.
    pub fn alert_annotations(&self, severity: Severity) -> Labels {
        let period = self.slo.period;
        let name = self.alert_name();
        let described = if self.slo.description.is_empty() {
            String::new()
        } else {
            format!("{} ", self.slo.description.trim())
        };
        let defaults = Labels::from([
            (
                "title".to_string(),
                format!(
                    "({}) {{{{$labels.sloth_service}}}} {{{{$labels.sloth_slo}}}} SLO error budget burn rate is too fast.",
                    severity.sloth
                ),
            ),
            (
                "summary".to_string(),
                "{{$labels.sloth_service}} {{$labels.sloth_slo}} SLO error budget burn rate is over expected.".to_string(),
            ),
            (
                "description".to_string(),
                format!(
                    "{described}Objective {}% over {period}. The error budget burns faster than {}x over {} and {}, or {}x over {} and {}.",
                    self.slo.objective,
                    severity.quick.factor(period),
                    severity.quick.long,
                    severity.quick.short,
                    severity.slow.factor(period),
                    severity.slow.long,
                    severity.slow.short,
                ),
            ),
            (
                "current_burn_rate".to_string(),
                "{{ with printf \"slo:current_burn_rate:ratio{sloth_id=%q}\" $labels.sloth_id | query }}{{ . | first | value | printf \"%.1f\" }}x{{ else }}unknown{{ end }}".to_string(),
            ),
            (
                "runbook_url".to_string(),
                format!("{RUNBOOK_URL}#{}", name.to_lowercase()),
            ),
        ]);
        merge(&[
            &defaults,
            &self.slo.alerting.annotations,
            &self.meta(severity).annotations,
        ])
    }

    fn alert_rule(&self, severity: Severity) -> Rule {
        let filter = self.filter();
        let budget = self.slo.error_budget_ratio();
        let period = self.slo.period;
        let condition = |window: BurnWindow| {
            let factor = window.factor(period);
            [window.short, window.long].map(|w| {
                format!(
                    "max({}{filter} > ({factor} * {budget})) without (sloth_window)",
                    sli_metric(w)
                )
            })
        };
        let [quick_short, quick_long] = condition(severity.quick);
        let [slow_short, slow_long] = condition(severity.slow);
        Rule {
            alert: Some(self.alert_name()),
            expr: format!(
                "(\n    {quick_short}\n    and\n    {quick_long}\n)\nor\n(\n    {slow_short}\n    and\n    {slow_long}\n)\n"
            ),
            labels: self.alert_labels(severity),
            annotations: self.alert_annotations(severity),
            ..Rule::default()
        }
    }
}

fn window_label(window: PromDuration) -> Labels {
    Labels::from([("sloth_window".to_string(), window.to_string())])
}

/// `debate-success` → `DebateSuccess`.
fn camel(name: &str) -> String {
    name.split(['-', '_'])
        .map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|first| first.to_uppercase().chain(chars).collect::<String>())
                .unwrap_or_default()
        })
        .collect()
}
