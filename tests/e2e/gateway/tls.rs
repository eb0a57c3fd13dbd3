//! The gateway's TLS edge: the HTTP→HTTPS redirect, h1 and h2 with HSTS, old TLS refused,
//! SIGHUP swapping the certificate (and upstreams) without dropping connections, the edge's own
//! `Server` and security headers, and a testssl.sh scan.

use super::*;

on_both_engines!(
    http_redirects_https_serves_h1_and_h2_with_hsts_and_tls_1_1_is_refused,
    sighup_swaps_certificate_and_upstreams_without_dropping_connections_and_refuses_bad_config,
    the_edge_replaces_the_replica_banner_and_sets_security_headers_per_route,
);

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

fn gateway_toml(upstream: &str, cert: &std::path::Path, key: &std::path::Path) -> String {
    format!(
        "upstreams = [\"{upstream}\"]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
        cert.display(),
        key.display()
    )
}

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
    let body = fetch_json(established.get(&url)).await;
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

/// The header `name` of `response`, as text ("" when absent).
fn header_of<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

async fn the_edge_replaces_the_replica_banner_and_sets_security_headers_per_route() {
    let (_upstream, gateway) = gateway_with_echo(&[
        ("ARAGORA_SERVER_HEADER", "aragora".into()),
        (
            "ARAGORA_SECURITY_HEADER_ROUTES",
            "unmatched X-Frame-Options: SAMEORIGIN,unmatched Content-Security-Policy:,/api/debates Cache-Control: no-store".into(),
        ),
        ("ARAGORA_GATEWAY_MAX_BODY_BYTES", "1024".into()),
    ])
    .await;
    let client = gateway.client();
    // The echo replica answers with `Server: echo-replica/1.0` and `X-Frame-Options: ALLOWALL`.
    let proxied = client
        .get(gateway.https_url("/api/debates"))
        .send()
        .await
        .unwrap();
    assert_eq!(proxied.status(), 200);
    for (name, value) in [
        ("server", "aragora"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("x-frame-options", "DENY"),
        ("content-security-policy", "frame-ancestors 'none'"),
        ("cache-control", "no-store"),
    ] {
        assert_eq!(
            header_of(&proxied, name),
            value,
            "{name} on a proxied answer"
        );
    }
    assert_eq!(proxied.headers().get_all("server").iter().count(), 1);
    // A route's own changes: framing allowed from the same origin, no CSP.
    let other = client
        .get(gateway.https_url("/elsewhere"))
        .send()
        .await
        .unwrap();
    assert_eq!(header_of(&other, "x-frame-options"), "SAMEORIGIN");
    assert!(!other.headers().contains_key("content-security-policy"));
    assert!(!other.headers().contains_key("cache-control"));
    // The gateway's own answers (a refusal, a probe) carry them too.
    let refused = client
        .post(gateway.https_url("/api/debates"))
        .body(vec![b'x'; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 413);
    let probe = client
        .get(gateway.https_url("/readyz"))
        .send()
        .await
        .unwrap();
    for answer in [&refused, &probe] {
        assert_eq!(header_of(answer, "server"), "aragora");
        assert_eq!(header_of(answer, "x-content-type-options"), "nosniff");
        assert!(answer.headers().contains_key("strict-transport-security"));
    }
    assert_eq!(header_of(&refused, "cache-control"), "no-store");

    // A header another setting owns is refused at start, by name.
    let output = crate::support::aragora_command()
        .args(["gateway", "--upstream", "127.0.0.1:9"])
        .env("ARAGORA_SECURITY_HEADERS", "Content-Length: 5")
        .env("ARAGORA_SECURITY_HEADER_ROUTES", "/nowhere X-A: b")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(78), "{said}");
    assert!(
        said.contains("ARAGORA_SECURITY_HEADERS") && said.contains("set by message framing"),
        "{said}"
    );
    assert!(
        said.contains("ARAGORA_SECURITY_HEADER_ROUTES") && said.contains("not a route template"),
        "{said}"
    );
}

/// One finding of a testssl.sh JSON report (`--jsonfile`: a flat list), by id: (severity,
/// finding).
fn finding(report: &Value, id: &str) -> (String, String) {
    report
        .as_array()
        .expect("a list of findings")
        .iter()
        .find(|item| item["id"] == id)
        .map(|item| {
            (
                item["severity"].as_str().unwrap_or("").to_string(),
                item["finding"].as_str().unwrap_or("").to_string(),
            )
        })
        .unwrap_or_else(|| panic!("testssl reported no {id}"))
}

/// testssl.sh's checks of the HTTPS listener (an ephemeral port, a certificate of the test's
/// own CA naming the CA's running OCSP responder), only these: protocols (-p), cipher categories (-s), forward secrecy (-f),
/// HTTP headers (-h), renegotiation (-R) and server defaults for OCSP stapling (-S). About
/// 30 s, most of it testssl's own start and its handshakes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn testssl_finds_modern_tls_forward_secrecy_hsts_ocsp_stapling_and_no_renegotiation_or_banner(
) {
    let pki = crate::support::ocsp::OcspPki::start();
    let (_upstream, gateway) = super::ocsp::gateway_for(&pki, &[]).await;
    // The scan's one look at stapling must find the staple there.
    let port = gateway.https_port;
    eventually("the first staple", PATIENCE, || async move {
        (crate::support::ocsp::stapled_status(port).as_deref() == Some("good")).then_some(())
    })
    .await;
    let report = gateway.dir.path().join("testssl.json");
    let started = Instant::now();
    let run = tokio::process::Command::new("testssl")
        .args([
            "--quiet",
            "--color",
            "0",
            "--warnings",
            "off",
            "--ip",
            "one",
        ])
        .args(["--nodns", "min", "-p", "-s", "-f", "-h", "-R", "-S"])
        .arg("--jsonfile")
        .arg(&report)
        .arg(format!("https://127.0.0.1:{}/", gateway.https_port))
        .stdin(std::process::Stdio::null())
        .output();
    let output = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("testssl within 3 minutes")
        .expect("testssl runs (scripts/setup.sh installs the testssl.sh package)");
    let text = String::from_utf8_lossy(&output.stdout);
    let report: Value = serde_json::from_slice(&std::fs::read(&report).unwrap())
        .unwrap_or_else(|err| panic!("testssl's JSON ({err}); it said:\n{text}"));
    println!("testssl took {:?}", started.elapsed());
    let said = |id: &str| finding(&report, id);
    for old in ["SSLv2", "SSLv3", "TLS1", "TLS1_1"] {
        assert_eq!(said(old).1, "not offered", "{old}");
    }
    assert_eq!(said("TLS1_2").1, "offered");
    assert!(
        said("TLS1_3").1.starts_with("offered"),
        "{:?}",
        said("TLS1_3")
    );
    // NULL, anonymous, export, LOW, 3DES/IDEA, and the obsolete CBC suites (`AVERAGE`).
    for weak in ["NULL", "aNULL", "EXPORT", "LOW", "3DES_IDEA", "AVERAGE"] {
        assert_eq!(
            said(&format!("cipherlist_{weak}")).1,
            "not offered",
            "{weak}"
        );
    }
    assert_eq!(said("PFS"), ("OK".into(), "offered".into()));
    assert_eq!(said("HSTS_time").0, "OK", "{:?}", said("HSTS_time"));
    assert!(
        said("banner_server").1.starts_with("No Server banner"),
        "{:?}",
        said("banner_server")
    );
    assert_eq!(said("X-Frame-Options").1, "DENY");
    assert_eq!(said("X-Content-Type-Options").1, "nosniff");
    assert_eq!(said("Content-Security-Policy").1, "frame-ancestors 'none'");
    assert_eq!(said("Referrer-Policy").1, "no-referrer");
    assert_eq!(said("secure_renego").0, "OK");
    assert_eq!(
        said("secure_client_renego").0,
        "OK",
        "{:?}",
        said("secure_client_renego")
    );
    // The certificate names its CA's responder, and the gateway staples its answer.
    assert_eq!(
        said("cert_ocspURL").1,
        format!("http://127.0.0.1:{}", pki.port)
    );
    assert_eq!(said("OCSP_stapling"), ("OK".into(), "offered".into()));
}
