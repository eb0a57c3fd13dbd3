//! The request path through the gateway: one `ProxyHttp` impl, one context per request. Each
//! phase is a short sequence of steps, each step a call into the module named for its job:
//! [`trace`](crate::trace) (request id, trace context, spans), [`client`](crate::client) (who
//! the request is from), [`limit`](crate::limit) (the rate limit's verdict),
//! [`route`](crate::route) (debate key, affinity, the replica chosen),
//! [`refusal`](crate::refusal) (every answer the gateway gives itself, and the headers every
//! answer carries).
//!
//! Phases, in the order pingora runs them, and what each does here (before them, the whole
//! request head within the client read timeout: `request_header_timeout`, a patch of the
//! vendored pingora-proxy):
//!
//! | phase | job |
//! |---|---|
//! | `request_filter` | read the request once (route template, request id and trace context, client address, debate key and affinity, WebSocket upgrade); count in; local `/healthz` `/readyz`; refuse: max in-flight 503, ambiguous framing or target 400/501 ([`framing`](crate::framing)), rate limit 429, maintenance 503, head (431) and declared body (413) limits, 503 at once when no replica is ready; client read and write timeouts (lifted for WebSocket upgrades) |
//! | `request_body_filter` | enforce the body limit on bytes actually received (413) |
//! | `upstream_peer` | pick a replica not tried yet: the debate's, the pinned one, else the best ready (slow-start weighted, least loaded of two) |
//! | `upstream_request_filter` | forward `X-Request-Id`, `traceparent`, `X-Forwarded-For` and `-Proto` |
//! | `response_filter` | add `X-Request-Id`, `RateLimit-*`, HSTS on HTTPS; register an upgraded WebSocket; pin the client to its replica |
//! | `fail_to_connect` | passive health: count the failure; retry on another replica, at most twice (nothing was sent, so any method) |
//! | `error_while_proxy` | passive health; retry an idempotent request only on a stale pooled connection (closed, reset or unreadable before any response head) or one the replica reset unread |
//! | `fail_to_proxy` | answer errors as JSON with the right status |
//! | `tunnel_upgraded`, `upgraded_tunnel` | after a WebSocket's 101, relay its two streams as a plain tunnel in a task of its own, which takes the request's context and finishes the request when it ends (idle timeout, 1001 at the drain timeout: [`websockets`](crate::websockets)) |
//! | `logging` | (`Gateway::finish`) RED metrics under the route template, span export, JSON access log, count out; for a tunnelled WebSocket, the tunnel's task does this when it ends |
//!
//! Each decision is one method of [`Gateway`] taking no pingora type (the head through the
//! [`Head`] view): `read_request`, `probe`, `refusal`, `own_answer`/`refusal_answer`, `enter`,
//! `body_received`, `next_replica`, `connect_failed`, `proxy_failed`, `replay`, `forwarded`,
//! `stamp`, `pin`, `finish`. The phases above call them, and so does the lean HTTP/1.1 engine
//! ([`crate::lean`], `ARAGORA_GATEWAY_H1_ENGINE=lean`), so both engines decide alike.

use crate::client::Client;
use crate::config::GatewayConfig;
use crate::head::Head;
use crate::headers::HeaderPolicy;
use crate::refusal::{json_answer, Refusal, Stamp};
use crate::route::Stickiness;
use crate::state::Shared;
use crate::trace::{request_id, TraceContext};
use crate::upstream::Replica;
use crate::websockets::End;
use aragora_telemetry::{method_label, route_index, route_name};
use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::HttpModules;
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session, UpgradedTunnel};
use pingora::upstreams::peer::Peer;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone)]
pub struct Gateway {
    pub shared: Arc<Shared>,
    /// Set when `OTEL_EXPORTER_OTLP_ENDPOINT` is.
    pub spans: Option<Arc<crate::trace::SpanExport>>,
}

/// Holds one unit of the gateway's in-flight count; gives it back when dropped, so a request
/// that ends on any path (even a panic in a phase) never leaks the count drain waits on.
pub(crate) struct InflightGuard(Arc<Shared>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.leave();
    }
}

/// The replica a request is sent to; its in-flight count (least-loaded choice) is held for as
/// long as the lease lives.
pub(crate) struct ReplicaLease(pub(crate) Arc<Replica>);

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
    pub(crate) started: Instant,
    pub(crate) inflight: Option<InflightGuard>,
    /// Built once, and shared (not copied) by every header that carries it.
    pub(crate) request_id: http::HeaderValue,
    pub(crate) trace: Option<TraceContext>,
    pub(crate) method: &'static str,
    pub(crate) route: &'static str,
    /// The route's place among the templates, which the metric handles are resolved by.
    pub(crate) route_slot: usize,
    pub(crate) tls: bool,
    pub(crate) upgrade: bool,
    /// Who the request is from, decided once in `request_filter`.
    pub(crate) client: Option<Client>,
    pub(crate) tried: Vec<SocketAddr>,
    pub(crate) replica: Option<ReplicaLease>,
    pub(crate) websocket: Option<crate::websockets::OpenWebSocket>,
    /// A WebSocket upgrade's place in its client's `ARAGORA_GATEWAY_MAX_WEBSOCKETS_PER_CLIENT`.
    pub(crate) client_websocket: Option<crate::websockets::ClientWebSocket>,
    pub(crate) body_bytes: usize,
    /// Why the gateway itself answered with an error, for the access log.
    pub(crate) refusal: Option<&'static str>,
    /// The rate limiter's decision, reported in `RateLimit-*` headers.
    pub(crate) limit: Option<crate::limit::Decision>,
    /// The request became a WebSocket tunnel of its own task, which finishes it (metrics,
    /// span, access line) when the tunnel ends; pingora's `logging` then has nothing to do.
    pub(crate) tunnelled: bool,
    /// The debate it names and the replica its cookie pins it to.
    pub(crate) sticky: Stickiness,
    /// A replica's response head has arrived: from then on the client may have seen part of
    /// the answer, so nothing is sent again.
    pub(crate) answered: bool,
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
    upstream: Option<Shown<SocketAddr>>,
    attempts: usize,
    client: Option<Shown<std::net::IpAddr>>,
    tls: bool,
    upgrade: bool,
    refusal: Option<&'a str>,
    error: Option<&'a str>,
}

/// A value serialized as the string its `Display` writes, without building that string first.
struct Shown<T>(T);

impl<T: std::fmt::Display> serde::Serialize for Shown<T> {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

/// The first `max` bytes of `text`, cut back to a character boundary (a path may hold
/// percent-decoded multibyte characters).
pub(crate) fn truncate_at_char(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

pub(crate) fn idempotent(method: &str) -> bool {
    matches!(method, "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE")
}

/// Whether an I/O error before any response head says the replica never read the request:
/// a reset (on Linux, closing a socket that still holds unread bytes resets the connection, and
/// so does closing a listener with the connection still in its accept queue, as a stopping
/// replica does) or a request that could not be written. A replica that read the request and
/// then hung up closes cleanly instead, and its request is not sent again: it may have acted on
/// it, or it may be a request that kills every replica it reaches.
pub(crate) fn refused_unread(kind: std::io::ErrorKind) -> bool {
    matches!(
        kind,
        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
    )
}

/// A WebSocket upgrade to the engine's `/ws` (a GET with no body): only these get the idle
/// timeouts and body limit lifted and the tunnel after their 101, so claiming `Upgrade` on
/// another request buys a client nothing.
fn websocket_upgrade(header: &impl Head, route: &str, upgrade_requested: bool) -> bool {
    let has_body = header.value("transfer-encoding").is_some()
        || header
            .value("content-length")
            .is_some_and(|length| length != b"0");
    route == "/ws"
        && header.method() == "GET"
        && !has_body
        && upgrade_requested
        && header
            .text("upgrade")
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

impl Gateway {
    /// The headers every answer to this request carries; the edge's own from `policy`
    /// ([`Shared::headers`]).
    pub(crate) fn stamp<'a>(&self, ctx: &'a Ctx, policy: &'a HeaderPolicy) -> Stamp<'a> {
        Stamp {
            request_id: &ctx.request_id,
            hsts: ctx.tls.then(|| self.shared.hsts()),
            rate_limit: ctx.limit,
            edge: policy.for_route(ctx.route_slot),
        }
    }

    /// A JSON answer from the gateway itself (a probe's), rendered for either engine.
    pub(crate) fn own_answer(
        &self,
        ctx: &Ctx,
        status: u16,
        body: serde_json::Value,
        retry_after: Option<u64>,
    ) -> Result<(ResponseHeader, Bytes)> {
        let policy = self.shared.headers();
        json_answer(status, &body, retry_after, &self.stamp(ctx, &policy))
    }

    /// `refusal` rendered for either engine, and what becomes of the connection after it.
    pub(crate) fn refusal_answer(
        &self,
        ctx: &mut Ctx,
        refusal: &Refusal,
    ) -> Result<(ResponseHeader, Bytes, AfterAnswer)> {
        ctx.refusal = Some(refusal.code);
        let policy = self.shared.headers();
        let (header, body) = refusal.render(&self.stamp(ctx, &policy))?;
        let after = if refusal.ends_connection() {
            AfterAnswer::Close
        } else {
            AfterAnswer::KeepIfRead
        };
        Ok((header, body, after))
    }

    /// Writes a JSON answer from the gateway itself and ends the request.
    async fn answer(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        status: u16,
        body: serde_json::Value,
        retry_after: Option<u64>,
    ) -> Result<bool> {
        let (header, body) = self.own_answer(ctx, status, body, retry_after)?;
        write_answer(session, header, body, AfterAnswer::KeepIfRead).await
    }

    /// Answers with `refusal` and ends the request.
    async fn refuse(&self, session: &mut Session, ctx: &mut Ctx, refusal: Refusal) -> Result<bool> {
        let (header, body, after) = self.refusal_answer(ctx, &refusal)?;
        write_answer(session, header, body, after).await
    }

    /// Reads what the later phases need from the request head, once (either engine's head);
    /// returns the client. `peer`: the connection's; `upgrade_requested`: the head asks for an
    /// upgrade (pingora's reading of `Connection: upgrade`).
    pub(crate) fn read_request(
        &self,
        header: &impl Head,
        peer: Option<std::net::IpAddr>,
        tls: bool,
        upgrade_requested: bool,
        ctx: &mut Ctx,
        config: &GatewayConfig,
    ) -> Client {
        ctx.method = method_label(header.method());
        ctx.route_slot = route_index(header.path());
        ctx.route = route_name(ctx.route_slot);
        ctx.request_id = request_id(header.value("x-request-id"));
        ctx.trace = Some(TraceContext::from_header(header.text("traceparent")));
        ctx.upgrade = websocket_upgrade(header, ctx.route, upgrade_requested);
        ctx.sticky = Stickiness::of(header);
        ctx.tls = tls;
        let client = Client::identify(
            peer,
            header.text("x-forwarded-for"),
            config.trusted_proxies.entries(),
        );
        ctx.client = Some(client);
        client
    }

    /// The answer of the gateway's own probes, for their paths.
    pub(crate) fn probe(&self, path: &str) -> Option<(u16, serde_json::Value, Option<u64>)> {
        match path {
            "/healthz" => Some((200, json!({"status": "ok"}), None)),
            "/readyz" => Some(match self.shared.not_ready_reason() {
                None => (200, json!({"status": "ready"}), None),
                Some(reason) => (
                    503,
                    json!({"status": "not_ready", "reason": reason}),
                    Some(1),
                ),
            }),
            _ => None,
        }
    }

    /// The first reason, in this order, not to pass the request on: too many in flight,
    /// ambiguous framing or target ([`crate::framing`]), the rate limit, maintenance, the head
    /// and declared body limits, no replica ready.
    pub(crate) async fn refusal(
        &self,
        header: &impl Head,
        ctx: &mut Ctx,
        client: Client,
        inflight: usize,
        config: &GatewayConfig,
    ) -> Option<Refusal> {
        let shared = &self.shared;
        if inflight > config.max_inflight_requests {
            return Some(Refusal::overloaded(config.max_inflight_requests));
        }
        if let Some(refusal) = crate::framing::check(header) {
            return Some(refusal);
        }
        let verdict = crate::limit::decide(
            &shared.limits(),
            shared.shared_limiter.as_deref(),
            client.address,
            ctx.method,
            ctx.route,
        )
        .await;
        ctx.limit = verdict.decision();
        let refusal = Refusal::rate_limited(&verdict, client.address, ctx.method, ctx.route);
        if let Some(refusal) = refusal {
            shared.metrics.series.rate_limited(ctx.route_slot);
            return Some(refusal);
        }
        if shared.in_maintenance() {
            return Some(Refusal::maintenance());
        }
        if ctx.upgrade {
            let max = config.max_websockets_per_client;
            match shared.websockets.take(client.address, max) {
                Some(slot) => ctx.client_websocket = Some(slot),
                None => {
                    shared.metrics.websockets_per_client_refused.inc();
                    return Some(Refusal::websockets_per_client(client.address, max));
                }
            }
        }
        // The replicas' maintenance (the database's) refuses new debates only: reads, watches
        // and the debates already running go on.
        if ctx.method == "POST" && matches!(ctx.route, "/api/debates" | "/api/v1/debates") {
            if let Some(report) = shared.pool.maintenance() {
                return Some(Refusal::replica_maintenance(&report));
            }
        }
        let sizes = crate::framing::sizes(header, config.max_header_bytes, config.max_body_bytes);
        if sizes.is_some() {
            return sizes;
        }
        if !shared.pool.any_ready() {
            return Some(Refusal::no_ready_upstream());
        }
        None
    }
}

/// What becomes of the client's HTTP/1.1 connection after an answer of the gateway's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterAnswer {
    /// The connection carries the client's next request if the request was read whole (no
    /// body, or all of it): a refused client must not pay a new TLS handshake per request, or
    /// the refusal costs more than serving it would.
    KeepIfRead,
    /// Closed whatever was read: the client misbehaved (a head over the limit), or the answer
    /// comes after a failed proxy attempt.
    Close,
}

pub(crate) async fn write_answer(
    session: &mut Session,
    header: ResponseHeader,
    body: Bytes,
    after: AfterAnswer,
) -> Result<bool> {
    // A body still unread is not drained: pingora's `reuse` would read all of it (a declared
    // gigabyte included) before the next request, so such a connection closes. Pingora 0.9.1
    // does the same by default (`close_on_response_before_downstream_finish`); said here so
    // it does not hang on a default. On HTTP/2 this is a no-op: the stream ends, the
    // connection stays.
    if after == AfterAnswer::Close || !session.is_body_done() {
        session.set_keepalive(None);
    }
    session
        .write_response_header(Box::new(header), false)
        .await?;
    session.write_response_body(Some(body), true).await?;
    Ok(true)
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            started: Instant::now(),
            inflight: None,
            request_id: http::HeaderValue::from_static(""),
            trace: None,
            method: "other",
            route: route_name(usize::MAX),
            route_slot: usize::MAX,
            tls: false,
            upgrade: false,
            client: None,
            tried: Vec::new(),
            replica: None,
            websocket: None,
            client_websocket: None,
            body_bytes: 0,
            refusal: None,
            limit: None,
            sticky: Stickiness::default(),
            answered: false,
            tunnelled: false,
        }
    }

    /// The whole request head within the client read timeout (a slowloris is cut with 408),
    /// not only each read of it: see the vendored pingora-proxy's README.
    fn request_header_timeout(&self) -> Option<Duration> {
        Some(Duration::from_secs(
            self.shared.config_now().client_read_timeout_secs,
        ))
    }

    /// A marker carried to the connection's next request: the vendored proxy reads it as "this
    /// connection was reused", so that head's deadline leaves room for the keep-alive wait.
    fn persist_connection_context(
        &self,
        _session: &Session,
        _ctx: &Ctx,
    ) -> Option<Box<dyn std::any::Any + Send + Sync>> {
        Some(Box::new(()))
    }

    /// No downstream modules. Pingora's default adds its response compression module, disabled
    /// (level 0), whose boxed filters still run on every request and every response task; the
    /// gateway compresses nothing (the replicas' answers pass through as they are).
    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

    /// What pingora's own error lines say about a request. Its default quotes the whole
    /// target, and a share link's or a browser WebSocket's `?token=` is a credential: the
    /// summary masks credential query values ([`aragora_config::redact_query`]) and names no
    /// header but the host.
    fn request_summary(&self, session: &Session, _ctx: &Ctx) -> String {
        let header = session.req_header();
        let target = header.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let host = header
            .headers
            .get(http::header::HOST)
            .and_then(|value| value.to_str().ok())
            .or_else(|| header.uri.host())
            .unwrap_or("-");
        format!(
            "{} {}, Host: {host}",
            header.method,
            aragora_config::redact_query(target)
        )
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let config = self.shared.config_now();
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
        let upgrade = session.is_upgrade_req();
        let header = session.req_header();
        let client = self.read_request(header, peer, tls, upgrade, ctx, &config);
        let inflight = self.enter(ctx);
        if let Some((status, body, retry_after)) = self.probe(header.uri.path()) {
            return self.answer(session, ctx, status, body, retry_after).await;
        }
        let refusal = self
            .refusal(session.req_header(), ctx, client, inflight, &config)
            .await;
        if let Some(refusal) = refusal {
            return self.refuse(session, ctx, refusal).await;
        }
        // Pingora's read timeout also applies to upgraded streams: an idle WebSocket gets the
        // WebSocket timeout instead of the request one.
        let read_timeout = if ctx.upgrade {
            config.websocket_idle_timeout_secs
        } else {
            config.client_read_timeout_secs
        };
        session.set_read_timeout(Some(Duration::from_secs(read_timeout)));
        // A client that stops reading its answer would hold the request (and its replica
        // connection) for ever: pingora sets no write timeout of its own.
        session.set_write_timeout(Some(Duration::from_secs(read_timeout)));
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
            if let Some(refusal) = self.body_received(ctx, chunk.len()) {
                return Error::e_explain(HTTPStatus(refusal.status), refusal.message);
            }
        }
        Ok(())
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let config = self.shared.config_now();
        let replica = self
            .next_replica(ctx)
            .ok_or_else(Refusal::no_ready_upstream_error)?;
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
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        request: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let incoming = request.text("x-forwarded-for").map(str::to_string);
        for (name, value) in self.forwarded(ctx, incoming.as_deref()) {
            request.insert_header(name, value)?;
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        ctx.answered = true;
        self.stamp(ctx, &self.shared.headers()).apply(response)?;
        if let (true, 101, Some(replica)) = (ctx.upgrade, response.status.as_u16(), &ctx.replica) {
            let gauge = self
                .shared
                .metrics
                .websocket_connections
                .with_label_values(&[replica.0.addr.to_string()]);
            ctx.websocket = Some(self.shared.websockets.register(gauge));
        }
        if let Some(pin) = self.pin(ctx) {
            response.append_header("Set-Cookie", pin.clone())?;
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
        let addr = peer.address().as_inet().copied();
        let retry = self.connect_failed(addr, &error, ctx);
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
        let upstream = matches!(error.esource(), ErrorSource::Upstream);
        if upstream {
            let addr = peer.address().as_inet().copied();
            self.proxy_failed(addr, broken_connection, client_reused, ctx, &error);
        }
        // Pingora's own flag covers a pooled connection found closed; a pooled connection to a
        // replica that was killed breaks as a reset or a read error instead, before any response
        // head: that request is as stale, and goes to another replica too.
        let unread = error
            .root_cause()
            .downcast_ref::<std::io::Error>()
            .is_some_and(|cause| refused_unread(cause.kind()));
        let stale =
            error.retry() || (!ctx.answered && ((client_reused && broken_connection) || unread));
        let buffered = !session.as_ref().retry_buffer_truncated();
        let retry = upstream && self.replay(ctx, stale, buffered);
        error.set_retry(retry);
        error
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        error: &Error,
        ctx: &mut Ctx,
    ) -> FailToProxy {
        let read_timeout = self.shared.config_now().upstream_read_timeout_secs;
        let Some(refusal) = Refusal::for_proxy_error(error, read_timeout) else {
            // The client went away or sent garbage: nobody to answer.
            ctx.refusal = Some("client_error");
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        };
        let status = refusal.status;
        ctx.refusal.get_or_insert(refusal.code);
        if session.response_written().is_none() {
            let policy = self.shared.headers();
            let stamp = self.stamp(ctx, &policy);
            if let Ok((header, body)) = refusal.render(&stamp) {
                let _ = write_answer(session, header, body, AfterAnswer::Close).await;
            }
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

    /// A WebSocket goes through the gateway's own tunnel after its 101: a plain byte copy with
    /// the idle timeout and the drain's 1001 (see [`crate::websockets`]).
    fn tunnel_upgraded(&self, _session: &Session, ctx: &Ctx) -> bool {
        ctx.upgrade
    }

    /// The tunnel runs as a task of its own and this request ends at once: pingora's
    /// per-request future is large (every step of a proxied request lives in it, and all of it
    /// has been touched by the time of the 101), and a WebSocket held inside it kept that
    /// memory for as long as the connection lived. The request's context moves with the
    /// tunnel (in-flight count, which the drain waits for; the replica's lease; the connection
    /// gauge), and the request is finished when the tunnel ends, as before.
    async fn upgraded_tunnel(
        &self,
        session: &mut Session,
        tunnel: UpgradedTunnel,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let idle = Duration::from_secs(self.shared.config().websocket_idle_timeout_secs);
        let mut held = std::mem::replace(ctx, self.new_ctx());
        ctx.tunnelled = true;
        let path = truncate_at_char(session.req_header().uri.path(), 200).to_string();
        let gateway = self.clone();
        tokio::spawn(async move {
            let error = match gateway.shared.websockets.relay(tunnel, idle).await {
                Ok(End::Closed | End::Drained) => None,
                Ok(End::Idle) => Some(format!("WebSocket silent both ways for {idle:?}")),
                Err(broken) => Some(format!("WebSocket tunnel: {broken}")),
            };
            gateway.finish(&path, 101, error, &mut held);
        });
        Ok(())
    }

    async fn logging(&self, session: &mut Session, error: Option<&Error>, ctx: &mut Ctx) {
        if ctx.tunnelled {
            return;
        }
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        let path = truncate_at_char(session.req_header().uri.path(), 200);
        self.finish(path, status, error.map(|e| e.to_string()), ctx);
    }
}

impl Gateway {
    /// Counts the request in (the in-flight count drain waits on, and the limit's); returns the
    /// count with it.
    pub(crate) fn enter(&self, ctx: &mut Ctx) -> usize {
        let inflight = self.shared.enter();
        ctx.inflight = Some(InflightGuard(self.shared.clone()));
        inflight
    }

    /// Counts `len` more body bytes received; the refusal when the body is now over the limit.
    pub(crate) fn body_received(&self, ctx: &mut Ctx, len: usize) -> Option<Refusal> {
        ctx.body_bytes += len;
        let limit = self.shared.config_now().max_body_bytes;
        if ctx.body_bytes > limit && !ctx.upgrade {
            let refusal = Refusal::payload_too_large(limit);
            ctx.refusal = Some(refusal.code);
            return Some(refusal);
        }
        None
    }

    /// The replica for the request's next attempt, leased (its in-flight count held) and
    /// noted as tried. A retry gives back the lease of the replica that failed, and prefers a
    /// replica not tried yet; after a stale connection, the same replica on a fresh connection
    /// is fine when it is the only one.
    pub(crate) fn next_replica(&self, ctx: &mut Ctx) -> Option<Arc<Replica>> {
        ctx.replica = None;
        let replica = ctx.sticky.choose(&self.shared.pool, &ctx.tried)?;
        ctx.tried.push(replica.addr);
        ctx.replica = Some(ReplicaLease::new(replica.clone()));
        Some(replica)
    }

    /// A connection to `addr` failed: passive health counts it; whether to try another replica.
    /// Nothing reached the replica, so any method may go to another one (at most two more).
    pub(crate) fn connect_failed(
        &self,
        addr: Option<SocketAddr>,
        error: &dyn std::fmt::Display,
        ctx: &Ctx,
    ) -> bool {
        if let Some(addr) = addr {
            self.shared
                .pool
                .observe_failure(addr, format!("connect failed: {error}"));
        }
        let retry = ctx.tried.len() < 3 && self.shared.pool.select(&ctx.tried).is_some();
        if retry {
            self.shared.metrics.upstream_retries.inc();
        }
        retry
    }

    /// Proxying to `addr` failed on the replica's side. A broken connection counts against the
    /// replica, but not a timeout (a slow answer is not a dead replica), not a reused
    /// connection it had closed, and not the end of an upgraded WebSocket (the engine closes
    /// those when it drains).
    pub(crate) fn proxy_failed(
        &self,
        addr: Option<SocketAddr>,
        broken_connection: bool,
        reused: bool,
        ctx: &Ctx,
        error: &dyn std::fmt::Display,
    ) {
        if broken_connection && !reused && !ctx.upgrade {
            if let Some(addr) = addr {
                self.shared
                    .pool
                    .observe_failure(addr, format!("proxying failed: {error}"));
            }
        }
    }

    /// Whether a failed request is sent again: only when it never reached the replica (`stale`:
    /// a reused connection found closed or broken before any response head, or any connection
    /// the replica reset unread, see [`refused_unread`]), the method is
    /// idempotent, and the whole body is still at hand (`buffered`): a POST is never replayed.
    pub(crate) fn replay(&self, ctx: &Ctx, stale: bool, buffered: bool) -> bool {
        let retry =
            stale && idempotent(ctx.method) && !ctx.upgrade && buffered && ctx.tried.len() < 3;
        if retry {
            self.shared.metrics.upstream_retries.inc();
        }
        retry
    }

    /// The headers the request carries to its replica, each replacing the client's of that
    /// name: `X-Request-Id`, `traceparent`, `X-Forwarded-For` (`incoming`: the client's) and
    /// `-Proto`.
    pub(crate) fn forwarded(
        &self,
        ctx: &Ctx,
        incoming: Option<&str>,
    ) -> impl Iterator<Item = (&'static str, http::HeaderValue)> {
        let forwarded_for = ctx
            .client
            .and_then(|c| c.forwarded_for(incoming))
            .and_then(|f| http::HeaderValue::try_from(f).ok());
        let proto = http::HeaderValue::from_static(if ctx.tls { "https" } else { "http" });
        [
            Some(("X-Request-Id", ctx.request_id.clone())),
            ctx.trace.as_ref().map(|t| ("traceparent", t.header())),
            forwarded_for.map(|f| ("X-Forwarded-For", f)),
            Some(("X-Forwarded-Proto", proto)),
        ]
        .into_iter()
        .flatten()
    }

    /// The `Set-Cookie` pinning the client to the replica that answered, when it needs one.
    pub(crate) fn pin<'a>(&self, ctx: &'a Ctx) -> Option<&'a http::HeaderValue> {
        ctx.replica.as_ref().and_then(|r| ctx.sticky.pin(&r.0))
    }

    /// The end of a request, proxied, refused or tunnelled: its RED metrics, span and access
    /// line, and the release of what it held (in-flight count, replica lease, WebSocket gauge).
    pub(crate) fn finish(&self, path: &str, status: u16, error: Option<String>, ctx: &mut Ctx) {
        let elapsed = ctx.started.elapsed();
        let metrics = &self.shared.metrics;
        metrics
            .series
            .observe(ctx.method, ctx.route_slot, status, elapsed.as_secs_f64());
        if ctx.upgrade && status != 101 {
            metrics
                .websocket_upgrade_failures
                .with_label_values(&[ctx.route])
                .inc();
        }
        ctx.websocket = None;
        ctx.client_websocket = None;
        ctx.replica = None;
        ctx.inflight = None;
        let request_id = ctx.request_id.to_str().unwrap_or("");
        if let (Some(spans), Some(trace)) = (&self.spans, &ctx.trace) {
            spans.record(crate::trace::RequestSpan {
                trace,
                method: ctx.method,
                route: ctx.route,
                status,
                started: std::time::SystemTime::now() - elapsed,
                upstream: ctx.tried.last().map(|a| a.to_string()),
                request_id,
            });
        }
        aragora_telemetry::access_log(&AccessLine {
            request_id,
            trace_id: ctx.trace.as_ref().map_or("", |t| t.trace_id()),
            method: ctx.method,
            path,
            route: ctx.route,
            status,
            duration_ms: elapsed.as_secs_f64() * 1000.0,
            upstream: ctx.tried.last().copied().map(Shown),
            attempts: ctx.tried.len(),
            client: ctx.client.and_then(|c| c.peer).map(Shown),
            tls: ctx.tls,
            upgrade: ctx.upgrade,
            refusal: ctx.refusal,
            error: error.as_deref(),
        });
    }
}
