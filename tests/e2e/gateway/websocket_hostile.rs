//! Hostile WebSockets through the TLS edge to a real engine: broken upgrades, frames the
//! engine must refuse (oversized, badly fragmented, unmasked, not UTF-8), a ping flood,
//! thousands of subscriptions on one connection, unknown and foreign debates. Each gets a 4xx
//! on the upgrade, a close with RFC 6455's code, or an `error` event, never a 5xx or a panic;
//! afterwards the system is healthy (ready, a debate completes) and the connection gauges are
//! back where they were. The gateway passes upgraded bytes through untouched
//! (`gateway/src/websockets.rs`), so every frame check here is the engine's (`http/ws.rs`).

use super::PATIENCE;
use crate::support::{eventually, sample, Engine, EngineOptions, GatewayProcess};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};

on_both_engines!(
    hostile_websockets_get_a_4xx_a_close_code_or_an_error_event_and_leave_the_system_healthy
);

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// One frame as a client writes it; `masked` false is what a client must never send.
fn frame(fin: bool, opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= 0xFFFF => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

fn text(json: &Value) -> Vec<u8> {
    frame(true, OP_TEXT, json.to_string().as_bytes(), true)
}

/// The answer to an upgrade: status, head and body, or an open connection's halves.
enum Upgrade {
    Refused {
        status: u16,
        head: String,
        body: Vec<u8>,
    },
    Open(Frames, WriteHalf<Tls>),
}

/// Sends an upgrade request for `path` through the gateway with `headers` (each a full line
/// without CRLF) and reads the answer's head.
async fn upgrade(gateway: &GatewayProcess, path: &str, headers: &[String]) -> Upgrade {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", gateway.https_port))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = gateway.tls_connector().connect(name, tcp).await.unwrap();
    let mut request = format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n");
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = tokio::time::timeout(PATIENCE, tls.read(&mut chunk))
            .await
            .expect("an answer to the upgrade in time")
            .expect("a readable connection");
        assert!(n > 0, "the connection ended before an answer: {buffer:?}");
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..end]).to_string();
    let status: u16 = head[9..12].parse().expect("a status code");
    let mut rest = buffer[end..].to_vec();
    if status != 101 {
        let length: usize = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .unwrap_or(0);
        while rest.len() < length {
            let n = tls.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            rest.extend_from_slice(&chunk[..n]);
        }
        return Upgrade::Refused {
            status,
            head,
            body: rest,
        };
    }
    let (reader, writer) = tokio::io::split(tls);
    Upgrade::Open(
        Frames {
            reader,
            buffer: std::mem::take(&mut rest),
        },
        writer,
    )
}

/// The headers of a valid upgrade with `token`.
fn valid_headers(token: &str) -> Vec<String> {
    vec![
        "upgrade: websocket".into(),
        "connection: upgrade".into(),
        "sec-websocket-version: 13".into(),
        "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==".into(),
        format!("authorization: Bearer {token}"),
    ]
}

/// An open WebSocket through the gateway to `/ws` with `token`.
async fn open(gateway: &GatewayProcess, token: &str, path: &str) -> (Frames, WriteHalf<Tls>) {
    match upgrade(gateway, path, &valid_headers(token)).await {
        Upgrade::Open(frames, writer) => (frames, writer),
        Upgrade::Refused { head, body, .. } => {
            panic!("upgrade refused: {head}{}", String::from_utf8_lossy(&body))
        }
    }
}

/// The server's frames, read from the raw stream (the server never masks; its frames here are
/// never fragmented).
struct Frames {
    reader: ReadHalf<Tls>,
    buffer: Vec<u8>,
}

impl Frames {
    /// The next frame (opcode, payload); `None` once the connection has ended.
    async fn next(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if let Some((opcode, payload, used)) = parse(&self.buffer) {
                self.buffer.drain(..used);
                return Some((opcode, payload));
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = tokio::time::timeout(PATIENCE, self.reader.read(&mut chunk))
                .await
                .expect("a frame or the end in time")
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }

    /// The close code the server sends, skipping anything before it; `None` when the
    /// connection ended without a close frame.
    async fn close_code(&mut self) -> Option<u16> {
        while let Some((opcode, payload)) = self.next().await {
            if opcode == OP_CLOSE {
                return payload
                    .get(..2)
                    .map(|code| u16::from_be_bytes([code[0], code[1]]));
            }
        }
        None
    }

    /// The next text message as JSON that is not a periodic heartbeat (the answer to a
    /// `ping` message is one too, and is returned), skipping pong frames.
    async fn event(&mut self) -> Value {
        loop {
            let (opcode, payload) = self.next().await.expect("an event, not the end");
            assert_ne!(
                opcode,
                OP_CLOSE,
                "closed: {:?}",
                String::from_utf8_lossy(&payload)
            );
            if opcode == OP_TEXT {
                let event: Value = serde_json::from_slice(&payload).expect("JSON");
                if event["type"] != "heartbeat" || event["data"]["pong"] == true {
                    return event;
                }
            }
        }
    }
}

/// One server frame at the start of `buffer`: opcode, payload and the bytes it took.
fn parse(buffer: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    let (&first, &second) = (buffer.first()?, buffer.get(1)?);
    let (length, start) = match second & 0x7f {
        126 => (
            u16::from_be_bytes([*buffer.get(2)?, *buffer.get(3)?]) as usize,
            4,
        ),
        127 => {
            let bytes: [u8; 8] = buffer.get(2..10)?.try_into().ok()?;
            (u64::from_be_bytes(bytes) as usize, 10)
        }
        n => (n as usize, 2),
    };
    let payload = buffer.get(start..start + length)?.to_vec();
    Some((first & 0x0f, payload, start + length))
}

/// Writes `bytes`, ignoring a connection the server already closed (it may close mid-write).
async fn write(writer: &mut WriteHalf<Tls>, bytes: &[u8]) {
    let _ = writer.write_all(bytes).await;
    let _ = writer.flush().await;
}

/// The gauges a hostile client must not leave moved: the gateway's open TLS connections,
/// in-flight requests and WebSockets to the replica, and the engine's open WebSockets.
async fn gauges(gateway: &GatewayProcess, engine: &Engine) -> [f64; 4] {
    let edge = gateway.metrics().await;
    let upstream = format!(
        "aragora_websocket_connections{{upstream=\"{}\"}}",
        engine.api
    );
    let inner = engine.metrics().await;
    [
        sample(&edge, "aragora_gateway_connections").unwrap_or(0.0),
        sample(&edge, "aragora_gateway_inflight_requests").unwrap_or(0.0),
        sample(&edge, &upstream).unwrap_or(0.0),
        sample(&inner, "aragora_websocket_connections").unwrap_or(0.0),
    ]
}

async fn hostile_websockets_get_a_4xx_a_close_code_or_an_error_event_and_leave_the_system_healthy()
{
    let engine = Engine::start(EngineOptions::sqlite()).await;
    let gateway = GatewayProcess::start(&[engine.api.to_string()], &[]).await;
    gateway.wait_ready_count(1, PATIENCE).await;
    let token = gateway.token.clone().expect("the test's admin token");
    let client = gateway.client();
    let done = engine
        .run_debate(json!({"topic": "Finished", "rounds": 1}))
        .await;
    let finished = done["debate_id"].as_str().unwrap().to_string();
    // The test's own client holds one pooled connection from here on.
    let (status, _) = crate::support::get_json(&client, &gateway.https_url("/readyz")).await;
    assert_eq!(status, 200, "ready through the gateway");
    let before = gauges(&gateway, &engine).await;
    let mut outcomes: Vec<String> = Vec::new();

    // The upgrade itself: no key, a wrong version. A 4xx with the error envelope.
    let mut no_key = valid_headers(&token);
    no_key.retain(|h| !h.starts_with("sec-websocket-key"));
    let mut old_version = valid_headers(&token);
    old_version[2] = "sec-websocket-version: 8".into();
    for (case, headers) in [("no key", no_key), ("version 8", old_version)] {
        match upgrade(&gateway, "/ws", &headers).await {
            Upgrade::Refused { status, body, head } => {
                assert!((400..500).contains(&status), "{case}: {head}");
                let body: Value = serde_json::from_slice(&body).expect("a JSON error body");
                assert!(body["error"]["message"].is_string(), "{case}: {body}");
                outcomes.push(format!("{case}: {status} {}", body["error"]["code"]));
            }
            Upgrade::Open(..) => panic!("{case}: the upgrade must be refused"),
        }
    }

    // Frames the engine must refuse, each closing its connection with its code.
    // A header announcing 1 MiB and the first bytes: refused at the header (a client that
    // sent the whole megabyte would have the rest refused by a reset, not read).
    let big = frame(true, OP_TEXT, &vec![b'x'; 1024 * 1024], true)[..256].to_vec();
    let half = vec![b'y'; 40 * 1024];
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("a frame announcing 1 MiB", big, 1009),
        (
            "two 40 KiB fragments (80 KiB message)",
            [
                frame(false, OP_TEXT, &half, true),
                frame(true, OP_CONTINUATION, &half, true),
            ]
            .concat(),
            1009,
        ),
        (
            "an unmasked frame",
            frame(true, OP_TEXT, br#"{"type":"ping"}"#, false),
            1002,
        ),
        (
            "a continuation without a start",
            frame(true, OP_CONTINUATION, b"{}", true),
            1002,
        ),
        (
            "a text frame while a message is unfinished",
            [
                frame(false, OP_TEXT, b"{\"type\":", true),
                frame(true, OP_TEXT, b"{}", true),
            ]
            .concat(),
            1002,
        ),
        (
            "a fragmented ping",
            frame(false, OP_PING, b"hi", true),
            1002,
        ),
        (
            "invalid UTF-8 text",
            frame(true, OP_TEXT, b"{\"type\":\"\xff\xfe\"}", true),
            1007,
        ),
        (
            "invalid UTF-8 across fragments",
            [
                frame(false, OP_TEXT, b"{\"a\":\"\xe2", true),
                frame(true, OP_CONTINUATION, b"\x28\"}", true),
            ]
            .concat(),
            1007,
        ),
    ];
    for (case, bytes, code) in cases {
        let (mut frames, mut writer) = open(&gateway, &token, "/ws").await;
        write(&mut writer, &bytes).await;
        let got = frames.close_code().await;
        assert_eq!(got, Some(code), "{case}");
        outcomes.push(format!("{case}: close {code}"));
    }

    // A valid fragmented message, a ping between its fragments: it is one subscribe.
    let (mut frames, mut writer) = open(&gateway, &token, "/ws").await;
    let subscribe = json!({"type": "subscribe", "debate_id": finished, "last_seq": 0}).to_string();
    let (a, rest) = subscribe.as_bytes().split_at(10);
    let (b, c) = rest.split_at(10);
    let bytes = [
        frame(false, OP_TEXT, a, true),
        frame(true, OP_PING, b"mid", true),
        frame(false, OP_CONTINUATION, b, true),
        frame(true, OP_CONTINUATION, c, true),
    ]
    .concat();
    write(&mut writer, &bytes).await;
    let event = frames.event().await;
    assert_eq!(
        event["debate_id"],
        finished.as_str(),
        "fragmented subscribe: {event}"
    );
    assert_ne!(event["type"], "error", "fragmented subscribe: {event}");
    outcomes.push("fragmented subscribe: replayed".into());

    // A ping flood: answered, and the connection still serves.
    let pings: Vec<u8> = (0..10_000u32)
        .flat_map(|n| frame(true, OP_PING, &n.to_be_bytes(), true))
        .collect();
    let flood = tokio::spawn(async move {
        write(&mut writer, &pings).await;
        write(&mut writer, &text(&json!({"type": "ping"}))).await;
        writer
    });
    let mut pongs = 0usize;
    let answered = loop {
        let (opcode, payload) = frames.next().await.expect("still open during a ping flood");
        assert_ne!(opcode, OP_CLOSE, "ping flood closed: {payload:?}");
        if opcode == OP_PONG {
            pongs += 1;
        }
        if opcode == OP_TEXT {
            let event: Value = serde_json::from_slice(&payload).unwrap();
            if event["data"]["pong"] == true {
                break event;
            }
        }
    };
    assert_eq!(answered["type"], "heartbeat");
    assert!(pongs >= 1, "pongs answer the flood");
    let writer = flood.await.unwrap();
    outcomes.push(format!("10,000 pings: {pongs} pongs, still serving"));
    drop((frames, writer));

    // Thousands of subscriptions on one connection, to debates that do not exist, in one
    // burst: those within the client's ARAGORA_WS_MAX_MESSAGES_PER_SECOND are each answered
    // by an error event (not_found, or client_limit past ARAGORA_WS_MAX_SUBSCRIPTIONS while
    // earlier ones are still being looked up), then the connection is closed with 1008.
    const MANY: usize = 3000;
    let (mut frames, mut writer) = open(&gateway, &token, "/ws").await;
    let burst: Vec<u8> = (0..MANY)
        .flat_map(|n| text(&json!({"type": "subscribe", "debate_id": format!("nope-{n}")})))
        .collect();
    let sending = tokio::spawn(async move {
        write(&mut writer, &burst).await;
        writer
    });
    let mut codes = std::collections::BTreeMap::<String, usize>::new();
    let close = loop {
        let (opcode, payload) = frames.next().await.expect("a close frame before the end");
        if opcode == OP_CLOSE {
            break u16::from_be_bytes([payload[0], payload[1]]);
        }
        if opcode == OP_TEXT {
            let event: Value = serde_json::from_slice(&payload).unwrap();
            if event["type"] == "error" {
                *codes
                    .entry(event["data"]["code"].as_str().unwrap().to_string())
                    .or_default() += 1;
            }
        }
    };
    assert_eq!(close, 1008, "a burst past the message rate: {codes:?}");
    assert!(
        codes
            .keys()
            .all(|code| code == "not_found" || code == "client_limit"),
        "{codes:?}"
    );
    // Answers come from lookups still running when the connection closed: at most the rate.
    let answered: usize = codes.values().sum();
    assert!(answered <= 100, "{codes:?}");
    drop((frames, sending.await.unwrap()));
    outcomes.push(format!(
        "{MANY} subscriptions in a burst: error events {codes:?}, then close 1008"
    ));

    // A foreign debate: a share link of one debate may not watch another.
    let shared = engine
        .start_debate(json!({"topic": "Shared", "rounds": 1}))
        .await;
    let share = aragora_auth::mint_loop_token(&token, &shared, aragora_auth::unix_now() + 3600);
    let path = format!("/ws?debate_id={finished}");
    match upgrade(&gateway, &path, &valid_headers(&share)).await {
        Upgrade::Refused { status, .. } => {
            assert_eq!(status, 403, "a share link's upgrade to another debate");
            outcomes.push("foreign debate at the upgrade: 403".into());
        }
        Upgrade::Open(..) => panic!("a share link opened another debate"),
    }
    let (mut frames, mut writer) = open(&gateway, &share, &format!("/ws?debate_id={shared}")).await;
    write(
        &mut writer,
        &text(&json!({"type": "subscribe", "debate_id": finished})),
    )
    .await;
    let refused = loop {
        let event = frames.event().await;
        if event["debate_id"] == finished.as_str() {
            break event;
        }
    };
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["data"]["code"], "forbidden", "{refused}");
    outcomes.push("foreign debate by subscribe: error forbidden".into());
    write(
        &mut writer,
        &frame(true, OP_CLOSE, &1000u16.to_be_bytes(), true),
    )
    .await;
    assert_eq!(
        frames.close_code().await,
        Some(1000),
        "a clean close is answered"
    );
    drop((frames, writer));

    // Healthy afterwards: ready, a debate completes through the edge, gauges where they were.
    let (status, _) = crate::support::get_json(&client, &gateway.https_url("/readyz")).await;
    assert_eq!(status, 200, "ready through the gateway");
    let (status, body) = crate::support::post_json(
        &client,
        &gateway.https_url("/api/debates"),
        &json!({"topic": "After the hostile clients", "rounds": 1}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let after = engine
        .wait_final(body["debate_id"].as_str().unwrap(), PATIENCE)
        .await;
    assert_eq!(after["status"], "completed", "{after}");
    eventually(
        "the connection gauges back where they were",
        PATIENCE,
        || async {
            let now = gauges(&gateway, &engine).await;
            // Open TLS connections may only be fewer (a pooled one the gateway timed out).
            (now[0] <= before[0] && now[1..] == before[1..]).then_some(())
        },
    )
    .await;
    for (name, log) in [
        ("engine", engine.log_text()),
        ("gateway", gateway.log_text()),
    ] {
        assert!(!log.contains("panicked"), "the {name} panicked:\n{log}");
    }
    let metrics = gateway.metrics().await;
    let server_errors: f64 = metrics
        .lines()
        .filter(|line| {
            line.starts_with("aragora_http_requests_total") && line.contains("status=\"5")
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(
        server_errors,
        0.0,
        "no 5xx at the edge:\n{}",
        outcomes.join("\n")
    );
    eprintln!("{}", outcomes.join("\n"));
}
