//! The metric catalogue and log setup shared by every aragora component.
//!
//! Every metric the system exports is declared once, in [`catalogue`]: its name, type, help
//! text, label names and (for histograms) buckets. Components build their collectors from these
//! declarations with [`MetricDef::counter`], [`MetricDef::gauge`] and [`MetricDef::histogram`],
//! so a name or label can never drift between the code that exports it and the alert rules and
//! dashboards that are generated from the same catalogue. What every HTTP surface shares (route
//! templates, the method label, the error envelope and its codes) is in [`http`].

pub mod catalogue;
pub mod http;
mod log;

pub use catalogue::{MetricDef, MetricKind};
pub use http::{
    body_rejection_code, error_body, method_label, route_index, route_name, route_template,
    ErrorBody, ErrorDetail, METHOD_LABELS, PAGE_CONTENT_SECURITY_POLICY, PAGE_ROUTES, ROUTES,
};
pub use log::{
    access_log, count_log_events, error_with_causes, flush_logs, init_logging, LogFormat,
};

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

/// The content type of [`render`]'s output.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
