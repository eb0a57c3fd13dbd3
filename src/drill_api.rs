//! `POST /api/drills/run` and `GET /api/drills/run` (admins): a DR drill started through the API
//! of the process that runs the DR schedules (`aragora up`, `aragora serve` with
//! `ARAGORA_DR_SCHEDULER=true`), and its progress step by step.
//!
//! One drill at a time per process: a second start while one runs answers 409 with the running
//! one. A drill needs a backup; when the backup directory has none yet, the run takes one first
//! (noted in the DR log and pruned like a scheduled backup): someone pressing "run a drill now"
//! on a fresh install wants the drill, not a lesson in ordering. The finished drill goes into
//! the DR log as scheduled drills do ([`aragora_chaos::drill`]), so `GET /api/drills` lists it.
//! The run itself lives in this process's memory: the last one started is what `GET` shows.

use aragora_chaos::drill::{self, STEPS};
use aragora_chaos::DrConfig;
use aragora_engine::error::{ApiError, ErrorBody};
use aragora_engine::http::access::Admin;
use aragora_engine::http::AppState;
use aragora_engine::EngineConfig;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use utoipa::ToSchema;

/// The step shown while a missing backup is taken first.
const BACKUP_STEP: &str = "taking a backup first (there is none yet)";

/// A drill started through the API.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Run {
    /// The drill's id, as `GET /api/drills` lists it once it finished.
    #[schema(example = "drill-0f3c...")]
    id: String,
    /// `running`, `passed` or `failed`.
    #[schema(example = "running")]
    state: &'static str,
    /// The current step (the last one once finished), as a person reads it.
    #[schema(example = "restoring the backup into it")]
    step: String,
    steps_done: usize,
    steps_total: usize,
    /// RFC 3339.
    started_at: String,
    /// RFC 3339; null while running.
    finished_at: Option<String>,
    /// Why it failed; null unless failed.
    error: Option<String>,
    /// The drill's report once finished (as `GET /api/drills`' items: `rto_seconds`,
    /// `rpo_seconds`, `rto_target_seconds`, `rpo_target_seconds`, ...); null while running or
    /// when no drill could start.
    #[schema(value_type = Option<Object>)]
    report: Option<Value>,
}

/// `GET /api/drills/run`'s and `POST`'s answer.
#[derive(Serialize, ToSchema)]
pub struct RunView {
    /// The current or last drill started through the API; null before the first.
    run: Option<Run>,
}

/// A refused start: the drill already running.
#[derive(Serialize, ToSchema)]
pub struct Busy {
    #[schema(value_type = Object)]
    error: Value,
    run: Run,
}

/// What a start did: began a drill, or found one running.
enum Started {
    Now(Run),
    AlreadyRunning(Run),
}

/// The DR configuration drills run with and the one run of this process.
pub struct DrillRunner {
    engine: EngineConfig,
    dr: DrConfig,
    current: Mutex<Option<Run>>,
}

/// RFC 3339, as the drill's report writes its times.
fn now() -> String {
    aragora_chaos::time::Timestamp::now().to_string()
}

impl DrillRunner {
    pub fn new(engine: EngineConfig, dr: DrConfig) -> Arc<Self> {
        Arc::new(Self {
            engine,
            dr,
            current: Mutex::new(None),
        })
    }

    fn current(&self) -> Option<Run> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn update(&self, change: impl FnOnce(&mut Run)) {
        if let Some(run) = self
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            change(run);
        }
    }

    /// Starts a drill unless one runs.
    fn start(self: &Arc<Self>) -> Started {
        let needs_backup =
            aragora_chaos::manifest::latest(&self.dr.backup_dir(&self.engine)).is_err();
        let run = {
            let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(running) = current.as_ref().filter(|run| run.state == "running") {
                return Started::AlreadyRunning(running.clone());
            }
            let run = Run {
                id: drill::new_id(),
                state: "running",
                step: if needs_backup { BACKUP_STEP } else { STEPS[0] }.to_string(),
                steps_done: 0,
                steps_total: STEPS.len() + usize::from(needs_backup),
                started_at: now(),
                finished_at: None,
                error: None,
                report: None,
            };
            *current = Some(run.clone());
            run
        };
        let runner = self.clone();
        let id = run.id.clone();
        tokio::spawn(async move { runner.drive(id, needs_backup).await });
        Started::Now(run)
    }

    async fn drive(self: Arc<Self>, id: String, needs_backup: bool) {
        let offset = usize::from(needs_backup);
        if needs_backup {
            if let Err(err) = aragora_chaos::schedule::take_backup(&self.engine, &self.dr).await {
                tracing::error!(error = %err, "the drill's first backup failed");
                self.update(|run| {
                    run.state = "failed";
                    run.finished_at = Some(now());
                    run.error = Some(format!(
                        "there is no backup to drill and taking one failed: {err}; fix that and run \
                         `aragora backup create`, then start the drill again"
                    ));
                });
                return;
            }
        }
        let on_step = |index: usize| {
            self.update(|run| {
                run.step = STEPS[index].to_string();
                run.steps_done = offset + index;
            })
        };
        let report = drill::run_observed(&self.engine, &self.dr, false, Some(id), &on_step).await;
        if report.passed() {
            tracing::info!(rto_seconds = ?report.rto_seconds, rpo_seconds = ?report.rpo_seconds, "DR drill started through the API passed");
        } else {
            tracing::error!(failures = ?report.failures, "DR drill started through the API failed");
        }
        self.update(|run| {
            run.state = if report.passed() { "passed" } else { "failed" };
            run.steps_done = run.steps_total;
            run.finished_at = Some(report.finished_at.clone());
            run.error = (!report.failures.is_empty()).then(|| report.failures.join("; "));
            run.report = serde_json::to_value(&report).ok();
        });
    }
}

/// What the drill routes read: the runner, or none in a process that runs no DR.
#[derive(Clone, Default)]
pub struct DrillApi(pub Option<Arc<DrillRunner>>);

impl DrillApi {
    fn runner(&self) -> Result<&Arc<DrillRunner>, ApiError> {
        self.0.as_ref().ok_or_else(|| {
            ApiError::not_found(
                "this process runs no DR drills: use aragora up, or aragora serve with \
                 ARAGORA_DR_SCHEDULER=true (and ARAGORA_BACKUP_DIR where backups go); or run \
                 one from a shell with `aragora drill run`",
            )
        })
    }
}

/// Starts a DR drill now (admins): restore the latest backup (taking one first when there is
/// none) into a scratch database, start an engine on it, run a smoke debate, measure RTO and
/// RPO. Follow it with `GET /api/drills/run`.
#[utoipa::path(post, path = "/api/drills/run", operation_id = "drill_start", tag = "drills",
    security(("bearer" = [])),
    responses(
        (status = 202, description = "The drill started.", body = RunView),
        (status = 404, description = "This process runs no DR drills.", body = ErrorBody),
        (status = 409, description = "A drill is already running: it comes back as `run`.", body = Busy),
    ))]
async fn start(
    _: Admin,
    Extension(api): Extension<DrillApi>,
    // Read and dropped: a request body left unread makes hyper close the connection after the
    // answer, and a gateway that pooled it sends the next request into a closed socket (a 502
    // for a POST, which it cannot resend).
    _body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let runner = api.runner()?;
    Ok(match runner.start() {
        Started::Now(run) => {
            (StatusCode::ACCEPTED, Json(RunView { run: Some(run) })).into_response()
        }
        Started::AlreadyRunning(running) => {
            let error = aragora_telemetry::error_body(
                "conflict",
                &format!(
                    "a drill is already running ({}, started {}); follow it with GET /api/drills/run and start another once it finished",
                    running.id, running.started_at
                ),
            );
            (
                StatusCode::CONFLICT,
                Json(Busy {
                    error: error["error"].clone(),
                    run: running,
                }),
            )
                .into_response()
        }
    })
}

/// The drill started through the API: running with its step, or finished with its report
/// (admins); null before the first.
#[utoipa::path(get, path = "/api/drills/run", operation_id = "drill_run", tag = "drills",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The current or last run.", body = RunView),
        (status = 404, description = "This process runs no DR drills.", body = ErrorBody),
    ))]
async fn show(_: Admin, Extension(api): Extension<DrillApi>) -> Result<Json<RunView>, ApiError> {
    Ok(Json(RunView {
        run: api.runner()?.current(),
    }))
}

/// The drill routes, documented; `api` comes to them as an extension.
pub fn routes(api: DrillApi) -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(start, show))
        .layer(Extension(api))
}
