//! The Prometheus-backed SLO evaluator against a real Prometheus scraping a real engine and
//! gateway: `aragora serve` and `aragora control` with `ARAGORA_PROMETHEUS_URL` report in
//! `GET /api/slo` the burn rates of an outage that only the gateway saw (maintenance answers
//! never reach the engine, so the numbers can only have come from Prometheus), the chaos `slo`
//! and `prometheus` probes pass on a healthy system and deviate during the outage, and a
//! Prometheus that stops answering is reported as the evaluator's error.

use crate::support::scraping::ScrapingPrometheus;
use crate::support::{
    aragora_command, eventually, experiment, free_port, Engine, EngineOptions, GatewayProcess,
};
use serde_json::Value;
use std::process::Stdio;
use std::time::{Duration, Instant};

const PATIENCE: Duration = Duration::from_secs(60);
/// Windows shrunk 50 times: the 5m window is 6 s of Prometheus data.
const WINDOW_SCALE: &str = "0.02";

/// SLO `name`'s 5m window as `url`'s `GET /api/slo` reports it, and the whole answer.
async fn window_5m(http: &reqwest::Client, url: &str, name: &str) -> Option<(Value, Value)> {
    let body: Value = http.get(url).send().await.ok()?.json().await.ok()?;
    let slo = body["slos"]
        .as_array()?
        .iter()
        .find(|s| s["slo"] == name)?
        .clone();
    let window = slo["windows"]
        .as_array()?
        .iter()
        .find(|w| w["window"] == "5m")?
        .clone();
    Some((window, body))
}

/// `aragora control` evaluating SLOs over `prometheus`, no schedules; killed when dropped.
struct Control {
    child: std::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Control {
    async fn start(prometheus: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = aragora_command()
            .arg("control")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("ARAGORA_DATA_DIR", dir.path())
            .env("ARAGORA_BACKUP_SCHEDULE", "")
            .env("ARAGORA_DRILL_SCHEDULE", "")
            .env("ARAGORA_PROMETHEUS_URL", prometheus)
            .env("ARAGORA_SLO_EVALUATION_INTERVAL", "1")
            .env("ARAGORA_SLO_WINDOW_SCALE", WINDOW_SCALE)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("control.log")).unwrap())
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}/api/slo");
        eventually("control's /api/slo", PATIENCE, || async {
            reqwest::get(&url).await.ok().map(|_| ())
        })
        .await;
        Self {
            child,
            url,
            _dir: dir,
        }
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An experiment whose steady state asks the `slo` probe (burning below the paging rate) and
/// the `prometheus` probe (the gateway's answers of the last 5 s were successes) about the system.
fn healthy_edge_experiment(engine: &Engine, prometheus: &str) -> String {
    format!(
        r#"version: aragora.chaos/v1
title: the edge is healthy, by the SLO evaluator and by Prometheus
steady_state:
  - name: availability burns below the paging rate
    slo: {{url: "http://{api}", slo: availability, window: 5m, max_burn_rate: 14.4}}
  - name: latency burns below the paging rate
    slo: {{url: "http://{api}", slo: latency, window: 5m, max_burn_rate: 14.4}}
  - name: the gateway's answers of the last 5 s were successes
    prometheus:
      url: "{prometheus}"
      query: 'sum(rate(aragora_http_requests_total{{component="gateway",status=~"2.."}}[5s])) / sum(rate(aragora_http_requests_total{{component="gateway"}}[5s]))'
      min: 0.99
method:
  - name: a breath
    wait: {{seconds: 0.1}}
"#,
        api = engine.api,
    )
}

/// An engine evaluating SLOs over a real Prometheus that scrapes it and the gateway in front
/// of it, with steady reads through the gateway (bounded in time) until the task is aborted.
struct ScrapedEdge {
    prometheus: ScrapingPrometheus,
    engine: Engine,
    gateway: GatewayProcess,
    traffic: tokio::task::JoinHandle<()>,
}

async fn scraped_edge() -> ScrapedEdge {
    let prometheus = ScrapingPrometheus::start().await;
    let engine = Engine::start(
        EngineOptions::sqlite()
            .env("ARAGORA_PROMETHEUS_URL", prometheus.url())
            .env("ARAGORA_SLO_EVALUATION_INTERVAL", 1)
            .env("ARAGORA_SLO_WINDOW_SCALE", WINDOW_SCALE),
    )
    .await;
    let gateway = GatewayProcess::start(&[engine.api.to_string()], &[]).await;
    gateway.wait_ready_count(1, PATIENCE).await;
    prometheus.scrape(
        "aragora-gateway",
        &format!("127.0.0.1:{}", gateway.admin_port),
    );
    prometheus.scrape("aragora-engine", &engine.api.to_string());
    let traffic = {
        let (client, url) = (gateway.client(), gateway.https_url("/api/debates?limit=1"));
        tokio::spawn(async move {
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(120) {
                let _ = client.get(&url).send().await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    ScrapedEdge {
        prometheus,
        engine,
        gateway,
        traffic,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_and_control_report_burn_rates_from_a_real_prometheus() {
    let ScrapedEdge {
        prometheus,
        engine,
        gateway,
        traffic,
    } = scraped_edge().await;
    let control = Control::start(prometheus.url()).await;
    let http = engine.http.clone();
    let serve_slo = engine.url("/api/slo");
    for url in [&serve_slo, &control.url] {
        // Latency: the availability SLO has no error series to divide before the first 5xx.
        let (window, body) =
            eventually("a healthy 5m window from Prometheus", PATIENCE, || async {
                let (window, body) = window_5m(&http, url, "latency").await?;
                (window["error_ratio"] == 0.0).then_some((window, body))
            })
            .await;
        assert_eq!(window["burn_rate"], 0.0, "{body}");
        assert!(body["error"].is_null(), "{body}");
    }
    let run = experiment::run_text(&healthy_edge_experiment(&engine, prometheus.url())).await;
    assert_eq!(run.code, 0, "{}\n{:#}", run.progress, run.report);
    let probed = run.report["steady_state_before"].to_string();
    assert!(
        probed.contains("burn rate 0.00x"),
        "the slo probe saw numbers: {probed}"
    );

    // An outage only the gateway sees: maintenance answers 503 without asking the engine.
    let enabled = gateway.admin_post("/api/system/maintenance/enable").await;
    assert_eq!(enabled.status(), 200);
    for url in [&serve_slo, &control.url] {
        let (window, body) = eventually("the 5m window to burn past 14.4x", PATIENCE, || async {
            let (window, body) = window_5m(&http, url, "availability").await?;
            (window["burn_rate"].as_f64()? > 14.4).then_some((window, body))
        })
        .await;
        let slo = body["slos"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["slo"] == "availability")
            .unwrap();
        let budget = slo["error_budget_ratio"].as_f64().unwrap();
        let ratio = window["error_ratio"].as_f64().unwrap();
        let burn = window["burn_rate"].as_f64().unwrap();
        assert!(ratio > 0.0 && ratio <= 1.0, "{body}");
        assert!((burn - ratio / budget).abs() < 1e-6 * burn, "{body}");
    }
    let engine_refusals = engine
        .metrics()
        .await
        .lines()
        .filter(|l| l.contains("route=\"/api/debates\"") && l.contains("status=\"503\""))
        .count();
    assert_eq!(
        engine_refusals, 0,
        "the engine itself never refused a read: the burn is the gateway's, through Prometheus"
    );
    let run = experiment::run_text(&healthy_edge_experiment(&engine, prometheus.url())).await;
    assert_eq!(run.code, 1, "{}\n{:#}", run.progress, run.report);
    assert_eq!(run.report["steady_state_before"]["met"], false);
    let probes = run.report["steady_state_before"]["probes"].to_string();
    assert!(probes.contains("is not below 14.4x"), "{probes}");
    traffic.abort();

    // Without Prometheus the evaluator says so instead of inventing numbers.
    drop(prometheus);
    let body = eventually(
        "the evaluator to report Prometheus gone",
        PATIENCE,
        || async {
            let body: Value = http.get(&serve_slo).send().await.ok()?.json().await.ok()?;
            body["error"]
                .as_str()
                .is_some_and(|e| e.contains("Prometheus"))
                .then_some(body.clone())
        },
    )
    .await;
    assert!(
        body["error"].as_str().unwrap().contains("does not answer"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prometheus_backed_availability_of_a_healthy_edge_is_zero_not_unknown() {
    let edge = scraped_edge().await;
    let http = edge.engine.http.clone();
    let serve_slo = edge.engine.url("/api/slo");
    // Prometheus has the traffic: the latency SLI over the same requests has a value.
    eventually("the latency SLI from Prometheus", PATIENCE, || async {
        let (window, _) = window_5m(&http, &serve_slo, "latency").await?;
        (window["error_ratio"] == 0.0).then_some(())
    })
    .await;
    let (window, body) = window_5m(&http, &serve_slo, "availability").await.unwrap();
    assert_eq!(window["error_ratio"], 0.0, "{body}");
    assert_eq!(window["burn_rate"], 0.0, "{body}");
    // The history over the same Prometheus: its `query_range`, a healthy SLI of 1 at the end.
    let history_url = edge.engine.url("/api/slo/history?slo=latency&seconds=300");
    let history: Value = http
        .get(&history_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(history["source"], "prometheus", "{history}");
    assert_eq!(history["slo"], "latency");
    let last = history["points"]
        .as_array()
        .and_then(|points| points.iter().rev().find(|p| p["sli"].is_number()))
        .unwrap_or_else(|| panic!("no point with an SLI: {history}"));
    assert_eq!(last["sli"], 1.0, "{history}");
    assert_eq!(last["burn_rates"]["5m"], 0.0, "{history}");
    assert!(last["at"].as_str().unwrap().ends_with('Z'), "{last}");
    edge.traffic.abort();
}
