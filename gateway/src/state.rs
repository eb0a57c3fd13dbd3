//! What every part of the gateway shares: configuration, metrics, and the life-cycle flags
//! (draining, maintenance) with the in-flight count that drain waits on.

use crate::config::GatewayConfig;
use crate::upstream::UpstreamPool;
use aragora_telemetry::catalogue as cat;
use arc_swap::ArcSwap;
use prometheus::{HistogramVec, IntCounter, IntCounterVec, IntGauge, Registry};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

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
    pub tls_handshakes: IntCounterVec,
    pub tls_handshake_failures: IntCounter,
    pub connections: IntGauge,
    pub connections_refused: IntCounter,
}

impl GatewayMetrics {
    pub fn new() -> (Self, prometheus::IntGaugeVec) {
        let registry = Registry::new();
        cat::BUILD_INFO
            .gauge_vec(&registry)
            .with_label_values(&[env!("CARGO_PKG_VERSION"), "gateway"])
            .set(1);
        let upstream_ready = cat::UPSTREAM_READY.gauge_vec(&registry);
        let metrics = Self {
            http_requests: cat::HTTP_REQUESTS_TOTAL.counter(&registry),
            request_latency: cat::REQUEST_LATENCY_SECONDS.histogram(&registry),
            upstream_retries: cat::UPSTREAM_RETRIES_TOTAL.counter_single(&registry),
            inflight: cat::GATEWAY_INFLIGHT_REQUESTS.gauge(&registry),
            cert_expiry: cat::TLS_CERT_EXPIRY_TIMESTAMP_SECONDS.gauge(&registry),
            maintenance: cat::MAINTENANCE_MODE.gauge(&registry),
            ready: cat::READY.gauge(&registry),
            rate_limited: cat::RATE_LIMITED_TOTAL.counter(&registry),
            rate_limit_backend_errors: cat::RATE_LIMIT_BACKEND_ERRORS_TOTAL
                .counter_single(&registry),
            websocket_upgrade_failures: cat::WEBSOCKET_UPGRADE_FAILURES_TOTAL.counter(&registry),
            websocket_connections: cat::GATEWAY_WEBSOCKET_CONNECTIONS.gauge_vec(&registry),
            tls_handshakes: cat::TLS_HANDSHAKES_TOTAL.counter(&registry),
            tls_handshake_failures: cat::TLS_HANDSHAKE_FAILURES_TOTAL.counter_single(&registry),
            connections: cat::GATEWAY_CONNECTIONS.gauge(&registry),
            connections_refused: cat::GATEWAY_CONNECTIONS_REFUSED_TOTAL.counter_single(&registry),
            registry,
        };
        (metrics, upstream_ready)
    }
}

/// Rate limiting as configured: the limiter (None when off) and whom to believe about
/// client addresses.
pub struct Limits {
    pub limiter: Option<crate::limit::RateLimiter>,
    /// Per-route limiters, by (method, route template), replacing the default there.
    pub routes: Vec<(crate::limit::RouteLimit, Option<crate::limit::RateLimiter>)>,
    pub trusted: Vec<ipnet::IpNet>,
    pub allow: Vec<ipnet::IpNet>,
    /// Refusals per client, for the admin listener's top list (bounded).
    refused: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, u64>>,
}

/// Clients whose refusals are remembered for `/api/system/rate-limits`.
const REFUSED_CLIENTS_KEPT: usize = 10_000;

impl Limits {
    fn from_config(config: &GatewayConfig) -> Self {
        use crate::limit::{parse_networks, parse_route_limits, RateLimiter};
        // All validated before the gateway starts or reloads.
        let routes = parse_route_limits(&config.rate_limit_routes)
            .unwrap_or_default()
            .into_iter()
            .map(|route| {
                let limiter = RateLimiter::new(route.per_minute, route.per_minute);
                (route, limiter)
            })
            .collect();
        Self {
            limiter: RateLimiter::new(config.rate_limit_per_minute, config.burst()),
            routes,
            trusted: parse_networks(&config.trusted_proxies).unwrap_or_default(),
            allow: parse_networks(&config.rate_limit_allow).unwrap_or_default(),
            refused: Default::default(),
        }
    }

    /// The limiter for a request (the route's own if configured, else the default) and
    /// whether it is a route's.
    pub fn limiter_for(
        &self,
        method: &str,
        route: &str,
    ) -> Option<(&crate::limit::RateLimiter, bool)> {
        match self
            .routes
            .iter()
            .find(|(r, _)| r.method == method && r.route == route)
        {
            Some((_, limiter)) => limiter.as_ref().map(|l| (l, true)),
            None => self.limiter.as_ref().map(|l| (l, false)),
        }
    }

    pub fn is_allowed_client(&self, client: &std::net::IpAddr) -> bool {
        self.allow.iter().any(|net| net.contains(client))
    }

    pub fn note_refusal(&self, client: std::net::IpAddr) {
        let mut refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        if refused.len() < REFUSED_CLIENTS_KEPT || refused.contains_key(&client) {
            *refused.entry(client).or_default() += 1;
        }
    }

    /// The clients refused most, most first.
    pub fn top_refused(&self, count: usize) -> Vec<(std::net::IpAddr, u64)> {
        let refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        let mut top: Vec<(std::net::IpAddr, u64)> =
            refused.iter().map(|(ip, n)| (*ip, *n)).collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        top.truncate(count);
        top
    }

    pub fn sweep(&self) {
        for limiter in self
            .limiter
            .iter()
            .chain(self.routes.iter().filter_map(|(_, l)| l.as_ref()))
        {
            limiter.sweep();
        }
    }
}

/// Shared by the proxy, the admin listener, the health checker and the drain.
pub struct Shared {
    config: ArcSwap<GatewayConfig>,
    /// The Redis-backed limit shared with the other gateways, when `ARAGORA_REDIS_URL` is set.
    pub shared_limiter: Option<Arc<crate::limit::SharedLimiter>>,
    /// The rate limiter and the trusted proxy networks, rebuilt on reload.
    limits: ArcSwap<Limits>,
    pub metrics: GatewayMetrics,
    pub pool: Arc<UpstreamPool>,
    draining: AtomicBool,
    maintenance: AtomicBool,
    inflight: AtomicUsize,
    /// `Strict-Transport-Security` value of the configuration in force.
    hsts: ArcSwap<http::HeaderValue>,
    /// Upgraded connections, for closing them with 1001 at the drain timeout.
    pub websockets: Arc<crate::websockets::OpenWebSockets>,
}

fn hsts_value(config: &GatewayConfig) -> http::HeaderValue {
    let value = format!("max-age={}; includeSubDomains", config.hsts_max_age_secs);
    http::HeaderValue::from_str(&value).expect("digits and ASCII are a valid header")
}

impl Shared {
    pub fn new(config: GatewayConfig, metrics: GatewayMetrics, pool: Arc<UpstreamPool>) -> Self {
        let shared_limiter = config.redis_url.as_deref().and_then(|url| {
            crate::limit::SharedLimiter::new(
                url,
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
            limits: ArcSwap::from_pointee(Limits::from_config(&config)),
            config: ArcSwap::from_pointee(config),
            metrics,
            pool,
            draining: AtomicBool::new(false),
            maintenance: AtomicBool::new(false),
            inflight: AtomicUsize::new(0),
            websockets: Arc::default(),
        }
    }

    /// The configuration in force (replaced whole by a reload).
    pub fn config(&self) -> Arc<GatewayConfig> {
        self.config.load_full()
    }

    pub fn set_config(&self, config: GatewayConfig) {
        let old = self.config();
        let changed = old.rate_limit_per_minute != config.rate_limit_per_minute
            || old.burst() != config.burst()
            || old.trusted_proxies != config.trusted_proxies
            || old.rate_limit_routes != config.rate_limit_routes
            || old.rate_limit_allow != config.rate_limit_allow;
        if changed {
            self.limits.store(Arc::new(Limits::from_config(&config)));
        }
        self.hsts.store(Arc::new(hsts_value(&config)));
        self.config.store(Arc::new(config));
    }

    /// The `Strict-Transport-Security` header value, built once per configuration.
    pub fn hsts(&self) -> http::HeaderValue {
        http::HeaderValue::clone(&self.hsts.load())
    }

    pub fn limits(&self) -> Arc<Limits> {
        self.limits.load_full()
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
        self.metrics.maintenance.set(i64::from(on));
        tracing::warn!(enabled = on, "maintenance mode changed");
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
