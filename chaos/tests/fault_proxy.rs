//! The fault proxy over real sockets: an echo server behind it, each fault observed the way a
//! client of the proxied service would notice it (slower answers, resets, refusals, silence),
//! and the HTTP API that adds and removes faults at run time.

use aragora_chaos::link_faults::{LinkFaultKind, LinkFaultSpec};
use aragora_chaos::proxy::{FaultProxy, ProxySpec};
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Sends `request` and its JSON answer; panics when no answer came or it is not JSON.
async fn fetch_json(request: reqwest::RequestBuilder) -> serde_json::Value {
    request.send().await.unwrap().json().await.unwrap()
}

/// A TCP echo server on a free port.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 64 * 1024];
                while let Ok(n) = socket.read(&mut buffer).await {
                    if n == 0 || socket.write_all(&buffer[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    address
}

async fn proxy_to(upstream: SocketAddr) -> FaultProxy {
    FaultProxy::start(
        ProxySpec {
            name: "echo".into(),
            listen: "127.0.0.1:0".parse().unwrap(),
            upstream: upstream.to_string(),
        },
        None,
    )
    .await
    .unwrap()
}

fn fault(yaml: &str) -> LinkFaultSpec {
    serde_yaml::from_str(yaml).unwrap()
}

/// Sends `bytes` and reads them back; returns how long the round trip took.
async fn round_trip(stream: &mut TcpStream, bytes: usize) -> std::io::Result<Duration> {
    let started = Instant::now();
    let message = vec![7u8; bytes];
    stream.write_all(&message).await?;
    let mut back = vec![0u8; bytes];
    stream.read_exact(&mut back).await?;
    assert_eq!(back, message);
    Ok(started.elapsed())
}

/// Polls `check` until it returns Some, or panics after `within`.
async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Round trips on an open connection until one takes a time that `wanted` accepts (a fault
/// reaches open connections within the supervisor's tick).
async fn round_trips_until(stream: &mut TcpStream, wanted: impl Fn(Duration) -> bool) -> Duration {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let took = round_trip(stream, 100).await.unwrap();
        if wanted(took) {
            return took;
        }
        assert!(
            Instant::now() < deadline,
            "the last round trip took {took:?}"
        );
    }
}

#[tokio::test]
async fn latency_delays_every_answer_by_at_least_the_fault() {
    let proxy = proxy_to(echo_server().await).await;
    let mut stream = TcpStream::connect(proxy.address()).await.unwrap();
    round_trip(&mut stream, 100).await.unwrap();
    let added = proxy
        .add(fault("{kind: latency, latency_ms: 150, jitter_ms: 20}"))
        .unwrap();
    let slow = round_trips_until(&mut stream, |took| took >= Duration::from_millis(130)).await;
    assert!(slow >= Duration::from_millis(130), "{slow:?}");
    assert!(proxy.remove(&added.id));
    round_trips_until(&mut stream, |took| took < Duration::from_millis(100)).await;
    let status = proxy.status();
    assert!(status.faults.is_empty());
    assert!(
        status.bytes_upstream >= 300 && status.bytes_downstream >= 300,
        "{status:?}"
    );
}

#[tokio::test]
async fn bandwidth_limits_how_fast_bytes_come_back() {
    let proxy = proxy_to(echo_server().await).await;
    proxy
        .add(fault("{kind: bandwidth, rate_kib_per_second: 64}"))
        .unwrap();
    let mut stream = eventually("a connection", Duration::from_secs(5), || async {
        TcpStream::connect(proxy.address()).await.ok()
    })
    .await;
    // 32 KiB at 64 KiB/s: at least half a second.
    let took = round_trip(&mut stream, 32 * 1024).await.unwrap();
    assert!(took >= Duration::from_millis(450), "{took:?}");
}

#[tokio::test]
async fn reset_cuts_open_connections_and_new_ones() {
    let proxy = proxy_to(echo_server().await).await;
    let mut open = TcpStream::connect(proxy.address()).await.unwrap();
    round_trip(&mut open, 10).await.unwrap();
    proxy.add(fault("{kind: reset}")).unwrap();
    let mut buffer = [0u8; 16];
    let error = tokio::time::timeout(Duration::from_secs(5), open.read(&mut buffer))
        .await
        .expect("the open connection is cut at once")
        .expect_err("a reset, not an orderly close");
    assert_eq!(error.kind(), ErrorKind::ConnectionReset, "{error}");
    // A new connection is accepted and cut: the client sees a reset, not an answer.
    let mut fresh = TcpStream::connect(proxy.address()).await.unwrap();
    let _ = fresh.write_all(b"hello").await;
    let read = tokio::time::timeout(Duration::from_secs(5), fresh.read(&mut buffer))
        .await
        .unwrap();
    assert!(matches!(read, Err(_) | Ok(0)), "{read:?}");
}

#[tokio::test]
async fn refuse_closes_the_listener_until_the_fault_is_removed() {
    let proxy = proxy_to(echo_server().await).await;
    let added = proxy.add(fault("{kind: refuse}")).unwrap();
    let address = proxy.address();
    eventually(
        "connections to be refused",
        Duration::from_secs(5),
        || async {
            match TcpStream::connect(address).await {
                Err(err) if err.kind() == ErrorKind::ConnectionRefused => Some(()),
                _ => None,
            }
        },
    )
    .await;
    proxy.remove(&added.id);
    let mut stream = eventually(
        "the listener to come back",
        Duration::from_secs(5),
        || async { TcpStream::connect(address).await.ok() },
    )
    .await;
    round_trip(&mut stream, 10).await.unwrap();
}

#[tokio::test]
async fn a_blackhole_swallows_data_and_closes_after_its_timeout() {
    let proxy = proxy_to(echo_server().await).await;
    proxy
        .add(fault("{kind: blackhole, timeout_ms: 500, direction: both}"))
        .unwrap();
    let mut stream = eventually("a connection", Duration::from_secs(5), || async {
        TcpStream::connect(proxy.address()).await.ok()
    })
    .await;
    let started = Instant::now();
    stream.write_all(b"anyone there?").await.unwrap();
    let mut buffer = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
        .await
        .expect("closed after the timeout");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "no data comes back: {read:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_fault_with_a_window_starts_late_ends_on_time_and_expires() {
    let proxy = proxy_to(echo_server().await).await;
    let mut spec = LinkFaultSpec::new(LinkFaultKind::Refuse);
    spec.start_after_seconds = Some(0.5);
    spec.duration_seconds = Some(1.0);
    proxy.add(spec).unwrap();
    let address = proxy.address();
    // Before the window: served.
    let mut early = TcpStream::connect(address).await.unwrap();
    round_trip(&mut early, 10).await.unwrap();
    eventually("the window to open", Duration::from_secs(5), || async {
        TcpStream::connect(address).await.is_err().then_some(())
    })
    .await;
    eventually("the window to close", Duration::from_secs(5), || async {
        TcpStream::connect(address).await.ok()
    })
    .await;
    eventually("the fault to expire", Duration::from_secs(5), || async {
        proxy.status().faults.is_empty().then_some(())
    })
    .await;
}

const ADMIN_TOKEN: &str = "proxy-api-admin-token";

fn admin_token_auth() -> aragora_auth::Authenticator {
    let config = aragora_auth::AuthConfig {
        api_token: Some(ADMIN_TOKEN.into()),
        jwt_secret: Some("proxy-api-jwt-secret-0123456789abcdef".into()),
        ..aragora_auth::AuthConfig::default()
    };
    aragora_auth::Authenticator::new(config, None)
}

/// A client sending `token` as its bearer credential on every request.
fn admin_client(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let value = format!("Bearer {token}").parse().unwrap();
    headers.insert(reqwest::header::AUTHORIZATION, value);
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

#[tokio::test]
async fn the_api_is_for_admins_but_its_scrape_and_probe_are_open() {
    let proxy = proxy_to(echo_server().await).await;
    let app = aragora_chaos::proxy_api::router(
        std::sync::Arc::new(aragora_chaos::proxy_api::Proxies {
            proxies: vec![proxy],
            registry: prometheus::Registry::new(),
        }),
        admin_token_auth(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let far = aragora_auth::unix_now() + 3600;
    let loop_admin = aragora_auth::mint_loop_token(ADMIN_TOKEN, "admin", far);
    let share_link = aragora_auth::mint_loop_token(ADMIN_TOKEN, "debate-1", far);

    let fault = serde_json::json!({"kind": "latency", "latency_ms": 10, "duration_seconds": 60});
    for client in [
        reqwest::Client::new(),
        admin_client("wrong"),
        admin_client("admin:1:00"),
    ] {
        for request in [
            client.get(format!("{api}/proxies")),
            client
                .post(format!("{api}/proxies/echo/faults"))
                .json(&fault),
            client.delete(format!("{api}/proxies/echo/faults")),
        ] {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 401);
            assert_eq!(
                response.headers()["www-authenticate"],
                "Bearer error=\"invalid_token\""
            );
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(body["error"]["code"], "unauthorized", "{body}");
        }
    }
    let forbidden = admin_client(&share_link)
        .get(format!("{api}/proxies"))
        .send()
        .await
        .unwrap();
    assert_eq!(forbidden.status(), 403);
    for token in [ADMIN_TOKEN, loop_admin.as_str()] {
        let listed = admin_client(token)
            .get(format!("{api}/proxies"))
            .send()
            .await
            .unwrap();
        assert_eq!(listed.status(), 200);
    }
    for path in ["/metrics", "/healthz"] {
        let open = reqwest::get(format!("{api}{path}")).await.unwrap();
        assert_eq!(open.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn the_api_adds_lists_and_removes_faults_and_explains_bad_input() {
    let proxy = proxy_to(echo_server().await).await;
    let registry = prometheus::Registry::new();
    let app = aragora_chaos::proxy_api::router(
        std::sync::Arc::new(aragora_chaos::proxy_api::Proxies {
            proxies: vec![proxy],
            registry,
        }),
        admin_token_auth(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = admin_client(ADMIN_TOKEN);

    let added = client
        .post(format!("{api}/proxies/echo/faults"))
        .json(&serde_json::json!({"kind": "latency", "latency_ms": 100, "duration_seconds": 60}))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), 201);
    let added: serde_json::Value = added.json().await.unwrap();
    let id = added["id"].as_str().unwrap().to_string();
    assert_eq!(added["kind"], "latency");

    let listed = fetch_json(client.get(format!("{api}/proxies"))).await;
    assert_eq!(listed["proxies"][0]["faults"][0]["id"], id.as_str());

    let unknown_kind = client
        .post(format!("{api}/proxies/echo/faults"))
        .json(&serde_json::json!({"kind": "slow"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown_kind.status(), 422);
    let body: serde_json::Value = unknown_kind.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("blackhole"), "{message}");

    let incomplete = client
        .post(format!("{api}/proxies/echo/faults"))
        .json(&serde_json::json!({"kind": "latency"}))
        .send()
        .await
        .unwrap();
    assert_eq!(incomplete.status(), 422);
    let body: serde_json::Value = incomplete.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("latency_ms"),
        "{body}"
    );

    let no_proxy = client
        .post(format!("{api}/proxies/redis/faults"))
        .json(&serde_json::json!({"kind": "reset"}))
        .send()
        .await
        .unwrap();
    assert_eq!(no_proxy.status(), 404);
    let body: serde_json::Value = no_proxy.json().await.unwrap();
    assert!(
        body["error"]["message"].as_str().unwrap().contains("echo"),
        "{body}"
    );

    let removed = client
        .delete(format!("{api}/proxies/echo/faults/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 204);
    let again = client
        .delete(format!("{api}/proxies/echo/faults/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);

    // Every refusal carries the envelope, the router's own 404 and 405 included.
    let nowhere = client.get(format!("{api}/toxics")).send().await.unwrap();
    assert_eq!(nowhere.status(), 404);
    let body: serde_json::Value = nowhere.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found", "{body}");
    let wrong_method = client
        .put(format!("{api}/proxies/echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status(), 405);
    let body: serde_json::Value = wrong_method.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");
}
