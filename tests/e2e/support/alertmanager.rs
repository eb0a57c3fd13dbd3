//! A real Alertmanager (Debian's `prometheus-alertmanager`) with a given configuration file,
//! alerts posted to it as Prometheus would, and the state it reports for each.

use super::prom::PromServer;
use serde_json::Value;
use std::path::Path;

pub struct Alertmanager {
    pub server: PromServer,
    http: reqwest::Client,
}

impl Alertmanager {
    /// Starts Alertmanager with `config` (not clustered, its own storage).
    pub async fn start(config: &Path) -> Self {
        Self::start_in(tempfile::tempdir().unwrap(), config).await
    }

    /// Starts Alertmanager with the configuration `yaml`, written next to its storage.
    pub async fn start_with_config(yaml: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(&config, yaml).unwrap();
        Self::start_in(dir, &config).await
    }

    async fn start_in(dir: tempfile::TempDir, config: &Path) -> Self {
        let args = [
            format!("--config.file={}", config.display()),
            format!("--storage.path={}", dir.path().join("data").display()),
            "--cluster.listen-address=".to_string(),
        ];
        let server = PromServer::start(
            "prometheus-alertmanager",
            "prometheus-alertmanager",
            dir,
            &args,
        )
        .await;
        Self {
            server,
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self) -> &str {
        &self.server.url
    }

    /// Posts firing alerts, each given by its labels.
    pub async fn fire(&self, alerts: &[Value]) {
        let body: Vec<Value> = alerts
            .iter()
            .map(|labels| serde_json::json!({"labels": labels}))
            .collect();
        let response = self
            .http
            .post(format!("{}/api/v2/alerts", self.url()))
            .json(&body)
            .send()
            .await
            .expect("Alertmanager answers");
        assert!(
            response.status().is_success(),
            "Alertmanager refused the alerts: {}",
            response.text().await.unwrap_or_default()
        );
    }

    /// Every alert Alertmanager holds, with its `status` (`state`, `inhibitedBy`).
    pub async fn alerts(&self) -> Vec<Value> {
        let response = self
            .http
            .get(format!("{}/api/v2/alerts", self.url()))
            .send()
            .await
            .expect("Alertmanager answers");
        response.json().await.expect("a JSON list of alerts")
    }
}
