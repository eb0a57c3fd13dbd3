//! WebSockets through the gateway's tunnel, on the wire: every byte of both directions
//! arrives intact and in order, those sent with the upgrade request, those the replica sends in
//! the same write as its 101 (what pingora#946 broke), those the client sends right after the
//! 101, and a burst far larger than any buffer on the way; the open-WebSocket gauge follows. One
//! client address holds at most `ARAGORA_GATEWAY_MAX_WEBSOCKETS_PER_CLIENT` open.

use super::{gateway_with_echo, PATIENCE};
use crate::support::echo::UPGRADED_GREETING;
use crate::support::{eventually, sample};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

on_both_engines!(a_websockets_bytes_cross_the_tunnel_intact_both_ways);

/// Reads from `stream` into `buffer` until it holds at least `len` bytes.
async fn read_at_least<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    buffer: &mut Vec<u8>,
    len: usize,
) {
    let mut chunk = vec![0u8; 64 * 1024];
    while buffer.len() < len {
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut chunk))
            .await
            .expect("bytes in time")
            .expect("the tunnel stays readable");
        assert!(n > 0, "the tunnel ended after {} bytes", buffer.len());
        buffer.extend_from_slice(&chunk[..n]);
    }
}

async fn a_websockets_bytes_cross_the_tunnel_intact_both_ways() {
    let (upstream, gateway) = gateway_with_echo(&[]).await;
    let gauge = format!(
        "aragora_websocket_connections{{upstream=\"{}\"}}",
        upstream.addr
    );
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", gateway.https_port))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = gateway.tls_connector().connect(name, tcp).await.unwrap();

    // The upgrade request, and the client's first bytes in the same write.
    let mut request = b"GET /ws HTTP/1.1\r\nhost: 127.0.0.1\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".to_vec();
    request.extend_from_slice(b"with-the-request:");
    tls.write_all(&request).await.unwrap();
    let mut received = Vec::new();
    let head_end = loop {
        if let Some(at) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let len = received.len() + 1;
        read_at_least(&mut tls, &mut received, len).await;
    };
    let head = String::from_utf8_lossy(&received[..head_end]).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    received.drain(..head_end);

    // Right after the 101, then 4 MiB at once, while reading the echo.
    let burst: Vec<u8> = (0..4 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(31) % 253) as u8)
        .collect();
    let mut expected = UPGRADED_GREETING.to_vec();
    expected.extend_from_slice(b"with-the-request:");
    expected.extend_from_slice(b"right-after-the-101:");
    expected.extend_from_slice(&burst);
    let (mut reader, mut writer) = tokio::io::split(tls);
    let writing = tokio::spawn(async move {
        writer.write_all(b"right-after-the-101:").await.unwrap();
        writer.write_all(&burst).await.unwrap();
        writer.flush().await.unwrap();
        writer
    });
    read_at_least(&mut reader, &mut received, expected.len()).await;
    assert_eq!(received.len(), expected.len(), "no byte more than was sent");
    assert!(received == expected, "every byte intact and in order");
    let metrics = gateway.metrics().await;
    assert_eq!(sample(&metrics, &gauge), Some(1.0), "one open WebSocket");

    // The client leaves: the tunnel ends and the gauge follows.
    let writer = writing.await.unwrap();
    drop(reader.unsplit(writer));
    eventually(
        "the gateway to count the WebSocket closed",
        PATIENCE,
        || async {
            let metrics = gateway.metrics().await;
            (sample(&metrics, &gauge) == Some(0.0)).then_some(())
        },
    )
    .await;
}

/// Sends a WebSocket upgrade through the gateway as a client at `forwarded_for` (the gateway
/// trusts loopback's `X-Forwarded-For`); returns the response head and body, and the stream.
async fn upgrade_as(
    gateway: &crate::support::GatewayProcess,
    forwarded_for: &str,
) -> (
    String,
    Vec<u8>,
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
) {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", gateway.https_port))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = gateway.tls_connector().connect(name, tcp).await.unwrap();
    let request = format!("GET /ws HTTP/1.1\r\nhost: 127.0.0.1\r\nx-forwarded-for: {forwarded_for}\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let head_end = loop {
        if let Some(at) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let len = received.len() + 1;
        read_at_least(&mut tls, &mut received, len).await;
    };
    let head = String::from_utf8_lossy(&received[..head_end]).to_string();
    let length = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    if !head.starts_with("HTTP/1.1 101") {
        read_at_least(&mut tls, &mut received, head_end + length).await;
    }
    let body = received[head_end..].to_vec();
    (head, body, tls)
}

/// An upgrade as `forwarded_for` that must succeed.
async fn open_as(
    gateway: &crate::support::GatewayProcess,
    forwarded_for: &str,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let (head, body, tls) = upgrade_as(gateway, forwarded_for).await;
    assert!(
        head.starts_with("HTTP/1.1 101"),
        "{forwarded_for}: {head}{}",
        String::from_utf8_lossy(&body)
    );
    tls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_address_holds_at_most_its_websockets_and_gets_them_back_as_they_end() {
    const IDLE_SECS: u64 = 3;
    let (_upstream, gateway) = gateway_with_echo(&[
        ("ARAGORA_GATEWAY_MAX_WEBSOCKETS_PER_CLIENT", "2".into()),
        ("ARAGORA_TRUSTED_PROXIES", "127.0.0.0/8".into()),
        ("ARAGORA_WS_IDLE_TIMEOUT", IDLE_SECS.to_string()),
    ])
    .await;
    let refusals = "aragora_client_limit_refusals_total{limit=\"websockets_per_client\"}";
    assert_eq!(sample(&gateway.metrics().await, refusals), Some(0.0));
    let (one, another) = ("198.51.100.7", "198.51.100.8");
    let first = open_as(&gateway, one).await;
    let _second = open_as(&gateway, one).await;

    // A third from the same address: 429 with a JSON body naming the setting.
    let (head, body, _) = upgrade_as(&gateway, one).await;
    assert!(head.starts_with("HTTP/1.1 429"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 1"),
        "{head}"
    );
    let body: serde_json::Value = serde_json::from_slice(&body).expect("a JSON body");
    assert_eq!(body["error"]["code"], "client_limit", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(one) && message.contains("ARAGORA_GATEWAY_MAX_WEBSOCKETS_PER_CLIENT"),
        "{message}"
    );
    assert_eq!(sample(&gateway.metrics().await, refusals), Some(1.0));
    // Another address behind the same proxy is another client.
    let _bystander = open_as(&gateway, another).await;

    // The client closes one: its place is back once the tunnel ends.
    drop(first);
    let _third = eventually("a closed WebSocket's place back", PATIENCE, || async {
        let (head, _, tls) = upgrade_as(&gateway, one).await;
        head.starts_with("HTTP/1.1 101").then_some(tls)
    })
    .await;
    let (head, _, _) = upgrade_as(&gateway, one).await;
    assert!(
        head.starts_with("HTTP/1.1 429"),
        "at its limit again: {head}"
    );

    // Left silent, both end at the idle timeout and give their places back.
    // They were opened at different times, so they end at different times: poll until both
    // places are free at once.
    let _both = eventually("idle WebSockets' places back", PATIENCE, || async {
        let (head, _, tls) = upgrade_as(&gateway, one).await;
        if !head.starts_with("HTTP/1.1 101") {
            return None;
        }
        let (head, _, other) = upgrade_as(&gateway, one).await;
        head.starts_with("HTTP/1.1 101").then_some((tls, other))
    })
    .await;
}
