//! The metric catalogue and log setup shared by every aragora component.
//!
//! Every metric the system exports is declared once, in [`catalogue`]: its name, type, help
//! text, label names and (for histograms) buckets. Components build their collectors from these
//! declarations with [`MetricDef::counter`], [`MetricDef::gauge`] and [`MetricDef::histogram`],
//! so a name or label can never drift between the code that exports it and the alert rules and
//! dashboards that are generated from the same catalogue.

pub mod catalogue;
mod log;

pub use catalogue::{MetricDef, MetricKind};
pub use log::{access_log, count_log_events, flush_logs, init_logging, LogFormat};

use prometheus::{Encoder, Registry, TextEncoder};

/// Renders a registry in the Prometheus text exposition format.
pub fn render(registry: &Registry) -> String {
    let mut buffer = Vec::with_capacity(16 * 1024);
    let encoder = TextEncoder::new();
    // Encoding into a Vec cannot fail for metrics built from the catalogue (valid names, and
    // label values checked by the prometheus crate when they are created).
    if let Err(err) = encoder.encode(&registry.gather(), &mut buffer) {
        return format!("# error encoding metrics: {err}\n");
    }
    String::from_utf8(buffer).unwrap_or_default()
}

/// The engine's route templates: the `route` label values both the engine (from its router)
/// and the gateway (from [`route_template`]) use.
pub const ROUTES: &[&str] = &[
    "/api/debates",
    "/api/debates/{id}",
    "/api/debates/{id}/messages",
    "/api/debates/{id}/cancel",
    "/api/debates/{id}/receipt",
    "/api/v1/debates",
    "/api/v1/debates/{id}",
    "/api/v1/debates/{id}/messages",
    "/api/v1/debates/{id}/cancel",
    "/api/v1/debates/{id}/receipt",
    "/api/agents",
    "/api/receipts/verify",
    "/api/health",
    "/api/health/db",
    "/api/system/circuit-breakers",
    "/api/system/circuit-breakers/reset",
    "/api/system/circuit-breakers/{agent}/reset",
    "/api/system/faults",
    "/api/system/faults/{id}",
    "/api/slo",
    "/healthz",
    "/readyz",
    "/metrics",
    "/ws",
];

/// The route template a raw path belongs to (`/api/debates/abc` → `/api/debates/{id}`), or
/// `unmatched`: label values stay bounded whatever clients send.
pub fn route_template(path: &str) -> &'static str {
    // On the gateway's hot path: compare segment by segment without allocating.
    let path = path.trim_end_matches('/');
    ROUTES
        .iter()
        .find(|template| {
            let mut parts = template.split('/');
            let mut segments = path.split('/');
            loop {
                match (parts.next(), segments.next()) {
                    (None, None) => return true,
                    (Some(part), Some(segment)) if part.starts_with('{') || part == segment => {}
                    _ => return false,
                }
            }
        })
        .copied()
        .unwrap_or("unmatched")
}

/// The content type of [`render`]'s output.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod route_tests {
    use super::route_template;

    #[test]
    fn raw_paths_map_to_templates() {
        assert_eq!(route_template("/api/debates/3f2a"), "/api/debates/{id}");
        assert_eq!(
            route_template("/api/v1/debates/3f2a/cancel"),
            "/api/v1/debates/{id}/cancel"
        );
        assert_eq!(route_template("/api/debates"), "/api/debates");
        assert_eq!(route_template("/api/debates/"), "/api/debates");
        assert_eq!(route_template("/wp-admin/login.php"), "unmatched");
    }
}
