//! The generated alerts and dashboards where the seeds' Prometheus runs: a real Prometheus
//! scraping the engine and the gateway under the seeds' job names (`aragora-backend`,
//! `aragora`) computes every SLO's recording rules, and every metric an alert or a panel names
//! is in a fresh scrape of the component that exports it, before any debate (the exporters'
//! metrics, which the infrastructure alerts name, in the exporters' scrapes: infra_alerts.rs).

use crate::support::mock_llm::MockLlm;
use crate::support::prom::PromServer;
use crate::support::{eventually, Engine, EngineOptions, GatewayProcess};
use aragora_slo::rules::infrastructure::Exporter;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(60);

/// The instant vector `query` answers in `prometheus` now.
pub(crate) async fn instant(prometheus: &PromServer, query: &str) -> Vec<Value> {
    let answer = prometheus.api("/api/v1/query", &[("query", query)]).await;
    answer["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The value of `slo`'s 5m SLI recording rule, when Prometheus has a number for it.
async fn sli_5m(prometheus: &PromServer, slo: &str) -> Option<f64> {
    let query = format!("slo:sli_error:ratio_rate5m{{sloth_slo=\"{slo}\"}}");
    let found = instant(prometheus, &query).await;
    let value: f64 = found.first()?["value"][1].as_str()?.parse().ok()?;
    (!value.is_nan()).then_some(value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_slo_rules_match_under_the_seeds_job_names() {
    let engine =
        Engine::start(EngineOptions::sqlite().env("ARAGORA_OFFLINE_AGENT_LATENCY_MS", 5)).await;
    let gateway = GatewayProcess::start(&[engine.api.to_string()], &[]).await;
    gateway.wait_ready_count(1, PATIENCE).await;
    // The Self-Hosted Guide's one job for the gateway, the runbook's for the backend.
    let prometheus = PromServer::prometheus(&[
        ("aragora", format!("127.0.0.1:{}", gateway.admin_port)),
        ("aragora-backend", engine.api.to_string()),
    ])
    .await;
    // Scraped once before anything happens, so every counter has a 0 to rise from.
    eventually("both targets scraped", PATIENCE, || async {
        (instant(&prometheus, "up == 1").await.len() == 2).then_some(())
    })
    .await;

    let debate = engine
        .run_debate(json!({"topic": "Scraped under any name", "rounds": 1}))
        .await;
    assert_eq!(debate["status"], "completed", "{debate}");
    // Reads through the edge, then 503s (maintenance) until the availability SLI sees them.
    let client = gateway.client();
    let url = gateway.https_url("/api/debates?limit=1");
    eventually(
        "the latency SLI from the gateway's reads",
        PATIENCE,
        || async {
            let answer = client.get(&url).send().await.ok()?;
            assert_eq!(answer.status(), 200);
            sli_5m(&prometheus, "latency").await
        },
    )
    .await;
    assert_eq!(
        gateway
            .admin_post("/api/system/maintenance/enable")
            .await
            .status(),
        200
    );
    // New debates are what maintenance refuses, whatever else it lets through.
    let debates_url = gateway.https_url("/api/debates");
    let availability = eventually("the availability SLI to see the 503s", PATIENCE, || async {
        let body = json!({"topic": "Refused in maintenance", "rounds": 1});
        let answer = client.post(&debates_url).json(&body).send().await.ok()?;
        assert_eq!(answer.status(), 503);
        sli_5m(&prometheus, "availability")
            .await
            .filter(|v| *v > 0.0)
    })
    .await;
    assert!(availability < 1.0, "reads succeeded before: {availability}");
    assert_eq!(
        gateway
            .admin_post("/api/system/maintenance/disable")
            .await
            .status(),
        200
    );
    // Offline agents answer within the 500 ms bucket; the debate completed.
    assert_eq!(sli_5m(&prometheus, "latency").await, Some(0.0));
    let debates = eventually("the debate-success SLI", PATIENCE, || async {
        sli_5m(&prometheus, "debate-success").await
    })
    .await;
    assert_eq!(debates, 0.0);

    // The series carry the seeds' jobs, and the component each came from.
    for (selector, job) in [
        (
            "aragora_http_requests_total{component=\"gateway\"}",
            "aragora",
        ),
        (
            "aragora_debates_total{component=\"engine\"}",
            "aragora-backend",
        ),
    ] {
        let found = instant(&prometheus, selector).await;
        assert!(
            !found.is_empty() && found.iter().all(|s| s["metric"]["job"] == job),
            "{selector}: {found:?}"
        );
    }
}

/// Who exports a metric that a committed rule or dashboard names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Source {
    /// aragora itself: the component its `component` matcher names.
    Component(String),
    /// One of the infrastructure alerts' exporters, never aragora: checked against that
    /// exporter's own scrape (`infra_alerts.rs`), not aragora's.
    Exporter(Exporter),
}

/// A metric a committed rule or panel names: who exports it, the labels its matchers select on
/// (which the exporter's series must carry), and where it was named.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Named {
    pub metric: String,
    pub source: Source,
    pub labels: BTreeSet<String>,
    pub place: String,
}

/// Every metric selector of the committed rules and dashboards, except the series the rules
/// record themselves and `ALERTS`; a metric that is neither aragora's nor an exporter's fails.
pub(crate) fn named_metrics() -> BTreeSet<Named> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut queries = Vec::new();
    let mut recorded: BTreeSet<String> = ["ALERTS".to_string()].into();
    for file in ["alerts/slo-rules.yaml", "alerts/operational-rules.yaml"] {
        let rules: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(root.join(file)).unwrap()).unwrap();
        for group in rules["groups"].as_sequence().unwrap() {
            for rule in group["rules"].as_sequence().unwrap() {
                if let Some(record) = rule["record"].as_str() {
                    recorded.insert(record.to_string());
                }
                let name = rule["alert"].as_str().or(rule["record"].as_str()).unwrap();
                queries.push((
                    format!("{file}: {name}"),
                    rule["expr"].as_str().unwrap().to_string(),
                ));
            }
        }
    }
    queries.extend(crate::slo_live::dashboard_queries());
    let mut named = BTreeSet::new();
    for (place, query) in queries {
        for selector in aragora_slo::promql::selectors(&query) {
            let source = if aragora_slo::check::catalogue_entry(&selector.metric).is_some() {
                let component = ["gateway", "engine"]
                    .into_iter()
                    .find(|c| selector.matchers.contains(&format!("component=\"{c}\"")))
                    .unwrap_or_else(|| panic!("{place}: {} names no component", selector.metric));
                Source::Component(component.to_string())
            } else if let Some(exporter) = Exporter::of(&selector.metric) {
                Source::Exporter(exporter)
            } else if recorded.contains(&selector.metric) {
                continue;
            } else {
                panic!(
                    "{place}: {} is neither aragora's (telemetry catalogue), an exporter's nor a \
                     recorded series",
                    selector.metric
                );
            };
            named.insert(Named {
                metric: selector.metric,
                source,
                labels: matcher_labels(&selector.matchers),
                place: place.clone(),
            });
        }
    }
    named
}

/// The label names of a selector's matchers (`fstype!~"tmpfs",component="engine"`).
fn matcher_labels(matchers: &str) -> BTreeSet<String> {
    let mut labels = BTreeSet::new();
    let mut in_value = false;
    let mut name = String::new();
    let mut escaped = false;
    for c in matchers.chars() {
        if in_value {
            match (escaped, c) {
                (false, '\\') => escaped = true,
                (false, '"') => in_value = false,
                _ => escaped = false,
            }
            continue;
        }
        match c {
            '"' => {
                let label = name.trim_matches(|c: char| "=!~, ".contains(c)).to_string();
                if !label.is_empty() {
                    labels.insert(label);
                }
                name.clear();
                in_value = true;
            }
            _ => name.push(c),
        }
    }
    labels
}

/// Whether a sample of series `name` (whatever its labels) is in the exposition `metrics`.
fn exported(metrics: &str, name: &str) -> bool {
    metrics.lines().any(|line| {
        line.strip_prefix(name)
            .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_an_alert_or_panel_names_is_in_a_fresh_scrape() {
    // LLM agents configured (their calls go to a mock, but none is made): production's shape,
    // with breakers, tokens and fallbacks to export.
    let mock = MockLlm::start().await;
    let engine = Engine::start(
        EngineOptions::sqlite()
            .env("ANTHROPIC_API_KEY", "test-anthropic-key")
            .env("ARAGORA_ANTHROPIC_BASE_URL", mock.base_url("v1"))
            .env("OPENAI_API_KEY", "test-openai-key")
            .env("ARAGORA_OPENAI_BASE_URL", mock.base_url("v1")),
    )
    .await;
    let gateway = GatewayProcess::start(&[engine.api.to_string()], &[]).await;
    gateway.wait_ready_count(1, PATIENCE).await;
    // Requests are counted by status, which no request has before the first: one read
    // through the edge, no debate.
    let answer = gateway
        .client()
        .get(gateway.https_url("/api/debates?limit=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    // A webhook subscription (to an event this test never has), whose endpoint's breaker
    // series exists from then on.
    let (status, hook) = engine
        .post_json(
            "/api/admin/webhooks",
            &serde_json::json!({"url": "https://93.184.216.34/hook", "event_types": ["drill_failed"]}),
        )
        .await;
    assert_eq!(status, 201, "{hook}");
    let scrapes = [
        ("engine", engine.metrics().await),
        ("gateway", gateway.metrics().await),
    ];

    // The series the issue found missing, at 0 from the start.
    let engine_metrics = &scrapes[0].1;
    for series in [
        "aragora_circuit_breaker_state{agent=\"anthropic\"}",
        "aragora_agent_errors_total{agent=\"openai\",error_type=\"timeout\"}",
        "aragora_agent_errors_total{agent=\"offline-skeptic\",error_type=\"server_error\"}",
        "aragora_tokens_used_total{direction=\"input\",provider=\"anthropic\"}",
        "aragora_agent_fallbacks_total{agent=\"openai\",from_provider=\"openai\"}",
        "aragora_debates_total{outcome=\"failed\"}",
    ] {
        assert_eq!(
            crate::support::sample(engine_metrics, series),
            Some(0.0),
            "{series} in {engine_metrics}"
        );
    }
    assert_eq!(
        crate::support::sample(
            &scrapes[1].1,
            "aragora_rate_limited_total{route=\"/api/debates\"}"
        ),
        Some(0.0),
        "{}",
        scrapes[1].1
    );

    // And every metric a rule or panel names, in the scrape of the component it selects.
    // (The exporters' metrics are checked against the exporters: infra_alerts.rs.)
    let named: Vec<(String, String, String)> = named_metrics()
        .into_iter()
        .filter_map(|named| match named.source {
            Source::Component(component) => Some((named.metric, component, named.place)),
            Source::Exporter(_) => None,
        })
        .collect();
    assert!(named.len() >= 30, "{named:?}");
    let missing: Vec<String> = named
        .iter()
        .filter(|(metric, component, _)| {
            let (_, metrics) = scrapes.iter().find(|(c, _)| c == component).unwrap();
            !exported(metrics, metric)
        })
        .map(|(metric, component, place)| format!("{metric} ({component}; {place})"))
        .collect();
    assert!(
        missing.is_empty(),
        "absent from a fresh scrape: {missing:#?}"
    );
}
