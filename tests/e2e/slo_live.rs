//! The live SLO evaluation of `aragora up`: an outage at the edge pages through a real
//! Alertmanager to a webhook, `GET /api/slo` and `aragora slo status` say so, and recovery
//! resolves the page.

use crate::support::{eventually, free_port};
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
struct Alertmanager {
    child: std::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    async fn start(hook: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(
            &config,
            format!(
                "route:\n  receiver: hook\n  group_by: [alertname, sloth_slo, sloth_severity]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: {hook}\n        send_resolved: true\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let child = std::process::Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("am.log")).unwrap())
            .spawn()
            .expect("prometheus-alertmanager (apt-get install prometheus-alertmanager; scripts/setup.sh does)");
        let url = format!("http://127.0.0.1:{port}");
        let ready = format!("{url}/-/ready");
        eventually("Alertmanager to be ready", PATIENCE, || async {
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
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
    let alertmanager = Alertmanager::start(&hook).await;
    let dir = tempfile::tempdir().unwrap();
    let (https, http, admin) = (free_port(), free_port(), free_port());
    let mut up = crate::support::aragora_command()
        .arg("up")
        .args(["--api-port", "0", "--ws-port", "0"])
        .args(["--https-port", &https.to_string()])
        .args(["--http-port", &http.to_string()])
        .args(["--admin-port", &admin.to_string()])
        .env("ARAGORA_DATA_DIR", dir.path())
        .env("ARAGORA_HOST", "127.0.0.1")
        .env("ARAGORA_GATEWAY_HOST", "127.0.0.1")
        .env("ARAGORA_HEALTH_INTERVAL_MS", "200")
        .env("ARAGORA_RATE_LIMIT", "0")
        // A day lasts 43 s: the 5m window is 0.15 s, 1h 1.8 s, 30d 21.6 min.
        .env("ARAGORA_SLO_WINDOW_SCALE", "0.0005")
        .env("ARAGORA_SLO_EVALUATION_INTERVAL", "1")
        .env("ARAGORA_ALERTMANAGER_URL", &alertmanager.url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("up.log")).unwrap())
        .spawn()
        .unwrap();
    let cert = dir.path().join("tls").join("cert.pem");
    let cert_pem = eventually("a generated certificate", PATIENCE, || async {
        std::fs::read(&cert).ok()
    })
    .await;
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&cert_pem).unwrap())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let base = format!("https://127.0.0.1:{https}");
    eventually("the gateway to route to the engine", PATIENCE, || async {
        let response = client.get(format!("{base}/readyz")).send().await.ok()?;
        (response.status() == 200).then_some(())
    })
    .await;

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
    let admin_client = reqwest::Client::new();
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
    let status = slo_status(client.clone()).await.expect("GET /api/slo");
    assert_eq!(status["alerts"][0]["sloth_severity"], "page");
    assert_eq!(status["alerts"][0]["firing"], false, "{status}");
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
    let _ = up.kill();
    let _ = up.wait();
}
