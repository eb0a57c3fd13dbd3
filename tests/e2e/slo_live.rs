//! The live SLO evaluation of `aragora up`: an outage at the edge pages through a real
//! Alertmanager to a webhook, `GET /api/slo` and `aragora slo status` say so, and recovery
//! resolves the page.

use crate::support::alertmanager::Alertmanager;
use crate::support::prom::PromServer;
use crate::support::{eventually, UpProcess as Up};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(60);

/// A webhook receiver standing in for the pager: keeps every notification Alertmanager posts.
async fn webhook() -> (String, Arc<Mutex<Vec<Value>>>) {
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let store = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let store = store.clone();
            async move {
                store.lock().unwrap().push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

/// A real Alertmanager (Debian's `prometheus-alertmanager`) routing everything to `hook`.
async fn alertmanager(hook: &str) -> Alertmanager {
    Alertmanager::start_with_config(&format!(
        "route:\n  receiver: hook\n  group_by: [alertname, sloth_slo, sloth_severity]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: {hook}\n        send_resolved: true\n"
    ))
    .await
}

/// The notifications for the availability page, with their status (`firing`, `resolved`).
fn page_notifications(received: &Mutex<Vec<Value>>) -> Vec<String> {
    received
        .lock()
        .unwrap()
        .iter()
        .filter(|n| {
            n["commonLabels"]["sloth_slo"] == "availability"
                && n["commonLabels"]["sloth_severity"] == "page"
        })
        .map(|n| n["status"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_at_the_edge_pages_through_alertmanager_and_recovery_resolves_it() {
    let (hook, received) = webhook().await;
    let alertmanager = alertmanager(&hook).await;
    let up = Up::start(&[
        // A day lasts 43 s: the 5m window is 0.15 s, 1h 1.8 s, 30d 21.6 min.
        ("ARAGORA_SLO_WINDOW_SCALE", "0.0005"),
        ("ARAGORA_SLO_EVALUATION_INTERVAL", "1"),
        ("ARAGORA_ALERTMANAGER_URL", alertmanager.url()),
    ])
    .await;
    let (client, base, admin) = (up.client.clone(), up.base.clone(), up.admin);

    // Steady traffic through the edge for the rest of the test.
    let traffic = {
        let (client, url) = (client.clone(), format!("{base}/api/debates?limit=1"));
        tokio::spawn(async move {
            loop {
                let _ = client.get(&url).send().await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let slo_status = |client: reqwest::Client| {
        let url = format!("{base}/api/slo");
        async move {
            let body: Value = client.get(&url).send().await.ok()?.json().await.ok()?;
            body["slos"]
                .as_array()?
                .iter()
                .find(|s| s["slo"] == "availability")
                .cloned()
        }
    };
    let healthy = eventually("a healthy availability SLO", PATIENCE, || async {
        let status = slo_status(client.clone()).await?;
        (status["windows"][0]["error_ratio"] == 0.0).then_some(status)
    })
    .await;
    assert_eq!(healthy["alerts"][0]["firing"], false, "{healthy}");

    // Outage: maintenance mode answers 503 to everything but health checks.
    let admin_client = crate::support::with_bearer(reqwest::Client::builder(), up.token.as_deref())
        .build()
        .unwrap();
    let maintenance = |on: &str| format!("http://127.0.0.1:{admin}/api/system/maintenance/{on}");
    let enabled = admin_client
        .post(maintenance("enable"))
        .send()
        .await
        .unwrap();
    assert_eq!(enabled.status(), 200);
    // The gateway refuses /api/slo too while in maintenance: watch the pager.
    eventually("Alertmanager to page the webhook", PATIENCE, || async {
        page_notifications(&received)
            .contains(&"firing".to_string())
            .then_some(())
    })
    .await;
    let firing = received
        .lock()
        .unwrap()
        .iter()
        .find(|n| n["commonLabels"]["sloth_severity"] == "page")
        .cloned()
        .unwrap();
    assert_eq!(firing["commonLabels"]["severity"], "critical", "{firing}");
    assert_eq!(
        firing["commonLabels"]["alertname"], "AragoraAvailabilityBudgetBurn",
        "{firing}"
    );
    assert!(
        firing["commonAnnotations"]["runbook_url"].is_string(),
        "{firing}"
    );

    // Recovery: the short windows clean up and the page resolves.
    let disabled = admin_client
        .post(maintenance("disable"))
        .send()
        .await
        .unwrap();
    assert_eq!(disabled.status(), 200);
    eventually("the page to resolve at the webhook", PATIENCE, || async {
        page_notifications(&received)
            .contains(&"resolved".to_string())
            .then_some(())
    })
    .await;
    // With a day of 43 s the 30m window is under a second of traffic, so one stray 5xx on a
    // loaded machine fires the page again for a moment: the API's view settles, not at once.
    let status = eventually(
        "GET /api/slo to show the page resolved",
        PATIENCE,
        || async {
            let status = slo_status(client.clone()).await?;
            (status["alerts"][0]["firing"] == false).then_some(status)
        },
    )
    .await;
    assert_eq!(status["alerts"][0]["sloth_severity"], "page");
    let spent = status["error_budget_remaining_ratio"].as_f64().unwrap();
    assert!(spent < 1.0, "the outage spent budget: {status}");

    // The operator's view: a table with the SLO and its budget.
    let table = crate::support::aragora_command()
        .args(["slo", "status", "--url", &base, "--insecure"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&table.stderr)
    );
    assert!(
        text.contains("availability") && text.contains("BURN 5M"),
        "{text}"
    );

    traffic.abort();
}

/// A real Prometheus scraping the gateway (job `aragora-gateway`) and the engine (job
/// `aragora-engine`) of `up` every second, with the generated rule files loaded.
async fn prometheus(up: &Up) -> PromServer {
    PromServer::prometheus(&[
        ("aragora-gateway", format!("127.0.0.1:{}", up.admin)),
        ("aragora-engine", format!("127.0.0.1:{}", up.api)),
    ])
    .await
}

/// Every `expr` of a committed Grafana dashboard, with its variables filled in.
pub(crate) fn dashboard_queries() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards");
    let mut queries = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let dashboard: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        for panel in dashboard["panels"].as_array().into_iter().flatten() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    let name = format!("{}: {}", dashboard["uid"], panel["title"]);
                    queries.push((name, expr.replace("$slo", ".*")));
                }
            }
        }
    }
    queries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scraping_the_system_runs_every_rule_and_dashboard_query_without_error() {
    let up = Up::start(&[("ARAGORA_OFFLINE_AGENT_LATENCY_MS", "5")]).await;
    // Some of everything: requests through the edge and a finished debate.
    up.run_debate("Scraped").await;
    let prometheus = prometheus(&up).await;

    eventually("both jobs scraped and up", PATIENCE, || async {
        let targets = prometheus.api("/api/v1/targets", &[]).await;
        let active = targets["data"]["activeTargets"].as_array()?.clone();
        (active.len() == 2 && active.iter().all(|t| t["health"] == "up")).then_some(())
    })
    .await;
    // Every recording and alerting rule evaluated, none with an error.
    let groups = eventually("every rule evaluated", PATIENCE, || async {
        let rules = prometheus.api("/api/v1/rules", &[]).await;
        let groups = rules["data"]["groups"].as_array()?.clone();
        let evaluated = groups.iter().all(|g| {
            g["rules"].as_array().into_iter().flatten().all(|r| {
                r["lastEvaluation"]
                    .as_str()
                    .is_some_and(|t| !t.starts_with("0001"))
            })
        });
        (!groups.is_empty() && evaluated).then_some(groups)
    })
    .await;
    let mut broken = Vec::new();
    let mut count = 0;
    for rule in groups
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
    {
        count += 1;
        if rule["health"] != "ok" {
            broken.push(format!("{}: {}", rule["name"], rule["lastError"]));
        }
    }
    assert!(count >= 40, "both rule files loaded ({count} rules)");
    assert!(broken.is_empty(), "rules with errors: {broken:?}");

    // Every dashboard query runs.
    let queries = dashboard_queries();
    assert!(queries.len() >= 40, "{} queries", queries.len());
    let mut failing = Vec::new();
    for (panel, query) in &queries {
        let answer = prometheus.api("/api/v1/query", &[("query", query)]).await;
        if answer["status"] != "success" {
            failing.push(format!("{panel}: {}", answer["error"]));
        }
    }
    assert!(failing.is_empty(), "dashboard queries failing: {failing:?}");

    // The SLIs have data from both jobs, and the recording rules produce it.
    for (query, what) in [
        (
            "aragora_http_requests_total{component=\"gateway\"}",
            "gateway requests",
        ),
        (
            "aragora_request_latency_seconds_bucket{component=\"gateway\",le=\"0.5\"}",
            "gateway latency buckets",
        ),
        (
            "aragora_debates_total{component=\"engine\"}",
            "engine debates",
        ),
        ("slo:sli_error:ratio_rate5m", "the 5m SLI recording rule"),
        ("sloth_slo_info", "Sloth's info series"),
    ] {
        let series = eventually(what, PATIENCE, || async {
            let answer = prometheus.api("/api/v1/query", &[("query", query)]).await;
            let result = answer["data"]["result"].as_array()?.clone();
            (!result.is_empty()).then_some(result)
        })
        .await;
        assert!(!series.is_empty(), "{what}");
    }
}
