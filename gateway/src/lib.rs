//! The aragora edge gateway: a pingora proxy in front of the engine replicas.
//!
//! | module | owns |
//! |---|---|
//! | [`config`] | settings, defaults, validation (certificate files included) |
//! | [`proxy`] | the request path: one `ProxyHttp` impl; its doc lists the phases and their jobs |
//! | [`upstream`] | replicas, readiness from active and passive checks, slow start, DNS refresh |
//! | [`admin`] | the admin listener and the HTTP→HTTPS redirect listener |
//! | [`admin_api`] | the admin API's operations and types, and its OpenAPI document (also its routing table) |
//! | [`framing`] | requests refused before they reach a replica: ambiguous framing (smuggling), dot segments, bad `Host` |
//! | [`head`] | the borrowed view of a request head that both HTTP/1.1 engines provide and every decision reads |
//! | [`lean`] | the lean HTTP/1.1 engine (`ARAGORA_GATEWAY_H1_ENGINE=lean`): httparse, pinned replica connections; and the lean HTTP/2 engine (`ARAGORA_GATEWAY_H2_ENGINE=lean`, `lean::http2`); upgrades go to pingora's path |
//! | [`headers`] | the edge's `Server` and security headers, per route |
//! | [`tls`] | certificate checks, self-signed generation, expiry; the certificate store |
//! | [`ocsp`] | OCSP stapling: the plan per certificate, response checks, the refresh loop |
//! | [`state`] | shared flags (draining, maintenance), in-flight count, metrics |
//! | [`websockets`] | open WebSockets and their tunnel after the 101 (idle timeout; 1001 at the drain timeout) |
//! | [`listeners`] | the listening sockets, bound before pingora runs; one HTTPS socket per runtime |
//!
//! [`start`] validates, binds (port 0 included: [`RunningGateway::addrs`] says what it got), and
//! runs pingora on its own threads, handing it the bound sockets. The proxy is
//! `ARAGORA_GATEWAY_THREADS` pingora services of one single-threaded runtime each (no work
//! stealing, each with its own upstream connection pool), each accepting on its own
//! `SO_REUSEPORT` socket of the HTTPS address; everything else they hold ([`state::Shared`]:
//! config, limits, readiness, drain, metrics; the certificate) is shared. A connection stays on
//! the runtime that accepted it, so its upstream connections are returned to, and reused from,
//! a pool no other thread touches. [`RunningGateway::shutdown`]
//! drains: readiness goes false at once, the gateway keeps serving for the drain delay (so load
//! balancers stop sending), then stops accepting, lets in-flight requests finish (up to the
//! drain timeout), and [`RunningGateway::wait`] returns as soon as that is done, rather than
//! after pingora's fixed grace period.

pub mod admin;
pub mod admin_api;
pub mod client;
pub mod config;
pub mod connections;
pub mod framing;
pub mod head;
pub mod headers;
pub mod health;
pub mod lean;
pub mod limit;
pub mod listeners;
pub mod ocsp;
pub mod parsed;
pub mod proxy;
pub mod refusal;
pub mod route;
pub mod state;
pub mod tls;
pub mod trace;
pub mod upstream;
pub mod websockets;

pub use config::{GatewayConfig, SETTINGS};

use aragora_config::{H1Engine, H2Engine};
use async_trait::async_trait;
use listeners::{bind, bind_per_runtime, fd_key, PreBound};
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::ListenerConfig;
use pingora::prelude::background_service;
use pingora::protocols::l4::stream::L4BufferSettings;
use pingora::proxy::{http_proxy, http_proxy_service_with_name};
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch, ShutdownWatch};
use pingora::services::background::BackgroundService;
use pingora::services::listening::Service;
use state::{GatewayMetrics, Shared};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use upstream::{HealthPolicy, UpstreamPool};

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Bind(#[from] aragora_config::BindError),
    #[error(
        "the TLS certificate could not be loaded: {0}; check ARAGORA_TLS_CERT and ARAGORA_TLS_KEY"
    )]
    Tls(String),
}

/// Turns our shutdown request into pingora's: mark draining, keep serving for the drain
/// delay, then tell pingora to stop accepting.
struct DrainSignal {
    shared: Arc<Shared>,
    requested: Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
    drain_delay: Duration,
}

#[async_trait]
impl ShutdownSignalWatch for DrainSignal {
    async fn recv(&self) -> ShutdownSignal {
        let requested = self.requested.lock().ok().and_then(|mut r| r.take());
        if let Some(requested) = requested {
            let _ = requested.await;
        }
        self.shared.start_draining();
        tracing::info!(
            delay_s = self.drain_delay.as_secs_f64(),
            "gateway draining: readiness off, still serving"
        );
        tokio::time::sleep(self.drain_delay).await;
        tracing::info!("gateway stops accepting; waiting for in-flight requests");
        ShutdownSignal::GracefulTerminate
    }
}

/// Health checks and DNS refresh, as a pingora background service.
struct HealthService {
    shared: Arc<Shared>,
}

#[async_trait]
impl BackgroundService for HealthService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        // Redis clients live on the proxy's runtime; connect here, not before it exists.
        if let Some(redis) = &self.shared.shared_limiter {
            redis.start().await;
        }
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let checks = health::run_health_checks(self.shared.clone(), stop_rx);
        tokio::select! {
            _ = checks => {}
            _ = shutdown.changed() => { let _ = stop_tx.send(true); }
        }
    }
}

/// How long no request may be in flight, after the listeners closed, for the drain to be over.
const DRAIN_QUIET: Duration = Duration::from_secs(1);

/// Reports when, after pingora stopped accepting, the last in-flight request has finished.
struct DrainWatcher {
    shared: Arc<Shared>,
    drained: Mutex<Option<mpsc::Sender<()>>>,
}

#[async_trait]
impl BackgroundService for DrainWatcher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                break;
            }
        }
        let deadline =
            Instant::now() + Duration::from_secs(self.shared.config().drain_timeout_secs);
        // A connection accepted just before the listeners closed may still be in its TLS
        // handshake or sending its headers, and counts as in flight only once its request is
        // read: the count must stay at zero for a quiet while, long enough for a loaded
        // machine to get such a request that far, before the gateway calls itself drained.
        let mut idle_since: Option<Instant> = None;
        while Instant::now() < deadline {
            if self.shared.inflight() > 0 {
                idle_since = None;
            } else if idle_since.get_or_insert_with(Instant::now).elapsed() >= DRAIN_QUIET {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let websockets = self.shared.websockets.count();
        if websockets > 0 {
            let ended = self.shared.websockets.close_all();
            tracing::warn!(
                websockets,
                ended,
                "drain timeout: closing the open WebSockets with 1001 (Going Away)"
            );
            // Each tunnel writes its close frame as it sees the signal: give them a moment.
            let closed_by = Instant::now() + Duration::from_secs(2);
            while self.shared.websockets.count() > 0 && Instant::now() < closed_by {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let left = self.shared.inflight();
        if left > 0 {
            tracing::warn!(left, "drain timeout: closing the remaining connections");
        } else {
            tracing::info!("gateway drained");
        }
        if let Some(sender) = self.drained.lock().ok().and_then(|mut d| d.take()) {
            let _ = sender.send(());
        }
    }
}

/// A gateway running on its own threads.
pub struct RunningGateway {
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    drained: mpsc::Receiver<()>,
    shared: Arc<Shared>,
    certs: Arc<tls::CertStore>,
    spans: Option<Arc<trace::SpanExport>>,
    addrs: ListenAddrs,
    accepted: Vec<Arc<AtomicU64>>,
}

impl RunningGateway {
    /// Where the listeners are bound (the real ports when 0 was configured).
    pub fn addrs(&self) -> ListenAddrs {
        self.addrs
    }

    /// The registry behind the admin `/metrics` (for in-process SLO evaluation).
    pub fn metrics_registry(&self) -> prometheus::Registry {
        self.shared.metrics.registry.clone()
    }

    /// Begins the drain (returns at once).
    pub fn shutdown(&mut self) {
        if let Some(sender) = self.shutdown.take() {
            let _ = sender.send(());
        }
    }

    /// Blocks until the gateway has drained after [`shutdown`](Self::shutdown).
    pub fn wait(self) {
        let _ = self.drained.recv();
        if let Some(spans) = &self.spans {
            spans.flush();
        }
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Connections each proxy runtime has accepted on the HTTPS listener (one entry per
    /// runtime, in the order of their sockets).
    pub fn accepted_per_runtime(&self) -> Vec<u64> {
        self.accepted
            .iter()
            .map(|count| count.load(Ordering::Relaxed))
            .collect()
    }

    /// Applies a new, validated configuration without dropping connections: certificate,
    /// upstreams, health checks, limits, timeouts. Listeners and threads cannot change while
    /// running; a config that changes them, or whose certificate does not load, is refused and
    /// the old one keeps serving. Returns what was refused, if anything.
    pub fn reload(&self, config: GatewayConfig) -> Result<(), Vec<String>> {
        let config = self.addrs.settle(config);
        let old = self.shared.config();
        let mut refused = Vec::new();
        // Which settings cannot change while running is declared with each setting (`restart`
        // in config.rs): the listeners, threads, shared limiter and drain task are built at start.
        for setting in aragora_config::EnvSettings::restart_changes(old.as_ref(), &config) {
            refused.push(format!(
                "{} cannot change while running; restart the gateway to change it",
                setting.name()
            ));
        }
        let loaded = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => match tls::load(&config, cert, key) {
                Ok(loaded) => Some(loaded),
                Err(problem) => {
                    refused.push(problem.to_string());
                    None
                }
            },
            _ => {
                refused.push(
                    "ARAGORA_TLS_CERT: a reload needs both the certificate and the key".into(),
                );
                None
            }
        };
        if !refused.is_empty() {
            for reason in &refused {
                tracing::error!(reason = %reason, "configuration reload refused; the previous configuration keeps serving");
            }
            return Err(refused);
        }
        if let Some(loaded) = loaded {
            self.shared.metrics.cert_expiry.set(loaded.expiry);
            self.certs.replace(loaded);
        }
        self.shared.pool.reconfigure(
            config.upstreams.clone(),
            HealthPolicy {
                unhealthy_threshold: config.unhealthy_threshold,
                healthy_threshold: config.healthy_threshold,
                slow_start: Duration::from_secs(config.slow_start_secs),
            },
        );
        self.shared.set_config(config);
        // Resolve the (possibly new) upstream names now rather than at the next DNS refresh.
        let pool = self.shared.pool.clone();
        std::thread::spawn(move || {
            if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                runtime.block_on(pool.resolve());
            }
        });
        tracing::info!("configuration reloaded");
        Ok(())
    }
}

/// The addresses the gateway's listeners are bound to: the real ports when 0 was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenAddrs {
    pub https: SocketAddr,
    pub http: SocketAddr,
    pub admin: SocketAddr,
}

impl ListenAddrs {
    /// `config` with a requested port of 0 replaced by the bound one, so that redirects name
    /// the real HTTPS port and a reload asking for 0 again changes nothing.
    fn settle(&self, mut config: GatewayConfig) -> GatewayConfig {
        for (port, bound) in [
            (&mut config.https_port, self.https),
            (&mut config.http_port, self.http),
            (&mut config.admin_port, self.admin),
        ] {
            if *port == 0 {
                *port = bound.port();
            }
        }
        config
    }
}

/// The read buffer in front of each client's TLS stream. Pingora's default is 64 KiB per
/// connection, which a WebSocket tunnel keeps for as long as it lives (most of an idle
/// WebSocket's memory at the gateway). A read larger than the buffer bypasses it, so TLS
/// records still arrive in one read each; the buffer only gathers small reads.
const CLIENT_READ_BUFFER: usize = 4 * 1024;

/// Puts a proxy runtime's service (either engine's) on its HTTPS socket `key`: TLS, the small
/// read buffer, the first-byte callback and the connection gate.
fn listen<A>(
    service: &mut Service<A>,
    shared: &Arc<Shared>,
    key: &str,
    tls_settings: TlsSettings,
    accepted: &Arc<AtomicU64>,
) {
    service.add_listener(
        ListenerConfig::tcp(key.to_string())
            .tls(tls_settings)
            .l4_buffer(L4BufferSettings::default().read(CLIENT_READ_BUFFER)),
    );
    service
        .endpoints()
        .set_pre_tls_callback(Arc::new(connections::FirstByte {
            shared: shared.clone(),
        }));
    service.set_connection_filter(Arc::new(connections::ConnectionGate {
        shared: shared.clone(),
        accepted: accepted.clone(),
    }));
}

/// Validates listeners and certificate, then starts the gateway. `config` must have passed
/// [`GatewayConfig::validate`].
pub fn start(config: GatewayConfig) -> Result<RunningGateway, GatewayError> {
    let runtimes = config.threads.max(1);
    let (https_sockets, https_addr) = bind_per_runtime(
        &format!("{}:{}", config.host, config.https_port),
        runtimes,
        config.share_https_port,
        "HTTPS",
        "ARAGORA_HTTPS_PORT / --https-port",
    )?;
    let (http_socket, http_addr) = bind(
        &format!("{}:{}", config.host, config.http_port),
        "HTTP",
        "ARAGORA_HTTP_PORT / --http-port",
    )?;
    let (admin_socket, admin_addr) = bind(
        &format!("{}:{}", config.admin_host, config.admin_port),
        "admin",
        "ARAGORA_ADMIN_PORT / --admin-port",
    )?;
    let addrs = ListenAddrs {
        https: https_addr,
        http: http_addr,
        admin: admin_addr,
    };
    let config = addrs.settle(config);
    let (https, http, admin) = (
        addrs.https.to_string(),
        addrs.http.to_string(),
        addrs.admin.to_string(),
    );
    let (cert, key) = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => (cert.clone(), key.clone()),
        _ => return Err(GatewayError::Tls("no certificate configured".into())),
    };
    let loaded = tls::load(&config, &cert, &key).map_err(|p| GatewayError::Tls(p.to_string()))?;
    let (metrics, upstream_ready) = GatewayMetrics::new();
    metrics.cert_expiry.set(loaded.expiry);
    let certs = Arc::new(tls::CertStore::new(loaded));
    let ocsp_failures = ocsp::stapler::register_metrics(&metrics.registry, &certs);
    connections::install_handshake_failure_counter(metrics.tls_handshake_failures.clone());
    let pool = Arc::new(UpstreamPool::new(
        config.upstreams.clone(),
        HealthPolicy {
            unhealthy_threshold: config.unhealthy_threshold,
            healthy_threshold: config.healthy_threshold,
            slow_start: Duration::from_secs(config.slow_start_secs),
        },
        upstream_ready,
    ));
    let drain_delay = Duration::from_secs(config.drain_delay_secs);
    let server_conf = ServerConf {
        // One thread per service, no work stealing: every service (each proxy runtime, the
        // redirect and admin listeners, the background tasks) runs on its own single-threaded
        // runtime. A runtime of its own per service is pingora's model; `threads` is how many
        // threads each gets.
        threads: 1,
        work_stealing: false,
        // Pingora sleeps this long after it stops accepting; we return earlier when drained.
        grace_period_seconds: Some(config.drain_timeout_secs + 1),
        graceful_shutdown_timeout_seconds: Some(1),
        ..Default::default()
    };
    let shared = Arc::new(Shared::new(config, metrics, pool));
    let spans = trace::SpanExport::from_env().map(Arc::new);
    let mut server = Server::new_with_opt_and_conf(None, server_conf);
    let mut accepted = Vec::with_capacity(runtimes);
    for (index, socket) in https_sockets.into_iter().enumerate() {
        // Each runtime builds its own rustls config from these settings, around the shared
        // resolver (a reload swaps the certificate for all) and callback (handshake counts,
        // the open-connection gauge).
        let mut tls_settings =
            TlsSettings::with_callbacks(Box::new(connections::HandshakeObserver {
                shared: shared.clone(),
            }))
            .map_err(|err| GatewayError::Tls(err.to_string()))?;
        tls_settings.set_cert_resolver(certs.clone());
        tls_settings.enable_h2();
        let gateway = proxy::Gateway {
            shared: shared.clone(),
            spans: spans.clone(),
        };
        let name = format!("aragora-gateway-{index}");
        let key = fd_key(&https, index);
        let count = Arc::new(AtomicU64::new(0));
        // Its own service, so its own runtime and its own upstream connector (pool).
        let (h1, h2) = (
            shared.config().h1_engine == H1Engine::Lean,
            shared.config().h2_engine == H2Engine::Lean,
        );
        match (h1, h2) {
            (false, false) => {
                let mut proxy = http_proxy_service_with_name(&server.configuration, gateway, &name);
                listen(&mut proxy, &shared, &key, tls_settings, &count);
                server.add_service(PreBound {
                    service: proxy,
                    sockets: vec![(key, socket)],
                });
            }
            _ => {
                let fallback = Arc::new(http_proxy(&server.configuration, gateway.clone()));
                let mut lean = Service::new(
                    name,
                    lean::LeanApp {
                        gateway,
                        fallback,
                        h1,
                        h2,
                    },
                );
                listen(&mut lean, &shared, &key, tls_settings, &count);
                server.add_service(PreBound {
                    service: lean,
                    sockets: vec![(key, socket)],
                });
            }
        }
        accepted.push(count);
    }
    let mut redirect = Service::new(
        "http-redirect".to_string(),
        admin::RedirectApp {
            shared: shared.clone(),
        },
    );
    redirect.add_tcp(&http);
    let mut admin_service = Service::new(
        "admin".to_string(),
        admin::AdminApp {
            shared: shared.clone(),
        },
    );
    admin_service.add_tcp(&admin);
    let (drained_tx, drained) = mpsc::channel();
    server.add_service(PreBound {
        service: redirect,
        sockets: vec![(http.clone(), http_socket)],
    });
    server.add_service(PreBound {
        service: admin_service,
        sockets: vec![(admin.clone(), admin_socket)],
    });
    server.add_service(background_service(
        "upstream-health",
        HealthService {
            shared: shared.clone(),
        },
    ));
    server.add_service(background_service(
        "ocsp-stapler",
        ocsp::stapler::Stapler {
            certs: certs.clone(),
            shared: shared.clone(),
            failures: ocsp_failures,
        },
    ));
    server.add_service(background_service(
        "drain-watcher",
        DrainWatcher {
            shared: shared.clone(),
            drained: Mutex::new(Some(drained_tx)),
        },
    ));
    let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel();
    let signal = DrainSignal {
        shared: shared.clone(),
        requested: Mutex::new(Some(shutdown_rx)),
        drain_delay,
    };
    std::thread::Builder::new()
        .name("pingora".into())
        .spawn(move || {
            server.run(RunArgs {
                shutdown_signal: Box::new(signal),
            })
        })
        .map_err(|err| GatewayError::Tls(format!("cannot start the proxy thread: {err}")))?;
    tracing::info!(https = %https, http = %http, admin = %admin, runtimes, "gateway listening");
    Ok(RunningGateway {
        shutdown: Some(shutdown_tx),
        drained,
        shared,
        certs,
        spans,
        addrs,
        accepted,
    })
}
