//! Admission, scheduling and shutdown of debates on this replica.
//!
//! A new debate is persisted as `queued`, then waits for one of `ARAGORA_MAX_CONCURRENT_DEBATES`
//! slots; at most `ARAGORA_DEBATE_QUEUE_SIZE` may wait, beyond that the request gets 429. The
//! orchestrator keeps a stop switch per local debate (cancel, drain, watchdog, lease lost),
//! resumes interrupted debates on start, and runs the watchdog that ends debates stuck past
//! their timeout.
//!
//! ## Leases
//!
//! Every debate this replica runs or queues is held under a lease in the database (`owner`, a
//! replica id generated at each start, and `lease_expires_at_ms`). [`Orchestrator::lease_pass`]
//! renews all of them in one statement every `ARAGORA_DEBATE_LEASE_RENEW` (5 s) for
//! `ARAGORA_DEBATE_LEASE` (15 s), and then adopts what nobody holds: debates whose lease
//! expired (their replica died, or froze) and debates a drain saved as interrupted. Fifteen
//! seconds is three renewals, so two may be missed (a pause, a slow database) before anyone
//! takes over, and a killed replica's debates run again on a survivor within 15-20 s.
//!
//! | step | how |
//! |---|---|
//! | adopt | one conditional UPDATE on the epoch seen (`DebateStore::claim`): of replicas racing, one wins; the epoch goes up by one |
//! | resume | the adopter runs `run_debate`, which replays the events and skips every recorded step |
//! | fence | every write of a runner carries the owner and epoch it claimed; after an adoption they match no row, so a replica that wakes after losing the lease records nothing more, and its runner stops (logged) |
//! | slots | a replica adopts only into free slots, never behind its own queue; a full replica leaves the debate to another; a draining one adopts nothing |
//! | cancel | a replica that does not run the debate records the request in the row; the owner's next renewal sees it and cancels; the requester waits for the final state (at most 10 s) |

use crate::client_slots::ClientSlots;
use crate::config::DbBackend;
use crate::debate::{run_debate, DebateDeps, RunEnd, StopReason};
use crate::model::{
    now_ms, DebateEvent, DebateRecord, DebateStatus, EventPayload, Fence, Lease, Outcome,
    StatusUpdate,
};
use crate::store::{Claim, StoreError};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, watch, Notify, Semaphore};

/// Why a debate was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    #[error(
        "{running} debates are running and {queued} are queued, the most this replica accepts"
    )]
    QueueFull { running: usize, queued: usize },
    #[error("{client} already has {held} debates queued or running {}, the most one client may (ARAGORA_DEBATE_QUEUE_PER_CLIENT)", scope.phrase())]
    ClientFull {
        client: String,
        held: usize,
        scope: crate::client_slots::Scope,
    },
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
    /// Another replica runs it: the request is recorded for that replica, which had not
    /// ended the debate yet when this one stopped waiting.
    Requested(DebateRecord),
    NotFound,
}

/// How long a cancel waits for the debate to reach its final state, on this replica or on
/// the one that runs it (which hears of it at once through fan-out, else at its next lease
/// renewal).
pub const CANCEL_WAIT: Duration = Duration::from_secs(10);

/// How long this replica's hold on a debate lasts, and how often it renews it.
#[derive(Debug, Clone, Copy)]
pub struct LeaseTimes {
    pub lease: Duration,
    pub renew: Duration,
}

impl Default for LeaseTimes {
    /// `ARAGORA_DEBATE_LEASE` and `ARAGORA_DEBATE_LEASE_RENEW`'s defaults (see the module doc).
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(15),
            renew: Duration::from_secs(5),
        }
    }
}

struct LocalDebate {
    stop: watch::Sender<Option<StopReason>>,
    done: watch::Receiver<bool>,
    /// When it took a slot; `None` while it waits for one.
    running_since: Option<Instant>,
    /// Its lease is stored (the admission's row is written), so renewals cover it.
    leased: bool,
    /// Who created it (`DebateRecord::created_by`), for the per-client bound.
    client: Option<String>,
}

/// Schedules debates onto a bounded number of slots.
#[derive(Clone)]
pub struct Orchestrator {
    deps: DebateDeps,
    slots: Arc<Semaphore>,
    max_running: usize,
    queue_size: usize,
    /// Debates one client may have here, queued or running (`ARAGORA_DEBATE_QUEUE_PER_CLIENT`).
    per_client: usize,
    /// Where `per_client` is counted: across the replicas (Redis), or here.
    client_slots: ClientSlots,
    local: Arc<Mutex<HashMap<String, LocalDebate>>>,
    draining: Arc<AtomicBool>,
    /// Signalled whenever a local debate ends.
    changed: Arc<Notify>,
    /// This replica's id: the owner of the leases it holds, new at every start.
    replica: Arc<str>,
    leases: LeaseTimes,
}

impl Orchestrator {
    pub fn new(deps: DebateDeps, max_running: usize, queue_size: usize) -> Self {
        let client_slots = ClientSlots::local(deps.metrics.client_limits_shared.clone());
        Self {
            deps,
            slots: Arc::new(Semaphore::new(max_running)),
            max_running,
            queue_size,
            per_client: usize::MAX,
            client_slots,
            local: Arc::default(),
            draining: Arc::default(),
            changed: Arc::default(),
            replica: uuid::Uuid::new_v4().to_string().into(),
            leases: LeaseTimes::default(),
        }
    }

    /// With these lease times (the defaults are those of [`LeaseTimes::default`]).
    pub fn with_leases(mut self, leases: LeaseTimes) -> Self {
        self.leases = leases;
        self
    }

    /// With at most `per_client` debates queued or running per creator (unbounded otherwise).
    /// Running ones count too: a client whose debates hold every slot would otherwise keep
    /// the others' waiting however short its own queue.
    pub fn with_client_limit(mut self, per_client: usize) -> Self {
        self.per_client = per_client;
        self
    }

    /// With `per_client` counted through `slots` (across the replicas when they share Redis).
    pub fn with_client_slots(mut self, slots: ClientSlots) -> Self {
        self.client_slots = slots;
        self
    }

    /// The id this replica holds leases under.
    pub fn replica_id(&self) -> &str {
        &self.replica
    }

    pub fn lease_times(&self) -> LeaseTimes {
        self.leases
    }

    /// A lease for this replica from `now`.
    fn lease_from(&self, now: i64, epoch: i64) -> Lease {
        Lease {
            owner: Some(self.replica.to_string()),
            epoch,
            expires_at_ms: Some(now + self.leases.lease.as_millis() as i64),
        }
    }

    /// How long a debate without a lease (written before leases existed) counts as held since
    /// its last change: its runner writes at least once per agent call, and a call never
    /// takes longer than the agent timeout.
    fn unleased_grace_ms(&self) -> i64 {
        (self.deps.agent_timeout + self.leases.lease).as_millis() as i64
    }

    /// Takes `record`'s lease if nobody holds it (`only_expired`) or in any case (a SQLite
    /// restart, where no other process can); the record as claimed, or `None` when another
    /// replica holds or won it.
    async fn claim(
        &self,
        record: &DebateRecord,
        only_expired: bool,
    ) -> Result<Option<DebateRecord>, StoreError> {
        let now = now_ms();
        let lease = self.lease_from(now, record.lease.epoch + 1);
        let claim = Claim {
            owner: &self.replica,
            seen_epoch: record.lease.epoch,
            now_ms: now,
            expires_at_ms: lease.expires_at_ms.unwrap_or(now),
            only_expired,
            unleased_grace_ms: self.unleased_grace_ms(),
        };
        if !self.deps.store.claim(&record.id, &claim).await? {
            return Ok(None);
        }
        // Read after winning: every write of the previous holder is either in what this reads
        // or was fenced off by the claim.
        self.deps.store.debate(&record.id).await
    }

    /// Whether nobody holds `record` at `now` (as the store's `adoptable` decides).
    fn unheld(&self, record: &DebateRecord, now: i64) -> bool {
        record.status == DebateStatus::Interrupted
            || record
                .lease
                .expires_at_ms
                .unwrap_or(record.updated_at_ms + self.unleased_grace_ms())
                < now
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
        let held_here;
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
            held_here = record.created_by.as_ref().map(|client| {
                local
                    .values()
                    .filter(|d| d.client.as_ref() == Some(client))
                    .count()
            });
            if let (Some(client), Some(held)) = (&record.created_by, held_here) {
                // Over the limit here is over it everywhere: no need to ask Redis.
                if held >= self.per_client {
                    return Err(AdmitError::ClientFull {
                        client: client.clone(),
                        held,
                        scope: crate::client_slots::Scope::ThisReplica,
                    });
                }
            }
            local.insert(
                record.id.clone(),
                Self::new_local(record.created_by.clone()).0,
            );
        }
        // The reservation above counts here meanwhile; the replicas' count decides (the
        // debate's task holds its slot from then on, see `spawn`).
        let _admission = match (&record.created_by, held_here) {
            (Some(client), Some(held)) => {
                let limit = crate::http::limits::ClientLimit::Debates.label();
                match self
                    .client_slots
                    .take(limit, client, Some(&record.id), self.per_client, held)
                    .await
                {
                    Ok(slot) => Some(slot),
                    Err(refused) => {
                        self.lock().remove(&record.id);
                        return Err(AdmitError::ClientFull {
                            client: client.clone(),
                            held: refused.held,
                            scope: refused.scope,
                        });
                    }
                }
            }
            _ => None,
        };
        let mut record = record;
        record.lease = self.lease_from(now_ms(), 1);
        if let Err(err) = self.deps.store.insert_debate(&record).await {
            self.lock().remove(&record.id);
            return Err(err.into());
        }
        self.spawn(record.clone());
        Ok(record)
    }

    fn new_local(client: Option<String>) -> (LocalDebate, watch::Sender<bool>) {
        let (stop, _) = watch::channel(None);
        let (done_tx, done) = watch::channel(false);
        (
            LocalDebate {
                stop,
                done,
                running_since: None,
                leased: false,
                client,
            },
            done_tx,
        )
    }

    /// Starts the task that waits for a slot and runs the debate.
    fn spawn(&self, record: DebateRecord) {
        let (mut entry, done_tx) = Self::new_local(record.created_by.clone());
        let stop_rx = entry.stop.subscribe();
        // Take a free slot now, so debates start in the order they were admitted (a task's
        // first poll is not); with debates already waiting, no slot is free to take.
        let slot = self.slots.clone().try_acquire_owned().ok();
        entry.running_since = slot.is_some().then(Instant::now);
        entry.leased = true;
        // Keep a stop requested between admit and spawn.
        let previous = self.lock().insert(record.id.clone(), entry);
        if let Some(reason) = previous.and_then(|p| *p.stop.borrow()) {
            self.stop_local(&record.id, reason);
        }
        if record.cancel_requested_at_ms.is_some() {
            // Cancelled while its previous holder ran it, which died before acting on it.
            self.stop_local(&record.id, StopReason::Cancelled);
        }
        self.update_gauges();
        // The client's slot across the replicas, for as long as the debate is this replica's
        // (admitted here, resumed or adopted: renewed from here on).
        let client_slot = record.created_by.as_ref().map(|client| {
            let limit = crate::http::limits::ClientLimit::Debates.label();
            self.client_slots.hold_existing(limit, client, &record.id)
        });
        let this = self.clone();
        tokio::spawn(async move {
            let _client_slot = client_slot;
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
            Err(StoreError::Fenced { .. }) => {
                tracing::warn!(debate_id = %id, replica = %self.replica, "lease lost to another replica, which resumes the debate; this replica stops it without recording more");
            }
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
        let fence = record.lease.fence();
        match reason {
            StopReason::Draining => {
                self.deps
                    .store
                    .transition(
                        &record.id,
                        &from,
                        &StatusUpdate::to(DebateStatus::Interrupted),
                        fence.as_ref(),
                    )
                    .await?;
                Ok(())
            }
            // Another replica holds it now; it is that replica's to run.
            StopReason::LeaseLost => Ok(()),
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

    /// Ends a debate that no runner is driving, with a final `debate_end` event, under the
    /// lease `record` was claimed with.
    async fn finish_without_runner(
        &self,
        record: &DebateRecord,
        outcome: Outcome,
        reason: &str,
    ) -> Result<(), StoreError> {
        let fence: Option<Fence> = record.lease.fence();
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
        store
            .append_event(&event, Some(&update), None, fence.as_ref())
            .await?;
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

    /// Cancels a queued or running debate, wherever it runs, and waits (at most
    /// [`CANCEL_WAIT`]) for it to reach its final state. `by` (the caller) is recorded when
    /// the request has to go to another replica.
    pub async fn cancel(&self, id: &str, by: &str) -> Result<CancelResult, StoreError> {
        let store = &self.deps.store;
        let Some(record) = store.debate(id).await? else {
            return Ok(CancelResult::NotFound);
        };
        if record.status.is_final() {
            return Ok(CancelResult::AlreadyFinal(record));
        }
        if let Some(mut done) = self.stop_local(id, StopReason::Cancelled) {
            let _ = tokio::time::timeout(CANCEL_WAIT, done.wait_for(|d| *d)).await;
        } else if let Some(claimed) = self.claim(&record, true).await? {
            // Nobody held it (interrupted, or its replica died): end it here, under the lease
            // just taken, so an adopter racing for it finds it claimed.
            self.finish_without_runner(&claimed, Outcome::Cancelled, "cancelled by request")
                .await?;
        }
        let now = store.debate(id).await?.unwrap_or(record);
        match now.status {
            DebateStatus::Cancelled => Ok(CancelResult::Cancelled(now)),
            status if status.is_final() => Ok(CancelResult::AlreadyFinal(now)),
            // Another replica holds it (or took it from this one's runner meanwhile): leave
            // the request where that replica's renewal finds it.
            _ => {
                if !store.request_cancel(id, by, now_ms()).await? {
                    let ended = store.debate(id).await?.unwrap_or(now);
                    return Ok(CancelResult::AlreadyFinal(ended));
                }
                tracing::info!(debate_id = %id, owner = now.lease.owner.as_deref().unwrap_or("-"), "cancel recorded for the replica that runs the debate");
                self.deps.hub.announce_cancel(id);
                self.wait_cancelled(id, now).await
            }
        }
    }

    /// Stops, from now on, the debates this replica runs whose cancel another replica
    /// announces, once the store confirms the request (a notice is a hint; the store is the
    /// truth). Without fan-out no notice comes and lease renewals find the requests.
    pub fn listen_for_cancels(&self) {
        let mut notices = self.deps.hub.cancel_notices();
        let orchestrator = self.clone();
        tokio::spawn(async move {
            loop {
                let id = match notices.recv().await {
                    Ok(id) => id,
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                if !orchestrator.lock().contains_key(&id) {
                    continue;
                }
                match orchestrator.deps.store.debate(&id).await {
                    Ok(Some(record)) if record.cancel_requested_at_ms.is_some() => {
                        if orchestrator
                            .stop_local(&id, StopReason::Cancelled)
                            .is_some()
                        {
                            tracing::info!(debate_id = %id, "cancelling a debate at another replica's request (notice)");
                        }
                    }
                    Ok(_) => {}
                    Err(err) => {
                        tracing::warn!(debate_id = %id, error = %err, "cannot confirm a cancel notice; the next lease renewal will")
                    }
                }
            }
        });
    }

    /// Polls the store until the debate is final or [`CANCEL_WAIT`] passes.
    async fn wait_cancelled(
        &self,
        id: &str,
        mut record: DebateRecord,
    ) -> Result<CancelResult, StoreError> {
        let deadline = Instant::now() + CANCEL_WAIT;
        let mut pause = Duration::from_millis(50);
        while Instant::now() < deadline {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(250));
            if let Some(now) = self.deps.store.debate(id).await? {
                record = now;
            }
            if record.status == DebateStatus::Cancelled {
                return Ok(CancelResult::Cancelled(record));
            }
            if record.status.is_final() {
                return Ok(CancelResult::AlreadyFinal(record));
            }
        }
        Ok(CancelResult::Requested(record))
    }

    /// One round of lease work: renews the leases of every local debate (one statement),
    /// acts on cancel requests other replicas recorded, stops runners whose lease another
    /// replica took, then adopts debates nobody holds into free slots. Returns how many it
    /// adopted. Run every `ARAGORA_DEBATE_LEASE_RENEW` by the server.
    pub async fn lease_pass(&self) -> Result<usize, StoreError> {
        self.renew_leases().await?;
        self.adopt().await
    }

    async fn renew_leases(&self) -> Result<(), StoreError> {
        let ids: Vec<String> = self
            .lock()
            .iter()
            .filter(|(_, debate)| debate.leased)
            .map(|(id, _)| id.clone())
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        let expires = now_ms() + self.leases.lease.as_millis() as i64;
        let renewed = self
            .deps
            .store
            .renew_leases(&self.replica, &ids, expires)
            .await?;
        for held in &renewed {
            if held.cancel_requested && self.stop_local(&held.id, StopReason::Cancelled).is_some() {
                tracing::info!(debate_id = %held.id, "cancelling a debate at another replica's request");
            }
        }
        for id in ids
            .iter()
            .filter(|id| !renewed.iter().any(|r| &r.id == *id))
        {
            // Ended meanwhile (then this is a no-op), or adopted by another replica.
            if self.stop_local(id, StopReason::LeaseLost).is_some() {
                tracing::debug!(debate_id = %id, "lease not renewed: ended, or taken by another replica");
            }
        }
        Ok(())
    }

    /// Adopts debates nobody holds, as many as there are free slots.
    async fn adopt(&self) -> Result<usize, StoreError> {
        if self.is_draining() {
            return Ok(0);
        }
        let free = {
            let (running, queued) = self.load();
            self.max_running.saturating_sub(running + queued)
        };
        if free == 0 {
            return Ok(0);
        }
        let now = now_ms();
        let timeout_ms = self.deps.debate_timeout.as_millis() as i64;
        // Some may be past their timeout (left to the watchdog) or taken by a faster replica.
        let candidates = self
            .deps
            .store
            .adoptable(now, self.unleased_grace_ms(), (free * 4 + 16) as i64)
            .await?;
        let mut adopted = 0;
        for record in candidates {
            if adopted == free {
                break;
            }
            let since = record.started_at_ms.unwrap_or(record.created_at_ms);
            if now - since >= timeout_ms || self.lock().contains_key(&record.id) {
                continue;
            }
            let Some(claimed) = self.claim(&record, true).await? else {
                continue;
            };
            let expired_ms = record
                .lease
                .expires_at_ms
                .map_or(0, |expired| (now - expired).max(0));
            tracing::info!(
                debate_id = %record.id,
                previous_owner = record.lease.owner.as_deref().unwrap_or("-"),
                new_owner = %self.replica,
                lease_expired_ms = expired_ms,
                was = record.status.as_str(),
                "adopted a debate nobody held; resuming it from its events"
            );
            self.deps.metrics.debates_adopted.inc();
            self.spawn(claimed);
            adopted += 1;
        }
        Ok(adopted)
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
        // With PostgreSQL other replicas run debates: take only those nobody holds.
        let only_expired = store.backend() == DbBackend::Postgres;
        for record in store.debates_in(&statuses).await? {
            // Claim it: another replica starting at the same time may race for it.
            if let Some(claimed) = self.claim(&record, only_expired).await? {
                self.spawn(claimed);
                resumed += 1;
            }
        }
        if resumed > 0 {
            tracing::info!(count = resumed, "resumed unfinished debates");
        }
        Ok(resumed)
    }

    /// Ends debates that are past their timeout by a grace period: local ones are told to
    /// stop; one another replica holds is that replica's watchdog's; one nobody holds (its
    /// replica died and no replica adopted it in time) is claimed and failed here.
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
            } else if !self.unheld(&record, now) {
                continue;
            } else if let Some(claimed) = self.claim(&record, true).await? {
                tracing::warn!(debate_id = %record.id, "watchdog failing a debate that no runner drives");
                self.finish_without_runner(
                    &claimed,
                    Outcome::Failed,
                    "stuck past ARAGORA_DEBATE_TIMEOUT with no replica running it; failed by the watchdog",
                )
                .await?;
            } else {
                continue;
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
