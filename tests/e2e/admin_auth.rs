//! Admins only on the gateway's admin listener (its probes and scrape open), and `aragora up`
//! end to end with the admin key it makes on first start.

use crate::support::{
    address, aragora_command, eventually, GatewayProcess, Process, ENGINE_LISTENING,
    GATEWAY_LISTENING,
};
use crate::tokens::token_cli;
use reqwest::StatusCode;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

const API_TOKEN: &str = "admin-auth-test-admin-token-0123456789";
const JWT_SECRET: &str = "admin-auth-test-jwt-secret-0123456789";

fn minted(args: &[&str]) -> String {
    minted_with(JWT_SECRET, args)
}

/// A token `aragora token create ARGS` mints with these secrets (printed as JSON).
fn minted_with(jwt_secret: &str, args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let options = crate::support::EngineOptions::sqlite()
        .env("ARAGORA_API_TOKEN", API_TOKEN)
        .env("ARAGORA_JWT_SECRET", jwt_secret);
    let output = token_cli(&options, dir.path(), args);
    assert!(output.status.success(), "{output:?}");
    let body: Value = serde_json::from_slice(&output.stdout).unwrap();
    body["token"].as_str().unwrap().to_string()
}

async fn admin_call(
    gateway: &GatewayProcess,
    method: reqwest::Method,
    path: &str,
    credential: Option<&str>,
) -> (StatusCode, Option<String>, Value) {
    // A plain client: whatever credential the request carries is the test's choice alone.
    let mut request = reqwest::Client::new().request(method, gateway.admin_url(path));
    if let Some(credential) = credential {
        request = request.bearer_auth(credential);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string());
    let text = response.text().await.unwrap();
    (
        status,
        challenge,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateways_admin_endpoints_need_an_admin_and_its_probes_stay_open() {
    let env = [
        ("ARAGORA_API_TOKEN", API_TOKEN.to_string()),
        ("ARAGORA_JWT_SECRET", JWT_SECRET.to_string()),
    ];
    // No replica: the admin listener does not need one.
    let gateway = GatewayProcess::start(&["127.0.0.1:9".to_string()], &env).await;
    let get = reqwest::Method::GET;
    let post = reqwest::Method::POST;

    for (method, path) in [
        (get.clone(), "/api/system/upstreams"),
        (get.clone(), "/api/system/rate-limits"),
        (get.clone(), "/api/system/maintenance"),
        (post.clone(), "/api/system/maintenance/enable"),
    ] {
        for credential in [None, Some("wrong-token"), Some("admin:1:00")] {
            let (status, challenge, body) =
                admin_call(&gateway, method.clone(), path, credential).await;
            assert_eq!(status, 401, "{method} {path} with {credential:?}: {body}");
            assert_eq!(
                challenge.as_deref(),
                Some("Bearer error=\"invalid_token\""),
                "{path}"
            );
            assert_eq!(body["error"]["code"], "unauthorized", "{body}");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("POST /api/auth/token"),
                "{body}"
            );
        }
    }
    let (_, _, maintenance) = admin_call(
        &gateway,
        get.clone(),
        "/api/system/maintenance",
        Some(API_TOKEN),
    )
    .await;
    assert_eq!(
        maintenance["enabled"], false,
        "a refused enable changed something"
    );

    let loop_admin = minted(&[
        "create", "--loop", "admin", "--ttl", "1h", "--output", "json",
    ]);
    let admin_jwt = minted(&[
        "create", "--jwt", "--role", "admin", "--sub", "ops", "--output", "json",
    ]);
    for credential in [API_TOKEN, loop_admin.as_str(), admin_jwt.as_str()] {
        let (status, _, body) = admin_call(
            &gateway,
            get.clone(),
            "/api/system/upstreams",
            Some(credential),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, _, body) = admin_call(
        &gateway,
        post.clone(),
        "/api/system/maintenance/enable",
        Some(&loop_admin),
    )
    .await;
    assert_eq!(
        (status, &body["enabled"]),
        (StatusCode::OK, &Value::Bool(true)),
        "{body}"
    );

    let reader = minted(&[
        "create", "--jwt", "--role", "reader", "--sub", "r", "--output", "json",
    ]);
    let (status, challenge, body) = admin_call(
        &gateway,
        get.clone(),
        "/api/system/upstreams",
        Some(&reader),
    )
    .await;
    assert_eq!((status, challenge), (StatusCode::FORBIDDEN, None), "{body}");
    assert_eq!(body["error"]["code"], "forbidden", "{body}");

    // Every refusal counted by reason: 4 paths without a credential, 8 with a wrong one (the
    // short "admin:1:00" is no loop token, so it is a wrong admin token), the reader's 403.
    let metrics = gateway.metrics().await;
    for (reason, count) in [("missing", 4.0), ("bad_signature", 8.0), ("forbidden", 1.0)] {
        assert_eq!(
            crate::support::sample(
                &metrics,
                &format!("aragora_auth_failures_total{{reason=\"{reason}\"}}")
            ),
            Some(count),
            "{reason}"
        );
    }

    let (status, _, _) = admin_call(&gateway, get.clone(), "/metrics", None).await;
    assert_eq!(status, 200);
    let (status, _, _) = admin_call(&gateway, get.clone(), "/healthz", None).await;
    assert_eq!(status, 200);
    // Not ready (no replica), but answered without a credential.
    let (status, _, body) = admin_call(&gateway, get, "/readyz", None).await;
    assert!(status == 200 || status == 503, "{status} {body}");
    assert_ne!(body["status"], Value::Null, "{body}");

    let log = gateway.log_text();
    for secret in [
        API_TOKEN,
        loop_admin.as_str(),
        admin_jwt.as_str(),
        "wrong-token",
    ] {
        assert!(!log.contains(secret), "the gateway logged a credential");
    }
}

/// `aragora up` on free ports in `dir`, once its gateway routes to its engine.
async fn start_up(dir: &Path) -> (Process, String, reqwest::Client) {
    let mut command = aragora_command();
    command
        .arg("up")
        .args(["--api-port", "0", "--ws-port", "0"])
        .args(["--https-port", "0", "--http-port", "0", "--admin-port", "0"])
        .env("ARAGORA_DATA_DIR", dir)
        .env("ARAGORA_GATEWAY_HOST", "127.0.0.1")
        .env("ARAGORA_HEALTH_INTERVAL_MS", "200")
        .env("ARAGORA_RATE_LIMIT", "0");
    let run = uuid::Uuid::new_v4().simple();
    let mut process = Process::spawn(
        &mut command,
        &dir.join(format!("up-{run}.log")),
        &dir.join(format!("up-{run}.out")),
    );
    address(&process.announcement(ENGINE_LISTENING), "api");
    let https = address(&process.announcement(GATEWAY_LISTENING), "https").port();
    let cert = std::fs::read(dir.join("tls").join("cert.pem")).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&cert).unwrap())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let base = format!("https://127.0.0.1:{https}");
    eventually(
        "up's gateway to route to its engine",
        Duration::from_secs(60),
        || async {
            let response = client.get(format!("{base}/readyz")).send().await.ok()?;
            (response.status() == 200).then_some(())
        },
    )
    .await;
    (process, base, client)
}

async fn me_through(client: &reqwest::Client, base: &str, key: &str) -> (StatusCode, Value) {
    let response = client
        .get(format!("{base}/api/auth/me"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_prints_its_admin_key_once_and_it_keeps_working_through_the_gateway() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (mut up, base, client) = start_up(dir.path()).await;
    let key = up.announcement("               ara_");
    let key = format!("ara_{}", key.trim());
    let curl = up.announcement("             curl -k ");
    assert!(curl.contains("/api/auth/me"), "{curl}");
    assert!(curl.contains("admin.key"), "{curl}");

    let file = dir.path().join("admin.key");
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), key);
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the key file is readable by others");

    let (status, who) = me_through(&client, &base, &key).await;
    assert_eq!(status, 200, "{who}");
    assert_eq!(who["role"], "admin", "{who}");
    let (status, _) = me_through(&client, &base, "ara_000000000000_00").await;
    assert_eq!(status, 401);

    up.signal(libc::SIGTERM);
    assert!(up.wait_exit(Duration::from_secs(30)).await.success());
    assert!(!up.log_text().contains(&key), "the key reached the log");

    let (mut again, base, client) = start_up(dir.path()).await;
    let said = again.announcement("  Admin key  in ");
    assert!(said.contains("admin.key"), "{said}");
    let (status, who) = me_through(&client, &base, &key).await;
    assert_eq!(
        (status, &who["role"]),
        (StatusCode::OK, &Value::from("admin")),
        "{who}"
    );
    again.signal(libc::SIGTERM);
    assert!(again.wait_exit(Duration::from_secs(30)).await.success());
    let out = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_name().to_string_lossy().ends_with(".out"))
        .map(|entry| std::fs::read_to_string(entry.path()).unwrap())
        .filter(|text| text.contains("  Admin key  in "))
        .collect::<String>();
    assert!(
        !out.contains(&key),
        "the second start printed the key again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sighup_rotates_the_jwt_secret_of_the_gateways_admin_listener() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = aragora_gateway::tls::self_signed(&dir.path().join("tls")).unwrap();
    let file = dir.path().join("gateway.toml");
    let toml = |secret: &str| {
        format!(
            "upstreams = [\"127.0.0.1:9\"]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n[auth]\njwt_secret = \"{secret}\"\n",
            cert.display(),
            key.display()
        )
    };
    let (old_secret, new_secret) = (
        "the-jwt-secret-before-the-rotation-0123",
        "the-jwt-secret-after-the-rotation-45678",
    );
    let admin = [
        "create", "--jwt", "--role", "admin", "--sub", "ops", "--output", "json",
    ];
    let (old, new) = (
        minted_with(old_secret, &admin),
        minted_with(new_secret, &admin),
    );
    std::fs::write(&file, toml(old_secret)).unwrap();
    let gateway = GatewayProcess::start_with_file(&file, &cert, &[]).await;
    let upstreams = |token: String| {
        let gateway = &gateway;
        async move {
            admin_call(
                gateway,
                reqwest::Method::GET,
                "/api/system/upstreams",
                Some(&token),
            )
            .await
            .0
        }
    };
    assert_eq!(upstreams(old.clone()).await, 200);
    assert_eq!(upstreams(new.clone()).await, 401);

    std::fs::write(&file, toml(new_secret)).unwrap();
    gateway.signal(libc::SIGHUP);
    eventually(
        "the rotated JWT secret to count",
        Duration::from_secs(20),
        || async { (upstreams(new.clone()).await == 200).then_some(()) },
    )
    .await;
    assert_eq!(
        upstreams(old).await,
        401,
        "a JWT of the old secret still works"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fault_proxys_api_needs_an_admin_and_its_probes_stay_open() {
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = crate::support::proxy::ProxyProcess::start(
        "engine",
        &upstream.local_addr().unwrap().to_string(),
    )
    .await;
    let plain = reqwest::Client::new();
    let fault = serde_json::json!({"kind": "down"});
    let faults_url = format!("{}/proxies/engine/faults", proxy.api);
    for (credential, expected) in [
        (None, StatusCode::UNAUTHORIZED),
        (Some("not-the-admin-token"), StatusCode::UNAUTHORIZED),
    ] {
        let mut request = plain.post(&faults_url).json(&fault);
        if let Some(credential) = credential {
            request = request.bearer_auth(credential);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), expected, "{credential:?}");
        assert!(
            response.headers().contains_key("www-authenticate"),
            "{credential:?}"
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized", "{body}");
        let listed = plain
            .get(format!("{}/proxies", proxy.api))
            .send()
            .await
            .unwrap();
        assert_eq!(listed.status(), StatusCode::UNAUTHORIZED);
    }
    assert!(
        proxy.faults("engine").await.is_empty(),
        "a refused request added no fault"
    );
    proxy.add_fault("engine", fault).await;
    assert_eq!(proxy.faults("engine").await.len(), 1);
    for probe in ["/healthz", "/metrics"] {
        let response = plain
            .get(format!("{}{probe}", proxy.api))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{probe} stays open");
    }
}
