//! [`SloGauges`]: each evaluation published as `aragora_slo_*` gauges.

use super::status::SloStatus;

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

    pub(super) fn publish(&self, status: &SloStatus) {
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
