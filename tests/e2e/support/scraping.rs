//! A real Prometheus whose scrape targets are named after it starts. A process that evaluates
//! SLOs over Prometheus (`aragora serve` or `aragora control` with `ARAGORA_PROMETHEUS_URL`)
//! needs Prometheus' address when it starts, and Prometheus needs the ports that process and
//! the gateway bound: the targets come from file-based discovery, re-read every second, so
//! they are written once everything listens.

use super::prom::PromServer;
use std::path::PathBuf;

/// The scrape jobs the SLO rules tell apart (`slo::settings`).
const JOBS: [&str; 2] = ["aragora-gateway", "aragora-engine"];

pub struct ScrapingPrometheus {
    pub server: PromServer,
    targets_dir: PathBuf,
}

impl ScrapingPrometheus {
    /// Starts Prometheus scraping every second whatever [`scrape`](Self::scrape) names.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let targets_dir = dir.path().join("targets");
        std::fs::create_dir_all(&targets_dir).unwrap();
        let mut config =
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n"
                .to_string();
        for job in JOBS {
            config.push_str(&format!(
                "  - job_name: {job}\n    file_sd_configs:\n      - files: ['{}']\n        refresh_interval: 1s\n",
                targets_dir.join(format!("{job}.json")).display()
            ));
        }
        let server = PromServer::start_prometheus(dir, &config).await;
        Self {
            server,
            targets_dir,
        }
    }

    pub fn url(&self) -> &str {
        &self.server.url
    }

    /// Scrapes `target` (host:port serving /metrics) as `job` from now on.
    pub fn scrape(&self, job: &str, target: &str) {
        assert!(JOBS.contains(&job), "{job} is not one of {JOBS:?}");
        let file = self.targets_dir.join(format!("{job}.json"));
        let partial = file.with_extension("json.partial");
        let groups = serde_json::json!([{"targets": [target]}]);
        std::fs::write(&partial, groups.to_string()).unwrap();
        // Renamed into place, so Prometheus never reads half a file.
        std::fs::rename(&partial, &file).unwrap();
    }
}
