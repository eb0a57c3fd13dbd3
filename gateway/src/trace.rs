//! A request's identity across processes: its request id (`X-Request-Id`, the client's when
//! plain, else new), its W3C trace context (`traceparent`, continued or started), and the spans
//! exported over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set: one server span per
//! request, in the trace the client started or a new one, with the same span id the gateway
//! forwards to the engine, so the engine's work hangs under it.
//!
//! The exporter batches on its own thread (`OTEL_BSP_*` variables tune it), so a slow or absent
//! collector never holds a request.

use opentelemetry::trace::{
    Span, SpanBuilder, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer, TracerProvider,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use std::time::SystemTime;

/// W3C trace context: the trace this request belongs to and the span the gateway opened.
#[derive(Debug, Clone)]
pub struct TraceContext {
    pub trace_id: String,
    pub span_id: String,
    pub flags: String,
    /// The caller's span, when it sent a `traceparent`.
    pub parent_span_id: Option<String>,
}

impl TraceContext {
    /// Continues the caller's trace from a valid `traceparent`, or starts a new one.
    pub fn from_header(header: Option<&str>) -> Self {
        let new_span = || format!("{:016x}", rand::random::<u64>());
        if let Some(parts) = header.map(|h| h.trim().split('-').collect::<Vec<_>>()) {
            let hex =
                |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
            if parts.len() == 4
                && parts[0] == "00"
                && hex(parts[1], 32)
                && parts[1] != "0".repeat(32)
                && hex(parts[2], 16)
                && hex(parts[3], 2)
            {
                return Self {
                    trace_id: parts[1].to_ascii_lowercase(),
                    span_id: new_span(),
                    flags: parts[3].to_string(),
                    parent_span_id: Some(parts[2].to_ascii_lowercase()),
                };
            }
        }
        Self {
            trace_id: format!("{:032x}", rand::random::<u128>()),
            span_id: new_span(),
            flags: "01".into(),
            parent_span_id: None,
        }
    }

    pub fn header(&self) -> String {
        format!("00-{}-{}-{}", self.trace_id, self.span_id, self.flags)
    }
}

/// A request id from the client is kept if it is short and plain; otherwise a new one.
pub fn request_id(incoming: Option<&str>) -> String {
    match incoming {
        Some(id)
            if (1..=128).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)) =>
        {
            id.to_string()
        }
        // From the thread-local generator: `new_v4` would make a getrandom syscall per request.
        _ => uuid::Builder::from_random_bytes(rand::random())
            .into_uuid()
            .to_string(),
    }
}

pub struct SpanExport {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

/// What one request's span says.
pub struct RequestSpan<'a> {
    pub trace: &'a TraceContext,
    pub method: &'a str,
    pub route: &'a str,
    pub status: u16,
    pub started: SystemTime,
    pub upstream: Option<String>,
    pub request_id: &'a str,
}

impl SpanExport {
    /// The exporter, if `OTEL_EXPORTER_OTLP_ENDPOINT` names a collector.
    pub fn from_env() -> Option<Self> {
        let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok()?;
        if endpoint.trim().is_empty() {
            return None;
        }
        // A collector URL may carry credentials; the log names it without them.
        let endpoint = aragora_config::redact_url(&endpoint);
        let exporter = match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
        {
            Ok(exporter) => exporter,
            Err(err) => {
                tracing::error!(error = %err, %endpoint, "cannot build the OTLP exporter; spans are not exported");
                return None;
            }
        };
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                Resource::builder()
                    .with_service_name("aragora-gateway")
                    .build(),
            )
            .build();
        let tracer = provider.tracer("aragora-gateway");
        tracing::info!(%endpoint, "exporting spans over OTLP/HTTP");
        Some(Self { provider, tracer })
    }

    pub fn record(&self, span: RequestSpan<'_>) {
        let (Ok(trace_id), Ok(span_id)) = (
            TraceId::from_hex(&span.trace.trace_id),
            SpanId::from_hex(&span.trace.span_id),
        ) else {
            return;
        };
        let parent = match span.trace.parent_span_id.as_deref().map(SpanId::from_hex) {
            Some(Ok(parent)) => Context::new().with_remote_span_context(SpanContext::new(
                trace_id,
                parent,
                TraceFlags::SAMPLED,
                true,
                TraceState::default(),
            )),
            _ => Context::new(),
        };
        let mut attributes = vec![
            KeyValue::new("http.request.method", span.method.to_string()),
            KeyValue::new("http.route", span.route.to_string()),
            KeyValue::new("http.response.status_code", i64::from(span.status)),
            KeyValue::new("aragora.request_id", span.request_id.to_string()),
        ];
        if let Some(upstream) = span.upstream {
            attributes.push(KeyValue::new("server.address", upstream));
        }
        let builder = SpanBuilder::from_name(format!("{} {}", span.method, span.route))
            .with_kind(SpanKind::Server)
            .with_trace_id(trace_id)
            .with_span_id(span_id)
            .with_start_time(span.started)
            .with_attributes(attributes);
        let mut exported = self.tracer.build_with_context(builder, &parent);
        if span.status >= 500 || span.status == 0 {
            exported.set_status(Status::error(format!("status {}", span.status)));
        }
        exported.end();
    }

    /// Sends what is still batched (at shutdown).
    pub fn flush(&self) {
        if let Err(err) = self.provider.force_flush() {
            tracing::warn!(error = %err, "could not flush spans to the OTLP collector");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_context_is_continued_or_started() {
        let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let trace = TraceContext::from_header(Some(incoming));
        assert_eq!(trace.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(
            trace.span_id, "00f067aa0ba902b7",
            "the gateway opens its own span"
        );
        assert!(trace
            .header()
            .starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        for bad in [
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "01-x-y-z",
        ] {
            let fresh = TraceContext::from_header(Some(bad));
            assert_eq!(fresh.trace_id.len(), 32);
            assert_ne!(fresh.trace_id, "0".repeat(32));
        }
    }

    #[test]
    fn request_ids_are_kept_only_when_plain() {
        assert_eq!(request_id(Some("abc-123")), "abc-123");
        assert_ne!(request_id(Some("bad id with spaces")), "bad id with spaces");
        assert_eq!(request_id(None).len(), 36);
    }
}
