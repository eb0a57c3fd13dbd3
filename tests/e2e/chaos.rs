//! Chaos experiments through the real binary: `aragora chaos run` on the shipped experiments
//! against real engines behind a real gateway, `aragora chaos proxy` in front of the real Redis,
//! rollbacks after a method that fails midway, and the DR schedules on a scaled clock.

use crate::support::experiment::{run as chaos_run, shipped, Run};
use crate::support::proxy::ProxyProcess;
use crate::support::{
    address, aragora_command, eventually, free_port, sample, Engine, EngineOptions, GatewayProcess,
    Process,
};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

async fn replicas(count: usize) -> (Vec<Engine>, GatewayProcess) {
    let mut engines = Vec::new();
    for _ in 0..count {
        engines.push(Engine::start(EngineOptions::sqlite()).await);
    }
    let upstreams: Vec<String> = engines.iter().map(|e| e.api.to_string()).collect();
    let gateway = GatewayProcess::start(&upstreams, &[]).await;
    gateway
        .wait_ready_count(count, Duration::from_secs(30))
        .await;
    (engines, gateway)
}

fn replica_kill_vars(gateway: &GatewayProcess, victim: &Engine) -> Vec<(&'static str, String)> {
    vec![
        (
            "GATEWAY_URL",
            format!("https://127.0.0.1:{}", gateway.https_port),
        ),
        ("REPLICA_PORT", victim.api.port().to_string()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replica_kill_experiment_passes_with_three_replicas() {
    let (mut engines, gateway) = replicas(3).await;
    let run = chaos_run(
        &shipped("replica-kill.yaml"),
        &replica_kill_vars(&gateway, &engines[1]),
    )
    .await;
    assert_eq!(run.code, 0, "{}\n{:#}", run.progress, run.report);
    assert_eq!(run.report["status"], "passed");
    assert_eq!(run.report["method"][0]["outcome"], "ok");
    assert!(
        run.report["method"][0]["detail"]
            .as_str()
            .unwrap()
            .contains(&engines[1].child.id().to_string()),
        "the kill names the replica's pid: {:#}",
        run.report["method"][0]
    );
    // The replica really died of SIGKILL.
    let status = engines[1].wait_exit(Duration::from_secs(10)).await;
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    assert!(
        run.progress.contains("[method 1/3] kill"),
        "{}",
        run.progress
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replica_kill_experiment_fails_with_one_replica_as_it_should() {
    let (engines, gateway) = replicas(1).await;
    let run = chaos_run(
        &shipped("replica-kill.yaml"),
        &replica_kill_vars(&gateway, &engines[0]),
    )
    .await;
    assert_eq!(run.code, 1, "{}\n{:#}", run.progress, run.report);
    assert_eq!(run.report["status"], "deviated");
    assert_eq!(run.report["steady_state_before"]["met"], true);
    assert_eq!(run.report["method"][1]["outcome"], "deviated");
    assert!(
        run.report["method"][1]["detail"]
            .as_str()
            .unwrap()
            .contains("503"),
        "reads got 503 with no replica left: {:#}",
        run.report["method"][1]
    );
    assert_eq!(run.report["steady_state_after"]["met"], false);
    assert!(
        run.report["summary"]
            .as_str()
            .unwrap()
            .contains("did not survive"),
        "{:#}",
        run.report
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_outage_experiment_passes_through_the_fault_proxy() {
    let engine = Engine::start(EngineOptions::sqlite()).await;
    let redis = ProxyProcess::start("redis", "127.0.0.1:6379").await;
    let prefix = format!("aragora:chaos-test:{}:", uuid::Uuid::new_v4().simple());
    let gateway = GatewayProcess::start(
        &[engine.api.to_string()],
        &[
            ("ARAGORA_RATE_LIMIT", "6000".into()),
            (
                "ARAGORA_REDIS_URL",
                format!("redis://127.0.0.1:{}", redis.listen),
            ),
            ("ARAGORA_RATE_LIMIT_KEY_PREFIX", prefix),
        ],
    )
    .await;
    gateway.wait_ready_count(1, Duration::from_secs(30)).await;
    let run = chaos_run(
        &shipped("redis-outage.yaml"),
        &[
            (
                "GATEWAY_URL",
                format!("https://127.0.0.1:{}", gateway.https_port),
            ),
            ("PROXY_API", redis.api.clone()),
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{}\n{:#}", run.progress, run.report);
    // The outage was real: the gateway's Redis calls failed while it lasted...
    let errors = sample(
        &gateway.metrics().await,
        "aragora_rate_limit_backend_errors_total",
    )
    .unwrap_or(0.0);
    assert!(errors > 0.0, "the gateway never noticed the outage");
    // ...and the rollback lifted it although it was set for 20 s.
    assert!(redis.faults("redis").await.is_empty());
    assert_eq!(run.report["rollbacks"][0]["kind"], "undo");
    assert_eq!(run.report["rollbacks"][0]["outcome"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollbacks_run_even_when_the_method_fails_midway() {
    let engine = Engine::start(EngineOptions::sqlite()).await;
    let proxy = ProxyProcess::start("engine", &engine.api.to_string()).await;
    let nobody = free_port();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fails-midway.yaml");
    std::fs::write(
        &file,
        format!(
            r#"
version: aragora.chaos/v1
title: A method that fails at its third step
steady_state:
  - name: the engine answers through the proxy
    http: {{url: "http://127.0.0.1:{listen}/readyz"}}
method:
  - name: slow the link
    proxy_fault:
      api: {api}
      token: "{token}"
      proxy: engine
      fault: {{kind: latency, latency_ms: 300, duration_seconds: 600}}
  - name: freeze the engine
    pause: {{pid: {pid}, seconds: 600}}
  - name: kill a process that is not there
    kill: {{port: {nobody}}}
  - name: never reached
    wait: {{seconds: 1}}
rollbacks:
  - name: leave a trace in the engine
    http:
      url: http://{engine}/api/debates
      headers: {{Authorization: "Bearer {token}"}}
      body: {{topic: "rolled back"}}
"#,
            listen = proxy.listen,
            api = proxy.api,
            pid = engine.pid(),
            engine = engine.api,
            token = engine.token.as_deref().unwrap_or_default(),
        ),
    )
    .unwrap();
    let run = chaos_run(&file, &[]).await;
    assert_eq!(run.code, 2, "{}\n{:#}", run.progress, run.report);
    assert_eq!(run.report["status"], "failed");
    let method = run.report["method"].as_array().unwrap();
    assert_eq!(method[2]["outcome"], "failed");
    assert!(
        method[2]["detail"]
            .as_str()
            .unwrap()
            .contains(&nobody.to_string()),
        "{:#}",
        method[2]
    );
    assert_eq!(method[3]["outcome"], "skipped");
    // The undos ran newest first, then the rollback: all succeeded.
    let rollbacks = run.report["rollbacks"].as_array().unwrap();
    let names: Vec<&str> = rollbacks
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert!(names[0].starts_with("resume process"), "{names:?}");
    assert!(names[1].starts_with("remove fault"), "{names:?}");
    assert_eq!(names[2], "leave a trace in the engine");
    assert!(
        rollbacks.iter().all(|r| r["outcome"] == "ok"),
        "{rollbacks:#?}"
    );
    // And the system shows it: the engine runs again, the latency is gone, the trace is there.
    assert!(proxy.faults("engine").await.is_empty());
    let (status, body) = engine.get("/api/debates?limit=100").await;
    assert_eq!(status, 200);
    assert!(
        body["debates"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["topic"] == "rolled back"),
        "{body:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_experiment_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "version: aragora.chaos/v1\ntitle: t\nsteady_state: []\nmethod:\n  - name: x\n    kill: {port: \"${PORT}\", signal: STOP}\n",
    )
    .unwrap();
    let output = aragora_command()
        .args(["chaos", "run"])
        .arg(&file)
        .args(["--var", "PORT=8080"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("steady_state has no probes"), "{stderr}");
    assert!(stderr.contains("\"STOP\" is not one of"), "{stderr}");
    // Every shipped experiment is valid once its variables are given.
    for entry in std::fs::read_dir(shipped("")).unwrap() {
        let path = entry.unwrap().path();
        let output = aragora_command()
            .args(["chaos", "check"])
            .arg(&path)
            .args(["--var", "ARAGORA_API_TOKEN=secret"])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_schedules_fire_on_their_calendar_under_a_scaled_clock() {
    // A backup to drill from, taken before the schedules start.
    let mut first = Engine::start(EngineOptions::sqlite()).await;
    let (status, _) = first
        .post_json("/api/debates", &json!({"topic": "scheduled drills"}))
        .await;
    assert_eq!(status, 202);
    let backup = aragora_command()
        .args(["backup", "create"])
        .env("ARAGORA_DATA_DIR", &first.data_dir)
        .output()
        .unwrap();
    assert!(backup.status.success(), "{backup:?}");
    first.signal(libc::SIGTERM);
    first.wait_exit(Duration::from_secs(30)).await;
    // The default schedules (backups every 5 minutes, drills Sunday 03:00 UTC), on a clock
    // 150 times faster that starts Sunday 02:54: a backup every 2 s, the drill 2.4 s in.
    let options = EngineOptions::sqlite()
        .env("ARAGORA_DR_SCHEDULER", "true")
        .env("ARAGORA_DR_CLOCK_SCALE", "150")
        .env("ARAGORA_DR_CLOCK_START", "2026-11-29T02:54:00Z");
    let engine = Engine::start(first.restart_options(options)).await;
    let started = |job: &str, at: &str| {
        let log = engine.log_text();
        log.lines().any(|line| {
            line.contains(&format!("\"job\":\"{job}\""))
                && line.contains(&format!("\"scheduled_for\":\"{at}\""))
        })
    };
    eventually(
        "backups at 02:55 ... 03:10 and the drill at 03:00",
        Duration::from_secs(90),
        || async {
            (started("backup", "2026-11-29T02:55:00+00:00")
                && started("backup", "2026-11-29T03:00:00+00:00")
                && started("backup", "2026-11-29T03:10:00+00:00")
                && started("drill", "2026-11-29T03:00:00+00:00"))
            .then_some(())
        },
    )
    .await;
    let log = engine.log_text();
    // Nothing in between: backups only on 5-minute marks, one drill in the whole week.
    assert!(!started("backup", "2026-11-29T02:57:30+00:00"), "{log}");
    let drills = log
        .lines()
        .filter(|line| line.contains("\"job\":\"drill\"") && line.contains("scheduled_for"))
        .count();
    assert_eq!(drills, 1, "{log}");
    let drills = eventually("the drill's record", Duration::from_secs(60), || async {
        let (_, body) = engine.get("/api/drills").await;
        let drills = body["drills"].as_array()?.clone();
        (!drills.is_empty()).then_some(drills)
    })
    .await;
    assert_eq!(drills[0]["status"], "passed", "{drills:#?}");
}

/// A small experiment against one engine: it is ready before and after a short wait.
fn readiness_experiment(dir: &Path, engine: &Engine) -> PathBuf {
    let file = dir.join("engine-stays-ready.yaml");
    std::fs::write(
        &file,
        format!(
            "version: aragora.chaos/v1\ntitle: the engine stays ready\nsteady_state:\n  - name: ready\n    http: {{url: \"{}\"}}\nmethod:\n  - name: a breath\n    wait: {{seconds: 0.1}}\n",
            engine.url("/readyz")
        ),
    )
    .unwrap();
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_runs_backups_and_chaos_experiments_on_their_schedules() {
    let engine = Engine::start(EngineOptions::sqlite()).await;
    let dir = tempfile::tempdir().unwrap();
    let experiment = readiness_experiment(dir.path(), &engine);
    let reports = dir.path().join("reports");
    let mut control = Process::spawn(
        aragora_command()
            .args(["control", "--listen", "127.0.0.1:0"])
            .env("ARAGORA_DATA_DIR", &engine.data_dir)
            .env("ARAGORA_BACKUP_SCHEDULE", "* * * * * *")
            .env("ARAGORA_DRILL_SCHEDULE", "")
            .env("ARAGORA_CHAOS_SCHEDULE", "*/2 * * * * *")
            .env("ARAGORA_CHAOS_EXPERIMENTS", &experiment)
            .env("ARAGORA_CHAOS_REPORT_DIR", &reports),
        &dir.path().join("control.log"),
        &dir.path().join("control.out"),
    );
    let listening = address(&control.announcement("aragora control listening "), "http");
    let metrics_url = format!("http://{listening}/metrics");
    let label = format!(
        "aragora_chaos_experiment_runs_total{{experiment=\"{}\",status=\"passed\"}}",
        experiment.display()
    );
    eventually(
        "a passed scheduled experiment in /metrics",
        Duration::from_secs(60),
        || {
            let (url, label) = (metrics_url.clone(), label.clone());
            async move {
                let text = reqwest::get(&url).await.ok()?.text().await.ok()?;
                (sample(&text, &label)? >= 1.0).then_some(())
            }
        },
    )
    .await;
    let report = std::fs::read_dir(&reports)
        .unwrap()
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .expect("a report file");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(report.path()).unwrap()).unwrap();
    assert_eq!(report["status"], "passed", "{report:#}");
    let backups = engine.data_dir.join("backups");
    eventually("a scheduled backup", Duration::from_secs(30), || {
        let backups = backups.clone();
        async move {
            std::fs::read_dir(&backups)
                .ok()?
                .filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().ends_with(".manifest.json"))
                .then_some(())
        }
    })
    .await;
    // SIGTERM stops it promptly and cleanly.
    control.signal(libc::SIGTERM);
    let status = control.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_refuses_to_start_with_an_invalid_experiment() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.yaml");
    std::fs::write(&file, "version: aragora.chaos/v1\ntitle: [unclosed\n").unwrap();
    let output = aragora_command()
        .arg("control")
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .env("ARAGORA_DATA_DIR", dir.path())
        .env("ARAGORA_CHAOS_SCHEDULE", "0 0 * * * *")
        .env("ARAGORA_CHAOS_EXPERIMENTS", &file)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("ARAGORA_CHAOS_EXPERIMENTS"), "{stderr}");
    assert!(stderr.contains("broken.yaml"), "{stderr}");
}

/// Runs a shipped experiment that uses the engine's fault hooks against one engine.
async fn engine_fault_experiment(name: &str) -> (Engine, Run) {
    let engine =
        Engine::start(EngineOptions::sqlite().env("ARAGORA_API_TOKEN", "chaos-token")).await;
    let run = chaos_run(
        &shipped(name),
        &[
            ("ENGINE_URL", format!("http://{}", engine.api)),
            ("ARAGORA_API_TOKEN", "chaos-token".to_string()),
        ],
    )
    .await;
    (engine, run)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_outage_experiment_passes_and_leaves_no_fault_behind() {
    let (engine, run) = engine_fault_experiment("database-outage.yaml").await;
    assert_eq!(run.code, 0, "{}\n{:#}", run.progress, run.report);
    // Readiness reported the outage during the method...
    assert_eq!(run.report["method"][1]["outcome"], "ok", "{:#}", run.report);
    // ...and nothing is left active afterwards.
    assert_eq!(engine.active_faults("chaos-token").await, json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_failing_provider_experiment_passes_and_its_fault_is_removed_early() {
    let (engine, run) = engine_fault_experiment("failing-llm-provider.yaml").await;
    assert_eq!(run.code, 0, "{}\n{:#}", run.progress, run.report);
    // The fault was set for 30 s; the rollback removed it well before.
    assert_eq!(run.report["rollbacks"][0]["outcome"], "ok");
    assert!(run.report["duration_seconds"].as_f64().unwrap() < 30.0);
    assert_eq!(engine.active_faults("chaos-token").await, json!([]));
}
