//! The lean HTTP/1.1 engine (`ARAGORA_GATEWAY_H1_ENGINE=lean`): a pingora `ServerApp` that
//! serves each client connection's HTTP/1.1 requests itself, with httparse and buffers reused
//! by every request of the connection, instead of pingora's `HttpProxy` (its per-request
//! session, channels, boxed futures and connection pool). Measured in BENCHMARKS.md
//! ("Lever 6").
//!
//! Every decision is the gateway's own, the same functions the pingora path calls
//! ([`crate::proxy::Gateway`]): the head is read through the [`crate::head::Head`] view (route,
//! request id, trace context, client, debate key and affinity, framing checks, limits), the
//! gateway's answers are rendered by [`crate::refusal`], replicas are chosen, leased, retried
//! and passively health-checked by the same steps, and each request ends in
//! [`Gateway::finish`] (RED metrics, span, access line). What is this engine's own is the wire:
//!
//! - one connection per replica in use, pinned to the client connection (sticky routing may
//!   send the next request to another replica: that one gets its own), opened within
//!   `ARAGORA_UPSTREAM_CONNECT_TIMEOUT_MS`; a failed connect counts against the replica and the
//!   request goes to another; a pinned connection found broken before any answer (the replica
//!   restarted) sends an idempotent bodiless request again, on a new connection;
//! - the request's head is forwarded minus the hop-by-hop headers and with the forwarded
//!   headers replacing the client's; the response's minus the hop-by-hop headers and those the
//!   stamp owns, with the stamp's and the affinity cookie appended as bytes;
//! - a gateway answer (429, 503, ...) keeps the connection when the request was read whole
//!   (it had no body), as the pingora path does;
//! - the keep-alive wait ends when the server shuts down (drain), so idle connections close.
//!
//! What it hands to pingora's `HttpProxy` (with the bytes read so far as the session's
//! pipelined prefix, so pingora parses the request again from its start, then serves the rest
//! of the connection): an h2 connection (ALPN), unless `ARAGORA_GATEWAY_H2_ENGINE=lean` has
//! [`http2`] serve it; a WebSocket or other `Upgrade`; a head httparse
//! refuses or that is over the read limit (pingora answers it as it answers its own); a target
//! that is not origin-form (`http://...`, `host:port`, `*`). Limits of this engine: the request
//! body is sent whole before the response is read; `Connection` naming other headers is not
//! honoured beyond the hop-by-hop list.

pub mod h1;
pub mod http2;

use crate::head::Head;
use crate::proxy::{AfterAnswer, Ctx, Gateway};
use crate::refusal::Refusal;
use bytes::{Buf, BytesMut};
use h1::{Framing, LeanHead, Parse, Parsed, RelayError};
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::http::ResponseHeader;
use pingora::prelude::fast_timeout::fast_timeout;
use pingora::prelude::*;
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Stream, ALPN};
use pingora::proxy::{HttpProxy, ProxyHttp};
use pingora::server::ShutdownWatch;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// How long an idle keep-alive connection waits for its next request (pingora's default).
const KEEPALIVE: Duration = Duration::from_secs(60);
/// The longest head read before pingora's path gets the connection (and answers it: its
/// limit is larger, and the gateway's 431 comes from the head's size either way).
const MAX_READ_HEAD: usize = 64 * 1024;

/// The lean engines of one proxy runtime; `fallback` is pingora's path, for what they do not
/// serve. `h1`, `h2`: whether this runtime's HTTP/1.1 connections and HTTP/2 connections are
/// served by the lean engines ([`http2`] for HTTP/2) or by pingora's.
pub struct LeanApp {
    pub gateway: Gateway,
    pub fallback: Arc<HttpProxy<Gateway>>,
    pub h1: bool,
    pub h2: bool,
}

#[async_trait::async_trait]
impl ServerApp for LeanApp {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            if self.h2 {
                http2::serve(&self.gateway, stream, shutdown).await;
                return None;
            }
            return self.fallback.process_new(stream, shutdown).await;
        }
        if !self.h1 {
            return self.fallback.process_new(stream, shutdown).await;
        }
        let mut conn = Conn::new(stream);
        match conn.serve(&self.gateway, shutdown).await {
            Ok(Next::Close | Next::Keep) => {}
            Ok(Next::Fallback) => {
                let Conn { down, dbuf, .. } = conn;
                hand_over(&self.fallback, down, dbuf, shutdown).await;
            }
            Err(error) => tracing::debug!("lean h1 connection ended: {error}"),
        }
        None
    }
}

/// The rest of a connection, from the request at the start of `read` on, served by pingora's
/// HTTP/1 session the way pingora serves a connection of its own.
async fn hand_over<F: HttpServerApp + Send + Sync + 'static>(
    app: &Arc<F>,
    stream: Stream,
    read: BytesMut,
    shutdown: &ShutdownWatch,
) {
    let mut session = ServerSession::new_http1(stream);
    session.set_keepalive(Some(KEEPALIVE.as_secs()));
    session.set_pipelined_prefix(read);
    let mut result = app.process_new_http(session, shutdown).await;
    while let Some((stream, settings)) = result.map(|reused| reused.consume()) {
        let mut session = ServerSession::new_http1(stream);
        if let Some(settings) = settings {
            settings.apply_to_session(&mut session);
        }
        result = app.process_new_http(session, shutdown).await;
    }
}

enum Next {
    Close,
    /// The request at the start of the read buffer, and the rest of the connection, go to
    /// pingora's path.
    Fallback,
    /// The connection carries the next request.
    Keep,
}

/// A connection to a replica, pinned to one client connection.
struct Upstream {
    addr: SocketAddr,
    stream: TcpStream,
    buf: BytesMut,
}

/// One client connection and the replica connections pinned to it.
struct Conn {
    down: Stream,
    dbuf: BytesMut,
    parsed: Parsed,
    ups: Vec<Upstream>,
    /// The request head to send upstream, kept for a second attempt.
    head: Vec<u8>,
    /// What goes out next: a head, with the first part of its body.
    out: Vec<u8>,
    peer: Option<IpAddr>,
    tls: bool,
}

/// What the engine reads from a request head beyond the gateway's decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// How the body ends (the head's `Transfer-Encoding` or `Content-Length`); meaningful
    /// once [`crate::framing::check`] has passed the head.
    pub framing: Framing,
    pub keep_alive: bool,
    pub http10: bool,
    pub head_method: bool,
    pub expect_continue: bool,
}

/// How a request ended, for its access line.
struct Outcome {
    status: u16,
    error: Option<String>,
    next: Next,
}

impl Outcome {
    fn close(status: u16, error: Option<String>) -> Self {
        Self {
            status,
            error,
            next: Next::Close,
        }
    }
}

impl Conn {
    fn new(down: Stream) -> Self {
        let peer = down
            .get_socket_digest()
            .and_then(|digest| digest.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        let tls = down.get_ssl_digest().is_some();
        Conn {
            down,
            dbuf: BytesMut::with_capacity(h1::READ_CHUNK),
            parsed: Parsed::default(),
            ups: Vec::new(),
            head: Vec::with_capacity(4096),
            out: Vec::with_capacity(4096),
            peer,
            tls,
        }
    }

    async fn serve(&mut self, gateway: &Gateway, shutdown: &ShutdownWatch) -> io::Result<Next> {
        let mut first = true;
        loop {
            match self.read_head(gateway, first, shutdown).await? {
                Some(Next::Keep) => {}
                Some(other) => return Ok(other),
                None => return Ok(Next::Close),
            }
            first = false;
            match self.request(gateway, shutdown).await? {
                Next::Keep => {}
                other => {
                    if matches!(other, Next::Close) {
                        let _ = self.down.shutdown().await;
                    }
                    return Ok(other);
                }
            }
        }
    }

    /// Reads the next request head into `parsed`. `None`: the client closed between requests,
    /// or the server is shutting down; `Fallback`: pingora's path reads this one.
    async fn read_head(
        &mut self,
        gateway: &Gateway,
        first: bool,
        shutdown: &ShutdownWatch,
    ) -> io::Result<Option<Next>> {
        let read_timeout =
            Duration::from_secs(gateway.shared.config_now().client_read_timeout_secs);
        // The whole head within the client read timeout, counted from its first byte (from
        // the connection's start for the first request), as on pingora's path.
        let mut deadline =
            (first || !self.dbuf.is_empty()).then(|| tokio::time::Instant::now() + read_timeout);
        loop {
            if !self.dbuf.is_empty() {
                match self.parsed.parse(&self.dbuf) {
                    Parse::Complete => return Ok(Some(Next::Keep)),
                    Parse::Invalid => return Ok(Some(Next::Fallback)),
                    Parse::Partial if self.dbuf.len() >= MAX_READ_HEAD => {
                        return Ok(Some(Next::Fallback))
                    }
                    Parse::Partial => {}
                }
            }
            let read = match deadline {
                Some(deadline) => {
                    let wait = deadline.saturating_duration_since(tokio::time::Instant::now());
                    match h1::fill(&mut self.down, &mut self.dbuf, wait).await {
                        Err(error) if error.kind() == io::ErrorKind::TimedOut => {
                            // pingora's path answers a head this slow with 408 and a close.
                            let _ = self.write_raw(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", read_timeout).await;
                            return Ok(None);
                        }
                        other => other?,
                    }
                }
                None => {
                    // The keep-alive wait: ends with the server's shutdown (drain).
                    let mut watch = shutdown.clone();
                    if *watch.borrow() {
                        return Ok(None);
                    }
                    tokio::select! {
                        read = h1::fill(&mut self.down, &mut self.dbuf, KEEPALIVE) => {
                            match read {
                                Err(error) if error.kind() == io::ErrorKind::TimedOut => return Ok(None),
                                other => other?,
                            }
                        }
                        _ = watch.changed() => return Ok(None),
                    }
                }
            };
            if read == 0 {
                return Ok(None);
            }
            deadline.get_or_insert_with(|| tokio::time::Instant::now() + read_timeout);
        }
    }

    async fn write_raw(&mut self, bytes: &[u8], wait: Duration) -> io::Result<()> {
        h1::send(&mut self.down, bytes, wait).await
    }

    /// Serves the request whose head is parsed: the gateway's decisions, then the replica.
    async fn request(&mut self, gateway: &Gateway, shutdown: &ShutdownWatch) -> io::Result<Next> {
        let config = gateway.shared.config_now();
        let mut ctx = gateway.new_ctx();
        // Read the head's facts while it borrows the buffer; the head to send upstream is
        // written into `head` now, so the buffer is free once the decisions are made.
        let (request, refusal, probe, path) = {
            let view = self.parsed.view(&self.dbuf);
            let Some(request) = examine(&view) else {
                return Ok(Next::Fallback);
            };
            let client = gateway.read_request(&view, self.peer, self.tls, false, &mut ctx, &config);
            let inflight = gateway.enter(&mut ctx);
            let path = crate::proxy::truncate_at_char(view.path(), 200).to_string();
            let probe = gateway.probe(view.path());
            let refusal = match probe {
                Some(_) => None,
                None => {
                    gateway
                        .refusal(&view, &mut ctx, client, inflight, &config)
                        .await
                }
            };
            if probe.is_none() && refusal.is_none() {
                let forwarded: Vec<(&'static str, http::HeaderValue)> = gateway
                    .forwarded(&ctx, view.text("x-forwarded-for"))
                    .collect();
                forward_head(&view, request.http10, &forwarded, &mut self.head);
            }
            (request, refusal, probe, path)
        };
        self.dbuf.advance(self.parsed.len);
        let outcome = if let Some((status, body, retry_after)) = probe {
            match gateway.own_answer(&ctx, status, body, retry_after) {
                Ok((header, body)) => {
                    self.answer(&config, &request, header, &body, AfterAnswer::KeepIfRead)
                        .await
                }
                Err(error) => Outcome::close(500, Some(error.to_string())),
            }
        } else if let Some(refusal) = refusal {
            self.refuse(gateway, &config, &request, &mut ctx, &refusal)
                .await
        } else {
            self.proxy(gateway, &config, &request, &mut ctx, shutdown)
                .await
        };
        gateway.finish(&path, outcome.status, outcome.error, &mut ctx);
        Ok(outcome.next)
    }

    /// Writes an answer of the gateway's own; the connection stays when `after` allows and
    /// the request was read whole.
    async fn answer(
        &mut self,
        config: &crate::GatewayConfig,
        request: &Request,
        header: ResponseHeader,
        body: &[u8],
        after: AfterAnswer,
    ) -> Outcome {
        let keep = after == AfterAnswer::KeepIfRead
            && request.framing == Framing::None
            && request.keep_alive;
        self.out.clear();
        write_response_head(&header, request.http10, keep, &mut self.out);
        self.out.extend_from_slice(body);
        let wait = Duration::from_secs(config.client_read_timeout_secs);
        let status = header.status.as_u16();
        match h1::send(&mut self.down, &self.out, wait).await {
            Ok(()) if keep => Outcome {
                status,
                error: None,
                next: Next::Keep,
            },
            Ok(()) => Outcome::close(status, None),
            Err(error) => Outcome::close(status, Some(error.to_string())),
        }
    }

    async fn refuse(
        &mut self,
        gateway: &Gateway,
        config: &crate::GatewayConfig,
        request: &Request,
        ctx: &mut Ctx,
        refusal: &Refusal,
    ) -> Outcome {
        match gateway.refusal_answer(ctx, refusal) {
            Ok((header, body, after)) => self.answer(config, request, header, &body, after).await,
            Err(error) => Outcome::close(500, Some(error.to_string())),
        }
    }

    /// The answer to a failed proxy attempt, as the pingora path gives it
    /// ([`Refusal::for_proxy_error`]); none when the client is the one that failed.
    async fn failed(
        &mut self,
        gateway: &Gateway,
        config: &crate::GatewayConfig,
        request: &Request,
        ctx: &mut Ctx,
        error: Box<Error>,
    ) -> Outcome {
        let Some(refusal) = Refusal::for_proxy_error(&error, config.upstream_read_timeout_secs)
        else {
            ctx.refusal = Some("client_error");
            return Outcome::close(0, Some(error.to_string()));
        };
        let mut outcome = match gateway.refusal_answer(ctx, &refusal) {
            Ok((header, body, _)) => {
                self.answer(config, request, header, &body, AfterAnswer::Close)
                    .await
            }
            Err(render) => Outcome::close(500, Some(render.to_string())),
        };
        outcome.error.get_or_insert_with(|| error.to_string());
        outcome
    }

    /// Sends the request to a replica and its answer to the client.
    async fn proxy(
        &mut self,
        gateway: &Gateway,
        config: &crate::GatewayConfig,
        request: &Request,
        ctx: &mut Ctx,
        shutdown: &ShutdownWatch,
    ) -> Outcome {
        let client_wait = Duration::from_secs(config.client_read_timeout_secs);
        let upstream_wait = Duration::from_secs(config.upstream_read_timeout_secs);
        let connect_wait = Duration::from_millis(config.upstream_connect_timeout_ms);
        if request.expect_continue {
            if let Err(error) = self
                .write_raw(b"HTTP/1.1 100 Continue\r\n\r\n", client_wait)
                .await
            {
                return Outcome::close(0, Some(error.to_string()));
            }
        }
        let replayable = request.framing == Framing::None && crate::proxy::idempotent(ctx.method);
        let (slot, response) = loop {
            let Some(replica) = gateway.next_replica(ctx) else {
                let error = Refusal::no_ready_upstream_error();
                return self.failed(gateway, config, request, ctx, error).await;
            };
            let addr = replica.addr;
            let mut pinned = self.ups.iter().position(|up| up.addr == addr);
            // A request that cannot be sent again must not meet a pinned connection the
            // replica closed while it was idle: one non-blocking read says (pingora's pool
            // watches its idle connections for the same reason).
            if let Some(slot) = pinned.filter(|_| !replayable) {
                if !still_open(&self.ups[slot].stream) {
                    self.ups.swap_remove(slot);
                    pinned = None;
                }
            }
            let reused = pinned.is_some();
            let slot = match pinned {
                Some(slot) => slot,
                None => match connect(addr, connect_wait).await {
                    Ok(stream) => {
                        self.ups.push(Upstream {
                            addr,
                            stream,
                            buf: BytesMut::with_capacity(h1::READ_CHUNK),
                        });
                        self.ups.len() - 1
                    }
                    Err(error) => {
                        if gateway.connect_failed(Some(addr), &error, ctx) {
                            continue;
                        }
                        return self.failed(gateway, config, request, ctx, error).await;
                    }
                },
            };
            match self
                .exchange(gateway, slot, request, ctx, (client_wait, upstream_wait))
                .await
            {
                Ok(response) => break (slot, response),
                Err(Failure::Client(error)) => {
                    self.ups.swap_remove(slot);
                    return self.failed(gateway, config, request, ctx, error).await;
                }
                Err(Failure::Refused(refusal)) => {
                    self.ups.swap_remove(slot);
                    let mut outcome = self.refuse(gateway, config, request, ctx, &refusal).await;
                    outcome.next = Next::Close;
                    return outcome;
                }
                Err(Failure::Replica(failure)) => {
                    self.ups.swap_remove(slot);
                    if failure.retry(gateway, addr, reused, request.framing == Framing::None, ctx) {
                        continue;
                    }
                    return self
                        .failed(gateway, config, request, ctx, failure.error)
                        .await;
                }
            }
        };
        // The answer to the client, as the replica sends it.
        ctx.answered = true;
        let keep_down =
            request.keep_alive && response.framing != Framing::UntilClose && !*shutdown.borrow();
        {
            let policy = gateway.shared.headers();
            let stamp = gateway.stamp(ctx, &policy);
            stamp.each(|name, value| {
                if let Some(value) = value {
                    h1::push_header(&mut self.out, name.as_str(), value.as_bytes());
                }
            });
        }
        if let Some(pin) = gateway.pin(ctx) {
            h1::push_header(&mut self.out, "Set-Cookie", pin.as_bytes());
        }
        connection_header(&mut self.out, request.http10, keep_down);
        self.out.extend_from_slice(b"\r\n");
        let up = &mut self.ups[slot];
        let relayed = h1::relay(
            &mut up.stream,
            &mut up.buf,
            &mut self.down,
            &mut self.out,
            response.framing,
            (upstream_wait, client_wait),
            |_| true,
        )
        .await;
        let status = response.status;
        if let Err(error) = relayed {
            self.ups.swap_remove(slot);
            let error = match error {
                RelayError::Read(error) => format!("the replica's body: {error}"),
                RelayError::Write(error) => format!("writing to the client: {error}"),
                RelayError::Refused => "refused".to_string(),
            };
            return Outcome::close(status, Some(error));
        }
        if !response.keep_upstream || !self.ups[slot].buf.is_empty() {
            // Closed by the replica, or bytes after the answer nobody asked for.
            self.ups.swap_remove(slot);
        }
        Outcome {
            status,
            error: None,
            next: if keep_down { Next::Keep } else { Next::Close },
        }
    }

    /// Sends the request (its head is in `head`, its body is read from the client) on the
    /// replica connection in `slot` and reads the response head, whose passing part is left in
    /// `out` for the client.
    async fn exchange(
        &mut self,
        gateway: &Gateway,
        slot: usize,
        request: &Request,
        ctx: &mut Ctx,
        (client_wait, upstream_wait): (Duration, Duration),
    ) -> Result<h1::ResponseHead, Failure> {
        self.out.clear();
        self.out.extend_from_slice(&self.head);
        let up = &mut self.ups[slot];
        let mut over: Option<Refusal> = None;
        let sent = h1::relay(
            &mut self.down,
            &mut self.dbuf,
            &mut up.stream,
            &mut self.out,
            request.framing,
            (client_wait, upstream_wait),
            |len| {
                over = gateway.body_received(ctx, len);
                over.is_none()
            },
        )
        .await;
        match sent {
            Ok(()) => {}
            Err(RelayError::Refused) => {
                return Err(Failure::Refused(
                    over.unwrap_or_else(|| Refusal::payload_too_large(0)),
                ))
            }
            Err(RelayError::Read(error)) => return Err(Failure::Client(client_error(&error))),
            Err(RelayError::Write(error)) => {
                return Err(Failure::Replica(ReplicaFailure::sending(&error)))
            }
        }
        // Whether any byte of an answer (even a 1xx) came back.
        let mut heard = false;
        loop {
            let response = answer_head(
                gateway,
                ctx,
                up,
                (request.head_method, upstream_wait),
                &mut heard,
                &mut self.out,
            )
            .await
            .map_err(Failure::Replica)?;
            if response.status >= 200 {
                return Ok(response);
            }
            // 1xx: passed on to an HTTP/1.1 client; the real answer follows.
            if !request.http10 {
                self.out.extend_from_slice(b"\r\n");
                let sent = h1::send(&mut self.down, &self.out, client_wait).await;
                if let Err(error) = sent {
                    return Err(Failure::Client(client_error(&error)));
                }
            }
        }
    }
}

/// Reads the replica's next answer head on `up` into `sink` (its status and the headers that
/// pass, the stamp's own left out): a final one, or a 1xx for the caller to pass on or skip; a
/// 101 nobody asked for fails. `heard`: whether any byte of an answer came back yet, kept
/// across 1xx heads (both lean engines read answers with this).
async fn answer_head(
    gateway: &Gateway,
    ctx: &Ctx,
    up: &mut Upstream,
    (head_method, wait): (bool, Duration),
    heard: &mut bool,
    sink: &mut impl h1::HeadSink,
) -> Result<h1::ResponseHead, ReplicaFailure> {
    loop {
        if !up.buf.is_empty() {
            let policy = gateway.shared.headers();
            let stamp = gateway.stamp(ctx, &policy);
            let parsed = h1::parse_response(&up.buf, head_method, MAX_READ_HEAD, sink, |name| {
                stamp.owns(name)
            });
            match parsed {
                Ok(Some(head)) if head.status == 101 => {
                    up.buf.advance(head.len);
                    return Err(ReplicaFailure::bad_head(
                        "101 to a request that asked no upgrade",
                        false,
                    ));
                }
                Ok(Some(head)) => {
                    up.buf.advance(head.len);
                    return Ok(head);
                }
                Ok(None) => {}
                Err(error) => return Err(ReplicaFailure::bad_head(error.to_string(), true)),
            }
        }
        match h1::fill(&mut up.stream, &mut up.buf, wait).await {
            Ok(0) => return Err(ReplicaFailure::closed()),
            Ok(_) => *heard = true,
            Err(error) => return Err(ReplicaFailure::reading(&error, *heard)),
        }
    }
}

/// Why an exchange with a replica failed.
enum Failure {
    /// The client's side (its body paused, cut short, or malformed).
    Client(Box<Error>),
    /// The client's body went over the limit.
    Refused(Refusal),
    /// The replica's side.
    Replica(ReplicaFailure),
}

/// How an exchange failed on the replica's side (both lean engines'). `broken`: the
/// connection broke (not a timeout); `unread`: the replica reset it before any byte of an
/// answer, see [`crate::proxy::refused_unread`].
struct ReplicaFailure {
    error: Box<Error>,
    broken: bool,
    unread: bool,
}

impl ReplicaFailure {
    /// Writing the request failed.
    fn sending(error: &io::Error) -> Self {
        Self {
            error: replica_error(error),
            broken: true,
            unread: crate::proxy::refused_unread(error.kind()),
        }
    }

    /// Reading the answer's head failed; `heard`: some byte of an answer had come.
    fn reading(error: &io::Error, heard: bool) -> Self {
        Self {
            error: replica_error(error),
            broken: error.kind() != io::ErrorKind::TimedOut,
            unread: !heard && crate::proxy::refused_unread(error.kind()),
        }
    }

    /// The replica closed before its answer.
    fn closed() -> Self {
        Self {
            error: Error::explain(ConnectionClosed, "the replica closed before its answer"),
            broken: true,
            unread: false,
        }
    }

    /// The answer's head is not one to pass on; `broken`: nor can the connection be trusted.
    fn bad_head(what: impl Into<String>, broken: bool) -> Self {
        Self {
            error: Error::explain(InvalidHTTPHeader, what.into()),
            broken,
            unread: false,
        }
    }

    /// Passive health counts it; whether the request goes to a replica again (a stale
    /// connection or an unread reset, an idempotent method, `buffered`: its whole body at hand).
    fn retry(
        &self,
        gateway: &Gateway,
        addr: SocketAddr,
        reused: bool,
        buffered: bool,
        ctx: &Ctx,
    ) -> bool {
        gateway.proxy_failed(Some(addr), self.broken, reused, ctx, &self.error);
        let stale = (reused && self.broken) || self.unread;
        gateway.replay(ctx, stale, buffered)
    }
}

fn client_error(error: &io::Error) -> Box<Error> {
    let kind = match error.kind() {
        io::ErrorKind::TimedOut => ReadTimedout,
        io::ErrorKind::InvalidData => Custom("InvalidChunk"),
        _ => ConnectionClosed,
    };
    Error::because(kind, "reading the client's body", error.to_string()).into_down()
}

fn replica_error(error: &io::Error) -> Box<Error> {
    let kind = match error.kind() {
        io::ErrorKind::TimedOut => ReadTimedout,
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::BrokenPipe => ConnectionClosed,
        _ => ReadError,
    };
    Error::because(kind, "the replica", error.to_string()).into_up()
}

/// Whether an idle replica connection is still open: nothing to read yet (a closed one reads
/// its end; bytes nobody asked for make it unusable too).
fn still_open(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.try_read(&mut byte), Err(error) if error.kind() == io::ErrorKind::WouldBlock)
}

/// A plain TCP connection to a replica within `wait`, as pingora's connector errors name it.
async fn connect(addr: SocketAddr, wait: Duration) -> Result<TcpStream, Box<Error>> {
    match fast_timeout(wait, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
        Ok(Err(error)) => {
            let kind = match error.kind() {
                io::ErrorKind::ConnectionRefused => ConnectRefused,
                _ => ConnectError,
            };
            Err(Error::because(kind, format!("connecting to {addr}"), error).into_up())
        }
        Err(_) => Err(
            Error::explain(ConnectTimedout, format!("connecting to {addr} timed out")).into_up(),
        ),
    }
}

/// The engine's facts of a head; `None` when pingora's path should take it (an upgrade, a
/// target not in origin-form).
pub fn examine(view: &LeanHead<'_>) -> Option<Request> {
    if !view.origin_form() || view.value("upgrade").is_some() {
        return None;
    }
    let (mut close, mut keep) = (false, false);
    for value in view.values("connection") {
        let (c, k, upgrade) = h1::connection_tokens(value);
        if upgrade {
            return None;
        }
        close |= c;
        keep |= k;
    }
    // framing::check refuses every other shape of these (both, two lengths, other codings).
    let chunked = view.values("transfer-encoding").any(h1::only_chunked);
    let length = view.value("content-length").and_then(h1::content_length);
    let framing = match (chunked, length) {
        (true, _) => Framing::Chunked,
        (false, Some(0) | None) => Framing::None,
        (false, Some(n)) => Framing::Length(n),
    };
    let http10 = view.http10();
    Some(Request {
        framing,
        keep_alive: if http10 { keep && !close } else { !close },
        http10,
        head_method: view.method() == "HEAD",
        expect_continue: framing != Framing::None
            && view
                .value("expect")
                .is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(b"100-continue")),
    })
}

/// The head to send the replica: the client's, minus hop-by-hop headers (and `Expect`,
/// answered here) and those the gateway's forwarded headers replace, then those.
pub fn forward_head(
    view: &LeanHead<'_>,
    http10: bool,
    forwarded: &[(&'static str, http::HeaderValue)],
    out: &mut Vec<u8>,
) {
    out.clear();
    out.extend_from_slice(view.method().as_bytes());
    out.push(b' ');
    out.extend_from_slice(view.raw_target());
    // An HTTP/1.0 request goes on as one, so that the answer is not chunked for a client
    // that cannot read it, and asks the replica to keep the connection.
    out.extend_from_slice(if http10 {
        b" HTTP/1.0\r\nConnection: keep-alive\r\n"
    } else {
        b" HTTP/1.1\r\n"
    });
    for (name, value) in view.headers() {
        if h1::hop_by_hop(name)
            || name.eq_ignore_ascii_case("expect")
            || forwarded
                .iter()
                .any(|(own, _)| own.eq_ignore_ascii_case(name))
        {
            continue;
        }
        h1::push_header(out, name, value);
    }
    for (name, value) in forwarded {
        h1::push_header(out, name, value.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// The `Connection` header telling the client whether its connection stays.
fn connection_header(out: &mut Vec<u8>, http10: bool, keep: bool) {
    if !keep {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if http10 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
}

/// An answer of the gateway's own (rendered as for pingora's path), as HTTP/1.1 bytes.
fn write_response_head(header: &ResponseHeader, http10: bool, keep: bool, out: &mut Vec<u8>) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(&h1::itoa3(header.status.as_u16()));
    out.push(b' ');
    out.extend_from_slice(header.status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in header.headers.iter() {
        h1::push_header(out, name.as_str(), value.as_bytes());
    }
    connection_header(out, http10, keep);
    out.extend_from_slice(b"\r\n");
}
