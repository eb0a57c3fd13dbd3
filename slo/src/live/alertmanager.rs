//! [`AlertmanagerSink`]: the live evaluation's burn-rate alerts posted to Alertmanager.

use super::source::{http_client, LiveError};
use super::status::SloStatus;
use crate::model::SloSpec;
use std::sync::Mutex;
use std::time::Duration;

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
            client: http_client(),
            url: format!("{}/api/v2/alerts", base_url.trim_end_matches('/')),
            firing: Mutex::new(Default::default()),
        }
    }

    pub(super) async fn send(
        &self,
        spec: &SloSpec,
        statuses: &[SloStatus],
        interval: Duration,
    ) -> Result<(), LiveError> {
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
        const SERVICE: &str = "Alertmanager";
        let response = self
            .client
            .post(&self.url)
            .json(&batch)
            .send()
            .await
            .map_err(|err| LiveError::from_request(SERVICE, &self.url, &err))?;
        if !response.status().is_success() {
            return Err(LiveError::Refused {
                service: SERVICE,
                what: "the alerts".into(),
                reason: format!(
                    "{}: {}",
                    response.status(),
                    response.text().await.unwrap_or_default()
                ),
            });
        }
        Ok(())
    }
}
