//! A DR drill judged against its targets, end to end: `aragora drill run` on a sound backup
//! that is older than the RPO target allows exits 1, says which target it missed, and the DR
//! log, `GET /api/drills` and `/metrics` record the drill as failed; the same backup against a
//! target it meets passes.

use crate::support::{aragora_command, sample, Engine, EngineOptions};
use serde_json::{json, Value};
use std::process::Output;

/// `aragora drill run --output json` against the engine's data directory with `env`.
async fn drill(engine: &Engine, env: &[(&str, &str)]) -> (Output, Value) {
    let mut command = aragora_command();
    command
        .args(["drill", "run", "--output", "json"])
        .env("ARAGORA_DATA_DIR", &engine.data_dir)
        .envs(env.iter().copied());
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
        panic!(
            "not one JSON object ({err}): {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output, report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_that_misses_its_rpo_target_exits_1_and_is_recorded_as_failed() {
    // Agents that think 200 ms per call: the debate after the backup lasts well over a second.
    let engine =
        Engine::start(EngineOptions::sqlite().env("ARAGORA_OFFLINE_AGENT_LATENCY_MS", 200)).await;
    let before = engine
        .run_debate(json!({"topic": "In the backup", "rounds": 1}))
        .await;
    assert_eq!(before["status"], "completed", "{before}");
    let backup = aragora_command()
        .args(["backup", "create"])
        .env("ARAGORA_DATA_DIR", &engine.data_dir)
        .output()
        .unwrap();
    assert!(backup.status.success(), "{backup:?}");
    let after = engine
        .run_debate(json!({"topic": "Written after the backup", "rounds": 4}))
        .await;
    assert_eq!(after["status"], "completed", "{after}");

    let (output, report) = drill(&engine, &[("ARAGORA_RPO_TARGET_SECS", "1")]).await;
    assert_eq!(output.status.code(), Some(1), "{report:#}");
    assert_eq!(report["status"], "failed", "{report:#}");
    assert_eq!(report["rpo_target_seconds"], 1.0);
    let rpo = report["rpo_seconds"].as_f64().expect("an RPO was measured");
    assert!(rpo > 1.0, "{report:#}");
    // Only the target was missed: the restore, the engine on the copy and its checks worked.
    let failed: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["RPO within target"], "{report:#}");
    assert!(report["rto_seconds"].as_f64().is_some(), "{report:#}");
    let failures = report["failures"].to_string();
    assert!(failures.contains("ARAGORA_RPO_TARGET_SECS"), "{failures}");
    assert_eq!(report["recorded"], true);

    // The DR log says so, and the engine reports it.
    let (status, drills) = engine.get("/api/drills").await;
    assert_eq!(status, 200, "{drills}");
    assert_eq!(drills["drills"][0]["id"], report["id"], "{drills}");
    assert_eq!(drills["drills"][0]["status"], "failed", "{drills}");
    let metrics = engine.metrics().await;
    assert_eq!(
        sample(&metrics, "aragora_dr_drill_last_success_timestamp_seconds"),
        Some(0.0),
        "a missed target is not a success"
    );
    assert!(sample(&metrics, "aragora_dr_drill_last_failure_timestamp_seconds").unwrap() > 0.0);

    // The same backup against a target it meets passes: the failure was the target's.
    let (output, report) = drill(&engine, &[("ARAGORA_RPO_TARGET_SECS", "3600")]).await;
    assert_eq!(output.status.code(), Some(0), "{report:#}");
    assert_eq!(report["status"], "passed", "{report:#}");
}
