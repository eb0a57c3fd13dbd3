//! The orchestrator in process, over SQLite with offline agents: admission order and its
//! bound, cancel in each state, drain and the resume on the next start; leases between two
//! replicas on one database (expiry and adoption by exactly one, fencing of the stale owner,
//! a cancel sent to the replica that does not run the debate).

mod support;

use aragora_engine::model::{DebateStatus, EventKind, Outcome};
use aragora_engine::orchestrator::{AdmitError, CancelResult, LeaseTimes, Orchestrator};
use aragora_engine::store::DebateStore;
use std::time::Duration;
use support::{assert_whole, eventually, record, Gate, Harness};

fn orchestrator(engine: &Harness, max_running: usize, queue_size: usize) -> Orchestrator {
    Orchestrator::new(engine.deps.clone(), max_running, queue_size)
}

#[tokio::test]
async fn debates_start_in_the_order_they_were_admitted_and_the_queue_is_bounded() {
    let gate = Gate::closed("proposal");
    let engine = Harness::new(&gate).await;
    let orchestrator = orchestrator(&engine, 1, 3);
    let ids = ["first", "second", "third", "fourth"];
    for id in ids {
        orchestrator.admit(record(id, 1, 5)).await.unwrap();
    }
    gate.held(2).await;
    assert_eq!(orchestrator.load(), (1, 3));
    let refused = orchestrator.admit(record("fifth", 1, 5)).await.unwrap_err();
    assert!(
        matches!(
            refused,
            AdmitError::QueueFull {
                running: 1,
                queued: 3
            }
        ),
        "{refused:?}"
    );
    assert!(
        engine.store.debate("fifth").await.unwrap().is_none(),
        "a refused debate is not stored"
    );
    assert_eq!(engine.debate("second").await.status, DebateStatus::Queued);

    gate.release();
    for id in ids {
        let done = engine.finished(id).await;
        assert_eq!(done.status, DebateStatus::Completed, "{id}");
        assert_whole(&engine.events(id).await);
    }
    assert_eq!(engine.start_order(), ids);
}

#[tokio::test]
async fn one_client_holds_at_most_its_share_and_gets_it_back_as_its_debates_end() {
    let gate = Gate::closed("proposal");
    let engine = Harness::new(&gate).await;
    let orchestrator = orchestrator(&engine, 1, 10).with_client_limit(2);
    for id in ["a1", "a2"] {
        orchestrator
            .admit(record(id, 1, 5).created_by("key:a"))
            .await
            .unwrap();
    }
    let refused = orchestrator
        .admit(record("a3", 1, 5).created_by("key:a"))
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, AdmitError::ClientFull { client, held: 2, scope: aragora_engine::client_slots::Scope::ThisReplica } if client == "key:a"),
        "{refused:?}"
    );
    assert!(refused
        .to_string()
        .contains("ARAGORA_DEBATE_QUEUE_PER_CLIENT"));
    assert!(
        engine.store.debate("a3").await.unwrap().is_none(),
        "not stored"
    );
    orchestrator
        .admit(record("b1", 1, 5).created_by("key:b"))
        .await
        .expect("another client's debate goes in");

    gate.release();
    engine.finished("a1").await;
    engine.finished("a2").await;
    eventually("a's places given back", || async {
        orchestrator
            .admit(record("a4", 1, 5).created_by("key:a"))
            .await
            .ok()
            .map(|_| ())
    })
    .await;
}

#[tokio::test]
async fn a_draining_orchestrator_admits_nothing() {
    let engine = Harness::new(&Gate::open()).await;
    let orchestrator = orchestrator(&engine, 2, 2);
    orchestrator.start_draining();
    let refused = orchestrator.admit(record("late", 1, 1)).await.unwrap_err();
    assert!(matches!(refused, AdmitError::Draining), "{refused:?}");
}

#[tokio::test]
async fn cancel_ends_running_and_queued_debates_and_refuses_finished_ones() {
    let gate = Gate::closed("proposal");
    let engine = Harness::new(&gate).await;
    let orchestrator = orchestrator(&engine, 1, 1);
    orchestrator.admit(record("running", 2, 1)).await.unwrap();
    orchestrator.admit(record("waiting", 2, 1)).await.unwrap();
    gate.held(2).await;

    for id in ["waiting", "running"] {
        let CancelResult::Cancelled(done) = orchestrator.cancel(id, "tester").await.unwrap() else {
            panic!("{id} is cancelled");
        };
        assert_eq!(
            (done.status, done.outcome),
            (DebateStatus::Cancelled, Some(Outcome::Cancelled)),
            "{id}"
        );
        let events = engine.events(id).await;
        assert_whole(&events);
        assert_eq!(events.last().unwrap().kind, EventKind::DebateEnd, "{id}");
    }
    assert!(
        engine.events("waiting").await.len() == 1,
        "a debate cancelled in the queue never started: its only event is its end"
    );
    assert!(matches!(
        orchestrator.cancel("running", "tester").await.unwrap(),
        CancelResult::AlreadyFinal(_)
    ));
    assert!(matches!(
        orchestrator.cancel("nobody", "tester").await.unwrap(),
        CancelResult::NotFound
    ));
}

#[tokio::test]
async fn a_drain_interrupts_what_runs_and_the_next_start_resumes_it_to_the_end() {
    let gate = Gate::closed("critique");
    let engine = Harness::new(&gate).await;
    let orchestrator = orchestrator(&engine, 1, 1);
    orchestrator.admit(record("running", 2, 9)).await.unwrap();
    orchestrator.admit(record("waiting", 2, 9)).await.unwrap();
    gate.held(2).await;

    let interrupted = orchestrator.drain(Duration::ZERO).await;

    assert_eq!(interrupted, 2);
    for id in ["running", "waiting"] {
        assert_eq!(
            engine.debate(id).await.status,
            DebateStatus::Interrupted,
            "{id}"
        );
    }
    let restarted = engine.restart(&Gate::open()).await;
    let next = Orchestrator::new(restarted.deps.clone(), 1, 1);
    assert_eq!(next.resume_unfinished().await.unwrap(), 2);
    for id in ["running", "waiting"] {
        let done = restarted.finished(id).await;
        assert_eq!(done.status, DebateStatus::Completed, "{id}");
        let events = restarted.events(id).await;
        assert_whole(&events);
        let starts = events
            .iter()
            .filter(|e| e.kind == EventKind::DebateStart)
            .count();
        assert_eq!(starts, 1, "{id} started once");
    }
}

/// Short leases so the tests see them expire: 300 ms, renewed every 100 ms.
fn quick_leases() -> LeaseTimes {
    LeaseTimes {
        lease: Duration::from_millis(300),
        renew: Duration::from_millis(100),
    }
}

fn replica(engine: &Harness, max_running: usize) -> Orchestrator {
    orchestrator(engine, max_running, 4).with_leases(quick_leases())
}

/// Runs `orchestrator`'s lease passes, as the server does, until the handle is aborted.
fn keep_leasing(orchestrator: &Orchestrator) -> tokio::task::JoinHandle<()> {
    let orchestrator = orchestrator.clone();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(orchestrator.lease_times().renew);
        loop {
            ticker.tick().await;
            let _ = orchestrator.lease_pass().await;
        }
    })
}

#[tokio::test]
async fn an_expired_lease_is_adopted_by_one_replica_and_the_stale_owner_records_nothing_more() {
    // The first replica stops renewing (as if frozen) with its debate held mid-round.
    let held = Gate::closed("critique");
    let first = Harness::new(&held).await;
    let frozen = replica(&first, 2);
    frozen.admit(record("orphaned", 2, 3)).await.unwrap();
    held.held(2).await;
    let before = first.events("orphaned").await.len();
    let owner = first.debate("orphaned").await.lease;
    assert_eq!(owner.owner.as_deref(), Some(frozen.replica_id()));

    // Two replicas race for it once the lease has expired: exactly one adopts it.
    let second = first.restart(&Gate::open()).await;
    let third = first.restart(&Gate::open()).await;
    let (b, c) = (replica(&second, 2), replica(&third, 2));
    let adopted = eventually("the expired lease to be adopted", || async {
        let (by_b, by_c) = tokio::join!(b.lease_pass(), c.lease_pass());
        let total = by_b.unwrap() + by_c.unwrap();
        (total > 0).then_some(total)
    })
    .await;
    assert_eq!(adopted, 1, "one adopter wins");
    let done = second.finished("orphaned").await;
    assert_eq!(done.status, DebateStatus::Completed);
    let adopter = done.lease.owner.clone().unwrap();
    assert!(
        [b.replica_id(), c.replica_id()].contains(&adopter.as_str()),
        "{adopter} finished it"
    );
    assert_eq!(
        done.lease.epoch,
        owner.epoch + 1,
        "one adoption, one new epoch"
    );
    let events = second.events("orphaned").await;
    assert!(events.len() > before);
    assert_whole(&events);
    let adopters = [&second, &third]
        .iter()
        .map(|h| aragora_telemetry_sample(&h.deps.metrics.render()))
        .sum::<f64>();
    assert_eq!(adopters, 1.0, "the adoption is counted once");

    // The frozen replica wakes: its held calls answer, its writes are fenced off.
    held.release();
    eventually("the stale runner to stop", || async {
        (frozen.load() == (0, 0)).then_some(())
    })
    .await;
    assert_eq!(
        first.events("orphaned").await.len(),
        events.len(),
        "the stale owner recorded nothing more"
    );
    assert_eq!(
        first.debate("orphaned").await.status,
        DebateStatus::Completed
    );
}

/// `aragora_debates_adopted_total` in a rendered registry.
fn aragora_telemetry_sample(rendered: &str) -> f64 {
    rendered
        .lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| line.strip_prefix("aragora_debates_adopted_total"))
        // The series carries the registry's `component` label; the value is the last field.
        .and_then(|rest| rest.rsplit(' ').next())
        .map(|value| value.trim().parse().unwrap())
        .expect("the adoption counter is exported (at 0 before any adoption)")
}

#[tokio::test]
async fn a_cancel_sent_to_a_replica_that_does_not_run_the_debate_ends_it_where_it_runs() {
    let held = Gate::closed("proposal");
    let first = Harness::new(&held).await;
    let owner = replica(&first, 1);
    let _renewing = keep_leasing(&owner);
    owner.admit(record("elsewhere", 2, 4)).await.unwrap();
    held.held(2).await;

    let second = first.restart(&Gate::open()).await;
    let other = replica(&second, 1);
    let CancelResult::Cancelled(done) = other.cancel("elsewhere", "tester").await.unwrap() else {
        panic!("the cancel reaches the replica that runs the debate");
    };
    assert_eq!(
        (done.status, done.outcome),
        (DebateStatus::Cancelled, Some(Outcome::Cancelled))
    );
    assert_eq!(
        done.lease.owner.as_deref(),
        Some(owner.replica_id()),
        "ended by its owner"
    );
    let events = first.events("elsewhere").await;
    assert_whole(&events);
    assert_eq!(events.last().unwrap().kind, EventKind::DebateEnd);
    eventually("the owner to let the debate go", || async {
        (owner.load() == (0, 0)).then_some(())
    })
    .await;
    assert_eq!(
        aragora_telemetry_sample(&second.deps.metrics.render()),
        0.0,
        "a live lease is never adopted"
    );
}
