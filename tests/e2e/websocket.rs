//! WebSocket streaming: every event once, in order, across dropped connections.

use crate::support::proxy::ProxyProcess;
use crate::support::{Engine, EngineOptions};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

pub(crate) type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const PATIENCE: Duration = Duration::from_secs(60);

/// Opens a WebSocket; `request` is a URL or, to send a credential, `engine.ws_request(..)`.
pub async fn connect(
    request: impl tokio_tungstenite::tungstenite::client::IntoClientRequest + Unpin,
) -> Socket {
    let (socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("WebSocket connect");
    socket
}

/// The next JSON message that is not a heartbeat. The deadline is for the event, not for each
/// message: heartbeats keep arriving on a socket whose events have stopped.
pub async fn next_event(socket: &mut Socket) -> Value {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let message = tokio::time::timeout_at(deadline, socket.next())
            .await
            .expect("an event within the deadline")
            .expect("socket open")
            .expect("socket healthy");
        if let Message::Text(text) = message {
            let event: Value = serde_json::from_str(&text).expect("JSON event");
            if event["type"] != "heartbeat" {
                return event;
            }
        }
    }
}

/// Reads events of one debate until its `debate_end`.
pub async fn read_to_end(socket: &mut Socket, into: &mut Vec<Value>) {
    loop {
        let event = next_event(socket).await;
        let end = event["type"] == "debate_end";
        into.push(event);
        if end {
            return;
        }
    }
}

fn seqs(events: &[Value]) -> Vec<i64> {
    events
        .iter()
        .map(|e| e["seq"].as_i64().expect("seq"))
        .collect()
}

async fn reconnecting_with_last_seq_gives_every_event_exactly_once(options: EngineOptions) {
    let engine = Engine::start(options.env("ARAGORA_OFFLINE_AGENT_LATENCY_MS", 40)).await;
    let id = engine
        .start_debate(json!({"topic": "Resume me", "rounds": 3}))
        .await;

    let mut received = Vec::new();
    let mut socket = connect(engine.ws_request(&format!("/ws?debate_id={id}"))).await;
    while received.len() < 6 {
        received.push(next_event(&mut socket).await);
    }
    // The client vanishes without a close handshake, like a dropped mobile connection.
    drop(socket);
    let last_seq = received.last().unwrap()["seq"].as_i64().unwrap();
    let mut socket =
        connect(engine.ws_request(&format!("/ws?debate_id={id}&last_seq={last_seq}"))).await;
    read_to_end(&mut socket, &mut received).await;

    let debate = engine.wait_final(&id, PATIENCE).await;
    let total = debate["last_seq"].as_i64().unwrap();
    assert_eq!(
        seqs(&received),
        (1..=total).collect::<Vec<_>>(),
        "no gap, no duplicate"
    );
    assert_eq!(received[0]["type"], "debate_start");
    assert_eq!(received.last().unwrap()["type"], "debate_end");
    for event in &received {
        assert_eq!(event["debate_id"], id.as_str());
        assert!(event["timestamp"].is_string());
        assert!(
            event.get("round").is_some()
                && event.get("agent").is_some()
                && event.get("data").is_some()
        );
    }
    let kinds: Vec<&str> = received
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    for kind in [
        "round_start",
        "agent_message",
        "critique",
        "vote",
        "consensus",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }

    // A late watcher of a finished debate gets the whole history, then nothing more.
    let mut late = connect(engine.ws_request(&format!("/ws?debate_id={id}"))).await;
    let mut replay = Vec::new();
    read_to_end(&mut late, &mut replay).await;
    assert_eq!(seqs(&replay), (1..=total).collect::<Vec<_>>());
}

on_both_backends!(reconnecting_with_last_seq_gives_every_event_exactly_once);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_watches_several_debates_on_the_websocket_port() {
    let engine =
        Engine::start(EngineOptions::sqlite().env("ARAGORA_OFFLINE_AGENT_LATENCY_MS", 20)).await;
    let first = engine
        .start_debate(json!({"topic": "first", "rounds": 2}))
        .await;
    let second = engine
        .start_debate(json!({"topic": "second", "rounds": 2}))
        .await;
    let mut socket = connect(engine.ws_port_request("/ws")).await;
    for id in [&first, &second] {
        let subscribe = json!({"type": "subscribe", "debate_id": id, "last_seq": 0});
        socket
            .send(Message::Text(subscribe.to_string().into()))
            .await
            .unwrap();
    }
    let mut by_debate: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut ended = 0;
    while ended < 2 {
        let event = next_event(&mut socket).await;
        let id = event["debate_id"].as_str().unwrap().to_string();
        by_debate
            .entry(id)
            .or_default()
            .push(event["seq"].as_i64().unwrap());
        if event["type"] == "debate_end" {
            ended += 1;
        }
    }
    for id in [&first, &second] {
        let debate = engine.wait_final(id, PATIENCE).await;
        let total = debate["last_seq"].as_i64().unwrap();
        assert_eq!(by_debate[id.as_str()], (1..=total).collect::<Vec<_>>());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_subscriptions_get_error_events_and_idle_sockets_get_heartbeats() {
    let engine =
        Engine::start(EngineOptions::sqlite().env("ARAGORA_WS_HEARTBEAT_INTERVAL", 1)).await;
    let mut socket = connect(engine.ws_request("/ws?debate_id=no-such-debate")).await;
    let error = next_event(&mut socket).await;
    assert_eq!(error["type"], "error");
    assert_eq!(error["data"]["code"], "not_found");
    assert!(error["data"]["message"]
        .as_str()
        .unwrap()
        .contains("POST /api/debates"));

    socket
        .send(Message::Text("{\"type\":\"subscribe\"}".into()))
        .await
        .unwrap();
    let error = next_event(&mut socket).await;
    assert_eq!(error["data"]["code"], "invalid_message");
    assert!(error["data"]["message"]
        .as_str()
        .unwrap()
        .contains("debate_id"));

    // Nothing else to say: the server still proves the connection is alive.
    let heartbeat = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(Ok(Message::Text(text))) = socket.next().await {
                let event: Value = serde_json::from_str(&text).unwrap();
                if event["type"] == "heartbeat" {
                    return event;
                }
            }
        }
    })
    .await
    .expect("a heartbeat within 10 s at a 1 s interval");
    assert!(heartbeat["timestamp"].is_string());
    let metrics = engine.metrics().await;
    assert_eq!(
        crate::support::sample(&metrics, "aragora_websocket_connections"),
        Some(1.0)
    );
}

/// Two engines on one PostgreSQL database: one runs a debate, the other's WebSocket watches
/// it. The runner reaches Redis at `runner_redis`, the watcher at the real one.
async fn runner_and_watcher(
    database: &crate::support::TestDatabase,
    runner_redis: &str,
) -> (Engine, Engine) {
    let url = |redis: &str| format!("redis://{redis}/0");
    runner_and_watcher_on(database, [url(runner_redis), url("127.0.0.1:6379")], &[]).await
}

/// [`runner_and_watcher`] with each engine's Redis URL and more settings for both.
async fn runner_and_watcher_on(
    database: &crate::support::TestDatabase,
    [runner_url, watcher_url]: [String; 2],
    env: &[(&str, String)],
) -> (Engine, Engine) {
    let options = |url: String| {
        env.iter().fold(
            EngineOptions::postgres(&database.url)
                .env("ARAGORA_REDIS_URL", url)
                .env("ARAGORA_OFFLINE_AGENT_LATENCY_MS", 100),
            |options, (key, value)| options.env(key, value),
        )
    };
    let runner = Engine::start(options(runner_url)).await;
    let watcher = Engine::start(options(watcher_url)).await;
    (runner, watcher)
}

/// Subscribes on `watcher` to a debate running on `runner` and returns the socket, what it
/// received first, and the seq the debate had reached after that (its replay can hold no
/// more): any later event can only arrive live.
async fn watch_mid_debate(
    runner: &Engine,
    watcher: &Engine,
    id: &str,
) -> (Socket, Vec<Value>, i64) {
    let mut socket = connect(watcher.ws_request(&format!("/ws?debate_id={id}"))).await;
    let received = vec![next_event(&mut socket).await];
    let (_, record) = runner.get(&format!("/api/debates/{id}")).await;
    assert_eq!(
        record["status"], "running",
        "the debate must still be running once watched, or its replay alone could pass: {record}"
    );
    (socket, received, record["last_seq"].as_i64().unwrap())
}

/// Runs a debate on `runner`, watched from its middle on `watcher`: every event arrives once,
/// in order, and those after the subscription came live (through Redis).
async fn every_event_reaches_the_other_replica(runner: &Engine, watcher: &Engine) {
    let id = runner
        .start_debate(json!({"topic": "Across replicas", "rounds": 4}))
        .await;
    let (mut socket, mut received, replayed_at_most) = watch_mid_debate(runner, watcher, &id).await;
    read_to_end(&mut socket, &mut received).await;
    let debate = runner.wait_final(&id, PATIENCE).await;
    let total = debate["last_seq"].as_i64().unwrap();
    assert_eq!(
        seqs(&received),
        (1..=total).collect::<Vec<_>>(),
        "every event once, in order"
    );
    assert!(
        total > replayed_at_most,
        "events after seq {replayed_at_most} were written after the watcher subscribed: they came live"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_on_another_replica_sees_every_event_through_redis() {
    let database = crate::support::TestDatabase::create().await;
    let (runner, watcher) = runner_and_watcher(&database, "127.0.0.1:6379").await;
    every_event_reaches_the_other_replica(&runner, &watcher).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_the_other_replica_through_a_tls_redis() {
    let database = crate::support::TestDatabase::create().await;
    let redis = crate::support::redis_tls::TlsRedis::start().await;
    let (runner, watcher) = runner_and_watcher_on(
        &database,
        [redis.url(), redis.url()],
        &[("ARAGORA_REDIS_CA_FILE", redis.ca.display().to_string())],
    )
    .await;
    every_event_reaches_the_other_replica(&runner, &watcher).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_runners_redis_link_cut_a_watcher_on_another_replica_stalls() {
    let database = crate::support::TestDatabase::create().await;
    let redis = ProxyProcess::start("redis", "127.0.0.1:6379").await;
    let (runner, watcher) =
        runner_and_watcher(&database, &format!("127.0.0.1:{}", redis.listen)).await;
    let id = runner
        .start_debate(json!({"topic": "Across a cut link", "rounds": 4}))
        .await;
    let (mut socket, mut received, _) = watch_mid_debate(&runner, &watcher, &id).await;
    redis.add_fault("redis", json!({"kind": "down"})).await;
    // The debate itself is not held up by its fan-out.
    let debate = runner.wait_final(&id, PATIENCE).await;
    assert_eq!(debate["status"], "completed", "{debate}");
    // Through Redis its end reaches a watcher within milliseconds; with the link cut, the
    // watcher has only what it read from the store and stalls.
    let stalled = tokio::time::timeout(
        Duration::from_secs(3),
        read_to_end(&mut socket, &mut received),
    )
    .await;
    assert!(
        stalled.is_err(),
        "the watcher reached debate_end without Redis, so fan-out is not what the positive test proves: {:?}",
        seqs(&received)
    );
    let total = debate["last_seq"].as_i64().unwrap();
    assert!(
        (received.last().unwrap()["seq"].as_i64().unwrap()) < total,
        "{:?} of {total}",
        seqs(&received)
    );
}
