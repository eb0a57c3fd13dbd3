//! Real Prometheus-family servers (Prometheus, Alertmanager) on free ports, stopped when
//! dropped, and a Prometheus that scrapes given targets with the generated rule files loaded.

use super::{eventually, free_port};
use serde_json::Value;
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(60);

/// A Prometheus-family server (Prometheus, Alertmanager) on a free port, stopped when dropped.
pub struct PromServer {
    child: std::process::Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl PromServer {
    /// Starts `program` with `args` plus its listen address, and waits for its `/-/ready`.
    pub async fn start(
        program: &str,
        package: &str,
        dir: tempfile::TempDir,
        args: &[String],
    ) -> Self {
        Self::start_on(program, package, dir, args, free_port()).await
    }

    /// [`start`](Self::start) on a port chosen beforehand (a process started before it needs
    /// its address).
    pub async fn start_on(
        program: &str,
        package: &str,
        dir: tempfile::TempDir,
        args: &[String],
        port: u16,
    ) -> Self {
        let child = std::process::Command::new(program)
            .args(args)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("server.log")).unwrap())
            .spawn()
            .unwrap_or_else(|err| {
                panic!("{program}: {err} (apt-get install {package}; scripts/setup.sh does)")
            });
        let url = format!("http://127.0.0.1:{port}");
        let ready = format!("{url}/-/ready");
        eventually(&format!("{program} to be ready"), PATIENCE, || async {
            let response = reqwest::get(&ready).await.ok()?;
            response.status().is_success().then_some(())
        })
        .await;
        Self {
            child,
            url,
            _dir: dir,
        }
    }

    /// A real Prometheus scraping each `(job, host:port)` every second and evaluating the
    /// generated rule files (`alerts/`) every second.
    pub async fn prometheus(targets: &[(&str, String)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let alerts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("alerts");
        let mut config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n  - {}\nscrape_configs:\n",
            alerts.join("slo-rules.yaml").display(),
            alerts.join("operational-rules.yaml").display(),
        );
        for (job, target) in targets {
            config.push_str(&format!(
                "  - job_name: {job}\n    static_configs:\n      - targets: ['{target}']\n"
            ));
        }
        Self::start_prometheus(dir, &config).await
    }

    /// Starts Prometheus with `config` as its prometheus.yml and its data, both in `dir`.
    pub async fn start_prometheus(dir: tempfile::TempDir, config: &str) -> Self {
        Self::start_prometheus_on(dir, config, free_port()).await
    }

    /// [`start_prometheus`](Self::start_prometheus) on a port chosen beforehand.
    pub async fn start_prometheus_on(dir: tempfile::TempDir, config: &str, port: u16) -> Self {
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let args = [
            format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ),
            format!("--storage.tsdb.path={}", dir.path().join("data").display()),
        ];
        Self::start_on("prometheus", "prometheus", dir, &args, port).await
    }

    /// GET `path` of its HTTP API, as JSON.
    pub async fn api(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let response = reqwest::Client::new()
            .get(format!("{}{path}", self.url))
            .query(query)
            .send()
            .await
            .expect("the server answers");
        response.json().await.expect("JSON")
    }

    /// Prometheus' alerts named `name` in `state` (`pending`, `firing`).
    pub async fn alerts(&self, name: &str, state: &str) -> Vec<Value> {
        let answer = self.api("/api/v1/alerts", &[]).await;
        answer["data"]["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["labels"]["alertname"] == name && a["state"] == state)
            .cloned()
            .collect()
    }
}

impl Drop for PromServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
