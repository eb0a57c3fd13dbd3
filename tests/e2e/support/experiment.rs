//! `aragora chaos run` as a test runs it: its exit code, JSON report and progress lines. The
//! fault proxy experiments put in a path is [`super::proxy::ProxyProcess`].

use super::aragora_command;
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

/// Runs the experiment in `file` with `--var NAME=VALUE` for each of `vars`, and
/// `ARAGORA_API_TOKEN` the test's admin token unless `vars` names it (the shipped experiments
/// authenticate with it).
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
    if !vars.iter().any(|(name, _)| *name == "ARAGORA_API_TOKEN") {
        command
            .arg("--var")
            .arg(format!("ARAGORA_API_TOKEN={}", super::test_token()));
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
