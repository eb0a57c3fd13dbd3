//! Grafana dashboards (`dashboards/*.json`): the runbook's five, as data rendered to JSON.
//!
//! Every panel queries a Prometheus chosen by the `datasource` variable; uids are fixed so
//! links and provisioning survive regeneration. Queries name only catalogue metrics and the
//! recording rules of `alerts/` (a test checks both).

use crate::settings::{engine_selector, gateway_selector};
use serde_json::{json, Value};

/// One panel: what it shows and how.
struct Panel {
    title: &'static str,
    kind: &'static str,
    unit: &'static str,
    /// (query, legend)
    targets: Vec<(String, &'static str)>,
    /// Steps from green: (value, colour).
    thresholds: Vec<(f64, &'static str)>,
    description: &'static str,
}

fn panel(title: &'static str, kind: &'static str, unit: &'static str) -> Panel {
    Panel {
        title,
        kind,
        unit,
        targets: Vec::new(),
        thresholds: Vec::new(),
        description: "",
    }
}

impl Panel {
    fn query(mut self, expr: impl Into<String>, legend: &'static str) -> Self {
        self.targets.push((expr.into(), legend));
        self
    }
    fn threshold(mut self, value: f64, colour: &'static str) -> Self {
        self.thresholds.push((value, colour));
        self
    }
    fn describe(mut self, text: &'static str) -> Self {
        self.description = text;
        self
    }
}

/// A rendered dashboard: its file name and JSON.
pub struct Dashboard {
    pub file: &'static str,
    pub json: Value,
}

impl Dashboard {
    /// Every query of every panel.
    pub fn queries(&self) -> Vec<String> {
        self.json["panels"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|panel| panel["targets"].as_array().cloned().unwrap_or_default())
            .filter_map(|target| target["expr"].as_str().map(str::to_string))
            .collect()
    }
}

/// The recording rules and series dashboards may name besides catalogue metrics.
pub const RULE_SERIES: &[&str] = &[
    "slo:sli_error:ratio_rate5m",
    "slo:sli_error:ratio_rate1h",
    "slo:sli_error:ratio_rate6h",
    "slo:sli_error:ratio_rate1d",
    "slo:sli_error:ratio_rate3d",
    "slo:sli_error:ratio_rate30d",
    "slo:objective:ratio",
    "slo:error_budget:ratio",
    "slo:current_burn_rate:ratio",
    "slo:period_burn_rate:ratio",
    "slo:period_error_budget_remaining:ratio",
    "sloth_slo_info",
    // Prometheus' own series of alert states.
    "ALERTS",
];

/// The SLO dashboard's choice of SLOs, from the rules' info series.
fn slo_variable() -> Value {
    json!({
        "name": "slo",
        "label": "SLO",
        "type": "query",
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "query": "label_values(sloth_slo_info{sloth_service=\"aragora\"}, sloth_slo)",
        "includeAll": true,
        "multi": true,
        "current": {},
        "refresh": 1,
    })
}

fn render(
    uid: &'static str,
    title: &'static str,
    file: &'static str,
    variables: Vec<Value>,
    panels: Vec<Panel>,
) -> Dashboard {
    let panels: Vec<Value> = panels
        .into_iter()
        .enumerate()
        .map(|(index, panel)| {
            let (width, height) = if panel.kind == "stat" || panel.kind == "gauge" {
                (6, 5)
            } else {
                (12, 8)
            };
            let per_row = 24 / width;
            let steps: Vec<Value> = std::iter::once(json!({"color": "green", "value": null}))
                .chain(
                    panel
                        .thresholds
                        .iter()
                        .map(|(value, colour)| json!({"color": colour, "value": value})),
                )
                .collect();
            json!({
                "id": index + 1,
                "type": panel.kind,
                "title": panel.title,
                "description": panel.description,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "gridPos": {"h": height, "w": width, "x": (index as u64 % per_row) * width, "y": (index as u64 / per_row) * height},
                "fieldConfig": {
                    "defaults": {
                        "unit": panel.unit,
                        "thresholds": {"mode": "absolute", "steps": steps}
                    },
                    "overrides": []
                },
                "targets": panel.targets.iter().enumerate().map(|(i, (expr, legend))| json!({
                    "refId": ((b'A' + i as u8) as char).to_string(),
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "expr": expr,
                    "legendFormat": legend,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    Dashboard {
        file,
        json: json!({
            "uid": uid,
            "title": title,
            "tags": ["aragora"],
            "editable": true,
            "schemaVersion": 39,
            "time": {"from": "now-6h", "to": "now"},
            "refresh": "30s",
            "templating": {"list": std::iter::once(json!({
                "name": "datasource",
                "label": "Prometheus",
                "type": "datasource",
                "query": "prometheus",
                "current": {},
                "hide": 0,
            })).chain(variables).collect::<Vec<_>>()},
            "panels": panels,
        }),
    }
}

/// The five dashboards of the runbook.
pub fn dashboards(latency_threshold_seconds: f64) -> Vec<Dashboard> {
    let (gw, engine) = (gateway_selector(), engine_selector());
    let requests = format!("aragora_http_requests_total{{{gw}}}");
    let errors = format!("aragora_http_requests_total{{{gw},status=~\"5..\"}}");
    let latency = |q: &str| {
        format!("histogram_quantile({q}, sum by (le) (rate(aragora_request_latency_seconds_bucket{{{gw}}}[5m])))")
    };
    let error_ratio = format!("sum(rate({errors}[5m])) / sum(rate({requests}[5m]))");
    let debates =
        |outcome: &str| format!("aragora_debates_total{{{engine},outcome=~\"{outcome}\"}}");
    let slo = "{sloth_service=\"aragora\", sloth_slo=~\"$slo\"}";

    vec![
        render("aragora-overview", "Aragora Overview", "aragora-overview.json", vec![], vec![
            panel("Requests / s", "stat", "reqps").query(format!("sum(rate({requests}[5m]))"), "requests"),
            panel("5xx ratio", "stat", "percentunit").query(&error_ratio, "5xx").threshold(0.0005, "orange").threshold(0.001, "red"),
            panel("p99 latency", "stat", "s").query(latency("0.99"), "p99").threshold(0.4, "orange").threshold(latency_threshold_seconds, "red"),
            panel("Ready replicas", "stat", "short").query(format!("sum(aragora_upstream_ready{{{gw}}})"), "ready").threshold(0.0, "red").threshold(1.0, "green"),
            panel("Active and queued debates", "timeseries", "short")
                .query(format!("sum(aragora_active_debates{{{engine}}})"), "running")
                .query(format!("sum(aragora_queued_debates{{{engine}}})"), "queued"),
            panel("WebSocket connections", "timeseries", "short").query(format!("sum(aragora_websocket_connections{{{engine}}})"), "open"),
            panel("Open circuit breakers", "stat", "short").query(format!("count(aragora_circuit_breaker_state{{{engine}}} > 0) or vector(0)"), "open").threshold(1.0, "orange").threshold(3.0, "red"),
            panel("Database up", "stat", "short").query(format!("min(aragora_database_up{{{engine}}})"), "up").threshold(0.0, "red").threshold(1.0, "green"),
            panel("Engine memory", "timeseries", "bytes").query(format!("process_resident_memory_bytes{{{engine}}}"), "{{instance}}").threshold(2147483648.0, "red"),
            panel("Firing alerts", "stat", "short").query("count(ALERTS{alertstate=\"firing\", alertname=~\"Aragora.*\"}) or vector(0)", "firing").threshold(1.0, "red"),
        ]),
        render("aragora-api-performance", "Aragora API Performance", "api-performance.json", vec![], vec![
            panel("Requests / s by route", "timeseries", "reqps").query(format!("sum by (route) (rate({requests}[5m]))"), "{{route}}"),
            panel("Responses by status", "timeseries", "reqps").query(format!("sum by (status) (rate({requests}[5m]))"), "{{status}}"),
            panel("Latency p50 / p95 / p99", "timeseries", "s")
                .query(latency("0.5"), "p50").query(latency("0.95"), "p95").query(latency("0.99"), "p99")
                .threshold(latency_threshold_seconds, "red"),
            panel("p95 by route", "timeseries", "s").query(format!("histogram_quantile(0.95, sum by (route, le) (rate(aragora_request_latency_seconds_bucket{{{gw}}}[5m])))"), "{{route}}").threshold(0.5, "red"),
            panel("5xx ratio", "timeseries", "percentunit").query(&error_ratio, "5xx").threshold(0.001, "red"),
            panel("Rate-limited / s", "timeseries", "reqps").query(format!("sum by (route) (rate(aragora_rate_limited_total{{{gw}}}[5m]))"), "{{route}}").threshold(10.0, "red"),
            panel("In-flight requests", "timeseries", "short").query(format!("sum(aragora_gateway_inflight_requests{{{gw}}})"), "in flight"),
            panel("Upstream retries / s", "timeseries", "reqps").query(format!("sum(rate(aragora_upstream_retries_total{{{gw}}}[5m]))"), "retries"),
            panel("Auth failures / s by reason", "timeseries", "reqps")
                .query(format!("sum by (reason) (rate(aragora_auth_failures_total{{{engine}}}[5m]))"), "{{reason}}")
                .threshold(1.0, "red")
                .describe("Requests the engines refused for their credentials. AragoraAuthFailureBurst fires past 1/s (403 forbidden aside) for 5 minutes."),
            panel("Per-client limit refusals / s by limit", "timeseries", "reqps")
                .query(format!("sum by (limit) (rate(aragora_client_limit_refusals_total{{{engine}}}[5m]))"), "{{limit}}")
                .threshold(0.1, "red")
                .describe("Requests, WebSockets, subscriptions and messages the engines refused because one client reached its own limit (the engine's log names the client). AragoraClientLimitRefusals opens a ticket past 0.1/s for 15 minutes."),
            panel("OCSP staple: validity left", "timeseries", "s")
                .query(format!("aragora_tls_ocsp_staple_expires_in_seconds{{{gw}}}"), "{{instance}} left")
                .query(format!("aragora_tls_ocsp_staple_age_seconds{{{gw}}}"), "{{instance}} age")
                .query(format!("aragora_tls_ocsp_stapling_enabled{{{gw}}} - aragora_tls_ocsp_stapled{{{gw}}}"), "{{instance}} missing (1)")
                .describe("Per gateway: seconds until the stapled OCSP response's nextUpdate, its age, and 1 while stapling is on but nothing is stapled. AragoraOCSPStapleStale warns once less is left than half the age, AragoraOCSPStapleMissing after 15 minutes without a staple."),
            panel("OCSP refresh failures / h by reason", "timeseries", "short")
                .query(format!("sum by (instance, reason) (increase(aragora_tls_ocsp_refresh_failures_total{{{gw}}}[1h]))"), "{{instance}} {{reason}}")
                .threshold(2.0, "red")
                .describe("Fetches of the certificate's OCSP response that did not staple (the gateway's log says why: \"OCSP refresh failed\"). AragoraOCSPRefreshFailing at two within two hours; AragoraOCSPCertificateRevoked pages on any revoked."),
        ]),
        render("aragora-debate-analytics", "Aragora Debate Analytics", "debate-analytics.json", vec![], vec![
            panel("Debates ended / h by outcome", "timeseries", "short").query(format!("sum by (outcome) (increase(aragora_debates_total{{{engine}}}[1h]))"), "{{outcome}}"),
            panel("Debate success (1h)", "stat", "percentunit")
                .query(format!("sum(rate({}[1h])) / sum(rate({}[1h]))", debates("consensus|no_consensus"), debates("consensus|no_consensus|failed|timed_out")), "success")
                .threshold(0.0, "red").threshold(0.95, "green"),
            panel("Consensus rate (1h)", "stat", "percentunit")
                .query(format!("sum(rate({}[1h])) / sum(rate({}[1h]))", debates("consensus"), debates("consensus|no_consensus")), "consensus"),
            panel("Debate duration p50 / p95", "timeseries", "s")
                .query(format!("histogram_quantile(0.5, sum by (le) (rate(aragora_debate_duration_seconds_bucket{{{engine}}}[1h])))"), "p50")
                .query(format!("histogram_quantile(0.95, sum by (le) (rate(aragora_debate_duration_seconds_bucket{{{engine}}}[1h])))"), "p95")
                .threshold(600.0, "red"),
            panel("Agent calls / s by status", "timeseries", "reqps").query(format!("sum by (agent, status) (rate(aragora_agent_calls_total{{{engine}}}[5m]))"), "{{agent}} {{status}}"),
            panel("Agent p95 latency", "timeseries", "s").query(format!("histogram_quantile(0.95, sum by (agent, le) (rate(aragora_agent_latency_seconds_bucket{{{engine}}}[5m])))"), "{{agent}}").threshold(30.0, "red"),
            panel("Agent errors by type", "timeseries", "short").query(format!("sum by (agent, error_type) (increase(aragora_agent_errors_total{{{engine}}}[1h]))"), "{{agent}} {{error_type}}"),
            panel("Circuit breakers (0 closed, 1 open, 2 half-open)", "timeseries", "short").query(format!("max by (agent) (aragora_circuit_breaker_state{{{engine}}})"), "{{agent}}").threshold(1.0, "red"),
            panel("Tokens / h", "timeseries", "short").query(format!("sum by (provider, direction) (increase(aragora_tokens_used_total{{{engine}}}[1h]))"), "{{provider}} {{direction}}"),
            panel("OpenRouter fallbacks / h", "timeseries", "short").query(format!("sum by (agent) (increase(aragora_agent_fallbacks_total{{{engine}}}[1h]))"), "{{agent}}"),
        ]),
        render("aragora-slo", "Aragora SLOs", "slo-dashboard.json", vec![slo_variable()], vec![
            panel("Error budget remaining (30d)", "gauge", "percentunit").query(format!("slo:period_error_budget_remaining:ratio{slo}"), "{{sloth_slo}}").threshold(0.0, "red").threshold(0.25, "orange").threshold(0.5, "green"),
            panel("SLI over the period", "stat", "percentunit").query(format!("1 - slo:sli_error:ratio_rate30d{slo}"), "{{sloth_slo}}"),
            panel("Objective", "stat", "percentunit").query(format!("slo:objective:ratio{slo}"), "{{sloth_slo}}"),
            panel("Current burn rate (5m)", "stat", "short").query(format!("slo:current_burn_rate:ratio{slo}"), "{{sloth_slo}}").threshold(1.0, "orange").threshold(14.4, "red"),
            panel("Burn rate per window", "timeseries", "short")
                .query(format!("slo:sli_error:ratio_rate5m{slo} / on(sloth_id) group_left slo:error_budget:ratio{slo}"), "{{sloth_slo}} 5m")
                .query(format!("slo:sli_error:ratio_rate1h{slo} / on(sloth_id) group_left slo:error_budget:ratio{slo}"), "{{sloth_slo}} 1h")
                .query(format!("slo:sli_error:ratio_rate6h{slo} / on(sloth_id) group_left slo:error_budget:ratio{slo}"), "{{sloth_slo}} 6h")
                .query(format!("slo:sli_error:ratio_rate1d{slo} / on(sloth_id) group_left slo:error_budget:ratio{slo}"), "{{sloth_slo}} 1d")
                .query(format!("slo:sli_error:ratio_rate3d{slo} / on(sloth_id) group_left slo:error_budget:ratio{slo}"), "{{sloth_slo}} 3d")
                .threshold(1.0, "orange").threshold(14.4, "red"),
            panel("Period burn rate", "timeseries", "short").query(format!("slo:period_burn_rate:ratio{slo}"), "{{sloth_slo}}").threshold(1.0, "red"),
            panel("SLO alerts", "timeseries", "short").query(format!("sum by (sloth_slo, sloth_severity, alertstate) (ALERTS{slo})"), "{{sloth_slo}} {{sloth_severity}} {{alertstate}}").describe("Pages and tickets of the burn-rate alerts, pending or firing."),
        ]),
        render("aragora-receipt-retention", "Aragora Receipt Retention", "receipt-retention.json", vec![], vec![
            panel("Receipts issued / h", "timeseries", "short").query(format!("sum(increase(aragora_receipts_issued_total{{{engine}}}[1h]))"), "receipts"),
            panel("Receipts issued (30d)", "stat", "short").query(format!("sum(increase(aragora_receipts_issued_total{{{engine}}}[30d]))"), "receipts"),
            panel("Completed debates with a receipt (1h)", "stat", "percentunit")
                .query(format!("sum(increase(aragora_receipts_issued_total{{{engine}}}[1h])) / sum(increase({}[1h]))", debates("consensus|no_consensus")), "coverage")
                .threshold(0.0, "red").threshold(0.99, "green")
                .describe("Every completed debate gets a receipt in the same transaction; below 100% means receipts are missing."),
            panel("Debates completed / h", "timeseries", "short").query(format!("sum(increase({}[1h]))", debates("consensus|no_consensus")), "completed"),
            panel("Retention cleanups / day", "timeseries", "short").query(format!("sum by (status) (increase(aragora_receipt_cleanup_total{{{engine}}}[1d]))"), "{{status}}")
                .describe("The Receipt Retention Scheduler's runs (ARAGORA_RECEIPT_CLEANUP_INTERVAL_HOURS), scheduled or asked for, on whichever replica ran them."),
            panel("Failed cleanups (7d)", "stat", "short").query(format!("sum(increase(aragora_receipt_cleanup_total{{{engine},status=\"failure\"}}[7d]))"), "failed")
                .threshold(0.0, "green").threshold(1.0, "red")
                .describe("A failed cleanup leaves receipts past ARAGORA_RECEIPT_RETENTION_DAYS; GET /api/admin/schedulers/receipt-retention/status says why."),
            panel("Cleanup duration (p95, 7d)", "stat", "s").query(format!("histogram_quantile(0.95, sum by (le) (rate(aragora_receipt_cleanup_duration_seconds_bucket{{{engine}}}[7d])))"), "p95"),
            panel("Receipts deleted / day", "timeseries", "short").query(format!("sum(increase(aragora_receipts_deleted_total{{{engine}}}[1d]))"), "receipts"),
            panel("Debates deleted / day", "timeseries", "short").query(format!("sum(increase(aragora_debates_deleted_total{{{engine}}}[1d]))"), "debates")
                .describe("Finished debates with their events, past ARAGORA_DEBATE_RETENTION_DAYS (0: none are)."),
            panel("Webhook deliveries deleted / day", "timeseries", "short").query(format!("sum(increase(aragora_webhook_deliveries_deleted_total{{{engine}}}[1d]))"), "deliveries")
                .describe("Delivered and dead-lettered webhook deliveries (their bodies copy debate content) past ARAGORA_WEBHOOK_DELIVERY_RETENTION_DAYS (0: none are); pending ones are never deleted."),
        ]),
    ]
}
