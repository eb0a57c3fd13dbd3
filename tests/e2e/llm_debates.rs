//! Debates through the real binary with LLM providers served by a local mock: streaming,
//! failures, breakers, fallback, and signed receipts verified offline.

use crate::support::mock_llm::{Gate, MockLlm, Reply};
use crate::support::{
    agent_error, aragora_command, assert_every_agent_failed, fetch_json, sample, Engine,
    EngineOptions,
};
use crate::websocket::{connect, next_event};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(60);
const KEY_A: &str = "receipt-key-a-receipt-key-a-receipt-key-a";
const KEY_B: &str = "receipt-key-b-receipt-key-b-receipt-key-b";
const ADMIN: &str = "admin-token-for-tests";

/// An engine whose Anthropic and OpenAI agents talk to `mock`.
fn with_providers(mock: &MockLlm) -> EngineOptions {
    EngineOptions::sqlite()
        .env("ANTHROPIC_API_KEY", "test-anthropic-key")
        .env("ARAGORA_ANTHROPIC_BASE_URL", mock.base_url("v1"))
        .env("OPENAI_API_KEY", "test-openai-key")
        .env("ARAGORA_OPENAI_BASE_URL", mock.base_url("v1"))
        .env("ARAGORA_RECEIPT_SIGNING_KEY", KEY_A)
        .env("ARAGORA_API_TOKEN", ADMIN)
}

fn verify_cli(file: &std::path::Path, key: &str, previous: Option<&str>) -> (bool, String) {
    let mut command = aragora_command();
    command
        .args(["receipt", "verify"])
        .arg(file)
        .env("ARAGORA_RECEIPT_SIGNING_KEY", key);
    if let Some(previous) = previous {
        command.env("ARAGORA_RECEIPT_SIGNING_KEY_PREVIOUS", previous);
    }
    let output = command.output().expect("run aragora receipt verify");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// Runs a one-round debate on `topic` and panics unless it fails with `text` in the first
/// agent's error.
async fn assert_one_round_fails_naming(engine: &Engine, topic: &str, text: &str) {
    let id = engine
        .start_debate(json!({"topic": topic, "rounds": 1}))
        .await;
    let debate = engine.wait_final(&id, PATIENCE).await;
    assert_eq!(debate["status"], "failed");
    assert!(agent_error(&debate, 0).contains(text), "{debate}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llm_agents_debate_stream_their_words_and_sign_a_receipt() {
    let mock = MockLlm::start().await;
    let engine = Engine::start(with_providers(&mock)).await;
    // The two proposals wait at the mock until the watcher below has seen the debate start, so
    // every word streams to it.
    let gate = Gate::new();
    let gated = || Reply::Gated(gate.clone(), Box::new(Reply::Answer));
    mock.script([gated(), gated()]);

    let (_, agents) = engine.get("/api/agents").await;
    assert_eq!(
        agents["defaults"],
        json!(["anthropic", "openai"]),
        "{agents}"
    );
    assert!(
        agents.get("note").is_none(),
        "two LLM providers: no offline note"
    );
    let anthropic = agents["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "anthropic")
        .unwrap();
    assert_eq!(
        (anthropic["llm"].clone(), anthropic["model"].clone()),
        (json!(true), json!("claude-sonnet-4-5"))
    );

    let id = engine
        .start_debate(json!({"topic": "Should we rewrite it in Rust?", "rounds": 1}))
        .await;
    let mut socket = connect(engine.ws_request(&format!("/ws?debate_id={id}"))).await;
    let start = next_event(&mut socket).await;
    assert_eq!(start["type"], "debate_start", "{start}");
    gate.open();
    let mut streamed: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut messages = Vec::new();
    loop {
        let event = next_event(&mut socket).await;
        let key = || {
            (
                event["agent"].as_str().unwrap_or("").to_string(),
                event["data"]["phase"].as_str().unwrap_or("").to_string(),
            )
        };
        match event["type"].as_str().unwrap() {
            "token_delta" => {
                assert!(event["seq"].is_null());
                streamed
                    .entry(key())
                    .or_default()
                    .push_str(event["data"]["delta"].as_str().unwrap());
            }
            "agent_message" | "critique" | "vote" => messages.push(event.clone()),
            "debate_end" => break,
            _ => {}
        }
    }
    // Each message arrived first as deltas; together they are the message.
    assert_eq!(messages.len(), 6, "2 positions, 2 critiques, 2 votes");
    for message in &messages {
        let key = (
            message["agent"].as_str().unwrap().to_string(),
            message["data"]["phase"].as_str().unwrap().to_string(),
        );
        assert_eq!(
            streamed.get(&key).map(String::as_str),
            message["data"]["text"].as_str(),
            "{key:?}"
        );
    }

    let debate = engine.wait_final(&id, PATIENCE).await;
    assert_eq!(debate["status"], "completed");
    assert_eq!(
        debate["outcome"], "consensus",
        "both mock agents vote for the first position: {debate}"
    );
    assert_eq!(debate["consensus"]["winner"], "anthropic");
    assert!(debate["final_answer"]
        .as_str()
        .unwrap()
        .contains("claude-sonnet-4-5"));
    let metrics = engine.metrics_after_debates(1.0).await;
    assert!(
        sample(
            &metrics,
            "aragora_tokens_used_total{direction=\"input\",provider=\"anthropic\"}"
        )
        .unwrap_or(0.0)
            >= 11.0,
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "aragora_circuit_breaker_state{agent=\"openai\"}"),
        Some(0.0)
    );
    assert_eq!(sample(&metrics, "aragora_receipts_issued_total"), Some(1.0));

    // The receipt verifies offline, survives a key rotation, and fails when changed.
    let response = engine
        .http
        .get(engine.url(&format!("/api/debates/{id}/receipt")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let receipt: Value = response.json().await.unwrap();
    assert_eq!(receipt["debate_id"], id.as_str());
    assert_eq!(receipt["participants"][0]["provider"], "anthropic");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("receipt.json");
    std::fs::write(&file, serde_json::to_string_pretty(&receipt).unwrap()).unwrap();
    let (ok, text) = verify_cli(&file, KEY_A, None);
    assert!(ok && text.contains("current"), "{text}");
    let (ok, text) = verify_cli(&file, KEY_B, Some(KEY_A));
    assert!(ok && text.contains("previous"), "during a rotation: {text}");
    let (ok, text) = verify_cli(&file, KEY_B, None);
    assert!(
        !ok && text.contains("INVALID"),
        "after the rotation ends: {text}"
    );
    let mut tampered = receipt.clone();
    tampered["rounds"] = json!(5);
    std::fs::write(&file, tampered.to_string()).unwrap();
    let (ok, text) = verify_cli(&file, KEY_A, None);
    assert!(!ok && text.contains("does not match"), "{text}");

    let (status, verdict) = engine.post_json("/api/receipts/verify", &receipt).await;
    assert_eq!(
        (
            status,
            verdict["valid"].clone(),
            verdict["signed_with"].clone()
        ),
        (200, json!(true), json!("current"))
    );
    let (_, verdict) = engine.post_json("/api/receipts/verify", &tampered).await;
    assert_eq!(verdict["valid"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_providers_fail_the_debate_open_breakers_and_admins_can_reset_them() {
    let mock = MockLlm::start().await;
    mock.always(Reply::Status(500));
    let engine = Engine::start(
        with_providers(&mock)
            .env("ARAGORA_AGENT_MAX_RETRIES", 0)
            .env("ARAGORA_CIRCUIT_BREAKER_THRESHOLD", 1),
    )
    .await;
    let id = engine
        .start_debate(json!({"topic": "Will it fail?", "rounds": 1}))
        .await;
    let debate = engine.wait_final(&id, PATIENCE).await;
    assert_every_agent_failed(&debate);
    assert!(agent_error(&debate, 0).contains("500"), "{debate}");
    let (status, _) = engine.get("/readyz").await;
    assert_eq!(
        status, 200,
        "failing providers do not make the engine unready"
    );
    let (status, no_receipt) = engine.get(&format!("/api/debates/{id}/receipt")).await;
    assert_eq!(
        (status, no_receipt["error"]["code"].as_str()),
        (404, Some("no_receipt"))
    );

    let metrics = engine.metrics_after_debates(1.0).await;
    assert_eq!(
        sample(
            &metrics,
            "aragora_agent_errors_total{agent=\"openai\",error_type=\"server_error\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&metrics, "aragora_circuit_breaker_state{agent=\"openai\"}"),
        Some(1.0),
        "open"
    );
    assert_eq!(
        sample(&metrics, "aragora_debates_total{outcome=\"failed\"}"),
        Some(1.0)
    );

    let url = engine.url("/api/system/circuit-breakers");
    // A client of its own: the engine's sends the admin token on every request.
    let anonymous = reqwest::Client::new();
    let unauthorized = anonymous.get(&url).send().await.unwrap();
    assert_eq!(unauthorized.status(), 401);
    let wrong = anonymous
        .get(&url)
        .bearer_auth("guess")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let listed = fetch_json(engine.http.get(&url).bearer_auth(ADMIN)).await;
    let states: Vec<&str> = listed["circuit_breakers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, vec!["OPEN", "OPEN"], "{listed}");

    // With every breaker open, a new debate is refused by the breakers, not by the network.
    let before = mock.request_count();
    assert_one_round_fails_naming(&engine, "Again?", "circuit breaker").await;
    assert_eq!(mock.request_count(), before);

    let reset = engine
        .http
        .post(engine.url("/api/system/circuit-breakers/openai/reset"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), 200);
    let reset: Value = reset.json().await.unwrap();
    assert_eq!(reset["state"], "CLOSED");
    let metrics = engine.metrics().await;
    assert_eq!(
        sample(&metrics, "aragora_circuit_breaker_state{agent=\"openai\"}"),
        Some(0.0)
    );
    let missing = engine
        .http
        .post(engine.url("/api/system/circuit-breakers/offline-skeptic/reset"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openrouter_takes_over_and_the_debate_records_it() {
    let primary = MockLlm::start().await;
    primary.always(Reply::Status(429));
    let openrouter = MockLlm::start().await;
    // No admin token: the test's client is an operator (a JWT), who runs debates but no
    // admin endpoint.
    let secret = format!("jwt-{}", uuid::Uuid::new_v4().simple());
    let operator = aragora_auth::Authenticator::new(
        aragora_auth::AuthConfig {
            jwt_secret: Some(secret.clone()),
            ..Default::default()
        },
        None,
    )
    .mint_jwt("operator", aragora_auth::Role::Operator, Some(3600))
    .unwrap();
    let engine = Engine::start(
        with_providers(&primary)
            .env("ARAGORA_AGENT_MAX_RETRIES", 0)
            .env("OPENROUTER_API_KEY", "test-openrouter-key")
            .env("ARAGORA_OPENROUTER_BASE_URL", openrouter.base_url("api/v1"))
            .env("ARAGORA_API_TOKEN", "")
            .env("ARAGORA_JWT_SECRET", &secret)
            .bearer(&operator),
    )
    .await;
    let id = engine
        .start_debate(json!({"topic": "Who answers?", "rounds": 1}))
        .await;
    let debate = engine.wait_final(&id, PATIENCE).await;
    assert_eq!(debate["status"], "completed", "{debate}");
    for message in debate["messages"].as_array().unwrap() {
        assert_eq!(message["provider"], "openrouter", "{message}");
    }
    let mut socket = connect(engine.ws_request(&format!("/ws?debate_id={id}"))).await;
    let mut events = Vec::new();
    crate::websocket::read_to_end(&mut socket, &mut events).await;
    let fallbacks: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "agent_fallback_triggered")
        .collect();
    assert!(!fallbacks.is_empty());
    assert_eq!(fallbacks[0]["data"]["to_provider"], "openrouter");
    assert!(
        fallbacks[0]["data"]["reason"]
            .as_str()
            .unwrap()
            .contains("429"),
        "{}",
        fallbacks[0]
    );
    assert_eq!(
        openrouter.requests()[0].header("authorization"),
        Some("Bearer test-openrouter-key")
    );
    let metrics = engine.metrics_after_debates(1.0).await;
    assert!(
        sample(
            &metrics,
            "aragora_agent_fallbacks_total{agent=\"openai\",from_provider=\"openai\"}"
        )
        .unwrap_or(0.0)
            >= 1.0
    );
    // An operator reaches no admin endpoint, and is told which role it needs.
    let (status, body) = engine.get("/api/system/circuit-breakers").await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("admin"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_slower_than_the_agent_timeout_counts_as_a_timeout() {
    let mock = MockLlm::start().await;
    mock.always(Reply::Slow(Duration::from_secs(5), Box::new(Reply::Answer)));
    let engine = Engine::start(with_providers(&mock).env("ARAGORA_AGENT_TIMEOUT", 1)).await;
    assert_one_round_fails_naming(&engine, "Too slow", "ARAGORA_AGENT_TIMEOUT").await;
    let metrics = engine.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            "aragora_agent_errors_total{agent=\"anthropic\",error_type=\"timeout\"}"
        ),
        Some(1.0)
    );
    assert_eq!(sample(&metrics, "aragora_agent_calls_total{agent=\"anthropic\",provider=\"anthropic\",status=\"timeout\"}"), Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_provider_key_the_offline_agents_debate_and_say_so() {
    let engine = Engine::start(EngineOptions::sqlite()).await;
    let (_, agents) = engine.get("/api/agents").await;
    assert_eq!(
        agents["defaults"],
        json!(["offline-pragmatist", "offline-skeptic", "offline-optimist"])
    );
    assert!(
        agents["note"].as_str().unwrap().contains("not LLMs"),
        "{agents}"
    );
    assert!(agents["agents"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["llm"] == false));
}
