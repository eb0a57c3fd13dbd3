//! Running components: the engine (`serve`), the gateway (`gateway`), or both (`up`), and the
//! order in which they stop: the gateway drains first, so no new traffic reaches a draining
//! engine, then the engine drains its debates.

use crate::settings::{self, print_problems, Parts, Sources, EXIT_BAD_CONFIG};
use crate::{EngineArgs, GatewayArgs, UpArgs};
use anyhow::Context;
use aragora_chaos::leader::Leadership;
use aragora_engine::config::DbBackend;
use aragora_engine::{Bound, EngineConfig};
use aragora_gateway::{ListenAddrs, RunningGateway};
use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

/// Completes on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(err) => {
            tracing::error!(error = %err, "cannot listen for SIGTERM; only Ctrl-C will stop the server");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}

pub fn refuse(problems: &[aragora_engine::ConfigProblem]) -> ExitCode {
    print_problems(problems);
    eprintln!("aragora: refusing to start; `aragora validate-env` checks a fix without starting");
    ExitCode::from(EXIT_BAD_CONFIG)
}

fn display(addr: &SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("127.0.0.1:{}", addr.port())
    } else {
        addr.to_string()
    }
}

/// The machine-readable line tests and scripts read the engine's ports from.
fn announce_engine(bound: &Bound) {
    println!("aragora engine listening api={} ws={}", bound.api, bound.ws);
}

/// What the binary adds to an engine it runs besides the live SLO evaluation.
#[derive(Default)]
struct EngineAdditions {
    /// The drill runner, in a process that runs the DR schedules.
    drills: crate::drill_api::DrillApi,
    /// The gateway admin API, when this process learns it once its gateway listens.
    gateway_admin: Option<aragora_engine::http::gateway::GatewayAdmin>,
}

async fn run_engine(
    config: EngineConfig,
    shutdown: impl Future<Output = ()> + Send,
    on_bound: impl FnOnce(Bound),
    live: Option<&crate::slo::Live>,
    leadership: Option<Leadership>,
    additions: EngineAdditions,
) -> ExitCode {
    settings::init_logging(config.log_level, config.log_format);
    let mut extras = crate::slo::engine_extras(live, additions.drills);
    extras.gateway_admin = additions.gateway_admin;
    // The console's pages beside the API, on the same origin (undocumented: they are not API).
    let pages = utoipa_axum::router::OpenApiRouter::from(aragora_console::router());
    extras.routes = Some(match extras.routes.take() {
        Some(routes) => routes.merge(pages),
        None => pages,
    });
    // A replica standing for scheduler leader says in its own /metrics whether it leads.
    if let Some(leadership) = leadership {
        let earlier = extras.on_registry.take();
        extras.on_registry = Some(Box::new(move |registry: &prometheus::Registry| {
            if let Some(earlier) = earlier {
                earlier(registry);
            }
            leadership.export_to(registry);
        }));
    }
    // The live SLO evaluation runs for as long as the engine does.
    let (stop_live, live_stopped) = tokio::sync::watch::channel(false);
    let evaluation = live.map(|live| live.spawn(live_stopped));
    let served = aragora_engine::serve_with(config, shutdown, on_bound, extras).await;
    let _ = stop_live.send(true);
    if let Some(evaluation) = evaluation {
        let _ = evaluation.await;
    }
    match served.context("the engine stopped with an error") {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("aragora: {err:#}");
            ExitCode::FAILURE
        }
    }
}

pub async fn serve(args: &EngineArgs) -> ExitCode {
    let loaded = match settings::load(Parts::SERVE, &Sources::engine(args)) {
        Ok(loaded) => loaded,
        Err(problems) => return refuse(&problems),
    };
    // Alone, the engine evaluates SLOs only over Prometheus (its counters hold half the story).
    let live = crate::slo::Live::new(&loaded.slo, &loaded.live, false);
    let (config, dr) = (loaded.engine, loaded.dr);
    let schedules = dr.dr_scheduler;
    // The process that runs the DR schedules also runs drills asked for through its API.
    let drills = crate::drill_api::DrillApi(
        schedules.then(|| crate::drill_api::DrillRunner::new(config.clone(), dr.clone())),
    );
    with_dr_schedules(&config, dr, schedules, |leadership| async {
        run_engine(
            config.clone(),
            shutdown_signal(),
            |bound| announce_engine(&bound),
            live.as_ref(),
            leadership,
            EngineAdditions {
                drills,
                gateway_admin: None,
            },
        )
        .await
    })
    .await
}

/// Runs `work` with the backup and drill schedules going when `enabled` (and stopped after);
/// `work` gets this process's candidacy for scheduler leader when the schedules run.
async fn with_dr_schedules<F: Future<Output = ExitCode>>(
    engine: &EngineConfig,
    dr: aragora_chaos::DrConfig,
    enabled: bool,
    work: impl FnOnce(Option<Leadership>) -> F,
) -> ExitCode {
    let scheduler = if enabled {
        match aragora_chaos::schedule::start(engine.clone(), dr).await {
            Ok(scheduler) => scheduler,
            Err(err) => {
                eprintln!("aragora: cannot start the backup and drill schedules: {err}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let leadership = scheduler.as_ref().map(|s| s.leadership().clone());
    let code = work(leadership).await;
    if let Some(scheduler) = scheduler {
        scheduler.shutdown().await;
    }
    code
}

/// The bound addresses (not the configured ones: a port of 0 is a real port here).
fn announce_gateway(addrs: &ListenAddrs) {
    println!(
        "aragora gateway listening https={} http={} admin={}",
        addrs.https, addrs.http, addrs.admin
    );
}

pub fn gateway(args: &GatewayArgs) -> ExitCode {
    let loaded = match settings::load(Parts::GATEWAY, &Sources::gateway(args)) {
        Ok(loaded) => loaded,
        Err(problems) => return refuse(&problems),
    };
    // The log settings are shared with the engine (ARAGORA_LOG_LEVEL, ARAGORA_LOG_FORMAT).
    settings::init_logging(loaded.engine.log_level, loaded.engine.log_format);
    let config = loaded.gateway;
    let mut running = match aragora_gateway::start(config) {
        Ok(running) => running,
        Err(err) => {
            eprintln!("aragora: {err}");
            return ExitCode::FAILURE;
        }
    };
    announce_gateway(&running.addrs());
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(serve_until_stopped(args, &running)),
        Err(err) => eprintln!("aragora: cannot watch for signals ({err}); stopping"),
    }
    running.shutdown();
    running.wait();
    ExitCode::SUCCESS
}

/// Waits for SIGTERM or SIGINT; on SIGHUP re-reads the configuration (file, environment,
/// flags) and certificates and applies them, or logs why not and keeps the old ones.
async fn serve_until_stopped(args: &GatewayArgs, running: &RunningGateway) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(hangup) => Some(hangup),
        Err(err) => {
            tracing::warn!(error = %err, "cannot listen for SIGHUP; reloading is off");
            None
        }
    };
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        let reload = async {
            match hangup.as_mut() {
                Some(hangup) => hangup.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut stop => return,
            _ = reload => {
                tracing::info!("SIGHUP: reloading configuration and certificates");
                match settings::load(Parts::GATEWAY, &Sources::gateway(args)) {
                    Ok(loaded) => {
                        let _ = running.reload(loaded.gateway);
                    }
                    Err(problems) => {
                        for problem in problems {
                            tracing::error!(problem = %problem, "configuration reload refused; the previous configuration keeps serving");
                        }
                    }
                }
            }
        }
    }
}

pub async fn up(args: &UpArgs) -> ExitCode {
    let loaded = match settings::load(Parts::UP, &Sources::up(args)) {
        Ok(loaded) => loaded,
        Err(problems) => return refuse(&problems),
    };
    let (mut engine, dr, mut gateway) = (loaded.engine, loaded.dr, loaded.gateway);
    // Someone watching `up` on a terminal reads its banner and its log: text there, JSON for
    // a log shipper, and ARAGORA_LOG_FORMAT when set.
    engine.log_format = engine
        .log_format
        .resolve(true, std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // Only once everything is valid: a self-signed certificate in the data directory.
    if gateway.tls_cert.is_none() && gateway.tls_key.is_none() {
        match aragora_gateway::tls::self_signed(&engine.data_dir.join("tls")) {
            Ok((cert, key)) => {
                gateway.tls_cert = Some(cert);
                gateway.tls_key = Some(key);
            }
            Err(err) => {
                eprintln!("aragora: cannot generate a self-signed certificate: {err}");
                return ExitCode::FAILURE;
            }
        }
    }
    // The admin key is made through the CLI's own database path before the engine starts (the
    // migration is idempotent; the engine's own finds nothing left to do), so the banner, which
    // is printed as soon as the listeners are bound and before the engine's database is up, can
    // already show it, and a database that refuses the key stops `up` before anything listens.
    let admin_key = match crate::token::ensure_up_key(&engine).await {
        Ok(key) => key,
        Err(err) => {
            eprintln!("aragora: cannot prepare the admin API key: {err}");
            return ExitCode::FAILURE;
        }
    };
    let live = crate::slo::Live::new(&loaded.slo, &loaded.live, true);
    let live_counters = live.as_ref().and_then(|live| live.counters.clone());
    // The engine reads its gateway's upstreams and rate limits from the gateway's admin API,
    // whose port is known once it listens; with no shared secret to sign in with, the gateway
    // also admits a token only this process knows.
    let gateway_admin = aragora_engine::http::gateway::GatewayAdmin::new();
    let private_token = aragora_engine::http::gateway::GatewayAdmin::private_token(&engine.auth);
    if private_token.is_some() && gateway.auth.api_token.is_none() {
        gateway.auth.api_token = private_token.clone();
    }
    let engine_gateway = gateway_admin.clone();
    let drills = crate::drill_api::DrillApi(Some(crate::drill_api::DrillRunner::new(
        engine.clone(),
        dr.clone(),
    )));

    let running: Arc<Mutex<Option<RunningGateway>>> = Arc::default();
    let (fatal_tx, fatal_rx) = tokio::sync::oneshot::channel::<String>();
    let fatal_tx = Mutex::new(Some(fatal_tx));
    let slot = running.clone();
    let banner_engine = engine.clone();
    let on_bound = move |bound: Bound| {
        announce_engine(&bound);
        let mut gateway = gateway;
        // The engine's own address (loopback under `up` unless a host was chosen).
        gateway.upstreams = vec![display(&bound.api)];
        let admin_host = gateway.admin_host.clone();
        match aragora_gateway::start(gateway) {
            Ok(started) => {
                engine_gateway.set(
                    &format!("http://{}", display(&started.addrs().admin)),
                    private_token,
                );
                if let Some(counters) = &live_counters {
                    counters.add(
                        aragora_slo::settings::GATEWAY_JOB,
                        started.metrics_registry(),
                    );
                }
                announce_gateway(&started.addrs());
                print_banner(
                    &banner_engine,
                    &bound,
                    &started.addrs(),
                    &admin_host,
                    &admin_key,
                );
                *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(started);
            }
            Err(err) => {
                if let Some(tx) = fatal_tx.lock().ok().and_then(|mut t| t.take()) {
                    let _ = tx.send(err.to_string());
                }
            }
        }
    };
    let fatal = Arc::new(Mutex::new(None::<String>));
    let fatal_seen = fatal.clone();
    let shutdown = async move {
        tokio::select! {
            _ = shutdown_signal() => {}
            // A dropped sender means the gateway started: wait for a signal only.
            Ok(message) = fatal_rx => {
                *fatal_seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(message);
            }
        }
        let gateway = running.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut gateway) = gateway {
            gateway.shutdown();
            let _ = tokio::task::spawn_blocking(move || gateway.wait()).await;
        }
    };
    // `up` is the whole system on one machine: it always runs the DR schedules.
    let scheduled = engine.clone();
    let code = with_dr_schedules(&scheduled, dr, true, |leadership| {
        run_engine(
            engine,
            shutdown,
            on_bound,
            live.as_ref(),
            leadership,
            EngineAdditions {
                drills,
                gateway_admin: Some(gateway_admin),
            },
        )
    })
    .await;
    let failure = fatal.lock().unwrap_or_else(|e| e.into_inner()).take();
    match failure {
        Some(message) => {
            eprintln!("aragora: the gateway could not start: {message}");
            ExitCode::FAILURE
        }
        None => code,
    }
}

fn print_banner(
    engine: &EngineConfig,
    bound: &Bound,
    gateway: &ListenAddrs,
    admin_host: &str,
    admin_key: &crate::token::UpKey,
) {
    let api = display(&bound.api);
    let storage = match engine.db_backend {
        DbBackend::Sqlite => format!("SQLite at {}", engine.data_dir.join("aragora.db").display()),
        DbBackend::Postgres => "PostgreSQL (DATABASE_URL)".to_string(),
    };
    let https = if gateway.https.port() == 443 {
        "https://localhost".to_string()
    } else {
        format!("https://localhost:{}", gateway.https.port())
    };
    println!("  Gateway    {https}/api/debates  (HTTP :{} redirects here; self-signed unless --tls-cert)", gateway.http.port());
    println!(
        "  Engine     http://{api}/api/debates   WebSocket ws://{}/ws",
        display(&bound.ws)
    );
    println!("  Health     {https}/readyz   Metrics http://{api}/metrics  http://{admin_host}:{}/metrics (gateway)", gateway.admin.port());
    println!("  Storage    {storage}");
    let key_file = admin_key.path.display();
    let bearer = format!("-H \"Authorization: Bearer $(cat {key_file})\"");
    match &admin_key.created {
        Some(key) => {
            println!("  Admin key  created in {key_file} (mode 0600); shown this once:");
            println!("               {key}");
            println!("             curl -k {bearer} {https}/api/auth/me");
        }
        None => println!("  Admin key  in {key_file}: curl -k {bearer} {https}/api/auth/me"),
    }
    println!("  Try:       curl -sk -XPOST {https}/api/debates {bearer} -H 'content-type: application/json' -d '{{\"topic\":\"Tabs or spaces?\"}}'");
    if let Some(role) = engine.auth.anonymous_role() {
        println!("  !!!!!!!    ANONYMOUS ACCESS IS ON (ARAGORA_AUTH_ANONYMOUS={role}): anyone who reaches {https} is a {role} without any credential. For demos only.");
    }
    println!("  Stop with Ctrl-C (running debates are saved and resumed on the next start).");
}
