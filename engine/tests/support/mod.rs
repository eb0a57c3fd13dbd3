//! What the in-process engine tests share: a SQLite store in a temporary directory, offline
//! agents behind a gate the test opens, debate records, and waiting with a deadline.
//!
//! No test here starts a process or binds a port: debates run through `run_debate` and the
//! orchestrator directly, and the HTTP handlers through `app(state).oneshot(...)`.

#![allow(dead_code)] // each test crate uses its own part of the support

use aragora_engine::agents::{
    Agent, AgentError, AgentRegistry, AgentReply, AgentRequest, AgentTask, CallObserver,
    OfflineAgent, OFFLINE_AGENTS,
};
use aragora_engine::config::{DbBackend, EngineConfig};
use aragora_engine::debate::DebateDeps;
use aragora_engine::events::EventHub;
use aragora_engine::faults::Faults;
use aragora_engine::http::{AppState, Core, Phase, Shared};
use aragora_engine::metrics::EngineMetrics;
use aragora_engine::model::{now_ms, ConsensusRule, DebateEvent, DebateRecord, EventKind};
use aragora_engine::orchestrator::Orchestrator;
use aragora_engine::receipts::ReceiptKeys;
use aragora_engine::store::{DebateStore, SqlStore};
use async_trait::async_trait;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tokio::sync::watch;

/// How long any wait in these tests may take before it fails; generous for a loaded machine,
/// and only ever reached when something is broken.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The admin credential of every test engine (`ARAGORA_API_TOKEN`; also the key its share
/// links are signed with).
pub const API_TOKEN: &str = "in-process-test-api-token-of-32-chars";
pub const JWT_SECRET: &str = "in-process-test-jwt-secret-of-32-chars";
pub const JWT_SECRET_PREVIOUS: &str = "the-jwt-secret-before-the-rotation!!";
/// The one browser origin test engines allow.
pub const ALLOWED_ORIGIN: &str = "https://app.example.test";

/// The authentication settings of a test engine: every credential kind works.
pub fn auth_config() -> aragora_auth::AuthConfig {
    aragora_auth::AuthConfig {
        jwt_secret: Some(JWT_SECRET.into()),
        jwt_secret_previous: Some(JWT_SECRET_PREVIOUS.into()),
        api_token: Some(API_TOKEN.into()),
        allowed_origins: vec![ALLOWED_ORIGIN.into()],
        ..aragora_auth::AuthConfig::default()
    }
}

/// `Authorization` for the admin token.
pub fn admin_bearer() -> String {
    format!("Bearer {API_TOKEN}")
}

/// The two offline agents every test debate uses.
pub const AGENTS: [&str; 2] = ["offline-pragmatist", "offline-skeptic"];

/// Polls `check` until it returns `Some`, failing the test after [`PATIENCE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for {what} after {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Holds every agent call of one phase until the test opens it, and counts the calls waiting.
#[derive(Clone)]
pub struct Gate {
    phase: &'static str,
    open: watch::Sender<bool>,
    waiting: watch::Sender<usize>,
}

impl Gate {
    /// A closed gate for calls of `phase` ("proposal", "critique", "revision", "vote").
    pub fn closed(phase: &'static str) -> Self {
        Self {
            phase,
            open: watch::channel(false).0,
            waiting: watch::channel(0).0,
        }
    }

    /// A gate that never holds anything.
    pub fn open() -> Self {
        let gate = Self::closed("none");
        gate.release();
        gate
    }

    pub fn release(&self) {
        self.open.send_replace(true);
    }

    /// Returns once `count` calls are held at the gate: the debate is exactly at its phase.
    pub async fn held(&self, count: usize) {
        let mut waiting = self.waiting.subscribe();
        tokio::time::timeout(PATIENCE, waiting.wait_for(|n| *n >= count))
            .await
            .unwrap_or_else(|_| panic!("{count} call(s) never reached the {} gate", self.phase))
            .expect("the gate lives as long as the test");
    }

    async fn pass(&self, task: &AgentTask) {
        if task.phase() != self.phase {
            return;
        }
        let mut open = self.open.subscribe();
        if *open.borrow() {
            return;
        }
        self.waiting.send_modify(|n| *n += 1);
        let _ = open.wait_for(|open| *open).await;
        self.waiting.send_modify(|n| *n -= 1);
    }
}

/// One agent call as the agent saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub debate_id: String,
    pub agent: String,
    pub phase: &'static str,
    pub round: i64,
}

/// An offline agent (same name, same words) whose calls pass the gate first and are logged.
struct GatedAgent {
    inner: OfflineAgent,
    gate: Gate,
    calls: Arc<Mutex<Vec<Call>>>,
}

#[async_trait]
impl Agent for GatedAgent {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn provider(&self) -> &str {
        self.inner.provider()
    }
    fn model(&self) -> &str {
        self.inner.model()
    }
    fn persona(&self) -> &str {
        self.inner.persona()
    }
    fn is_llm(&self) -> bool {
        false
    }

    async fn respond(
        &self,
        request: &AgentRequest,
        observer: &dyn CallObserver,
    ) -> Result<AgentReply, AgentError> {
        self.calls.lock().unwrap().push(Call {
            debate_id: request.debate_id.clone(),
            agent: self.name().to_string(),
            phase: request.task.phase(),
            round: request.round,
        });
        self.gate.pass(&request.task).await;
        self.inner.respond(request, observer).await
    }
}

/// A SQLite store in its own temporary directory, and what a debate needs around it.
pub struct Harness {
    pub deps: DebateDeps,
    pub store: SqlStore,
    /// The faults the agents consult (inject one to make them fail).
    pub faults: Faults,
    pub calls: Arc<Mutex<Vec<Call>>>,
    /// Flipped to close WebSockets; kept here because a dropped sender reads as closing.
    pub closing: watch::Sender<bool>,
    dir: Arc<TempDir>,
}

impl Harness {
    /// A fresh, migrated store; every agent call passes `gate`.
    pub async fn new(gate: &Gate) -> Self {
        let dir = Arc::new(tempfile::tempdir().expect("a temporary directory"));
        Self::on(dir, gate, Duration::from_secs(300)).await
    }

    /// A second engine on the same database file, as after a restart: new hub, new agents.
    pub async fn restart(&self, gate: &Gate) -> Self {
        Self::on(self.dir.clone(), gate, self.deps.debate_timeout).await
    }

    pub fn with_debate_timeout(mut self, timeout: Duration) -> Self {
        self.deps.debate_timeout = timeout;
        self
    }

    async fn on(dir: Arc<TempDir>, gate: &Gate, debate_timeout: Duration) -> Self {
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("engine.db").display()
        );
        let store = SqlStore::connect(DbBackend::Sqlite, &url, 4)
            .await
            .expect("SQLite opens in a temporary directory");
        store.migrate().await.expect("migrations run");
        let faults = Faults::default();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let mut agents = AgentRegistry::offline(Duration::ZERO, &faults);
        for stance in OFFLINE_AGENTS {
            agents.register(Arc::new(GatedAgent {
                inner: OfflineAgent::new(stance, Duration::ZERO, faults.clone()),
                gate: gate.clone(),
                calls: calls.clone(),
            }));
        }
        let deps = DebateDeps {
            store: Arc::new(store.clone()),
            hub: EventHub::default(),
            agents,
            metrics: EngineMetrics::new(),
            agent_timeout: Duration::from_secs(300),
            debate_timeout,
            receipts: ReceiptKeys::new("in-process test key", &[]),
            errors: Default::default(),
        };
        Self {
            deps,
            store,
            faults,
            calls,
            closing: watch::channel(false).0,
            dir,
        }
    }

    /// What the handlers see: this engine's parts, its `core` (empty while starting), `phase`.
    pub fn state(&self, core: OnceLock<Core>, phase: Phase) -> AppState {
        let auth =
            aragora_auth::Authenticator::new(auth_config(), Some(Arc::new(self.store.clone())));
        self.state_with_auth(core, phase, Arc::new(auth))
    }

    /// [`Self::state`] with its own authenticator (other settings, another key store).
    pub fn state_with_auth(
        &self,
        core: OnceLock<Core>,
        phase: Phase,
        auth: Arc<aragora_auth::Authenticator>,
    ) -> AppState {
        let deps = &self.deps;
        let mut config = EngineConfig::default();
        config.auth = auth.config().clone();
        AppState(Arc::new(Shared {
            config,
            maintenance: aragora_engine::maintenance::Switch::new(
                deps.metrics.maintenance_mode.clone(),
            ),
            metrics: deps.metrics.clone(),
            hub: deps.hub.clone(),
            redis: None,
            agents: deps.agents.clone(),
            faults: self.faults.clone(),
            receipts: deps.receipts.clone(),
            errors: deps.errors.clone(),
            auth,
            core,
            phase: Mutex::new(phase),
            closing: self.closing.subscribe(),
            websockets: Default::default(),
            started: Instant::now(),
            openapi: aragora_engine::http::openapi::render(),
            gateway_admin: Default::default(),
        }))
    }

    /// A ready engine's state with `max_running` slots and room for `queue_size` more.
    pub fn ready_state(&self, max_running: usize, queue_size: usize) -> AppState {
        self.state(self.ready_core(max_running, queue_size), Phase::Ready)
    }

    /// The core of a ready engine: the store and an orchestrator.
    pub fn ready_core(&self, max_running: usize, queue_size: usize) -> OnceLock<Core> {
        let core = OnceLock::new();
        let orchestrator = Orchestrator::new(self.deps.clone(), max_running, queue_size);
        let retention = aragora_engine::retention::Retention::new(
            &self.store,
            aragora_engine::retention::Policy::of(&EngineConfig::default()),
            orchestrator.replica_id(),
            self.deps.metrics.clone(),
            self.faults.clone(),
            self.deps.errors.clone(),
        );
        let _ = core.set(Core {
            store: self.deps.store.clone(),
            orchestrator,
            retention,
            webhooks: None,
        });
        core
    }

    /// Inserts a queued debate and returns its record.
    pub async fn insert(&self, id: &str, rounds: i64, seed: i64) -> DebateRecord {
        let record = record(id, rounds, seed);
        self.store.insert_debate(&record).await.unwrap();
        record
    }

    pub async fn events(&self, id: &str) -> Vec<DebateEvent> {
        self.store.events_after(id, 0, i64::MAX).await.unwrap()
    }

    pub async fn debate(&self, id: &str) -> DebateRecord {
        self.store
            .debate(id)
            .await
            .unwrap()
            .expect("the debate exists")
    }

    /// Waits until the debate is in a final state, and returns it.
    pub async fn finished(&self, id: &str) -> DebateRecord {
        eventually(&format!("debate {id} to end"), || async {
            let record = self.debate(id).await;
            record.status.is_final().then_some(record)
        })
        .await
    }

    /// The debates in the order their first agent call came in.
    pub fn start_order(&self) -> Vec<String> {
        let mut order: Vec<String> = Vec::new();
        for call in self.calls.lock().unwrap().iter() {
            if !order.contains(&call.debate_id) {
                order.push(call.debate_id.clone());
            }
        }
        order
    }
}

/// A queued debate among [`AGENTS`].
pub fn record(id: &str, rounds: i64, seed: i64) -> DebateRecord {
    DebateRecord::queued(
        id.to_string(),
        format!("topic of {id}"),
        rounds,
        AGENTS.iter().map(|a| a.to_string()).collect(),
        ConsensusRule::Majority,
        seed,
        now_ms(),
    )
}

/// One recorded event without its times: two runs of one seed must say the same.
#[derive(Debug, PartialEq)]
pub struct Said {
    pub seq: i64,
    pub kind: EventKind,
    pub round: Option<i64>,
    pub agent: Option<String>,
    pub data: String,
}

/// What a debate recorded, without the times.
pub fn transcript(events: &[DebateEvent]) -> Vec<Said> {
    events
        .iter()
        .map(|e| {
            let mut data = e.data.clone();
            if e.kind == EventKind::DebateEnd {
                data["duration_ms"] = serde_json::Value::Null;
            }
            Said {
                seq: e.seq,
                kind: e.kind,
                round: e.round,
                agent: e.agent.clone(),
                data: data.to_string(),
            }
        })
        .collect()
}

/// Seqs are 1, 2, 3, ... with no gap, and no step appears twice.
pub fn assert_whole(events: &[DebateEvent]) {
    let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
    let expected: Vec<i64> = (1..=events.len() as i64).collect();
    assert_eq!(seqs, expected, "seqs run from 1 without a gap");
    let mut steps = std::collections::HashSet::new();
    for event in events {
        let payload = event.payload().expect("every stored payload reads back");
        if let Some(step) = event.step(&payload) {
            assert!(steps.insert(step.clone()), "step {step:?} recorded twice");
        }
    }
}

/// A PostgreSQL database (on `ARAGORA_TEST_POSTGRES_URL`, default the local server) created
/// for one test and dropped after it.
pub struct PostgresDatabase {
    pub name: String,
    pub url: String,
}

fn postgres_admin_url() -> String {
    std::env::var("ARAGORA_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

async fn postgres_admin(sql: String) -> Result<(), sqlx::Error> {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let mut admin = sqlx::AnyConnection::connect(&postgres_admin_url()).await?;
    sqlx::Executor::execute(&mut admin, sql.as_str()).await?;
    admin.close().await
}

impl PostgresDatabase {
    pub async fn create() -> Self {
        let name = format!("aragora_engine_test_{}", uuid::Uuid::new_v4().simple());
        postgres_admin(format!("CREATE DATABASE {name}"))
            .await
            .expect("PostgreSQL reachable at ARAGORA_TEST_POSTGRES_URL (default 127.0.0.1:5432)");
        let base = postgres_admin_url();
        let server = base.rsplit_once('/').map(|(s, _)| s).unwrap_or(&base);
        let url = format!("{server}/{name}");
        Self { name, url }
    }
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // Drop may run inside a runtime; use a thread with its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(postgres_admin(sql)).ok()
        })
        .join();
    }
}
