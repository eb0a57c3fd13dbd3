//! The request path through the gateway: one `ProxyHttp` impl, one context per request.
//!
//! Phases, in the order pingora runs them, and what each does here:
//!
//! | phase | job |
//! |---|---|
//! | `request_filter` | count in; request id and trace context; local `/healthz` `/readyz`; maintenance 503; head (431) and declared body (413) limits; client read timeout (lifted for WebSocket upgrades); 503 at once when no replica is ready |
//! | `request_body_filter` | enforce the body limit on bytes actually received (413) |
//! | `upstream_peer` | pick a ready replica not tried yet (slow-start weighted, least loaded of two) |
//! | `upstream_request_filter` | forward `X-Request-Id`, `traceparent`, `X-Forwarded-For` and `-Proto` |
//! | `response_filter` | add `X-Request-Id`, and HSTS on HTTPS |
//! | `fail_to_connect` | passive health: count the failure; retry on another replica, at most twice (nothing was sent, so any method) |
//! | `error_while_proxy` | passive health; retry an idempotent request only on a stale pooled connection |
//! | `fail_to_proxy` | answer errors as JSON with the right status |
//! | `logging` | RED metrics under the route template, JSON access log, count out |

use crate::state::Shared;
use crate::upstream::Replica;
use aragora_telemetry::{error_body, method_label, route_template};
use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::Peer;
use serde_json::json;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Gateway {
    pub shared: Arc<Shared>,
    /// Set when `OTEL_EXPORTER_OTLP_ENDPOINT` is.
    pub spans: Option<Arc<crate::trace::SpanExport>>,
}

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

/// Holds one unit of the gateway's in-flight count; gives it back when dropped, so a request
/// that ends on any path (even a panic in a phase) never leaks the count drain waits on.
struct InflightGuard(Arc<Shared>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.leave();
    }
}

/// The replica a request is sent to; its in-flight count (least-loaded choice) is held for as
/// long as the lease lives.
struct ReplicaLease(Arc<Replica>);

impl ReplicaLease {
    fn new(replica: Arc<Replica>) -> Self {
        replica.inflight.fetch_add(1, Ordering::Relaxed);
        Self(replica)
    }
}

impl Drop for ReplicaLease {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

pub struct Ctx {
    started: Instant,
    started_at: std::time::SystemTime,
    inflight: Option<InflightGuard>,
    request_id: String,
    trace: Option<TraceContext>,
    method: &'static str,
    route: &'static str,
    tls: bool,
    upgrade: bool,
    client_ip: Option<IpAddr>,
    tried: Vec<SocketAddr>,
    replica: Option<ReplicaLease>,
    websocket: Option<crate::websockets::OpenWebSocket>,
    /// The upstream connection's socket, for ending an upgraded one at the drain timeout.
    upstream_fd: Option<std::os::fd::RawFd>,
    body_bytes: usize,
    /// Why the gateway itself answered with an error, for the access log.
    refusal: Option<&'static str>,
    /// The rate limiter's decision, reported in `RateLimit-*` headers.
    limit: Option<crate::limit::Decision>,
    /// The debate a request names (`/ws?debate_id=`, `/api/debates/{id}/...`): routed by
    /// consistent hash so every watcher of a debate reaches the replica that runs it.
    debate_key: Option<String>,
    /// The replica token of the client's `aragora-affinity` cookie.
    affinity: Option<String>,
}

use crate::upstream::AFFINITY_COOKIE;

/// The debate id a request is about, if its path or query names one.
fn debate_key(header: &RequestHeader) -> Option<String> {
    let path = header.uri.path();
    if path == "/ws" {
        return header.uri.query().and_then(|query| {
            query
                .split('&')
                .find_map(|pair| pair.strip_prefix("debate_id="))
                .filter(|id| !id.is_empty())
                .map(str::to_string)
        });
    }
    let rest = path
        .strip_prefix("/api/v1/debates/")
        .or_else(|| path.strip_prefix("/api/debates/"))?;
    let id = rest.split('/').next().filter(|id| !id.is_empty())?;
    Some(id.to_string())
}

/// The `aragora-affinity` value among the request's cookies.
fn affinity_cookie(header: &RequestHeader) -> Option<String> {
    header
        .headers
        .get_all("cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| {
            pair.trim()
                .strip_prefix(AFFINITY_COOKIE)?
                .strip_prefix('=')
                .map(str::to_string)
        })
}

/// The fields of one access-log line.
#[derive(serde::Serialize)]
struct AccessLine<'a> {
    request_id: &'a str,
    trace_id: &'a str,
    method: &'a str,
    path: &'a str,
    route: &'a str,
    status: u16,
    duration_ms: f64,
    upstream: Option<&'a str>,
    attempts: usize,
    client: Option<&'a str>,
    tls: bool,
    upgrade: bool,
    refusal: Option<&'a str>,
    error: Option<&'a str>,
}

/// The first `max` bytes of `text`, cut back to a character boundary (a path may hold
/// percent-decoded multibyte characters).
fn truncate_at_char(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn idempotent(method: &str) -> bool {
    matches!(method, "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE")
}

/// A WebSocket upgrade to the engine's `/ws`: only these get the idle timeouts and body limit
/// lifted, so claiming `Upgrade` on another request buys a client nothing.
fn websocket_upgrade(session: &Session, route: &str) -> bool {
    let header = session.req_header();
    route == "/ws"
        && header.method == http::Method::GET
        && session.is_upgrade_req()
        && header
            .headers
            .get("upgrade")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// A request id from the client is kept if it is short and plain; otherwise a new one.
fn request_id(incoming: Option<&str>) -> String {
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

impl Gateway {
    /// Writes a JSON answer from the gateway itself and ends the request.
    async fn answer(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        status: u16,
        body: serde_json::Value,
        retry_after: Option<u64>,
    ) -> Result<bool> {
        let body = Bytes::from(body.to_string());
        let mut header = ResponseHeader::build(status, Some(6))?;
        header.insert_header("Content-Type", "application/json")?;
        header.insert_header("Content-Length", body.len().to_string())?;
        header.insert_header("X-Request-Id", ctx.request_id.as_str())?;
        if let Some(seconds) = retry_after {
            header.insert_header("Retry-After", seconds.to_string())?;
        }
        if ctx.tls {
            header.insert_header("Strict-Transport-Security", self.shared.hsts())?;
        }
        rate_limit_headers(&mut header, ctx.limit)?;
        session.set_keepalive(None);
        session
            .write_response_header(Box::new(header), false)
            .await?;
        session.write_response_body(Some(body), true).await?;
        Ok(true)
    }

    async fn refuse(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        status: u16,
        code: &'static str,
        message: String,
        retry_after: Option<u64>,
    ) -> Result<bool> {
        ctx.refusal = Some(code);
        let body = error_body(code, &message);
        self.answer(session, ctx, status, body, retry_after).await
    }
}

fn rate_limit_headers(
    header: &mut ResponseHeader,
    decision: Option<crate::limit::Decision>,
) -> Result<()> {
    if let Some(decision) = decision {
        header.insert_header("RateLimit-Limit", decision.limit.to_string())?;
        header.insert_header("RateLimit-Remaining", decision.remaining.to_string())?;
        header.insert_header("RateLimit-Reset", decision.reset_secs.to_string())?;
    }
    Ok(())
}

fn head_size(header: &RequestHeader) -> usize {
    let target = header
        .uri
        .path_and_query()
        .map_or(1, |pq| pq.as_str().len());
    let line = header.method.as_str().len() + target + 12;
    line + header
        .headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum::<usize>()
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            started: Instant::now(),
            started_at: std::time::SystemTime::now(),
            inflight: None,
            request_id: String::new(),
            trace: None,
            method: "other",
            route: "unmatched",
            tls: false,
            upgrade: false,
            client_ip: None,
            tried: Vec::new(),
            replica: None,
            websocket: None,
            upstream_fd: None,
            body_bytes: 0,
            refusal: None,
            limit: None,
            debate_key: None,
            affinity: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let shared = &self.shared;
        let config = shared.config();
        let header = session.req_header();
        ctx.method = method_label(&header.method);
        ctx.route = route_template(header.uri.path());
        let path = header.uri.path().to_string();
        let header_value = |name: &str| header.headers.get(name).and_then(|v| v.to_str().ok());
        ctx.request_id = request_id(header_value("x-request-id"));
        ctx.trace = Some(TraceContext::from_header(header_value("traceparent")));
        let declared_length = header_value("content-length").and_then(|v| v.parse::<usize>().ok());
        let head_bytes = head_size(header);
        ctx.upgrade = websocket_upgrade(session, ctx.route);
        ctx.debate_key = debate_key(header);
        ctx.affinity = affinity_cookie(header);
        ctx.tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
        ctx.client_ip = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let inflight = shared.enter();
        ctx.inflight = Some(InflightGuard(shared.clone()));

        match path.as_str() {
            "/healthz" => {
                return self
                    .answer(session, ctx, 200, json!({"status": "ok"}), None)
                    .await
            }
            "/readyz" => {
                return match shared.not_ready_reason() {
                    None => {
                        self.answer(session, ctx, 200, json!({"status": "ready"}), None)
                            .await
                    }
                    Some(reason) => {
                        let body = json!({"status": "not_ready", "reason": reason});
                        self.answer(session, ctx, 503, body, Some(1)).await
                    }
                };
            }
            _ => {}
        }
        if inflight > config.max_inflight_requests {
            let message = format!(
                "the gateway is serving {} requests, its limit (ARAGORA_GATEWAY_MAX_INFLIGHT); retry shortly",
                config.max_inflight_requests
            );
            return self
                .refuse(session, ctx, 503, "overloaded", message, Some(1))
                .await;
        }
        let limits = shared.limits();
        if let Some((limiter, per_route)) = limits.limiter_for(ctx.method, ctx.route) {
            let peer = ctx.client_ip.unwrap_or(IpAddr::from([0, 0, 0, 0]));
            let forwarded = session
                .req_header()
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok());
            let client = crate::limit::client_address(peer, forwarded, &limits.trusted);
            if !limits.is_allowed_client(&client) {
                let mut decision = limiter.check(client);
                let mut backend_down = false;
                if let (true, Some(redis)) = (decision.allowed, &shared.shared_limiter) {
                    let key = if per_route {
                        format!("{} {} {client}", ctx.method, ctx.route)
                    } else {
                        client.to_string()
                    };
                    match redis
                        .check(&key, limiter.per_minute(), limiter.burst())
                        .await
                    {
                        Some(shared_decision) => decision = shared_decision,
                        None => backend_down = !redis.fail_open(),
                    }
                }
                ctx.limit = Some(decision);
                if !decision.allowed || backend_down {
                    limits.note_refusal(client);
                    shared
                        .metrics
                        .rate_limited
                        .with_label_values(&[ctx.route])
                        .inc();
                    let (message, retry) = if backend_down {
                        (
                            "the shared rate limit cannot be checked (Redis does not answer) and ARAGORA_RATE_LIMIT_FAIL_OPEN is false; retry shortly".to_string(),
                            1,
                        )
                    } else {
                        (
                            format!(
                                "{client} sent more than {} requests per minute to {} {} (ARAGORA_RATE_LIMIT); retry in {} s",
                                limiter.per_minute(),
                                ctx.method,
                                ctx.route,
                                decision.retry_after_secs
                            ),
                            decision.retry_after_secs,
                        )
                    };
                    return self
                        .refuse(session, ctx, 429, "rate_limited", message, Some(retry))
                        .await;
                }
            }
        }
        if shared.in_maintenance() {
            let message = "aragora is in maintenance; retry later".to_string();
            return self
                .refuse(session, ctx, 503, "maintenance", message, Some(60))
                .await;
        }
        if head_bytes > config.max_header_bytes {
            let message = format!(
                "the request line and headers take {head_bytes} bytes; the limit is {} (ARAGORA_GATEWAY_MAX_HEADER_BYTES)",
                config.max_header_bytes
            );
            return self
                .refuse(session, ctx, 431, "headers_too_large", message, None)
                .await;
        }
        if declared_length.is_some_and(|length| length > config.max_body_bytes) {
            let message = format!(
                "the body is larger than {} bytes (ARAGORA_GATEWAY_MAX_BODY_BYTES); send a smaller one",
                config.max_body_bytes
            );
            return self
                .refuse(session, ctx, 413, "payload_too_large", message, None)
                .await;
        }
        if ctx.upgrade {
            // Pingora's read timeout also applies to upgraded streams: an idle WebSocket gets
            // the WebSocket timeout instead of the request one.
            let idle = Duration::from_secs(config.websocket_idle_timeout_secs);
            session.set_read_timeout(Some(idle));
        } else {
            session.set_read_timeout(Some(Duration::from_secs(config.client_read_timeout_secs)));
        }
        if !shared.pool.any_ready() {
            let message = "no engine replica is ready; retry shortly".to_string();
            return self
                .refuse(session, ctx, 503, "no_ready_upstream", message, Some(1))
                .await;
        }
        Ok(false)
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Some(chunk) = body {
            ctx.body_bytes += chunk.len();
            let limit = self.shared.config().max_body_bytes;
            if ctx.body_bytes > limit && !ctx.upgrade {
                ctx.refusal = Some("payload_too_large");
                return Error::e_explain(
                    HTTPStatus(413),
                    format!(
                        "the body is larger than {limit} bytes (ARAGORA_GATEWAY_MAX_BODY_BYTES); send a smaller one"
                    ),
                );
            }
        }
        Ok(())
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let config = self.shared.config();
        // A retry gives back the lease of the replica that failed, and prefers a replica not
        // tried yet; after a stale pooled connection, the same replica on a fresh connection is
        // fine when it is the only one.
        ctx.replica = None;
        let pool = &self.shared.pool;
        // A debate's requests and watchers go to its replica; a pinned client to its replica
        // while it is ready; everyone else to the best ready replica.
        let sticky = match (&ctx.debate_key, &ctx.affinity) {
            (Some(key), _) => pool.select_by_key(key, &ctx.tried),
            (None, Some(token)) => pool.select_by_token(token, &ctx.tried),
            (None, None) => None,
        };
        let replica = sticky
            .or_else(|| pool.select(&ctx.tried))
            .or_else(|| (!ctx.tried.is_empty()).then(|| pool.select(&[])).flatten())
            .ok_or_else(|| {
                Error::explain(HTTPStatus(503), "no engine replica is ready; retry shortly")
            })?;
        ctx.tried.push(replica.addr);
        let mut peer = HttpPeer::new(replica.addr, false, String::new());
        let connect = Duration::from_millis(config.upstream_connect_timeout_ms);
        peer.options.connection_timeout = Some(connect);
        peer.options.total_connection_timeout = Some(connect);
        peer.options.read_timeout = Some(Duration::from_secs(if ctx.upgrade {
            config.websocket_idle_timeout_secs
        } else {
            config.upstream_read_timeout_secs
        }));
        peer.options.idle_timeout = Some(Duration::from_secs(60));
        ctx.replica = Some(ReplicaLease::new(replica));
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        request: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        request.insert_header("X-Request-Id", ctx.request_id.as_str())?;
        if let Some(trace) = &ctx.trace {
            request.insert_header("traceparent", trace.header())?;
        }
        if let Some(ip) = ctx.client_ip {
            // A chain is passed on only from a trusted proxy; from anyone else it is replaced,
            // so the engine's logs cannot be told a made-up client address either.
            let peer_trusted = self
                .shared
                .limits()
                .trusted
                .iter()
                .any(|net| net.contains(&ip));
            let incoming = request
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .filter(|_| peer_trusted);
            let forwarded = match incoming {
                Some(chain) => format!("{chain}, {ip}"),
                None => ip.to_string(),
            };
            request.insert_header("X-Forwarded-For", forwarded)?;
        }
        request.insert_header("X-Forwarded-Proto", if ctx.tls { "https" } else { "http" })?;
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        response.insert_header("X-Request-Id", ctx.request_id.as_str())?;
        if ctx.tls {
            response.insert_header("Strict-Transport-Security", self.shared.hsts())?;
        }
        rate_limit_headers(response, ctx.limit)?;
        if let (true, 101, Some(replica)) = (ctx.upgrade, response.status.as_u16(), &ctx.replica) {
            let gauge = self
                .shared
                .metrics
                .websocket_connections
                .with_label_values(&[replica.0.addr.to_string()]);
            ctx.websocket = Some(self.shared.websockets.register(ctx.upstream_fd, gauge));
        }
        if let Some(replica) = &ctx.replica {
            if ctx.affinity.as_deref() != Some(replica.0.affinity.as_str()) {
                // Pin the client (new, or re-pinned because its replica left).
                response.append_header("Set-Cookie", replica.0.pin_cookie.clone())?;
            }
        }
        Ok(())
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut Ctx,
        mut error: Box<Error>,
    ) -> Box<Error> {
        if let Some(addr) = peer.address().as_inet() {
            self.shared
                .pool
                .observe_failure(*addr, format!("connect failed: {error}"));
        }
        // Nothing reached the replica, so any method may go to another one (at most two more).
        let retry = ctx.tried.len() < 3 && self.shared.pool.select(&ctx.tried).is_some();
        if retry {
            self.shared.metrics.upstream_retries.inc();
        }
        error.set_retry(retry);
        error
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        error: Box<Error>,
        ctx: &mut Ctx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut error = error.more_context(format!("replica {}", peer.address()));
        // Pingora marks some errors "retry only if the connection was reused"; that must be
        // decided before anything reads the flag.
        error.retry.decide_reuse(client_reused);
        // A broken connection counts against the replica, but not a timeout (a slow answer is
        // not a dead replica), not a pooled connection it had closed, and not the end of an
        // upgraded WebSocket (the engine closes those when it drains).
        let broken_connection = matches!(
            error.etype(),
            ConnectionClosed | ReadError | WriteError | H2Error | InvalidHTTPHeader
        );
        if matches!(error.esource(), ErrorSource::Upstream)
            && broken_connection
            && !client_reused
            && !ctx.upgrade
        {
            if let Some(addr) = peer.address().as_inet() {
                self.shared
                    .pool
                    .observe_failure(*addr, format!("proxying failed: {error}"));
            }
        }
        // Sent again only when pingora says the request never reached the replica (a stale
        // pooled connection), the method is idempotent, and the whole body is still buffered:
        // a POST is never replayed.
        let replayable = idempotent(ctx.method)
            && !ctx.upgrade
            && !session.as_ref().retry_buffer_truncated()
            && ctx.tried.len() < 3;
        let retry = error.retry() && replayable && matches!(error.esource(), ErrorSource::Upstream);
        if retry {
            self.shared.metrics.upstream_retries.inc();
        }
        error.set_retry(retry);
        error
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        error: &Error,
        ctx: &mut Ctx,
    ) -> FailToProxy {
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
            HTTPStatus(503) => (
                503,
                "no_ready_upstream",
                "no engine replica is ready; retry shortly".to_string(),
            ),
            HTTPStatus(code) => (*code, "error", error.to_string()),
            ConnectTimedout | ConnectRefused | ConnectNoRoute | ConnectError
            | ConnectProxyFailure => (
                502,
                "upstream_unreachable",
                "the engine replica could not be reached; retry, another replica will answer"
                    .to_string(),
            ),
            ReadTimedout => (
                504,
                "upstream_timeout",
                format!(
                    "the engine replica did not answer within {} s (ARAGORA_UPSTREAM_READ_TIMEOUT)",
                    self.shared.config().upstream_read_timeout_secs
                ),
            ),
            _ if matches!(error.esource(), ErrorSource::Downstream) => {
                // The client went away or sent garbage: nobody to answer.
                ctx.refusal = Some("client_error");
                return FailToProxy {
                    error_code: 0,
                    can_reuse_downstream: false,
                };
            }
            _ => (
                502,
                "bad_gateway",
                "the engine replica failed while answering; retry".to_string(),
            ),
        };
        ctx.refusal.get_or_insert(code);
        let retry_after = (status == 503).then_some(1);
        let body = error_body(code, &message);
        if session.response_written().is_none() {
            let _ = self.answer(session, ctx, status, body, retry_after).await;
        }
        FailToProxy {
            error_code: status,
            can_reuse_downstream: false,
        }
    }

    /// A client that went away is not the gateway's error: it is in the access line
    /// (`error`), not logged again as an ERROR.
    fn suppress_error_log(&self, _session: &Session, _ctx: &Ctx, error: &Error) -> bool {
        matches!(error.esource(), ErrorSource::Downstream)
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        _reused: bool,
        _peer: &HttpPeer,
        fd: std::os::unix::io::RawFd,
        _digest: Option<&pingora::protocols::Digest>,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if ctx.upgrade {
            ctx.upstream_fd = Some(fd);
        }
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<Duration>> {
        if end_of_stream && ctx.websocket.is_some() {
            crate::websockets::on_upstream_end(body, self.shared.websockets.closing());
        }
        Ok(None)
    }

    async fn logging(&self, session: &mut Session, error: Option<&Error>, ctx: &mut Ctx) {
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        let code = http::StatusCode::from_u16(status).ok();
        let status_label = code.as_ref().map_or("0", |c| c.as_str());
        let elapsed = ctx.started.elapsed();
        let metrics = &self.shared.metrics;
        metrics
            .http_requests
            .with_label_values(&[ctx.method, ctx.route, status_label])
            .inc();
        metrics
            .request_latency
            .with_label_values(&[ctx.method, ctx.route])
            .observe(elapsed.as_secs_f64());
        if ctx.upgrade && status != 101 {
            metrics
                .websocket_upgrade_failures
                .with_label_values(&[ctx.route])
                .inc();
        }
        ctx.websocket = None;
        ctx.replica = None;
        ctx.inflight = None;
        if let (Some(spans), Some(trace)) = (&self.spans, &ctx.trace) {
            spans.record(crate::trace::RequestSpan {
                trace,
                method: ctx.method,
                route: ctx.route,
                status,
                started: ctx.started_at,
                upstream: ctx.tried.last().map(|a| a.to_string()),
                request_id: &ctx.request_id,
            });
        }
        let path = session.req_header().uri.path();
        let upstream = ctx.tried.last().map(|a| a.to_string());
        let client = ctx.client_ip.map(|ip| ip.to_string());
        let error = error.map(|e| e.to_string());
        aragora_telemetry::access_log(&AccessLine {
            request_id: &ctx.request_id,
            trace_id: ctx.trace.as_ref().map_or("", |t| t.trace_id.as_str()),
            method: ctx.method,
            path: truncate_at_char(path, 200),
            route: ctx.route,
            status,
            duration_ms: elapsed.as_secs_f64() * 1000.0,
            upstream: upstream.as_deref(),
            attempts: ctx.tried.len(),
            client: client.as_deref(),
            tls: ctx.tls,
            upgrade: ctx.upgrade,
            refusal: ctx.refusal,
            error: error.as_deref(),
        });
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
    fn debates_and_affinity_are_read_from_the_request() {
        let request = |uri: &str, cookie: Option<&str>| {
            let mut header = RequestHeader::build("GET", uri.as_bytes(), None).unwrap();
            if let Some(cookie) = cookie {
                header.insert_header("cookie", cookie).unwrap();
            }
            header
        };
        assert_eq!(
            debate_key(&request("/ws?last_seq=3&debate_id=abc", None)).as_deref(),
            Some("abc")
        );
        assert_eq!(
            debate_key(&request("/api/v1/debates/abc/messages", None)).as_deref(),
            Some("abc")
        );
        assert_eq!(debate_key(&request("/api/debates", None)), None);
        let pinned = request(
            "/api/debates",
            Some("theme=dark; aragora-affinity=00ff; x=1"),
        );
        assert_eq!(affinity_cookie(&pinned).as_deref(), Some("00ff"));
    }

    #[test]
    fn request_ids_are_kept_only_when_plain() {
        assert_eq!(request_id(Some("abc-123")), "abc-123");
        assert_ne!(request_id(Some("bad id with spaces")), "bad id with spaces");
        assert_eq!(request_id(None).len(), 36);
    }
}
