//! Process life: SIGTERM drains without losing a debate, timeouts end debates, the watchdog
//! settles orphans, a database that is not up keeps readiness false.

use crate::support::transcript::assert_whole;
use crate::support::{eventually, Engine, EngineOptions, TestDatabase};
use crate::websocket::{connect, next_event};
use futures::StreamExt;
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

const PATIENCE: Duration = Duration::from_secs(60);

async fn all_events(engine: &Engine, id: &str) -> Vec<Value> {
    let mut socket = connect(engine.ws_request(&format!("/ws?debate_id={id}"))).await;
    let mut events = Vec::new();
    crate::websocket::read_to_end(&mut socket, &mut events).await;
    events
}

async fn sigterm_mid_debate_loses_nothing_and_the_next_start_resumes(options: EngineOptions) {
    let rounds = 10;
    let postgres = match &options.backend {
        crate::support::Backend::Postgres(url) => Some(url.clone()),
        crate::support::Backend::Sqlite => None,
    };
    let mut engine = Engine::start(
        options
            .env("ARAGORA_OFFLINE_AGENT_LATENCY_MS", 150)
            .env("ARAGORA_DRAIN_TIMEOUT", 1),
    )
    .await;
    let id = engine
        .start_debate(json!({"topic": "Survive a deploy", "rounds": rounds}))
        .await;
    let mut socket = connect(engine.ws_request(&format!("/ws?debate_id={id}"))).await;
    let mut seen = Vec::new();
    while seen.len() < 4 {
        seen.push(next_event(&mut socket).await);
    }

    engine.signal(libc::SIGTERM);
    eventually(
        "readiness to go false on SIGTERM",
        Duration::from_secs(5),
        || async {
            let response = engine.http.get(engine.url("/readyz")).send().await.ok()?;
            (response.status() == 503).then_some(())
        },
    )
    .await;
    let (status, refused) = engine
        .post_json("/api/debates", &json!({"topic": "too late"}))
        .await;
    assert_eq!(
        status, 503,
        "new debates are refused while draining: {refused}"
    );

    // The watcher is told to go away (1001) so it reconnects elsewhere.
    let close_code = tokio::time::timeout(Duration::from_secs(15), async {
        while let Some(message) = socket.next().await {
            match message {
                Ok(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
                Ok(Message::Text(text)) => seen.push(serde_json::from_str(&text).unwrap()),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    })
    .await
    .expect("the socket closes during the drain");
    assert_eq!(close_code, Some(1001));
    let status = engine.wait_exit(Duration::from_secs(20)).await;
    assert!(
        status.success(),
        "a drained engine exits 0: {status:?}\n{}",
        engine.log_text()
    );
    assert!(
        engine.log_text().contains("interrupted"),
        "{}",
        engine.log_text()
    );

    let mut restart = EngineOptions::sqlite().data_dir(&engine.data_dir);
    if let Some(url) = postgres {
        restart = EngineOptions::postgres(&url).data_dir(&engine.data_dir);
    }
    let resumed = Engine::start(restart).await;
    let debate = resumed.wait_final(&id, PATIENCE).await;
    assert_eq!(debate["status"], "completed", "{debate}");
    let events = all_events(&resumed, &id).await;
    assert_whole(&events, rounds, 3);
    // What the first watcher saw is a prefix of the whole, event for event.
    let heartbeat_free: Vec<&Value> = seen.iter().filter(|e| e["type"] != "heartbeat").collect();
    for (before, after) in heartbeat_free.iter().zip(events.iter()) {
        assert_eq!(before["seq"], after["seq"]);
        assert_eq!(before["data"], after["data"]);
    }
}

async fn sigterm_lets_short_debates_finish(options: EngineOptions) {
    let backend = match &options.backend {
        crate::support::Backend::Postgres(url) => crate::support::Backend::Postgres(url.clone()),
        crate::support::Backend::Sqlite => crate::support::Backend::Sqlite,
    };
    let rounds = 2;
    let mut engine = Engine::start(
        options
            .env("ARAGORA_OFFLINE_AGENT_LATENCY_MS", 50)
            .env("ARAGORA_DRAIN_TIMEOUT", 30),
    )
    .await;
    let id = engine
        .start_debate(json!({"topic": "Finish before exit", "rounds": rounds}))
        .await;
    let (_, before) = engine.get(&format!("/api/debates/{id}")).await;
    assert!(
        ["queued", "running"].contains(&before["status"].as_str().unwrap_or_default()),
        "the debate must still be going at SIGTERM, or this proves nothing: {before}"
    );
    engine.signal(libc::SIGTERM);
    let status = engine.wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "{status:?}\n{}", engine.log_text());

    // The next start on the same data finds it already completed. Its agents take a minute per
    // call, so a debate it had to resume could not be completed by the time it is looked at.
    let restart = engine.restart_options(EngineOptions {
        backend,
        ..EngineOptions::sqlite()
    });
    let restarted = Engine::start(restart.env("ARAGORA_OFFLINE_AGENT_LATENCY_MS", 60_000)).await;
    let (status, debate) = restarted.get(&format!("/api/debates/{id}")).await;
    assert_eq!(status, 200, "{debate}");
    assert_eq!(
        debate["status"], "completed",
        "finished before the exit: {debate}"
    );
    assert_whole(&all_events(&restarted, &id).await, rounds, 3);
}

on_both_backends!(
    sigterm_mid_debate_loses_nothing_and_the_next_start_resumes,
    sigterm_lets_short_debates_finish,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_debate_past_its_timeout_ends_as_timed_out() {
    let engine = Engine::start(
        EngineOptions::sqlite()
            .env("ARAGORA_DEBATE_TIMEOUT", 1)
            .env("ARAGORA_AGENT_TIMEOUT", 1)
            .env("ARAGORA_OFFLINE_AGENT_LATENCY_MS", 300),
    )
    .await;
    let id = engine
        .start_debate(json!({"topic": "Too long", "rounds": 12}))
        .await;
    let debate = engine.wait_final(&id, PATIENCE).await;
    assert_eq!(debate["status"], "timed_out", "{debate}");
    assert!(debate["error"]
        .as_str()
        .unwrap()
        .contains("ARAGORA_DEBATE_TIMEOUT"));
    let (status, _) = engine.get("/readyz").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_that_all_time_out_fail_the_debate_with_a_reason() {
    let engine = Engine::start(
        EngineOptions::sqlite()
            .env("ARAGORA_AGENT_TIMEOUT", 1)
            .env("ARAGORA_OFFLINE_AGENT_LATENCY_MS", 3000),
    )
    .await;
    let id = engine
        .start_debate(json!({"topic": "Nobody answers", "rounds": 1}))
        .await;
    let debate = engine.wait_final(&id, PATIENCE).await;
    crate::support::assert_every_agent_failed(&debate);
    assert_eq!(debate["agent_errors"].as_array().unwrap().len(), 3);
    let metrics = engine.metrics_after_debates(1.0).await;
    let timeouts = "aragora_agent_calls_total{agent=\"offline-skeptic\",provider=\"offline\",status=\"timeout\"}";
    assert_eq!(crate::support::sample(&metrics, timeouts), Some(1.0));
    assert_eq!(
        crate::support::sample(&metrics, "aragora_debates_total{outcome=\"failed\"}"),
        Some(1.0)
    );
    let (status, _) = engine.get("/readyz").await;
    assert_eq!(status, 200, "the engine stays healthy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watchdog_fails_a_debate_no_replica_is_running() {
    let database = TestDatabase::create().await;
    let engine = Engine::start(
        EngineOptions::postgres(&database.url)
            .env("ARAGORA_WATCHDOG_INTERVAL", 1)
            .env("ARAGORA_DEBATE_TIMEOUT", 5)
            .env("ARAGORA_AGENT_TIMEOUT", 1),
    )
    .await;
    // A replica that died mid-debate left this row behind.
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&database.url).await.unwrap();
    let long_ago = chrono_ms() - 3_600_000;
    sqlx::query(
        "INSERT INTO debates (id, topic, status, rounds, agents, consensus_rule, seed, created_at_ms, \
         started_at_ms, updated_at_ms, last_seq) VALUES ('orphan', 'left behind', 'running', 3, \
         '[\"offline-skeptic\",\"offline-optimist\"]', 'majority', 1, $1, $1, $1, 0)",
    )
    .bind(long_ago)
    .execute(&mut conn)
    .await
    .unwrap();
    let debate = engine.wait_final("orphan", Duration::from_secs(30)).await;
    assert_eq!(debate["status"], "failed");
    assert!(
        debate["error"].as_str().unwrap().contains("watchdog"),
        "{debate}"
    );
}

fn chrono_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_stays_false_until_the_database_answers() {
    // Nothing listens on port 1: the engine keeps trying, alive but not ready, then gives up.
    let mut engine = Engine::spawn(
        EngineOptions::postgres("postgres://postgres@127.0.0.1:1/none")
            .env("ARAGORA_DB_CONNECT_TIMEOUT", 3),
    );
    let (status, body) = eventually("/readyz to answer", Duration::from_secs(10), || async {
        let response = engine.http.get(engine.url("/readyz")).send().await.ok()?;
        let status = response.status().as_u16();
        Some((status, response.json::<Value>().await.ok()?))
    })
    .await;
    assert_eq!(status, 503);
    assert_eq!(body["status"], "not_ready");
    assert!(
        body["reason"].as_str().unwrap().contains("connecting"),
        "{body}"
    );
    let (status, _) = engine.get("/healthz").await;
    assert_eq!(status, 200, "alive while waiting for the database");
    let (status, error) = engine
        .post_json("/api/debates", &json!({"topic": "early"}))
        .await;
    assert_eq!(status, 503, "{error}");
    let exit = engine.wait_exit(Duration::from_secs(30)).await;
    assert!(!exit.success());
    let log = engine.log_text();
    assert!(
        log.contains("did not answer within 3 s") && log.contains("ARAGORA_DB_CONNECT_TIMEOUT"),
        "{log}"
    );
}
