//! The shipped Alertmanager configuration (deploy/alertmanager/alertmanager.yml) in a real
//! Alertmanager: each of its inhibit rules holds the inhibited alert while the inhibiting one
//! fires, and only then (the same alert without its inhibitor stays active); and the chaos
//! `alert` probe reads an inhibited alert as not firing.

use crate::support::alertmanager::Alertmanager;
use crate::support::{eventually, experiment};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

fn shipped_config() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/alertmanager/alertmanager.yml")
}

/// An SLO burn-rate alert as the generated rules label it.
fn burn(slo: &str, sloth_severity: &str) -> Value {
    let severity = if sloth_severity == "page" {
        "critical"
    } else {
        "warning"
    };
    let name = format!(
        "Aragora{}BudgetBurn",
        if slo == "availability" {
            "Availability"
        } else {
            "Latency"
        }
    );
    json!({"alertname": name, "sloth_service": "aragora", "sloth_slo": slo,
           "sloth_severity": sloth_severity, "severity": severity})
}

fn runbook(name: &str, severity: &str) -> Value {
    json!({"alertname": name, "severity": severity})
}

/// The state Alertmanager gives the alert with exactly these labels.
fn state_of<'a>(alerts: &'a [Value], labels: &Value) -> Option<&'a Value> {
    alerts
        .iter()
        .find(|a| &a["labels"] == labels)
        .map(|a| &a["status"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_inhibit_rules_hold_each_inhibited_alert_while_its_inhibitor_fires() {
    let alertmanager = Alertmanager::start(&shipped_config()).await;
    let inhibited = [
        // An SLO's ticket while its page fires...
        burn("availability", "ticket"),
        // ...and each runbook warning while its critical fires.
        runbook("AragoraAvailabilitySLOWarning", "warning"),
        runbook("AragoraLatencySLOWarning", "warning"),
        runbook("AragoraAgentCircuitOpen", "warning"),
    ];
    let inhibitors = [
        burn("availability", "page"),
        runbook("AragoraAvailabilitySLOBreach", "critical"),
        runbook("AragoraLatencySLOBreach", "critical"),
        runbook("AragoraManyCircuitsOpen", "critical"),
    ];
    // The latency SLO's ticket has no page firing: the rule's `equal` keeps it active.
    let unrelated = burn("latency", "ticket");
    let mut all: Vec<Value> = inhibited.to_vec();
    all.extend(inhibitors.iter().cloned());
    all.push(unrelated.clone());
    alertmanager.fire(&all).await;

    let alerts = eventually(
        "every inhibited alert suppressed",
        Duration::from_secs(30),
        || async {
            let alerts = alertmanager.alerts().await;
            inhibited
                .iter()
                .all(|labels| state_of(&alerts, labels).is_some_and(|s| s["state"] == "suppressed"))
                .then_some(alerts)
        },
    )
    .await;
    for (target, source) in inhibited.iter().zip(&inhibitors) {
        let status = state_of(&alerts, target).unwrap();
        assert_eq!(
            status["inhibitedBy"].as_array().map(Vec::len),
            Some(1),
            "{target} is held by exactly its inhibitor: {status}"
        );
        let inhibitor = state_of(&alerts, source).unwrap();
        assert_eq!(inhibitor["state"], "active", "{source}: {inhibitor}");
    }
    let status = state_of(&alerts, &unrelated).expect("the latency ticket");
    assert_eq!(status["state"], "active", "{status}");

    // The chaos `alert` probe sees the same: the breach fires, its inhibited warning does not,
    // and the uninhibited ticket does.
    let probes = |warning_firing: bool| {
        format!(
            r#"version: aragora.chaos/v1
title: inhibited alerts read as not firing
steady_state:
  - name: the availability breach fires
    alert: {{alertmanager_url: "{url}", name: AragoraAvailabilitySLOBreach, firing: true}}
  - name: its warning is held
    alert: {{alertmanager_url: "{url}", name: AragoraAvailabilitySLOWarning, firing: {warning_firing}}}
  - name: the latency ticket fires
    alert:
      alertmanager_url: "{url}"
      name: AragoraLatencyBudgetBurn
      firing: true
      labels: {{sloth_severity: ticket}}
method:
  - name: a breath
    wait: {{seconds: 0.1}}
"#,
            url = alertmanager.url()
        )
    };
    let run = experiment::run_text(&probes(false)).await;
    assert_eq!(run.code, 0, "{}\n{:#}", run.progress, run.report);
    assert_eq!(run.report["status"], "passed");
    // Asking for the inhibited warning to fire deviates: the probe really looks.
    let run = experiment::run_text(&probes(true)).await;
    assert_eq!(run.code, 1, "{}\n{:#}", run.progress, run.report);
    assert_eq!(
        run.report["steady_state_before"]["met"], false,
        "{:#}",
        run.report
    );
}
