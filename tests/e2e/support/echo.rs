//! A stand-in engine replica for gateway tests: answers its readiness path with 200 or 503 as
//! the test says, echoes every other request's method, path and headers as JSON, and counts
//! the requests it served. Plain HTTP/1.1 with keep-alive over a real socket. A request for
//! `/hang-up` is counted and then the connection is closed without an answer, like a replica
//! that crashes mid-request. A request for `/slow/MS` is answered with [`SLOW_BODY_BYTES`]
//! streamed in chunks over MS milliseconds, so it is still in flight for that long. A
//! WebSocket upgrade to `/ws` is answered with a 101 and [`UPGRADED_GREETING`] in the same
//! write, and from then on every byte is echoed back as it came (including any sent with the
//! upgrade request). Once armed ([`EchoUpstream::reset_next_unread`]), the next request for
//! `/reset-unread` is not read: its connection is closed with the request still in the socket,
//! which makes the kernel reset it, as a replica stopping with connections in its accept queue
//! does. Its JSON answers carry a `Server` banner and a permissive
//! `X-Frame-Options` ([`REPLICA_BANNER`]).

use serde_json::{json, Map, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What an echo answer says about its server, as a replica that leaks its banner and
/// allows framing would: the gateway must not pass either on.
pub const REPLICA_BANNER: &str = "server: echo-replica/1.0\r\nx-frame-options: ALLOWALL\r\n";

/// The length of a `/slow/MS` answer's body.
pub const SLOW_BODY_BYTES: usize = 64 * 1024;
const SLOW_CHUNKS: usize = 8;
/// What the echo replica sends right behind its 101, in the same write.
pub const UPGRADED_GREETING: &[u8] = b"greeting-with-the-101:";

/// The body `/chunked` answers with, chunked.
pub const CHUNKED_BODY: &str = "chunk-encoded body.";

#[derive(Clone)]
pub struct EchoUpstream {
    pub addr: SocketAddr,
    ready: Arc<AtomicBool>,
    served: Arc<AtomicUsize>,
    slow_started: Arc<AtomicUsize>,
    reset_unread: Arc<AtomicBool>,
}

impl EchoUpstream {
    pub async fn start(ready: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind echo upstream");
        let upstream = Self {
            addr: listener.local_addr().unwrap(),
            ready: Arc::new(AtomicBool::new(ready)),
            served: Arc::default(),
            slow_started: Arc::default(),
            reset_unread: Arc::default(),
        };
        let server = upstream.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let server = server.clone();
                tokio::spawn(async move { server.serve(stream).await });
            }
        });
        upstream
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Requests served, not counting readiness checks.
    pub fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }

    /// Arms the reset of the next `/reset-unread` request's connection, unread; false once
    /// that happened.
    pub fn reset_next_unread(&self) {
        self.reset_unread.store(true, Ordering::SeqCst);
    }

    /// Whether an armed reset is still waiting for its request.
    pub fn reset_armed(&self) -> bool {
        self.reset_unread.load(Ordering::SeqCst)
    }

    /// `/slow/MS` requests that have arrived (and begun their answer).
    pub fn slow_started(&self) -> usize {
        self.slow_started.load(Ordering::SeqCst)
    }

    /// Answers with headers at once, then the body in chunks spread over `millis`.
    async fn answer_slowly(&self, stream: &mut TcpStream, millis: u64) -> std::io::Result<()> {
        self.slow_started.fetch_add(1, Ordering::SeqCst);
        let head = format!(
            "HTTP/1.1 200 X\r\ncontent-type: application/octet-stream\r\ncontent-length: {SLOW_BODY_BYTES}\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await?;
        let chunk = vec![b'x'; SLOW_BODY_BYTES / SLOW_CHUNKS];
        for _ in 0..SLOW_CHUNKS {
            tokio::time::sleep(std::time::Duration::from_millis(
                millis / SLOW_CHUNKS as u64,
            ))
            .await;
            stream.write_all(&chunk).await?;
        }
        Ok(())
    }

    async fn serve(&self, mut stream: TcpStream) {
        let mut buffer = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            // Waits for the next request without taking it (arming may come meanwhile).
            if buffer.is_empty() {
                match stream.peek(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if chunk[..n].windows(14).any(|w| w == b" /reset-unread")
                            && self.reset_unread.swap(false, Ordering::SeqCst)
                        {
                            return;
                        }
                    }
                }
            }
            let header_end = loop {
                if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                    break at + 4;
                }
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                }
            };
            let head = String::from_utf8_lossy(&buffer[..header_end]).to_string();
            let mut lines = head.split("\r\n");
            let request_line: Vec<String> = lines
                .next()
                .unwrap_or("")
                .split_whitespace()
                .map(str::to_string)
                .collect();
            let mut headers = Map::new();
            for line in lines.filter(|l| !l.is_empty()) {
                if let Some((name, value)) = line.split_once(':') {
                    headers.insert(
                        name.trim().to_ascii_lowercase(),
                        Value::String(value.trim().to_string()),
                    );
                }
            }
            let length: usize = headers
                .get("content-length")
                .and_then(|v| v.as_str())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            while buffer.len() < header_end + length {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                }
            }
            buffer.drain(..header_end + length);
            let path = request_line.get(1).cloned().unwrap_or_default();
            let upgrade = headers.get("upgrade").and_then(|v| v.as_str());
            if path == "/ws" && upgrade.is_some_and(|u| u.eq_ignore_ascii_case("websocket")) {
                self.served.fetch_add(1, Ordering::SeqCst);
                let mut answer = b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-accept: echo\r\n\r\n".to_vec();
                answer.extend_from_slice(UPGRADED_GREETING);
                answer.extend_from_slice(&buffer);
                if stream.write_all(&answer).await.is_ok() {
                    let (mut from, mut to) = stream.split();
                    let _ = tokio::io::copy(&mut from, &mut to).await;
                }
                return;
            }
            if let Some(millis) = path.strip_prefix("/slow/").and_then(|m| m.parse().ok()) {
                self.served.fetch_add(1, Ordering::SeqCst);
                if self.answer_slowly(&mut stream, millis).await.is_err() {
                    return;
                }
                continue;
            }
            if path == "/chunked" {
                self.served.fetch_add(1, Ordering::SeqCst);
                // CHUNKED_BODY in three chunks, one with an extension, and a trailer.
                let answer = b"HTTP/1.1 200 X\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n6\r\nchunk-\r\n7;ext=1\r\nencoded\r\n6\r\n body.\r\n0\r\nx-trailer: t\r\n\r\n";
                if stream.write_all(answer).await.is_err() {
                    return;
                }
                continue;
            }
            if path == "/hang-up" {
                self.served.fetch_add(1, Ordering::SeqCst);
                return;
            }
            let (status, body) = if path == "/readyz" {
                if self.ready.load(Ordering::SeqCst) {
                    (200, json!({"status": "ready"}))
                } else {
                    (
                        503,
                        json!({"status": "not_ready", "reason": "test says so"}),
                    )
                }
            } else {
                self.served.fetch_add(1, Ordering::SeqCst);
                let method = request_line.first().cloned().unwrap_or_default();
                (
                    200,
                    json!({"upstream": self.addr.to_string(), "method": method, "path": path, "headers": headers, "body_bytes": length}),
                )
            };
            let body = body.to_string();
            let response = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{REPLICA_BANNER}\r\n{body}",
                body.len()
            );
            if stream.write_all(response.as_bytes()).await.is_err() {
                return;
            }
        }
    }
}
