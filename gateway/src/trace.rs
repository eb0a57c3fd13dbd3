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

/// W3C trace context: the trace this request belongs to and the span the gateway opened,
/// held as the `traceparent` the gateway forwards (`00-{trace}-{span}-{flags}`, lowercase hex),
/// so a request builds it once and allocates nothing for it but the header.
#[derive(Debug, Clone)]
pub struct TraceContext {
    traceparent: [u8; TRACEPARENT_LEN],
    /// The caller's span, when it sent a `traceparent` (lowercase hex).
    parent_span_id: Option<[u8; 16]>,
}

const TRACEPARENT_LEN: usize = 55;
const TRACE_ID: std::ops::Range<usize> = 3..35;
const SPAN_ID: std::ops::Range<usize> = 36..52;
const FLAGS: std::ops::Range<usize> = 53..55;

/// Lowercase hex of `value`'s low `out.len() * 4` bits into `out`.
fn hex_into(out: &mut [u8], mut value: u128) {
    for digit in out.iter_mut().rev() {
        *digit = b"0123456789abcdef"[(value & 0xf) as usize];
        value >>= 4;
    }
}

/// `text` lowercased into `out` when it is exactly `out.len()` hex digits.
fn hex_copy(out: &mut [u8], text: &[u8]) -> bool {
    if text.len() != out.len() || !text.iter().all(u8::is_ascii_hexdigit) {
        return false;
    }
    for (to, from) in out.iter_mut().zip(text) {
        *to = from.to_ascii_lowercase();
    }
    true
}

impl TraceContext {
    /// Continues the caller's trace from a valid `traceparent`, or starts a new one.
    pub fn from_header(header: Option<&str>) -> Self {
        let mut traceparent = *b"00-00000000000000000000000000000000-0000000000000000-01";
        hex_into(&mut traceparent[SPAN_ID], u128::from(rand::random::<u64>()));
        if let Some(parent) = header.and_then(|h| Self::parse(h.trim().as_bytes())) {
            traceparent[TRACE_ID].copy_from_slice(&parent.traceparent[TRACE_ID]);
            traceparent[FLAGS].copy_from_slice(&parent.traceparent[FLAGS]);
            let mut parent_span = [0u8; 16];
            parent_span.copy_from_slice(&parent.traceparent[SPAN_ID]);
            return Self {
                traceparent,
                parent_span_id: Some(parent_span),
            };
        }
        hex_into(&mut traceparent[TRACE_ID], rand::random::<u128>());
        Self {
            traceparent,
            parent_span_id: None,
        }
    }

    /// A version-00 `traceparent` with a trace id not all zeros, lowercased.
    fn parse(header: &[u8]) -> Option<Self> {
        if header.len() != TRACEPARENT_LEN || !header.starts_with(b"00-") {
            return None;
        }
        let dashes = [TRACE_ID.end, SPAN_ID.end];
        if dashes.iter().any(|&at| header[at] != b'-') {
            return None;
        }
        let mut parsed = [0u8; TRACEPARENT_LEN];
        parsed.copy_from_slice(header);
        let valid = [TRACE_ID, SPAN_ID, FLAGS]
            .into_iter()
            .all(|range| hex_copy(&mut parsed[range.clone()], &header[range]));
        let zero_trace = parsed[TRACE_ID].iter().all(|&b| b == b'0');
        (valid && !zero_trace).then_some(Self {
            traceparent: parsed,
            parent_span_id: None,
        })
    }

    fn part(&self, range: std::ops::Range<usize>) -> &str {
        std::str::from_utf8(&self.traceparent[range]).expect("hex digits are ASCII")
    }

    pub fn trace_id(&self) -> &str {
        self.part(TRACE_ID)
    }

    pub fn span_id(&self) -> &str {
        self.part(SPAN_ID)
    }

    pub fn parent_span_id(&self) -> Option<&str> {
        self.parent_span_id
            .as_ref()
            .map(|id| std::str::from_utf8(id).expect("hex digits are ASCII"))
    }

    /// The `traceparent` forwarded to the replica.
    pub fn header(&self) -> http::HeaderValue {
        http::HeaderValue::from_bytes(&self.traceparent).expect("ASCII is a valid header")
    }
}

/// A request id from the client is kept if it is short and plain; otherwise a new one.
pub fn request_id(incoming: Option<&[u8]>) -> http::HeaderValue {
    match incoming {
        Some(id)
            if (1..=128).contains(&id.len())
                && id
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b)) =>
        {
            http::HeaderValue::from_bytes(id).expect("plain ASCII is a valid header")
        }
        // From the thread-local generator: `new_v4` would make a getrandom syscall per request.
        _ => {
            let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
            let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
            let text = id.hyphenated().encode_lower(&mut text);
            http::HeaderValue::from_str(text).expect("a UUID is a valid header")
        }
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
            TraceId::from_hex(span.trace.trace_id()),
            SpanId::from_hex(span.trace.span_id()),
        ) else {
            return;
        };
        let parent = match span.trace.parent_span_id().map(SpanId::from_hex) {
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
        let incoming = "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01";
        let trace = TraceContext::from_header(Some(incoming));
        assert_eq!(trace.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(trace.parent_span_id(), Some("00f067aa0ba902b7"));
        assert_ne!(
            trace.span_id(),
            "00f067aa0ba902b7",
            "the gateway opens its own span"
        );
        let header = trace.header();
        let header = header.to_str().unwrap();
        assert_eq!(header.len(), 55);
        assert!(header.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(header.ends_with(&format!("-{}-01", trace.span_id())));
        for bad in [
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "01-x-y-z",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "00-4bf92f3577b34da6a3ce929d0e0e4736+00f067aa0ba902b7-01",
        ] {
            let fresh = TraceContext::from_header(Some(bad));
            assert_eq!(fresh.trace_id().len(), 32);
            assert_ne!(fresh.trace_id(), "0".repeat(32));
            assert_ne!(fresh.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
            assert_eq!(fresh.parent_span_id(), None);
            assert!(fresh.header().to_str().unwrap().ends_with("-01"));
        }
        let fresh = TraceContext::from_header(None);
        assert!(fresh.trace_id().bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(fresh.span_id().len(), 16);
    }

    #[test]
    fn request_ids_are_kept_only_when_plain() {
        let id = |text: &str| request_id(Some(text.as_bytes()));
        assert_eq!(id("abc-123"), "abc-123");
        assert_ne!(id("bad id with spaces"), "bad id with spaces");
        let fresh = request_id(None);
        assert_eq!(fresh.len(), 36);
        assert!(uuid::Uuid::parse_str(fresh.to_str().unwrap()).is_ok());
    }
}
