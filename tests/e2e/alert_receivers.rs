//! Alertmanager's receivers end to end: `aragora slo generate --alertmanager` renders the
//! configuration from the `ARAGORA_ALERT_*` settings, a real Alertmanager loads it, and a
//! posted critical and warning alert reach `aragora control`'s webhook sink through receivers
//! `pager` and `chat`, bearing the token of `ARAGORA_ALERT_WEBHOOK_TOKEN_FILE`; the sink logs
//! and counts each one and refuses a request without the token (401) and bad payloads
//! (400, 422) with the JSON error envelope.

use crate::support::alertmanager::Alertmanager;
use crate::support::process::{address, Process};
use crate::support::{aragora_command, eventually, sample};
use serde_json::{json, Value};
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(60);

fn received(metrics: &str, receiver: &str, status: &str) -> f64 {
    sample(
        metrics,
        &format!(
            "aragora_alert_notifications_received_total{{receiver=\"{receiver}\",status=\"{status}\"}}"
        ),
    )
    .unwrap_or(-1.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_posted_to_alertmanager_reach_controls_sink_through_the_rendered_receivers() {
    let dir = tempfile::tempdir().unwrap();
    let token = format!("sink-{}", uuid::Uuid::new_v4().simple());
    let token_file = dir.path().join("webhook.token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();

    let mut control = Process::spawn(
        aragora_command()
            .args(["control", "--listen", "127.0.0.1:0"])
            .env("ARAGORA_DATA_DIR", dir.path())
            .env("ARAGORA_BACKUP_SCHEDULE", "")
            .env("ARAGORA_DRILL_SCHEDULE", "")
            .env("ARAGORA_ALERT_WEBHOOK_TOKEN_FILE", &token_file),
        &dir.path().join("control.log"),
        &dir.path().join("control.out"),
    );
    let sink = address(&control.announcement("aragora control listening "), "http");
    let sink_url = format!("http://{sink}/api/alerts/webhook");
    let metrics_url = format!("http://{sink}/metrics");
    let http = reqwest::Client::new();
    let metrics = || async { http.get(&metrics_url).send().await.ok()?.text().await.ok() };
    let before = metrics().await.expect("control's /metrics");
    assert_eq!(received(&before, "pager", "firing"), 0.0, "{before}");

    // The configuration as an operator renders it, receivers pointed at this sink.
    let config = dir.path().join("alertmanager.yml");
    let output = aragora_command()
        .args(["slo", "generate", "--out"])
        .arg(dir.path().join("alerts"))
        .arg("--alertmanager")
        .arg(&config)
        .env("ARAGORA_ALERT_PAGER_WEBHOOK_URL", &sink_url)
        .env("ARAGORA_ALERT_CHAT_WEBHOOK_URL", &sink_url)
        .env("ARAGORA_ALERT_WEBHOOK_TOKEN_FILE", &token_file)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rendered = std::fs::read_to_string(&config).unwrap();
    assert!(
        rendered.contains(&sink_url) && !rendered.contains(&token),
        "{rendered}"
    );
    // Only the first notification's wait is shortened (30 s in production): routing, receivers
    // and credentials are the rendered ones.
    let timed = rendered.replace("group_wait: 30s", "group_wait: 1s");
    assert_ne!(timed, rendered, "the rendered route has a group_wait");
    let alertmanager = Alertmanager::start_with_config(&timed).await;
    alertmanager
        .fire(&[
            json!({"alertname": "AragoraHighErrorRate", "severity": "critical"}),
            json!({"alertname": "AragoraHighMemoryUsage", "severity": "warning"}),
        ])
        .await;

    let text = eventually(
        "both alerts counted by control's sink",
        PATIENCE,
        || async {
            let text = metrics().await?;
            (received(&text, "pager", "firing") >= 1.0 && received(&text, "chat", "firing") >= 1.0)
                .then_some(text)
        },
    )
    .await;
    assert_eq!(received(&text, "other", "firing"), -1.0, "{text}");
    let log = eventually("the sink's log lines", PATIENCE, || async {
        let log = control.log_text();
        (log.contains("AragoraHighErrorRate") && log.contains("AragoraHighMemoryUsage"))
            .then_some(log)
    })
    .await;
    let line = log
        .lines()
        .find(|line| line.contains("AragoraHighErrorRate"))
        .unwrap();
    assert!(
        line.contains("alert notification received")
            && line.contains("critical")
            && line.contains("firing")
            && line.contains("pager"),
        "{line}"
    );
    assert!(!log.contains(&token), "the token never reaches the log");

    // Without the token, or with a body that is not a version-4 payload: refused, in JSON.
    let payload = json!({"version": "4", "status": "firing", "receiver": "pager",
        "alerts": [{"status": "firing", "labels": {"alertname": "Forged"}}]});
    let post = |body: String, bearer: Option<&str>| {
        let mut request = http
            .post(&sink_url)
            .header("content-type", "application/json")
            .body(body);
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (status, body) = post(payload.to_string(), None).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("unauthenticated")),
        "{body}"
    );
    let (status, body) = post("{not json".into(), Some(&token)).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("malformed_payload")),
        "{body}"
    );
    let mut old = payload.clone();
    old["version"] = json!("3");
    let (status, body) = post(old.to_string(), Some(&token)).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (422, &json!("validation_failed")),
        "{body}"
    );
    let after = metrics().await.unwrap();
    assert_eq!(
        received(&after, "pager", "firing"),
        received(&text, "pager", "firing"),
        "refused requests count nothing"
    );
    assert!(!control.log_text().contains("Forged"));
}
