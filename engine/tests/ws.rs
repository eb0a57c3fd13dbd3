//! `/ws` in process: the API served on 127.0.0.1 port 0 by this test, a client resuming a
//! debate from a `last_seq`. It gets the stored events after that seq, then the live ones,
//! each once and in order, exactly as they are stored; at shutdown it is closed with 1001.

mod support;

use aragora_engine::http::app;
use aragora_engine::store::DebateStore;
use futures::StreamExt;
use serde_json::Value;
use support::{Gate, Harness, PATIENCE};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn a_watcher_resuming_from_a_seq_gets_the_rest_once_in_order_as_stored() {
    let gate = Gate::closed("critique");
    let engine = Harness::new(&gate).await;
    let state = engine.ready_state(1, 1);
    let orchestrator = state.core().unwrap().orchestrator.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app(state)).await });
    orchestrator
        .admit(support::record("watched", 2, 4))
        .await
        .unwrap();
    // start, round_start and both proposals are stored; the critics wait at the gate.
    gate.held(2).await;

    let url = format!(
        "ws://{address}/ws?debate_id=watched&last_seq=2&token={}",
        support::API_TOKEN
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut received: Vec<Value> = Vec::new();
    loop {
        let message = tokio::time::timeout(PATIENCE, socket.next())
            .await
            .expect("the next event within the patience")
            .expect("the socket stays open until the debate ends")
            .unwrap();
        let Message::Text(text) = message else {
            continue;
        };
        let event: Value = serde_json::from_str(&text).unwrap();
        if event["seq"].is_null() {
            continue; // heartbeats and streamed text carry no seq
        }
        let seq = event["seq"].as_i64().unwrap();
        let is_end = event["type"] == "debate_end";
        received.push(event);
        if seq == 4 {
            // The replay is through: let the debate go on, live.
            gate.release();
        }
        if is_end {
            break;
        }
    }

    let stored: Vec<Value> = engine
        .store
        .events_after("watched", 2, i64::MAX)
        .await
        .unwrap()
        .iter()
        .map(|event| serde_json::to_value(event).unwrap())
        .collect();
    assert_eq!(
        received, stored,
        "the replayed and live events are the stored ones"
    );
    assert_eq!(received.first().unwrap()["seq"], 3);

    // Shutting down closes the socket with 1001, so the client knows to resume elsewhere.
    engine.closing.send_replace(true);
    let close = loop {
        let message = tokio::time::timeout(PATIENCE, socket.next())
            .await
            .expect("the close within the patience");
        if let Some(Ok(Message::Close(frame))) = message {
            break frame;
        }
    };
    assert_eq!(
        u16::from(close.expect("a close frame with a code").code),
        1001
    );
}

#[tokio::test]
async fn a_clients_close_is_answered_with_its_own_code() {
    let gate = Gate::closed("critique");
    let engine = Harness::new(&gate).await;
    let state = engine.ready_state(1, 1);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app(state)).await });
    let url = format!("ws://{address}/ws?token={}", support::API_TOKEN);
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    socket
        .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
            code: 1000.into(),
            reason: "done".into(),
        }))
        .await
        .unwrap();
    let close = loop {
        let message = tokio::time::timeout(PATIENCE, socket.next())
            .await
            .expect("the answer within the patience");
        match message {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("no close frame: {other:?}"),
        }
    };
    assert_eq!(
        u16::from(close.expect("a close frame with a code").code),
        1000
    );
}
