//! A local server that speaks the LLM providers' wire formats, so the real provider clients
//! run against real sockets: Anthropic Messages, OpenAI-style Chat Completions and Gemini,
//! whole or streamed as server-sent events. Each request takes the next scripted [`Reply`]
//! (or `Reply::Answer` when the script is empty) and is recorded for assertions.
//!
//! Plain HTTP/1.1 over a TCP listener, written by hand so a test can also break the protocol:
//! reset the connection, stall past a timeout, or send a body that is not JSON.

use serde_json::{json, Value};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the mock does with one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A well-formed answer in the request's wire format (streamed if the request asked).
    Answer,
    /// 429 with `Retry-After: seconds`.
    RateLimited { retry_after_secs: u64 },
    /// A status with a small JSON error body.
    Status(u16),
    /// 200 with a body that is not JSON.
    Malformed,
    /// Close the connection without answering.
    Reset,
    /// Wait, then do the inner reply.
    Slow(Duration, Box<Reply>),
    /// Hold the request until the test opens the gate, then do the inner reply.
    Gated(Gate, Box<Reply>),
}

/// A gate a test opens once, releasing every [`Reply::Gated`] request behind it.
#[derive(Clone, Debug)]
pub struct Gate(std::sync::Arc<tokio::sync::Semaphore>);

impl Gate {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Self(std::sync::Arc::new(tokio::sync::Semaphore::new(0)))
    }

    pub fn open(&self) {
        self.0.add_permits(tokio::sync::Semaphore::MAX_PERMITS / 2);
    }

    async fn passed(&self) {
        let _ = self.0.acquire().await;
    }
}

/// One request the mock received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone)]
pub struct MockLlm {
    pub addr: SocketAddr,
    script: Arc<Mutex<VecDeque<Reply>>>,
    fallback_reply: Arc<Mutex<Reply>>,
    recorded: Arc<Mutex<Vec<Recorded>>>,
}

impl MockLlm {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind mock");
        let mock = Self {
            addr: listener.local_addr().unwrap(),
            script: Arc::default(),
            fallback_reply: Arc::new(Mutex::new(Reply::Answer)),
            recorded: Arc::default(),
        };
        let server = mock.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let server = server.clone();
                tokio::spawn(async move { server.handle(stream).await });
            }
        });
        mock
    }

    /// Base URL with a version path, as a provider's base URL setting expects.
    pub fn base_url(&self, version: &str) -> String {
        format!("http://{}/{version}", self.addr)
    }

    /// Replies for the next requests, in order.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.script.lock().unwrap().extend(replies);
    }

    /// The reply once the script is used up.
    pub fn always(&self, reply: Reply) {
        *self.fallback_reply.lock().unwrap() = reply;
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.recorded.lock().unwrap().clone()
    }

    pub fn request_count(&self) -> usize {
        self.recorded.lock().unwrap().len()
    }

    async fn handle(&self, mut stream: TcpStream) {
        let Some(request) = read_request(&mut stream).await else {
            return;
        };
        self.recorded.lock().unwrap().push(request.clone());
        let reply = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| self.fallback_reply.lock().unwrap().clone());
        respond(&mut stream, &request, reply).await;
    }
}

async fn read_request(stream: &mut TcpStream) -> Option<Recorded> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..header_end]).to_string();
    let mut lines = head.split("\r\n");
    let path = lines.next()?.split_whitespace().nth(1)?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while buffer.len() < header_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    let body =
        serde_json::from_slice(&buffer[header_end..header_end + length]).unwrap_or(Value::Null);
    Some(Recorded {
        path,
        headers,
        body,
    })
}

async fn write(stream: &mut TcpStream, status: u16, content_type: &str, extra: &str, body: &str) {
    let head = format!(
        "HTTP/1.1 {status} MOCK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n{extra}\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// The text the mock answers with: a vote names the first position offered, anything else
/// echoes the model, so tests can tell which provider answered.
pub fn answer_text(request: &Recorded) -> String {
    let prompt = request.body.to_string();
    let model = request.body["model"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| {
            request
                .path
                .split("/models/")
                .nth(1)
                .unwrap_or("")
                .split(':')
                .next()
                .unwrap_or("")
                .to_string()
        });
    if prompt.contains("VOTE:") {
        let first = prompt
            .split("Final positions:")
            .nth(1)
            .and_then(|rest| rest.split('[').nth(1))
            .and_then(|rest| rest.split(']').next())
            .unwrap_or("nobody");
        return format!("VOTE: {first}\nIt survived the critiques best.");
    }
    format!("Mock answer from {model}: measure first, then decide.")
}

fn sse(events: &[Value]) -> String {
    events.iter().map(|e| format!("data: {e}\n\n")).collect()
}

async fn respond(stream: &mut TcpStream, request: &Recorded, reply: Reply) {
    match reply {
        Reply::Slow(delay, inner) => {
            tokio::time::sleep(delay).await;
            Box::pin(respond(stream, request, *inner)).await;
        }
        Reply::Gated(gate, inner) => {
            gate.passed().await;
            Box::pin(respond(stream, request, *inner)).await;
        }
        Reply::Reset => {
            // Drop the connection with unread data pending: the client sees a reset.
            let _ = stream.set_zero_linger();
        }
        Reply::Malformed => {
            write(
                stream,
                200,
                "application/json",
                "",
                "{\"this is\": not json",
            )
            .await
        }
        Reply::Status(status) => {
            let body = json!({"error": {"message": format!("mock status {status}")}}).to_string();
            write(stream, status, "application/json", "", &body).await;
        }
        Reply::RateLimited { retry_after_secs } => {
            let body = json!({"error": {"message": "rate limited"}}).to_string();
            let extra = format!("retry-after: {retry_after_secs}\r\n");
            write(stream, 429, "application/json", &extra, &body).await;
        }
        Reply::Answer => {
            let text = answer_text(request);
            let words: Vec<String> = text.split_inclusive(' ').map(str::to_string).collect();
            let streamed =
                request.body["stream"] == true || request.path.contains("streamGenerateContent");
            let (content_type, body) = if request.path.ends_with("/messages") {
                if streamed {
                    let mut events = vec![
                        json!({"type": "message_start", "message": {"usage": {"input_tokens": 11, "output_tokens": 0}}}),
                    ];
                    events.extend(words.iter().map(|w| json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}})));
                    events.push(json!({"type": "message_delta", "usage": {"output_tokens": 7}}));
                    events.push(json!({"type": "message_stop"}));
                    ("text/event-stream", sse(&events))
                } else {
                    ("application/json", json!({"content": [{"type": "text", "text": text}], "usage": {"input_tokens": 11, "output_tokens": 7}}).to_string())
                }
            } else if request.path.contains("/models/") {
                let chunk = |t: &str| json!({"candidates": [{"content": {"parts": [{"text": t}]}}], "usageMetadata": {"promptTokenCount": 11, "candidatesTokenCount": 7}});
                if streamed {
                    (
                        "text/event-stream",
                        sse(&words.iter().map(|w| chunk(w)).collect::<Vec<_>>()),
                    )
                } else {
                    ("application/json", chunk(&text).to_string())
                }
            } else if streamed {
                let mut events: Vec<Value> = words
                    .iter()
                    .map(|w| json!({"choices": [{"delta": {"content": w}}]}))
                    .collect();
                events.push(
                    json!({"choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 7}}),
                );
                let mut body = sse(&events);
                body.push_str("data: [DONE]\n\n");
                ("text/event-stream", body)
            } else {
                ("application/json", json!({"choices": [{"message": {"role": "assistant", "content": text}}], "usage": {"prompt_tokens": 11, "completion_tokens": 7}}).to_string())
            };
            write(stream, 200, content_type, "", &body).await;
        }
    }
}
