//! The lean HTTP/1.1 path of lever 6 (issue 17), bare: a pingora `ServerApp` that proxies
//! each downstream HTTP/1.1 connection to one upstream connection of its own, with none of
//! pingora's HTTP machinery in between, so the benchmark can show what this architecture costs
//! before any gateway feature sits on it.
//!
//! Per downstream connection (after TLS, when ALPN did not pick h2): one read buffer and one
//! write buffer, reused by every request; request and response heads parsed by `httparse`
//! straight from the read buffer and written out again, minus the hop-by-hop headers;
//! `Content-Length` and chunked bodies relayed as they came (a chunked body is scanned for its
//! end, not decoded and encoded again); one plain TCP connection to the upstream, opened at the
//! first request, kept for the next while both sides keep alive, opened again when it closed
//! (a request without a body found a stale connection: sent once more on a new one). No task,
//! channel or timer per request beyond pingora's lazy read timeouts.
//!
//! What it hands to pingora's `HttpProxy` instead: an h2 connection (ALPN), at once; an
//! `Upgrade` request, with the rest of its connection (the bytes read so far become the
//! session's pipelined prefix, so pingora parses that request again from the start).
//!
//! What it does not do (a prototype's limits, each noted where it matters): the request body is
//! sent whole before the response is read (an upstream answering early to a large upload waits
//! for the upload); `Connection` headers naming other hop-by-hop headers are not honoured; a
//! shutdown is seen at the next request, not during a keep-alive wait.

use async_trait::async_trait;
use bytes::{Buf, BytesMut};
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::prelude::fast_timeout::fast_timeout;
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Stream, ALPN};
use pingora::server::ShutdownWatch;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// The longest request or response head read (pingora's `MAX_HEADER_SIZE` is 1 MiB; nginx's
/// default `large_client_header_buffers` allows 4 x 8 KiB).
const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 128;
/// How long an idle keep-alive connection waits for its next request (pingora's default).
const KEEPALIVE: Duration = Duration::from_secs(60);
/// Any other read, either side.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// What one read asks for.
const READ_CHUNK: usize = 16 * 1024;

/// The lean app: `fallback` serves what this path does not (h2, upgrades).
pub struct Lean<F> {
    pub upstream: SocketAddr,
    pub fallback: Arc<F>,
}

#[async_trait]
impl<F> ServerApp for Lean<F>
where
    F: HttpServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            return self.fallback.process_new(stream, shutdown).await;
        }
        let mut conn = Conn::new(stream, self.upstream);
        match conn.serve(shutdown).await {
            Ok(Next::Close) => {}
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
    Fallback,
}

/// How a message's body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    /// A response without a length: its body ends when the upstream closes.
    UntilClose,
}

/// What the proxy needs from a request head, read once.
struct RequestHead {
    len: usize,
    head_method: bool,
    framing: Framing,
    /// The client keeps the connection after this request (HTTP/1.1 without `close`, or
    /// HTTP/1.0 with `keep-alive`).
    keep_alive: bool,
    http10: bool,
    expect_continue: bool,
    /// Safe to send again on a new connection when the pinned one turned out stale: an
    /// idempotent method and no body.
    replayable: bool,
}

struct ResponseHead {
    len: usize,
    status: u16,
    framing: Framing,
    /// The upstream connection carries the next request.
    keep_upstream: bool,
    /// The client's connection carries its next request (the head sent says so).
    keep_downstream: bool,
}

/// A request the proxy answers itself: status, reason; the connection closes after it.
struct Refuse(u16, &'static str);

fn eq(name: &str, lower: &str) -> bool {
    name.eq_ignore_ascii_case(lower)
}

/// A `Connection` header's tokens: (close, keep-alive, upgrade).
fn connection_tokens(value: &[u8]) -> (bool, bool, bool) {
    let (mut close, mut keep, mut upgrade) = (false, false, false);
    for token in value.split(|&b| b == b',') {
        let token = token.trim_ascii();
        close |= token.eq_ignore_ascii_case(b"close");
        keep |= token.eq_ignore_ascii_case(b"keep-alive");
        upgrade |= token.eq_ignore_ascii_case(b"upgrade");
    }
    (close, keep, upgrade)
}

fn content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 18 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        value
            .iter()
            .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')),
    )
}

/// Whether a `Transfer-Encoding` value is exactly `chunked` (anything else, `gzip, chunked`
/// included, is refused: the gateway's framing rules do the same).
fn only_chunked(value: &[u8]) -> bool {
    value.trim_ascii().eq_ignore_ascii_case(b"chunked")
}

/// Reads a request head from `buf` and writes the head to send upstream into `out`.
/// `Ok(None)`: not all of it is here yet.
fn parse_request(buf: &[u8], out: &mut Vec<u8>) -> Result<Option<RequestHead>, Refuse> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return Err(Refuse(431, "Request Header Fields Too Large"))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Refuse(431, "Request Header Fields Too Large"))
        }
        Err(httparse::Error::Version) => return Err(Refuse(505, "HTTP Version Not Supported")),
        Err(_) => return Err(Refuse(400, "Bad Request")),
    };
    let (Some(method), Some(path), Some(version)) = (request.method, request.path, request.version)
    else {
        return Err(Refuse(400, "Bad Request"));
    };
    out.clear();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    // An HTTP/1.0 request goes on as one, so that the answer is not chunked for a client
    // that cannot read it, and asks the upstream to keep the connection.
    let http10 = version == 0;
    out.extend_from_slice(if http10 {
        b" HTTP/1.0\r\nConnection: keep-alive\r\n"
    } else {
        b" HTTP/1.1\r\n"
    });
    let (mut length, mut chunked, mut close, mut keep, mut host) =
        (None, false, false, false, false);
    let mut expect_continue = false;
    for header in request.headers.iter() {
        let (name, value) = (header.name, header.value);
        if eq(name, "content-length") {
            let parsed = content_length(value).ok_or(Refuse(400, "Bad Request"))?;
            if length.is_some_and(|seen| seen != parsed) {
                return Err(Refuse(400, "Bad Request"));
            }
            length = Some(parsed);
        } else if eq(name, "transfer-encoding") {
            if chunked || !only_chunked(value) {
                return Err(Refuse(501, "Not Implemented"));
            }
            chunked = true;
        } else if eq(name, "connection") {
            let (c, k, upgrade) = connection_tokens(value);
            if upgrade {
                return Ok(Some(RequestHead::upgrade(len)));
            }
            close |= c;
            keep |= k;
            continue; // hop-by-hop
        } else if eq(name, "upgrade") {
            return Ok(Some(RequestHead::upgrade(len)));
        } else if eq(name, "keep-alive") || eq(name, "proxy-connection") {
            continue; // hop-by-hop
        } else if eq(name, "expect") {
            // Answered here (nginx does the same): the client waits for it before its body.
            expect_continue = value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
            continue;
        } else if eq(name, "host") {
            host = true;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !host || (chunked && length.is_some()) {
        return Err(Refuse(400, "Bad Request"));
    }
    let framing = match (chunked, length) {
        (true, _) => Framing::Chunked,
        (false, Some(0) | None) => Framing::None,
        (false, Some(n)) => Framing::Length(n),
    };
    Ok(Some(RequestHead {
        len,
        head_method: method == "HEAD",
        framing,
        keep_alive: if http10 { keep && !close } else { !close },
        http10,
        expect_continue: expect_continue && framing != Framing::None,
        replayable: framing == Framing::None
            && matches!(method, "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE"),
    }))
}

impl RequestHead {
    /// An upgrade: pingora's path takes it; only `len` matters (nothing is consumed).
    fn upgrade(len: usize) -> Self {
        RequestHead {
            len,
            head_method: false,
            framing: Framing::UntilClose,
            keep_alive: false,
            http10: false,
            expect_continue: false,
            replayable: false,
        }
    }
}

/// Reads a response head from `buf` and writes the head to send downstream into `out`, with
/// the `Connection` header that says whether the client's connection stays. `Ok(None)`: not all
/// of it is here yet.
fn parse_response(
    buf: &[u8],
    request: &RequestHead,
    out: &mut Vec<u8>,
    shutting_down: bool,
) -> io::Result<Option<ResponseHead>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => return Ok(None),
        Ok(httparse::Status::Partial) => return Err(invalid("upstream head too large")),
        Err(error) => return Err(invalid(&format!("upstream head: {error}"))),
    };
    let status = response.code.unwrap_or(0);
    let http11 = response.version == Some(1);
    let (mut length, mut chunked, mut other_coding, mut close) = (None, false, false, false);
    let bodiless = request.head_method || status < 200 || status == 204 || status == 304;
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa3(status).as_slice());
    out.push(b' ');
    out.extend_from_slice(response.reason.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for header in response.headers.iter() {
        let (name, value) = (header.name, header.value);
        if eq(name, "content-length") {
            length = Some(content_length(value).ok_or_else(|| invalid("upstream length"))?);
        } else if eq(name, "transfer-encoding") {
            chunked = only_chunked(value);
            other_coding |= !chunked;
        } else if eq(name, "connection") {
            close |= connection_tokens(value).0;
            continue;
        } else if eq(name, "keep-alive") {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    let framing = match (bodiless, chunked, other_coding, length) {
        (true, ..) => Framing::None,
        (false, _, true, _) => Framing::UntilClose,
        (false, true, false, _) => Framing::Chunked,
        (false, false, false, Some(0)) => Framing::None,
        (false, false, false, Some(n)) => Framing::Length(n),
        (false, false, false, None) => Framing::UntilClose,
    };
    let keep_downstream =
        request.keep_alive && framing != Framing::UntilClose && !shutting_down && status >= 200;
    if status >= 200 {
        if !keep_downstream {
            out.extend_from_slice(b"Connection: close\r\n");
        } else if request.http10 {
            out.extend_from_slice(b"Connection: keep-alive\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
    Ok(Some(ResponseHead {
        len,
        status,
        framing,
        keep_upstream: http11 && !close && framing != Framing::UntilClose,
        keep_downstream,
    }))
}

/// A three-digit status code as text, without formatting machinery.
fn itoa3(status: u16) -> [u8; 3] {
    let s = status.min(999);
    [
        b'0' + (s / 100) as u8,
        b'0' + (s / 10 % 10) as u8,
        b'0' + (s % 10) as u8,
    ]
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// Finds where a chunked body ends, byte by byte across reads, without decoding it.
#[derive(Debug, Clone, Copy)]
enum Chunks {
    Size { value: u64, digits: u8 },
    Extension { size: u64 },
    SizeLf { size: u64 },
    Data(u64),
    DataCr,
    DataLf,
    TrailerStart,
    TrailerLine,
    TrailerLf { empty: bool },
    Done,
}

impl Chunks {
    fn new() -> Self {
        Chunks::Size {
            value: 0,
            digits: 0,
        }
    }

    /// How many bytes of `buf` belong to the body, and whether the body ends there.
    fn scan(&mut self, buf: &[u8]) -> io::Result<(usize, bool)> {
        let bad = || invalid("bad chunked encoding");
        let mut i = 0;
        while i < buf.len() {
            let byte = buf[i];
            *self = match *self {
                Chunks::Size { value, digits } => match (byte as char).to_digit(16) {
                    Some(d) if digits < 15 => Chunks::Size {
                        value: value * 16 + u64::from(d),
                        digits: digits + 1,
                    },
                    None if digits > 0 && matches!(byte, b';' | b' ' | b'\t') => {
                        Chunks::Extension { size: value }
                    }
                    None if digits > 0 && byte == b'\r' => Chunks::SizeLf { size: value },
                    _ => return Err(bad()),
                },
                Chunks::Extension { size } => match byte {
                    b'\r' => Chunks::SizeLf { size },
                    b'\n' => return Err(bad()),
                    _ => Chunks::Extension { size },
                },
                Chunks::SizeLf { size: 0 } if byte == b'\n' => Chunks::TrailerStart,
                Chunks::SizeLf { size } if byte == b'\n' => Chunks::Data(size),
                Chunks::Data(left) => {
                    let take = (buf.len() - i).min(left as usize);
                    i += take;
                    *self = if left == take as u64 {
                        Chunks::DataCr
                    } else {
                        Chunks::Data(left - take as u64)
                    };
                    continue;
                }
                Chunks::DataCr if byte == b'\r' => Chunks::DataLf,
                Chunks::DataLf if byte == b'\n' => Chunks::new(),
                Chunks::TrailerStart => match byte {
                    b'\r' => Chunks::TrailerLf { empty: true },
                    _ => Chunks::TrailerLine,
                },
                Chunks::TrailerLine => match byte {
                    b'\r' => Chunks::TrailerLf { empty: false },
                    _ => Chunks::TrailerLine,
                },
                Chunks::TrailerLf { empty } if byte == b'\n' => {
                    if empty {
                        *self = Chunks::Done;
                        return Ok((i + 1, true));
                    }
                    Chunks::TrailerStart
                }
                Chunks::Done => return Ok((i, true)),
                _ => return Err(bad()),
            };
            i += 1;
        }
        Ok((i, matches!(self, Chunks::Done)))
    }
}

/// Reads more of `src` into `buf`; `Ok(0)` at its end.
async fn fill<R: AsyncRead + Unpin>(
    src: &mut R,
    buf: &mut BytesMut,
    wait: Duration,
) -> io::Result<usize> {
    buf.reserve(READ_CHUNK);
    fast_timeout(wait, src.read_buf(buf))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "read timed out"))?
}

/// Sends `out` (a head, maybe empty) and then the body of `framing` from `buf` and `src` to
/// `dst`, as the bytes came; what of `buf` follows the body stays there.
async fn relay<R, W>(
    src: &mut R,
    buf: &mut BytesMut,
    dst: &mut W,
    out: &mut Vec<u8>,
    framing: Framing,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut chunks = Chunks::new();
    let mut left = match framing {
        Framing::Length(n) => n,
        _ => 0,
    };
    loop {
        // The part of `buf` that is body, and whether the body ends with it.
        let (take, done) = match framing {
            Framing::None => (0, true),
            Framing::Length(_) => {
                let take = (buf.len() as u64).min(left) as usize;
                left -= take as u64;
                (take, left == 0)
            }
            Framing::Chunked => chunks.scan(buf)?,
            Framing::UntilClose => (buf.len(), false),
        };
        // The head goes out with the first part of the body, in one write.
        if !out.is_empty() {
            out.extend_from_slice(&buf[..take]);
            dst.write_all(out).await?;
            out.clear();
        } else if take > 0 {
            dst.write_all(&buf[..take]).await?;
        }
        buf.advance(take);
        if done {
            return dst.flush().await;
        }
        if fill(src, buf, READ_TIMEOUT).await? == 0 {
            if framing == Framing::UntilClose {
                return dst.flush().await;
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "body cut short",
            ));
        }
    }
}

/// One downstream connection and the upstream connection pinned to it.
struct Conn {
    down: Stream,
    dbuf: BytesMut,
    up: Option<TcpStream>,
    ubuf: BytesMut,
    /// The request head to send upstream, kept for a second attempt.
    head: Vec<u8>,
    /// What goes out next: a head, with the first part of its body.
    out: Vec<u8>,
    upstream: SocketAddr,
}

impl Conn {
    fn new(down: Stream, upstream: SocketAddr) -> Self {
        Conn {
            down,
            dbuf: BytesMut::with_capacity(READ_CHUNK),
            up: None,
            ubuf: BytesMut::with_capacity(READ_CHUNK),
            head: Vec::with_capacity(4096),
            out: Vec::with_capacity(4096),
            upstream,
        }
    }

    async fn serve(&mut self, shutdown: &ShutdownWatch) -> io::Result<Next> {
        let mut first = true;
        loop {
            let request = match self.read_request(first).await? {
                Ok(Some(request)) => request,
                Ok(None) => return Ok(Next::Close),
                Err(Refuse(status, reason)) => {
                    self.answer(status, reason).await?;
                    return Ok(Next::Close);
                }
            };
            first = false;
            if request.framing == Framing::UntilClose {
                // An upgrade: pingora's path parses this request again, from `dbuf`.
                return Ok(Next::Fallback);
            }
            self.dbuf.advance(request.len);
            if request.expect_continue {
                self.down
                    .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                    .await?;
                self.down.flush().await?;
            }
            let shutting_down = *shutdown.borrow();
            let response = match self.exchange(&request, shutting_down).await {
                Ok(response) => response,
                Err(error) => {
                    tracing::debug!("lean h1 upstream: {error}");
                    self.up = None;
                    self.answer(502, "Bad Gateway").await?;
                    return Ok(Next::Close);
                }
            };
            // The answer to the client, as the upstream sends it.
            let up = self.up.as_mut().expect("exchange leaves the connection");
            relay(
                up,
                &mut self.ubuf,
                &mut self.down,
                &mut self.out,
                response.framing,
            )
            .await?;
            if !response.keep_upstream || !self.ubuf.is_empty() {
                // Closed by the upstream, or bytes after the answer nobody asked for.
                self.up = None;
                self.ubuf.clear();
            }
            if !response.keep_downstream {
                let _ = self.down.shutdown().await;
                return Ok(Next::Close);
            }
        }
    }

    /// The next request head. `Ok(Ok(None))`: the client closed between requests.
    async fn read_request(
        &mut self,
        first: bool,
    ) -> io::Result<Result<Option<RequestHead>, Refuse>> {
        loop {
            if !self.dbuf.is_empty() {
                match parse_request(&self.dbuf, &mut self.head) {
                    Ok(None) => {}
                    other => return Ok(other),
                }
            }
            let wait = if self.dbuf.is_empty() && !first {
                KEEPALIVE
            } else {
                READ_TIMEOUT
            };
            if fill(&mut self.down, &mut self.dbuf, wait).await? == 0 {
                if self.dbuf.is_empty() {
                    return Ok(Ok(None));
                }
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "head cut short",
                ));
            }
        }
    }

    /// Sends the request (its head is in `head`) and reads the response head, which is left in
    /// `out` for the client; a replayable request that met a stale pinned connection goes once
    /// more on a new one.
    async fn exchange(
        &mut self,
        request: &RequestHead,
        shutting_down: bool,
    ) -> io::Result<ResponseHead> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let reused = self.up.is_some();
            if !reused {
                let stream = TcpStream::connect(self.upstream).await?;
                stream.set_nodelay(true)?;
                self.up = Some(stream);
                self.ubuf.clear();
            }
            self.out.clear();
            self.out.extend_from_slice(&self.head);
            match self.send_and_read_head(request, shutting_down).await {
                Err(error)
                    if reused && attempt == 1 && request.replayable && self.ubuf.is_empty() =>
                {
                    tracing::debug!(
                        "lean h1: stale upstream connection ({error}); again on a new one"
                    );
                    self.up = None;
                }
                other => return other,
            }
        }
    }

    async fn send_and_read_head(
        &mut self,
        request: &RequestHead,
        shutting_down: bool,
    ) -> io::Result<ResponseHead> {
        let up = self.up.as_mut().expect("connected");
        relay(
            &mut self.down,
            &mut self.dbuf,
            up,
            &mut self.out,
            request.framing,
        )
        .await?;
        loop {
            if !self.ubuf.is_empty() {
                if let Some(response) =
                    parse_response(&self.ubuf, request, &mut self.out, shutting_down)?
                {
                    self.ubuf.advance(response.len);
                    if response.status >= 200 {
                        return Ok(response);
                    }
                    if response.status == 101 {
                        return Err(invalid("101 to a request that asked no upgrade"));
                    }
                    // 1xx: passed on to an HTTP/1.1 client; the real answer follows.
                    if !request.http10 {
                        self.down.write_all(&self.out).await?;
                        self.down.flush().await?;
                    }
                    continue;
                }
            }
            if fill(up, &mut self.ubuf, READ_TIMEOUT).await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "upstream closed before its answer",
                ));
            }
        }
    }

    /// An answer of the proxy's own; the connection closes after it.
    async fn answer(&mut self, status: u16, reason: &str) -> io::Result<()> {
        self.out.clear();
        self.out.extend_from_slice(b"HTTP/1.1 ");
        self.out.extend_from_slice(&itoa3(status));
        self.out.push(b' ');
        self.out.extend_from_slice(reason.as_bytes());
        self.out
            .extend_from_slice(b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        self.down.write_all(&self.out).await?;
        self.down.flush().await?;
        let _ = self.down.shutdown().await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_scanner_refuses_a_bad_size_and_a_bare_lf() {
        assert!(Chunks::new().scan(b"zz\r\n").is_err());
        assert!(Chunks::new().scan(b"4\nWiki").is_err());
        assert!(Chunks::new().scan(b"4\r\nWikiX").is_err());
        assert!(Chunks::new().scan(b"ffffffffffffffff0\r\n").is_err());
    }

    #[test]
    fn chunk_scanner_finds_the_end_across_reads() {
        let body = b"4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nX-T: 1\r\n\r\nGET /next";
        for split in 0..body.len() {
            let mut chunks = Chunks::new();
            let end = body.len() - "GET /next".len();
            let (a, done_a) = chunks.scan(&body[..split]).unwrap();
            if done_a {
                // The body ended in the first part: the next request's bytes are not taken.
                assert_eq!(a, end, "split at {split}");
                continue;
            }
            assert_eq!(a, split);
            let (b, done_b) = chunks.scan(&body[split..]).unwrap();
            assert!(done_b);
            assert_eq!(a + b, end, "split at {split}");
        }
    }
}
