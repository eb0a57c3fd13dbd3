//! What the live evaluation says about each SLO: [`SloStatus`] with its windows and alerts
//! (the `/api/slo` shape, with the schemas its OpenAPI operation documents), and the plain-text table of `aragora slo status`.

use serde::Serialize;

/// One window of one SLO.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, utoipa::ToSchema)]
pub struct WindowStatus {
    pub window: String,
    /// Failed share of events in the window; None without events (no traffic is not an outage).
    pub error_ratio: Option<f64>,
    /// `error_ratio` over the error budget: 1 spends the budget exactly over the period.
    pub burn_rate: Option<f64>,
}

/// A burn-rate alert of one SLO and whether it fires now.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, utoipa::ToSchema)]
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
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, utoipa::ToSchema)]
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
