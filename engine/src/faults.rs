//! Faults injected on purpose, for chaos experiments: an agent made slow or failing, or the
//! database held unavailable, each for a set time.
//!
//! [`Faults`] is the registry of active faults. `POST /api/system/faults` (admin) adds to it;
//! a fault removes itself once its duration has passed, or is cleared early. The paths a fault
//! affects ask the registry on every call, so asking costs one lock-free load while no fault is
//! active, and an expired fault never applies even if its removal is late.
//!
//! A fault meets the engine where the real failure would, so that everything downstream reacts
//! as it does in a real outage:
//!
//! - agent faults in front of the provider call (see `agents::injected_faults`): inside the
//!   agent timeout and the circuit breaker's permit, before the OpenRouter fallback. A slow agent
//!   can therefore time out, and a failing one opens its breaker and falls back;
//! - `database_unavailable` in front of every store operation ([`FaultyStore`]): each fails as
//!   a refused connection does, before any statement is sent, so nothing is half-written.
//!
//! Faults live in this process only: behind the gateway each replica has its own, and a
//! restart clears them.

use crate::config::DbBackend;
use crate::dr_log::{BackupRecord, DrStatus, DrillRecord};
use crate::maintenance::{self, MaintenanceState};
use crate::model::{
    format_ms, now_ms, DebateEvent, DebateRecord, DebateStatus, Fence, StatusUpdate,
};
use crate::store::{Claim, DebatePage, DebateStore, Renewed, StoreError, StoredReceipt};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use prometheus::IntGaugeVec;
use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// An agent's answers are delayed.
    AgentSlow,
    /// An agent's calls fail as a provider's 503 would.
    AgentFailing,
    /// Every store operation fails as if the database refused connections.
    DatabaseUnavailable,
}

impl FaultKind {
    pub const ALL: [FaultKind; 3] = [
        Self::AgentSlow,
        Self::AgentFailing,
        Self::DatabaseUnavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AgentSlow => "agent_slow",
            Self::AgentFailing => "agent_failing",
            Self::DatabaseUnavailable => "database_unavailable",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }

    /// Whether the fault acts on agents (and may name one).
    pub fn is_agent_fault(self) -> bool {
        matches!(self, Self::AgentSlow | Self::AgentFailing)
    }
}

/// A fault to inject, already validated.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultSpec {
    pub kind: FaultKind,
    /// The agent an agent fault applies to; `None`: every agent.
    pub agent: Option<String>,
    /// How long each call of a slow agent is held (`agent_slow` only).
    pub delay: Duration,
    pub duration: Duration,
}

/// An active fault, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Fault {
    pub id: String,
    pub kind: FaultKind,
    pub agent: Option<String>,
    pub delay_ms: Option<u64>,
    pub duration_seconds: u64,
    pub created_at: String,
    pub expires_at: String,
    /// Seconds left when this view was taken.
    pub remaining_seconds: f64,
}

struct Active {
    fault: Fault,
    spec: FaultSpec,
    deadline: Instant,
    /// The task that removes the fault at its deadline; aborted when it is cleared early.
    reaper: Option<tokio::task::AbortHandle>,
}

impl Active {
    fn live_at(&self, now: Instant) -> bool {
        now < self.deadline
    }

    fn applies_to(&self, agent: &str) -> bool {
        self.spec.agent.as_deref().is_none_or(|name| name == agent)
    }

    fn view(&self, now: Instant) -> Fault {
        Fault {
            remaining_seconds: self.deadline.saturating_duration_since(now).as_secs_f64(),
            ..self.fault.clone()
        }
    }

    fn describe(&self) -> String {
        format!(
            "injected fault {} ({}, until {})",
            self.fault.id,
            self.fault.kind.as_str(),
            self.fault.expires_at
        )
    }
}

/// What the active faults do to one agent call: wait `delay`, then fail with `failure` if set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentEffect {
    pub delay: Duration,
    pub failure: Option<String>,
}

/// Why a fault left the registry (for the log).
#[derive(Debug, Clone, Copy)]
enum Removal {
    Expired,
    Cleared,
}

struct Registry {
    /// Read on every agent call and store operation; replaced whole by writers.
    active: ArcSwap<Vec<Arc<Active>>>,
    /// Writers read-modify-write `active`; one at a time so none loses another's change.
    writer: Mutex<()>,
    /// `aragora_faults_active{kind}`.
    gauge: IntGaugeVec,
}

/// The active faults of this engine. Cheap to clone; clones share the registry.
#[derive(Clone)]
pub struct Faults {
    registry: Arc<Registry>,
}

impl Default for Faults {
    /// A registry whose gauge is registered nowhere (for agents and tests outside a server).
    fn default() -> Self {
        let unregistered = prometheus::Registry::new();
        Self::new(aragora_telemetry::catalogue::FAULTS_ACTIVE.gauge_vec(&unregistered))
    }
}

impl Faults {
    pub fn new(gauge: IntGaugeVec) -> Self {
        for kind in FaultKind::ALL {
            gauge.with_label_values(&[kind.as_str()]).set(0);
        }
        Self {
            registry: Arc::new(Registry {
                active: ArcSwap::from_pointee(Vec::new()),
                writer: Mutex::new(()),
                gauge,
            }),
        }
    }

    /// Activates `spec` now; it removes itself after its duration.
    pub fn inject(&self, spec: FaultSpec) -> Fault {
        let now = Instant::now();
        let deadline = now + spec.duration;
        let reaper = {
            let faults = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep_until(deadline.into()).await;
                faults.purge_expired(Instant::now());
            })
        };
        let fault = self.add(spec, now, now_ms(), Some(reaper.abort_handle()));
        tracing::warn!(
            fault_id = %fault.id,
            kind = fault.kind.as_str(),
            agent = fault.agent.as_deref().unwrap_or("(every agent)"),
            delay_ms = fault.delay_ms,
            duration_seconds = fault.duration_seconds,
            expires_at = %fault.expires_at,
            "fault injected"
        );
        fault
    }

    fn add(
        &self,
        spec: FaultSpec,
        now: Instant,
        now_ms: i64,
        reaper: Option<tokio::task::AbortHandle>,
    ) -> Fault {
        let duration_ms = i64::try_from(spec.duration.as_millis()).unwrap_or(i64::MAX);
        let fault = Fault {
            id: uuid::Uuid::new_v4().to_string(),
            kind: spec.kind,
            agent: spec.agent.clone().filter(|_| spec.kind.is_agent_fault()),
            delay_ms: (spec.kind == FaultKind::AgentSlow)
                .then(|| u64::try_from(spec.delay.as_millis()).unwrap_or(u64::MAX)),
            duration_seconds: spec.duration.as_secs(),
            created_at: format_ms(now_ms),
            expires_at: format_ms(now_ms.saturating_add(duration_ms)),
            remaining_seconds: spec.duration.as_secs_f64(),
        };
        let active = Arc::new(Active {
            fault: fault.clone(),
            deadline: now + spec.duration,
            spec,
            reaper,
        });
        self.update(|faults| faults.push(active));
        fault
    }

    /// Applies `change` to the list of active faults and refreshes the gauge.
    fn update<R>(&self, change: impl FnOnce(&mut Vec<Arc<Active>>) -> R) -> R {
        let registry = &self.registry;
        let _writer = registry.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut faults = Vec::clone(&registry.active.load());
        let result = change(&mut faults);
        for kind in FaultKind::ALL {
            let count = faults.iter().filter(|a| a.fault.kind == kind).count();
            registry
                .gauge
                .with_label_values(&[kind.as_str()])
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        registry.active.store(Arc::new(faults));
        result
    }

    /// Removes the faults `remove` selects, logs why, and returns them as they were.
    fn remove(&self, why: Removal, remove: impl Fn(&Active) -> bool) -> Vec<Fault> {
        let now = Instant::now();
        // Reads (every GET purges) must not rewrite the list when nothing is due.
        if !self.registry.active.load().iter().any(|a| remove(a)) {
            return Vec::new();
        }
        let removed: Vec<Arc<Active>> = self.update(|faults| {
            let (gone, kept) = faults.drain(..).partition(|a| remove(a));
            *faults = kept;
            gone
        });
        removed
            .iter()
            .map(|active| {
                let fault = active.view(now);
                match why {
                    Removal::Expired => tracing::info!(
                        fault_id = %fault.id,
                        kind = fault.kind.as_str(),
                        duration_seconds = fault.duration_seconds,
                        "fault expired"
                    ),
                    Removal::Cleared => {
                        if let Some(reaper) = &active.reaper {
                            reaper.abort();
                        }
                        tracing::warn!(
                            fault_id = %fault.id,
                            kind = fault.kind.as_str(),
                            duration_seconds = fault.duration_seconds,
                            remaining_seconds = fault.remaining_seconds,
                            "fault cleared by an operator"
                        );
                    }
                }
                fault
            })
            .collect()
    }

    /// Removes the faults whose time is up at `now`.
    fn purge_expired(&self, now: Instant) -> Vec<Fault> {
        self.remove(Removal::Expired, |active| !active.live_at(now))
    }

    /// The active faults, oldest first.
    pub fn list(&self) -> Vec<Fault> {
        let now = Instant::now();
        self.purge_expired(now);
        self.registry
            .active
            .load()
            .iter()
            .map(|active| active.view(now))
            .collect()
    }

    /// Ends one fault early; `None` if no active fault has this id.
    pub fn clear(&self, id: &str) -> Option<Fault> {
        self.purge_expired(Instant::now());
        self.remove(Removal::Cleared, |active| active.fault.id == id)
            .pop()
    }

    /// Ends every fault; returns those that were active.
    pub fn clear_all(&self) -> Vec<Fault> {
        self.purge_expired(Instant::now());
        self.remove(Removal::Cleared, |_| true)
    }

    /// What the active faults do to a call of `agent` starting now. Every matching slow fault
    /// adds its delay; any matching failing fault makes the call fail.
    pub fn agent_effect(&self, agent: &str) -> AgentEffect {
        let active = self.registry.active.load();
        if active.is_empty() {
            return AgentEffect::default();
        }
        effect_on(&active, agent, Instant::now())
    }

    /// The active `database_unavailable` fault, described for an error message.
    pub fn database_unavailable(&self) -> Option<String> {
        let active = self.registry.active.load();
        if active.is_empty() {
            return None;
        }
        database_fault(&active, Instant::now())
    }
}

fn effect_on(active: &[Arc<Active>], agent: &str, now: Instant) -> AgentEffect {
    let mut effect = AgentEffect::default();
    for fault in active
        .iter()
        .filter(|a| a.live_at(now) && a.applies_to(agent))
    {
        match fault.spec.kind {
            FaultKind::AgentSlow => effect.delay += fault.spec.delay,
            FaultKind::AgentFailing => {
                effect.failure.get_or_insert_with(|| fault.describe());
            }
            FaultKind::DatabaseUnavailable => {}
        }
    }
    effect
}

fn database_fault(active: &[Arc<Active>], now: Instant) -> Option<String> {
    active
        .iter()
        .find(|a| a.spec.kind == FaultKind::DatabaseUnavailable && a.live_at(now))
        .map(|a| a.describe())
}

/// A [`DebateStore`] that refuses every operation while a `database_unavailable` fault is
/// active. The refusal comes before the inner store is touched, so an operation either runs
/// whole or not at all, and callers see the error a refused connection gives.
pub struct FaultyStore {
    inner: Arc<dyn DebateStore>,
    faults: Faults,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn DebateStore>, faults: Faults) -> Self {
        Self { inner, faults }
    }

    fn gate(&self) -> Result<&dyn DebateStore, StoreError> {
        match self.faults.database_unavailable() {
            None => Ok(self.inner.as_ref()),
            Some(fault) => Err(StoreError::Database(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                format!("database unavailable: {fault}"),
            )))),
        }
    }
}

#[async_trait]
impl DebateStore for FaultyStore {
    async fn ping(&self) -> Result<Duration, StoreError> {
        self.gate()?.ping().await
    }

    async fn schema_version(&self) -> Result<Option<i64>, StoreError> {
        self.gate()?.schema_version().await
    }

    fn backend(&self) -> DbBackend {
        self.inner.backend()
    }

    async fn close(&self) {
        self.inner.close().await
    }

    async fn insert_debate(&self, debate: &DebateRecord) -> Result<(), StoreError> {
        self.gate()?.insert_debate(debate).await
    }

    async fn debate(&self, id: &str) -> Result<Option<DebateRecord>, StoreError> {
        self.gate()?.debate(id).await
    }

    async fn list_debates(
        &self,
        statuses: &[DebateStatus],
        limit: i64,
        offset: i64,
    ) -> Result<DebatePage, StoreError> {
        self.gate()?.list_debates(statuses, limit, offset).await
    }

    async fn append_event(
        &self,
        event: &DebateEvent,
        update: Option<&StatusUpdate>,
        receipt: Option<&StoredReceipt>,
        fence: Option<&Fence>,
    ) -> Result<(), StoreError> {
        self.gate()?
            .append_event(event, update, receipt, fence)
            .await
    }

    async fn receipt(&self, debate_id: &str) -> Result<Option<String>, StoreError> {
        self.gate()?.receipt(debate_id).await
    }

    async fn transition(
        &self,
        id: &str,
        from: &[DebateStatus],
        update: &StatusUpdate,
        fence: Option<&Fence>,
    ) -> Result<bool, StoreError> {
        self.gate()?.transition(id, from, update, fence).await
    }

    async fn claim(&self, id: &str, claim: &Claim<'_>) -> Result<bool, StoreError> {
        self.gate()?.claim(id, claim).await
    }

    async fn adoptable(
        &self,
        now_ms: i64,
        unleased_grace_ms: i64,
        limit: i64,
    ) -> Result<Vec<DebateRecord>, StoreError> {
        self.gate()?
            .adoptable(now_ms, unleased_grace_ms, limit)
            .await
    }

    async fn renew_leases(
        &self,
        owner: &str,
        ids: &[String],
        expires_at_ms: i64,
    ) -> Result<Vec<Renewed>, StoreError> {
        self.gate()?.renew_leases(owner, ids, expires_at_ms).await
    }

    async fn request_cancel(&self, id: &str, by: &str, at_ms: i64) -> Result<bool, StoreError> {
        self.gate()?.request_cancel(id, by, at_ms).await
    }

    async fn add_usage(
        &self,
        debate_id: &str,
        provider: &str,
        input_tokens: u64,
        output_tokens: u64,
    ) -> Result<(), StoreError> {
        self.gate()?
            .add_usage(debate_id, provider, input_tokens, output_tokens)
            .await
    }

    async fn usage_of_creator(
        &self,
        created_by: &str,
        limit: i64,
    ) -> Result<
        (
            Vec<crate::usage::DebateUsage>,
            Vec<crate::usage::ProviderUsage>,
        ),
        StoreError,
    > {
        self.gate()?.usage_of_creator(created_by, limit).await
    }

    async fn events_after(
        &self,
        id: &str,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<DebateEvent>, StoreError> {
        self.gate()?.events_after(id, after_seq, limit).await
    }

    async fn debates_in(&self, statuses: &[DebateStatus]) -> Result<Vec<DebateRecord>, StoreError> {
        self.gate()?.debates_in(statuses).await
    }

    async fn record_backup(&self, backup: &BackupRecord) -> Result<(), StoreError> {
        self.gate()?.record_backup(backup).await
    }

    async fn record_drill(&self, drill: &DrillRecord) -> Result<(), StoreError> {
        self.gate()?.record_drill(drill).await
    }

    async fn drills(&self, limit: i64) -> Result<Vec<DrillRecord>, StoreError> {
        self.gate()?.drills(limit).await
    }

    async fn dr_status(&self) -> Result<DrStatus, StoreError> {
        self.gate()?.dr_status().await
    }

    async fn maintenance(&self) -> Result<MaintenanceState, StoreError> {
        self.gate()?.maintenance().await
    }

    async fn set_maintenance(
        &self,
        change: &maintenance::Change,
    ) -> Result<(MaintenanceState, bool), StoreError> {
        self.gate()?.set_maintenance(change).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: FaultKind, agent: Option<&str>, delay_ms: u64, seconds: u64) -> FaultSpec {
        FaultSpec {
            kind,
            agent: agent.map(str::to_string),
            delay: Duration::from_millis(delay_ms),
            duration: Duration::from_secs(seconds),
        }
    }

    fn gauge(faults: &Faults, kind: FaultKind) -> i64 {
        faults
            .registry
            .gauge
            .with_label_values(&[kind.as_str()])
            .get()
    }

    fn active(faults: &Faults) -> Arc<Vec<Arc<Active>>> {
        faults.registry.active.load_full()
    }

    #[test]
    fn a_fault_applies_until_its_deadline_and_not_after() {
        let faults = Faults::default();
        let start = Instant::now();
        faults.add(
            spec(FaultKind::AgentSlow, Some("a"), 250, 2),
            start,
            0,
            None,
        );
        let during = start + Duration::from_millis(1999);
        let after = start + Duration::from_secs(2);
        assert_eq!(
            effect_on(&active(&faults), "a", during).delay,
            Duration::from_millis(250)
        );
        assert_eq!(
            effect_on(&active(&faults), "a", after),
            AgentEffect::default(),
            "an expired fault never applies, even before it is purged"
        );
        assert_eq!(gauge(&faults, FaultKind::AgentSlow), 1);

        assert!(faults.purge_expired(during).is_empty());
        let expired = faults.purge_expired(after);
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].expires_at, "1970-01-01T00:00:02.000Z");
        assert!(active(&faults).is_empty());
        assert_eq!(gauge(&faults, FaultKind::AgentSlow), 0);
    }

    #[test]
    fn purging_removes_only_the_faults_whose_time_is_up() {
        let faults = Faults::default();
        let start = Instant::now();
        let short = faults.add(spec(FaultKind::AgentFailing, None, 0, 1), start, 0, None);
        let long = faults.add(
            spec(FaultKind::DatabaseUnavailable, None, 0, 60),
            start,
            0,
            None,
        );
        let expired = faults.purge_expired(start + Duration::from_secs(5));
        assert_eq!(
            expired.iter().map(|f| &f.id).collect::<Vec<_>>(),
            [&short.id]
        );
        let left: Vec<String> = active(&faults).iter().map(|a| a.fault.id.clone()).collect();
        assert_eq!(left, [long.id]);
        assert_eq!(gauge(&faults, FaultKind::AgentFailing), 0);
        assert_eq!(gauge(&faults, FaultKind::DatabaseUnavailable), 1);
        assert!(database_fault(&active(&faults), start + Duration::from_secs(59)).is_some());
        assert!(database_fault(&active(&faults), start + Duration::from_secs(60)).is_none());
    }

    #[test]
    fn agent_faults_target_one_agent_or_all_and_add_up() {
        let faults = Faults::default();
        let now = Instant::now();
        faults.add(spec(FaultKind::AgentSlow, None, 100, 30), now, 0, None);
        faults.add(spec(FaultKind::AgentSlow, Some("b"), 50, 30), now, 0, None);
        let failing = faults.add(
            spec(FaultKind::AgentFailing, Some("b"), 0, 30),
            now,
            0,
            None,
        );
        faults.add(
            spec(FaultKind::DatabaseUnavailable, None, 0, 30),
            now,
            0,
            None,
        );
        let on_a = effect_on(&active(&faults), "a", now);
        assert_eq!(on_a.delay, Duration::from_millis(100));
        assert_eq!(on_a.failure, None);
        let on_b = effect_on(&active(&faults), "b", now);
        assert_eq!(on_b.delay, Duration::from_millis(150));
        assert!(on_b.failure.unwrap().contains(&failing.id));
    }

    #[test]
    fn the_view_shows_the_parameters_that_matter_for_its_kind() {
        let faults = Faults::default();
        let now = Instant::now();
        let slow = faults.add(
            spec(FaultKind::AgentSlow, Some("a"), 2000, 30),
            now,
            0,
            None,
        );
        assert_eq!(
            (slow.delay_ms, slow.agent.as_deref()),
            (Some(2000), Some("a"))
        );
        let db = faults.add(
            spec(FaultKind::DatabaseUnavailable, Some("a"), 2000, 30),
            now,
            0,
            None,
        );
        assert_eq!((db.delay_ms, db.agent.as_deref()), (None, None));
        assert_eq!(db.created_at, "1970-01-01T00:00:00.000Z");
        assert_eq!(db.expires_at, "1970-01-01T00:00:30.000Z");
        let json = serde_json::to_value(&db).unwrap();
        assert_eq!(json["kind"], "database_unavailable");
    }

    #[tokio::test]
    async fn clearing_ends_faults_early_and_unknown_ids_are_none() {
        let faults = Faults::default();
        let one = faults.inject(spec(FaultKind::AgentFailing, None, 0, 60));
        faults.inject(spec(FaultKind::DatabaseUnavailable, None, 0, 60));
        assert_eq!(faults.list().len(), 2);
        assert!(faults.clear("no-such-fault").is_none());
        assert_eq!(faults.clear(&one.id).map(|f| f.id), Some(one.id));
        assert_eq!(faults.agent_effect("x"), AgentEffect::default());
        assert!(faults.database_unavailable().is_some());
        assert_eq!(faults.clear_all().len(), 1);
        assert!(faults.list().is_empty());
        assert!(faults.database_unavailable().is_none());
        assert_eq!(gauge(&faults, FaultKind::DatabaseUnavailable), 0);
    }

    #[tokio::test]
    async fn an_injected_fault_removes_itself_when_its_time_is_up() {
        let faults = Faults::default();
        faults.inject(FaultSpec {
            duration: Duration::from_millis(50),
            ..spec(FaultKind::AgentSlow, None, 10, 0)
        });
        assert_eq!(gauge(&faults, FaultKind::AgentSlow), 1);
        let deadline = Instant::now() + Duration::from_secs(10);
        // The reaper, not a read, must remove it: nothing here calls list() or purge.
        while !active(&faults).is_empty() {
            assert!(Instant::now() < deadline, "the fault was never removed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(gauge(&faults, FaultKind::AgentSlow), 0);
    }
}
