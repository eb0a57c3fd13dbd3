//! The engine's own parsers: debate requests, list queries, WebSocket messages, receipts.

use aragora_engine::agents::AgentRegistry;
use aragora_engine::error::ApiError;
use aragora_engine::faults::Faults;
use aragora_engine::http::ws::{parse_client_message, WsQuery};
use aragora_engine::http::{parse_create, parse_list_query};
use aragora_engine::receipts::{Receipt, ReceiptKeys, SignedWith, VerifyError};
use aragora_engine::EngineConfig;
use axum::extract::Query;
use axum::http::{StatusCode, Uri};
use std::collections::BTreeSet;
use std::sync::OnceLock;
use std::time::Duration;

/// The default config and the offline agents: what a fresh `aragora serve` validates against.
fn engine() -> &'static (EngineConfig, AgentRegistry) {
    static ENGINE: OnceLock<(EngineConfig, AgentRegistry)> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let config = EngineConfig::default();
        let agents = AgentRegistry::offline(Duration::ZERO, &Faults::default());
        (config, agents)
    })
}

/// A refusal the client caused: one of `statuses`, a stable code and a message to act on.
fn assert_refusal(err: &ApiError, statuses: &[StatusCode]) {
    assert!(
        statuses.contains(&err.status),
        "refused with {} ({}): {}",
        err.status,
        err.code,
        err.message
    );
    assert!(!err.code.is_empty() && !err.message.is_empty(), "{err:?}");
}

/// `POST /api/debates`: any body is a queued debate within every limit, or a 400/422.
pub fn debate_create(data: &[u8]) {
    let (config, agents) = engine();
    match parse_create(config, agents, data) {
        Ok(record) => {
            let topic = record.topic.as_str();
            assert!(!topic.is_empty() && topic.trim() == topic, "{topic:?}");
            assert!(topic.chars().count() <= config.max_topic_chars);
            assert!((1..=12).contains(&record.rounds), "{}", record.rounds);
            assert!((2..=8).contains(&record.agents.len()));
            let distinct: BTreeSet<&String> = record.agents.iter().collect();
            assert_eq!(distinct.len(), record.agents.len(), "{:?}", record.agents);
            let known: Vec<&str> = agents.names().collect();
            assert!(record.agents.iter().all(|a| known.contains(&a.as_str())));
        }
        Err(err) => assert_refusal(
            &err,
            &[StatusCode::BAD_REQUEST, StatusCode::UNPROCESSABLE_ENTITY],
        ),
    }
}

/// A request target with `data` as its query, when `data` can be one at all (the HTTP parser
/// refuses the rest before any handler).
fn uri_with_query(path: &str, data: &[u8]) -> Option<Uri> {
    let query = std::str::from_utf8(data).ok()?;
    Uri::try_from(format!("{path}?{query}")).ok()
}

/// `GET /api/debates?...`: a page within bounds, or a 400.
pub fn debate_query(data: &[u8]) {
    let Some(uri) = uri_with_query("/api/debates", data) else {
        return;
    };
    // The default ARAGORA_MAX_LIST_LIMIT.
    match parse_list_query(&uri, 100) {
        Ok(params) => {
            assert!((1..=100).contains(&params.limit), "{params:?}");
            assert!(params.offset >= 0, "{params:?}");
        }
        Err(err) => assert_refusal(&err, &[StatusCode::BAD_REQUEST]),
    }
}

/// `/ws`: a client's text message, and the upgrade's query.
pub fn ws_message(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        // Either a message or an error the session sends back as `invalid_message`.
        let _ = parse_client_message(text).map_err(|err| assert!(!err.to_string().is_empty()));
    }
    if let Some(uri) = uri_with_query("/ws", data) {
        let _ = Query::<WsQuery>::try_from_uri(&uri).map_err(ApiError::from);
    }
}

const RECEIPT_KEY: &str = "fuzz-receipt-signing-key-of-some-length";
const PREVIOUS_RECEIPT_KEY: &str = "an-earlier-fuzz-receipt-signing-key";

/// Receipts handed to `aragora receipt verify` or `POST /api/receipts/verify`.
pub fn receipt(data: &[u8]) {
    static KEYS: OnceLock<ReceiptKeys> = OnceLock::new();
    let keys = KEYS.get_or_init(|| ReceiptKeys::new(RECEIPT_KEY, &[PREVIOUS_RECEIPT_KEY.into()]));
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let verdict = keys.verify_json(text);
    let Ok(receipt) = serde_json::from_str::<Receipt>(text) else {
        assert!(
            matches!(verdict, Err(VerifyError::Malformed(_))),
            "{verdict:?}"
        );
        return;
    };
    // The canonical JSON reads back as the same receipt, and verifying does not depend on how
    // the file was formatted.
    let canonical = serde_json::to_string(&receipt).expect("a receipt serializes");
    let again: Receipt = serde_json::from_str(&canonical).expect("canonical JSON reads back");
    assert_eq!(again, receipt, "canonical JSON changed the receipt");
    let pretty = serde_json::to_string_pretty(&receipt).expect("a receipt serializes");
    assert_eq!(
        keys.verify_json(&pretty).map(|(_, v)| v),
        verdict.map(|(_, v)| v),
        "verification depends on formatting"
    );
    if receipt.receipt_version != aragora_engine::receipts::RECEIPT_VERSION {
        return;
    }
    // Signed by the ring, it verifies as the current key's; any changed value then does not.
    let signed = keys.sign(receipt);
    let (_, verified) = keys
        .verify_json(&serde_json::to_string_pretty(&signed).expect("serializes"))
        .expect("a receipt just signed verifies");
    assert_eq!(verified.signed_with, SignedWith::Current);
    let mut tampered = signed;
    tampered.rounds = tampered.rounds.wrapping_add(1);
    assert!(matches!(
        keys.verify(&tampered),
        Err(VerifyError::BadSignature)
    ));
}
