//! WebSockets through the gateway's tunnel, on the wire: every byte of both directions
//! arrives intact and in order, those sent with the upgrade request, those the replica sends in
//! the same write as its 101 (what pingora#946 broke), those the client sends right after the
//! 101, and a burst far larger than any buffer on the way; the open-WebSocket gauge follows.

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
