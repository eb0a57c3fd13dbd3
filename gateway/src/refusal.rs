//! What the gateway answers by itself. Every edge refusal is one [`Refusal`] (status, code,
//! message, retry-after), built here from the reason and rendered in one place, with the error
//! envelope every API answer uses (`aragora_telemetry::error_body`); the probes' JSON goes
//! through the same rendering. [`Stamp`] holds the headers every answer carries, the gateway's
//! own and the proxied ones alike.
//!
//! | status | code | when |
//! |---|---|---|
//! | 429 | `rate_limited` | over the rate limit, or Redis cannot vouch for it and fail-open is off |
//! | 429 | `client_limit` | a WebSocket upgrade from an address holding `ARAGORA_GATEWAY_MAX_WEBSOCKETS_PER_CLIENT` already (the engine's code for its per-client limits) |
//! | 503 | `overloaded` | more requests in flight than `ARAGORA_GATEWAY_MAX_INFLIGHT` |
//! | 503 | `maintenance` | the gateway's own maintenance switch is on (all but health), or a ready replica reports maintenance (new debates: `POST /api/debates`, `/api/v1/debates`) |
//! | 503 | `no_ready_upstream` | no engine replica is ready |
//! | 400 | `bad_request` | a malformed chunked body; a request whose framing or target a replica could read otherwise than the gateway: `Content-Length` with `Transfer-Encoding`, two different lengths, a transfer coding not ending in `chunked`, a dot segment in the path (`/%2e%2e/`), a NUL, an authority-form target, a missing, doubled or malformed `Host` |
//! | 501 | `not_implemented` | a transfer coding other than `chunked` (RFC 9112 §6.1) |
//! | 431 | `headers_too_large` | request line and headers over `ARAGORA_GATEWAY_MAX_HEADER_BYTES` |
//! | 413 | `payload_too_large` | declared or received body over `ARAGORA_GATEWAY_MAX_BODY_BYTES` |
//! | 502 | `upstream_unreachable`, `bad_gateway` | the replica could not be reached, or failed answering |
//! | 408 | `request_timeout` | the client paused sending its body longer than `ARAGORA_CLIENT_READ_TIMEOUT` (a head that slow gets pingora's 408 and a close) |
//! | 504 | `upstream_timeout` | the replica did not answer within `ARAGORA_UPSTREAM_READ_TIMEOUT` |
//!
//! A refusal must cost less than serving the request: over HTTP/1.1 the client's connection
//! stays open for its next request whenever the refused one was read whole (no body, or all of
//! it), as nginx's `limit_req` does, so a client over its limit does not pay (and make the edge
//! pay) a TLS handshake per request. It closes only where the body is unread (a declared body
//! over the limit, any refused request that carries one: draining it could mean reading a
//! gigabyte), where the client misbehaved ([`Refusal::ends_connection`]: a head over the
//! limit, a request [`crate::framing`] refuses), and after a failed proxy attempt (502, 504).
//! HTTP/2 ends the stream and keeps the connection either way.

use crate::limit::{Decision, Verdict};
use aragora_telemetry::error_body;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use std::net::IpAddr;

/// An answer the gateway gives instead of the engine's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    /// The envelope's `code`, also the access log's `refusal`.
    pub code: &'static str,
    pub message: String,
    /// Seconds for `Retry-After`.
    pub retry_after: Option<u64>,
}

/// The message of a body over the limit (also the error the body filter raises).
pub fn body_too_large_message(limit: usize) -> String {
    format!("the body is larger than {limit} bytes (ARAGORA_GATEWAY_MAX_BODY_BYTES); send a smaller one")
}

const NO_READY_UPSTREAM: &str = "no engine replica is ready; retry shortly";

impl Refusal {
    fn new(
        status: u16,
        code: &'static str,
        message: impl Into<String>,
        retry_after: Option<u64>,
    ) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after,
        }
    }

    pub fn overloaded(max_inflight: usize) -> Self {
        let message = format!(
            "the gateway is serving {max_inflight} requests, its limit (ARAGORA_GATEWAY_MAX_INFLIGHT); retry shortly"
        );
        Self::new(503, "overloaded", message, Some(1))
    }

    /// The 429 of a refusing verdict; None when the verdict lets the request through.
    pub fn rate_limited(
        verdict: &Verdict,
        client: IpAddr,
        method: &str,
        route: &str,
    ) -> Option<Self> {
        let (message, retry_after) = match verdict {
            Verdict::Unlimited | Verdict::Allowed(_) => return None,
            Verdict::OverLimit { decision, per_minute } => (
                format!(
                    "{client} sent more than {per_minute} requests per minute to {method} {route} (ARAGORA_RATE_LIMIT); retry in {} s",
                    decision.retry_after_secs
                ),
                decision.retry_after_secs,
            ),
            Verdict::Unverified(_) => (
                "the shared rate limit cannot be checked (Redis does not answer) and ARAGORA_RATE_LIMIT_FAIL_OPEN is false; retry shortly".to_string(),
                1,
            ),
        };
        Some(Self::new(429, "rate_limited", message, Some(retry_after)))
    }

    /// A WebSocket upgrade from `client`, which holds `max` open through this gateway.
    pub fn websockets_per_client(client: IpAddr, max: usize) -> Self {
        let message = format!(
            "{client} already holds {max} WebSockets open through this gateway, the most one client address may (ARAGORA_GATEWAY_MAX_WEBSOCKETS_PER_CLIENT); close one, or follow several debates on one connection"
        );
        Self::new(429, "client_limit", message, Some(1))
    }

    pub fn maintenance() -> Self {
        Self::new(
            503,
            "maintenance",
            "aragora is in maintenance; retry later",
            Some(60),
        )
    }

    /// A new debate refused because the replicas are in maintenance: their message and
    /// `Retry-After`, so the edge and the engine say the same.
    pub fn replica_maintenance(report: &crate::upstream::ReplicaMaintenance) -> Self {
        Self::new(
            503,
            "maintenance",
            report.message.clone(),
            Some(report.retry_after_seconds),
        )
    }

    /// A request the gateway will not pass on as it stands; `what` says what to fix.
    pub fn bad_request(what: impl Into<String>) -> Self {
        Self::new(400, "bad_request", what, None)
    }

    pub fn not_implemented(what: impl Into<String>) -> Self {
        Self::new(501, "not_implemented", what, None)
    }

    pub fn headers_too_large(head_bytes: usize, limit: usize) -> Self {
        let message = format!(
            "the request line and headers take {head_bytes} bytes; the limit is {limit} (ARAGORA_GATEWAY_MAX_HEADER_BYTES)"
        );
        Self::new(431, "headers_too_large", message, None)
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            413,
            "payload_too_large",
            body_too_large_message(limit),
            None,
        )
    }

    pub fn no_ready_upstream() -> Self {
        Self::new(503, "no_ready_upstream", NO_READY_UPSTREAM, Some(1))
    }

    /// The error a phase raises when no replica is ready (answered as [`Self::no_ready_upstream`]).
    pub fn no_ready_upstream_error() -> Box<Error> {
        Error::explain(HTTPStatus(503), NO_READY_UPSTREAM)
    }

    /// The answer to a failed proxy attempt; None when the client is the one that failed (it
    /// went away or sent garbage: nobody to answer).
    pub fn for_proxy_error(error: &Error, read_timeout_secs: u64) -> Option<Self> {
        let (status, code, message) = match error.etype() {
            HTTPStatus(413) => (
                413,
                "payload_too_large",
                error
                    .context
                    .as_ref()
                    .map(|c| c.as_str().to_string())
                    .unwrap_or_default(),
            ),
            HTTPStatus(503) => (503, "no_ready_upstream", NO_READY_UPSTREAM.to_string()),
            HTTPStatus(code) => (*code, "error", error.to_string()),
            ConnectTimedout | ConnectRefused | ConnectNoRoute | ConnectError
            | ConnectProxyFailure => (
                502,
                "upstream_unreachable",
                "the engine replica could not be reached; retry, another replica will answer"
                    .to_string(),
            ),
            // pingora-core's chunked-body parser (a chunk size that overflows, a missing CRLF).
            Custom("InvalidChunk") if matches!(error.esource(), ErrorSource::Downstream) => (
                400,
                "bad_request",
                "the request's chunked body is malformed; send hexadecimal chunk sizes, each chunk followed by CRLF"
                    .to_string(),
            ),
            ReadTimedout if matches!(error.esource(), ErrorSource::Downstream) => (
                408,
                "request_timeout",
                "the request body paused longer than ARAGORA_CLIENT_READ_TIMEOUT; send it without pauses"
                    .to_string(),
            ),
            ReadTimedout => (
                504,
                "upstream_timeout",
                format!(
                    "the engine replica did not answer within {read_timeout_secs} s (ARAGORA_UPSTREAM_READ_TIMEOUT)"
                ),
            ),
            _ if matches!(error.esource(), ErrorSource::Downstream) => return None,
            _ => (
                502,
                "bad_gateway",
                "the engine replica failed while answering; retry".to_string(),
            ),
        };
        let retry_after = (status == 503).then_some(1);
        Some(Self::new(status, code, message, retry_after))
    }

    /// Whether the client's connection closes after this answer even when its request was read
    /// whole: a head over the limit is the client misbehaving. (A declared body over the limit
    /// closes it anyway: that body is never read.)
    pub fn ends_connection(&self) -> bool {
        matches!(self.status, 400 | 431 | 501)
    }

    /// The response: the error envelope as JSON, `Retry-After`, and the stamp's headers.
    pub fn render(&self, stamp: &Stamp<'_>) -> Result<(ResponseHeader, Bytes)> {
        let body = error_body(self.code, &self.message);
        json_answer(self.status, &body, self.retry_after, stamp)
    }
}

/// The headers every answer carries, whether the gateway or a replica wrote it.
pub struct Stamp<'a> {
    pub request_id: &'a http::HeaderValue,
    /// `Strict-Transport-Security`, on HTTPS.
    pub hsts: Option<http::HeaderValue>,
    /// The rate limiter's decision, as `RateLimit-*`.
    pub rate_limit: Option<Decision>,
    /// `Server` and the security headers of the request's route, each set or removed
    /// ([`crate::headers`]).
    pub edge: &'a [crate::headers::EdgeHeader],
}

/// A header a [`Stamp`] sets: one of its own, written in its usual case (pingora keeps the
/// case it was given), or an edge header of the configuration.
#[derive(Clone, Copy)]
pub enum StampName<'a> {
    Own(&'static str),
    Edge(&'a http::HeaderName),
}

impl StampName<'_> {
    pub fn as_str(&self) -> &str {
        match self {
            StampName::Own(name) => name,
            StampName::Edge(name) => name.as_str(),
        }
    }
}

impl Stamp<'_> {
    /// Each header the stamp sets (a value) or removes (none), in order: one list for both
    /// engines (pingora's header map, the lean engine's bytes).
    pub fn each(&self, mut header: impl FnMut(StampName<'_>, Option<&http::HeaderValue>)) {
        header(StampName::Own("X-Request-Id"), Some(self.request_id));
        for (name, value) in self.edge {
            header(StampName::Edge(name), value.as_ref());
        }
        if let Some(hsts) = &self.hsts {
            header(StampName::Own("Strict-Transport-Security"), Some(hsts));
        }
        if let Some(decision) = self.rate_limit {
            let limit = http::HeaderValue::from(decision.limit);
            header(StampName::Own("RateLimit-Limit"), Some(&limit));
            let remaining = http::HeaderValue::from(decision.remaining);
            header(StampName::Own("RateLimit-Remaining"), Some(&remaining));
            let reset = http::HeaderValue::from(decision.reset_secs);
            header(StampName::Own("RateLimit-Reset"), Some(&reset));
        }
    }

    /// Whether the stamp sets or removes the header `name` (any case): a replica's header of
    /// that name does not reach the client.
    pub fn owns(&self, name: &str) -> bool {
        let mut owned = false;
        self.each(|own, _| owned |= own.as_str().eq_ignore_ascii_case(name));
        owned
    }

    pub fn apply(&self, header: &mut ResponseHeader) -> Result<()> {
        let mut result = Ok(());
        self.each(|name, value| {
            if result.is_err() {
                return;
            }
            result = match (name, value) {
                (StampName::Own(name), Some(value)) => {
                    header.insert_header(name, value.clone()).map(|_| ())
                }
                (StampName::Edge(name), Some(value)) => header
                    .insert_header(name.clone(), value.clone())
                    .map(|_| ()),
                (name, None) => {
                    header.remove_header(name.as_str());
                    Ok(())
                }
            };
        });
        result
    }
}

/// A JSON answer of the gateway's own (a refusal, or a probe's status).
pub fn json_answer(
    status: u16,
    body: &serde_json::Value,
    retry_after: Option<u64>,
    stamp: &Stamp<'_>,
) -> Result<(ResponseHeader, Bytes)> {
    let body = Bytes::from(body.to_string());
    let mut header = ResponseHeader::build(status, Some(8))?;
    header.insert_header("Content-Type", "application/json")?;
    header.insert_header("Content-Length", http::HeaderValue::from(body.len()))?;
    if let Some(seconds) = retry_after {
        header.insert_header("Retry-After", http::HeaderValue::from(seconds))?;
    }
    stamp.apply(&mut header)?;
    Ok((header, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(response: &'a ResponseHeader, name: &str) -> Option<&'a str> {
        response.headers.get(name).and_then(|v| v.to_str().ok())
    }

    #[test]
    fn a_refusal_renders_status_envelope_and_retry_after() {
        let decision = Decision {
            allowed: false,
            limit: 5,
            remaining: 0,
            reset_secs: 12,
            retry_after_secs: 3,
        };
        let verdict = Verdict::OverLimit {
            decision,
            per_minute: 5,
        };
        let refusal = Refusal::rate_limited(
            &verdict,
            "10.0.0.1".parse().unwrap(),
            "POST",
            "/api/debates",
        )
        .unwrap();
        let stamp = Stamp {
            request_id: &http::HeaderValue::from_static("req-1"),
            hsts: Some(http::HeaderValue::from_static(
                "max-age=60; includeSubDomains",
            )),
            rate_limit: verdict.decision(),
            edge: &[],
        };
        let (response, body) = refusal.render(&stamp).unwrap();
        assert_eq!(response.status.as_u16(), 429);
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["error"]["code"], "rate_limited");
        assert_eq!(
            json["error"]["message"],
            "10.0.0.1 sent more than 5 requests per minute to POST /api/debates (ARAGORA_RATE_LIMIT); retry in 3 s"
        );
        assert_eq!(header(&response, "Retry-After"), Some("3"));
        assert_eq!(header(&response, "Content-Type"), Some("application/json"));
        assert_eq!(
            header(&response, "Content-Length"),
            Some(body.len().to_string().as_str())
        );
        assert_eq!(header(&response, "X-Request-Id"), Some("req-1"));
        assert_eq!(
            header(&response, "Strict-Transport-Security"),
            Some("max-age=60; includeSubDomains")
        );
        assert_eq!(header(&response, "RateLimit-Limit"), Some("5"));
        assert_eq!(header(&response, "RateLimit-Remaining"), Some("0"));
        assert_eq!(header(&response, "RateLimit-Reset"), Some("12"));
    }

    #[test]
    fn refusals_without_retry_after_or_stamped_extras_carry_none() {
        let stamp = Stamp {
            request_id: &http::HeaderValue::from_static("req-2"),
            hsts: None,
            rate_limit: None,
            edge: &[],
        };
        let (response, body) = Refusal::headers_too_large(40_000, 32_768)
            .render(&stamp)
            .unwrap();
        assert_eq!(response.status.as_u16(), 431);
        for absent in [
            "Retry-After",
            "Strict-Transport-Security",
            "RateLimit-Limit",
        ] {
            assert_eq!(header(&response, absent), None, "{absent}");
        }
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["error"]["code"], "headers_too_large");
        assert!(Refusal::headers_too_large(40_000, 32_768).ends_connection());
        assert!(!Refusal::maintenance().ends_connection());
        assert!(
            !Refusal::payload_too_large(1).ends_connection(),
            "closed by its unread body"
        );
        let (response, _) = Refusal::maintenance().render(&stamp).unwrap();
        assert_eq!(
            (response.status.as_u16(), header(&response, "Retry-After")),
            (503, Some("60"))
        );
    }

    #[test]
    fn only_refusing_verdicts_become_refusals() {
        let client: IpAddr = "10.0.0.1".parse().unwrap();
        let allowed = Decision {
            allowed: true,
            limit: 5,
            remaining: 4,
            reset_secs: 12,
            retry_after_secs: 0,
        };
        assert_eq!(
            Refusal::rate_limited(&Verdict::Unlimited, client, "GET", "/"),
            None
        );
        assert_eq!(
            Refusal::rate_limited(&Verdict::Allowed(allowed), client, "GET", "/"),
            None
        );
        let unverified =
            Refusal::rate_limited(&Verdict::Unverified(allowed), client, "GET", "/").unwrap();
        assert_eq!((unverified.status, unverified.retry_after), (429, Some(1)));
        assert!(unverified.message.contains("ARAGORA_RATE_LIMIT_FAIL_OPEN"));
    }

    #[test]
    fn proxy_errors_map_to_their_answers() {
        let refusal = |error: Box<Error>| Refusal::for_proxy_error(&error, 300);
        let unreachable = refusal(Error::new(ConnectRefused)).unwrap();
        assert_eq!(
            (unreachable.status, unreachable.code),
            (502, "upstream_unreachable")
        );
        let timeout = refusal(Error::new(ReadTimedout)).unwrap();
        assert_eq!((timeout.status, timeout.code), (504, "upstream_timeout"));
        assert!(timeout.message.contains("300 s"));
        let none_ready = refusal(Refusal::no_ready_upstream_error()).unwrap();
        assert_eq!(none_ready, Refusal::no_ready_upstream());
        let too_large = refusal(Error::explain(
            HTTPStatus(413),
            body_too_large_message(1024),
        ));
        assert_eq!(too_large, Some(Refusal::payload_too_large(1024)));
        let bad_chunk = refusal(Error::new_down(Custom("InvalidChunk"))).unwrap();
        assert_eq!((bad_chunk.status, bad_chunk.code), (400, "bad_request"));
        let slow_client = refusal(Error::new_down(ReadTimedout)).unwrap();
        assert_eq!(
            (slow_client.status, slow_client.code),
            (408, "request_timeout")
        );
        let client_gone = Error::new_down(ConnectionClosed);
        assert_eq!(refusal(client_gone), None, "nobody to answer");
        let broken = refusal(Error::new_up(ConnectionClosed)).unwrap();
        assert_eq!(
            (broken.status, broken.code, broken.retry_after),
            (502, "bad_gateway", None)
        );
    }
}
