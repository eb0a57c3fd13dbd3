//! The orchestrator in process, over SQLite with offline agents: admission order and its
//! bound, cancel in each state, drain and the resume on the next start.

mod support;

use aragora_engine::model::{DebateStatus, EventKind, Outcome};
use aragora_engine::orchestrator::{AdmitError, CancelResult, Orchestrator};
use aragora_engine::store::DebateStore;
use std::time::Duration;
use support::{assert_whole, record, Gate, Harness};

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
        let CancelResult::Cancelled(done) = orchestrator.cancel(id).await.unwrap() else {
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
        orchestrator.cancel("running").await.unwrap(),
        CancelResult::AlreadyFinal(_)
    ));
    assert!(matches!(
        orchestrator.cancel("nobody").await.unwrap(),
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
