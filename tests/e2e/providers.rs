//! The real provider clients, breakers and fallback against a local server speaking each
//! provider's wire format.

use crate::support::mock_llm::{MockLlm, Reply};
use aragora_engine::agents::providers::{
    Prompt, ProviderClient, ProviderEndpoint, ProviderErrorKind, ProviderKind, RetryPolicy,
};
use aragora_engine::agents::{
    Agent, AgentRequest, AgentTask, BreakerState, CallObserver, CircuitBreaker, Fallback, LlmAgent,
};
use std::sync::Mutex;
use std::time::{Duration, Instant};

fn client(mock: &MockLlm, kind: ProviderKind, max_retries: u32) -> ProviderClient {
    ProviderClient::new(
        reqwest::Client::new(),
        ProviderEndpoint {
            kind,
            base_url: mock.base_url("v1"),
            api_key: Some(format!("key-for-{}", kind.as_str())),
        },
        RetryPolicy {
            max_retries,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_secs(5),
        },
    )
}

fn prompt(stream: bool) -> Prompt {
    Prompt {
        model: "model-x".into(),
        system: "You are a test.".into(),
        user: "Say something.".into(),
        max_tokens: 64,
        stream,
    }
}

#[tokio::test]
async fn every_wire_format_answers_whole_and_streamed() {
    for kind in ProviderKind::ALL {
        for stream in [false, true] {
            let mock = MockLlm::start().await;
            let deltas = Mutex::new(Vec::new());
            let on_delta = |d: &str| deltas.lock().unwrap().push(d.to_string());
            let completion = client(&mock, kind, 0)
                .complete(&prompt(stream), &on_delta)
                .await
                .unwrap_or_else(|err| panic!("{kind:?} stream={stream}: {err}"));
            assert_eq!(
                completion.text, "Mock answer from model-x: measure first, then decide.",
                "{kind:?}"
            );
            assert_eq!(
                (completion.input_tokens, completion.output_tokens),
                (11, 7),
                "{kind:?} stream={stream}"
            );
            let deltas = deltas.into_inner().unwrap();
            if stream {
                assert!(deltas.len() > 3, "{kind:?} streamed in pieces: {deltas:?}");
                assert_eq!(deltas.concat(), completion.text);
            } else {
                assert!(deltas.is_empty());
            }
            let request = &mock.requests()[0];
            let key = format!("key-for-{}", kind.as_str());
            match kind {
                ProviderKind::Anthropic => {
                    assert_eq!(request.path, "/v1/messages");
                    assert_eq!(request.header("x-api-key"), Some(key.as_str()));
                    assert_eq!(request.header("anthropic-version"), Some("2023-06-01"));
                    assert_eq!(request.body["system"], "You are a test.");
                    assert_eq!(request.body["messages"][0]["content"], "Say something.");
                }
                ProviderKind::Gemini => {
                    let method = if stream {
                        "streamGenerateContent?alt=sse"
                    } else {
                        "generateContent"
                    };
                    assert_eq!(request.path, format!("/v1/models/model-x:{method}"));
                    assert_eq!(request.header("x-goog-api-key"), Some(key.as_str()));
                    assert_eq!(
                        request.body["contents"][0]["parts"][0]["text"],
                        "Say something."
                    );
                }
                _ => {
                    assert_eq!(request.path, "/v1/chat/completions");
                    assert_eq!(
                        request.header("authorization"),
                        Some(format!("Bearer {key}").as_str())
                    );
                    assert_eq!(request.body["messages"][1]["content"], "Say something.");
                    assert_eq!(request.body["stream"], stream);
                }
            }
        }
    }
}

#[tokio::test]
async fn a_429_is_retried_after_the_retry_after_it_asked_for() {
    let mock = MockLlm::start().await;
    mock.script([Reply::RateLimited {
        retry_after_secs: 1,
    }]);
    let started = Instant::now();
    let completion = client(&mock, ProviderKind::Openai, 3)
        .complete(&prompt(false), &|_| {})
        .await
        .unwrap();
    assert!(completion.text.starts_with("Mock answer"));
    assert_eq!(mock.request_count(), 2);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited {:?}, less than Retry-After",
        started.elapsed()
    );
}

#[tokio::test]
async fn server_errors_and_resets_are_retried_then_reported() {
    let mock = MockLlm::start().await;
    mock.script([Reply::Reset, Reply::Status(503)]);
    let completion = client(&mock, ProviderKind::Anthropic, 3)
        .complete(&prompt(true), &|_| {})
        .await;
    assert!(completion.is_ok(), "{completion:?}");
    assert_eq!(mock.request_count(), 3, "reset, 503, then the answer");

    let mock = MockLlm::start().await;
    mock.always(Reply::Status(500));
    let err = client(&mock, ProviderKind::Mistral, 2)
        .complete(&prompt(false), &|_| {})
        .await
        .unwrap_err();
    assert_eq!(err.kind, ProviderErrorKind::ServerError);
    assert!(err.message.contains("500"), "{err}");
    assert_eq!(mock.request_count(), 3, "one call and two retries");
}

#[tokio::test]
async fn malformed_bodies_and_client_errors_fail_at_once() {
    let mock = MockLlm::start().await;
    mock.always(Reply::Malformed);
    let err = client(&mock, ProviderKind::Gemini, 3)
        .complete(&prompt(false), &|_| {})
        .await
        .unwrap_err();
    assert_eq!(err.kind, ProviderErrorKind::Malformed);
    assert_eq!(
        mock.request_count(),
        1,
        "retrying a malformed answer cannot help"
    );

    let mock = MockLlm::start().await;
    mock.always(Reply::Status(401));
    let err = client(&mock, ProviderKind::Xai, 3)
        .complete(&prompt(false), &|_| {})
        .await
        .unwrap_err();
    assert_eq!(err.kind, ProviderErrorKind::ClientError);
    assert_eq!(mock.request_count(), 1);
}

#[derive(Default)]
struct Notes {
    fallbacks: Mutex<Vec<String>>,
    deltas: Mutex<String>,
}

impl CallObserver for Notes {
    fn token_delta(&self, text: &str) {
        self.deltas.lock().unwrap().push_str(text);
    }
    fn fallback(&self, from: &str, to: &str, _model: &str, reason: &str) {
        self.fallbacks
            .lock()
            .unwrap()
            .push(format!("{from}->{to}: {reason}"));
    }
}

fn agent(primary: &MockLlm, fallback: Option<&MockLlm>, cooldown: Duration) -> LlmAgent {
    let gauge = prometheus::IntGauge::new("breaker", "test").unwrap();
    LlmAgent {
        name: "openai".into(),
        model: "gpt-test".into(),
        persona: "a tester".into(),
        client: client(primary, ProviderKind::Openai, 0),
        breaker: CircuitBreaker::new(2, cooldown, gauge),
        fallback: fallback.map(|mock| Fallback {
            client: client(mock, ProviderKind::Openrouter, 0),
            model: "openai/gpt-4o-mini".into(),
        }),
        stream: true,
        max_tokens: 64,
        tokens: prometheus::IntCounterVec::new(
            prometheus::Opts::new("t", "t"),
            &["provider", "direction"],
        )
        .unwrap(),
        faults: aragora_engine::faults::Faults::default(),
    }
}

fn propose() -> AgentRequest {
    AgentRequest {
        debate_id: "d".into(),
        topic: "Tabs or spaces?".into(),
        round: 1,
        total_rounds: 1,
        seed: 1,
        task: AgentTask::Propose,
    }
}

/// The error type of a proposal `agent` must fail; panics when it answers.
async fn failed_proposal(agent: &LlmAgent, notes: &Notes) -> &'static str {
    agent
        .respond(&propose(), notes)
        .await
        .unwrap_err()
        .error_type
}

#[tokio::test]
async fn the_breaker_opens_refuses_without_calling_and_closes_after_a_good_trial() {
    let primary = MockLlm::start().await;
    primary.always(Reply::Status(500));
    let agent = agent(&primary, None, Duration::from_millis(300));
    let notes = Notes::default();
    for _ in 0..2 {
        assert_eq!(failed_proposal(&agent, &notes).await, "server_error");
    }
    assert_eq!(agent.breaker.state(), BreakerState::Open);
    let refused = agent.respond(&propose(), &notes).await.unwrap_err();
    assert_eq!(refused.error_type, "circuit_open");
    assert!(refused.message.contains("circuit breaker"), "{refused}");
    assert_eq!(primary.request_count(), 2, "an open breaker sends nothing");
    assert!(!agent.available());

    // After the cooldown one trial goes through; it fails, so the breaker opens again.
    crate::support::eventually("the cooldown to pass", Duration::from_secs(5), || async {
        (agent.breaker.snapshot().retry_in_seconds == Some(0.0)).then_some(())
    })
    .await;
    assert_eq!(failed_proposal(&agent, &notes).await, "server_error");
    assert_eq!(agent.breaker.state(), BreakerState::Open);
    assert_eq!(primary.request_count(), 3);

    primary.always(Reply::Answer);
    crate::support::eventually(
        "a successful half-open trial",
        Duration::from_secs(5),
        || async { agent.respond(&propose(), &notes).await.ok() },
    )
    .await;
    assert_eq!(agent.breaker.state(), BreakerState::Closed);
    assert!(
        !notes.deltas.lock().unwrap().is_empty(),
        "the answer was streamed"
    );
}

#[tokio::test]
async fn openrouter_answers_when_the_provider_fails_or_its_breaker_is_open() {
    let primary = MockLlm::start().await;
    primary.always(Reply::Status(502));
    let openrouter = MockLlm::start().await;
    let agent = agent(&primary, Some(&openrouter), Duration::from_secs(60));
    let notes = Notes::default();
    for _ in 0..3 {
        let reply = agent.respond(&propose(), &notes).await.unwrap();
        assert_eq!(reply.provider, "openrouter");
        assert!(
            reply.text.contains("openai/gpt-4o-mini"),
            "the fallback model answered: {}",
            reply.text
        );
    }
    assert_eq!(
        primary.request_count(),
        2,
        "the third call skipped the open breaker"
    );
    assert_eq!(openrouter.request_count(), 3);
    assert_eq!(openrouter.requests()[0].body["model"], "openai/gpt-4o-mini");
    let fallbacks = notes.fallbacks.lock().unwrap().clone();
    assert_eq!(fallbacks.len(), 3);
    assert!(
        fallbacks[0].starts_with("openai->openrouter") && fallbacks[0].contains("502"),
        "{fallbacks:?}"
    );
    assert!(fallbacks[2].contains("circuit breaker"), "{fallbacks:?}");

    openrouter.always(Reply::Status(500));
    let err = agent.respond(&propose(), &notes).await.unwrap_err();
    assert!(err.message.contains("fallback failed too"), "{err}");
}
