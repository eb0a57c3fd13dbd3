//! What the gateway refuses: connections beyond the limit, oversized or slow requests,
//! maintenance mode, and the per-client rate limit (local, behind a trusted proxy, route
//! overrides, shared through Redis, and what a Redis outage does to it).

use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

on_both_engines!(
    connections_beyond_the_limit_are_closed_at_accept_and_counted,
    limits_answer_their_status_and_maintenance_mode_blocks_all_but_health,
    each_client_gets_its_limit_with_headers_and_a_spoofed_forwarded_for_is_ignored,
    behind_a_trusted_proxy_the_forwarded_client_is_limited_not_the_proxy,
    route_overrides_allow_list_and_the_admin_view_of_rate_limits,
    two_gateways_sharing_redis_admit_the_configured_rate_not_twice_it,
    a_redis_outage_falls_back_without_a_5xx_and_recovers_by_itself,
    failing_closed_refuses_with_429_not_a_5xx_while_redis_is_away,
    a_client_over_its_limit_gets_its_429s_on_the_connection_it_keeps,
    a_refusal_closes_the_connection_when_the_body_is_unread_or_the_head_too_large,
    over_http2_a_limited_client_keeps_its_one_connection,
);

async fn connections_beyond_the_limit_are_closed_at_accept_and_counted() {
    let (_upstream, gateway) =
        gateway_with_echo(&[("ARAGORA_GATEWAY_MAX_CONNECTIONS", "2".into())]).await;
    let connector = gateway.tls_connector();
    let open = || async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", gateway.https_port))
            .await
            .unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        connector.connect(name, tcp).await
    };
    let first = open().await.expect("first connection");
    let second = open().await.expect("second connection");
    eventually("two open connections", PATIENCE, || async {
        let metrics = gateway.metrics().await;
        (sample(&metrics, "aragora_gateway_connections") == Some(2.0)).then_some(())
    })
    .await;
    assert!(
        open().await.is_err(),
        "a third connection is closed at accept"
    );
    let metrics = gateway.metrics().await;
    assert_eq!(
        sample(&metrics, "aragora_gateway_connections_refused_total"),
        Some(1.0)
    );
    drop(first);
    eventually("a closed connection frees its place", PATIENCE, || async {
        let metrics = gateway.metrics().await;
        (sample(&metrics, "aragora_gateway_connections") == Some(1.0)).then_some(())
    })
    .await;
    let again = open().await;
    assert!(again.is_ok(), "room again after one closed");
    drop(second);
}

async fn limits_answer_their_status_and_maintenance_mode_blocks_all_but_health() {
    let (upstream, gateway) = gateway_with_echo(&[
        ("ARAGORA_GATEWAY_MAX_BODY_BYTES", "2048".into()),
        ("ARAGORA_GATEWAY_MAX_HEADER_BYTES", "4096".into()),
        ("ARAGORA_CLIENT_READ_TIMEOUT", "1".into()),
    ])
    .await;
    let client = gateway.client_builder().http1_only().build().unwrap();
    let url = gateway.https_url("/api/debates");

    let declared = client
        .post(&url)
        .body(vec![b'x'; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(declared.status(), 413);
    error_naming(declared, "ARAGORA_GATEWAY_MAX_BODY_BYTES").await;
    assert_eq!(
        upstream.served(),
        0,
        "the declared oversize body never reached the replica"
    );
    // A chunked body declares no length: the limit applies to the bytes as they arrive.
    let chunks = futures::stream::iter((0..8).map(|_| Ok::<_, std::io::Error>(vec![b'y'; 1024])));
    let streamed = client
        .post(&url)
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await;
    match streamed {
        Ok(response) => assert_eq!(response.status(), 413),
        Err(err) => assert!(
            err.is_request() || err.is_body(),
            "cut off while sending: {err}"
        ),
    }
    let within = client
        .post(&url)
        .body(vec![b'z'; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(within.status(), 200);
    let served = upstream.served();

    let big = client
        .get(&url)
        .header("x-padding", "p".repeat(8000))
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), 431);
    let body: Value = big.json().await.unwrap();
    assert_eq!(body["error"]["code"], "headers_too_large");
    assert_eq!(
        upstream.served(),
        served,
        "the oversize head never reached the replica"
    );

    // A client that sends its headers and then stalls mid-body is cut off.
    let connector = gateway.tls_connector();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", gateway.https_port))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(b"POST /api/debates HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\npartial")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buffer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut buffer)).await;
    assert!(
        read.is_ok(),
        "a stalled client must be cut off, not held for ever"
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );

    let enable = gateway.admin_post("/api/system/maintenance/enable").await;
    assert_eq!(enable.status(), 200);
    let blocked = client.get(&url).send().await.unwrap();
    assert_eq!(blocked.status(), 503);
    assert!(blocked.headers().contains_key("retry-after"));
    assert_eq!(
        blocked.json::<Value>().await.unwrap()["error"]["code"],
        "maintenance"
    );
    assert_eq!(
        get_status(&client, &gateway.https_url("/healthz")).await,
        200
    );
    let metrics = gateway.metrics().await;
    assert_eq!(sample(&metrics, "aragora_maintenance_mode"), Some(1.0));
    gateway.admin_post("/api/system/maintenance/disable").await;
    assert_eq!(get_status(&client, &url).await, 200);
}

async fn each_client_gets_its_limit_with_headers_and_a_spoofed_forwarded_for_is_ignored() {
    let (upstream, gateway) = gateway_with_echo(&[("ARAGORA_RATE_LIMIT", "5".into())]).await;
    let client = gateway.client();
    let url = gateway.https_url("/api/debates");
    for expected_remaining in (0..5).rev() {
        // A different X-Forwarded-For each time: from an untrusted peer it changes nothing.
        let spoof = format!("198.51.100.{expected_remaining}");
        let response = client
            .get(&url)
            .header("x-forwarded-for", spoof)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["ratelimit-limit"], "5");
        assert_eq!(
            response.headers()["ratelimit-remaining"],
            expected_remaining.to_string().as_str()
        );
        assert!(response.headers().contains_key("ratelimit-reset"));
    }
    let refused = client
        .get(&url)
        .header("x-forwarded-for", "198.51.100.99")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "12", "60 s / 5 requests");
    assert_eq!(refused.headers()["ratelimit-remaining"], "0");
    let body = error_naming(refused, "ARAGORA_RATE_LIMIT").await;
    assert_eq!(body["error"]["code"], "rate_limited");
    assert_eq!(
        upstream.served(),
        5,
        "the refused request never reached a replica"
    );
    let metrics = gateway.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            "aragora_rate_limited_total{route=\"/api/debates\"}"
        ),
        Some(1.0)
    );
    // Health endpoints stay answerable for probes.
    assert_eq!(
        get_status(&client, &gateway.https_url("/healthz")).await,
        200
    );
}

async fn behind_a_trusted_proxy_the_forwarded_client_is_limited_not_the_proxy() {
    let (_upstream, gateway) = gateway_with_echo(&[
        ("ARAGORA_RATE_LIMIT", "2".into()),
        ("ARAGORA_TRUSTED_PROXIES", "127.0.0.0/8".into()),
    ])
    .await;
    let client = gateway.client();
    let url = gateway.https_url("/api/debates");
    let status = |from: &'static str| {
        let request = client.get(&url).header("x-forwarded-for", from);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(
        (status("203.0.113.1").await, status("203.0.113.1").await),
        (200, 200)
    );
    assert_eq!(
        status("203.0.113.1").await,
        429,
        "the third request of one client is refused"
    );
    assert_eq!(
        status("203.0.113.2").await,
        200,
        "another client behind the same proxy is not"
    );
}

async fn route_overrides_allow_list_and_the_admin_view_of_rate_limits() {
    let (_upstream, gateway) = gateway_with_echo(&[
        ("ARAGORA_RATE_LIMIT", "100".into()),
        ("ARAGORA_RATE_LIMIT_ROUTES", "POST /api/debates=2".into()),
        ("ARAGORA_RATE_LIMIT_ALLOW", "192.0.2.0/24".into()),
        ("ARAGORA_TRUSTED_PROXIES", "127.0.0.0/8".into()),
    ])
    .await;
    let client = gateway.client();
    let url = gateway.https_url("/api/debates");
    let post = |from: &'static str| {
        let request = client.post(&url).header("x-forwarded-for", from).body("{}");
        async move { request.send().await.unwrap() }
    };
    let first = post("203.0.113.5").await;
    assert_eq!(
        first.headers()["ratelimit-limit"],
        "2",
        "the route's own limit applies"
    );
    assert_eq!(post("203.0.113.5").await.status(), 200);
    assert_eq!(post("203.0.113.5").await.status(), 429);
    let listing = client
        .get(&url)
        .header("x-forwarded-for", "203.0.113.5")
        .send()
        .await
        .unwrap();
    assert_eq!(listing.status(), 200, "other routes keep the default limit");
    assert_eq!(listing.headers()["ratelimit-limit"], "100");
    for _ in 0..5 {
        let allowed = post("192.0.2.7").await;
        assert_eq!(
            allowed.status(),
            200,
            "allow-listed clients are never limited"
        );
        assert!(!allowed.headers().contains_key("ratelimit-limit"));
    }
    let view = gateway.admin_json("/api/system/rate-limits").await;
    assert_eq!(view["default"]["per_minute"], 100);
    assert_eq!(view["routes"][0]["method"], "POST");
    assert_eq!(view["routes"][0]["limit"]["per_minute"], 2);
    assert_eq!(view["top_limited_clients"][0]["client"], "203.0.113.5");
    assert_eq!(view["top_limited_clients"][0]["refused"], 1);
}

/// The JSON error body of `response`; panics unless its message names `setting`.
async fn error_naming(response: reqwest::Response, setting: &str) -> Value {
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"].as_str().unwrap().contains(setting),
        "{body}"
    );
    body
}

fn redis_url(addr: &str) -> String {
    format!("redis://{addr}/0")
}

fn unique_prefix() -> String {
    format!("aragora-test:{}:", uuid::Uuid::new_v4().simple())
}

async fn two_gateways_sharing_redis_admit_the_configured_rate_not_twice_it() {
    let upstream = EchoUpstream::start(true).await;
    let prefix = unique_prefix();
    let env = [
        ("ARAGORA_RATE_LIMIT", "40".to_string()),
        ("ARAGORA_REDIS_URL", redis_url("127.0.0.1:6379")),
        ("ARAGORA_RATE_LIMIT_KEY_PREFIX", prefix),
    ];
    let first = GatewayProcess::start(&[upstream.addr.to_string()], &env).await;
    let second = GatewayProcess::start(&[upstream.addr.to_string()], &env).await;
    for gateway in [&first, &second] {
        gateway.wait_ready_count(1, PATIENCE).await;
    }
    let clients = [
        (first.client(), first.https_url("/api/debates")),
        (second.client(), second.https_url("/api/debates")),
    ];
    let started = Instant::now();
    let mut admitted = 0;
    for i in 0..160 {
        let (client, url) = &clients[i % 2];
        let response = client.get(url).send().await.unwrap();
        match response.status().as_u16() {
            200 => admitted += 1,
            429 => {}
            other => panic!("status {other}: the limit must never cause another error"),
        }
    }
    // 40 at once, plus what 40 per minute refills while the loop ran.
    let refill = (started.elapsed().as_secs_f64() * 40.0 / 60.0).ceil() as usize;
    assert!(
        admitted >= 40 && admitted as f64 <= (40 + refill) as f64 * 1.05,
        "admitted {admitted} of 160 through two gateways; the shared limit is 40 (+{refill} refilled)"
    );
    let view = first.admin_json("/api/system/rate-limits").await;
    assert_eq!(
        (view["shared"].clone(), view["backend"].clone()),
        (Value::Bool(true), Value::from("up"))
    );
}

async fn a_redis_outage_falls_back_without_a_5xx_and_recovers_by_itself() {
    let relay = crate::support::relay::Relay::start("127.0.0.1:6379".parse().unwrap()).await;
    let (_upstream, gateway) = gateway_with_echo(&[
        ("ARAGORA_RATE_LIMIT", "100000".into()),
        ("ARAGORA_REDIS_URL", redis_url(&relay.addr.to_string())),
        ("ARAGORA_RATE_LIMIT_KEY_PREFIX", unique_prefix()),
    ])
    .await;
    let client = gateway.client();
    let url = gateway.https_url("/api/debates");
    let backend = || async {
        let view = gateway.try_admin_json("/api/system/rate-limits").await?;
        view["backend"].as_str().map(str::to_string)
    };
    let wait_backend = |state: &'static str| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            eventually(
                &format!("the Redis backend to be {state}"),
                PATIENCE,
                || async {
                    let status = client.get(&url).send().await.ok()?.status();
                    assert_eq!(status, 200, "requests keep being answered");
                    (backend().await.as_deref() == Some(state)).then_some(())
                },
            )
            .await
        }
    };
    wait_backend("up").await;
    relay.cut();
    wait_backend("down").await;
    let metrics = gateway.metrics().await;
    assert!(sample(&metrics, "aragora_rate_limit_backend_errors_total").unwrap_or(0.0) >= 1.0);
    relay.restore().await;
    wait_backend("up").await;
    assert!(
        gateway.log_text().contains("Redis answers again"),
        "the recovery is logged once"
    );
}

async fn failing_closed_refuses_with_429_not_a_5xx_while_redis_is_away() {
    let (upstream, gateway) = gateway_with_echo(&[
        ("ARAGORA_RATE_LIMIT", "100000".into()),
        ("ARAGORA_REDIS_URL", redis_url("127.0.0.1:1")),
        ("ARAGORA_RATE_LIMIT_FAIL_OPEN", "false".into()),
    ])
    .await;
    let response = gateway
        .client()
        .get(gateway.https_url("/api/debates"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    error_naming(response, "ARAGORA_RATE_LIMIT_FAIL_OPEN").await;
    assert_eq!(upstream.served(), 0);
}

/// One HTTP/1.1 response as read off a raw connection: status, headers (names lowercase), body.
struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads the next response (framed by `Content-Length`) from `stream`, keeping what follows it
/// in `buffer`; None when the connection ends first.
async fn read_response<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    buffer: &mut Vec<u8>,
) -> Option<RawResponse> {
    let read = async {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8(buffer[..end].to_vec()).unwrap();
                let mut lines = head.split("\r\n");
                let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
                let headers: Vec<(String, String)> = lines
                    .filter_map(|line| line.split_once(':'))
                    .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
                    .collect();
                let length: usize = headers
                    .iter()
                    .find(|(n, _)| n == "content-length")
                    .map_or(0, |(_, v)| v.parse().unwrap());
                while buffer.len() < end + 4 + length {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return None,
                        Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                    }
                }
                let body = buffer[end + 4..end + 4 + length].to_vec();
                buffer.drain(..end + 4 + length);
                return Some(RawResponse {
                    status,
                    headers,
                    body,
                });
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(PATIENCE, read)
        .await
        .expect("an answer or the end of the connection")
}

/// Whether the gateway ends `stream` (EOF or reset) before `PATIENCE` runs out.
async fn closed_by_gateway<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> bool {
    let mut rest = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut rest))
        .await
        .is_ok()
}

/// A TLS connection (HTTP/1.1: no ALPN) to the gateway's HTTPS port.
async fn tls_connection(
    gateway: &GatewayProcess,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", gateway.https_port))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    gateway.tls_connector().connect(name, tcp).await.unwrap()
}

/// TLS handshakes the gateway completed, over every protocol version.
async fn handshakes(gateway: &GatewayProcess) -> f64 {
    let metrics = gateway.metrics().await;
    ["TLSv1.3", "TLSv1.2", "other"]
        .iter()
        .filter_map(|version| {
            sample(
                &metrics,
                &format!("aragora_tls_handshakes_total{{version=\"{version}\"}}"),
            )
        })
        .sum()
}

async fn a_client_over_its_limit_gets_its_429s_on_the_connection_it_keeps() {
    let (upstream, gateway) = gateway_with_echo(&[("ARAGORA_RATE_LIMIT", "2".into())]).await;
    let mut tls = tls_connection(&gateway).await;
    let mut buffer = Vec::new();
    let mut statuses = Vec::new();
    for _ in 0..6 {
        tls.write_all(b"GET /api/debates HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
            .await
            .unwrap();
        let response = read_response(&mut tls, &mut buffer)
            .await
            .expect("every answer on the same connection");
        assert_ne!(response.header("connection"), Some("close"));
        statuses.push(response.status);
        if response.status == 429 {
            assert_eq!(response.header("retry-after"), Some("30"), "60 s / 2");
            assert_eq!(response.header("ratelimit-remaining"), Some("0"));
            let body: Value = serde_json::from_slice(&response.body).unwrap();
            assert_eq!(body["error"]["code"], "rate_limited");
        }
    }
    assert_eq!(statuses, [200, 200, 429, 429, 429, 429]);
    // The gateway's own probe answers on it too, and the connection still serves.
    tls.write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let health = read_response(&mut tls, &mut buffer).await.unwrap();
    assert_eq!(health.status, 200);
    assert_eq!(
        upstream.served(),
        2,
        "the refused requests never reached it"
    );
    assert_eq!(handshakes(&gateway).await, 1.0, "one TLS handshake for all");
}

async fn a_refusal_closes_the_connection_when_the_body_is_unread_or_the_head_too_large() {
    let (upstream, gateway) = gateway_with_echo(&[
        ("ARAGORA_GATEWAY_MAX_BODY_BYTES", "2048".into()),
        ("ARAGORA_GATEWAY_MAX_HEADER_BYTES", "4096".into()),
        ("ARAGORA_RATE_LIMIT", "1".into()),
        // Each part below is another client (X-Forwarded-For), with a limit of its own.
        ("ARAGORA_TRUSTED_PROXIES", "127.0.0.0/8".into()),
    ])
    .await;
    // A declared body over the limit: 413 before the body is read, then the connection ends
    // (not drained: the client may never send it).
    let mut tls = tls_connection(&gateway).await;
    let mut buffer = Vec::new();
    tls.write_all(b"POST /api/debates HTTP/1.1\r\nhost: x\r\nx-forwarded-for: 203.0.113.1\r\ncontent-length: 1000000\r\n\r\n")
        .await
        .unwrap();
    let refused = read_response(&mut tls, &mut buffer).await.unwrap();
    assert_eq!(refused.status, 413);
    assert_eq!(refused.header("connection"), Some("close"));
    assert!(closed_by_gateway(&mut tls).await, "closed after the 413");

    // A head over the limit is the client misbehaving: closed although nothing is unread.
    let mut tls = tls_connection(&gateway).await;
    let padding = "p".repeat(8000);
    let request = format!("GET /api/debates HTTP/1.1\r\nhost: x\r\nx-forwarded-for: 203.0.113.2\r\nx-padding: {padding}\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let refused = read_response(&mut tls, &mut buffer).await.unwrap();
    assert_eq!(refused.status, 431);
    assert_eq!(refused.header("connection"), Some("close"));
    assert!(closed_by_gateway(&mut tls).await, "closed after the 431");

    // Over the rate limit with a body the gateway did not read: 429 and closed; without a
    // body the same client keeps its connection.
    let mut tls = tls_connection(&gateway).await;
    tls.write_all(b"GET /api/debates HTTP/1.1\r\nhost: x\r\nx-forwarded-for: 203.0.113.3\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(
        read_response(&mut tls, &mut buffer).await.unwrap().status,
        200
    );
    tls.write_all(b"GET /api/debates HTTP/1.1\r\nhost: x\r\nx-forwarded-for: 203.0.113.3\r\n\r\n")
        .await
        .unwrap();
    let refused = read_response(&mut tls, &mut buffer).await.unwrap();
    assert_eq!(refused.status, 429);
    assert_ne!(refused.header("connection"), Some("close"));
    tls.write_all(b"POST /api/debates HTTP/1.1\r\nhost: x\r\nx-forwarded-for: 203.0.113.3\r\ncontent-length: 2\r\n\r\n")
        .await
        .unwrap();
    let refused = read_response(&mut tls, &mut buffer).await.unwrap();
    assert_eq!(refused.status, 429);
    assert_eq!(refused.header("connection"), Some("close"));
    assert!(
        closed_by_gateway(&mut tls).await,
        "closed: its body is unread"
    );
    assert_eq!(upstream.served(), 1);
}

async fn over_http2_a_limited_client_keeps_its_one_connection() {
    let (_upstream, gateway) = gateway_with_echo(&[("ARAGORA_RATE_LIMIT", "1".into())]).await;
    let client = gateway.client();
    let url = gateway.https_url("/api/debates");
    let before = handshakes(&gateway).await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let response = client.get(&url).send().await.unwrap();
        assert_eq!(response.version(), reqwest::Version::HTTP_2);
        statuses.push(response.status().as_u16());
        if response.status() == 429 {
            assert_eq!(response.headers()["retry-after"], "60");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["code"], "rate_limited");
        }
    }
    // A refused POST with an unread body ends its stream, not the connection.
    let posted = client.post(&url).body("{}").send().await.unwrap();
    assert_eq!(posted.status(), 429);
    assert_eq!(client.get(&url).send().await.unwrap().status(), 429);
    assert_eq!(statuses, [200, 429, 429, 429]);
    assert_eq!(handshakes(&gateway).await - before, 1.0, "one connection");
}
