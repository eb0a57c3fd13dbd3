//! `aragora slo check`, `aragora slo generate` and `aragora slo status`: read a spec (or build
//! the default SLOs from the environment), print every problem, write the rule files, show the
//! live status; and the live evaluation `aragora up` and `aragora serve` run.

use crate::settings::{self, Parts, Sources, EXIT_BAD_CONFIG};
use aragora_config::Settings;
use aragora_slo::live::LiveSettings;
use aragora_slo::{SloError, SloSettings, SloSpec};
use std::path::Path;
use std::process::ExitCode;

/// The spec to use and the settings of the operational alerts' thresholds. Without a spec the
/// targets build the default SLOs, so they are validated as such; with one they only need to
/// parse.
fn load(spec: Option<&Path>) -> Result<(SloSpec, SloSettings), ExitCode> {
    let refuse = |problems: Vec<aragora_config::ConfigProblem>| crate::settings::refused(&problems);
    let settings = match spec {
        None => settings::load(Parts::SLO, &Sources::default())
            .map(|loaded| loaded.slo)
            .map_err(refuse)?,
        Some(_) => match SloSettings::read(None, &aragora_config::process_env()) {
            (settings, problems) if problems.is_empty() => settings,
            (_, problems) => return Err(refuse(problems)),
        },
    };
    let spec = match spec {
        Some(path) => aragora_slo::load_spec(path).map_err(|err| fail(&err))?,
        None => settings.default_spec(),
    };
    Ok((spec, settings))
}

fn fail(err: &SloError) -> ExitCode {
    eprintln!("aragora: {err}");
    match err {
        SloError::Format(_) | SloError::Invalid(_) => ExitCode::from(EXIT_BAD_CONFIG),
        _ => ExitCode::FAILURE,
    }
}

/// The spec's problems and notes, printing the notes; with `prometheus`, the `le` bounds on
/// histograms outside aragora are looked up there (one lookup per histogram). Problems come
/// back for the caller to refuse; a Prometheus that cannot answer is a failure (exit 1).
fn review(spec: &SloSpec, prometheus: Option<&str>) -> Result<Vec<aragora_slo::Problem>, ExitCode> {
    let mut review = aragora_slo::check::review(spec);
    if let (Some(url), false) = (prometheus, review.foreign_buckets.is_empty()) {
        let looked_up = lookup_buckets(url, &review.foreign_buckets).map_err(|err| {
            eprintln!("aragora: cannot check bucket boundaries: {err}");
            ExitCode::FAILURE
        })?;
        for (bucket, bounds) in review.foreign_buckets.iter().zip(looked_up) {
            if bounds.is_empty() {
                review.notes.push(aragora_slo::Problem {
                    slo: Some(bucket.slo.clone()),
                    message: format!(
                        "{url} has no series of {}_bucket, so le=\"{}\" was not checked against \
                         its buckets; check again once Prometheus scrapes the service",
                        bucket.metric, bucket.bound
                    ),
                });
            } else if let Some(problem) =
                aragora_slo::check::foreign_bucket_problem(bucket, &bounds, url)
            {
                review.problems.push(problem);
            }
        }
    }
    for note in &review.notes {
        eprintln!("aragora: note: {note}");
    }
    Ok(review.problems)
}

/// The bucket bounds Prometheus at `url` has for each of `buckets`' histograms, in order.
fn lookup_buckets(
    url: &str,
    buckets: &[aragora_slo::check::ForeignBucket],
) -> Result<Vec<Vec<f64>>, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| format!("cannot start the async runtime: {err}"))?;
    let source = aragora_slo::live::PrometheusSource::new(url);
    runtime.block_on(async {
        let mut known: std::collections::HashMap<&str, Vec<f64>> = Default::default();
        let mut all = Vec::new();
        for bucket in buckets {
            if !known.contains_key(bucket.metric.as_str()) {
                let bounds = source
                    .bucket_bounds(&bucket.metric)
                    .await
                    .map_err(|err| err.to_string())?;
                known.insert(&bucket.metric, bounds);
            }
            all.push(known[bucket.metric.as_str()].clone());
        }
        Ok(all)
    })
}

pub fn check(spec: Option<&Path>, prometheus: Option<&str>) -> ExitCode {
    let (spec, _) = match load(spec) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let problems = match review(&spec, prometheus) {
        Ok(problems) => problems,
        Err(code) => return code,
    };
    if !problems.is_empty() {
        return fail(&SloError::Invalid(problems));
    }
    let names: Vec<&str> = spec.slos.iter().map(|slo| slo.name.as_str()).collect();
    println!(
        "aragora: the {} SLO(s) of service {} are valid: {}",
        names.len(),
        spec.service,
        names.join(", ")
    );
    ExitCode::SUCCESS
}

/// What `aragora slo generate` writes besides the rule files of `--out`.
pub struct Extras<'a> {
    /// The Grafana dashboards' directory.
    pub dashboards: Option<&'a Path>,
    /// Alertmanager's configuration file.
    pub alertmanager: Option<&'a Path>,
    /// The prometheus-operator `PrometheusRule` objects' file.
    pub prometheus_rule: Option<&'a Path>,
}

/// Writes a file, creating its directory.
fn write_file(path: &Path, text: &str) -> Result<(), ExitCode> {
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|err| {
            crate::settings::failed(format!("cannot create {}: {err}", dir.display()))
        })?;
    }
    std::fs::write(path, text).map_err(|err| {
        crate::settings::failed(format!("cannot write {}: {err}", path.display()))
    })?;
    println!("wrote {}", path.display());
    Ok(())
}

pub fn generate(
    spec: Option<&Path>,
    prometheus: Option<&str>,
    out: &Path,
    extras: Extras<'_>,
) -> ExitCode {
    let Extras {
        dashboards,
        alertmanager,
        prometheus_rule,
    } = extras;
    // The receivers are judged before anything is written.
    let receivers = match alertmanager {
        None => None,
        Some(path) => {
            match aragora_slo::receivers::ReceiverSettings::from_env(&aragora_config::process_env())
            {
                Ok(receivers) => Some((path, receivers.render())),
                Err(problems) => return crate::settings::refused(&problems),
            }
        }
    };
    let (spec, settings) = match load(spec) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    match review(&spec, prometheus) {
        Ok(problems) if problems.is_empty() => {}
        Ok(problems) => return fail(&SloError::Invalid(problems)),
        Err(code) => return code,
    }
    let files = match aragora_slo::generate(&spec, &settings) {
        Ok(files) => files,
        Err(err) => return fail(&err),
    };
    let operator_rules = match prometheus_rule {
        None => None,
        Some(path) => match aragora_slo::generate::prometheus_rules(&spec, &settings) {
            Ok(file) => Some((path, file.text)),
            Err(err) => return fail(&err),
        },
    };
    let mut outputs = vec![(out, files)];
    if let Some(dir) = dashboards {
        outputs.push((dir, aragora_slo::generate::dashboard_files(&settings)));
    }
    for (dir, files) in outputs {
        if let Err(err) = aragora_slo::generate::write(dir, &files) {
            return fail(&err);
        }
        for file in &files {
            println!("wrote {}", dir.join(file.name).display());
        }
    }
    for (path, text) in receivers.into_iter().chain(operator_rules) {
        if let Err(code) = write_file(path, &text) {
            return code;
        }
    }
    ExitCode::SUCCESS
}

/// What `aragora slo status` was asked.
pub struct StatusArgs {
    pub url: Option<String>,
    pub prometheus_url: Option<String>,
    pub spec: Option<std::path::PathBuf>,
    pub insecure: bool,
    pub json: bool,
}

pub async fn status(args: StatusArgs) -> ExitCode {
    let statuses = match (&args.url, &args.prometheus_url) {
        (Some(url), _) => match fetch_status(url, args.insecure).await {
            Ok(statuses) => statuses,
            Err(err) => {
                eprintln!("aragora: {err}");
                return ExitCode::FAILURE;
            }
        },
        (None, Some(prometheus)) => {
            let (spec, _) = match load(args.spec.as_deref()) {
                Ok(loaded) => loaded,
                Err(code) => return code,
            };
            let source = std::sync::Arc::new(aragora_slo::live::PrometheusSource::new(prometheus));
            match aragora_slo::live::Evaluator::new(spec, source)
                .evaluate()
                .await
            {
                Ok(statuses) => statuses,
                Err(err) => {
                    eprintln!("aragora: {err}");
                    return ExitCode::FAILURE;
                }
            }
        }
        (None, None) => {
            eprintln!("aragora: say where the SLO numbers come from: --url of a running aragora (GET /api/slo) or --prometheus-url (or ARAGORA_PROMETHEUS_URL)");
            return ExitCode::from(2);
        }
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&statuses).unwrap_or_default()
        );
    } else {
        print!("{}", aragora_slo::live::render_table(&statuses));
    }
    ExitCode::SUCCESS
}

async fn fetch_status(
    url: &str,
    insecure: bool,
) -> Result<Vec<aragora_slo::live::SloStatus>, String> {
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(insecure)
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|err| err.to_string())?;
    let endpoint = format!("{}/api/slo", url.trim_end_matches('/'));
    let response = client
        .get(&endpoint)
        .send()
        .await
        .map_err(|err| format!("{endpoint} does not answer: {err} (is aragora running there? --insecure for a self-signed certificate)"))?;
    let status = response.status();
    let body: serde_json::Value = response
        .json()
        .await
        .map_err(|err| format!("{endpoint} did not answer JSON: {err}"))?;
    if !status.is_success() {
        return Err(format!(
            "{endpoint} answered {status}: {}",
            body["error"]["message"]
        ));
    }
    serde_json::from_value(body["slos"].clone())
        .map_err(|err| format!("{endpoint} answered an unexpected shape: {err}"))
}

/// The live evaluation of a running process: what it evaluates from, the route it adds to
/// the engine's API, and the loop that keeps it current.
pub struct Live {
    pub evaluator: std::sync::Arc<aragora_slo::live::Evaluator>,
    /// Present when the numbers come from this process's own counters.
    pub counters: Option<std::sync::Arc<aragora_slo::live::CounterSource>>,
    settings: aragora_slo::live::LiveSettings,
}

impl Live {
    /// The default SLOs (targets from SLO_*), over Prometheus when ARAGORA_PROMETHEUS_URL is
    /// set, else over the process's counters when `in_process`. None when there is nothing to
    /// evaluate from (`aragora serve` without Prometheus). Both settings are validated.
    pub fn new(slo: &SloSettings, settings: &LiveSettings, in_process: bool) -> Option<Self> {
        use aragora_slo::live::{CounterSource, Evaluator, PrometheusSource};
        let spec = slo.default_spec();
        let longest = spec
            .slos
            .iter()
            .map(|slo| slo.period.seconds())
            .max()
            .unwrap_or(0);
        let longest = std::time::Duration::from_secs_f64(longest as f64 * settings.window_scale);
        let (evaluator, counters) = match (&settings.prometheus_url, in_process) {
            (Some(url), _) => (
                Evaluator::new(spec, std::sync::Arc::new(PrometheusSource::new(url))),
                None,
            ),
            (None, true) => {
                let counters = std::sync::Arc::new(CounterSource::new(vec![], longest));
                (Evaluator::new(spec, counters.clone()), Some(counters))
            }
            (None, false) => return None,
        };
        let mut evaluator = evaluator.window_scale(settings.window_scale);
        if let Some(url) = &settings.alertmanager_url {
            evaluator = evaluator.alertmanager(url);
        }
        Some(Self {
            evaluator: std::sync::Arc::new(evaluator),
            counters,
            settings: settings.clone(),
        })
    }

    /// Evaluates every interval until `stop` turns true.
    pub fn spawn(&self, stop: tokio::sync::watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        let interval = std::time::Duration::from_secs(self.settings.evaluation_interval_secs);
        tokio::spawn(self.evaluator.clone().run(interval, stop))
    }
}

/// `GET /api/slo`'s answer: the live status of every SLO.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct SloReport {
    /// The SLO spec's service.
    service: String,
    /// Every SLO, as last evaluated (empty before the first evaluation).
    slos: Vec<aragora_slo::live::SloStatus>,
    /// Why the last evaluation failed (Prometheus not answering, ...), or null.
    error: Option<String>,
}

/// What `GET /api/slo` reads: the live evaluation, or none in a process that evaluates no
/// SLOs (`aragora serve` without `ARAGORA_PROMETHEUS_URL`), which answers 404 saying so.
#[derive(Clone, Default)]
pub struct SloApi(Option<std::sync::Arc<aragora_slo::live::Evaluator>>);

/// The live status of every SLO: burn rate per window, budget left, which alerts fire.
#[utoipa::path(get, path = "/api/slo", operation_id = "slo_status", tag = "slo",
    responses(
        (status = 200, description = "Every SLO as last evaluated.", body = SloReport),
        (status = 404, description = "This process evaluates no SLOs (`aragora serve` without ARAGORA_PROMETHEUS_URL).", body = aragora_engine::error::ErrorBody),
    ))]
async fn slo_status(
    axum::extract::State(api): axum::extract::State<SloApi>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match api.0 {
        Some(evaluator) => axum::Json(SloReport {
            service: evaluator.spec().service.clone(),
            slos: evaluator.latest(),
            error: evaluator.last_error().map(|err| err.to_string()),
        })
        .into_response(),
        None => (
            axum::http::StatusCode::NOT_FOUND,
            axum::Json(aragora_telemetry::error_body("not_found", NO_SLOS)),
        )
            .into_response(),
    }
}

/// The routes the binary adds to an engine's API (and `aragora control` serves): one list,
/// whose `OpenApiRouter` carries their documentation, so the committed document
/// (`src/openapi.rs`) and the served one include them.
pub fn api() -> utoipa_axum::router::OpenApiRouter<SloApi> {
    utoipa_axum::router::OpenApiRouter::new().routes(utoipa_axum::routes!(slo_status))
}

/// SLO `slo`'s SLI, error ratio and burn rate per window over the last `seconds` (default an
/// hour, at most a day): each evaluation of the live evaluator, or Prometheus' `query_range`
/// when the numbers come from Prometheus (readers).
#[utoipa::path(get, path = "/api/slo/history", operation_id = "slo_history", tag = "slo",
    security(("bearer" = [])),
    params(
        ("slo" = String, Query, description = "The SLO's name (`GET /api/slo` lists them)."),
        ("seconds" = Option<u64>, Query, description = "How far back, 1 to 86400 (default 3600).", minimum = 1, maximum = 86400),
    ),
    responses(
        (status = 200, description = "The SLO's points, oldest first.", body = aragora_slo::live::SloHistory),
        (status = 400, description = "`slo` missing or `seconds` not a whole number from 1 to 86400.", body = aragora_engine::error::ErrorBody),
        (status = 404, description = "No such SLO (the message names the known ones), or this process evaluates no SLOs.", body = aragora_engine::error::ErrorBody),
        (status = 502, description = "Prometheus did not answer the range query.", body = aragora_engine::error::ErrorBody),
    ))]
async fn slo_history(
    _: aragora_engine::http::access::Reader,
    axum::Extension(api): axum::Extension<SloApi>,
    axum::extract::Query(query): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Result<axum::Json<aragora_slo::live::SloHistory>, aragora_engine::error::ApiError> {
    use aragora_engine::error::ApiError;
    use aragora_slo::live::HistoryError;
    let evaluator = api.0.ok_or_else(|| ApiError::not_found(NO_SLOS))?;
    let known = || {
        evaluator
            .spec()
            .slos
            .iter()
            .map(|slo| slo.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let name = query
        .get("slo")
        .filter(|name| !name.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(format!("name the SLO: ?slo=NAME, one of {}", known()))
        })?;
    let seconds = match query.get("seconds") {
        None => 3600,
        Some(text) => text.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!(
                "seconds is {text:?}; use a whole number of seconds from 1 to {}",
                aragora_slo::live::SERIES_KEEP_SECS
            ))
        })?,
    };
    match evaluator.history(name, seconds).await {
        Ok(history) => Ok(axum::Json(history)),
        Err(err @ HistoryError::UnknownSlo { .. }) => Err(ApiError::not_found(err.to_string())),
        Err(err @ HistoryError::BadSpan(_)) => Err(ApiError::bad_request(err.to_string())),
        Err(HistoryError::Source(err)) => Err(ApiError::new(
            axum::http::StatusCode::BAD_GATEWAY,
            "bad_gateway",
            err.to_string(),
        )),
    }
}

/// Why a process without a live evaluation answers 404.
const NO_SLOS: &str =
    "this process evaluates no SLOs: set ARAGORA_PROMETHEUS_URL (aragora serve), \
                       or ask aragora up or aragora control";

/// The routes the binary adds to an engine's API behind the engine's own access checks (they
/// take its state): `GET /api/slo/history`, and the drill runs of [`crate::drill_api`].
pub fn engine_routes(
    live: Option<&Live>,
    drills: crate::drill_api::DrillApi,
) -> utoipa_axum::router::OpenApiRouter<aragora_engine::http::AppState> {
    let slo = SloApi(live.map(|live| live.evaluator.clone()));
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(slo_history))
        .layer(axum::Extension(slo))
        .merge(crate::drill_api::routes(drills))
}

/// What the engine adds: `GET /api/slo` (answering 404 without `live`), the
/// [`engine_routes`], and `live`'s gauges in its registry.
pub fn engine_extras(
    live: Option<&Live>,
    drills: crate::drill_api::DrillApi,
) -> aragora_engine::Extras {
    let routes = api().with_state(SloApi(live.map(|live| live.evaluator.clone())));
    let on_registry = live.map(|live| {
        let evaluator = live.evaluator.clone();
        let counters = live.counters.clone();
        Box::new(move |registry: &prometheus::Registry| {
            evaluator.set_gauges(aragora_slo::live::SloGauges::register(registry));
            if let Some(counters) = counters {
                counters.add(aragora_slo::settings::ENGINE_JOB, registry.clone());
            }
        }) as aragora_engine::server::RegistryHook
    });
    aragora_engine::Extras {
        routes: Some(routes),
        engine_routes: Some(engine_routes(live, drills)),
        on_registry,
        gateway_admin: None,
    }
}
