//! Spans exported over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set: one server span
//! per request, in the trace the client started (its `traceparent`) or a new one, with the
//! same span id the gateway forwards to the engine, so the engine's work hangs under it.
//!
//! The exporter batches on its own thread (`OTEL_BSP_*` variables tune it), so a slow or absent
//! collector never holds a request.

use crate::proxy::TraceContext;
use opentelemetry::trace::{
    Span, SpanBuilder, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer, TracerProvider,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use std::time::SystemTime;

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
        let exporter = match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
        {
            Ok(exporter) => exporter,
            Err(err) => {
                tracing::error!(error = %err, endpoint, "cannot build the OTLP exporter; spans are not exported");
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
        tracing::info!(endpoint, "exporting spans over OTLP/HTTP");
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
