//! `run_debate` over SQLite with offline agents, in process: a whole debate, a resume after an
//! interruption, a cancel and a timeout. The gate holds the agents at a chosen phase so each
//! stop lands at a known step, without sleeping.

mod support;

use aragora_engine::debate::{run_debate, RunEnd, StopReason};
use aragora_engine::dr_log::{BackupRecord, DrStatus, DrillRecord};
use aragora_engine::events::HubMessage;
use aragora_engine::faults::{FaultKind, FaultSpec};
use aragora_engine::model::{DebateEvent, DebateRecord, Fence, StatusUpdate};
use aragora_engine::model::{DebateStatus, EventKind, EventPayload, Outcome, Phase};
use aragora_engine::store::{Claim, DebatePage, DebateStore, Renewed, StoreError, StoredReceipt};
use std::sync::Arc;
use std::time::Duration;
use support::{assert_whole, transcript, Gate, Harness};
use tokio::sync::watch;

#[tokio::test]
async fn a_debate_runs_to_its_end_and_announces_exactly_what_it_stored() {
    let engine = Harness::new(&Gate::open()).await;
    let record = engine.insert("whole", 2, 7).await;
    let mut live = engine.deps.hub.subscribe("whole");
    let (_stop, stop_rx) = watch::channel(None);

    let end = run_debate(&engine.deps, record, stop_rx).await.unwrap();

    let stored = engine.events("whole").await;
    assert_whole(&stored);
    let Some(outcome) = (match end {
        RunEnd::Finished(outcome) => Some(outcome),
        RunEnd::Interrupted => None,
    }) else {
        panic!("an unstopped debate finishes");
    };
    let done = engine.debate("whole").await;
    assert_eq!(done.outcome, Some(outcome));
    assert_eq!(done.status, DebateStatus::Completed);
    assert_eq!(done.last_seq, stored.len() as i64);
    let kinds: Vec<EventKind> = stored.iter().map(|e| e.kind).collect();
    // start, then per round: round_start, 2 positions, 2 critiques; then 2 votes, consensus, end.
    assert_eq!(kinds.len(), 1 + 2 * 5 + 2 + 2);
    assert_eq!(kinds[0], EventKind::DebateStart);
    assert_eq!(
        &kinds[kinds.len() - 2..],
        [EventKind::Consensus, EventKind::DebateEnd]
    );
    assert!(
        engine.store.receipt("whole").await.unwrap().is_some(),
        "a completed debate has its receipt"
    );

    let mut announced = Vec::new();
    while let Ok(message) = live.try_recv() {
        if let HubMessage::Event(published) = message {
            announced.push(published.event.clone());
        }
    }
    assert_eq!(
        transcript(&announced),
        transcript(&stored),
        "every stored event is announced once, in order"
    );
}

#[tokio::test]
async fn an_interrupted_debate_resumes_where_it_stopped_and_says_what_an_uninterrupted_one_says() {
    let gate = Gate::closed("critique");
    let engine = Harness::new(&gate).await;
    let record = engine.insert("resumed", 2, 11).await;
    let (stop, stop_rx) = watch::channel(None);
    let first = tokio::spawn({
        let deps = engine.deps.clone();
        let record = record.clone();
        async move { run_debate(&deps, record, stop_rx).await }
    });
    // Both proposals are stored and both critics are waiting: stop there, as a drain would.
    gate.held(2).await;
    stop.send_replace(Some(StopReason::Draining));
    assert_eq!(first.await.unwrap().unwrap(), RunEnd::Interrupted);
    let interrupted = engine.debate("resumed").await;
    assert_eq!(interrupted.status, DebateStatus::Interrupted);
    let before: Vec<EventKind> = engine
        .events("resumed")
        .await
        .iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        before,
        [
            EventKind::DebateStart,
            EventKind::RoundStart,
            EventKind::AgentMessage,
            EventKind::AgentMessage
        ]
    );

    let restarted = engine.restart(&Gate::open()).await;
    let (_stop, stop_rx) = watch::channel(None);
    let end = run_debate(&restarted.deps, interrupted, stop_rx)
        .await
        .unwrap();
    assert!(matches!(end, RunEnd::Finished(_)), "{end:?}");
    let resumed = restarted.events("resumed").await;
    assert_whole(&resumed);
    assert!(
        restarted
            .calls
            .lock()
            .unwrap()
            .iter()
            .all(|call| !(call.round == 1 && call.phase == "proposal")),
        "the resumed run asks for no step already recorded"
    );

    let straight = Harness::new(&Gate::open()).await;
    let record = straight.insert("resumed", 2, 11).await;
    let (_stop, stop_rx) = watch::channel(None);
    run_debate(&straight.deps, record, stop_rx).await.unwrap();
    assert_eq!(
        transcript(&resumed),
        transcript(&straight.events("resumed").await),
        "the same seed says the same, interrupted or not"
    );
}

#[tokio::test]
async fn a_cancelled_debate_ends_cancelled_with_a_final_event() {
    let gate = Gate::closed("proposal");
    let engine = Harness::new(&gate).await;
    let record = engine.insert("cancelled", 3, 1).await;
    let (stop, stop_rx) = watch::channel(None);
    let run = tokio::spawn({
        let deps = engine.deps.clone();
        async move { run_debate(&deps, record, stop_rx).await }
    });
    gate.held(2).await;
    stop.send_replace(Some(StopReason::Cancelled));

    assert_eq!(
        run.await.unwrap().unwrap(),
        RunEnd::Finished(Outcome::Cancelled)
    );
    let done = engine.debate("cancelled").await;
    assert_eq!(
        (done.status, done.outcome, done.error.as_deref()),
        (
            DebateStatus::Cancelled,
            Some(Outcome::Cancelled),
            Some("cancelled by request")
        )
    );
    let events = engine.events("cancelled").await;
    assert_whole(&events);
    let end = events.last().unwrap();
    assert_eq!(end.kind, EventKind::DebateEnd);
    assert_eq!(end.data["status"], "cancelled");
    assert_eq!(end.data["final_answer"], serde_json::Value::Null);
    assert!(engine.store.receipt("cancelled").await.unwrap().is_none());
}

#[tokio::test]
async fn a_debate_past_its_timeout_ends_timed_out() {
    // The agents never answer; only the debate's own deadline can end it.
    let gate = Gate::closed("proposal");
    let engine = Harness::new(&gate)
        .await
        .with_debate_timeout(Duration::from_millis(300));
    let record = engine.insert("slow", 1, 1).await;
    let (_stop, stop_rx) = watch::channel(None);

    let end = run_debate(&engine.deps, record, stop_rx).await.unwrap();

    assert_eq!(end, RunEnd::Finished(Outcome::TimedOut));
    let done = engine.debate("slow").await;
    assert_eq!(done.status, DebateStatus::TimedOut);
    assert!(
        done.error
            .as_deref()
            .unwrap_or_default()
            .contains("ARAGORA_DEBATE_TIMEOUT"),
        "{:?}",
        done.error
    );
    let events = engine.events("slow").await;
    assert_whole(&events);
    assert_eq!(events.last().unwrap().data["outcome"], "timed_out");
}

#[tokio::test]
async fn a_finished_debate_run_again_records_nothing() {
    let engine = Harness::new(&Gate::open()).await;
    let record = engine.insert("twice", 1, 3).await;
    let (_stop, stop_rx) = watch::channel(None);
    let first = run_debate(&engine.deps, record, stop_rx.clone())
        .await
        .unwrap();
    let events = engine.events("twice").await;
    let calls = engine.calls.lock().unwrap().len();

    let again = run_debate(&engine.deps, engine.debate("twice").await, stop_rx)
        .await
        .unwrap();

    assert_eq!(again, first);
    assert_eq!(engine.events("twice").await, events);
    assert_eq!(
        engine.calls.lock().unwrap().len(),
        calls,
        "no agent is asked again"
    );
}

#[tokio::test]
async fn a_debate_whose_every_agent_fails_ends_failed_with_each_agents_error() {
    let engine = Harness::new(&Gate::open()).await;
    engine.faults.inject(FaultSpec {
        kind: FaultKind::AgentFailing,
        agent: None,
        delay: Duration::ZERO,
        duration: Duration::from_secs(600),
    });
    let record = engine.insert("failing", 2, 1).await;
    let (_stop, stop_rx) = watch::channel(None);

    let end = run_debate(&engine.deps, record, stop_rx).await.unwrap();

    assert_eq!(end, RunEnd::Finished(Outcome::Failed));
    let events = engine.events("failing").await;
    assert_whole(&events);
    let errors: Vec<(Option<String>, Phase)> = events
        .iter()
        .filter_map(|e| match e.payload().unwrap() {
            EventPayload::Error { phase, .. } => Some((e.agent.clone(), phase)),
            _ => None,
        })
        .collect();
    assert_eq!(
        errors,
        support::AGENTS
            .iter()
            .map(|a| (Some(a.to_string()), Phase::Proposal))
            .collect::<Vec<_>>(),
        "one error per agent, at its proposal, in agent order"
    );
    let done = engine.debate("failing").await;
    assert_eq!(done.status, DebateStatus::Failed);
    assert!(done.error.unwrap().contains("every agent failed"));
}

/// A store whose commit of one chosen event is acknowledged late, as a database server's is
/// when the client stops waiting: the write lands although the caller's future was dropped,
/// and it lands right after the next read of the debate row, the worst moment for a recorder
/// that reads the last seq while that write is still in flight.
struct LateCommitStore {
    inner: aragora_engine::store::SqlStore,
    late_seq: i64,
    /// Set while the late write waits; the test cancels then.
    held: watch::Sender<bool>,
    /// Lets the late write go; sent by the next read of the debate row, or after a while so a
    /// recorder that waits for its write first is not left waiting on a read it never makes.
    release: watch::Sender<bool>,
    landed: watch::Sender<bool>,
}

#[async_trait::async_trait]
impl DebateStore for LateCommitStore {
    async fn ping(&self) -> Result<Duration, StoreError> {
        self.inner.ping().await
    }
    fn backend(&self) -> aragora_engine::DbBackend {
        self.inner.backend()
    }
    async fn close(&self) {
        self.inner.close().await
    }
    async fn insert_debate(&self, debate: &DebateRecord) -> Result<(), StoreError> {
        self.inner.insert_debate(debate).await
    }
    async fn debate(&self, id: &str) -> Result<Option<DebateRecord>, StoreError> {
        let record = self.inner.debate(id).await;
        if *self.held.borrow() {
            // The late commit lands just after this read: what the reader saw is stale.
            self.release.send_replace(true);
            let mut landed = self.landed.subscribe();
            let _ = landed.wait_for(|landed| *landed).await;
        }
        record
    }
    async fn list_debates(
        &self,
        statuses: &[DebateStatus],
        limit: i64,
        offset: i64,
    ) -> Result<DebatePage, StoreError> {
        self.inner.list_debates(statuses, limit, offset).await
    }
    async fn append_event(
        &self,
        event: &DebateEvent,
        update: Option<&StatusUpdate>,
        receipt: Option<&StoredReceipt>,
        fence: Option<&Fence>,
    ) -> Result<(), StoreError> {
        if event.seq != self.late_seq || *self.landed.borrow() {
            return self.inner.append_event(event, update, receipt, fence).await;
        }
        // The server side of the write: it goes on whether or not the caller still waits.
        let (inner, event, update, receipt, fence) = (
            self.inner.clone(),
            event.clone(),
            update.cloned(),
            receipt.cloned(),
            fence.cloned(),
        );
        let (release, held, landed) = (
            self.release.subscribe(),
            self.held.clone(),
            self.landed.clone(),
        );
        let server = tokio::spawn(async move {
            held.send_replace(true);
            let mut release = release;
            let _ = tokio::time::timeout(Duration::from_secs(1), release.wait_for(|go| *go)).await;
            let written = inner
                .append_event(&event, update.as_ref(), receipt.as_ref(), fence.as_ref())
                .await;
            held.send_replace(false);
            landed.send_replace(true);
            written
        });
        server.await.expect("the late write does not panic")
    }
    async fn receipt(&self, debate_id: &str) -> Result<Option<String>, StoreError> {
        self.inner.receipt(debate_id).await
    }
    async fn add_usage(
        &self,
        debate_id: &str,
        provider: &str,
        input_tokens: u64,
        output_tokens: u64,
    ) -> Result<(), StoreError> {
        self.inner
            .add_usage(debate_id, provider, input_tokens, output_tokens)
            .await
    }
    async fn usage_of_creator(
        &self,
        created_by: &str,
        limit: i64,
    ) -> Result<
        (
            Vec<aragora_engine::usage::DebateUsage>,
            Vec<aragora_engine::usage::ProviderUsage>,
        ),
        StoreError,
    > {
        self.inner.usage_of_creator(created_by, limit).await
    }
    async fn transition(
        &self,
        id: &str,
        from: &[DebateStatus],
        update: &StatusUpdate,
        fence: Option<&Fence>,
    ) -> Result<bool, StoreError> {
        self.inner.transition(id, from, update, fence).await
    }
    async fn claim(&self, id: &str, claim: &Claim<'_>) -> Result<bool, StoreError> {
        self.inner.claim(id, claim).await
    }
    async fn adoptable(
        &self,
        now_ms: i64,
        grace_ms: i64,
        limit: i64,
    ) -> Result<Vec<DebateRecord>, StoreError> {
        self.inner.adoptable(now_ms, grace_ms, limit).await
    }
    async fn renew_leases(
        &self,
        owner: &str,
        ids: &[String],
        expires_at_ms: i64,
    ) -> Result<Vec<Renewed>, StoreError> {
        self.inner.renew_leases(owner, ids, expires_at_ms).await
    }
    async fn request_cancel(&self, id: &str, by: &str, at_ms: i64) -> Result<bool, StoreError> {
        self.inner.request_cancel(id, by, at_ms).await
    }
    async fn events_after(
        &self,
        id: &str,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<DebateEvent>, StoreError> {
        self.inner.events_after(id, after_seq, limit).await
    }
    async fn debates_in(&self, statuses: &[DebateStatus]) -> Result<Vec<DebateRecord>, StoreError> {
        self.inner.debates_in(statuses).await
    }
    async fn record_backup(&self, backup: &BackupRecord) -> Result<(), StoreError> {
        self.inner.record_backup(backup).await
    }
    async fn record_drill(&self, drill: &DrillRecord) -> Result<(), StoreError> {
        self.inner.record_drill(drill).await
    }
    async fn drills(&self, limit: i64) -> Result<Vec<DrillRecord>, StoreError> {
        self.inner.drills(limit).await
    }
    async fn dr_status(&self) -> Result<DrStatus, StoreError> {
        self.inner.dr_status().await
    }
    async fn maintenance(
        &self,
    ) -> Result<aragora_engine::maintenance::MaintenanceState, StoreError> {
        self.inner.maintenance().await
    }
    async fn set_maintenance(
        &self,
        change: &aragora_engine::maintenance::Change,
    ) -> Result<(aragora_engine::maintenance::MaintenanceState, bool), StoreError> {
        self.inner.set_maintenance(change).await
    }
}

#[tokio::test]
async fn a_cancel_during_a_write_the_database_still_commits_ends_the_debate_cancelled() {
    let mut engine = Harness::new(&Gate::open()).await;
    let record = engine.insert("late-commit", 2, 3).await;
    // seq 1 is debate_start, 2 round_start, 3 the first position: its commit comes late.
    let store = Arc::new(LateCommitStore {
        inner: engine.store.clone(),
        late_seq: 3,
        held: watch::channel(false).0,
        release: watch::channel(false).0,
        landed: watch::channel(false).0,
    });
    engine.deps.store = store.clone();
    let mut held = store.held.subscribe();
    let (stop, stop_rx) = watch::channel(None);
    let run = tokio::spawn({
        let deps = engine.deps.clone();
        async move { run_debate(&deps, record, stop_rx).await }
    });
    held.wait_for(|held| *held).await.unwrap();
    stop.send_replace(Some(StopReason::Cancelled));

    let end = run.await.unwrap();
    assert_eq!(
        end.expect("the final event does not collide with the late write"),
        RunEnd::Finished(Outcome::Cancelled)
    );
    let events = engine.events("late-commit").await;
    assert_whole(&events);
    assert_eq!(events[2].seq, 3, "the late write is kept");
    let last = events.last().unwrap();
    assert_eq!((last.kind, last.seq), (EventKind::DebateEnd, 4));
    assert_eq!(
        engine.debate("late-commit").await.status,
        DebateStatus::Cancelled
    );
}
