//! What the hostile-request catalogue (tests/e2e/gateway/hostile.rs) needs besides the
//! gateway: nginx and HAProxy configured as the benchmark configures them (TLS 1.2+, h2, one
//! upstream) with the same short client timeouts, a raw TLS client that speaks bytes (HTTP/1)
//! or frames (HTTP/2, ALPN `h2`) and says what came back, as an [`Outcome`].

use crate::support::free_port;
use crate::support::process::Process;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The TLS client stream of a case.
pub type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// What one hostile request got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A response with this status (the first one, for HTTP/1; `:status` for HTTP/2).
    Status(u16),
    /// The server closed or reset the connection without an answer.
    Closed,
    /// HTTP/2: the server sent GOAWAY with this error code.
    GoAway(u32),
    /// HTTP/2: the connection stayed open and answered a PING after the abuse.
    Tolerated,
    /// The answer a slow client got, and when (since the case began).
    Cut(Box<Outcome>, Duration),
    /// Nothing within the case's patience, connection still open.
    Silent,
}

impl Outcome {
    /// How strict the answer is: 2 refused (4xx, an RFC 501/505, closed, GOAWAY, a slow
    /// client cut off), 1 let through (2xx/3xx, tolerated), 0 wrong (another 5xx, silence).
    pub fn strictness(&self) -> u8 {
        match self {
            Outcome::Status(400..=499 | 501 | 505) => 2,
            Outcome::Status(200..=399) => 1,
            Outcome::Status(_) => 0,
            Outcome::Closed | Outcome::GoAway(_) => 2,
            Outcome::Tolerated => 1,
            Outcome::Cut(answer, _) => match **answer {
                Outcome::Status(status) if status >= 500 && !matches!(status, 501 | 503 | 505) => 0,
                _ => 2,
            },
            Outcome::Silent => 0,
        }
    }

    /// Short, for the results table.
    pub fn label(&self) -> String {
        match self {
            Outcome::Status(status) => status.to_string(),
            Outcome::Closed => "closed".into(),
            Outcome::GoAway(code) => format!("GOAWAY({code})"),
            Outcome::Tolerated => "tolerated".into(),
            Outcome::Cut(answer, after) => {
                format!("cut {:.1}s ({})", after.as_secs_f64(), answer.label())
            }
            Outcome::Silent => "silent".into(),
        }
    }
}

/// One proxy the catalogue is sent through: its HTTPS port and a TLS client trusting it.
#[derive(Clone)]
pub struct Target {
    pub name: &'static str,
    pub port: u16,
    roots: Arc<rustls::RootCertStore>,
}

impl Target {
    pub fn new(name: &'static str, port: u16, cert_pem: &[u8]) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut &cert_pem[..]) {
            roots.add(cert.unwrap()).unwrap();
        }
        Self {
            name,
            port,
            roots: Arc::new(roots),
        }
    }

    /// A TLS connection offering `alpn` (`http/1.1` or `h2`), its TCP receive buffer at
    /// `receive_buffer` bytes when given (a client that reads slowly, or never).
    pub async fn connect(&self, alpn: &[u8], receive_buffer: Option<u32>) -> Tls {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(self.roots.clone())
            .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        if let Some(bytes) = receive_buffer {
            socket.set_recv_buffer_size(bytes).unwrap();
        }
        let tcp = socket
            .connect(SocketAddr::from(([127, 0, 0, 1], self.port)))
            .await
            .unwrap_or_else(|err| panic!("{}: connect: {err}", self.name));
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .unwrap_or_else(|err| panic!("{}: TLS handshake: {err}", self.name))
    }
}

/// The status of the first HTTP/1 status line in `bytes`, if one is there.
fn first_status(bytes: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(bytes);
    let line = text.lines().next()?;
    let mut words = line.split(' ');
    words.next().filter(|v| v.starts_with("HTTP/"))?;
    words.next()?.parse().ok()
}

/// Reads until a status line is in, the server closes, or `patience` is over.
pub async fn read_answer(tls: &mut Tls, patience: Duration) -> Outcome {
    let deadline = Instant::now() + patience;
    let mut seen = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    loop {
        if let Some(status) = first_status(&seen).filter(|_| seen.contains(&b'\n')) {
            return Outcome::Status(status);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, tls.read(&mut buffer)).await {
            Err(_) => return Outcome::Silent,
            Ok(Ok(0)) | Ok(Err(_)) => {
                return first_status(&seen).map_or(Outcome::Closed, Outcome::Status);
            }
            Ok(Ok(n)) => seen.extend_from_slice(&buffer[..n]),
        }
    }
}

/// Sends `request` whole on a new HTTP/1.1 connection and reads the answer.
pub async fn send_raw(target: &Target, request: &[u8], patience: Duration) -> Outcome {
    let mut tls = target.connect(b"http/1.1", None).await;
    if tls.write_all(request).await.is_err() || tls.flush().await.is_err() {
        return read_answer(&mut tls, patience).await;
    }
    read_answer(&mut tls, patience).await
}

/// Opens a TCP connection and sends nothing, not even a TLS ClientHello: `Cut` when the
/// server closes it within `patience`.
pub async fn say_nothing(target: &Target, patience: Duration) -> Outcome {
    let started = Instant::now();
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", target.port))
        .await
        .unwrap_or_else(|err| panic!("{}: connect: {err}", target.name));
    let mut buffer = [0u8; 1024];
    loop {
        let left = patience.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, tcp.read(&mut buffer)).await {
            Err(_) => return Outcome::Silent,
            Ok(Ok(0)) | Ok(Err(_)) => {
                return Outcome::Cut(Box::new(Outcome::Closed), started.elapsed())
            }
            // Whatever a server says before TLS (nothing, normally) is not an answer.
            Ok(Ok(_)) => {}
        }
    }
}

/// Sends `head`, then `drip` one piece at a time every `every` (a slowloris, or a slow body),
/// until the server answers or closes, or `patience` is over: `Cut` with when.
pub async fn send_slowly(
    target: &Target,
    head: &[u8],
    drip: &[u8],
    every: Duration,
    patience: Duration,
) -> Outcome {
    let started = Instant::now();
    let mut tls = target.connect(b"http/1.1", None).await;
    let _ = tls.write_all(head).await;
    let _ = tls.flush().await;
    let mut pieces = drip.chunks(4).cycle();
    while started.elapsed() < patience {
        let answer = read_answer(&mut tls, every).await;
        if answer != Outcome::Silent {
            return Outcome::Cut(Box::new(answer), started.elapsed());
        }
        if let Some(piece) = pieces.next().filter(|_| !drip.is_empty()) {
            if tls.write_all(piece).await.is_err() || tls.flush().await.is_err() {
                return Outcome::Cut(Box::new(Outcome::Closed), started.elapsed());
            }
        }
    }
    Outcome::Silent
}

/// Sends `requests` pipelined on a connection with a tiny receive buffer, never reads for
/// `stall`, then reads what is there: `Cut` when the server gave up before sending all of
/// `expected_bytes`, `Status` of the first answer when it sent everything (it waited).
pub async fn never_read(
    target: &Target,
    requests: &[u8],
    expected_bytes: usize,
    stall: Duration,
) -> Outcome {
    let mut tls = target.connect(b"http/1.1", Some(4096)).await;
    let _ = tls.write_all(requests).await;
    let _ = tls.flush().await;
    tokio::time::sleep(stall).await;
    let mut seen = Vec::new();
    let mut total = 0;
    let mut buffer = vec![0u8; 256 * 1024];
    let end = loop {
        match tokio::time::timeout(Duration::from_secs(20), tls.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break Outcome::Closed,
            Ok(Ok(n)) => {
                if seen.len() < 64 {
                    seen.extend_from_slice(&buffer[..n.min(64)]);
                }
                total += n;
                if total >= expected_bytes {
                    break first_status(&seen).map_or(Outcome::Silent, Outcome::Status);
                }
            }
            Err(_) => break Outcome::Silent,
        }
    };
    // Cut some time during the stall: the stall is the bound known.
    match end {
        Outcome::Closed => Outcome::Cut(Box::new(Outcome::Closed), stall),
        other => other,
    }
}

/// HTTP/2 frames, written by hand so that a case can send what no client library would.
pub mod h2 {
    pub const DATA: u8 = 0;
    pub const HEADERS: u8 = 1;
    pub const RST_STREAM: u8 = 3;
    pub const SETTINGS: u8 = 4;
    pub const PING: u8 = 6;
    pub const GOAWAY: u8 = 7;
    pub const CONTINUATION: u8 = 9;
    pub const END_STREAM: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const ACK: u8 = 0x1;
    pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let length = payload.len() as u32;
        let mut out = length.to_be_bytes()[1..].to_vec();
        out.extend([kind, flags]);
        out.extend((stream & 0x7fff_ffff).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// A literal header field, never indexed, no Huffman coding (RFC 7541 §6.2.3), for names
    /// and values under 127 bytes.
    pub fn literal(name: &str, value: &str) -> Vec<u8> {
        let mut out = vec![0x10, name.len() as u8];
        out.extend_from_slice(name.as_bytes());
        out.push(value.len() as u8);
        out.extend_from_slice(value.as_bytes());
        out
    }

    /// The header block of a GET of `path`.
    pub fn get(path: &str, token: Option<&str>) -> Vec<u8> {
        let mut block = Vec::new();
        for (name, value) in [
            (":method", "GET"),
            (":scheme", "https"),
            (":authority", "127.0.0.1"),
            (":path", path),
        ] {
            block.extend(literal(name, value));
        }
        if let Some(token) = token {
            block.extend(literal("authorization", &format!("Bearer {token}")));
        }
        block
    }

    /// SETTINGS with `(id, value)` pairs.
    pub fn settings(pairs: &[(u16, u32)]) -> Vec<u8> {
        let mut payload = Vec::new();
        for (id, value) in pairs {
            payload.extend(id.to_be_bytes());
            payload.extend(value.to_be_bytes());
        }
        frame(SETTINGS, 0, 0, &payload)
    }
}

/// What [`send_h2`] waits for after writing its frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum H2Wait {
    /// A PING follows the frames: `Tolerated` when its ACK comes back first.
    Ping,
    /// No PING (it would be a protocol error mid header block): only the server giving up.
    Refusal,
    /// A stream the server cannot finish: `Cut` when it resets the stream or the connection.
    StreamEnd,
}

/// Writes `bytes` (an h2 preface and frames), then reads frames for `patience`: `GoAway` or
/// `Closed` when the server gave up on the connection, else what `wait` says.
pub async fn send_h2(target: &Target, bytes: &[u8], wait: H2Wait, patience: Duration) -> Outcome {
    let started = Instant::now();
    let tls = target.connect(b"h2", None).await;
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(&b"h2"[..]),
        "{} negotiates h2",
        target.name
    );
    // Written while reading: a server that stops reading must not stall the case.
    let (mut reader, mut writer) = tokio::io::split(tls);
    let mut payload = bytes.to_vec();
    if wait == H2Wait::Ping {
        payload.extend(h2::frame(h2::PING, 0, 0, b"aragora!"));
    }
    let writing = tokio::spawn(async move {
        let _ = writer.write_all(&payload).await;
        let _ = writer.flush().await;
        // Held open: dropping the writer would end the connection from this side.
        std::future::pending::<()>().await;
    });
    let cut = |outcome: Outcome| match wait {
        H2Wait::StreamEnd => Outcome::Cut(Box::new(outcome), started.elapsed()),
        _ => outcome,
    };
    let deadline = started + patience;
    let mut pending = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let outcome = loop {
        // Whole frames first.
        let mut found = None;
        while found.is_none() && pending.len() >= 9 {
            let length = u32::from_be_bytes([0, pending[0], pending[1], pending[2]]) as usize;
            if pending.len() < 9 + length {
                break;
            }
            let (kind, flags) = (pending[3], pending[4]);
            let payload = pending[9..9 + length].to_vec();
            pending.drain(..9 + length);
            found = match kind {
                h2::GOAWAY if payload.len() >= 8 => {
                    let code = u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
                    Some(cut(Outcome::GoAway(code)))
                }
                h2::RST_STREAM if wait == H2Wait::StreamEnd => Some(cut(Outcome::Closed)),
                h2::PING if flags & h2::ACK != 0 && payload == b"aragora!" => {
                    Some(Outcome::Tolerated)
                }
                _ => None,
            };
        }
        if let Some(outcome) = found {
            break outcome;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, reader.read(&mut buffer)).await {
            Err(_) => break Outcome::Silent,
            Ok(Ok(0)) | Ok(Err(_)) => break cut(Outcome::Closed),
            Ok(Ok(n)) => pending.extend_from_slice(&buffer[..n]),
        }
    };
    writing.abort();
    outcome
}

/// nginx and HAProxy in front of `upstream` on ports of their own, with the certificate at
/// `cert`/`key` and `timeout_secs` for every client timeout (head, body, send); killed on drop.
pub struct References {
    pub nginx: u16,
    pub haproxy: u16,
    _processes: Vec<Process>,
    _dir: tempfile::TempDir,
}

impl References {
    pub async fn start(
        upstream: SocketAddr,
        cert: &Path,
        key: &Path,
        timeout_secs: u64,
        max_body: usize,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path();
        let (nginx, haproxy) = (free_port(), free_port());
        let bundle = work.join("haproxy.pem");
        let mut pem = std::fs::read(cert).unwrap();
        pem.extend(std::fs::read(key).unwrap());
        std::fs::write(&bundle, pem).unwrap();
        let t = timeout_secs;
        let nginx_conf = format!(
            "worker_processes 1; daemon off; pid {w}/nginx.pid; error_log {w}/nginx.err;
events {{ worker_connections 1024; }}
http {{ access_log off; client_body_temp_path {w}/body; proxy_temp_path {w}/proxy;
  fastcgi_temp_path {w}/fcgi; uwsgi_temp_path {w}/uwsgi; scgi_temp_path {w}/scgi;
  client_header_timeout {t}s; client_body_timeout {t}s; send_timeout {t}s; keepalive_timeout 60s;
  client_max_body_size {max_body};
  upstream engine {{ server {upstream}; keepalive 16; }}
  server {{ listen 127.0.0.1:{nginx} ssl http2; ssl_certificate {cert}; ssl_certificate_key {key};
    ssl_protocols TLSv1.2 TLSv1.3;
    proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_set_header Host $host;
    location / {{ proxy_pass http://engine; }} }} }}
",
            w = work.display(),
            cert = cert.display(),
            key = key.display(),
        );
        std::fs::write(work.join("nginx.conf"), nginx_conf).unwrap();
        let haproxy_cfg = format!(
            "global
  nbthread 1
  maxconn 1000
defaults
  mode http
  timeout connect 2s
  timeout client {t}s
  timeout http-request {t}s
  timeout server 30s
  option http-keep-alive
frontend tls
  bind 127.0.0.1:{haproxy} ssl crt {bundle} alpn h2,http/1.1 ssl-min-ver TLSv1.2
  default_backend engine
backend engine
  server e1 {upstream}
",
            bundle = bundle.display(),
        );
        std::fs::write(work.join("haproxy.cfg"), haproxy_cfg).unwrap();
        let mut processes = Vec::new();
        let mut nginx_command = Command::new("nginx");
        nginx_command
            .arg("-c")
            .arg(work.join("nginx.conf"))
            .arg("-p")
            .arg(work);
        processes.push(Process::spawn(
            &mut nginx_command,
            &work.join("nginx.log"),
            &work.join("nginx.out"),
        ));
        let mut haproxy_command = Command::new("haproxy");
        haproxy_command
            .arg("-f")
            .arg(work.join("haproxy.cfg"))
            .arg("-db");
        processes.push(Process::spawn(
            &mut haproxy_command,
            &work.join("haproxy.log"),
            &work.join("haproxy.out"),
        ));
        for port in [nginx, haproxy] {
            crate::support::eventually(
                &format!("a reference proxy on port {port}"),
                Duration::from_secs(30),
                || async {
                    tokio::net::TcpStream::connect(("127.0.0.1", port))
                        .await
                        .ok()
                        .map(|_| ())
                },
            )
            .await;
        }
        Self {
            nginx,
            haproxy,
            _processes: processes,
            _dir: dir,
        }
    }
}
