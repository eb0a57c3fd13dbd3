//! [`LiveSettings`]: how often the live evaluation runs, over what, and where its alerts go.

use serde::Serialize;

/// How the live evaluation runs (`aragora up`, `aragora serve`). `Debug` hides passwords in
/// the URLs ([`aragora_config::redact`]).
#[derive(Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LiveSettings {
    pub evaluation_interval_secs: u64,
    pub window_scale: f64,
    pub prometheus_url: Option<String>,
    pub alertmanager_url: Option<String>,
}

impl std::fmt::Debug for LiveSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        aragora_config::redact::debug_redacted("LiveSettings", self, f)
    }
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

impl aragora_config::Settings for LiveSettings {
    fn validate(&self) -> Vec<aragora_config::ConfigProblem> {
        let mut problems = Vec::new();
        if self.evaluation_interval_secs == 0 {
            problems.push(aragora_config::ConfigProblem::new(
                "ARAGORA_SLO_EVALUATION_INTERVAL",
                "is 0; use at least 1 second",
            ));
        }
        if !(self.window_scale > 0.0 && self.window_scale <= 1.0) {
            problems.push(aragora_config::ConfigProblem::new(
                "ARAGORA_SLO_WINDOW_SCALE",
                format!(
                    "is {}; use a number in (0, 1] (1 is real time)",
                    self.window_scale
                ),
            ));
        }
        for (key, url) in [
            ("ARAGORA_PROMETHEUS_URL", &self.prometheus_url),
            ("ARAGORA_ALERTMANAGER_URL", &self.alertmanager_url),
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
        problems
    }
}

impl LiveSettings {
    /// Defaults, then the environment, validated; every problem at once.
    pub fn from_env(env: &aragora_config::Env) -> Result<Self, Vec<aragora_config::ConfigProblem>> {
        aragora_config::Settings::load(None, env)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let readme = include_str!("../../../README.md");
        for setting in SETTINGS {
            assert!(
                readme.contains(&format!("| `{}` |", setting.key)),
                "{}",
                setting.key
            );
        }
    }
}
