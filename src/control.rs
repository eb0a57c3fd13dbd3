//! `aragora control`: the control plane beside engines and gateways that run as their own
//! processes (several replicas, Kubernetes). It runs the backup and drill schedules, the chaos
//! experiments on their schedule, and, with `ARAGORA_PROMETHEUS_URL`, the live SLO evaluation
//! (sent to Alertmanager); and it serves `/healthz`, `/metrics`, `/api/slo` and Alertmanager's
//! webhook sink (`POST /api/alerts/webhook`, [`aragora_slo::sink`]) on a loopback port.
//!
//! Several replicas may run (a Deployment of two): they elect one scheduler leader
//! ([`aragora_chaos::leader`], a PostgreSQL advisory lock, or a file lock on SQLite), and only
//! the leader runs the schedules. Every replica serves the rest; `/healthz` answers 200 on
//! followers too and says which role this replica has (`scheduler.role`), as does
//! `aragora_control_leader` in `/metrics`.

use crate::run::shutdown_signal;
use crate::settings::{self, Parts, Sources};
use crate::{ConfigArgs, EngineArgs};
use aragora_chaos::experiment::scheduled;
use axum::routing::get;
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// Where control listens unless told (`--listen`, `ARAGORA_CONTROL_LISTEN`); `aragora probe`
/// looks there too.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9095";

#[derive(Args)]
pub struct ControlArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Data directory: the SQLite database to back up and the default report directories
    /// (overrides ARAGORA_DATA_DIR).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Address of the control plane's HTTP listener (health, metrics, SLO status).
    #[arg(long, env = "ARAGORA_CONTROL_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
}

pub async fn control(args: &ControlArgs) -> ExitCode {
    let engine_args = EngineArgs {
        config: args.config.clone(),
        data_dir: args.data_dir.clone(),
        ..EngineArgs::default()
    };
    let loaded = match settings::load(Parts::CONTROL, &Sources::engine(&engine_args)) {
        Ok(loaded) => loaded,
        Err(problems) => return crate::run::refuse(&problems),
    };
    let live = crate::slo::Live::new(&loaded.slo, &loaded.live, false);
    let token = match loaded.receivers.webhook_token() {
        Ok(token) => token,
        Err(err) => {
            return crate::run::refuse(&[aragora_config::ConfigProblem::new(
                "ARAGORA_ALERT_WEBHOOK_TOKEN_FILE",
                err.to_string(),
            )])
        }
    };
    let (engine, dr, chaos) = (loaded.engine, loaded.dr, loaded.chaos);
    settings::init_logging(engine.log_level, engine.log_format);

    let registry = prometheus::Registry::new();
    let (stop_live, live_stopped) = tokio::sync::watch::channel(false);
    let extras = crate::slo::engine_extras(live.as_ref(), Default::default());
    let mut router = axum::Router::new();
    if let Some(routes) = extras.routes {
        router = router.merge(axum::Router::from(routes));
    }
    if let Some(hook) = extras.on_registry {
        hook(&registry);
    }
    let evaluation = live.as_ref().map(|live| live.spawn(live_stopped));
    let report_dir = chaos
        .chaos_report_dir
        .clone()
        .unwrap_or_else(|| engine.data_dir.join("chaos"));
    let mut jobs = aragora_chaos::schedule::dr_jobs(engine.clone(), dr.clone());
    jobs.extend(scheduled::job(&chaos, report_dir, &registry));
    let scheduler = match aragora_chaos::schedule::scaled_clock(&dr) {
        Ok(clock) => {
            aragora_chaos::schedule::start_jobs(jobs, clock, &engine, Some(&registry)).await
        }
        Err(err) => Err(err),
    };
    let scheduler = match scheduler {
        Ok(scheduler) => scheduler,
        Err(err) => {
            eprintln!("aragora: cannot start the schedules: {err}");
            return ExitCode::FAILURE;
        }
    };
    // Followers are healthy: 200 either way, with the role for people and probes to read.
    let leadership = scheduler.as_ref().map(|s| s.leadership().clone());
    let mut router = router.route(
        "/healthz",
        get(move || {
            let scheduler = match &leadership {
                Some(leadership) => {
                    serde_json::to_value(leadership.status()).unwrap_or(serde_json::Value::Null)
                }
                None => serde_json::json!({"role": "off"}),
            };
            async move { axum::Json(serde_json::json!({"status": "ok", "scheduler": scheduler})) }
        }),
    );

    let sink = std::sync::Arc::new(aragora_slo::sink::WebhookSink::new(
        &registry,
        token.as_deref(),
    ));
    let outbox = std::sync::Arc::new(AlertOutbox {
        engine: engine.clone(),
        store: tokio::sync::OnceCell::new(),
    });
    router = router.route(
        aragora_slo::receivers::SINK_PATH,
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let (sink, outbox) = (sink.clone(), outbox.clone());
                async move { receive_alerts(&sink, &outbox, &headers, &body).await }
            },
        ),
    );
    let metrics_registry = registry.clone();
    router = router.route(
        "/metrics",
        get(move || {
            let registry = metrics_registry.clone();
            async move { aragora_telemetry::render(&registry) }
        }),
    );
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!(
                "aragora: cannot listen on {} for the control plane: {err}; move it with --listen or ARAGORA_CONTROL_LISTEN",
                args.listen
            );
            return ExitCode::FAILURE;
        }
    };
    let bound = listener.local_addr().unwrap_or(args.listen);
    println!(
        "aragora control listening http={bound} backups={:?} drills={:?} chaos={:?} slo={}",
        dr.backup_schedule,
        dr.drill_schedule,
        chaos.chaos_schedule,
        if live.is_some() { "prometheus" } else { "off" }
    );
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown_signal())
        .await;
    let _ = stop_live.send(true);
    if let Some(evaluation) = evaluation {
        let _ = evaluation.await;
    }
    if let Some(scheduler) = scheduler {
        scheduler.shutdown().await;
    }
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("aragora: the control plane's listener failed: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Where the sink queues `slo_alert` webhook deliveries: the engines' database (the
/// subscriptions live there and the engines deliver), connected on the first notification so
/// that control starts without it.
struct AlertOutbox {
    engine: aragora_engine::EngineConfig,
    store: tokio::sync::OnceCell<aragora_engine::store::SqlStore>,
}

impl AlertOutbox {
    /// One delivery per alert of `notification` for each `slo_alert` subscription, all or none.
    async fn enqueue(
        &self,
        notification: &aragora_slo::sink::Notification,
    ) -> Result<usize, String> {
        let store = self
            .store
            .get_or_try_init(|| async {
                aragora_engine::store::SqlStore::connect(
                    self.engine.db_backend,
                    &self.engine.database_url(),
                    2,
                )
                .await
            })
            .await
            .map_err(|err| {
                // A connection error may quote the URL; its password never goes further.
                let url = self.engine.database_url();
                let password: Vec<String> = aragora_config::url_password(&url)
                    .map(str::to_string)
                    .into_iter()
                    .collect();
                aragora_config::scrub(&err.to_string(), &password)
            })?;
        let items: Vec<serde_json::Value> = notification
            .alerts
            .iter()
            .map(|alert| {
                serde_json::json!({
                    "alertname": alert.labels.get("alertname"),
                    "status": alert.status,
                    "severity": alert.labels.get("severity"),
                    "labels": alert.labels,
                    "summary": alert.annotations.get("summary"),
                    "description": alert.annotations.get("description"),
                    "starts_at": alert.starts_at,
                    "receiver": notification.receiver,
                })
            })
            .collect();
        aragora_engine::webhooks::outbox::enqueue_all(
            store,
            aragora_engine::webhooks::EventType::SloAlert,
            aragora_engine::model::now_ms(),
            &items,
        )
        .await
        .map_err(|err| err.to_string())
    }
}

/// The sink's HTTP answer: 200 with what was counted and queued, 503 when the alerts' webhook
/// deliveries cannot be queued (Alertmanager sends the notification again), or the refusal in
/// the error envelope.
async fn receive_alerts(
    sink: &aragora_slo::sink::WebhookSink,
    outbox: &AlertOutbox,
    headers: &axum::http::HeaderMap,
    body: &[u8],
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let authorization = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    match sink.receive(authorization, body) {
        Ok(received) => {
            // The sink has read this body as a notification already.
            let queued = match serde_json::from_slice(body) {
                Ok(notification) => outbox.enqueue(&notification).await,
                Err(err) => Err(err.to_string()),
            };
            match queued {
                Ok(webhooks) => axum::Json(serde_json::json!({
                    "received": received.alerts,
                    "receiver": received.receiver,
                    "webhook_deliveries": webhooks,
                }))
                .into_response(),
                Err(err) => {
                    tracing::warn!(error = %err, "cannot queue the alerts' slo_alert webhook deliveries in the engines' database; answering 503 so that Alertmanager sends them again");
                    let message = format!("the alerts were received, but their slo_alert webhook deliveries cannot be queued in the engines' database ({err}); Alertmanager retries, check that the database is reachable and migrated (aragora migrate status)");
                    (
                        axum::http::StatusCode::SERVICE_UNAVAILABLE,
                        axum::Json(aragora_telemetry::error_body(
                            "webhooks_unavailable",
                            &message,
                        )),
                    )
                        .into_response()
                }
            }
        }
        Err(err) => {
            let status = axum::http::StatusCode::from_u16(err.status())
                .unwrap_or(axum::http::StatusCode::BAD_REQUEST);
            tracing::info!(
                status = err.status(),
                code = err.code(),
                "alert notification refused"
            );
            let body = aragora_telemetry::error_body(err.code(), &err.to_string());
            let mut response = (status, axum::Json(body)).into_response();
            if status == axum::http::StatusCode::UNAUTHORIZED {
                response.headers_mut().insert(
                    axum::http::header::WWW_AUTHENTICATE,
                    axum::http::HeaderValue::from_static("Bearer"),
                );
            }
            response
        }
    }
}
