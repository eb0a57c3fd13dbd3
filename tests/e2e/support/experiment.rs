//! `aragora chaos run` as a test runs it (its exit code, JSON report and progress lines), and
//! `aragora chaos proxy` on free ports, for experiments that need a fault proxy in a path.

use super::{aragora_command, eventually, free_port};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// An experiment shipped in chaos/experiments.
pub fn shipped(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("chaos/experiments")
        .join(name)
}

/// What `aragora chaos run` did.
pub struct Run {
    pub code: i32,
    pub report: Value,
    pub progress: String,
}

/// Runs the experiment in `file` with `--var NAME=VALUE` for each of `vars`.
pub async fn run(file: &Path, vars: &[(&str, String)]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let report_path = dir.path().join("report.json");
    let mut command = tokio::process::Command::from(aragora_command());
    command
        .args(["chaos", "run"])
        .arg(file)
        .arg("--report")
        .arg(&report_path)
        .stdin(Stdio::null());
    for (name, value) in vars {
        command.arg("--var").arg(format!("{name}={value}"));
    }
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("the experiment finishes within 2 minutes")
        .expect("run aragora chaos run");
    let progress = String::from_utf8_lossy(&output.stderr).into_owned();
    let report = std::fs::read_to_string(&report_path)
        .map(|text| serde_json::from_str(&text).unwrap())
        .unwrap_or_else(|_| panic!("no report was written; stderr:\n{progress}"));
    Run {
        code: output.status.code().unwrap_or(-1),
        report,
        progress,
    }
}

/// Runs an experiment written by the test (YAML text) with no variables.
pub async fn run_text(yaml: &str) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("experiment.yaml");
    std::fs::write(&file, yaml).unwrap();
    run(&file, &[]).await
}

/// `aragora chaos proxy` with one proxy, on free ports; stopped when dropped.
pub struct FaultProxy {
    child: std::process::Child,
    pub api: String,
    pub listen: u16,
    _log: tempfile::NamedTempFile,
}

impl FaultProxy {
    /// Proxies `127.0.0.1:<listen>` to `upstream` under `name`, and waits for its API.
    pub async fn start(name: &str, upstream: &str) -> Self {
        let (listen, api_port) = (free_port(), free_port());
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = aragora_command()
            .args(["chaos", "proxy", "--proxy"])
            .arg(format!("{name}=127.0.0.1:{listen}={upstream}"))
            .arg("--api")
            .arg(format!("127.0.0.1:{api_port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap();
        let api = format!("http://127.0.0.1:{api_port}");
        let health = format!("{api}/healthz");
        eventually("the fault proxy's API", Duration::from_secs(30), || {
            let health = health.clone();
            async move { reqwest::get(&health).await.ok().map(|_| ()) }
        })
        .await;
        Self {
            child,
            api,
            listen,
            _log: log,
        }
    }

    /// The faults active on proxy `name`.
    pub async fn faults(&self, name: &str) -> Vec<Value> {
        let status: Value = reqwest::get(format!("{}/proxies/{name}", self.api))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        status["faults"].as_array().unwrap().clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
