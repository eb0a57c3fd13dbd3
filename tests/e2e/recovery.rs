//! SQLite crash recovery: `aragora serve` killed with SIGKILL (no drain, no goodbye) while one
//! debate runs and others wait in the queue; the next start on the same data directory resumes
//! every one of them to completion, and each transcript is whole: the events recorded before
//! the crash are kept as they were, and nothing is missing or recorded twice.

use crate::support::transcript::assert_whole;
use crate::support::{Engine, EngineOptions};
use crate::websocket::{connect, next_event, read_to_end};
use serde_json::{json, Value};
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(60);
const ROUNDS: usize = 5;

/// Every stored event of a finished debate, through the replaying WebSocket.
pub async fn all_events(engine: &Engine, id: &str) -> Vec<Value> {
    let mut socket = connect(engine.ws_request(&format!("/ws?debate_id={id}"))).await;
    let mut events = Vec::new();
    read_to_end(&mut socket, &mut events).await;
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_sqlite_engine_resumes_its_running_and_queued_debates_on_restart() {
    // One slot, slow agents: the first debate runs for seconds while the others queue.
    let mut engine = Engine::start(
        EngineOptions::sqlite()
            .env("ARAGORA_MAX_CONCURRENT_DEBATES", 1)
            .env("ARAGORA_OFFLINE_AGENT_LATENCY_MS", 150),
    )
    .await;
    let body = |n: usize| json!({"topic": format!("Crash {n}"), "rounds": ROUNDS});
    let running = engine.start_debate(body(0)).await;
    let queued = vec![
        engine.start_debate(body(1)).await,
        engine.start_debate(body(2)).await,
    ];

    // Watch the running one until it is well into its first round.
    let mut socket = connect(engine.ws_request(&format!("/ws?debate_id={running}"))).await;
    let mut before_crash = Vec::new();
    while before_crash.len() < 4 {
        before_crash.push(next_event(&mut socket).await);
    }
    for id in &queued {
        let (_, record) = engine.get(&format!("/api/debates/{id}")).await;
        assert_eq!(record["status"], "queued", "{record}");
    }
    let (_, record) = engine.get(&format!("/api/debates/{running}")).await;
    assert_eq!(record["status"], "running", "{record}");

    engine.signal(libc::SIGKILL);
    let status = engine.wait_exit(Duration::from_secs(10)).await;
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    let restart =
        engine.restart_options(EngineOptions::sqlite().env("ARAGORA_OFFLINE_AGENT_LATENCY_MS", 5));
    let resumed = Engine::start(restart).await;
    for id in std::iter::once(&running).chain(&queued) {
        let debate = resumed.wait_final(id, PATIENCE).await;
        assert_eq!(debate["status"], "completed", "{debate}");
        let agents = debate["agents"].as_array().unwrap().len();
        let events = all_events(&resumed, id).await;
        assert_whole(&events, ROUNDS, agents);
        assert_eq!(debate["last_seq"], events.len(), "{debate}");
    }
    // What was recorded before the crash is the start of the resumed transcript, unchanged.
    let events = all_events(&resumed, &running).await;
    for (before, after) in before_crash.iter().zip(&events) {
        assert_eq!(before["seq"], after["seq"]);
        assert_eq!(before["type"], after["type"]);
        assert_eq!(before["data"], after["data"]);
    }
}
