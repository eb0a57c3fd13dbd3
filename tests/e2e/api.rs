//! The REST API end to end: debates run to completion, bad input gets clear errors, metrics
//! and health tell the truth.

use crate::support::{eventually, sample, Engine, EngineOptions};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(60);

fn count_type(items: &Value, kind: &str) -> usize {
    items
        .as_array()
        .map(|a| a.iter().filter(|m| m["type"] == kind).count())
        .unwrap_or(0)
}

/// The debates `aragora_debates_total` counts as finished: consensus plus no consensus.
fn finished_debates(metrics: &str) -> f64 {
    ["consensus", "no_consensus"]
        .iter()
        .filter_map(|o| {
            sample(
                metrics,
                &format!("aragora_debates_total{{outcome=\"{o}\"}}"),
            )
        })
        .sum()
}

async fn a_debate_runs_from_request_to_verdict(options: EngineOptions) {
    let engine = Engine::start(options).await;
    let response = engine
        .http
        .post(engine.url("/api/debates"))
        .json(&json!({"topic": "Should we adopt trunk-based development?", "rounds": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let created: Value = response.json().await.unwrap();
    let id = created["debate_id"].as_str().unwrap().to_string();
    assert_eq!(location, format!("/api/debates/{id}"));
    assert_eq!(created["status"], "queued");
    assert_eq!(created["rounds"], 2);

    let debate = engine.wait_final(&id, PATIENCE).await;
    assert_eq!(debate["status"], "completed", "{debate}");
    let outcome = debate["outcome"].as_str().unwrap();
    assert!(["consensus", "no_consensus"].contains(&outcome), "{debate}");
    let agents = debate["agents"].as_array().unwrap().len();
    assert_eq!(agents, 3, "the three default offline agents debate");
    // Each round: one position and one critique per agent; then one vote per agent.
    assert_eq!(count_type(&debate["messages"], "agent_message"), 2 * agents);
    assert_eq!(count_type(&debate["messages"], "critique"), 2 * agents);
    assert_eq!(debate["votes"].as_array().unwrap().len(), agents);
    assert_eq!(debate["consensus"]["reached"], outcome == "consensus");
    assert_eq!(debate["consensus_reached"], outcome == "consensus");
    if outcome == "consensus" {
        assert!(debate["final_answer"]
            .as_str()
            .unwrap()
            .contains("not an LLM"));
    }
    // start + 2 round starts + 12 messages + 3 votes + consensus + end
    assert_eq!(debate["last_seq"], 20);

    let (status, messages) = engine.get(&format!("/api/v1/debates/{id}/messages")).await;
    assert_eq!(status, 200);
    assert_eq!(messages["total"], 4 * agents + agents);

    let (_, completed) = engine.get("/api/debates?status=completed").await;
    assert!(completed["debates"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["debate_id"] == id.as_str()));
    let (_, active) = engine.get("/api/v1/debates?status=active").await;
    assert_eq!(active["total"], 0, "{active}");

    // The cloud runbook's request shape: "question" and settings under "config".
    let (status, created) = engine
        .post_json(
            "/api/v1/debates",
            &json!({"question": "Test question", "config": {"rounds": 1}}),
        )
        .await;
    assert_eq!(status, 202, "{created}");
    assert_eq!(created["rounds"], 1);
    assert_eq!(created["topic"], "Test question");
}

async fn fifty_concurrent_debates_all_complete(options: EngineOptions) {
    let engine = Engine::start(options.env("ARAGORA_OFFLINE_AGENT_LATENCY_MS", 5)).await;
    let requests = (0..50).map(|i| {
        let engine = &engine;
        async move {
            engine
                .start_debate(json!({"topic": format!("Concurrent question {i}"), "rounds": 2}))
                .await
        }
    });
    let ids = futures::future::join_all(requests).await;
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 50);
    for id in &ids {
        let debate = engine.wait_final(id, PATIENCE).await;
        assert_eq!(debate["status"], "completed", "{debate}");
    }
    let finished = finished_debates(&engine.metrics_after_debates(50.0).await);
    assert_eq!(
        finished, 50.0,
        "aragora_debates_total counts every completed debate once"
    );
    let (_, listed) = engine.get("/api/debates?status=completed&limit=100").await;
    assert_eq!(listed["total"], 50);
}

async fn cancelling_stops_a_running_debate(options: EngineOptions) {
    let engine = Engine::start(options.env("ARAGORA_OFFLINE_AGENT_LATENCY_MS", 200)).await;
    let id = engine
        .start_debate(json!({"topic": "A long debate", "rounds": 12}))
        .await;
    eventually("the debate to be running", PATIENCE, || async {
        let (_, debate) = engine.get(&format!("/api/debates/{id}")).await;
        (debate["status"] == "running").then_some(())
    })
    .await;
    let (status, cancelled) = engine
        .post_json(&format!("/api/v1/debates/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    let (_, debate) = engine.get(&format!("/api/debates/{id}")).await;
    assert_eq!(debate["status"], "cancelled");
    assert_eq!(debate["outcome"], "cancelled");
    assert!(
        debate["current_round"].as_i64().unwrap() < 12,
        "stopped early: {debate}"
    );

    let (status, again) = engine
        .post_json(&format!("/api/v1/debates/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 409, "{again}");
    assert!(again["error"]["message"]
        .as_str()
        .unwrap()
        .contains("already ended"));
}

on_both_backends!(
    a_debate_runs_from_request_to_verdict,
    fifty_concurrent_debates_all_complete,
    cancelling_stops_a_running_debate,
);

/// One request of the bad-input table and what it must get.
struct BadRequest {
    what: &'static str,
    method: &'static str,
    path: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    message_contains: &'static str,
}

fn bad(
    what: &'static str,
    method: &'static str,
    path: &str,
    body: &str,
    status: u16,
    hint: &'static str,
) -> BadRequest {
    BadRequest {
        what,
        method,
        path: path.to_string(),
        content_type: Some("application/json"),
        body: body.as_bytes().to_vec(),
        status,
        message_contains: hint,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_json_error_and_changes_nothing() {
    let engine = Engine::start(EngineOptions::sqlite()).await;
    let long_topic = json!({"topic": "x".repeat(100 * 1024)}).to_string();
    let huge_body = json!({"topic": "y", "padding": "z".repeat(400 * 1024)}).to_string();
    let zero = "00000000-0000-0000-0000-000000000000";
    let unknown = &format!("/api/debates/{zero}");
    let mut cases = vec![
        bad(
            "malformed JSON",
            "POST",
            "/api/debates",
            "{\"topic\": ",
            400,
            "fix the JSON",
        ),
        bad(
            "JSON that is not an object",
            "POST",
            "/api/debates",
            "[1,2]",
            422,
            "send a JSON object",
        ),
        bad("no topic", "POST", "/api/debates", "{}", 422, "topic"),
        bad(
            "empty topic",
            "POST",
            "/api/debates",
            r#"{"topic": ""}"#,
            422,
            "empty",
        ),
        bad(
            "blank topic",
            "POST",
            "/api/debates",
            r#"{"topic": "   "}"#,
            422,
            "empty",
        ),
        bad(
            "100 kB topic",
            "POST",
            "/api/debates",
            &long_topic,
            422,
            "ARAGORA_MAX_TOPIC_LENGTH",
        ),
        bad(
            "rounds 0",
            "POST",
            "/api/debates",
            r#"{"topic": "t", "rounds": 0}"#,
            422,
            "1 to 12",
        ),
        bad(
            "rounds 99",
            "POST",
            "/api/debates",
            r#"{"topic": "t", "rounds": 99}"#,
            422,
            "1 to 12",
        ),
        bad(
            "rounds as text",
            "POST",
            "/api/debates",
            r#"{"topic": "t", "rounds": "three"}"#,
            422,
            "rounds",
        ),
        bad(
            "unknown field",
            "POST",
            "/api/debates",
            r#"{"topic": "t", "round": 2}"#,
            422,
            "unknown field",
        ),
        bad(
            "unknown agent",
            "POST",
            "/api/debates",
            r#"{"topic": "t", "agents": ["gpt-9", "offline-skeptic"]}"#,
            422,
            "offline-pragmatist",
        ),
        bad(
            "one agent",
            "POST",
            "/api/debates",
            r#"{"topic": "t", "agents": ["offline-skeptic"]}"#,
            422,
            "2 to 8",
        ),
        bad(
            "same agent twice",
            "POST",
            "/api/debates",
            r#"{"topic": "t", "agents": ["offline-skeptic", "offline-skeptic"]}"#,
            422,
            "twice",
        ),
        bad(
            "unknown consensus rule",
            "POST",
            "/api/debates",
            r#"{"topic": "t", "consensus": "vibes"}"#,
            422,
            "unanimous",
        ),
        bad(
            "oversized body",
            "POST",
            "/api/debates",
            &huge_body,
            413,
            "ARAGORA_MAX_BODY_BYTES",
        ),
        bad("unknown debate", "GET", unknown, "", 404, "no debate"),
        bad(
            "messages of unknown debate",
            "GET",
            &format!("{unknown}/messages"),
            "",
            404,
            "no debate",
        ),
        bad(
            "cancel unknown debate",
            "POST",
            &format!("/api/v1/debates/{zero}/cancel"),
            "",
            404,
            "no debate",
        ),
        bad(
            "wrong method",
            "DELETE",
            "/api/debates",
            "",
            405,
            "DELETE is not supported",
        ),
        bad("wrong method on a debate", "PUT", unknown, "", 405, "PUT"),
        bad(
            "unknown path",
            "GET",
            "/api/nothing-here",
            "",
            404,
            "no endpoint",
        ),
        bad(
            "unknown status filter",
            "GET",
            "/api/debates?status=sleeping",
            "",
            400,
            "active",
        ),
        bad(
            "limit out of range",
            "GET",
            "/api/debates?limit=0",
            "",
            400,
            "1 to 100",
        ),
        bad(
            "limit not a number",
            "GET",
            "/api/debates?limit=many",
            "",
            400,
            "limit",
        ),
    ];
    cases.push(BadRequest {
        content_type: None,
        ..bad(
            "no content type",
            "POST",
            "/api/debates",
            r#"{"topic": "t"}"#,
            415,
            "Content-Type: application/json",
        )
    });
    // A fresh connection per case: after refusing a body it did not read (413), a server
    // closes the connection, and a pooled client could race that close.
    let client = reqwest::Client::builder().pool_max_idle_per_host(0);
    let client = crate::support::with_bearer(client, engine.token.as_deref())
        .build()
        .unwrap();
    for case in cases {
        let method = reqwest::Method::from_bytes(case.method.as_bytes()).unwrap();
        let mut request = client
            .request(method, engine.url(&case.path))
            .body(case.body.clone());
        if let Some(content_type) = case.content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(status, case.status, "{}: {body}", case.what);
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            body["error"]["code"].is_string(),
            "{}: no error code in {body}",
            case.what
        );
        assert!(
            message.contains(case.message_contains),
            "{}: message {message:?} should mention {:?}",
            case.what,
            case.message_contains
        );
    }
    let (status, _) = engine.get("/healthz").await;
    assert_eq!(status, 200, "the engine survives every bad request");
    let (_, listed) = engine.get("/api/debates").await;
    assert_eq!(
        listed["total"], 0,
        "no bad request created a debate: {listed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_429_with_retry_after() {
    let engine = Engine::start(
        EngineOptions::sqlite()
            .env("ARAGORA_MAX_CONCURRENT_DEBATES", 1)
            .env("ARAGORA_DEBATE_QUEUE_SIZE", 1)
            .env("ARAGORA_OFFLINE_AGENT_LATENCY_MS", 500),
    )
    .await;
    let running = engine
        .start_debate(json!({"topic": "first", "rounds": 12}))
        .await;
    let queued = engine
        .start_debate(json!({"topic": "second", "rounds": 12}))
        .await;
    let response = engine
        .http
        .post(engine.url("/api/debates"))
        .json(&json!({"topic": "third"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "queue_full");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("ARAGORA_MAX_CONCURRENT_DEBATES"));

    let (_, second) = engine.get(&format!("/api/debates/{queued}")).await;
    assert_eq!(
        second["status"], "queued",
        "the second waits for the only slot: {second}"
    );
    let (status, cancelled) = engine
        .post_json(&format!("/api/debates/{queued}/cancel"), &json!({}))
        .await;
    assert_eq!(
        (status, cancelled["status"].as_str()),
        (200, Some("cancelled"))
    );
    let (status, _) = engine
        .post_json(&format!("/api/debates/{running}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 200);
    // With the queue empty again, a new debate is accepted.
    engine
        .start_debate(json!({"topic": "fourth", "rounds": 1}))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_agents_reach_consensus_dissent_and_deadlock_deterministically() {
    let engine = Engine::start(EngineOptions::sqlite()).await;
    let mut unanimous = 0;
    let mut with_dissent = 0;
    let mut no_consensus = 0;
    for seed in 0..24 {
        let id = engine
            .start_debate(json!({"topic": "Monolith or microservices?", "rounds": 1, "seed": seed}))
            .await;
        let debate = engine.wait_final(&id, PATIENCE).await;
        let dissenting = debate["consensus"]["dissenting"].as_array().unwrap().len();
        match (debate["outcome"].as_str().unwrap(), dissenting) {
            ("consensus", 0) => unanimous += 1,
            ("consensus", _) => with_dissent += 1,
            ("no_consensus", _) => no_consensus += 1,
            other => panic!("unexpected outcome {other:?}: {debate}"),
        }
    }
    assert!(
        unanimous > 0 && with_dissent > 0 && no_consensus > 0,
        "unanimous {unanimous}, with dissent {with_dissent}, no consensus {no_consensus}"
    );

    let transcript = |debate: &Value| -> Vec<Value> {
        debate["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["text"].clone())
            .collect()
    };
    let body = json!({"topic": "Same seed, same debate", "rounds": 3, "seed": 42});
    let first = engine
        .wait_final(&engine.start_debate(body.clone()).await, PATIENCE)
        .await;
    let second = engine
        .wait_final(&engine.start_debate(body).await, PATIENCE)
        .await;
    assert_eq!(transcript(&first), transcript(&second));
    assert_eq!(first["consensus"], second["consensus"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_under_route_templates() {
    let engine = Engine::start(EngineOptions::sqlite()).await;
    let id = engine
        .start_debate(json!({"topic": "Metrics", "rounds": 1}))
        .await;
    engine.wait_final(&id, PATIENCE).await;
    let metrics = engine.metrics_after_debates(1.0).await;
    assert!(
        !metrics.contains(&id),
        "a raw debate id leaked into a label"
    );
    let show =
        "aragora_http_requests_total{method=\"GET\",route=\"/api/debates/{id}\",status=\"200\"}";
    assert!(sample(&metrics, show).unwrap_or(0.0) >= 1.0, "{metrics}");
    let create =
        "aragora_http_requests_total{method=\"POST\",route=\"/api/debates\",status=\"202\"}";
    assert_eq!(sample(&metrics, create), Some(1.0));
    // The one POST's latency is in the histogram under its template (counts, not speed: a
    // loaded machine may take longer than any one bucket).
    let latency = |part: &str| {
        let labels = "method=\"POST\",route=\"/api/debates\"";
        let series = match part {
            "bucket" => format!("aragora_request_latency_seconds_bucket{{{labels},le=\"+Inf\"}}"),
            part => format!("aragora_request_latency_seconds_{part}{{{labels}}}"),
        };
        sample(&metrics, &series)
    };
    assert_eq!(latency("count"), Some(1.0), "{metrics}");
    assert_eq!(latency("bucket"), Some(1.0), "{metrics}");
    assert!(
        latency("sum").is_some_and(|seconds| seconds > 0.0),
        "{metrics}"
    );
    let calls = "aragora_agent_calls_total{agent=\"offline-pragmatist\",provider=\"offline\",status=\"success\"}";
    assert_eq!(
        sample(&metrics, calls),
        Some(3.0),
        "proposal, critique and vote"
    );
    assert!(sample(
        &metrics,
        "aragora_agent_latency_seconds_count{agent=\"offline-skeptic\",provider=\"offline\"}"
    )
    .is_some());
    let outcomes = finished_debates(&metrics);
    assert_eq!(outcomes, 1.0);
    assert_eq!(sample(&metrics, "aragora_active_debates"), Some(0.0));
    assert_eq!(sample(&metrics, "aragora_websocket_connections"), Some(0.0));
    assert_eq!(sample(&metrics, "aragora_ready"), Some(1.0));
    let _ = engine.get("/api/unknown/path/123").await;
    let metrics = engine.metrics().await;
    assert!(sample(
        &metrics,
        "aragora_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"}"
    )
    .is_some());
}

/// `/api/slo` is the binary's route, merged into the engine's router: it goes through the same
/// layers as the engine's own, so it is counted under its template and answers CORS preflights.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binarys_slo_route_is_counted_and_answers_cors_like_the_engines_own() {
    const LISTED: &str = "https://app.example.com";
    let engine =
        Engine::start(EngineOptions::sqlite().env("ARAGORA_ALLOWED_ORIGINS", LISTED)).await;
    // No ARAGORA_PROMETHEUS_URL: the route is there and says why it has nothing.
    let (status, body) = engine.get("/api/slo").await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("ARAGORA_PROMETHEUS_URL")),
        "{body}"
    );
    let metrics = engine.metrics().await;
    let series = "aragora_http_requests_total{method=\"GET\",route=\"/api/slo\",status=\"404\"}";
    assert_eq!(sample(&metrics, series), Some(1.0), "{metrics}");
    assert_eq!(
        sample(
            &metrics,
            "aragora_request_latency_seconds_count{method=\"GET\",route=\"/api/slo\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    let preflight = |path: &str| {
        reqwest::Client::new()
            .request(reqwest::Method::OPTIONS, engine.url(path))
            .header("origin", LISTED)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let allowed = |response: &reqwest::Response| {
        (
            response.status().as_u16(),
            response
                .headers()
                .get("access-control-allow-origin")
                .map(|v| v.to_str().unwrap().to_string()),
        )
    };
    let own = preflight("/api/debates").await.unwrap();
    let slo = preflight("/api/slo").await.unwrap();
    assert_eq!(allowed(&own), (200, Some(LISTED.to_string())));
    assert_eq!(allowed(&slo), allowed(&own), "as the engine's own routes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_endpoints_report_the_seeds_shapes() {
    let engine = Engine::start(EngineOptions::sqlite()).await;
    assert_eq!(engine.get("/healthz").await, (200, json!({"status": "ok"})));
    assert_eq!(
        engine.get("/readyz").await,
        (
            200,
            json!({"status": "ready", "database": "connected", "redis": "not_configured", "agents": "available"})
        )
    );
    let (status, health) = engine.get("/api/health").await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["database"], "connected");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(health["agents_available"], 4);
    let (status, db) = engine.get("/api/health/db").await;
    assert_eq!(status, 200);
    assert_eq!(db["database"], "connected");
    assert_eq!(db["backend"], "sqlite");
}

/// The gauges the runbook's AragoraDatabaseDown, AragoraDebateRunningTooLong and
/// AragoraHighMemoryUsage alerts read, refreshed at scrape time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_report_database_oldest_debate_and_memory() {
    let engine =
        Engine::start(EngineOptions::sqlite().env("ARAGORA_OFFLINE_AGENT_LATENCY_MS", 1500)).await;
    let metrics = engine.metrics().await;
    assert_eq!(sample(&metrics, "aragora_database_up"), Some(1.0));
    assert_eq!(
        sample(&metrics, "aragora_oldest_running_debate_seconds"),
        Some(0.0)
    );
    assert!(sample(&metrics, "process_resident_memory_bytes").unwrap() > 1e6);
    let id = engine
        .start_debate(json!({"topic": "Slow", "rounds": 1}))
        .await;
    eventually("the oldest debate to age a second", PATIENCE, || async {
        let metrics = engine.metrics().await;
        (sample(&metrics, "aragora_oldest_running_debate_seconds")? >= 1.0).then_some(())
    })
    .await;
    engine.wait_final(&id, PATIENCE).await;
    let metrics = engine.metrics().await;
    assert_eq!(
        sample(&metrics, "aragora_oldest_running_debate_seconds"),
        Some(0.0)
    );
}
