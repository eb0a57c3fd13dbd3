//! The engine process's life: bind, connect, migrate, resume, serve, drain.
//!
//! Listeners are bound first, so `/healthz` answers and `/readyz` explains what the engine is
//! waiting for while the database comes up. On the shutdown signal readiness goes false at once,
//! new debates get 503, running debates get `ARAGORA_DRAIN_TIMEOUT` to finish and are then saved
//! as interrupted, WebSockets are closed with 1001, and the process exits.

use crate::agents::AgentRegistry;
use crate::config::EngineConfig;
use crate::debate::DebateDeps;
use crate::events::EventHub;
use crate::faults::{Faults, FaultyStore};
use crate::http::{ws_app, AppState, Core, Phase, Shared};
use crate::metrics::EngineMetrics;
use crate::orchestrator::{LeaseTimes, Orchestrator};
use crate::receipts::{KeyError, ReceiptKeys};
use crate::schema::{SchemaError, SchemaProblem};
use crate::store::{DebateStore, SqlStore, StoreError};
use axum::serve::ListenerExt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Bind(#[from] aragora_config::BindError),
    #[error("cannot create the data directory {path}: {source}; create it or point ARAGORA_DATA_DIR elsewhere")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("the database did not answer within {seconds} s ({last_error}); check that it runs and that DATABASE_URL is right, or raise ARAGORA_DB_CONNECT_TIMEOUT")]
    DatabaseUnreachable { seconds: u64, last_error: String },
    #[error(
        "database migration failed: {0}; the schema was left as it was, fix the cause and restart"
    )]
    Migration(SchemaError),
    /// The database's schema is not one this binary may use (newer, changed, or pending with
    /// `ARAGORA_AUTO_MIGRATE=false`); nothing was changed.
    #[error("refusing to start: {0}")]
    Schema(SchemaProblem),
    #[error("could not resume unfinished debates: {0}; check the database, then restart")]
    Resume(StoreError),
    #[error(transparent)]
    ReceiptKey(#[from] KeyError),
    #[error(transparent)]
    Redis(#[from] aragora_config::redis::RedisSetupError),
    #[error(transparent)]
    WebhookKey(#[from] crate::webhooks::secrets::SecretError),
    #[error("cannot build the webhook delivery client: {0}")]
    WebhookClient(reqwest::Error),
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

/// Where a started engine listens.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub api: SocketAddr,
    pub ws: SocketAddr,
}

async fn bind(
    host: &str,
    port: u16,
    what: &'static str,
    setting: &'static str,
) -> Result<TcpListener, ServeError> {
    let addr = format!("{host}:{port}");
    TcpListener::bind(&addr).await.map_err(|source| {
        ServeError::Bind(aragora_config::BindError {
            addr,
            what,
            setting,
            source,
        })
    })
}

/// Opens the store, retrying until `ARAGORA_DB_CONNECT_TIMEOUT`, and reporting each attempt
/// through readiness.
async fn connect_store(config: &EngineConfig, state: &AppState) -> Result<SqlStore, ServeError> {
    let started = Instant::now();
    let limit = Duration::from_secs(config.db_connect_timeout_secs);
    let mut attempt = 1u32;
    // The driver's errors may quote what it was given; the password never reaches the log.
    let secrets: Vec<String> = aragora_config::url_password(&config.database_url())
        .map(str::to_string)
        .into_iter()
        .collect();
    let shown = |err: &StoreError| aragora_config::scrub(&err.to_string(), &secrets);
    loop {
        state.set_phase(Phase::Starting(format!(
            "connecting to the {} database (attempt {attempt})",
            config.db_backend.as_str()
        )));
        match SqlStore::connect(
            config.db_backend,
            &config.database_url(),
            config.db_pool_size,
        )
        .await
        {
            Ok(store) => return Ok(store),
            Err(err) if started.elapsed() >= limit => {
                return Err(ServeError::DatabaseUnreachable {
                    seconds: config.db_connect_timeout_secs,
                    last_error: shown(&err),
                })
            }
            Err(err) => {
                tracing::warn!(attempt, error = %shown(&err), "database not reachable yet; retrying");
                let backoff = Duration::from_millis(250 * u64::from(attempt.min(8)));
                tokio::time::sleep(backoff.min(limit.saturating_sub(started.elapsed()))).await;
                attempt += 1;
            }
        }
    }
}

/// Called with the engine's metric registry before anything listens.
pub type RegistryHook = Box<dyn FnOnce(&prometheus::Registry) + Send>;

/// What a caller adds to the engine it runs: `aragora up` puts its live SLO evaluation on the
/// engine's API (`GET /api/slo`) and its `aragora_slo_*` gauges in the engine's registry.
#[derive(Default)]
pub struct Extras {
    /// Routes merged into the REST API, with what their handlers document: the engine's
    /// `/api/openapi.json` includes them.
    pub routes: Option<utoipa_axum::router::OpenApiRouter>,
    /// Routes merged into the REST API whose handlers take the engine's state (its access
    /// extractors `Reader`, `Admin`, ...); their own state comes as an `Extension` layer.
    pub engine_routes: Option<utoipa_axum::router::OpenApiRouter<AppState>>,
    /// Handed the engine's metric registry once it exists, before anything listens.
    pub on_registry: Option<RegistryHook>,
    /// Where the gateway's admin API is, when the caller learns it after the engine binds
    /// (`aragora up`); `ARAGORA_GATEWAY_ADMIN_URL`, when set, wins.
    pub gateway_admin: Option<crate::http::gateway::GatewayAdmin>,
}

/// Runs the engine until `shutdown` completes, then drains. `on_bound` is told where the
/// listeners are as soon as they are bound (before the database is up).
pub async fn serve(
    config: EngineConfig,
    shutdown: impl Future<Output = ()> + Send,
    on_bound: impl FnOnce(Bound),
) -> Result<(), ServeError> {
    serve_with(config, shutdown, on_bound, Extras::default()).await
}

/// [`serve`] with [`Extras`].
pub async fn serve_with(
    config: EngineConfig,
    shutdown: impl Future<Output = ()> + Send,
    on_bound: impl FnOnce(Bound),
    extras: Extras,
) -> Result<(), ServeError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| ServeError::DataDir {
        path: config.data_dir.display().to_string(),
        source,
    })?;
    let api_listener = bind(
        &config.host,
        config.api_port,
        "REST API",
        "ARAGORA_PORT / --api-port",
    )
    .await?;
    let ws_listener = bind(
        &config.host,
        config.ws_port,
        "WebSocket",
        "ARAGORA_WS_PORT / --ws-port",
    )
    .await?;
    let bound = Bound {
        api: api_listener.local_addr()?,
        ws: ws_listener.local_addr()?,
    };

    let receipts = ReceiptKeys::resolve(
        config.receipt_signing_key.as_deref(),
        &config.receipt_signing_key_previous,
        &config.data_dir,
    )?;
    tracing::info!(
        key_id = %receipts.key_id(),
        verifying_keys = receipts.len(),
        "receipts are signed with this key; every key of the ring verifies"
    );
    let metrics = EngineMetrics::new();
    if let Some(on_registry) = extras.on_registry {
        on_registry(&metrics.registry);
    }
    let faults = Faults::new(metrics.faults_active.clone());
    let agents = AgentRegistry::from_config(&config, &metrics, &faults);
    metrics.precreate(&agents);
    if agents.defaults_are_offline() {
        tracing::info!("no two LLM providers configured: debates use the built-in offline agents (not LLMs) by default");
    }
    let (closing_tx, closing) = watch::channel(false);
    // What the engine does first once it listens; a probe that arrives before the startup
    // task first runs (a busy machine can delay it) already gets the real reason.
    let first_step = format!("connecting to the {} database", config.db_backend.as_str());
    let hub = EventHub::default();
    // Redis connects in the background from the start (retrying while it is down), so events
    // fan out as soon as it answers and readiness can say whether it does.
    let redis = match &config.redis_url {
        Some(url) => {
            let (sender, link) =
                crate::fanout::start(url, config.redis_ca_file.as_deref(), hub.clone())?;
            hub.fan_out(sender);
            Some(link)
        }
        None => None,
    };
    // One id per start for the slots this replica holds in Redis (its debates' leases carry
    // the orchestrator's own).
    let slots = match &redis {
        Some(link) => crate::client_slots::ClientSlots::shared(
            link.client().clone(),
            &config.client_limit_key_prefix,
            Duration::from_secs(config.client_limit_lease_secs),
            &uuid::Uuid::new_v4().to_string(),
            metrics.client_limits_shared.clone(),
        ),
        None => crate::client_slots::ClientSlots::local(metrics.client_limits_shared.clone()),
    };
    let (extra_routes, engine_routes, openapi) = match (extras.routes, extras.engine_routes) {
        (None, None) => (None, None, crate::http::openapi::render()),
        (routes, engine_routes) => {
            let (router, mut documented) = routes.unwrap_or_default().split_for_parts();
            let (engine_router, engine_documented) =
                engine_routes.unwrap_or_default().split_for_parts();
            documented.merge(engine_documented);
            (
                Some(router),
                Some(engine_router),
                crate::http::openapi::render_document(&crate::http::openapi::document_with(
                    documented,
                )),
            )
        }
    };
    let gateway_admin = extras.gateway_admin.unwrap_or_default();
    if let Some(url) = &config.gateway_admin_url {
        gateway_admin.set(url, None);
    }
    let state = AppState(Arc::new(Shared {
        config: config.clone(),
        maintenance: crate::maintenance::Switch::new(metrics.maintenance_mode.clone()),
        metrics,
        hub,
        redis,
        agents,
        faults,
        receipts,
        // Provider errors may quote a key: every secret of the configuration is masked.
        errors: crate::error_log::ErrorLog::new(aragora_config::redact::secret_values(&config)),
        auth: Arc::new(aragora_auth::Authenticator::new(config.auth.clone(), None)),
        core: OnceLock::new(),
        phase: Mutex::new(Phase::Starting(first_step.clone())),
        closing,
        websockets: Default::default(),
        slots,
        started: Instant::now(),
        openapi,
        gateway_admin,
    }));
    state.set_phase(Phase::Starting(first_step));

    let (stop_tx, stop_rx) = watch::channel(false);
    let serve_listener = |listener: TcpListener, router: axum::Router| {
        let mut stop = stop_rx.clone();
        // Without TCP_NODELAY, a second event written to a watcher before the first is
        // acknowledged waits for the peer's delayed ACK (up to 40 ms on Linux).
        let listener = listener.tap_io(|tcp| {
            if let Err(err) = tcp.set_nodelay(true) {
                tracing::debug!(error = %err, "cannot set TCP_NODELAY on an accepted connection");
            }
        });
        tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
        })
    };
    // The binary's routes go through the engine's layers too (metrics, CORS, fallbacks).
    let extra = match (extra_routes, engine_routes) {
        (None, None) => None,
        (routes, engine_routes) => Some(
            routes
                .unwrap_or_default()
                .merge(engine_routes.unwrap_or_default().with_state(state.clone())),
        ),
    };
    let api = crate::http::app_with(state.clone(), extra);
    let api_server = serve_listener(api_listener, api);
    let ws_server = serve_listener(ws_listener, ws_app(state.clone()));
    tracing::info!(api = %bound.api, ws = %bound.ws, backend = config.db_backend.as_str(), "listening");
    on_bound(bound);

    tokio::pin!(shutdown);
    let startup = start_core(&config, &state);
    let started = tokio::select! {
        result = startup => Some(result),
        _ = &mut shutdown => None,
    };
    let mut startup_error = None;
    match started {
        Some(Ok(())) => {
            state.set_phase(Phase::Ready);
            tracing::info!("ready");
            shutdown.await;
        }
        Some(Err(err)) => startup_error = Some(err),
        None => {}
    }

    tracing::info!("shutting down: readiness off, draining debates");
    state.set_phase(Phase::Draining);
    if let Some(core) = state.core.get() {
        let interrupted = core
            .orchestrator
            .drain(Duration::from_secs(config.drain_timeout_secs))
            .await;
        if interrupted > 0 {
            tracing::info!(
                count = interrupted,
                "debates saved as interrupted; the next start resumes them"
            );
        }
    }
    let _ = closing_tx.send(true);
    let _ = stop_tx.send(true);
    let _ = api_server.await;
    let _ = ws_server.await;
    if let Some(core) = state.core.get() {
        core.store.close().await;
    }
    tracing::info!("stopped");
    match startup_error {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

/// Connects, migrates, resumes unfinished debates and starts the watchdog.
async fn start_core(config: &EngineConfig, state: &AppState) -> Result<(), ServeError> {
    let store = connect_store(config, state).await?;
    state.set_phase(Phase::Starting("running database migrations".into()));
    // The same path as `aragora migrate up`; readiness says whose migration lock it waits for.
    let mut on_wait = |waiting: &crate::schema::Waiting| {
        tracing::warn!("{waiting}");
        state.set_phase(Phase::Starting(waiting.to_string()));
    };
    crate::schema::prepare(&store, config, &mut on_wait)
        .await
        .map_err(|err| match err {
            SchemaError::Refused(problem) => ServeError::Schema(problem),
            other => ServeError::Migration(other),
        })?;
    state.auth.attach_keys(Arc::new(store.clone()));
    let sql_store = store.clone();
    let store: Arc<dyn DebateStore> =
        Arc::new(FaultyStore::new(Arc::new(store), state.faults.clone()));
    let deps = DebateDeps {
        store: store.clone(),
        hub: state.hub.clone(),
        agents: state.agents.clone(),
        metrics: state.metrics.clone(),
        agent_timeout: Duration::from_secs(config.agent_timeout_secs),
        debate_timeout: Duration::from_secs(config.debate_timeout_secs),
        receipts: state.receipts.clone(),
        errors: state.errors.clone(),
    };
    let leases = LeaseTimes {
        lease: Duration::from_secs(config.lease_secs),
        renew: Duration::from_secs(config.lease_renew_secs),
    };
    let orchestrator = Orchestrator::new(
        deps,
        config.max_concurrent_debates,
        config.debate_queue_size,
    )
    .with_leases(leases)
    .with_client_limit(config.debate_queue_per_client)
    .with_client_slots(state.slots.clone());
    tracing::info!(
        replica = orchestrator.replica_id(),
        lease_secs = config.lease_secs,
        renew_secs = config.lease_renew_secs,
        "this replica holds its debates under leases with this id"
    );
    // From here on every replica's errors are listed by every replica.
    state
        .errors
        .attach(sql_store.pool().clone(), orchestrator.replica_id());
    let retention = crate::retention::Retention::new(
        &sql_store,
        crate::retention::Policy::of(config),
        orchestrator.replica_id(),
        state.metrics.clone(),
        state.faults.clone(),
        state.errors.clone(),
    );
    let webhooks = start_webhooks(config, state, sql_store, orchestrator.replica_id())?;
    let _ = state.core.set(Core {
        store,
        orchestrator: orchestrator.clone(),
        retention: retention.clone(),
        webhooks: Some(webhooks),
    });
    if let Some(redis) = &state.redis {
        state.set_phase(Phase::Starting(
            "connecting to Redis for event fan-out".into(),
        ));
        redis.settled().await;
    }
    state.set_phase(Phase::Starting("resuming unfinished debates".into()));
    orchestrator
        .resume_unfinished()
        .await
        .map_err(ServeError::Resume)?;
    orchestrator.listen_for_cancels();
    let leasing = orchestrator.clone();
    tokio::spawn(async move {
        // Renewals go on through a drain (its debates still run); adoption stops by itself.
        let mut ticker = tokio::time::interval(leases.renew);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if let Err(err) = leasing.lease_pass().await {
                tracing::warn!(error = %err, "lease renewal or adoption failed; retrying next interval");
            }
        }
    });
    retention.start();
    let interval = Duration::from_secs(config.watchdog_interval_secs);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        loop {
            ticker.tick().await;
            if orchestrator.is_draining() {
                return;
            }
            if let Err(err) = orchestrator.watchdog_pass(interval).await {
                tracing::warn!(error = %err, "watchdog pass failed; retrying next interval");
            }
        }
    });
    Ok(())
}

/// The webhook service of this replica, its delivery worker started. Deliveries go straight
/// to the SQL store: injected database faults are for debates, and a delivery written while
/// one is active is written with its event anyway.
fn start_webhooks(
    config: &EngineConfig,
    state: &AppState,
    store: SqlStore,
    replica: &str,
) -> Result<Arc<crate::webhooks::Webhooks>, ServeError> {
    let secrets = crate::webhooks::secrets::SecretBox::resolve(
        config.webhook_encryption_key.as_deref(),
        &config.data_dir,
    )?;
    let webhooks = crate::webhooks::Webhooks::new(
        store,
        crate::webhooks::DeliverySettings::from_config(config),
        secrets,
        state.metrics.webhooks.clone(),
        state.errors.clone(),
        replica,
    )
    .map_err(ServeError::WebhookClient)?;
    let webhooks = Arc::new(webhooks);
    webhooks.start();
    Ok(webhooks)
}
