//! The default SLOs of the runbook, with the targets its environment variables override.

use crate::duration::PromDuration;
use crate::model::{Alerting, Labels, SliShape, Slo, SloSpec};
use aragora_config::{ConfigProblem, Env, Settings};
use aragora_telemetry::catalogue as cat;
use serde::{Deserialize, Serialize};

/// The service name of the default SLOs (Sloth's `service`).
pub const SERVICE: &str = "aragora";

/// The scrape job `deploy/prometheus/prometheus.yml` gives the gateway's admin `/metrics`, and
/// that the in-process evaluator (`aragora up`) gives the gateway's registry for specs that
/// select by job. The generated rules do not select by job: see [`gateway_selector`].
pub const GATEWAY_JOB: &str = "aragora-gateway";
/// The engine's scrape job in `deploy/prometheus/prometheus.yml`, as [`GATEWAY_JOB`].
pub const ENGINE_JOB: &str = "aragora-engine";

/// `component="gateway"`: the gateway's series under any scrape job. Both components export
/// the same HTTP metric names; the label their registries put on every series
/// ([`component_registry`](cat::component_registry)) tells them apart, where a job name would
/// only match the Prometheus configurations that happen to use it.
pub fn gateway_selector() -> String {
    component_selector(cat::GATEWAY)
}

/// `component="engine"`: the engine's series under any scrape job.
pub fn engine_selector() -> String {
    component_selector(cat::ENGINE)
}

fn component_selector(component: &str) -> String {
    format!("{}=\"{component}\"", cat::COMPONENT_LABEL)
}

/// The SLO targets operators may override.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SloSettings {
    pub availability_target: f64,
    pub latency_p99_target_ms: u64,
    pub debate_success_target: f64,
}

impl Default for SloSettings {
    fn default() -> Self {
        Self {
            availability_target: 99.9,
            latency_p99_target_ms: 500,
            debate_success_target: 95.0,
        }
    }
}

aragora_config::settings! {
    SloSettings;
    availability_target: ["SLO_AVAILABILITY_TARGET"] "Percent of requests through the gateway that must not fail with a 5xx over 30 days (a value below 1 is read as a ratio: 0.999 is 99.9).";
    latency_p99_target_ms: ["SLO_LATENCY_P99_TARGET_MS"] "Latency SLO: 99% of requests through the gateway answer within this many milliseconds; must be a bucket of aragora_request_latency_seconds.";
    debate_success_target: ["SLO_DEBATE_SUCCESS_TARGET"] "Percent of debates (cancelled ones aside) that must end in consensus or no_consensus over 30 days (below 1: a ratio).";
}

impl Settings for SloSettings {
    fn finish_read(&mut self, _env: &Env, _problems: &mut Vec<ConfigProblem>) {
        self.availability_target = as_percent(self.availability_target);
        self.debate_success_target = as_percent(self.debate_success_target);
    }

    /// The default SLOs built from these targets, checked like any spec (a target out of
    /// range, a latency that is not a bucket), each problem named by the variable that sets it.
    fn validate(&self) -> Vec<ConfigProblem> {
        crate::check::check(&self.default_spec())
            .into_iter()
            .map(|problem| {
                let setting = match problem.slo.as_deref() {
                    Some("availability") => "SLO_AVAILABILITY_TARGET",
                    Some("latency") => "SLO_LATENCY_P99_TARGET_MS",
                    Some("debate-success") => "SLO_DEBATE_SUCCESS_TARGET",
                    _ => "SLO_*",
                };
                ConfigProblem::new(setting, problem.message)
            })
            .collect()
    }
}

impl SloSettings {
    /// Defaults, then the environment, validated; every problem at once.
    pub fn from_env(env: &Env) -> Result<Self, Vec<ConfigProblem>> {
        Self::load(None, env)
    }

    /// The runbook's three SLOs. `aragora slo check` validates the result like any spec, so
    /// a target out of range or a latency that is not a bucket gets the same messages.
    pub fn default_spec(&self) -> SloSpec {
        let gateway = gateway_selector();
        SloSpec {
            service: SERVICE.into(),
            labels: Labels::from([("owner".to_string(), "sre".to_string())]),
            slos: vec![
                default_slo(
                    "availability",
                    "Requests through the gateway that do not fail with a 5xx.",
                    self.availability_target,
                    SliShape::Requests {
                        metric: cat::HTTP_REQUESTS_TOTAL.name.into(),
                        selector: gateway.clone(),
                        error: "status=~\"5..\"".into(),
                    },
                ),
                default_slo(
                    "latency",
                    &format!(
                        "Requests through the gateway answered within {} ms (p99 as a ratio).",
                        self.latency_p99_target_ms
                    ),
                    99.0,
                    SliShape::Latency {
                        metric: cat::REQUEST_LATENCY_SECONDS.name.into(),
                        selector: gateway,
                        threshold_seconds: self.latency_p99_target_ms as f64 / 1000.0,
                    },
                ),
                default_slo(
                    "debate-success",
                    "Debates that end in consensus or no_consensus (cancelled ones do not count).",
                    self.debate_success_target,
                    SliShape::Requests {
                        metric: cat::DEBATES_TOTAL.name.into(),
                        selector: format!("{},outcome!=\"cancelled\"", engine_selector()),
                        error: "outcome=~\"failed|timed_out\"".into(),
                    },
                ),
            ],
        }
    }
}

/// Targets below 1 are ratios (the seeds' Python read 0.999); the model speaks percent.
fn as_percent(target: f64) -> f64 {
    if target > 0.0 && target < 1.0 {
        target * 100.0
    } else {
        target
    }
}

fn default_slo(name: &str, description: &str, objective: f64, shape: SliShape) -> Slo {
    Slo {
        name: name.into(),
        description: description.into(),
        objective,
        period: PromDuration::days(30),
        labels: Labels::new(),
        sli: shape.to_sli(),
        shape: Some(shape),
        // Alert name and runbook URL are derived by the renderer, the same for every format.
        alerting: Alerting::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use aragora_config::env_map as env;

    #[test]
    fn targets_come_from_the_environment_as_percent_or_ratio() {
        let settings = SloSettings::from_env(&env(&[
            ("SLO_AVAILABILITY_TARGET", "0.995"),
            ("SLO_LATENCY_P99_TARGET_MS", "200"),
            ("SLO_DEBATE_SUCCESS_TARGET", "90"),
        ]))
        .unwrap();
        assert!((settings.availability_target - 99.5).abs() < 1e-9);
        assert_eq!(settings.latency_p99_target_ms, 200);
        assert_eq!(settings.debate_success_target, 90.0);
        let spec = settings.default_spec();
        assert!(matches!(
            spec.slos[1].shape,
            Some(SliShape::Latency { threshold_seconds, .. }) if threshold_seconds == 0.2
        ));
    }

    #[test]
    fn a_bad_value_names_the_variable() {
        let problems =
            SloSettings::from_env(&env(&[("SLO_LATENCY_P99_TARGET_MS", "fast")])).unwrap_err();
        assert_eq!(problems[0].setting, "SLO_LATENCY_P99_TARGET_MS");
    }

    #[test]
    fn a_target_the_default_slos_cannot_use_names_the_variable() {
        let problems = SloSettings::from_env(&env(&[
            ("SLO_LATENCY_P99_TARGET_MS", "450"),
            ("SLO_AVAILABILITY_TARGET", "100"),
        ]))
        .unwrap_err();
        let named: Vec<&str> = problems.iter().map(|p| p.setting.as_str()).collect();
        assert_eq!(
            named,
            ["SLO_AVAILABILITY_TARGET", "SLO_LATENCY_P99_TARGET_MS"],
            "{problems:?}"
        );
        assert!(problems[1].message.contains("le=\"0.45\""), "{problems:?}");
    }

    #[test]
    fn the_readme_documents_every_slo_setting() {
        let readme = include_str!("../../README.md");
        for setting in SETTINGS {
            assert!(
                readme.contains(&format!("| `{}` |", setting.key)),
                "{}",
                setting.key
            );
            for env in setting.env {
                assert!(readme.contains(&format!("`{env}`")), "README lacks {env}");
            }
        }
    }
}
