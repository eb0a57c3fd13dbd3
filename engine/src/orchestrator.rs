//! Admission, scheduling and shutdown of debates on this replica.
//!
//! A new debate is persisted as `queued`, then waits for one of `ARAGORA_MAX_CONCURRENT_DEBATES`
//! slots; at most `ARAGORA_DEBATE_QUEUE_SIZE` may wait, beyond that the request gets 429. The
//! orchestrator keeps a stop switch per local debate (cancel, drain, watchdog), resumes
//! interrupted debates on start, and runs the watchdog that ends debates stuck past their
//! timeout.

use crate::config::DbBackend;
use crate::debate::{run_debate, DebateDeps, RunEnd, StopReason};
use crate::model::{
    now_ms, DebateEvent, DebateRecord, DebateStatus, EventPayload, Outcome, StatusUpdate,
};
use crate::store::StoreError;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify, Semaphore};

/// Why a debate was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    #[error(
        "{running} debates are running and {queued} are queued, the most this replica accepts"
    )]
    QueueFull { running: usize, queued: usize },
    #[error("this replica is draining and accepts no new debates")]
    Draining,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What happened to a cancel request.
#[derive(Debug)]
pub enum CancelResult {
    /// The debate is now cancelled (its record after the change).
    Cancelled(DebateRecord),
    /// The debate had already ended; nothing changed.
    AlreadyFinal(DebateRecord),
    /// Another replica runs it; this one cannot stop it.
    Elsewhere(DebateRecord),
    NotFound,
}

struct LocalDebate {
    stop: watch::Sender<Option<StopReason>>,
    done: watch::Receiver<bool>,
    /// When it took a slot; `None` while it waits for one.
    running_since: Option<Instant>,
}

/// Schedules debates onto a bounded number of slots.
#[derive(Clone)]
pub struct Orchestrator {
    deps: DebateDeps,
    slots: Arc<Semaphore>,
    max_running: usize,
    queue_size: usize,
    local: Arc<Mutex<HashMap<String, LocalDebate>>>,
    draining: Arc<AtomicBool>,
    /// Signalled whenever a local debate ends.
    changed: Arc<Notify>,
}

impl Orchestrator {
    pub fn new(deps: DebateDeps, max_running: usize, queue_size: usize) -> Self {
        Self {
            deps,
            slots: Arc::new(Semaphore::new(max_running)),
            max_running,
            queue_size,
            local: Arc::default(),
            draining: Arc::default(),
            changed: Arc::default(),
        }
    }

    pub fn deps(&self) -> &DebateDeps {
        &self.deps
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, LocalDebate>> {
        self.local.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// (running, queued) on this replica.
    pub fn load(&self) -> (usize, usize) {
        let local = self.lock();
        let running = local.values().filter(|d| d.running_since.is_some()).count();
        (running, local.len() - running)
    }

    /// How long the longest-running local debate has run; zero when none runs. Read at
    /// scrape time for `aragora_oldest_running_debate_seconds`.
    pub fn oldest_running(&self) -> Duration {
        self.lock()
            .values()
            .filter_map(|d| d.running_since)
            .map(|since| since.elapsed())
            .max()
            .unwrap_or_default()
    }

    fn update_gauges(&self) {
        let (running, queued) = self.load();
        self.deps.metrics.active_debates.set(running as i64);
        self.deps.metrics.queued_debates.set(queued as i64);
    }

    /// Persists a new debate and schedules it.
    pub async fn admit(&self, record: DebateRecord) -> Result<DebateRecord, AdmitError> {
        if self.draining.load(Ordering::SeqCst) {
            return Err(AdmitError::Draining);
        }
        {
            // Reserve the place before the insert so concurrent requests cannot overshoot.
            let mut local = self.lock();
            let running = local.values().filter(|d| d.running_since.is_some()).count();
            let waiting = local.len() - running;
            let free_slots = self.max_running.saturating_sub(running);
            if waiting >= free_slots + self.queue_size {
                return Err(AdmitError::QueueFull {
                    running,
                    queued: waiting,
                });
            }
            local.insert(record.id.clone(), Self::new_local().0);
        }
        if let Err(err) = self.deps.store.insert_debate(&record).await {
            self.lock().remove(&record.id);
            return Err(err.into());
        }
        self.spawn(record.clone());
        Ok(record)
    }

    fn new_local() -> (LocalDebate, watch::Sender<bool>) {
        let (stop, _) = watch::channel(None);
        let (done_tx, done) = watch::channel(false);
        (
            LocalDebate {
                stop,
                done,
                running_since: None,
            },
            done_tx,
        )
    }

    /// Starts the task that waits for a slot and runs the debate.
    fn spawn(&self, record: DebateRecord) {
        let (mut entry, done_tx) = Self::new_local();
        let stop_rx = entry.stop.subscribe();
        // Take a free slot now, so debates start in the order they were admitted (a task's
        // first poll is not); with debates already waiting, no slot is free to take.
        let slot = self.slots.clone().try_acquire_owned().ok();
        entry.running_since = slot.is_some().then(Instant::now);
        // Keep a stop requested between admit and spawn.
        let previous = self.lock().insert(record.id.clone(), entry);
        if let Some(reason) = previous.and_then(|p| *p.stop.borrow()) {
            self.stop_local(&record.id, reason);
        }
        self.update_gauges();
        let this = self.clone();
        tokio::spawn(async move {
            let id = record.id.clone();
            this.run_when_slot_free(record, stop_rx, slot).await;
            this.lock().remove(&id);
            this.update_gauges();
            let _ = done_tx.send(true);
            this.changed.notify_waiters();
        });
    }

    async fn run_when_slot_free(
        &self,
        record: DebateRecord,
        mut stop: watch::Receiver<Option<StopReason>>,
        slot: Option<tokio::sync::OwnedSemaphorePermit>,
    ) {
        let id = record.id.clone();
        let permit = tokio::select! {
            permit = async {
                match slot {
                    Some(permit) => Ok(permit),
                    None => self.slots.clone().acquire_owned().await,
                }
            } => permit.ok(),
            reason = async { stop.wait_for(Option::is_some).await.ok().and_then(|r| *r) } => {
                let reason = reason.unwrap_or(StopReason::Draining);
                if let Err(err) = self.end_queued(&record, reason).await {
                    tracing::error!(debate_id = %id, error = %err, "could not record the end of a queued debate");
                }
                return;
            }
        };
        let Some(_permit) = permit else { return };
        if let Some(entry) = self.lock().get_mut(&id) {
            entry.running_since = Some(Instant::now());
        }
        self.update_gauges();
        match run_debate(&self.deps, record, stop).await {
            Ok(RunEnd::Finished(_)) | Ok(RunEnd::Interrupted) => {}
            Err(err) => {
                // The store failed mid-debate; the watchdog or the next start settles it.
                tracing::error!(debate_id = %id, error = %err, "debate stopped by a storage error; it will be resumed or failed by the watchdog");
            }
        }
    }

    /// A debate stopped before it got a slot: a drain saves it for the next start, a cancel or
    /// timeout ends it with a final event.
    async fn end_queued(
        &self,
        record: &DebateRecord,
        reason: StopReason,
    ) -> Result<(), StoreError> {
        let from = [DebateStatus::Queued, DebateStatus::Interrupted];
        match reason {
            StopReason::Draining => {
                self.deps
                    .store
                    .transition(
                        &record.id,
                        &from,
                        &StatusUpdate::to(DebateStatus::Interrupted),
                    )
                    .await?;
                Ok(())
            }
            StopReason::Cancelled => {
                self.finish_without_runner(record, Outcome::Cancelled, "cancelled by request")
                    .await
            }
            StopReason::TimedOut => {
                self.finish_without_runner(
                    record,
                    Outcome::TimedOut,
                    "the debate waited longer than ARAGORA_DEBATE_TIMEOUT",
                )
                .await
            }
        }
    }

    /// Ends a debate that no runner is driving, with a final `debate_end` event.
    async fn finish_without_runner(
        &self,
        record: &DebateRecord,
        outcome: Outcome,
        reason: &str,
    ) -> Result<(), StoreError> {
        let store = &self.deps.store;
        let Some(current) = store.debate(&record.id).await? else {
            return Ok(());
        };
        if current.status.is_final() {
            return Ok(());
        }
        let now = now_ms();
        let update = StatusUpdate {
            status: Some(outcome.status()),
            finished_at_ms: Some(now),
            outcome: Some(outcome),
            error: Some(reason.to_string()),
            ..StatusUpdate::default()
        };
        let end = EventPayload::DebateEnd {
            status: outcome.status(),
            outcome,
            final_answer: None,
            error: Some(reason.to_string()),
            duration_ms: 0,
        };
        let event = DebateEvent::of(&record.id, current.last_seq + 1, None, None, end, now);
        store.append_event(&event, Some(&update), None).await?;
        self.deps.hub.publish(event);
        self.deps
            .metrics
            .debates
            .with_label_values(&[outcome.as_str()])
            .inc();
        Ok(())
    }

    fn stop_local(&self, id: &str, reason: StopReason) -> Option<watch::Receiver<bool>> {
        let local = self.lock();
        let entry = local.get(id)?;
        entry.stop.send_if_modified(|current| {
            // A cancel must not be downgraded to a drain, nor a drain to a cancel.
            if current.is_none() {
                *current = Some(reason);
                true
            } else {
                false
            }
        });
        Some(entry.done.clone())
    }

    /// Cancels a queued or running debate and waits (briefly) for it to reach its final state.
    pub async fn cancel(&self, id: &str) -> Result<CancelResult, StoreError> {
        let store = &self.deps.store;
        let Some(record) = store.debate(id).await? else {
            return Ok(CancelResult::NotFound);
        };
        if record.status.is_final() {
            return Ok(CancelResult::AlreadyFinal(record));
        }
        if let Some(mut done) = self.stop_local(id, StopReason::Cancelled) {
            let _ = tokio::time::timeout(Duration::from_secs(10), done.wait_for(|d| *d)).await;
        } else if matches!(
            record.status,
            DebateStatus::Queued | DebateStatus::Interrupted
        ) {
            // Not scheduled here (an interrupted debate awaiting resume): end it directly.
            self.finish_without_runner(&record, Outcome::Cancelled, "cancelled by request")
                .await?;
        } else {
            return Ok(CancelResult::Elsewhere(record));
        }
        let record = store.debate(id).await?.unwrap_or(record);
        Ok(CancelResult::Cancelled(record))
    }

    /// Schedules debates left unfinished by an earlier process: those a drain interrupted, and
    /// with SQLite (one process owns the file) also those a crash left queued or running.
    pub async fn resume_unfinished(&self) -> Result<usize, StoreError> {
        let store = &self.deps.store;
        let mut statuses = vec![DebateStatus::Interrupted];
        if store.backend() == DbBackend::Sqlite {
            statuses.extend([DebateStatus::Queued, DebateStatus::Running]);
        }
        let mut resumed = 0;
        for record in store.debates_in(&statuses).await? {
            // Claim it: another replica starting at the same time may race for it.
            let claimed = store
                .transition(
                    &record.id,
                    &statuses,
                    &StatusUpdate::to(DebateStatus::Queued),
                )
                .await?;
            if claimed {
                self.spawn(record);
                resumed += 1;
            }
        }
        if resumed > 0 {
            tracing::info!(count = resumed, "resumed unfinished debates");
        }
        Ok(resumed)
    }

    /// Ends debates that are past their timeout by a grace period: local ones are told to
    /// stop, and ones no live runner drives (a replica died) are failed directly.
    pub async fn watchdog_pass(&self, grace: Duration) -> Result<usize, StoreError> {
        let limit_ms = (self.deps.debate_timeout + grace).as_millis() as i64;
        let now = now_ms();
        let mut ended = 0;
        let candidates = self
            .deps
            .store
            .debates_in(&[DebateStatus::Running, DebateStatus::Queued])
            .await?;
        for record in candidates {
            let since = record.started_at_ms.unwrap_or(record.created_at_ms);
            if now - since < limit_ms {
                continue;
            }
            if self.stop_local(&record.id, StopReason::TimedOut).is_some() {
                tracing::warn!(debate_id = %record.id, "watchdog stopping a debate past its timeout");
            } else {
                tracing::warn!(debate_id = %record.id, "watchdog failing a debate that no runner drives");
                self.finish_without_runner(
                    &record,
                    Outcome::Failed,
                    "stuck past ARAGORA_DEBATE_TIMEOUT with no replica running it; failed by the watchdog",
                )
                .await?;
            }
            ended += 1;
        }
        Ok(ended)
    }

    /// Refuses new debates from now on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Lets local debates (running and queued) finish for up to `timeout`, then saves the rest
    /// as interrupted. Returns the number interrupted.
    pub async fn drain(&self, timeout: Duration) -> usize {
        self.start_draining();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Register interest before looking, so a debate ending in between is not missed.
            let changed = self.changed.notified();
            if self.lock().is_empty() {
                return 0;
            }
            tokio::select! {
                _ = changed => {}
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        let waiters: Vec<watch::Receiver<bool>> = {
            let ids: Vec<String> = self.lock().keys().cloned().collect();
            ids.iter()
                .filter_map(|id| self.stop_local(id, StopReason::Draining))
                .collect()
        };
        let interrupted = waiters.len();
        for mut done in waiters {
            let _ = tokio::time::timeout(Duration::from_secs(10), done.wait_for(|d| *d)).await;
        }
        interrupted
    }
}
