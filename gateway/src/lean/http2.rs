//! The lean HTTP/2 engine (`ARAGORA_GATEWAY_H2_ENGINE=lean`): an h2 connection's streams
//! served by the gateway's own steps over HTTP/1.1 to the replicas, instead of pingora's
//! `HttpProxy` (a spawned task holding its whole per-request future per stream, channels
//! between a downstream and an upstream task, the shared connection pool, and the response
//! converted through pingora's case-keeping header map). Measured in BENCHMARKS.md.
//!
//! What is pingora's: the TLS stream and the h2 handshake with pingora's bounded defaults
//! (`server::handshake`: header list size, concurrent streams). What is the gateway's, the same
//! functions both other paths call ([`crate::proxy::Gateway`]): the head is read through
//! pingora's `RequestHeader` (built from h2's request parts, as pingora's path builds it), then
//! route, request id, trace context, client, stickiness, framing checks, limits, refusals,
//! replica choice, retries, passive health, the stamp and [`Gateway::finish`]. What is this
//! engine's own:
//!
//! - the client connection's idle replica connections, shared by its streams (a stream takes
//!   one to the replica it was sent to, or opens one within `ARAGORA_UPSTREAM_CONNECT_TIMEOUT_MS`,
//!   and gives it back once the answer has been read whole);
//! - the request body read whole before it is sent (it is bounded by
//!   `ARAGORA_MAX_BODY_BYTES`), with its length;
//! - the answer's body decoded from the replica's framing and sent within the client's flow
//!   control window, so a slow client holds a replica connection, not a growing buffer;
//! - drain: the server's shutdown sends GOAWAY, and the streams already open are served.
//!
//! A stream whose request cannot go on as HTTP/1.1 (CONNECT, an extended CONNECT for a
//! WebSocket) gets 501: pingora's path does not serve those over h2 either.

use super::h1::{self, Chunks, Framing};
use super::{answer_head, client_error, connect, still_open, ReplicaFailure, Upstream};
use crate::head::Head;
use crate::proxy::{Ctx, Gateway};
use crate::refusal::Refusal;
use bytes::{Bytes, BytesMut};
use h2::server::SendResponse;
use h2::{RecvStream, SendStream};
use http::{HeaderMap, HeaderName, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::fast_timeout::fast_timeout;
use pingora::prelude::*;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The idle replica connections of one client connection, for its streams.
type Idle = Arc<Mutex<Vec<Upstream>>>;

/// Serves the h2 connection on `stream` until the client ends it or, after the server's
/// shutdown, its last stream is answered.
pub async fn serve(gateway: &Gateway, stream: Stream, shutdown: &ShutdownWatch) {
    let peer = stream
        .get_socket_digest()
        .and_then(|digest| digest.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
    let tls = stream.get_ssl_digest().is_some();
    let mut conn = match pingora::protocols::http::v2::server::handshake(stream, None).await {
        Ok(conn) => conn,
        Err(error) => {
            tracing::debug!("lean h2 handshake failed: {error}");
            return;
        }
    };
    let idle: Idle = Arc::default();
    let mut watch = shutdown.clone();
    let mut draining = *watch.borrow();
    if draining {
        conn.graceful_shutdown();
    }
    loop {
        let next = if draining {
            conn.accept().await
        } else {
            tokio::select! {
                next = conn.accept() => next,
                _ = watch.changed() => {
                    // GOAWAY: the client opens no more streams here; the open ones finish.
                    conn.graceful_shutdown();
                    draining = true;
                    continue;
                }
            }
        };
        match next {
            Some(Ok((request, respond))) => {
                let gateway = gateway.clone();
                let idle = idle.clone();
                // Boxed, so the task holds a pointer: a stream's future is a few KB, which
                // the runtime would otherwise move into the task and again when it ends.
                tokio::spawn(Box::pin(async move {
                    let mut stream = H2Stream {
                        respond,
                        idle,
                        peer,
                        tls,
                    };
                    stream.serve(&gateway, request).await;
                }));
            }
            Some(Err(error)) => {
                tracing::debug!("lean h2 connection ended: {error}");
                return;
            }
            None => return,
        }
    }
}

/// One stream of a client connection.
struct H2Stream {
    respond: SendResponse<Bytes>,
    idle: Idle,
    peer: Option<IpAddr>,
    tls: bool,
}

/// How a stream ended, for its access line.
struct Ended {
    status: u16,
    error: Option<String>,
}

/// A replica's answer head, as it goes to the client.
struct Answer {
    status: u16,
    headers: HeaderMap,
    framing: Framing,
    keep_upstream: bool,
}

impl H2Stream {
    async fn serve(&mut self, gateway: &Gateway, request: http::Request<RecvStream>) {
        let config = gateway.shared.config_now();
        let mut ctx = gateway.new_ctx();
        let (parts, mut body) = request.into_parts();
        let head = RequestHeader::from(parts);
        let client = gateway.read_request(&head, self.peer, self.tls, false, &mut ctx, &config);
        let inflight = gateway.enter(&mut ctx);
        let path = crate::proxy::truncate_at_char(head.uri.path(), 200).to_string();
        let ended = if let Some((status, body, retry_after)) = gateway.probe(head.uri.path()) {
            match gateway.own_answer(&ctx, status, body, retry_after) {
                Ok((header, body)) => self.answer(&config, header, body).await,
                Err(error) => self.reset(500, error.to_string()),
            }
        } else if let Some(refusal) = gateway
            .refusal(&head, &mut ctx, client, inflight, &config)
            .await
        {
            self.refuse(gateway, &config, &mut ctx, &refusal).await
        } else if head.method == http::Method::CONNECT {
            let refusal = Refusal::not_implemented("CONNECT over HTTP/2");
            self.refuse(gateway, &config, &mut ctx, &refusal).await
        } else {
            self.proxy(gateway, &config, &head, &mut body, &mut ctx)
                .await
        };
        gateway.finish(&path, ended.status, ended.error, &mut ctx);
    }

    /// Ends the stream with RST_STREAM (an answer could not be made or sent).
    fn reset(&mut self, status: u16, error: String) -> Ended {
        self.respond.send_reset(h2::Reason::INTERNAL_ERROR);
        Ended {
            status,
            error: Some(error),
        }
    }

    /// Sends an answer of the gateway's own (rendered as for the other paths).
    async fn answer(
        &mut self,
        config: &crate::GatewayConfig,
        header: ResponseHeader,
        body: Bytes,
    ) -> Ended {
        let status = header.status.as_u16();
        let mut response = http::Response::new(());
        *response.status_mut() = header.status;
        for (name, value) in header.headers.iter() {
            if !h1::hop_by_hop(name.as_str()) {
                response.headers_mut().append(name.clone(), value.clone());
            }
        }
        let wait = Duration::from_secs(config.client_read_timeout_secs);
        let sent = match self.respond.send_response(response, body.is_empty()) {
            Ok(mut send) if !body.is_empty() => send_body(&mut send, body, true, wait).await,
            Ok(_) => Ok(()),
            Err(error) => Err(io::Error::other(error.to_string())),
        };
        Ended {
            status,
            error: sent
                .err()
                .map(|error| format!("writing to the client: {error}")),
        }
    }

    async fn refuse(
        &mut self,
        gateway: &Gateway,
        config: &crate::GatewayConfig,
        ctx: &mut Ctx,
        refusal: &Refusal,
    ) -> Ended {
        match gateway.refusal_answer(ctx, refusal) {
            Ok((header, body, _)) => self.answer(config, header, body).await,
            Err(error) => self.reset(500, error.to_string()),
        }
    }

    /// The answer to a failed proxy attempt, as the other paths give it; a reset when the
    /// client is the one that failed.
    async fn failed(
        &mut self,
        gateway: &Gateway,
        config: &crate::GatewayConfig,
        ctx: &mut Ctx,
        error: Box<Error>,
    ) -> Ended {
        let Some(refusal) = Refusal::for_proxy_error(&error, config.upstream_read_timeout_secs)
        else {
            ctx.refusal = Some("client_error");
            self.respond.send_reset(h2::Reason::CANCEL);
            return Ended {
                status: 0,
                error: Some(error.to_string()),
            };
        };
        let mut ended = self.refuse(gateway, config, ctx, &refusal).await;
        ended.error.get_or_insert_with(|| error.to_string());
        ended
    }

    /// Reads the client's body whole (within the limit), sends the request to a replica and
    /// its answer to the client.
    async fn proxy(
        &mut self,
        gateway: &Gateway,
        config: &crate::GatewayConfig,
        head: &RequestHeader,
        body: &mut RecvStream,
        ctx: &mut Ctx,
    ) -> Ended {
        let client_wait = Duration::from_secs(config.client_read_timeout_secs);
        let upstream_wait = Duration::from_secs(config.upstream_read_timeout_secs);
        let connect_wait = Duration::from_millis(config.upstream_connect_timeout_ms);
        let mut request = Vec::with_capacity(1024);
        let content = match read_body(gateway, ctx, body, client_wait).await {
            Ok(content) => content,
            Err(BodyError::Refused(refusal)) => {
                return self.refuse(gateway, config, ctx, &refusal).await
            }
            Err(BodyError::Client(error)) => {
                return self
                    .failed(gateway, config, ctx, client_error(&error))
                    .await
            }
        };
        {
            let forwarded: Vec<(&'static str, HeaderValue)> = gateway
                .forwarded(ctx, head.text("x-forwarded-for"))
                .collect();
            forward_head(head, content.len(), &forwarded, &mut request);
        }
        request.extend_from_slice(&content);
        let head_method = head.method == http::Method::HEAD;
        let (mut upstream, answer) = loop {
            let Some(replica) = gateway.next_replica(ctx) else {
                let error = Refusal::no_ready_upstream_error();
                return self.failed(gateway, config, ctx, error).await;
            };
            let addr = replica.addr;
            let replayable = content.is_empty() && crate::proxy::idempotent(ctx.method);
            let mut taken = take_idle(&self.idle, addr);
            // A request that cannot be sent again must not meet a connection the replica
            // closed while it was idle (one non-blocking read says).
            if taken
                .as_ref()
                .is_some_and(|up| !replayable && !still_open(&up.stream))
            {
                taken = None;
            }
            let reused = taken.is_some();
            let mut up = match taken {
                Some(up) => up,
                None => match connect(addr, connect_wait).await {
                    Ok(stream) => Upstream {
                        addr,
                        stream,
                        buf: BytesMut::with_capacity(h1::READ_CHUNK),
                    },
                    Err(error) => {
                        if gateway.connect_failed(Some(addr), &error, ctx) {
                            continue;
                        }
                        return self.failed(gateway, config, ctx, error).await;
                    }
                },
            };
            match exchange(gateway, &mut up, &request, head_method, ctx, upstream_wait).await {
                Ok(answer) => break (up, answer),
                Err(failure) => {
                    // The body is at hand (read whole before): a GET may go again.
                    if failure.retry(gateway, addr, reused, true, ctx) {
                        continue;
                    }
                    return self.failed(gateway, config, ctx, failure.error).await;
                }
            }
        };
        ctx.answered = true;
        let mut response = http::Response::new(());
        *response.status_mut() =
            http::StatusCode::from_u16(answer.status).unwrap_or(http::StatusCode::BAD_GATEWAY);
        *response.headers_mut() = answer.headers;
        {
            let policy = gateway.shared.headers();
            let stamp = gateway.stamp(ctx, &policy);
            let headers = response.headers_mut();
            stamp.each(|name, value| {
                if let (Some(value), Ok(name)) =
                    (value, HeaderName::from_bytes(name.as_str().as_bytes()))
                {
                    headers.insert(name, value.clone());
                }
            });
            if let Some(pin) = gateway.pin(ctx) {
                headers.append(http::header::SET_COOKIE, pin.clone());
            }
        }
        let status = answer.status;
        let bodiless = answer.framing == Framing::None;
        let mut send = match self.respond.send_response(response, bodiless) {
            Ok(send) => send,
            Err(error) => {
                return Ended {
                    status,
                    error: Some(format!("writing to the client: {error}")),
                }
            }
        };
        if bodiless {
            give_back(&self.idle, upstream, answer.keep_upstream);
            return Ended {
                status,
                error: None,
            };
        }
        match relay_body(
            &mut upstream,
            &mut send,
            answer.framing,
            upstream_wait,
            client_wait,
        )
        .await
        {
            Ok(()) => {
                give_back(&self.idle, upstream, answer.keep_upstream);
                Ended {
                    status,
                    error: None,
                }
            }
            Err(error) => {
                send.send_reset(h2::Reason::INTERNAL_ERROR);
                Ended {
                    status,
                    error: Some(error),
                }
            }
        }
    }
}

/// Why the client's body was not read whole.
enum BodyError {
    Refused(Refusal),
    Client(io::Error),
}

/// The client's body, whole, counted against the body limit as it comes.
async fn read_body(
    gateway: &Gateway,
    ctx: &mut Ctx,
    body: &mut RecvStream,
    wait: Duration,
) -> Result<Bytes, BodyError> {
    if body.is_end_stream() {
        return Ok(Bytes::new());
    }
    let mut content = BytesMut::new();
    loop {
        let next = fast_timeout(wait, body.data()).await.map_err(|_| {
            BodyError::Client(io::Error::new(io::ErrorKind::TimedOut, "read timed out"))
        })?;
        match next {
            None => return Ok(content.freeze()),
            Some(Err(error)) => return Err(BodyError::Client(io::Error::other(error.to_string()))),
            Some(Ok(data)) => {
                let _ = body.flow_control().release_capacity(data.len());
                if let Some(refusal) = gateway.body_received(ctx, data.len()) {
                    return Err(BodyError::Refused(refusal));
                }
                content.extend_from_slice(&data);
            }
        }
    }
}

/// An idle connection of this client connection to `addr`, taken.
fn take_idle(idle: &Idle, addr: SocketAddr) -> Option<Upstream> {
    let mut idle = idle.lock().unwrap_or_else(|e| e.into_inner());
    let slot = idle.iter().position(|up| up.addr == addr)?;
    Some(idle.swap_remove(slot))
}

/// Keeps `upstream` for the connection's next stream when the replica keeps it and nothing
/// nobody asked for came after the answer.
fn give_back(idle: &Idle, upstream: Upstream, keep: bool) {
    if keep && upstream.buf.is_empty() {
        idle.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(upstream);
    }
}

/// The HTTP/1.1 head to send the replica: the h2 request's method and target, `Host` from
/// `:authority`, its headers minus the hop-by-hop ones and those the gateway's forwarded
/// headers replace, then those, and the body's length.
fn forward_head(
    head: &RequestHeader,
    body_len: usize,
    forwarded: &[(&'static str, HeaderValue)],
    out: &mut Vec<u8>,
) {
    out.clear();
    out.extend_from_slice(head.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(
        head.uri
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .as_bytes(),
    );
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if head.headers.get(http::header::HOST).is_none() {
        if let Some(authority) = head.uri.authority() {
            h1::push_header(out, "Host", authority.as_str().as_bytes());
        }
    }
    for (name, value) in head.headers.iter() {
        let name = name.as_str();
        if h1::hop_by_hop(name)
            || name == "content-length"
            || name == "expect"
            || name == "cookie"
            || forwarded
                .iter()
                .any(|(own, _)| own.eq_ignore_ascii_case(name))
        {
            continue;
        }
        h1::push_header(out, name, value.as_bytes());
    }
    // HTTP/2 may split the cookies over several fields; HTTP/1.1 has one (RFC 9113 §8.2.3).
    let mut cookies = head.headers.get_all(http::header::COOKIE).iter();
    if let Some(first) = cookies.next() {
        let mut joined = first.as_bytes().to_vec();
        for more in cookies {
            joined.extend_from_slice(b"; ");
            joined.extend_from_slice(more.as_bytes());
        }
        h1::push_header(out, "Cookie", &joined);
    }
    for (name, value) in forwarded {
        h1::push_header(out, name, value.as_bytes());
    }
    // A body, or a method whose request normally has one, says its length (0 included).
    if body_len > 0 || !matches!(head.method.as_str(), "GET" | "HEAD" | "DELETE" | "OPTIONS") {
        h1::push_header(out, "Content-Length", body_len.to_string().as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// Sends `request` on `up` and reads the replica's answer head (1xx skipped).
async fn exchange(
    gateway: &Gateway,
    up: &mut Upstream,
    request: &[u8],
    head_method: bool,
    ctx: &Ctx,
    wait: Duration,
) -> Result<Answer, ReplicaFailure> {
    if let Err(error) = h1::send(&mut up.stream, request, wait).await {
        return Err(ReplicaFailure::sending(&error));
    }
    // Whether any byte of an answer (even a 1xx) came back.
    let mut heard = false;
    // Cleared by each head's status (a 1xx's headers do not stay).
    let mut headers = HeaderMap::with_capacity(16);
    loop {
        let head = answer_head(
            gateway,
            ctx,
            up,
            (head_method, wait),
            &mut heard,
            &mut headers,
        )
        .await?;
        // A 1xx is not passed on: the real answer follows.
        if head.status >= 200 {
            return Ok(Answer {
                status: head.status,
                headers: std::mem::take(&mut headers),
                framing: head.framing,
                keep_upstream: head.keep_upstream,
            });
        }
    }
}

/// The headers of a replica's answer as they go to an h2 client.
impl h1::HeadSink for HeaderMap {
    fn status(&mut self, _status: u16, _reason: &str) {
        self.clear();
    }

    fn header(&mut self, name: &str, value: &[u8]) -> io::Result<()> {
        // HTTP/2 frames the body itself: a chunked answer is decoded, and the header would
        // make h2 refuse the whole response (RFC 9113 §8.2.2).
        if name.eq_ignore_ascii_case("transfer-encoding") {
            return Ok(());
        }
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| h1::invalid("the replica's header name"))?;
        let value = HeaderValue::from_bytes(value)
            .map_err(|_| h1::invalid("the replica's header value"))?;
        self.append(name, value);
        Ok(())
    }
}

/// The answer's body from `up` (decoded from its framing) to the client's stream.
async fn relay_body(
    up: &mut Upstream,
    send: &mut SendStream<Bytes>,
    framing: Framing,
    upstream_wait: Duration,
    client_wait: Duration,
) -> Result<(), String> {
    let mut chunks = Chunks::new();
    let mut left = match framing {
        Framing::Length(n) => n,
        _ => 0,
    };
    loop {
        let (data, done) = match framing {
            Framing::None => (Bytes::new(), true),
            Framing::Length(_) => {
                let take = (up.buf.len() as u64).min(left) as usize;
                left -= take as u64;
                (up.buf.split_to(take).freeze(), left == 0)
            }
            Framing::Chunked => {
                let mut data = BytesMut::new();
                let (used, done) = chunks
                    .scan_data(&up.buf, |range| data.extend_from_slice(&up.buf[range]))
                    .map_err(|error| format!("the replica's body: {error}"))?;
                bytes::Buf::advance(&mut up.buf, used);
                (data.freeze(), done)
            }
            Framing::UntilClose => (up.buf.split().freeze(), false),
        };
        if !data.is_empty() || done {
            send_body(send, data, done, client_wait)
                .await
                .map_err(|error| format!("writing to the client: {error}"))?;
        }
        if done {
            return Ok(());
        }
        match h1::fill(&mut up.stream, &mut up.buf, upstream_wait).await {
            Ok(0) if framing == Framing::UntilClose => {
                return send_body(send, Bytes::new(), true, client_wait)
                    .await
                    .map_err(|error| format!("writing to the client: {error}"))
            }
            Ok(0) => return Err("the replica's body: cut short".to_string()),
            Ok(_) => {}
            Err(error) => return Err(format!("the replica's body: {error}")),
        }
    }
}

/// Sends `data` on the stream as the client's flow control window allows, each wait for
/// window within `wait`; `end` ends the stream with it.
async fn send_body(
    send: &mut SendStream<Bytes>,
    mut data: Bytes,
    end: bool,
    wait: Duration,
) -> io::Result<()> {
    let h2_error = |error: h2::Error| io::Error::other(error.to_string());
    if data.is_empty() {
        return if end {
            send.send_data(Bytes::new(), true).map_err(h2_error)
        } else {
            Ok(())
        };
    }
    while !data.is_empty() {
        send.reserve_capacity(data.len());
        let granted = fast_timeout(wait, std::future::poll_fn(|cx| send.poll_capacity(cx)))
            .await
            .map_err(|_| {
                io::Error::new(io::ErrorKind::TimedOut, "the client's window stayed shut")
            })?;
        let granted = match granted {
            Some(granted) => granted.map_err(h2_error)?,
            None => return Err(io::Error::other("the client reset the stream")),
        };
        if granted == 0 {
            continue;
        }
        let piece = data.split_to(granted.min(data.len()));
        send.send_data(piece, end && data.is_empty())
            .map_err(h2_error)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forwarded_head_is_http_1_1_with_one_cookie_a_host_and_a_length() {
        let request = http::Request::builder()
            .method("POST")
            .uri("https://edge.example:8443/api/debates?x=1")
            .header("cookie", "a=1")
            .header("cookie", "aragora-affinity=00ff")
            .header("te", "trailers")
            .header("content-length", "99")
            .header("x-request-id", "from-the-client")
            .header("accept", "application/json")
            .body(())
            .unwrap();
        let (parts, ()) = request.into_parts();
        let head = RequestHeader::from(parts);
        let forwarded = [("X-Request-Id", HeaderValue::from_static("the-gateways"))];
        let mut out = Vec::new();
        forward_head(&head, 7, &forwarded, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("POST /api/debates?x=1 HTTP/1.1\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nHost: edge.example:8443\r\n"), "{text}");
        assert!(
            text.contains("\r\nCookie: a=1; aragora-affinity=00ff\r\n"),
            "{text}"
        );
        assert!(
            text.contains("\r\nX-Request-Id: the-gateways\r\n"),
            "{text}"
        );
        assert!(!text.contains("from-the-client"), "{text}");
        assert!(text.contains("\r\nContent-Length: 7\r\n"), "{text}");
        assert!(
            !text.contains("99") && !text.to_ascii_lowercase().contains("te: trailers"),
            "{text}"
        );
        assert!(text.ends_with("\r\n\r\n"), "{text}");
        assert_eq!(text.matches("Cookie").count(), 1, "{text}");
    }

    #[test]
    fn a_chunked_answer_goes_to_http_2_without_its_transfer_encoding() {
        let buf = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Kept: yes\r\nConnection: keep-alive\r\n\r\n4\r\nWiki\r\n0\r\n\r\n";
        let mut headers = HeaderMap::new();
        let head = h1::parse_response(buf, false, 1024, &mut headers, |_| false)
            .unwrap()
            .unwrap();
        assert_eq!(head.framing, Framing::Chunked);
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert_eq!(headers["x-kept"], "yes");
    }
}
