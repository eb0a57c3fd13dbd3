//! Fault injection through the admin API (`/api/system/faults`), as chaos experiments use it:
//! the token guards it, bad requests say what is wrong, and each fault does to the engine what
//! the real failure would (slow answers, provider errors that open breakers, a database outage
//! that readiness reports), then ends by itself or when cleared.

use crate::support::mock_llm::MockLlm;
use crate::support::{
    agent_error, assert_every_agent_failed, eventually, sample, Engine, EngineOptions,
};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const ADMIN: &str = "fault-admin-token-for-tests";
const KINDS: [&str; 3] = ["agent_slow", "agent_failing", "database_unavailable"];

fn with_token(options: EngineOptions) -> EngineOptions {
    options.env("ARAGORA_API_TOKEN", ADMIN)
}

/// Calls the fault API with `token` (none: no Authorization header).
async fn call(
    engine: &Engine,
    method: reqwest::Method,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> (u16, Value) {
    // Not `engine.http`, which sends the engine's token on every request.
    let mut request = reqwest::Client::new().request(method, engine.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.expect("fault API request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn inject(engine: &Engine, fault: Value) -> Value {
    let (status, body) = call(
        engine,
        reqwest::Method::POST,
        "/api/system/faults",
        Some(&fault.to_string()),
        Some(ADMIN),
    )
    .await;
    assert_eq!(status, 201, "fault not injected: {body}");
    body
}

/// `method` on `path` as the admin, without a body; panics unless it answers 200.
async fn admin_ok(engine: &Engine, method: reqwest::Method, path: &str) -> Value {
    let (status, body) = call(engine, method, path, None, Some(ADMIN)).await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

async fn active_faults(engine: &Engine) -> Vec<Value> {
    let body = admin_ok(engine, reqwest::Method::GET, "/api/system/faults").await;
    body["faults"].as_array().expect("faults").clone()
}

async fn clear_all(engine: &Engine) -> Vec<Value> {
    let body = admin_ok(engine, reqwest::Method::DELETE, "/api/system/faults").await;
    body["cleared"].as_array().expect("cleared").clone()
}

/// Asserts each (series, value) of `expected` in the engine's metrics.
async fn assert_samples(engine: &Engine, expected: &[(&str, f64)]) {
    let metrics = engine.metrics().await;
    for (series, value) in expected {
        assert_eq!(sample(&metrics, series), Some(*value), "{series}");
    }
}

fn faults_gauge(metrics: &str, kind: &str) -> Option<f64> {
    sample(
        metrics,
        &format!("aragora_faults_active{{kind=\"{kind}\"}}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fault_api_needs_the_admin_token_and_explains_bad_requests() {
    let engine = Engine::start(with_token(EngineOptions::sqlite())).await;
    let good = r#"{"kind": "agent_failing", "duration_seconds": 30}"#;
    use reqwest::Method;
    // Without the right token nothing is revealed, not even that a body is malformed.
    for token in [None, Some("guess")] {
        for (method, path, body) in [
            (Method::POST, "/api/system/faults", Some(good)),
            (Method::POST, "/api/system/faults", Some("{not json")),
            (Method::GET, "/api/system/faults", None),
            (Method::DELETE, "/api/system/faults", None),
            (Method::DELETE, "/api/system/faults/some-id", None),
        ] {
            let (status, reply) = call(&engine, method.clone(), path, body, token).await;
            assert_eq!(
                (status, reply["error"]["code"].as_str()),
                (401, Some("unauthorized")),
                "{method} {path} with {token:?}: {reply}"
            );
        }
    }

    let cases: &[(&str, &str, u16, &[&str])] = &[
        ("malformed JSON", r#"{"kind": "#, 400, &["fix the JSON"]),
        ("no kind", r#"{"duration_seconds": 5}"#, 422, &KINDS),
        (
            "unknown kind",
            r#"{"kind": "disk_full", "duration_seconds": 5}"#,
            422,
            &[
                "\"disk_full\"",
                "agent_slow",
                "agent_failing",
                "database_unavailable",
            ],
        ),
        (
            "no duration",
            r#"{"kind": "agent_failing"}"#,
            422,
            &["duration_seconds", "1 to 86400"],
        ),
        (
            "zero duration",
            r#"{"kind": "agent_failing", "duration_seconds": 0}"#,
            422,
            &["is 0", "1 to 86400"],
        ),
        (
            "negative duration",
            r#"{"kind": "agent_failing", "duration_seconds": -5}"#,
            422,
            &["is -5", "1 to 86400"],
        ),
        (
            "duration over a day",
            r#"{"kind": "agent_failing", "duration_seconds": 86401}"#,
            422,
            &["is 86401", "1 to 86400"],
        ),
        (
            "slow without a delay",
            r#"{"kind": "agent_slow", "duration_seconds": 5}"#,
            422,
            &["delay_ms", "1 to 600000"],
        ),
        (
            "zero delay",
            r#"{"kind": "agent_slow", "delay_ms": 0, "duration_seconds": 5}"#,
            422,
            &["\"delay_ms\" is 0"],
        ),
        (
            "delay over ten minutes",
            r#"{"kind": "agent_slow", "delay_ms": 600001, "duration_seconds": 5}"#,
            422,
            &["is 600001", "1 to 600000"],
        ),
        (
            "a delay on a failing fault",
            r#"{"kind": "agent_failing", "delay_ms": 10, "duration_seconds": 5}"#,
            422,
            &["only to agent_slow"],
        ),
        (
            "an agent on the database fault",
            r#"{"kind": "database_unavailable", "agent": "offline-skeptic", "duration_seconds": 5}"#,
            422,
            &["\"agent\" applies only to agent_slow and agent_failing"],
        ),
        (
            "an unknown agent",
            r#"{"kind": "agent_failing", "agent": "gpt-7", "duration_seconds": 5}"#,
            422,
            &[
                "unknown agent \"gpt-7\"",
                "offline-skeptic",
                "offline-pragmatist",
            ],
        ),
        (
            "an unknown field",
            r#"{"kind": "agent_failing", "duration_seconds": 5, "probability": 0.5}"#,
            422,
            &["probability"],
        ),
    ];
    for (what, body, status, hints) in cases {
        let (got, reply) = call(
            &engine,
            Method::POST,
            "/api/system/faults",
            Some(body),
            Some(ADMIN),
        )
        .await;
        assert_eq!(got, *status, "{what}: {reply}");
        let message = reply["error"]["message"].as_str().unwrap_or_default();
        for hint in *hints {
            assert!(message.contains(hint), "{what}: {message:?} lacks {hint:?}");
        }
    }
    for (method, path) in [
        (Method::GET, "/api/system/faults/no-such-fault"),
        (Method::DELETE, "/api/system/faults/no-such-fault"),
    ] {
        let (status, reply) = call(&engine, method.clone(), path, None, Some(ADMIN)).await;
        assert_eq!(
            (status, reply["error"]["code"].as_str()),
            (404, Some("not_found")),
            "{method} {path}: {reply}"
        );
    }
    assert!(
        active_faults(&engine).await.is_empty(),
        "no refused request injected anything"
    );

    let response = engine
        .http
        .post(engine.url("/api/system/faults"))
        .bearer_auth(ADMIN)
        .json(&json!({"kind": "agent_slow", "agent": "offline-skeptic", "delay_ms": 1500, "duration_seconds": 30}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let fault: Value = response.json().await.unwrap();
    let id = fault["id"].as_str().unwrap();
    assert_eq!(location, format!("/api/system/faults/{id}"));
    assert_eq!(
        (
            &fault["kind"],
            &fault["agent"],
            &fault["delay_ms"],
            &fault["duration_seconds"]
        ),
        (
            &json!("agent_slow"),
            &json!("offline-skeptic"),
            &json!(1500),
            &json!(30)
        ),
        "{fault}"
    );
    let created = chrono::DateTime::parse_from_rfc3339(fault["created_at"].as_str().unwrap());
    let expires = chrono::DateTime::parse_from_rfc3339(fault["expires_at"].as_str().unwrap());
    assert_eq!((expires.unwrap() - created.unwrap()).num_seconds(), 30);
    let (status, shown) = call(&engine, Method::GET, &location, None, Some(ADMIN)).await;
    assert_eq!((status, &shown["id"]), (200, &fault["id"]));
    let metrics = engine.metrics().await;
    assert_eq!(faults_gauge(&metrics, "agent_slow"), Some(1.0));
    assert_eq!(faults_gauge(&metrics, "database_unavailable"), Some(0.0));

    let (status, cleared) = call(&engine, Method::DELETE, &location, None, Some(ADMIN)).await;
    assert_eq!(status, 200, "{cleared}");
    assert_eq!(cleared["cleared"][0]["id"], fault["id"]);
    assert!(active_faults(&engine).await.is_empty());
    assert_eq!(
        faults_gauge(&engine.metrics().await, "agent_slow"),
        Some(0.0)
    );
    // The log line is written by the engine's log thread, after the answer.
    eventually("the clearing logged", Duration::from_secs(5), || async {
        engine
            .log_text()
            .contains("fault cleared by an operator")
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_configured_token_faults_cannot_be_injected() {
    let engine = Engine::start(EngineOptions::sqlite().without_token()).await;
    let (status, reply) = call(
        &engine,
        reqwest::Method::POST,
        "/api/system/faults",
        Some(r#"{"kind": "database_unavailable", "duration_seconds": 30}"#),
        Some("anything"),
    )
    .await;
    // Without ARAGORA_API_TOKEN no bearer string is the admin token: the caller is not
    // authenticated at all.
    assert_eq!(status, 401, "{reply}");
    assert_eq!(reply["error"]["code"], "unauthorized", "{reply}");
    let (status, _) = engine.get("/readyz").await;
    assert_eq!(status, 200, "nothing was injected");
}

/// Seconds `agent` has spent answering so far, from its latency histogram.
async fn seconds_answering(engine: &Engine, agent: &str) -> f64 {
    let metrics = engine.metrics().await;
    let name =
        format!("aragora_agent_latency_seconds_sum{{agent=\"{agent}\",provider=\"offline\"}}");
    sample(&metrics, &name).unwrap_or(0.0)
}

/// Runs a one-round debate between the skeptic and the optimist; returns it and how long each
/// of the two spent answering during it.
async fn timed_debate(engine: &Engine) -> (Value, f64, f64) {
    let before = (
        seconds_answering(engine, "offline-skeptic").await,
        seconds_answering(engine, "offline-optimist").await,
    );
    let debate = engine
        .run_debate(json!({"topic": "Ship on Fridays?", "rounds": 1, "agents": ["offline-skeptic", "offline-optimist"]}))
        .await;
    assert_eq!(debate["status"], "completed", "{debate}");
    (
        debate,
        seconds_answering(engine, "offline-skeptic").await - before.0,
        seconds_answering(engine, "offline-optimist").await - before.1,
    )
}

fn debate_seconds(debate: &Value) -> f64 {
    let at =
        |key: &str| chrono::DateTime::parse_from_rfc3339(debate[key].as_str().unwrap()).unwrap();
    (at("finished_at") - at("started_at")).num_milliseconds() as f64 / 1000.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_agent_slows_debates_and_its_fault_ends_by_itself() {
    let engine = Engine::start(with_token(EngineOptions::sqlite())).await;
    let slow = inject(
        &engine,
        json!({"kind": "agent_slow", "agent": "offline-skeptic", "delay_ms": 600, "duration_seconds": 600}),
    )
    .await;
    let (debate, skeptic, optimist) = timed_debate(&engine).await;
    // The skeptic is asked three times (position, critique, vote), each held 600 ms. Upper
    // bounds compare the two agents of one debate (a loaded machine slows both alike) and are
    // fractions of what the fault adds, never absolute times.
    let added = 3.0 * 0.6;
    assert!(skeptic >= added, "skeptic answered in {skeptic} s");
    assert!(
        skeptic - optimist > added - 0.6,
        "the optimist is not slowed: {optimist} s against the skeptic's {skeptic} s"
    );
    assert!(debate_seconds(&debate) >= added, "{debate}");

    let cleared = clear_all(&engine).await;
    assert_eq!(cleared.len(), 1);
    assert_eq!(cleared[0]["id"], slow["id"]);
    let (_, skeptic, optimist) = timed_debate(&engine).await;
    assert!(
        skeptic - optimist < 0.6,
        "cleared: the skeptic is as fast as the optimist again, within one delay ({skeptic} s, {optimist} s)"
    );

    // A fault for every agent, for two seconds, that nobody clears: 1 s per call, so a debate
    // it still slowed would take each agent 3 s.
    let asked = Instant::now();
    let brief = inject(
        &engine,
        json!({"kind": "agent_slow", "delay_ms": 1000, "duration_seconds": 2}),
    )
    .await;
    assert_eq!(brief["agent"], Value::Null, "every agent");
    assert_eq!(active_faults(&engine).await.len(), 1);
    eventually(
        "the two-second fault to expire",
        Duration::from_secs(15),
        || async {
            let metrics = engine.metrics().await;
            (faults_gauge(&metrics, "agent_slow") == Some(0.0)).then_some(())
        },
    )
    .await;
    assert!(
        asked.elapsed() >= Duration::from_secs(2),
        "expired after {:?}, before its duration",
        asked.elapsed()
    );
    assert!(active_faults(&engine).await.is_empty());
    let (_, skeptic, optimist) = timed_debate(&engine).await;
    assert!(
        skeptic < 1.0 && optimist < 1.0,
        "expired: nobody is slowed, by even one of its delays ({skeptic} s, {optimist} s)"
    );
    let log = engine.log_text();
    assert!(log.contains("fault injected"), "{log}");
    assert!(log.contains("fault expired"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_agents_fail_the_debate_as_a_provider_outage_would() {
    let engine = Engine::start(with_token(EngineOptions::sqlite())).await;
    inject(
        &engine,
        json!({"kind": "agent_failing", "duration_seconds": 600}),
    )
    .await;
    let debate = engine
        .run_debate(json!({"topic": "Anyone there?", "rounds": 1}))
        .await;
    assert_every_agent_failed(&debate);
    assert_eq!(debate["agent_errors"].as_array().unwrap().len(), 3);
    let error = agent_error(&debate, 0);
    assert!(
        error.contains("server_error") && error.contains("503") && error.contains("injected fault"),
        "{error}"
    );
    assert_samples(
        &engine,
        &[
            (
                "aragora_agent_errors_total{agent=\"offline-skeptic\",error_type=\"server_error\"}",
                1.0,
            ),
            ("aragora_debates_total{outcome=\"failed\"}", 1.0),
            ("aragora_faults_active{kind=\"agent_failing\"}", 1.0),
        ],
    )
    .await;
    let (status, _) = engine.get("/readyz").await;
    assert_eq!(status, 200, "failing agents do not make the engine unready");

    clear_all(&engine).await;
    let debate = engine
        .run_debate(json!({"topic": "And now?", "rounds": 1}))
        .await;
    assert_eq!(debate["status"], "completed", "{debate}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_llm_agent_opens_its_breaker_without_calling_the_provider() {
    let mock = MockLlm::start().await;
    let engine = Engine::start(with_token(
        EngineOptions::sqlite()
            .env("ANTHROPIC_API_KEY", "test-anthropic-key")
            .env("ARAGORA_ANTHROPIC_BASE_URL", mock.base_url("v1"))
            .env("OPENAI_API_KEY", "test-openai-key")
            .env("ARAGORA_OPENAI_BASE_URL", mock.base_url("v1"))
            .env("ARAGORA_AGENT_MAX_RETRIES", 0)
            .env("ARAGORA_CIRCUIT_BREAKER_THRESHOLD", 1),
    ))
    .await;
    inject(
        &engine,
        json!({"kind": "agent_failing", "agent": "openai", "duration_seconds": 600}),
    )
    .await;
    let debate = engine
        .run_debate(json!({"topic": "Who is down?", "rounds": 1}))
        .await;
    let openai_errors: Vec<String> = debate["agent_errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["agent"] == "openai")
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect();
    assert!(
        openai_errors[0].contains("503") && openai_errors[0].contains("injected fault"),
        "{debate}"
    );
    assert!(
        openai_errors[1..]
            .iter()
            .all(|e| e.contains("circuit breaker")),
        "after one failure the open breaker refuses: {openai_errors:?}"
    );
    assert!(
        mock.requests().iter().all(|r| r.path == "/v1/messages"),
        "only anthropic reached the provider"
    );

    let (status, breakers) = call(
        &engine,
        reqwest::Method::GET,
        "/api/system/circuit-breakers",
        None,
        Some(ADMIN),
    )
    .await;
    assert_eq!(status, 200);
    let state = |agent: &str| {
        breakers["circuit_breakers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["agent"] == agent)
            .map(|b| b["state"].clone())
    };
    assert_eq!(
        (state("openai"), state("anthropic")),
        (Some(json!("OPEN")), Some(json!("CLOSED"))),
        "{breakers}"
    );
    assert_samples(
        &engine,
        &[
            (
                "aragora_agent_errors_total{agent=\"openai\",error_type=\"server_error\"}",
                1.0,
            ),
            ("aragora_circuit_breaker_state{agent=\"openai\"}", 1.0),
            ("aragora_circuit_breaker_state{agent=\"anthropic\"}", 0.0),
        ],
    )
    .await;

    // Once the fault is gone and the breaker reset, the provider is called again.
    clear_all(&engine).await;
    let (status, _) = call(
        &engine,
        reqwest::Method::POST,
        "/api/system/circuit-breakers/openai/reset",
        None,
        Some(ADMIN),
    )
    .await;
    assert_eq!(status, 200);
    let debate = engine
        .run_debate(json!({"topic": "Back up?", "rounds": 1}))
        .await;
    assert_eq!(debate["status"], "completed", "{debate}");
    assert_eq!(debate["agent_errors"], json!([]), "{debate}");
    assert!(mock
        .requests()
        .iter()
        .any(|r| r.path == "/v1/chat/completions"));
}

async fn an_unavailable_database_is_an_outage_until_cleared(options: EngineOptions) {
    let engine = Engine::start(with_token(options)).await;
    let before = engine
        .run_debate(json!({"topic": "Before the outage", "rounds": 1}))
        .await;
    assert_eq!(before["status"], "completed", "{before}");

    inject(
        &engine,
        json!({"kind": "database_unavailable", "duration_seconds": 600}),
    )
    .await;
    let (status, ready) = engine.get("/readyz").await;
    assert_eq!(status, 503, "{ready}");
    let reason = ready["reason"].as_str().unwrap();
    assert!(
        reason.contains("database not answering") && reason.contains("injected fault"),
        "{reason}"
    );
    let (status, db) = engine.get("/api/health/db").await;
    assert_eq!(
        (status, db["database"].as_str()),
        (503, Some("disconnected")),
        "{db}"
    );
    let (status, health) = engine.get("/api/health").await;
    assert_eq!((status, &health["status"]), (503, &json!("degraded")));
    let (status, refused) = engine
        .post_json(
            "/api/debates",
            &json!({"topic": "During the outage", "rounds": 1}),
        )
        .await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (500, Some("internal")),
        "{refused}"
    );
    assert!(refused["error"]["message"]
        .as_str()
        .unwrap()
        .contains("could not save the debate"));
    let (status, _) = engine.get("/api/debates").await;
    assert_eq!(status, 500, "reads fail too");
    let metrics = engine.metrics().await;
    assert_eq!(sample(&metrics, "aragora_database_up"), Some(0.0));
    assert_eq!(faults_gauge(&metrics, "database_unavailable"), Some(1.0));

    assert_eq!(clear_all(&engine).await.len(), 1);
    let (status, _) = engine.get("/readyz").await;
    assert_eq!(status, 200, "ready again as soon as the fault is cleared");
    let (status, db) = engine.get("/api/health/db").await;
    assert_eq!((status, &db["database"]), (200, &json!("connected")));
    let (_, listed) = engine.get("/api/debates").await;
    assert_eq!(
        listed["total"], 1,
        "the refused debate left no row: {listed}"
    );
    let path = format!("/api/debates/{}", before["debate_id"].as_str().unwrap());
    let (_, kept) = engine.get(&path).await;
    assert_eq!(
        kept, before,
        "the debate from before the outage is untouched"
    );
    let after = engine
        .run_debate(json!({"topic": "After the outage", "rounds": 1}))
        .await;
    assert_eq!(after["status"], "completed", "{after}");
    assert_eq!(
        after["last_seq"], before["last_seq"],
        "the same debate shape records the same events"
    );
    assert_eq!(
        sample(&engine.metrics().await, "aragora_database_up"),
        Some(1.0)
    );
}

on_both_backends!(an_unavailable_database_is_an_outage_until_cleared);
