//! A stand-in OpenTelemetry collector: accepts OTLP/HTTP `POST /v1/traces` (protobuf) on a
//! real socket and keeps each body, so a test can look for a trace id in what was exported.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Each export received: its path and body.
type Exports = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

#[derive(Clone)]
pub struct OtlpSink {
    pub addr: SocketAddr,
    bodies: Exports,
}

impl OtlpSink {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sink = Self {
            addr: listener.local_addr().unwrap(),
            bodies: Arc::default(),
        };
        let bodies = sink.bodies.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let bodies = bodies.clone();
                tokio::spawn(async move {
                    let mut buffer = Vec::new();
                    let mut chunk = [0u8; 16384];
                    loop {
                        let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
                            match stream.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                            }
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buffer[..end]).to_string();
                        let length: usize = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().to_string())
                            })
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0);
                        while buffer.len() < end + 4 + length {
                            match stream.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                        bodies
                            .lock()
                            .unwrap()
                            .push((path, buffer[end + 4..end + 4 + length].to_vec()));
                        buffer.drain(..end + 4 + length);
                        let reply = "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
                        if stream.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        sink
    }

    /// Whether an exported body on `path` contains `needle`.
    pub fn received(&self, path: &str, needle: &[u8]) -> bool {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .any(|(p, body)| p == path && body.windows(needle.len()).any(|w| w == needle))
    }
}
