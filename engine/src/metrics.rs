//! The engine's collectors, built from the shared catalogue and kept in the engine's own
//! registry (so two engines in one test process never share counters).

use aragora_telemetry::catalogue as cat;
use prometheus::{Gauge, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry};

#[derive(Clone)]
pub struct EngineMetrics {
    pub registry: Registry,
    pub http_requests: IntCounterVec,
    pub request_latency: HistogramVec,
    pub debates: IntCounterVec,
    pub debate_duration: HistogramVec,
    pub active_debates: IntGauge,
    pub queued_debates: IntGauge,
    pub agent_calls: IntCounterVec,
    pub agent_latency: HistogramVec,
    pub agent_errors: IntCounterVec,
    pub circuit_breaker_state: IntGaugeVec,
    pub tokens_used: IntCounterVec,
    pub agent_fallbacks: IntCounterVec,
    pub receipts_issued: IntCounter,
    /// Retention cleanups by status, their duration, what they deleted (`crate::retention`).
    pub receipt_cleanup: IntCounterVec,
    pub receipt_cleanup_duration: HistogramVec,
    pub receipts_deleted: IntCounter,
    pub debates_deleted: IntCounter,
    /// Debates taken over from a replica whose lease expired.
    pub debates_adopted: IntCounter,
    /// Refused credentials by reason; count through [`EngineMetrics::auth_failure`].
    pub auth_failures: IntCounterVec,
    /// Refusals by a per-client limit; count through [`EngineMetrics::client_limit_refused`].
    pub client_limit_refusals: IntCounterVec,
    /// 1 while per-client counts are shared through Redis (`client_slots`).
    pub client_limits_shared: IntGauge,
    pub websocket_connections: IntGauge,
    pub ready: IntGauge,
    pub database_up: IntGauge,
    pub faults_active: IntGaugeVec,
    pub oldest_running_debate: IntGauge,
    pub resident_memory: IntGauge,
    /// 1 while maintenance mode is on (new debates refused), as this replica last read it.
    pub maintenance_mode: IntGauge,
    /// The DR gauges, refreshed from the DR log in the database at each scrape.
    pub dr: DrGauges,
    pub webhooks: WebhookMetrics,
}

/// The webhook delivery worker's collectors (see `webhooks::delivery`).
#[derive(Clone)]
pub struct WebhookMetrics {
    pub deliveries: IntCounterVec,
    pub latency: HistogramVec,
    pub retries: IntCounterVec,
    pub dead_lettered: IntCounterVec,
    pub breaker_state: IntGaugeVec,
    /// Refreshed from the database at each scrape.
    pub dead_letter_depth: IntGauge,
    /// Finished deliveries deleted by the retention cleanup.
    pub deliveries_deleted: IntCounter,
}

impl WebhookMetrics {
    fn new(registry: &Registry) -> Self {
        Self {
            deliveries: cat::WEBHOOK_DELIVERIES_TOTAL.counter(registry),
            latency: cat::WEBHOOK_DELIVERY_LATENCY_SECONDS.histogram(registry),
            retries: cat::WEBHOOK_RETRIES_TOTAL.counter(registry),
            dead_lettered: cat::WEBHOOK_DEAD_LETTERED_TOTAL.counter(registry),
            breaker_state: cat::WEBHOOK_CIRCUIT_BREAKER_STATE.gauge_vec(registry),
            dead_letter_depth: cat::WEBHOOK_DEAD_LETTER_QUEUE_DEPTH.gauge(registry),
            deliveries_deleted: cat::WEBHOOK_DELIVERIES_DELETED_TOTAL.counter_single(registry),
        }
    }
}

/// Backup and drill freshness, as recorded in the database by whichever process did the work.
#[derive(Clone)]
pub struct DrGauges {
    pub drill_last_success: Gauge,
    pub drill_last_failure: Gauge,
    pub drill_rto: Gauge,
    pub drill_rpo: Gauge,
    pub backup_last_success: Gauge,
}

impl DrGauges {
    fn new(registry: &Registry) -> Self {
        Self {
            drill_last_success: cat::DR_DRILL_LAST_SUCCESS_TIMESTAMP_SECONDS.gauge_f64(registry),
            drill_last_failure: cat::DR_DRILL_LAST_FAILURE_TIMESTAMP_SECONDS.gauge_f64(registry),
            drill_rto: cat::DR_DRILL_RTO_SECONDS.gauge_f64(registry),
            drill_rpo: cat::DR_DRILL_RPO_SECONDS.gauge_f64(registry),
            backup_last_success: cat::BACKUP_LAST_SUCCESS_TIMESTAMP_SECONDS.gauge_f64(registry),
        }
    }

    pub fn set(&self, status: &crate::dr_log::DrStatus) {
        let seconds = |ms: Option<i64>| ms.map_or(0.0, |ms| ms as f64 / 1000.0);
        self.backup_last_success.set(seconds(status.last_backup_ms));
        self.drill_last_success
            .set(seconds(status.last_drill_success_ms));
        self.drill_last_failure
            .set(seconds(status.last_drill_failure_ms));
        self.drill_rto
            .set(status.last_drill_rto_seconds.unwrap_or(0.0));
        self.drill_rpo
            .set(status.last_drill_rpo_seconds.unwrap_or(0.0));
    }
}

impl EngineMetrics {
    pub fn new() -> Self {
        // Every series carries component="engine": the rules tell the gateway and the engine
        // apart by it, whatever job Prometheus scrapes them under.
        let registry = cat::component_registry(cat::ENGINE);
        cat::BUILD_INFO
            .gauge_vec(&registry)
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        Self {
            http_requests: cat::HTTP_REQUESTS_TOTAL.counter(&registry),
            request_latency: cat::REQUEST_LATENCY_SECONDS.histogram(&registry),
            debates: cat::DEBATES_TOTAL.counter(&registry),
            debate_duration: cat::DEBATE_DURATION_SECONDS.histogram(&registry),
            active_debates: cat::ACTIVE_DEBATES.gauge(&registry),
            queued_debates: cat::QUEUED_DEBATES.gauge(&registry),
            agent_calls: cat::AGENT_CALLS_TOTAL.counter(&registry),
            agent_latency: cat::AGENT_LATENCY_SECONDS.histogram(&registry),
            agent_errors: cat::AGENT_ERRORS_TOTAL.counter(&registry),
            circuit_breaker_state: cat::CIRCUIT_BREAKER_STATE.gauge_vec(&registry),
            tokens_used: cat::TOKENS_USED_TOTAL.counter(&registry),
            agent_fallbacks: cat::AGENT_FALLBACKS_TOTAL.counter(&registry),
            receipts_issued: cat::RECEIPTS_ISSUED_TOTAL.counter_single(&registry),
            receipt_cleanup: cat::RECEIPT_CLEANUP_TOTAL.counter(&registry),
            receipt_cleanup_duration: cat::RECEIPT_CLEANUP_DURATION_SECONDS.histogram(&registry),
            receipts_deleted: cat::RECEIPTS_DELETED_TOTAL.counter_single(&registry),
            debates_deleted: cat::DEBATES_DELETED_TOTAL.counter_single(&registry),
            debates_adopted: cat::DEBATES_ADOPTED_TOTAL.counter_single(&registry),
            auth_failures: cat::auth_failures(&registry),
            client_limit_refusals: cat::client_limit_refusals(&registry),
            client_limits_shared: cat::CLIENT_LIMITS_SHARED.gauge(&registry),
            websocket_connections: cat::WEBSOCKET_CONNECTIONS.gauge(&registry),
            ready: cat::READY.gauge(&registry),
            database_up: cat::DATABASE_UP.gauge(&registry),
            faults_active: cat::FAULTS_ACTIVE.gauge_vec(&registry),
            oldest_running_debate: cat::OLDEST_RUNNING_DEBATE_SECONDS.gauge(&registry),
            resident_memory: cat::PROCESS_RESIDENT_MEMORY_BYTES.gauge(&registry),
            maintenance_mode: cat::MAINTENANCE_MODE.gauge(&registry),
            dr: DrGauges::new(&registry),
            webhooks: WebhookMetrics::new(&registry),
            registry,
        }
    }

    /// Every series whose label values the engine knows at start, created at 0: each
    /// debate outcome, and for each agent its calls by status, latency, errors by type, and
    /// (LLM agents) its fallbacks and its provider's tokens. Prometheus' instrumentation guide
    /// asks for it: a series born at its first event has no earlier sample for `rate()` to
    /// rise from, and the alerts and panels that name it see no data until then. (A breaker's
    /// gauge is created with the breaker, at 0: closed.)
    pub fn precreate(&self, agents: &crate::agents::AgentRegistry) {
        for status in cat::RECEIPT_CLEANUP_STATUSES {
            let _ = self.receipt_cleanup.with_label_values(&[status]);
        }
        let _ = self.receipt_cleanup_duration.with_label_values::<&str>(&[]);
        for outcome in crate::model::Outcome::ALL {
            let _ = self.debates.with_label_values(&[outcome.as_str()]);
            let _ = self.debate_duration.with_label_values(&[outcome.as_str()]);
        }
        let hooks = &self.webhooks;
        for event in crate::webhooks::EventType::ALL.map(|e| e.as_str()) {
            for status in crate::webhooks::delivery::STATUSES {
                let _ = hooks.deliveries.with_label_values(&[status, event]);
            }
            let _ = hooks.latency.with_label_values(&[event]);
            let _ = hooks.retries.with_label_values(&[event]);
            let _ = hooks.dead_lettered.with_label_values(&[event]);
        }
        for agent in agents.all() {
            let (name, provider) = (agent.name(), agent.provider());
            for status in cat::AGENT_CALL_STATUSES {
                let _ = self
                    .agent_calls
                    .with_label_values(&[name, provider, status]);
            }
            let _ = self.agent_latency.with_label_values(&[name, provider]);
            for error_type in cat::AGENT_ERROR_TYPES {
                let _ = self.agent_errors.with_label_values(&[name, error_type]);
            }
            if agent.is_llm() {
                let _ = self.agent_fallbacks.with_label_values(&[name, provider]);
                for direction in cat::TOKEN_DIRECTIONS {
                    let _ = self.tokens_used.with_label_values(&[provider, direction]);
                }
            }
        }
    }

    pub fn render(&self) -> String {
        aragora_telemetry::render(&self.registry)
    }

    /// Counts one refused request under `reason`, one of
    /// [`AUTH_FAILURE_REASONS`](cat::AUTH_FAILURE_REASONS) (the label stays bounded; which
    /// check failed in detail goes to the log, not here).
    pub fn auth_failure(&self, reason: &str) {
        debug_assert!(
            cat::AUTH_FAILURE_REASONS.contains(&reason),
            "{reason:?} is not an auth failure reason of the catalogue"
        );
        self.auth_failures.with_label_values(&[reason]).inc();
    }

    /// Counts one refusal by the per-client limit `limit`, one of
    /// [`CLIENT_LIMITS`](cat::CLIENT_LIMITS).
    pub fn client_limit_refused(&self, limit: &str) {
        debug_assert!(
            cat::CLIENT_LIMITS.contains(&limit),
            "{limit:?} is not a client limit of the catalogue"
        );
        self.client_limit_refusals.with_label_values(&[limit]).inc();
    }
}

/// Resident memory of this process, from `/proc/self/status` (Linux, the deploy target);
/// `None` where there is no such file. A file read per scrape, not a dependency.
pub fn resident_memory_bytes() -> Option<i64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_rss(&status)
}

fn parse_vm_rss(status: &str) -> Option<i64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

impl Default for EngineMetrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_failures_are_exported_by_reason_from_the_start() {
        let metrics = EngineMetrics::new();
        let text = metrics.render();
        assert!(
            text.contains("# TYPE aragora_auth_failures_total counter"),
            "{text}"
        );
        for reason in cat::AUTH_FAILURE_REASONS {
            assert!(
                text.contains(&format!(
                    "aragora_auth_failures_total{{reason=\"{reason}\",component=\"engine\"}} 0"
                )),
                "{reason}: {text}"
            );
        }
        metrics.auth_failure("expired");
        metrics.auth_failure("expired");
        metrics.auth_failure("forbidden");
        let text = metrics.render();
        assert!(
            text.contains("aragora_auth_failures_total{reason=\"expired\",component=\"engine\"} 2"),
            "{text}"
        );
        assert!(
            text.contains(
                "aragora_auth_failures_total{reason=\"forbidden\",component=\"engine\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("aragora_auth_failures_total{reason=\"missing\",component=\"engine\"} 0"),
            "{text}"
        );
    }

    #[test]
    fn resident_memory_is_read_from_proc() {
        assert_eq!(
            parse_vm_rss("Name:\taragora\nVmRSS:\t  2048 kB\nVmSwap: 0 kB\n"),
            Some(2048 * 1024)
        );
        assert_eq!(parse_vm_rss("Name: x\n"), None);
        if cfg!(target_os = "linux") {
            assert!(resident_memory_bytes().unwrap() > 1024 * 1024);
        }
    }
}
