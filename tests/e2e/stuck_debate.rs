//! Procedure 6 of the Production Operations Runbook, "Restart a Stuck Debate", against engine
//! replicas of the real binary on one PostgreSQL: list the active debates
//! (`GET /api/v1/debates?status=active`) and cancel one (`POST /api/v1/debates/<id>/cancel`)
//! through the gateway or any replica, whichever one runs it; a replica killed with SIGKILL
//! or frozen with SIGSTOP past its lease loses its debates to a survivor, which finishes them
//! from their events: seqs contiguous, no step twice, the adoption counted, and the frozen
//! replica records nothing more once it wakes. A cancel on a replica that does not run the
//! debate reaches the runner at once through Redis fan-out, not at its next lease renewal.
//!
//! Debates are held running by the engine fault `agent_slow` on the replica that runs them
//! (faults are per process, so a survivor runs them at full speed). Leases are 3 s, renewed
//! every second, so adoption is due within about 4 s of the owner's last renewal.

use crate::recovery::all_events;
use crate::support::transcript::assert_whole;
use crate::support::{
    eventually, get_json, post_json, sample, Engine, EngineOptions, GatewayProcess, TestDatabase,
};
use crate::websocket::{connect, read_to_end};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const PATIENCE: Duration = Duration::from_secs(60);
const ROUNDS: usize = 2;
const LEASE_SECS: u64 = 3;
/// The lease, a renewal of the adopter, and room for a busy machine.
const ADOPTION_BOUND: Duration = Duration::from_secs(LEASE_SECS + 12);

/// `count` engines on `database`, with short leases and Redis fan-out (so a watcher on any
/// replica sees the debate live).
async fn replicas(database: &TestDatabase, count: usize) -> Vec<Engine> {
    let mut engines = Vec::new();
    for _ in 0..count {
        let options = EngineOptions::postgres(&database.url)
            .env("ARAGORA_DEBATE_LEASE", LEASE_SECS)
            .env("ARAGORA_DEBATE_LEASE_RENEW", 1)
            .env("ARAGORA_REDIS_URL", "redis://127.0.0.1:6379/0");
        engines.push(Engine::start(options).await);
    }
    engines
}

/// Slows every agent call on `engine` by `delay_ms` (the engine's `agent_slow` fault).
async fn slow_agents(engine: &Engine, delay_ms: u64) {
    let fault = json!({"kind": "agent_slow", "delay_ms": delay_ms, "duration_seconds": 600});
    let (status, body) = engine.post_json("/api/system/faults", &fault).await;
    assert_eq!(status, 201, "{body}");
}

/// Starts `count` debates on `engine` and returns their ids once each is running and has
/// recorded its first agent message (it is mid-debate).
async fn debates_running_on(engine: &Engine, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for n in 0..count {
        let body = json!({"topic": format!("Stuck {n}"), "rounds": ROUNDS});
        ids.push(engine.start_debate(body).await);
    }
    for id in &ids {
        eventually(&format!("debate {id} under way"), PATIENCE, || async {
            let (_, debate) = engine.get(&format!("/api/debates/{id}")).await;
            (debate["status"] == "running" && debate["last_seq"].as_i64() >= Some(3)).then_some(())
        })
        .await;
    }
    ids
}

/// The replica id that holds debate `id`, as `engine` reads it from the database.
async fn holder(engine: &Engine, id: &str) -> String {
    let (_, debate) = engine.get(&format!("/api/debates/{id}")).await;
    debate["replica"].as_str().unwrap_or_default().to_string()
}

/// Waits until a replica other than `dead` holds debate `id`, and returns how long that took.
async fn adopted_away_from(engine: &Engine, id: &str, dead: &str) -> Duration {
    let started = Instant::now();
    eventually(&format!("debate {id} adopted"), PATIENCE, || async {
        let now = holder(engine, id).await;
        (!now.is_empty() && now != dead).then_some(())
    })
    .await;
    started.elapsed()
}

/// A finished debate's record says it completed, and its stored events are whole.
async fn assert_completed_whole(engine: &Engine, id: &str) -> Vec<Value> {
    let debate = engine.wait_final(id, PATIENCE).await;
    assert_eq!(debate["status"], "completed", "{debate}");
    assert!(
        ["consensus", "no_consensus"].contains(&debate["outcome"].as_str().unwrap()),
        "{debate}"
    );
    let agents = debate["agents"].as_array().unwrap().len();
    let events = all_events(engine, id).await;
    assert_whole(&events, ROUNDS, agents);
    assert_eq!(debate["last_seq"], events.len(), "{debate}");
    events
}

fn adoptions(metrics: &str) -> f64 {
    sample(metrics, "aragora_debates_adopted_total").expect("exported from the start")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn procedure_6_lists_the_active_debates_and_cancels_one_from_any_replica() {
    let database = TestDatabase::create().await;
    let engines = replicas(&database, 3).await;
    let upstreams: Vec<String> = engines.iter().map(|e| e.api.to_string()).collect();
    let gateway = GatewayProcess::start(&upstreams, &[]).await;
    gateway.wait_ready_count(3, PATIENCE).await;
    let client = gateway.client();
    slow_agents(&engines[0], 2000).await;
    let ids = debates_running_on(&engines[0], 2).await;
    let owner = holder(&engines[0], &ids[0]).await;
    assert!(!owner.is_empty(), "a running debate names its replica");

    // Step 1: list the active debates through the gateway.
    let (status, active) =
        get_json(&client, &gateway.https_url("/api/v1/debates?status=active")).await;
    assert_eq!(status, 200, "{active}");
    for id in &ids {
        let listed = active["debates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["debate_id"] == *id)
            .unwrap_or_else(|| panic!("{id} is listed as active: {active}"));
        assert_eq!(listed["status"], "running");
    }

    // Step 2: cancel. On a replica that does not run the debate, and through the gateway
    // (whichever replica it lands on): 200 with the cancelled record either way.
    let path = |id: &str| format!("/api/v1/debates/{id}/cancel");
    let (status, cancelled) = engines[1].post_json(&path(&ids[0]), &json!({})).await;
    assert_eq!(
        status, 200,
        "a replica that does not run it cancels it: {cancelled}"
    );
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    let (status, cancelled) =
        post_json(&client, &gateway.https_url(&path(&ids[1])), &json!({})).await;
    assert_eq!(status, 200, "through the gateway: {cancelled}");
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");

    for id in &ids {
        for engine in &engines {
            let (_, debate) = engine.get(&format!("/api/debates/{id}")).await;
            assert_eq!(debate["status"], "cancelled", "{debate}");
            assert_eq!(debate["outcome"], "cancelled");
            assert_eq!(debate["replica"], owner, "ended by the replica that ran it");
        }
        let events = all_events(&engines[2], id).await;
        let seqs: Vec<i64> = events.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
        assert_eq!(seqs, (1..=events.len() as i64).collect::<Vec<_>>());
        assert_eq!(events.last().unwrap()["data"]["outcome"], "cancelled");
    }
    let (_, active) = get_json(&client, &gateway.https_url("/api/v1/debates?status=active")).await;
    assert_eq!(active["total"], 0, "nothing active is left: {active}");
    let (status, again) = engines[2].post_json(&path(&ids[0]), &json!({})).await;
    assert_eq!(
        status, 409,
        "an ended debate cannot be cancelled again: {again}"
    );
}

/// With fan-out, a cancel sent to a replica that does not run the debate reaches the one that
/// does at once, not at its next lease renewal: renewals here come every 10 s, and the cancel
/// answers "cancelled" well before one is due.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_on_another_replica_stops_the_debate_at_once_not_at_the_next_renewal() {
    const RENEW_SECS: u64 = 10;
    let database = TestDatabase::create().await;
    let mut engines = Vec::new();
    for _ in 0..2 {
        let options = EngineOptions::postgres(&database.url)
            .env("ARAGORA_DEBATE_LEASE", 3 * RENEW_SECS)
            .env("ARAGORA_DEBATE_LEASE_RENEW", RENEW_SECS)
            .env("ARAGORA_REDIS_URL", "redis://127.0.0.1:6379/0");
        engines.push(Engine::start(options).await);
    }
    slow_agents(&engines[0], 2000).await;
    let ids = debates_running_on(&engines[0], 1).await;
    let owner = holder(&engines[0], &ids[0]).await;

    let asked = Instant::now();
    let (status, cancelled) = engines[1]
        .post_json(&format!("/api/v1/debates/{}/cancel", ids[0]), &json!({}))
        .await;
    let took = asked.elapsed();
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    assert_eq!(
        holder(&engines[1], &ids[0]).await,
        owner,
        "ended by the replica that ran it"
    );
    assert!(
        took < Duration::from_secs(RENEW_SECS / 2),
        "the cancel took {took:?}: as long as waiting for a lease renewal (every {RENEW_SECS} s)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn procedure_6_the_debates_of_a_killed_replica_finish_on_a_survivor() {
    let database = TestDatabase::create().await;
    let mut engines = replicas(&database, 3).await;
    slow_agents(&engines[0], 1500).await;
    let ids = debates_running_on(&engines[0], 3).await;
    let dead = holder(&engines[0], &ids[0]).await;
    // A watcher on a survivor, connected before the kill, sees the whole debate live.
    let mut watcher = connect(engines[1].ws_request(&format!("/ws?debate_id={}", ids[0]))).await;

    engines[0].signal(libc::SIGKILL);
    let _ = engines[0].wait_exit(Duration::from_secs(10)).await;
    let survivor = &engines[1];
    for id in &ids {
        let took = adopted_away_from(survivor, id, &dead).await;
        assert!(
            took <= ADOPTION_BOUND,
            "{id} adopted after {took:?}, beyond the lease bound {ADOPTION_BOUND:?}"
        );
    }
    for id in &ids {
        assert_completed_whole(survivor, id).await;
    }
    let mut watched = Vec::new();
    read_to_end(&mut watcher, &mut watched).await;
    let agents = watched[0]["data"]["agents"].as_array().unwrap().len();
    assert_whole(&watched, ROUNDS, agents);

    let mut adopted = 0.0;
    for engine in &engines[1..] {
        adopted += adoptions(&engine.metrics().await);
    }
    assert_eq!(adopted, 3.0, "each debate adopted once, and counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_frozen_past_its_lease_loses_its_debates_and_records_nothing_more_on_waking() {
    let database = TestDatabase::create().await;
    let engines = replicas(&database, 2).await;
    slow_agents(&engines[0], 1000).await;
    let ids = debates_running_on(&engines[0], 2).await;
    let frozen = holder(&engines[0], &ids[0]).await;

    engines[0].signal(libc::SIGSTOP);
    let survivor = &engines[1];
    let mut finished = Vec::new();
    for id in &ids {
        adopted_away_from(survivor, id, &frozen).await;
        finished.push(assert_completed_whole(survivor, id).await);
    }
    assert_eq!(adoptions(&survivor.metrics().await), 2.0);

    // Woken, it finds its leases gone: its runners stop, logged, having written nothing.
    engines[0].signal(libc::SIGCONT);
    eventually(
        "the woken replica to let its debates go",
        PATIENCE,
        || async {
            let metrics = engines[0].metrics().await;
            let log = engines[0].log_text();
            (sample(&metrics, "aragora_active_debates") == Some(0.0)
                && log.matches("lease lost to another replica").count() == ids.len())
            .then_some(())
        },
    )
    .await;
    for (id, before) in ids.iter().zip(&finished) {
        let after = all_events(survivor, id).await;
        assert_eq!(
            &after, before,
            "{id}: the woken replica recorded nothing more"
        );
        let (_, debate) = engines[0].get(&format!("/api/debates/{id}")).await;
        assert_eq!(debate["status"], "completed", "{debate}");
    }
    let (status, _) = engines[0].get("/readyz").await;
    assert_eq!(status, 200, "the woken replica serves on");
}
