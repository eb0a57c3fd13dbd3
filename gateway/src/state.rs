//! What every part of the gateway shares: configuration, metrics, and the life-cycle flags
//! (draining, maintenance) with the in-flight count that drain waits on.

use crate::config::GatewayConfig;
use crate::headers::HeaderPolicy;
use crate::limit::{Limits, SharedLimiter};
use crate::upstream::UpstreamPool;
use aragora_telemetry::catalogue as cat;
use aragora_telemetry::{route_name, METHOD_LABELS, ROUTES};
use arc_swap::ArcSwap;
use arc_swap::Guard;
use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, Registry};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

pub struct GatewayMetrics {
    pub registry: Registry,
    pub http_requests: IntCounterVec,
    pub request_latency: HistogramVec,
    pub upstream_retries: IntCounter,
    pub inflight: IntGauge,
    pub cert_expiry: IntGauge,
    pub maintenance: IntGauge,
    pub ready: IntGauge,
    pub rate_limited: IntCounterVec,
    pub rate_limit_backend_errors: IntCounter,
    pub websocket_upgrade_failures: IntCounterVec,
    pub websocket_connections: prometheus::IntGaugeVec,
    /// WebSocket upgrades refused per client address, as `limit="websockets_per_client"`.
    pub websockets_per_client_refused: IntCounter,
    pub tls_handshakes: IntCounterVec,
    pub tls_handshake_failures: IntCounter,
    pub connections: IntGauge,
    pub connections_refused: IntCounter,
    /// Admin requests refused for their credential (the engine counts its own).
    pub auth_failures: IntCounterVec,
    /// The request path's series of `http_requests`, `request_latency` and `rate_limited`,
    /// resolved once.
    pub series: RequestSeries,
}

impl GatewayMetrics {
    pub fn new() -> (Self, prometheus::IntGaugeVec) {
        // Every series carries component="gateway": the rules tell the gateway and the engine
        // apart by it, whatever job Prometheus scrapes them under.
        let registry = cat::component_registry(cat::GATEWAY);
        cat::BUILD_INFO
            .gauge_vec(&registry)
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let upstream_ready = cat::UPSTREAM_READY.gauge_vec(&registry);
        let http_requests = cat::HTTP_REQUESTS_TOTAL.counter(&registry);
        let request_latency = cat::REQUEST_LATENCY_SECONDS.histogram(&registry);
        let rate_limited = cat::rate_limited(&registry);
        let metrics = Self {
            series: RequestSeries::new(
                http_requests.clone(),
                request_latency.clone(),
                rate_limited.clone(),
            ),
            http_requests,
            request_latency,
            upstream_retries: cat::UPSTREAM_RETRIES_TOTAL.counter_single(&registry),
            inflight: cat::GATEWAY_INFLIGHT_REQUESTS.gauge(&registry),
            cert_expiry: cat::TLS_CERT_EXPIRY_TIMESTAMP_SECONDS.gauge(&registry),
            maintenance: cat::MAINTENANCE_MODE.gauge(&registry),
            ready: cat::READY.gauge(&registry),
            rate_limited,
            rate_limit_backend_errors: cat::RATE_LIMIT_BACKEND_ERRORS_TOTAL
                .counter_single(&registry),
            websocket_upgrade_failures: cat::WEBSOCKET_UPGRADE_FAILURES_TOTAL.counter(&registry),
            websocket_connections: cat::GATEWAY_WEBSOCKET_CONNECTIONS.gauge_vec(&registry),
            // The engine's per-client refusal counter, under its label for this limit (the
            // series carry component="gateway"), so one panel and alert see both.
            websockets_per_client_refused: cat::CLIENT_LIMIT_REFUSALS_TOTAL
                .counter(&registry)
                .with_label_values(&["websockets_per_client"]),
            tls_handshakes: cat::TLS_HANDSHAKES_TOTAL.counter(&registry),
            tls_handshake_failures: cat::TLS_HANDSHAKE_FAILURES_TOTAL.counter_single(&registry),
            connections: cat::GATEWAY_CONNECTIONS.gauge(&registry),
            connections_refused: cat::GATEWAY_CONNECTIONS_REFUSED_TOTAL.counter_single(&registry),
            auth_failures: cat::auth_failures(&registry),
            registry,
        };
        (metrics, upstream_ready)
    }
}

/// The `method` labels, in the order of [`RequestSeries`]' table.
const METHODS: [&str; 8] = METHOD_LABELS;

/// Statuses remembered per method and route; more (rare) are looked up by label values.
const STATUSES_KEPT: usize = 8;

/// The request path's metric handles, resolved once per method and route template (and status)
/// instead of by label values on every request: `with_label_values` hashes the values and takes
/// the vector's read lock each time. Series appear when first used, as before, so `/metrics`
/// shows the same series.
pub struct RequestSeries {
    requests: IntCounterVec,
    latency: HistogramVec,
    /// By method × route (`ROUTES`, then `unmatched`).
    routes: Box<[OnceLock<RouteSeries>]>,
    /// `rate_limited` by route, created up front as the catalogue does.
    rate_limited: Box<[IntCounter]>,
}

struct RouteSeries {
    latency: Histogram,
    /// Filled in order, each slot once, so a status is in at most one slot.
    statuses: [OnceLock<(u16, IntCounter)>; STATUSES_KEPT],
}

impl RequestSeries {
    fn new(requests: IntCounterVec, latency: HistogramVec, rate_limited: IntCounterVec) -> Self {
        let by_route = (0..=ROUTES.len())
            .map(|slot| rate_limited.with_label_values(&[route_name(slot)]))
            .collect();
        Self {
            requests,
            latency,
            routes: (0..METHODS.len() * (ROUTES.len() + 1))
                .map(|_| OnceLock::new())
                .collect(),
            rate_limited: by_route,
        }
    }

    /// The series of `method` (a `method_label`) on the route of `route_slot` (a
    /// `route_index`).
    fn route(&self, method: &str, route_slot: usize) -> &RouteSeries {
        let method_slot = METHODS
            .iter()
            .position(|known| *known == method)
            .unwrap_or(METHODS.len() - 1);
        let route_slot = route_slot.min(ROUTES.len());
        self.routes[method_slot * (ROUTES.len() + 1) + route_slot].get_or_init(|| RouteSeries {
            latency: self
                .latency
                .with_label_values(&[METHODS[method_slot], route_name(route_slot)]),
            statuses: Default::default(),
        })
    }

    /// Counts one answered request (`status` 0 when none was written) and its latency.
    pub fn observe(&self, method: &str, route_slot: usize, status: u16, seconds: f64) {
        let series = self.route(method, route_slot);
        series.latency.observe(seconds);
        let label = || {
            let code = http::StatusCode::from_u16(status).ok();
            let status = code.as_ref().map_or("0", |c| c.as_str()).to_string();
            let route = route_name(route_slot.min(ROUTES.len()));
            self.requests
                .with_label_values(&[method, route, status.as_str()])
        };
        let kept = series.statuses.iter().find_map(|slot| {
            let (kept, counter) = slot.get_or_init(|| (status, label()));
            (*kept == status).then_some(counter)
        });
        match kept {
            Some(counter) => counter.inc(),
            None => label().inc(),
        }
    }

    /// Counts one request refused by the rate limit, on the route of `route_slot`.
    pub fn rate_limited(&self, route_slot: usize) {
        self.rate_limited[route_slot.min(ROUTES.len())].inc();
    }
}

/// Shared by the proxy, the admin listener, the health checker and the drain.
pub struct Shared {
    config: ArcSwap<GatewayConfig>,
    /// The Redis-backed limit shared with the other gateways, when `ARAGORA_REDIS_URL` is set.
    pub shared_limiter: Option<Arc<SharedLimiter>>,
    /// The rate limiters, rebuilt when a reload changes them.
    limits: ArcSwap<Limits>,
    pub metrics: GatewayMetrics,
    pub pool: Arc<UpstreamPool>,
    draining: AtomicBool,
    maintenance: AtomicBool,
    inflight: AtomicUsize,
    /// `Strict-Transport-Security` value of the configuration in force.
    hsts: ArcSwap<http::HeaderValue>,
    /// `Server` and the security headers of the configuration in force, per route.
    headers: ArcSwap<HeaderPolicy>,
    /// Upgraded connections, for closing them with 1001 at the drain timeout.
    pub websockets: Arc<crate::websockets::OpenWebSockets>,
}

fn limits_of(config: &GatewayConfig) -> Limits {
    Limits::new(
        config.rate_limit_per_minute,
        config.burst(),
        config.rate_limit_routes.entries(),
        config.rate_limit_allow.entries(),
    )
}

fn headers_of(config: &GatewayConfig) -> HeaderPolicy {
    HeaderPolicy::new(
        &config.server_header,
        config.security_headers.entries(),
        config.security_header_routes.entries(),
    )
}

fn hsts_value(config: &GatewayConfig) -> http::HeaderValue {
    let value = format!("max-age={}; includeSubDomains", config.hsts_max_age_secs);
    http::HeaderValue::from_str(&value).expect("digits and ASCII are a valid header")
}

impl Shared {
    pub fn new(config: GatewayConfig, metrics: GatewayMetrics, pool: Arc<UpstreamPool>) -> Self {
        let shared_limiter = config.redis_url.as_deref().and_then(|url| {
            SharedLimiter::new(
                url,
                config.redis_ca_file.as_deref(),
                &config.rate_limit_key_prefix,
                config.rate_limit_fail_open,
                metrics.rate_limit_backend_errors.clone(),
            )
            .map_err(|err| tracing::error!(error = %err, "shared rate limits are off"))
            .ok()
            .map(Arc::new)
        });
        Self {
            shared_limiter,
            hsts: ArcSwap::from_pointee(hsts_value(&config)),
            headers: ArcSwap::from_pointee(headers_of(&config)),
            limits: ArcSwap::from_pointee(limits_of(&config)),
            config: ArcSwap::from_pointee(config),
            metrics,
            pool,
            draining: AtomicBool::new(false),
            maintenance: AtomicBool::new(false),
            inflight: AtomicUsize::new(0),
            websockets: Arc::default(),
        }
    }

    /// The configuration in force (replaced whole by a reload), to keep.
    pub fn config(&self) -> Arc<GatewayConfig> {
        self.config.load_full()
    }

    /// The configuration in force, borrowed for a while (a request's phase): an `arc-swap`
    /// guard, which touches no reference count shared with the other threads, as
    /// [`config`](Self::config) does.
    pub fn config_now(&self) -> Guard<Arc<GatewayConfig>> {
        self.config.load()
    }

    pub fn set_config(&self, config: GatewayConfig) {
        let old = self.config();
        let changed = old.rate_limit_per_minute != config.rate_limit_per_minute
            || old.burst() != config.burst()
            // Who a client is depends on the trusted proxies: their buckets start afresh.
            || old.trusted_proxies != config.trusted_proxies
            || old.rate_limit_routes != config.rate_limit_routes
            || old.rate_limit_allow != config.rate_limit_allow;
        if changed {
            self.limits.store(Arc::new(limits_of(&config)));
        }
        self.hsts.store(Arc::new(hsts_value(&config)));
        self.headers.store(Arc::new(headers_of(&config)));
        self.config.store(Arc::new(config));
    }

    /// The `Strict-Transport-Security` header value, built once per configuration.
    pub fn hsts(&self) -> http::HeaderValue {
        http::HeaderValue::clone(&self.hsts.load())
    }

    /// The edge's headers in force, borrowed (an `arc-swap` guard, as
    /// [`config_now`](Self::config_now)).
    pub fn headers(&self) -> Guard<Arc<HeaderPolicy>> {
        self.headers.load()
    }

    /// The rate limiters in force, borrowed (an `arc-swap` guard, as
    /// [`config_now`](Self::config_now)).
    pub fn limits(&self) -> Guard<Arc<Limits>> {
        self.limits.load()
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.metrics.ready.set(0);
    }

    pub fn in_maintenance(&self) -> bool {
        self.maintenance.load(Ordering::SeqCst)
    }

    pub fn set_maintenance(&self, on: bool) {
        self.maintenance.store(on, Ordering::SeqCst);
        self.refresh_maintenance_gauge();
        tracing::warn!(enabled = on, "maintenance mode changed");
    }

    /// `aragora_maintenance_mode`: 1 while this gateway refuses for maintenance, by its own
    /// switch (everything but health) or a ready replica's report (new debates).
    pub fn refresh_maintenance_gauge(&self) {
        let on = self.in_maintenance() || self.pool.maintenance().is_some();
        self.metrics.maintenance.set(i64::from(on));
    }

    /// Why the gateway should not get traffic, or None when it should.
    pub fn not_ready_reason(&self) -> Option<String> {
        if self.is_draining() {
            return Some("draining: shutting down".into());
        }
        if !self.pool.any_ready() {
            return Some("no engine replica is ready".into());
        }
        None
    }

    pub fn refresh_ready_gauge(&self) {
        self.metrics
            .ready
            .set(i64::from(self.not_ready_reason().is_none()));
    }

    /// Counts a request in; returns the new in-flight count.
    pub fn enter(&self) -> usize {
        let now = self.inflight.fetch_add(1, Ordering::SeqCst) + 1;
        self.metrics.inflight.set(now as i64);
        now
    }

    pub fn leave(&self) {
        let now = self
            .inflight
            .fetch_sub(1, Ordering::SeqCst)
            .saturating_sub(1);
        self.metrics.inflight.set(now as i64);
    }

    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::SeqCst)
    }
}
