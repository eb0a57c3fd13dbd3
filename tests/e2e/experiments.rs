//! The shipped experiments that had only been syntax-checked, run for real with `aragora chaos
//! run` against the test's processes (`--var` points them there) and passing:
//! replica-pause (a SIGSTOPped replica behind the gateway), gateway-engine-latency (a fault
//! proxy between gateway and engine, judged by the live SLO evaluator over a real Prometheus),
//! slow-llm-provider (the engine's agent_slow fault). Each also checks that the fault was real
//! and that nothing of it is left afterwards.

use crate::support::experiment::{self, shipped};
use crate::support::proxy::ProxyProcess;
use crate::support::scraping::ScrapingPrometheus;
use crate::support::{eventually, Engine, EngineOptions, GatewayProcess};
use serde_json::{json, Value};
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(60);

/// The scheduling state of a process (`R`, `S`, `T` for stopped, ...) from /proc.
fn process_state(pid: i32) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name is in parentheses and may hold spaces; the state follows it.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or_default()
        .to_string()
}

fn gateway_url(gateway: &GatewayProcess) -> String {
    format!("https://127.0.0.1:{}", gateway.https_port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replica_pause_experiment_passes_and_resumes_the_replica() {
    let mut engines = Vec::new();
    for _ in 0..3 {
        engines.push(Engine::start(EngineOptions::sqlite()).await);
    }
    let upstreams: Vec<String> = engines.iter().map(|e| e.api.to_string()).collect();
    let gateway = GatewayProcess::start(&upstreams, &[]).await;
    gateway.wait_ready_count(3, PATIENCE).await;
    let victim = &engines[1];

    let run = experiment::run(
        &shipped("replica-pause.yaml"),
        &[
            ("GATEWAY_URL", gateway_url(&gateway)),
            ("REPLICA_PORT", victim.api.port().to_string()),
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{}\n{:#}", run.progress, run.report);
    assert_eq!(run.report["status"], "passed");
    let pause = &run.report["method"][0];
    assert_eq!(pause["outcome"], "ok", "{pause:#}");
    assert!(
        pause["detail"]
            .as_str()
            .unwrap()
            .contains(&victim.pid().to_string()),
        "the pause names the replica's pid: {pause:#}"
    );
    // The freeze was real: the gateway took the replica out while it lasted.
    let log = gateway.log_text();
    assert!(
        log.lines()
            .any(|line| line.contains(&victim.api.to_string())
                && line.contains("taken out of rotation")),
        "the gateway never took {} out:\n{log}",
        victim.api
    );
    // The rollback resumed it well before its 20 s: it runs and the gateway has it back.
    let undo = run.report["rollbacks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"].as_str().unwrap_or_default().starts_with("resume"))
        .cloned()
        .expect("the pause's undo ran");
    assert_eq!(undo["outcome"], "ok", "{undo:#}");
    assert_ne!(
        process_state(victim.pid()),
        "T",
        "the replica is still stopped"
    );
    assert!(run.report["duration_seconds"].as_f64().unwrap() < 20.0);
    gateway.wait_ready_count(3, PATIENCE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_engine_latency_experiment_passes_with_the_slo_evaluated_over_prometheus() {
    let prometheus = ScrapingPrometheus::start().await;
    let engine = Engine::start(
        EngineOptions::sqlite()
            .env("ARAGORA_PROMETHEUS_URL", prometheus.url())
            .env("ARAGORA_SLO_EVALUATION_INTERVAL", 1),
    )
    .await;
    let proxy = ProxyProcess::start("engine", &engine.api.to_string()).await;
    let gateway = GatewayProcess::start(&[format!("127.0.0.1:{}", proxy.listen)], &[]).await;
    gateway.wait_ready_count(1, PATIENCE).await;
    prometheus.scrape(
        "aragora-gateway",
        &format!("127.0.0.1:{}", gateway.admin_port),
    );
    prometheus.scrape("aragora-engine", &engine.api.to_string());
    // The experiment's SLO probe reads the evaluator through the gateway. The availability SLI
    // has no value before a first 5xx (the error series does not exist, see slo_prometheus):
    // one maintenance 503 creates it, so the probe judges a burn rate from Prometheus rather
    // than passing on "no events".
    let client = gateway.client();
    let read = gateway.https_url("/api/debates?limit=1");
    gateway.admin_post("/api/system/maintenance/enable").await;
    let refused = client.get(&read).send().await.unwrap();
    assert_eq!(refused.status(), 503);
    gateway.admin_post("/api/system/maintenance/disable").await;
    for _ in 0..300 {
        let answer = client.get(&read).send().await.unwrap();
        assert_eq!(answer.status(), 200);
    }
    let slo_url = gateway.https_url("/api/slo");
    let burn = eventually(
        "an availability burn rate from Prometheus",
        PATIENCE,
        || async {
            let body: Value = client.get(&slo_url).send().await.ok()?.json().await.ok()?;
            let slo = body["slos"]
                .as_array()?
                .iter()
                .find(|s| s["slo"] == "availability")?;
            let window = slo["windows"]
                .as_array()?
                .iter()
                .find(|w| w["window"] == "5m")?;
            window["burn_rate"].as_f64()
        },
    )
    .await;
    assert!(burn < 14.4, "one 503 in 301 reads burns {burn}x");

    let run = experiment::run(
        &shipped("gateway-engine-latency.yaml"),
        &[
            ("GATEWAY_URL", gateway_url(&gateway)),
            ("PROXY_API", proxy.api.clone()),
            ("PROXY_NAME", "engine".to_string()),
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{}\n{:#}", run.progress, run.report);
    assert_eq!(run.report["status"], "passed");
    let fault = &run.report["method"][0];
    assert_eq!(fault["outcome"], "ok", "{fault:#}");
    // The reads under the fault took the added latency: 5 reads, 200 ms (± 50) each way.
    let slowed = &run.report["method"][1];
    assert_eq!(slowed["outcome"], "ok", "{slowed:#}");
    assert!(
        slowed["seconds"].as_f64().unwrap() >= 5.0 * 2.0 * 0.15,
        "{slowed:#}"
    );
    // The undo lifted the 60 s fault at the end.
    assert!(run.report["duration_seconds"].as_f64().unwrap() < 60.0);
    assert!(proxy.faults("engine").await.is_empty());
    let judged = run.report["steady_state_before"]["probes"][1]["detail"].to_string();
    assert!(
        judged.contains("burn rate"),
        "the slo probe judged numbers: {judged}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_slow_llm_provider_experiment_passes_and_slows_only_the_debate() {
    let engine =
        Engine::start(EngineOptions::sqlite().env("ARAGORA_API_TOKEN", "chaos-token")).await;
    let run = experiment::run(
        &shipped("slow-llm-provider.yaml"),
        &[
            ("ENGINE_URL", format!("http://{}", engine.api)),
            ("ARAGORA_API_TOKEN", "chaos-token".to_string()),
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{}\n{:#}", run.progress, run.report);
    assert_eq!(run.report["status"], "passed");
    // The debate the experiment started met the slow agents: it had not finished when the
    // experiment (seconds long) ended, though offline debates take milliseconds.
    let (_, list) = engine.get("/api/debates?limit=10").await;
    let debate = list["debates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["topic"] == "Is a slow provider an outage?")
        .cloned()
        .expect("the experiment's debate");
    let id = debate["debate_id"].as_str().unwrap().to_string();
    let (_, record) = engine.get(&format!("/api/debates/{id}")).await;
    assert_ne!(record["status"], "completed", "{record}");
    // The fault is gone after the run, and the debate then completes.
    let faults = engine.active_faults("chaos-token").await;
    assert_eq!(faults, json!([]), "{faults}");
    let record = engine.wait_final(&id, PATIENCE).await;
    assert_eq!(record["status"], "completed", "{record}");
}
