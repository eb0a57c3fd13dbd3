//! A property of `/ws` resume, over many generated histories: whatever seq a client resumes
//! from and however the live channel delivers (events announced late, never, twice, an old
//! one again, a burst that makes the subscriber lag), the client gets every stored event after
//! its `last_seq` exactly once and in order: no gap, no duplicate. The API is served on
//! 127.0.0.1 port 0; events are written to the real SQLite store and announced on the real hub,
//! as the debate runner does (persist, then publish).

mod support;

use aragora_engine::http::app;
use aragora_engine::model::{now_ms, DebateEvent, EventKind};
use aragora_engine::store::DebateStore;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::net::SocketAddr;
use support::{Gate, Harness, PATIENCE};
use tokio_tungstenite::tungstenite::Message;

/// A small deterministic generator (xorshift), so a failing case is replayed by its number.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// How the hub announces one stored event.
#[derive(Debug, Clone, Copy)]
enum Delivery {
    Once,
    /// Stored but never announced: the next announced event shows a gap.
    Never,
    Twice,
    /// Announced, then an earlier event announced again.
    WithAnOldOne,
}

struct Case {
    stored_before: i64,
    last_seq: i64,
    live: Vec<Delivery>,
    /// Subscribe by message rather than by the upgrade's query.
    by_message: bool,
    /// Read nothing until everything is published (and give events a large body), so the
    /// server's writes back up and the subscriber falls behind the channel.
    slow_reader: bool,
    padding: usize,
}

fn generate(number: u64) -> Case {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (number + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let stored_before = rng.below(6) as i64;
    let last_seq = rng.below(stored_before as u64 + 5) as i64 - 2;
    let burst = number % 8 == 7;
    let count = if burst {
        1_100
    } else {
        3 + rng.below(8) as usize
    };
    let live = (0..count)
        .map(|_| match rng.below(20) {
            0..=12 => Delivery::Once,
            13..=15 => Delivery::Never,
            16..=17 => Delivery::Twice,
            _ => Delivery::WithAnOldOne,
        })
        .collect();
    Case {
        stored_before,
        last_seq,
        live,
        by_message: rng.below(2) == 0,
        slow_reader: burst,
        padding: if burst { 2_048 } else { 16 },
    }
}

fn event(id: &str, seq: i64, last: bool, padding: usize) -> DebateEvent {
    let kind = if last {
        EventKind::DebateEnd
    } else {
        EventKind::AgentMessage
    };
    let data = json!({"content": "x".repeat(padding)});
    DebateEvent::new(id, seq, kind, Some(1), Some("analyst"), data, now_ms())
}

/// The seqs a watcher receives until `debate_end`.
async fn watch(
    socket: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Vec<i64> {
    let mut seqs = Vec::new();
    loop {
        let message = tokio::time::timeout(PATIENCE, socket.next())
            .await
            .expect("the next event within the patience")
            .expect("the socket stays open until the debate ends")
            .expect("a readable frame");
        let Message::Text(text) = message else {
            continue;
        };
        let event: Value = serde_json::from_str(&text).expect("events are JSON");
        assert_ne!(event["type"], "error", "an error event: {event}");
        let Some(seq) = event["seq"].as_i64() else {
            continue; // heartbeats carry no seq
        };
        seqs.push(seq);
        if event["type"] == "debate_end" {
            return seqs;
        }
    }
}

async fn run(engine: &Harness, address: SocketAddr, number: u64) {
    let case = generate(number);
    let id = format!("resume-{number}");
    let state_hub = engine.deps.hub.clone();
    engine.insert(&id, 2, 1).await;
    let mut seq = 0;
    for _ in 0..case.stored_before {
        seq += 1;
        let stored = event(&id, seq, false, case.padding);
        engine
            .store
            .append_event(&stored, None, None, None)
            .await
            .unwrap();
        state_hub.publish(stored);
    }

    let token = support::API_TOKEN;
    let url = if case.by_message {
        format!("ws://{address}/ws?token={token}")
    } else {
        format!(
            "ws://{address}/ws?debate_id={id}&last_seq={}&token={token}",
            case.last_seq
        )
    };
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    if case.by_message {
        let subscribe = json!({"type": "subscribe", "debate_id": id, "last_seq": case.last_seq});
        socket
            .send(Message::text(subscribe.to_string()))
            .await
            .unwrap();
    }

    let total = case.stored_before + case.live.len() as i64;
    let publisher = {
        let store = engine.store.clone();
        let hub = state_hub.clone();
        let id = id.clone();
        let live = case.live.clone();
        let padding = case.padding;
        async move {
            let mut announced: Vec<DebateEvent> = Vec::new();
            for (index, delivery) in live.into_iter().enumerate() {
                seq += 1;
                let last = seq == total;
                let stored = event(&id, seq, last, padding);
                store.append_event(&stored, None, None, None).await.unwrap();
                // The end is always announced: a watcher learns of nothing never announced.
                let delivery = if last { Delivery::Once } else { delivery };
                match delivery {
                    Delivery::Once => hub.publish(stored.clone()),
                    Delivery::Never => {}
                    Delivery::Twice => {
                        hub.publish(stored.clone());
                        hub.publish(stored.clone());
                    }
                    Delivery::WithAnOldOne => {
                        hub.publish(stored.clone());
                        if let Some(old) = announced.get(index / 2) {
                            hub.publish(old.clone());
                        }
                    }
                }
                announced.push(stored);
                if index % 3 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }
    };
    let received = if case.slow_reader {
        publisher.await;
        watch(&mut socket).await
    } else {
        let (_, received) = tokio::join!(publisher, watch(&mut socket));
        received
    };

    let expected: Vec<i64> = (case.last_seq.max(0) + 1..=total).collect();
    assert_eq!(
        received,
        expected,
        "case {number} (stored before {}, last_seq {}, by message {}, live {:?}): a gap or a duplicate",
        case.stored_before,
        case.last_seq,
        case.by_message,
        &case.live[..case.live.len().min(12)]
    );
    let stored: Vec<i64> = engine
        .store
        .events_after(&id, case.last_seq.max(0), i64::MAX)
        .await
        .unwrap()
        .iter()
        .map(|event| event.seq)
        .collect();
    assert_eq!(received, stored, "case {number}: not what the store holds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_watch_never_has_a_gap_or_a_duplicate_whatever_the_delivery() {
    let gate = Gate::open();
    let engine = Harness::new(&gate).await;
    let state = engine.ready_state(1, 1);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app(state)).await });
    for number in 0..32 {
        run(&engine, address, number).await;
    }
}
