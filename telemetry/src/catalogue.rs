//! Every metric aragora exports: name, type, help text, labels and buckets, declared once.
//!
//! Names follow the operations documents users already know (`aragora_http_requests_total`,
//! `aragora_request_latency_seconds`, ...). The HTTP status label is `status`, as in the
//! runbooks' own queries (`aragora_http_requests_total{status=~"5.."}`). Label values are
//! bounded: route templates (`/api/debates/{id}`), agent names and outcomes, never ids.

use prometheus::{
    Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};
use std::collections::HashMap;

/// The label every series of the gateway and of the engine carries, set by its registry
/// ([`component_registry`]). The two export the same HTTP metric names; this label, not the
/// scrape job, tells "measured at the edge" from "at the engine", so the generated rules and
/// dashboards match whatever job names a Prometheus scrapes them under (the seeds use one job,
/// `aragora` or `aragora-backend`), and in `aragora up`, where both run in one process.
pub const COMPONENT_LABEL: &str = "component";
/// [`COMPONENT_LABEL`]'s value on the gateway's series.
pub const GATEWAY: &str = "gateway";
/// [`COMPONENT_LABEL`]'s value on the engine's series.
pub const ENGINE: &str = "engine";

/// A registry whose every series carries `component="<component>"` (appended at gather time).
pub fn component_registry(component: &str) -> Registry {
    let labels = HashMap::from([(COMPONENT_LABEL.to_string(), component.to_string())]);
    Registry::new_custom(None, Some(labels)).expect("no prefix; a constant label")
}

/// What kind of collector a [`MetricDef`] declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric of the catalogue.
#[derive(Debug, Clone, Copy)]
pub struct MetricDef {
    pub name: &'static str,
    pub kind: MetricKind,
    pub help: &'static str,
    pub labels: &'static [&'static str],
    /// Histogram buckets (upper bounds, seconds); empty for counters and gauges.
    pub buckets: &'static [f64],
}

/// Request latency buckets. They contain the latency SLO thresholds (0.5 s) and the per-endpoint
/// p95 targets of the deployment checklist (0.05, 0.2, 0.5 s), so that "faster than X" is an
/// exact bucket boundary and never an interpolation.
pub const REQUEST_LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0,
];

/// Debate durations run from milliseconds (offline agents) to the 900 s debate timeout.
pub const DEBATE_DURATION_BUCKETS: &[f64] = &[
    0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0,
];

/// Agent calls: from an offline agent's microseconds to the 240 s agent timeout.
pub const AGENT_LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 240.0,
];

pub const HTTP_REQUESTS_TOTAL: MetricDef = MetricDef {
    name: "aragora_http_requests_total",
    kind: MetricKind::Counter,
    help: "HTTP requests answered, by method, route template and status code.",
    labels: &["method", "route", "status"],
    buckets: &[],
};

pub const REQUEST_LATENCY_SECONDS: MetricDef = MetricDef {
    name: "aragora_request_latency_seconds",
    kind: MetricKind::Histogram,
    help: "Time from request received to response headers sent, by method and route template.",
    labels: &["method", "route"],
    buckets: REQUEST_LATENCY_BUCKETS,
};

pub const DEBATES_TOTAL: MetricDef = MetricDef {
    name: "aragora_debates_total",
    kind: MetricKind::Counter,
    help: "Debates that reached a final state, by outcome (consensus, no_consensus, failed, timed_out, cancelled).",
    labels: &["outcome"],
    buckets: &[],
};

pub const DEBATE_DURATION_SECONDS: MetricDef = MetricDef {
    name: "aragora_debate_duration_seconds",
    kind: MetricKind::Histogram,
    help: "Wall time from a debate's start to its final state, by outcome.",
    labels: &["outcome"],
    buckets: DEBATE_DURATION_BUCKETS,
};

pub const ACTIVE_DEBATES: MetricDef = MetricDef {
    name: "aragora_active_debates",
    kind: MetricKind::Gauge,
    help: "Debates running now on this replica.",
    labels: &[],
    buckets: &[],
};

pub const QUEUED_DEBATES: MetricDef = MetricDef {
    name: "aragora_queued_debates",
    kind: MetricKind::Gauge,
    help: "Debates accepted and waiting for a free slot (ARAGORA_MAX_CONCURRENT_DEBATES) on this replica.",
    labels: &[],
    buckets: &[],
};

pub const AGENT_CALLS_TOTAL: MetricDef = MetricDef {
    name: "aragora_agent_calls_total",
    kind: MetricKind::Counter,
    help: "Calls to debate agents, by agent, provider and status (success, error, timeout).",
    labels: &["agent", "provider", "status"],
    buckets: &[],
};

pub const AGENT_LATENCY_SECONDS: MetricDef = MetricDef {
    name: "aragora_agent_latency_seconds",
    kind: MetricKind::Histogram,
    help: "Time an agent took to answer one call, by agent and provider.",
    labels: &["agent", "provider"],
    buckets: AGENT_LATENCY_BUCKETS,
};

pub const AGENT_ERRORS_TOTAL: MetricDef = MetricDef {
    name: "aragora_agent_errors_total",
    kind: MetricKind::Counter,
    help: "Failed agent calls, by agent and error type (timeout, rate_limited, server_error, client_error, malformed_response, connection, circuit_open).",
    labels: &["agent", "error_type"],
    buckets: &[],
};

/// The values of [`AGENT_ERRORS_TOTAL`]'s `error_type` a configured agent can fail with,
/// each exported at 0 for every agent from the start.
pub const AGENT_ERROR_TYPES: &[&str] = &[
    "timeout",
    "rate_limited",
    "server_error",
    "client_error",
    "malformed_response",
    "connection",
    "circuit_open",
];

/// The values of [`AGENT_CALLS_TOTAL`]'s `status`.
pub const AGENT_CALL_STATUSES: &[&str] = &["success", "error", "timeout"];

/// The values of [`TOKENS_USED_TOTAL`]'s `direction`.
pub const TOKEN_DIRECTIONS: &[&str] = &["input", "output"];

pub const CIRCUIT_BREAKER_STATE: MetricDef = MetricDef {
    name: "aragora_circuit_breaker_state",
    kind: MetricKind::Gauge,
    help: "Circuit breaker of each LLM agent: 0 closed, 1 open, 2 half-open.",
    labels: &["agent"],
    buckets: &[],
};

pub const TOKENS_USED_TOTAL: MetricDef = MetricDef {
    name: "aragora_tokens_used_total",
    kind: MetricKind::Counter,
    help: "Tokens consumed, by provider and direction (input, output).",
    labels: &["provider", "direction"],
    buckets: &[],
};

pub const AGENT_FALLBACKS_TOTAL: MetricDef = MetricDef {
    name: "aragora_agent_fallbacks_total",
    kind: MetricKind::Counter,
    help: "Agent calls answered by the OpenRouter fallback, by agent and the provider that failed.",
    labels: &["agent", "from_provider"],
    buckets: &[],
};

pub const RECEIPTS_ISSUED_TOTAL: MetricDef = MetricDef {
    name: "aragora_receipts_issued_total",
    kind: MetricKind::Counter,
    help: "Signed receipts issued for completed debates.",
    labels: &[],
    buckets: &[],
};

/// Retention cleanups last from milliseconds (nothing to delete) to hours (years of backlog
/// in batches).
pub const RECEIPT_CLEANUP_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 14400.0,
];

/// The values of [`RECEIPT_CLEANUP_TOTAL`]'s `status`.
pub const RECEIPT_CLEANUP_STATUSES: &[&str] = &["success", "failure"];

/// The runbook's name: cleanups of the Receipt Retention Scheduler.
pub const RECEIPT_CLEANUP_TOTAL: MetricDef = MetricDef {
    name: "aragora_receipt_cleanup_total",
    kind: MetricKind::Counter,
    help: "Retention cleanups (scheduled or asked for) this replica ran, by status (success, failure); dry runs are not counted.",
    labels: &["status"],
    buckets: &[],
};

pub const RECEIPT_CLEANUP_DURATION_SECONDS: MetricDef = MetricDef {
    name: "aragora_receipt_cleanup_duration_seconds",
    kind: MetricKind::Histogram,
    help: "Wall time of each retention cleanup this replica ran, from taking the lease to recording the run.",
    labels: &[],
    buckets: RECEIPT_CLEANUP_BUCKETS,
};

pub const RECEIPTS_DELETED_TOTAL: MetricDef = MetricDef {
    name: "aragora_receipts_deleted_total",
    kind: MetricKind::Counter,
    help: "Receipts deleted by this replica's retention cleanups (past ARAGORA_RECEIPT_RETENTION_DAYS).",
    labels: &[],
    buckets: &[],
};

pub const DEBATES_DELETED_TOTAL: MetricDef = MetricDef {
    name: "aragora_debates_deleted_total",
    kind: MetricKind::Counter,
    help: "Finished debates (with their events) deleted by this replica's retention cleanups (past ARAGORA_DEBATE_RETENTION_DAYS).",
    labels: &[],
    buckets: &[],
};

pub const DEBATES_ADOPTED_TOTAL: MetricDef = MetricDef {
    name: "aragora_debates_adopted_total",
    kind: MetricKind::Counter,
    help: "Debates this replica adopted after their owner's lease expired (the owner died or was paused), resumed from their events.",
    labels: &[],
    buckets: &[],
};

/// The values of [`AUTH_FAILURES_TOTAL`]'s `reason`: why a request's credentials were refused
/// (401: missing, malformed, expired, bad_signature, revoked, unknown_key; an unlisted browser
/// origin: origin) or not enough (403: forbidden).
pub const AUTH_FAILURE_REASONS: &[&str] = &[
    "missing",
    "malformed",
    "expired",
    "bad_signature",
    "revoked",
    "unknown_key",
    "forbidden",
    "origin",
];

pub const AUTH_FAILURES_TOTAL: MetricDef = MetricDef {
    name: "aragora_auth_failures_total",
    kind: MetricKind::Counter,
    help: "Requests refused for their credentials (by the engine, and by the gateway's admin listener), by reason (missing, malformed, expired, bad_signature, revoked, unknown_key, forbidden, origin).",
    labels: &["reason"],
    buckets: &[],
};

/// [`AUTH_FAILURES_TOTAL`] with every reason's series at 0 from the start: the family is
/// exported before the first failure, and `rate()` sees the first failures of a burst (a
/// series born at 1 has no earlier sample to rise from).
pub fn auth_failures(registry: &Registry) -> IntCounterVec {
    let counter = AUTH_FAILURES_TOTAL.counter(registry);
    for reason in AUTH_FAILURE_REASONS {
        // Creating the child is what makes its series exist, at 0.
        let _ = counter.with_label_values(&[reason]);
    }
    counter
}

/// The values of [`CLIENT_LIMIT_REFUSALS_TOTAL`]'s `limit`: which per-client limit refused
/// (`ARAGORA_WS_MAX_CONNECTIONS_PER_CLIENT`, `ARAGORA_WS_MAX_SUBSCRIPTIONS`,
/// `ARAGORA_WS_MAX_MESSAGES_PER_SECOND`, `ARAGORA_DEBATE_QUEUE_PER_CLIENT`,
/// `ARAGORA_MAX_LIST_LIMIT`, in that order).
pub const CLIENT_LIMITS: &[&str] = &[
    "websockets_per_client",
    "subscriptions_per_websocket",
    "messages_per_websocket",
    "debates_per_client",
    "list_limit",
];

pub const CLIENT_LIMIT_REFUSALS_TOTAL: MetricDef = MetricDef {
    name: "aragora_client_limit_refusals_total",
    kind: MetricKind::Counter,
    help: "Requests, WebSocket upgrades and subscriptions the engine refused because one client reached its own limit, by limit (websockets_per_client, subscriptions_per_websocket, messages_per_websocket, debates_per_client, list_limit); on the gateway, WebSocket upgrades refused per client address (websockets_per_client).",
    labels: &["limit"],
    buckets: &[],
};

pub const CLIENT_LIMITS_SHARED: MetricDef = MetricDef {
    name: "aragora_client_limits_shared",
    kind: MetricKind::Gauge,
    help: "1 while this engine replica counts per-client WebSockets and debates across the replicas through Redis; 0 while it counts alone (no ARAGORA_REDIS_URL, or Redis not answering: a client may then hold up to the limit on each replica).",
    labels: &[],
    buckets: &[],
};

/// [`CLIENT_LIMIT_REFUSALS_TOTAL`] with every limit's series at 0 from the start, as
/// [`auth_failures`] does for its reasons.
pub fn client_limit_refusals(registry: &Registry) -> IntCounterVec {
    let counter = CLIENT_LIMIT_REFUSALS_TOTAL.counter(registry);
    for limit in CLIENT_LIMITS {
        let _ = counter.with_label_values(&[limit]);
    }
    counter
}

pub const UPSTREAM_READY: MetricDef = MetricDef {
    name: "aragora_upstream_ready",
    kind: MetricKind::Gauge,
    help: "1 while the gateway routes to this engine replica (its /readyz passes), 0 otherwise.",
    labels: &["upstream"],
    buckets: &[],
};

pub const UPSTREAM_RETRIES_TOTAL: MetricDef = MetricDef {
    name: "aragora_upstream_retries_total",
    kind: MetricKind::Counter,
    help: "Requests the gateway sent to another replica after a connection to one failed.",
    labels: &[],
    buckets: &[],
};

pub const GATEWAY_INFLIGHT_REQUESTS: MetricDef = MetricDef {
    name: "aragora_gateway_inflight_requests",
    kind: MetricKind::Gauge,
    help: "Requests (including open WebSockets) the gateway is serving now.",
    labels: &[],
    buckets: &[],
};

pub const TLS_CERT_EXPIRY_TIMESTAMP_SECONDS: MetricDef = MetricDef {
    name: "aragora_tls_cert_expiry_timestamp_seconds",
    kind: MetricKind::Gauge,
    help: "Unix time at which the gateway's TLS certificate expires.",
    labels: &[],
    buckets: &[],
};

pub const TLS_HANDSHAKES_TOTAL: MetricDef = MetricDef {
    name: "aragora_tls_handshakes_total",
    kind: MetricKind::Counter,
    help: "TLS handshakes the gateway completed on its HTTPS listener, by protocol version.",
    labels: &["version"],
    buckets: &[],
};

pub const TLS_HANDSHAKE_FAILURES_TOTAL: MetricDef = MetricDef {
    name: "aragora_tls_handshake_failures_total",
    kind: MetricKind::Counter,
    help: "TLS handshakes on the gateway's HTTPS listener that failed or timed out (an old protocol version, no shared cipher, a client that hung up).",
    labels: &[],
    buckets: &[],
};

pub const TLS_OCSP_STAPLED: MetricDef = MetricDef {
    name: "aragora_tls_ocsp_stapled",
    kind: MetricKind::Gauge,
    help: "1 while the gateway staples a current, good OCSP response to its handshakes; 0 while it staples none (stapling off, no good response yet, or the last one expired or said revoked).",
    labels: &[],
    buckets: &[],
};

pub const TLS_OCSP_STAPLE_AGE_SECONDS: MetricDef = MetricDef {
    name: "aragora_tls_ocsp_staple_age_seconds",
    kind: MetricKind::Gauge,
    help: "Seconds since the thisUpdate of the OCSP response the gateway staples; 0 while it staples none.",
    labels: &[],
    buckets: &[],
};

pub const TLS_OCSP_STAPLING_ENABLED: MetricDef = MetricDef {
    name: "aragora_tls_ocsp_stapling_enabled",
    kind: MetricKind::Gauge,
    help: "1 while the current certificate is to be stapled (a response file, or responses fetched from its responder); 0 while stapling is off or the certificate names no responder.",
    labels: &[],
    buckets: &[],
};

pub const TLS_OCSP_STAPLE_EXPIRES_IN_SECONDS: MetricDef = MetricDef {
    name: "aragora_tls_ocsp_staple_expires_in_seconds",
    kind: MetricKind::Gauge,
    help: "Seconds until the nextUpdate of the OCSP response the gateway staples, after which it is no longer stapled; 0 while it staples none.",
    labels: &[],
    buckets: &[],
};

pub const TLS_OCSP_REFRESH_FAILURES_TOTAL: MetricDef = MetricDef {
    name: "aragora_tls_ocsp_refresh_failures_total",
    kind: MetricKind::Counter,
    help: "Fetches of the certificate's OCSP response that did not staple, by reason: unreachable, refused (an HTTP or OCSP error status), invalid (did not verify), revoked, unknown.",
    labels: &["reason"],
    buckets: &[],
};

pub const GATEWAY_CONNECTIONS: MetricDef = MetricDef {
    name: "aragora_gateway_connections",
    kind: MetricKind::Gauge,
    help: "TLS connections open on the gateway's HTTPS listener now.",
    labels: &[],
    buckets: &[],
};

pub const GATEWAY_CONNECTIONS_REFUSED_TOTAL: MetricDef = MetricDef {
    name: "aragora_gateway_connections_refused_total",
    kind: MetricKind::Counter,
    help: "Connections the gateway closed at accept because ARAGORA_GATEWAY_MAX_CONNECTIONS were open.",
    labels: &[],
    buckets: &[],
};

pub const MAINTENANCE_MODE: MetricDef = MetricDef {
    name: "aragora_maintenance_mode",
    kind: MetricKind::Gauge,
    help: "1 while maintenance mode is on, 0 otherwise: on the engine, new debates refused (the shared database row); on the gateway, its own switch or a ready replica's report.",
    labels: &[],
    buckets: &[],
};

pub const RATE_LIMITED_TOTAL: MetricDef = MetricDef {
    name: "aragora_rate_limited_total",
    kind: MetricKind::Counter,
    help: "Requests refused with 429 by the gateway's rate limit, by route template.",
    labels: &["route"],
    buckets: &[],
};

/// [`RATE_LIMITED_TOTAL`] with every route template's series (and `unmatched`'s) at 0 from
/// the start, as [`auth_failures`] does for its reasons: `rate()` over the first refusals
/// of a burst has a 0 to rise from, and the panel has data before the first 429.
pub fn rate_limited(registry: &Registry) -> IntCounterVec {
    let counter = RATE_LIMITED_TOTAL.counter(registry);
    for route in crate::http::ROUTES
        .iter()
        .chain(&[crate::http::UNMATCHED_ROUTE])
    {
        let _ = counter.with_label_values(&[route]);
    }
    counter
}

pub const RATE_LIMIT_BACKEND_ERRORS_TOTAL: MetricDef = MetricDef {
    name: "aragora_rate_limit_backend_errors_total",
    kind: MetricKind::Counter,
    help: "Rate-limit checks Redis did not answer in time; the gateway limited alone (or refused, when failing closed).",
    labels: &[],
    buckets: &[],
};

pub const WEBSOCKET_UPGRADE_FAILURES_TOTAL: MetricDef = MetricDef {
    name: "aragora_websocket_upgrade_failures_total",
    kind: MetricKind::Counter,
    help: "WebSocket upgrade requests through the gateway that did not end in 101 Switching Protocols, by route template.",
    labels: &["route"],
    buckets: &[],
};

pub const WEBSOCKET_CONNECTIONS: MetricDef = MetricDef {
    name: "aragora_websocket_connections",
    kind: MetricKind::Gauge,
    help: "WebSocket connections open now.",
    labels: &[],
    buckets: &[],
};

/// The gateway's view of the same gauge: upgraded connections it holds open, per engine replica
/// (`upstream` is the replica's address), so a drained replica's share is seen moving. Same name
/// as [`WEBSOCKET_CONNECTIONS`], told apart by [`COMPONENT_LABEL`]; not in [`ALL`], whose names
/// are unique.
pub const GATEWAY_WEBSOCKET_CONNECTIONS: MetricDef = MetricDef {
    name: "aragora_websocket_connections",
    kind: MetricKind::Gauge,
    help: "WebSocket connections the gateway holds open now, by engine replica.",
    labels: &["upstream"],
    buckets: &[],
};

pub const SLO_SLI_ERROR_RATIO: MetricDef = MetricDef {
    name: "aragora_slo_sli_error_ratio",
    kind: MetricKind::Gauge,
    help: "Live SLO evaluation: failed share of the SLI's events over the window (absent without events).",
    labels: &["sloth_service", "sloth_slo", "window"],
    buckets: &[],
};

pub const SLO_BURN_RATE: MetricDef = MetricDef {
    name: "aragora_slo_burn_rate",
    kind: MetricKind::Gauge,
    help: "Live SLO evaluation: error ratio over the error budget for the window (1 spends the budget exactly over the period).",
    labels: &["sloth_service", "sloth_slo", "window"],
    buckets: &[],
};

pub const SLO_ERROR_BUDGET_REMAINING_RATIO: MetricDef = MetricDef {
    name: "aragora_slo_error_budget_remaining_ratio",
    kind: MetricKind::Gauge,
    help: "Live SLO evaluation: share of the period's error budget not yet spent (negative once overspent).",
    labels: &["sloth_service", "sloth_slo"],
    buckets: &[],
};

pub const SLO_OBJECTIVE_RATIO: MetricDef = MetricDef {
    name: "aragora_slo_objective_ratio",
    kind: MetricKind::Gauge,
    help: "Live SLO evaluation: the objective as a ratio (0.999 for 99.9%).",
    labels: &["sloth_service", "sloth_slo"],
    buckets: &[],
};

pub const SLO_ALERT_FIRING: MetricDef = MetricDef {
    name: "aragora_slo_alert_firing",
    kind: MetricKind::Gauge,
    help: "Live SLO evaluation: 1 while the SLO's page or ticket burn-rate alert condition holds.",
    labels: &["sloth_service", "sloth_slo", "sloth_severity"],
    buckets: &[],
};

pub const READY: MetricDef = MetricDef {
    name: "aragora_ready",
    kind: MetricKind::Gauge,
    help: "1 while this process reports ready on /readyz, 0 while starting or draining.",
    labels: &[],
    buckets: &[],
};

pub const BUILD_INFO: MetricDef = MetricDef {
    name: "aragora_build_info",
    kind: MetricKind::Gauge,
    help: "Always 1; the version label says which build is running (the component label, which component).",
    // `component` comes from the registry ([`component_registry`]), as on every series.
    labels: &["version"],
    buckets: &[],
};

pub const DATABASE_UP: MetricDef = MetricDef {
    name: "aragora_database_up",
    kind: MetricKind::Gauge,
    help: "1 when the engine's database answered a probe at the last scrape, 0 when it did not.",
    labels: &[],
    buckets: &[],
};

pub const FAULTS_ACTIVE: MetricDef = MetricDef {
    name: "aragora_faults_active",
    kind: MetricKind::Gauge,
    help: "Faults injected through /api/system/faults and still active, by kind (agent_slow, agent_failing, database_unavailable).",
    labels: &["kind"],
    buckets: &[],
};

pub const OLDEST_RUNNING_DEBATE_SECONDS: MetricDef = MetricDef {
    name: "aragora_oldest_running_debate_seconds",
    kind: MetricKind::Gauge,
    help: "Seconds the longest-running debate on this replica has been running; 0 when none runs.",
    labels: &[],
    buckets: &[],
};

/// The standard process metric name (node and client libraries use it), so existing memory
/// alerts and dashboards work unchanged.
pub const PROCESS_RESIDENT_MEMORY_BYTES: MetricDef = MetricDef {
    name: "process_resident_memory_bytes",
    kind: MetricKind::Gauge,
    help: "Resident memory of the engine process, in bytes, read at scrape time.",
    labels: &[],
    buckets: &[],
};

pub const DR_DRILL_LAST_FAILURE_TIMESTAMP_SECONDS: MetricDef = MetricDef {
    name: "aragora_dr_drill_last_failure_timestamp_seconds",
    kind: MetricKind::Gauge,
    help: "Unix time the last failed DR drill finished (0: none yet), from the DR log in the database.",
    labels: &[],
    buckets: &[],
};

pub const DR_DRILL_LAST_SUCCESS_TIMESTAMP_SECONDS: MetricDef = MetricDef {
    name: "aragora_dr_drill_last_success_timestamp_seconds",
    kind: MetricKind::Gauge,
    help: "Unix time the last passed DR drill finished (0: none yet), from the DR log in the database.",
    labels: &[],
    buckets: &[],
};

pub const DR_DRILL_RTO_SECONDS: MetricDef = MetricDef {
    name: "aragora_dr_drill_rto_seconds",
    kind: MetricKind::Gauge,
    help: "Recovery time measured by the latest DR drill: restore start to a ready engine on the restored copy.",
    labels: &[],
    buckets: &[],
};

pub const DR_DRILL_RPO_SECONDS: MetricDef = MetricDef {
    name: "aragora_dr_drill_rpo_seconds",
    kind: MetricKind::Gauge,
    help: "Recovery point measured by the latest DR drill: how much older the newest restored data was than the primary's at drill start.",
    labels: &[],
    buckets: &[],
};

pub const BACKUP_LAST_SUCCESS_TIMESTAMP_SECONDS: MetricDef = MetricDef {
    name: "aragora_backup_last_success_timestamp_seconds",
    kind: MetricKind::Gauge,
    help: "Unix time the newest completed backup was taken (0: none yet), from the DR log in the database.",
    labels: &[],
    buckets: &[],
};

pub const CHAOS_PROXY_CONNECTIONS: MetricDef = MetricDef {
    name: "aragora_chaos_proxy_connections",
    kind: MetricKind::Gauge,
    help: "Connections open through a fault proxy (`aragora chaos proxy`), by proxy.",
    labels: &["proxy"],
    buckets: &[],
};

pub const CHAOS_PROXY_BYTES_TOTAL: MetricDef = MetricDef {
    name: "aragora_chaos_proxy_bytes_total",
    kind: MetricKind::Counter,
    help: "Bytes a fault proxy passed on, by proxy and direction (upstream: client to server).",
    labels: &["proxy", "direction"],
    buckets: &[],
};

pub const CHAOS_PROXY_FAULTS_ACTIVE: MetricDef = MetricDef {
    name: "aragora_chaos_proxy_faults_active",
    kind: MetricKind::Gauge,
    help: "Faults of a fault proxy active right now, by proxy and kind (latency, bandwidth, reset, blackhole, refuse, down).",
    labels: &["proxy", "kind"],
    buckets: &[],
};

pub const CHAOS_EXPERIMENT_RUNS_TOTAL: MetricDef = MetricDef {
    name: "aragora_chaos_experiment_runs_total",
    kind: MetricKind::Counter,
    help: "Scheduled chaos experiments run by `aragora control`, by experiment file and status (passed, deviated, not_steady, failed, aborted, invalid).",
    labels: &["experiment", "status"],
    buckets: &[],
};

pub const ALERT_NOTIFICATIONS_RECEIVED_TOTAL: MetricDef = MetricDef {
    name: "aragora_alert_notifications_received_total",
    kind: MetricKind::Counter,
    help: "Alerts `aragora control`'s webhook sink received from Alertmanager, one per alert of each notification, by receiver (pager, chat, other) and the alert's status (firing, resolved).",
    labels: &["receiver", "status"],
    buckets: &[],
};

pub const CONTROL_LEADER: MetricDef = MetricDef {
    name: "aragora_control_leader",
    kind: MetricKind::Gauge,
    help: "1 while this process leads the scheduled work (backups, drills, chaos experiments; the PostgreSQL advisory lock or, on SQLite, the data directory's file lock), 0 while it follows. Exactly one process of a deployment shows 1.",
    labels: &[],
    buckets: &[],
};

/// A gauge set from `compute` when gathered ([`MetricDef::gauge_computed`]).
struct Computed {
    gauge: Gauge,
    compute: Box<dyn Fn() -> f64 + Send + Sync>,
}

impl prometheus::core::Collector for Computed {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.gauge.desc()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.gauge.set((self.compute)());
        self.gauge.collect()
    }
}
/// Webhook attempts: from a local receiver's milliseconds to the 30 s default timeout.
pub const WEBHOOK_LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

pub const WEBHOOK_DELIVERIES_TOTAL: MetricDef = MetricDef {
    name: "aragora_webhook_deliveries_total",
    kind: MetricKind::Counter,
    help: "Webhook delivery attempts by outcome (delivered, retrying: failed and scheduled again, dead_lettered) and event type.",
    labels: &["status", "event_type"],
    buckets: &[],
};

pub const WEBHOOK_DELIVERY_LATENCY_SECONDS: MetricDef = MetricDef {
    name: "aragora_webhook_delivery_latency_seconds",
    kind: MetricKind::Histogram,
    help: "Time from sending a webhook delivery to the receiver's answer (or the timeout), by event type.",
    labels: &["event_type"],
    buckets: WEBHOOK_LATENCY_BUCKETS,
};

pub const WEBHOOK_RETRIES_TOTAL: MetricDef = MetricDef {
    name: "aragora_webhook_retries_total",
    kind: MetricKind::Counter,
    help: "Webhook deliveries scheduled for another attempt after a timeout, connection failure, 429 or 5xx, by event type.",
    labels: &["event_type"],
    buckets: &[],
};

pub const WEBHOOK_DEAD_LETTERED_TOTAL: MetricDef = MetricDef {
    name: "aragora_webhook_dead_lettered_total",
    kind: MetricKind::Counter,
    help: "Webhook deliveries moved to the dead-letter queue (out of retries, or refused for good), by event type.",
    labels: &["event_type"],
    buckets: &[],
};

pub const WEBHOOK_CIRCUIT_BREAKER_STATE: MetricDef = MetricDef {
    name: "aragora_webhook_circuit_breaker_state",
    kind: MetricKind::Gauge,
    help: "Circuit breaker of each webhook receiver endpoint (scheme://host[:port], never a path), the state shared by every replica as of the scrape, one series per subscribed endpoint: 0 closed, 1 open, 2 half-open.",
    labels: &["endpoint"],
    buckets: &[],
};

pub const WEBHOOK_DELIVERIES_DELETED_TOTAL: MetricDef = MetricDef {
    name: "aragora_webhook_deliveries_deleted_total",
    kind: MetricKind::Counter,
    help: "Finished webhook deliveries (delivered or dead, with their bodies) deleted by this replica's retention cleanups (past ARAGORA_WEBHOOK_DELIVERY_RETENTION_DAYS).",
    labels: &[],
    buckets: &[],
};

pub const WEBHOOK_DEAD_LETTER_QUEUE_DEPTH: MetricDef = MetricDef {
    name: "aragora_webhook_dead_letter_queue_depth",
    kind: MetricKind::Gauge,
    help: "Webhook deliveries in the dead-letter queue (the database's count, the same on every replica), read at each scrape.",
    labels: &[],
    buckets: &[],
};

/// Every metric of the catalogue, for generators and for the test that checks a running
/// system exports what rules and dashboards refer to.
pub const ALL: &[MetricDef] = &[
    HTTP_REQUESTS_TOTAL,
    REQUEST_LATENCY_SECONDS,
    DEBATES_TOTAL,
    DEBATE_DURATION_SECONDS,
    ACTIVE_DEBATES,
    QUEUED_DEBATES,
    AGENT_CALLS_TOTAL,
    AGENT_LATENCY_SECONDS,
    AGENT_ERRORS_TOTAL,
    CIRCUIT_BREAKER_STATE,
    TOKENS_USED_TOTAL,
    AGENT_FALLBACKS_TOTAL,
    RECEIPTS_ISSUED_TOTAL,
    RECEIPT_CLEANUP_TOTAL,
    RECEIPT_CLEANUP_DURATION_SECONDS,
    RECEIPTS_DELETED_TOTAL,
    DEBATES_DELETED_TOTAL,
    DEBATES_ADOPTED_TOTAL,
    AUTH_FAILURES_TOTAL,
    CLIENT_LIMIT_REFUSALS_TOTAL,
    CLIENT_LIMITS_SHARED,
    UPSTREAM_READY,
    UPSTREAM_RETRIES_TOTAL,
    GATEWAY_INFLIGHT_REQUESTS,
    TLS_CERT_EXPIRY_TIMESTAMP_SECONDS,
    TLS_HANDSHAKES_TOTAL,
    TLS_HANDSHAKE_FAILURES_TOTAL,
    TLS_OCSP_STAPLED,
    TLS_OCSP_STAPLE_AGE_SECONDS,
    TLS_OCSP_STAPLING_ENABLED,
    TLS_OCSP_STAPLE_EXPIRES_IN_SECONDS,
    TLS_OCSP_REFRESH_FAILURES_TOTAL,
    GATEWAY_CONNECTIONS,
    GATEWAY_CONNECTIONS_REFUSED_TOTAL,
    MAINTENANCE_MODE,
    RATE_LIMITED_TOTAL,
    RATE_LIMIT_BACKEND_ERRORS_TOTAL,
    WEBSOCKET_UPGRADE_FAILURES_TOTAL,
    WEBSOCKET_CONNECTIONS,
    SLO_SLI_ERROR_RATIO,
    SLO_BURN_RATE,
    SLO_ERROR_BUDGET_REMAINING_RATIO,
    SLO_OBJECTIVE_RATIO,
    SLO_ALERT_FIRING,
    READY,
    BUILD_INFO,
    DATABASE_UP,
    FAULTS_ACTIVE,
    OLDEST_RUNNING_DEBATE_SECONDS,
    PROCESS_RESIDENT_MEMORY_BYTES,
    DR_DRILL_LAST_SUCCESS_TIMESTAMP_SECONDS,
    DR_DRILL_LAST_FAILURE_TIMESTAMP_SECONDS,
    DR_DRILL_RTO_SECONDS,
    DR_DRILL_RPO_SECONDS,
    BACKUP_LAST_SUCCESS_TIMESTAMP_SECONDS,
    CHAOS_PROXY_CONNECTIONS,
    CHAOS_PROXY_BYTES_TOTAL,
    CHAOS_PROXY_FAULTS_ACTIVE,
    CHAOS_EXPERIMENT_RUNS_TOTAL,
    ALERT_NOTIFICATIONS_RECEIVED_TOTAL,
    CONTROL_LEADER,
    WEBHOOK_DELIVERIES_TOTAL,
    WEBHOOK_DELIVERY_LATENCY_SECONDS,
    WEBHOOK_RETRIES_TOTAL,
    WEBHOOK_DEAD_LETTERED_TOTAL,
    WEBHOOK_CIRCUIT_BREAKER_STATE,
    WEBHOOK_DEAD_LETTER_QUEUE_DEPTH,
    WEBHOOK_DELIVERIES_DELETED_TOTAL,
];

impl MetricDef {
    fn opts(&self) -> Opts {
        Opts::new(self.name, self.help)
    }

    fn check_kind(&self, expected: MetricKind) {
        // A mismatch is a programming error in a component, caught by its first test run.
        assert_eq!(
            self.kind, expected,
            "metric {} is a {:?}",
            self.name, self.kind
        );
    }

    /// Builds and registers a labelled counter.
    pub fn counter(&self, registry: &Registry) -> IntCounterVec {
        self.check_kind(MetricKind::Counter);
        let counter = IntCounterVec::new(self.opts(), self.labels).expect("catalogue metric");
        registry
            .register(Box::new(counter.clone()))
            .expect("metric registered once");
        counter
    }

    /// Builds and registers a counter without labels.
    pub fn counter_single(&self, registry: &Registry) -> IntCounter {
        self.check_kind(MetricKind::Counter);
        assert!(self.labels.is_empty(), "metric {} has labels", self.name);
        let counter = IntCounter::with_opts(self.opts()).expect("catalogue metric");
        registry
            .register(Box::new(counter.clone()))
            .expect("metric registered once");
        counter
    }

    /// Builds and registers a gauge without labels.
    pub fn gauge(&self, registry: &Registry) -> IntGauge {
        self.check_kind(MetricKind::Gauge);
        assert!(self.labels.is_empty(), "metric {} has labels", self.name);
        let gauge = IntGauge::with_opts(self.opts()).expect("catalogue metric");
        registry
            .register(Box::new(gauge.clone()))
            .expect("metric registered once");
        gauge
    }

    /// Builds and registers a gauge without labels holding fractions (seconds, timestamps).
    pub fn gauge_f64(&self, registry: &Registry) -> Gauge {
        self.check_kind(MetricKind::Gauge);
        assert!(self.labels.is_empty(), "metric {} has labels", self.name);
        let gauge = Gauge::with_opts(self.opts()).expect("catalogue metric");
        registry
            .register(Box::new(gauge.clone()))
            .expect("metric registered once");
        gauge
    }

    /// Registers a gauge without labels whose value `compute` gives each time the registry is
    /// gathered (an age that grows between events, read from the state that knows it).
    pub fn gauge_computed(
        &self,
        registry: &Registry,
        compute: impl Fn() -> f64 + Send + Sync + 'static,
    ) {
        self.check_kind(MetricKind::Gauge);
        assert!(self.labels.is_empty(), "metric {} has labels", self.name);
        let gauge = Gauge::with_opts(self.opts()).expect("catalogue metric");
        registry
            .register(Box::new(Computed {
                gauge,
                compute: Box::new(compute),
            }))
            .expect("metric registered once");
    }

    /// Builds and registers a labelled gauge.
    pub fn gauge_vec(&self, registry: &Registry) -> IntGaugeVec {
        self.check_kind(MetricKind::Gauge);
        let gauge = IntGaugeVec::new(self.opts(), self.labels).expect("catalogue metric");
        registry
            .register(Box::new(gauge.clone()))
            .expect("metric registered once");
        gauge
    }

    /// Builds and registers a labelled gauge of fractional values (ratios).
    pub fn float_gauge_vec(&self, registry: &Registry) -> prometheus::GaugeVec {
        self.check_kind(MetricKind::Gauge);
        let gauge = prometheus::GaugeVec::new(self.opts(), self.labels).expect("catalogue metric");
        registry
            .register(Box::new(gauge.clone()))
            .expect("metric registered once");
        gauge
    }

    /// Builds and registers a labelled histogram with the catalogue's buckets.
    pub fn histogram(&self, registry: &Registry) -> HistogramVec {
        self.check_kind(MetricKind::Histogram);
        let opts = HistogramOpts::new(self.name, self.help).buckets(self.buckets.to_vec());
        let histogram = HistogramVec::new(opts, self.labels).expect("catalogue metric");
        registry
            .register(Box::new(histogram.clone()))
            .expect("metric registered once");
        histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_registers_and_renders_under_its_name() {
        let registry = Registry::new();
        for def in ALL {
            match def.kind {
                MetricKind::Counter if def.labels.is_empty() => def.counter_single(&registry).inc(),
                MetricKind::Counter => {
                    let values: Vec<&str> = def.labels.iter().map(|_| "x").collect();
                    def.counter(&registry).with_label_values(&values).inc();
                }
                MetricKind::Gauge if def.labels.is_empty() => def.gauge(&registry).set(1),
                MetricKind::Gauge => {
                    let values: Vec<&str> = def.labels.iter().map(|_| "x").collect();
                    def.gauge_vec(&registry).with_label_values(&values).set(1);
                }
                MetricKind::Histogram => {
                    let values: Vec<&str> = def.labels.iter().map(|_| "x").collect();
                    def.histogram(&registry)
                        .with_label_values(&values)
                        .observe(0.3);
                }
            }
        }
        let text = crate::render(&registry);
        for def in ALL {
            assert!(
                text.contains(&format!("# TYPE {} ", def.name)),
                "{} missing",
                def.name
            );
        }
    }

    #[test]
    fn latency_buckets_contain_the_slo_thresholds() {
        for threshold in [0.05, 0.1, 0.2, 0.5, 1.0, 2.0] {
            assert!(
                REQUEST_LATENCY_BUCKETS.contains(&threshold),
                "{threshold} not a bucket"
            );
        }
    }
}
