//! The edge gateway end to end: TLS, redirects, readiness gating, limits, maintenance, and
//! what happens to traffic when replicas die, restart, or the gateway itself drains.

use crate::support::echo::EchoUpstream;
use crate::support::{eventually, sample, Engine, EngineOptions, GatewayProcess};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PATIENCE: Duration = Duration::from_secs(30);

/// A gateway (with `env`) in front of one ready echo replica, routing to it.
async fn gateway_with_echo(env: &[(&str, String)]) -> (EchoUpstream, GatewayProcess) {
    let upstream = EchoUpstream::start(true).await;
    let gateway = GatewayProcess::start(&[upstream.addr.to_string()], env).await;
    gateway.wait_ready_count(1, PATIENCE).await;
    (upstream, gateway)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_redirects_https_serves_h1_and_h2_with_hsts_and_tls_1_1_is_refused() {
    let upstream = EchoUpstream::start(true).await;
    let acme = tempfile::tempdir().unwrap();
    std::fs::write(acme.path().join("tok_EN-1"), "challenge-response").unwrap();
    let gateway = GatewayProcess::start(
        &[upstream.addr.to_string()],
        &[(
            "ARAGORA_ACME_CHALLENGE_DIR",
            acme.path().display().to_string(),
        )],
    )
    .await;
    gateway.wait_ready_count(1, PATIENCE).await;
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let http = |path: &str| format!("http://127.0.0.1:{}{path}", gateway.http_port);

    let redirect = plain
        .get(http("/api/debates?limit=5"))
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.status(), 308);
    assert_eq!(
        redirect.headers()["location"],
        format!(
            "https://127.0.0.1:{}/api/debates?limit=5",
            gateway.https_port
        )
        .as_str()
    );
    assert_eq!(
        plain.get(http("/healthz")).send().await.unwrap().status(),
        200,
        "/healthz is not redirected"
    );
    let challenge = plain
        .get(http("/.well-known/acme-challenge/tok_EN-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        challenge.status(),
        200,
        "ACME challenges are served over plain HTTP"
    );
    assert_eq!(challenge.text().await.unwrap(), "challenge-response");
    let traversal = plain
        .get(http("/.well-known/acme-challenge/..%2F..%2Fetc%2Fpasswd"))
        .send()
        .await
        .unwrap();
    assert_eq!(traversal.status(), 404);

    for (client, version) in [
        (
            gateway.client_builder().http1_only().build().unwrap(),
            reqwest::Version::HTTP_11,
        ),
        (gateway.client(), reqwest::Version::HTTP_2),
    ] {
        let response = client
            .get(gateway.https_url("/api/echo"))
            .header("x-request-id", "client-chosen-id")
            .header(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.version(), version, "ALPN negotiates {version:?}");
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["strict-transport-security"],
            "max-age=31536000; includeSubDomains"
        );
        assert_eq!(response.headers()["x-request-id"], "client-chosen-id");
        let echoed: Value = response.json().await.unwrap();
        let headers = &echoed["headers"];
        assert_eq!(
            headers["x-request-id"], "client-chosen-id",
            "the request id reaches the engine"
        );
        let traceparent = headers["traceparent"].as_str().unwrap();
        assert!(
            traceparent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "trace continued: {traceparent}"
        );
        assert!(
            !traceparent.contains("00f067aa0ba902b7"),
            "with the gateway's own span: {traceparent}"
        );
        assert_eq!(headers["x-forwarded-proto"], "https");
        assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
    }

    let handshake = |version: &'static str| {
        let port = gateway.https_port;
        std::process::Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &format!("127.0.0.1:{port}"),
                version,
            ])
            // Let the client offer old versions, so a refusal is the server's.
            .args(["-cipher", "DEFAULT:@SECLEVEL=0"])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("openssl s_client")
    };
    let modern = handshake("-tls1_2");
    assert!(
        String::from_utf8_lossy(&modern.stdout).contains("TLSv1.2"),
        "TLS 1.2 is accepted"
    );
    let old = handshake("-tls1_1");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&old.stdout),
        String::from_utf8_lossy(&old.stderr)
    );
    assert!(!old.status.success(), "TLS 1.1 must be refused: {said}");
    assert!(
        said.contains("Cipher is (NONE)") && said.contains("alert"),
        "the server refused the handshake: {said}"
    );
    let failures = eventually("the refused handshake to be counted", PATIENCE, || async {
        let metrics = gateway.metrics().await;
        sample(&metrics, "aragora_tls_handshake_failures_total").filter(|n| *n >= 1.0)
    })
    .await;
    assert!(failures >= 1.0);
    let metrics = gateway.metrics().await;
    let tls12 = sample(
        &metrics,
        "aragora_tls_handshakes_total{version=\"TLSv1.2\"}",
    );
    assert!(
        tls12 >= Some(1.0),
        "the TLS 1.2 handshake is counted: {tls12:?}"
    );

    // A WebSocket upgrade the replica does not accept is counted as a failed upgrade.
    let refused_upgrade = gateway
        .client_builder()
        .http1_only()
        .build()
        .unwrap()
        .get(gateway.https_url("/ws?debate_id=x"))
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(
        refused_upgrade.status(),
        200,
        "the echo replica answers instead of switching"
    );
    let upgrade_failures = eventually("the failed upgrade to be counted", PATIENCE, || async {
        sample(
            &gateway.metrics().await,
            "aragora_websocket_upgrade_failures_total{route=\"/ws\"}",
        )
    })
    .await;
    assert_eq!(upgrade_failures, 1.0);

    // One JSON access line per request, with the request id and the caller's trace.
    let line = eventually("the access log line", PATIENCE, || async {
        gateway
            .log_text()
            .lines()
            .find(|l| l.contains("\"target\":\"access\"") && l.contains("client-chosen-id"))
            .map(str::to_string)
    })
    .await;
    let line: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(line["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(
        (line["status"].as_u64(), line["route"].as_str()),
        (Some(200), Some("unmatched"))
    );
    assert_eq!(line["upstream"], upstream.addr.to_string());

    let metrics = gateway.metrics().await;
    assert!(sample(&metrics, "aragora_tls_cert_expiry_timestamp_seconds").unwrap() > 1.7e9);
    assert!(
        sample(
            &metrics,
            "aragora_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"200\"}"
        )
        .unwrap()
            >= 2.0
    );
    assert_eq!(
        sample(
            &metrics,
            &format!("aragora_upstream_ready{{upstream=\"{}\"}}", upstream.addr)
        ),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_ready_replicas_get_traffic_and_none_ready_answers_503_at_once() {
    let ready = EchoUpstream::start(true).await;
    let unready = EchoUpstream::start(false).await;
    let gateway =
        GatewayProcess::start(&[ready.addr.to_string(), unready.addr.to_string()], &[]).await;
    gateway.wait_ready_count(1, PATIENCE).await;
    let client = gateway.client();
    for _ in 0..40 {
        let response = client
            .get(gateway.https_url("/api/debates"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_eq!(ready.served(), 40);
    assert_eq!(
        unready.served(),
        0,
        "a replica that is not ready never receives a request"
    );

    ready.set_ready(false);
    gateway.wait_ready_count(0, PATIENCE).await;
    let started = Instant::now();
    let response = client
        .get(gateway.https_url("/api/debates"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "no hang: {:?}",
        started.elapsed()
    );
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "no_ready_upstream");
    let readyz = client
        .get(gateway.https_url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        readyz.status(),
        503,
        "the gateway is not ready without a ready replica"
    );

    // A replica never ready before serves from its first passing check, like any new one.
    unready.set_ready(true);
    let view = gateway.wait_ready_count(1, PATIENCE).await;
    let replica = |view: &Value, addr: std::net::SocketAddr| {
        view["upstreams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["addr"] == addr.to_string())
            .unwrap()
            .clone()
    };
    assert_eq!(replica(&view, unready.addr)["ready"], true);
    let response = client
        .get(gateway.https_url("/api/debates"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // One taken out of rotation needs two passing checks in a row to come back.
    ready.set_ready(true);
    let view = gateway.wait_ready_count(2, PATIENCE).await;
    let back = replica(&view, ready.addr);
    assert!(back["consecutive_ok"].as_u64().unwrap() >= 2, "{back}");
    assert_eq!(unready.served(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_hanging_up_mid_request_gets_a_json_502_and_a_post_is_never_replayed() {
    let replicas = [
        EchoUpstream::start(true).await,
        EchoUpstream::start(true).await,
    ];
    let names: Vec<String> = replicas.iter().map(|r| r.addr.to_string()).collect();
    let gateway = GatewayProcess::start(&names, &[]).await;
    gateway.wait_ready_count(2, PATIENCE).await;
    let client = gateway.client();
    let served = || replicas.iter().map(EchoUpstream::served).sum::<usize>();
    for (method, attempt) in [("GET", 1), ("POST", 2), ("GET", 3), ("POST", 4)] {
        let response = client
            .request(method.parse().unwrap(), gateway.https_url("/hang-up"))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 502, "{method}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "bad_gateway", "{method}: {body}");
        assert_eq!(
            served(),
            attempt,
            "{method}: the request reached a replica once, never replayed"
        );
    }
    let inflight = eventually(
        "the gateway's in-flight count back to 0",
        PATIENCE,
        || async {
            let metrics = gateway.metrics().await;
            (sample(&metrics, "aragora_gateway_inflight_requests") == Some(0.0)).then_some(())
        },
    )
    .await;
    assert_eq!(inflight, ());
    let fine = client.get(gateway.https_url("/api/debates")).send().await;
    assert_eq!(fine.unwrap().status(), 200, "the gateway keeps serving");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
    let body: Value = declared.json().await.unwrap();
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("ARAGORA_GATEWAY_MAX_BODY_BYTES"));
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

    let enable = gateway
        .admin
        .post(gateway.admin_url("/api/system/maintenance/enable"))
        .send()
        .await
        .unwrap();
    assert_eq!(enable.status(), 200);
    let blocked = client.get(&url).send().await.unwrap();
    assert_eq!(blocked.status(), 503);
    assert!(blocked.headers().contains_key("retry-after"));
    assert_eq!(
        blocked.json::<Value>().await.unwrap()["error"]["code"],
        "maintenance"
    );
    assert_eq!(
        client
            .get(gateway.https_url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let metrics = gateway.metrics().await;
    assert_eq!(sample(&metrics, "aragora_maintenance_mode"), Some(1.0));
    gateway
        .admin
        .post(gateway.admin_url("/api/system/maintenance/disable"))
        .send()
        .await
        .unwrap();
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
}

/// Sends GETs from `workers` loops until `stop`; counts successes and failures.
struct Load {
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<String>>>,
}

impl Load {
    fn start(client: reqwest::Client, url: String, workers: usize) -> Self {
        let ok = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..workers)
            .map(|_| {
                let (client, url, ok, failed, stop) = (
                    client.clone(),
                    url.clone(),
                    ok.clone(),
                    failed.clone(),
                    stop.clone(),
                );
                tokio::spawn(async move {
                    let mut errors = Vec::new();
                    while !stop.load(Ordering::SeqCst) {
                        match client.get(&url).send().await {
                            Ok(response) if response.status() == 200 => {
                                let _ = response.bytes().await;
                                ok.fetch_add(1, Ordering::SeqCst);
                            }
                            Ok(response) => {
                                failed.fetch_add(1, Ordering::SeqCst);
                                errors.push(format!(
                                    "{} {}",
                                    response.status(),
                                    response.text().await.unwrap_or_default()
                                ));
                            }
                            Err(err) => {
                                failed.fetch_add(1, Ordering::SeqCst);
                                errors.push(err.to_string());
                            }
                        }
                    }
                    errors
                })
            })
            .collect();
        Self {
            ok,
            failed,
            stop,
            tasks,
        }
    }

    async fn finish(self) -> (usize, usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        let mut errors = Vec::new();
        for task in self.tasks {
            errors.extend(task.await.unwrap());
        }
        (
            self.ok.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst),
            errors,
        )
    }

    async fn wait_for_more(&self, count: usize) {
        let target = self.ok.load(Ordering::SeqCst) + count;
        eventually("load to make progress", PATIENCE, || async {
            (self.ok.load(Ordering::SeqCst) >= target).then_some(())
        })
        .await;
    }
}

/// Three engines on ports they chose, and those ports (a restart takes its predecessor's).
async fn three_engines() -> (Vec<Engine>, Vec<u16>) {
    let mut engines = Vec::new();
    for _ in 0..3 {
        engines.push(Engine::start(EngineOptions::sqlite()).await);
    }
    let ports = engines.iter().map(|engine| engine.api.port()).collect();
    (engines, ports)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replica_leaves_rotation_within_3_s_and_only_its_in_flight_requests_fail() {
    let (mut engines, ports) = three_engines().await;
    let upstreams: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let gateway =
        GatewayProcess::start(&upstreams, &[("ARAGORA_HEALTH_INTERVAL_MS", "1000".into())]).await;
    gateway.wait_ready_count(3, PATIENCE).await;
    let workers = 4;
    let load = Load::start(
        gateway.client(),
        gateway.https_url("/api/debates?limit=5"),
        workers,
    );
    load.wait_for_more(50).await;

    engines[1].signal(libc::SIGKILL);
    let killed_at = Instant::now();
    gateway.wait_ready_count(2, Duration::from_secs(3)).await;
    let took = killed_at.elapsed();
    load.wait_for_more(100).await;
    let (ok, failed, errors) = load.finish().await;
    assert!(took <= Duration::from_secs(3), "taken out after {took:?}");
    assert!(
        failed <= workers,
        "{failed} failures of {ok} (at most the {workers} in flight): {:?}",
        &errors[..errors.len().min(5)]
    );
    let _ = engines[1].wait_exit(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_every_replica_under_load_fails_no_request() {
    let (mut engines, ports) = three_engines().await;
    let upstreams: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let gateway = GatewayProcess::start(&upstreams, &[]).await;
    gateway.wait_ready_count(3, PATIENCE).await;
    let load = Load::start(
        gateway.client(),
        gateway.https_url("/api/debates?limit=5"),
        4,
    );
    load.wait_for_more(30).await;
    for (index, port) in ports.iter().enumerate() {
        engines[index].signal(libc::SIGTERM);
        let status = engines[index].wait_exit(PATIENCE).await;
        assert!(status.success());
        // The restarted replica keeps the old one's data directory (and its clean-up).
        let restart =
            engines[index].restart_options(EngineOptions::sqlite().env("ARAGORA_PORT", port));
        engines[index] = Engine::start(restart).await;
        gateway.wait_ready_count(3, PATIENCE).await;
        load.wait_for_more(30).await;
    }
    let (ok, failed, errors) = load.finish().await;
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests failed, first: {:?}",
        ok + failed,
        &errors[..errors.len().min(5)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_sigterm_under_load_fails_nothing_that_arrived_before_and_exits_promptly() {
    let (_upstream, gateway) = gateway_with_echo(&[
        ("ARAGORA_GATEWAY_DRAIN_DELAY", "1".into()),
        ("ARAGORA_GATEWAY_DRAIN_TIMEOUT", "20".into()),
    ])
    .await;
    let client = gateway.client();
    let load = Load::start(client.clone(), gateway.https_url("/api/echo"), 4);
    load.wait_for_more(50).await;
    let before_signal = load.ok.load(Ordering::SeqCst) + load.failed.load(Ordering::SeqCst);
    gateway.signal(libc::SIGTERM);
    let signalled = Instant::now();
    // Readiness goes false at once, while requests are still served.
    eventually(
        "the gateway to report not ready",
        Duration::from_secs(5),
        || async {
            let response = client.get(gateway.https_url("/readyz")).send().await.ok()?;
            (response.status() == 503).then_some(())
        },
    )
    .await;
    let mut child = gateway;
    let exit = eventually("the gateway to exit", Duration::from_secs(20), || {
        let status = child.child.try_wait().ok().flatten();
        async move { status }
    })
    .await;
    let (ok, _failed, errors) = load.finish().await;
    assert!(exit.success(), "{exit:?}\n{}", child.log_text());
    assert!(
        signalled.elapsed() < Duration::from_secs(10),
        "exited after {:?}, not pingora's 300 s",
        signalled.elapsed()
    );
    assert!(
        ok >= before_signal,
        "requests sent before SIGTERM were answered"
    );
    // After the listeners close, new requests are refused by the OS (they never arrived):
    // those are the only failures allowed.
    for error in &errors {
        assert!(
            error.contains("connect")
                || error.contains("Connection refused")
                || error.contains("error sending request"),
            "a request failed otherwise: {error}"
        );
    }
}

fn gateway_toml(upstream: &str, cert: &std::path::Path, key: &std::path::Path) -> String {
    format!(
        "upstreams = [\"{upstream}\"]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
        cert.display(),
        key.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_swaps_certificate_and_upstreams_without_dropping_connections_and_refuses_bad_config(
) {
    let first = EchoUpstream::start(true).await;
    let second = EchoUpstream::start(true).await;
    let dir = tempfile::tempdir().unwrap();
    let (cert_a, key_a) = aragora_gateway::tls::self_signed(&dir.path().join("a")).unwrap();
    let (cert_b, key_b) = aragora_gateway::tls::self_signed(&dir.path().join("b")).unwrap();
    let file = dir.path().join("gateway.toml");
    std::fs::write(
        &file,
        gateway_toml(&first.addr.to_string(), &cert_a, &key_a),
    )
    .unwrap();
    let gateway = GatewayProcess::start_with_file(&file, &cert_a, &[]).await;
    gateway.wait_ready_count(1, PATIENCE).await;
    let trusting = |pem: &std::path::Path| {
        let root = reqwest::Certificate::from_pem(&std::fs::read(pem).unwrap()).unwrap();
        reqwest::Client::builder()
            .add_root_certificate(root)
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap()
    };
    let url = gateway.https_url("/api/echo");
    let upstream_of = |body: Value| body["upstream"].as_str().unwrap_or_default().to_string();
    // An HTTP/2 client whose one connection was set up under the old certificate.
    let established = trusting(&cert_a);
    let body: Value = established
        .get(&url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(upstream_of(body), first.addr.to_string());

    std::fs::write(
        &file,
        gateway_toml(&second.addr.to_string(), &cert_b, &key_b),
    )
    .unwrap();
    gateway.signal(libc::SIGHUP);
    let fresh = trusting(&cert_b);
    eventually(
        "the new certificate and upstream to take effect",
        PATIENCE,
        || async {
            let body: Value = fresh.get(&url).send().await.ok()?.json().await.ok()?;
            (upstream_of(body) == second.addr.to_string()).then_some(())
        },
    )
    .await;
    let body: Value = established
        .get(&url)
        .send()
        .await
        .expect("the established connection survives")
        .json()
        .await
        .unwrap();
    assert_eq!(upstream_of(body), second.addr.to_string());
    let stale = trusting(&cert_a).get(&url).send().await;
    assert!(stale.is_err(), "new handshakes present the new certificate");

    std::fs::write(
        &file,
        gateway_toml(
            &first.addr.to_string(),
            &dir.path().join("missing.pem"),
            &key_a,
        ),
    )
    .unwrap();
    gateway.signal(libc::SIGHUP);
    eventually("the refusal to be logged", PATIENCE, || async {
        gateway.log_text().contains("reload refused").then_some(())
    })
    .await;
    assert!(
        gateway.log_text().contains("missing.pem"),
        "the reason names the file"
    );
    let body: Value = fresh.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        upstream_of(body),
        second.addr.to_string(),
        "the previous configuration keeps serving"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_otlp_collector_in_the_callers_trace() {
    let collector = crate::support::otlp::OtlpSink::start().await;
    let (_upstream, gateway) = gateway_with_echo(&[
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://{}", collector.addr),
        ),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
    ])
    .await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let response = gateway
        .client()
        .get(gateway.https_url("/api/debates/abc"))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .send()
        .await
        .unwrap();
    let echoed: Value = response.json().await.unwrap();
    let forwarded = echoed["headers"]["traceparent"]
        .as_str()
        .unwrap()
        .to_string();
    let gateway_span = forwarded.split('-').nth(2).unwrap().to_string();
    let bytes = |hex: &str| {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect::<Vec<u8>>()
    };
    eventually("the gateway's span at the collector", PATIENCE, || async {
        let exported = collector.received("/v1/traces", &bytes(trace_id))
            && collector.received("/v1/traces", &bytes(&gateway_span))
            && collector.received("/v1/traces", b"/api/debates/{id}");
        exported.then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aragora_up_serves_debates_over_https_through_the_gateway_and_stops_cleanly() {
    let mut up = crate::support::UpProcess::start(&[]).await;
    let https = up.https;
    let log = up.dir.path().join("up.log");
    let finished = up.run_debate("Does the embedded run work?").await;
    assert!(finished["final_answer"].is_string() || finished["outcome"] == "no_consensus");
    let out = std::fs::read_to_string(up.dir.path().join("up.out")).unwrap();
    assert!(
        out.contains(&format!("https://localhost:{https}")),
        "the banner says where to go: {out}"
    );

    // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
    unsafe {
        libc::kill(up.child.id() as i32, libc::SIGTERM);
    }
    let status = eventually("aragora up to stop", PATIENCE, || {
        let status = up.child.try_wait().ok().flatten();
        async move { status }
    })
    .await;
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("ARAGORA_RATE_LIMIT"));
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
        client
            .get(gateway.https_url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
    let view: Value = gateway
        .admin
        .get(gateway.admin_url("/api/system/rate-limits"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view["default"]["per_minute"], 100);
    assert_eq!(view["routes"][0]["method"], "POST");
    assert_eq!(view["routes"][0]["limit"]["per_minute"], 2);
    assert_eq!(view["top_limited_clients"][0]["client"], "203.0.113.5");
    assert_eq!(view["top_limited_clients"][0]["refused"], 1);
}

fn redis_url(addr: &str) -> String {
    format!("redis://{addr}/0")
}

fn unique_prefix() -> String {
    format!("aragora-test:{}:", uuid::Uuid::new_v4().simple())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
    let view: Value = first
        .admin
        .get(first.admin_url("/api/system/rate-limits"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (view["shared"].clone(), view["backend"].clone()),
        (Value::Bool(true), Value::from("up"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
        let view: Value = gateway
            .admin
            .get(gateway.admin_url("/api/system/rate-limits"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
    let body: Value = response.json().await.unwrap();
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("ARAGORA_RATE_LIMIT_FAIL_OPEN"));
    assert_eq!(upstream.served(), 0);
}

async fn served_by(
    client: &reqwest::Client,
    url: &str,
    cookie: Option<&str>,
) -> (String, Option<String>) {
    let mut request = client.get(url);
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    let set_cookie = response
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_string());
    let body: Value = response.json().await.unwrap();
    (body["upstream"].as_str().unwrap().to_string(), set_cookie)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debates_stick_to_one_replica_clients_to_their_pin_and_removing_a_replica_remaps_its_share()
{
    let upstreams = [
        EchoUpstream::start(true).await,
        EchoUpstream::start(true).await,
        EchoUpstream::start(true).await,
    ];
    let names: Vec<String> = upstreams.iter().map(|u| u.addr.to_string()).collect();
    let gateway = GatewayProcess::start(&names, &[]).await;
    gateway.wait_ready_count(3, PATIENCE).await;
    let client = gateway.client();

    // Every request and watcher of one debate reaches the same replica.
    let debate_url = gateway.https_url("/api/debates/debate-42/messages");
    let (home, _) = served_by(&client, &debate_url, None).await;
    for _ in 0..20 {
        assert_eq!(served_by(&client, &debate_url, None).await.0, home);
        let ws_style = gateway.https_url("/ws?debate_id=debate-42&last_seq=7");
        assert_eq!(served_by(&client, &ws_style, None).await.0, home);
    }

    // A client is pinned by cookie, with the attributes browsers need.
    let (pinned_to, cookie) = served_by(&client, &gateway.https_url("/api/debates"), None).await;
    let cookie = cookie.expect("the first response pins the client");
    for attribute in ["HttpOnly", "Secure", "SameSite=Lax", "Max-Age=1800"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let pair = cookie.split(';').next().unwrap().to_string();
    for _ in 0..20 {
        let (replica, renewed) =
            served_by(&client, &gateway.https_url("/api/debates"), Some(&pair)).await;
        assert_eq!(replica, pinned_to);
        assert!(renewed.is_none(), "a valid pin is not reissued");
    }

    let owners = |ids: std::ops::Range<u32>| {
        let client = client.clone();
        let gateway = &gateway;
        async move {
            let mut owners = Vec::new();
            for id in ids {
                let url = gateway.https_url(&format!("/api/debates/d{id}"));
                owners.push(served_by(&client, &url, None).await.0);
            }
            owners
        }
    };
    let before = owners(0..150).await;
    let distinct: std::collections::BTreeSet<&String> = before.iter().collect();
    assert_eq!(distinct.len(), 3, "debates spread over every replica");

    // Take the pinned client's replica out: the client is re-pinned, debates on the other
    // replicas stay where they are.
    let leaving = upstreams
        .iter()
        .find(|u| u.addr.to_string() == pinned_to)
        .unwrap();
    leaving.set_ready(false);
    gateway.wait_ready_count(2, PATIENCE).await;
    let (moved_to, repinned) =
        served_by(&client, &gateway.https_url("/api/debates"), Some(&pair)).await;
    assert_ne!(moved_to, pinned_to);
    assert!(repinned.is_some(), "the client gets a new pin");
    let after = owners(0..150).await;
    let mut moved = 0;
    for (was, now) in before.iter().zip(&after) {
        if was != now {
            assert_eq!(was, &pinned_to, "only debates of the removed replica move");
            moved += 1;
        }
    }
    let share = moved as f64 / before.len() as f64;
    assert!(
        (0.15..=0.55).contains(&share),
        "{moved} of 150 debates moved ({share:.2}); about 1/3 expected"
    );
}
