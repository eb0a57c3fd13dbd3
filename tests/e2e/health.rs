//! The health endpoints as the source documents' procedures call them, against the real
//! binary: the deploy smoke test of Procedure 1 through a gateway, the Self-Hosted Guide's
//! `health-check.sh` run as written against `aragora up`, the runbook's admin-only deep check
//! `GET /health`, and the multi-instance guard `ARAGORA_REQUIRE_DISTRIBUTED` against a Redis
//! that is not there and a real TLS Redis (`rediss://`) that goes away and comes back.

use crate::support::redis_tls::TlsRedis;
use crate::support::{
    eventually, free_port, get_json, post_json, Engine, EngineOptions, GatewayProcess, UpProcess,
};
use serde_json::{json, Value};
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(30);

/// The Self-Hosted Guide's health-check script (Part 6.1), verbatim.
const HEALTH_CHECK_SH: &str = r#"#!/bin/bash
# health-check.sh

API_URL="${1:-http://localhost:8080}"

check_endpoint() {
    response=$(curl -sf "$API_URL/api/$1" 2>/dev/null)
    if [ $? -eq 0 ]; then
        echo "✓ $1: OK"
    else
        echo "✗ $1: FAILED"
        return 1
    fi
}

echo "Checking Aragora health..."
check_endpoint "health"
check_endpoint "health/db"
check_endpoint "health/ready"
"#;

/// Runs the script with `api_url`: its exit code and what it printed.
async fn health_check_sh(dir: &std::path::Path, api_url: &str) -> (i32, String) {
    let script = dir.join("health-check.sh");
    std::fs::write(&script, HEALTH_CHECK_SH).unwrap();
    let output = tokio::process::Command::new("bash")
        .arg(&script)
        .arg(api_url)
        .output()
        .await
        .expect("bash and curl");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deploy_smoke_test_passes_through_the_gateway() {
    let engine = Engine::start(EngineOptions::sqlite()).await;
    let gateway = GatewayProcess::start(&[engine.api.to_string()], &[]).await;
    gateway.wait_ready_count(1, PATIENCE).await;
    // Procedure 1, step 3 and 5, with no credential (`curl -sf`): each 200 with the answer the
    // runbook shows.
    let anonymous = gateway.anonymous_client_builder().build().unwrap();
    let (status, live) = get_json(&anonymous, &gateway.https_url("/healthz")).await;
    assert_eq!((status, &live["status"]), (200, &json!("ok")), "{live}");
    let (status, ready) = get_json(&anonymous, &gateway.https_url("/readyz")).await;
    assert_eq!(
        (status, &ready["status"]),
        (200, &json!("ready")),
        "{ready}"
    );
    let (status, summary) = get_json(&anonymous, &gateway.https_url("/api/v1/status")).await;
    assert_eq!(status, 200, "{summary}");
    assert_eq!(summary["status"], "healthy", "{summary}");
    assert_eq!(summary["version"], env!("CARGO_PKG_VERSION"), "{summary}");
    assert_eq!(summary["database"], "connected", "{summary}");
    assert_eq!(summary["redis"], "not_configured", "{summary}");
    assert_eq!(summary["agents"], "available", "{summary}");
    assert_eq!(summary["active_debates"], 0, "{summary}");
    assert_eq!(summary["queued_debates"], 0, "{summary}");
    assert!(summary["uptime_seconds"].is_u64(), "{summary}");
    // The Deployment Checklist's readiness probe, through the gateway too.
    let (status, ready) = get_json(&anonymous, &gateway.https_url("/api/ready")).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(
        (&ready["status"], &ready["database"], &ready["agents"]),
        (&json!("ready"), &json!("connected"), &json!("available")),
        "{ready}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guides_health_check_script_passes_against_up_and_fails_without_the_database() {
    let up = UpProcess::start(&[]).await;
    let api_url = format!("http://127.0.0.1:{}", up.api);
    let (code, printed) = health_check_sh(up.dir.path(), &api_url).await;
    assert_eq!(code, 0, "{printed}");
    for line in ["✓ health: OK", "✓ health/db: OK", "✓ health/ready: OK"] {
        assert!(
            printed.lines().any(|l| l == line),
            "no {line:?} in:\n{printed}"
        );
    }

    // The database goes away (the engine's fault, in front of every store call).
    let admin = crate::support::with_bearer(reqwest::Client::builder(), up.token.as_deref())
        .build()
        .unwrap();
    let (status, fault) = post_json(
        &admin,
        &format!("{api_url}/api/system/faults"),
        &json!({"kind": "database_unavailable", "duration_seconds": 60}),
    )
    .await;
    assert_eq!(status, 201, "{fault}");
    let (code, printed) = health_check_sh(up.dir.path(), &api_url).await;
    assert_ne!(
        code, 0,
        "the script must fail without a database:\n{printed}"
    );
    for line in ["✗ health/db: FAILED", "✗ health/ready: FAILED"] {
        assert!(
            printed.lines().any(|l| l == line),
            "no {line:?} in:\n{printed}"
        );
    }
    // What the operator then reads: the readiness answer names the database.
    let (status, ready) = get_json(&admin, &format!("{api_url}/api/health/ready")).await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["database"], "disconnected", "{ready}");
    assert!(
        ready["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("database unavailable"),
        "{ready}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deep_check_is_for_admins_and_reports_every_dependency() {
    let engine = Engine::start(EngineOptions::sqlite()).await;
    let anonymous = reqwest::Client::new();
    let (status, refused) = get_json(&anonymous, &engine.url("/health")).await;
    assert_eq!(status, 401, "{refused}");
    assert!(refused.get("checks").is_none(), "{refused}");

    // Procedure 5 step 4: `curl -sf -H "Authorization: Bearer $ARAGORA_API_TOKEN" .../health`.
    let (status, report) = engine.get("/health").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["overall"], "healthy", "{report}");
    for name in ["database", "redis", "api_keys", "schema", "agents"] {
        let check = &report["checks"][name];
        assert!(check["status"].is_string(), "{name}: {report}");
        assert!(check["latency_ms"].is_number(), "{name}: {report}");
    }
    assert_eq!(report["checks"]["database"]["status"], "ok", "{report}");
    assert_eq!(
        report["checks"]["redis"]["status"], "not_configured",
        "{report}"
    );
    assert_eq!(report["checks"]["api_keys"]["status"], "ok", "{report}");
    assert_eq!(report["checks"]["api_keys"]["active"], 0, "{report}");
    assert_eq!(report["checks"]["schema"]["status"], "ok", "{report}");
    assert_eq!(
        report["checks"]["schema"]["applied"],
        report["checks"]["schema"]["expected"]
    );
    assert_eq!(report["checks"]["agents"]["circuit_breakers_open"], 0);
    // No secret: not the admin token, and no key material.
    let token = engine.token.clone().unwrap();
    assert!(!report.to_string().contains(&token), "{report}");

    // An API key created meanwhile counts as active.
    let (status, key) = engine
        .post_json(
            "/api/auth/api-key",
            &json!({"name": "probe", "role": "reader"}),
        )
        .await;
    assert!(status == 200 || status == 201, "{key}");
    let (_, report) = engine.get("/health").await;
    assert_eq!(report["checks"]["api_keys"]["active"], 1, "{report}");
    let secret = key["key"].as_str().unwrap_or("no key in the answer");
    assert!(!report.to_string().contains(secret), "{report}");
}

/// The readiness answer of `engine` once it is a 503 whose reason names `needle`; on timeout
/// the panic shows the last answer.
async fn not_ready_saying(engine: &Engine, path: &str, needle: &str) -> Value {
    let last = std::sync::Mutex::new(Value::Null);
    let found = tokio::time::timeout(
        PATIENCE,
        eventually("", PATIENCE * 2, || async {
            let (status, body) = engine.get(path).await;
            let reason = body["reason"].as_str().unwrap_or_default().to_string();
            *last.lock().unwrap() = body.clone();
            (status == 503 && reason.contains(needle)).then_some(body)
        }),
    )
    .await;
    found.unwrap_or_else(|_| {
        panic!(
            "{path} never was a 503 naming {needle:?}; last answer: {}",
            last.lock().unwrap()
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_requires_redis_is_not_ready_while_redis_is_not_there() {
    // A port nothing listens on.
    let closed = free_port();
    let engine = Engine::spawn(
        EngineOptions::sqlite()
            .env("ARAGORA_REDIS_URL", format!("redis://127.0.0.1:{closed}/0"))
            .env("ARAGORA_REQUIRE_DISTRIBUTED", "true"),
    );
    let ready = not_ready_saying(&engine, "/readyz", "ARAGORA_REQUIRE_DISTRIBUTED").await;
    assert_eq!(ready["status"], "not_ready", "{ready}");
    assert_eq!(ready["redis"], "disconnected", "{ready}");
    // The database is fine: it is Redis, and only Redis, that keeps it out.
    assert_eq!(ready["database"], "connected", "{ready}");
    assert!(
        ready["reason"].as_str().unwrap().contains("Redis"),
        "{ready}"
    );
    let (status, checklist) = engine.get("/api/ready").await;
    assert_eq!(status, 503, "{checklist}");
    assert_eq!(checklist["redis"], "disconnected", "{checklist}");
    let (status, redis) = engine.get("/api/health/redis").await;
    assert_eq!(status, 503, "{redis}");
    assert_eq!(
        (&redis["redis"], &redis["required"]),
        (&json!("disconnected"), &json!(true))
    );
    let (status, report) = engine.get("/health").await;
    assert_eq!(status, 503, "{report}");
    assert_eq!(report["overall"], "unhealthy", "{report}");
    assert_eq!(report["checks"]["redis"]["status"], "error", "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_redis_is_trusted_through_its_ca_and_readiness_follows_it_down_and_back() {
    let mut redis = TlsRedis::start().await;
    let engine = Engine::start(
        EngineOptions::sqlite()
            .env("ARAGORA_REDIS_URL", redis.url())
            .env("ARAGORA_REDIS_CA_FILE", redis.ca.display())
            .env("ARAGORA_REQUIRE_DISTRIBUTED", "true"),
    )
    .await;
    let (status, answer) = engine.get("/api/health/redis").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (&answer["redis"], &answer["tls"]),
        (&json!("connected"), &json!(true))
    );
    assert!(answer["latency_ms"].is_number(), "{answer}");
    let (_, ready) = engine.get("/readyz").await;
    assert_eq!(ready["redis"], "connected", "{ready}");

    redis.stop();
    let ready = not_ready_saying(&engine, "/readyz", "Redis").await;
    assert_eq!(ready["redis"], "disconnected", "{ready}");

    redis.restart().await;
    let ready = eventually(
        "/readyz to be ready once Redis is back",
        PATIENCE,
        || async {
            let (status, body) = engine.get("/readyz").await;
            (status == 200).then_some(body)
        },
    )
    .await;
    assert_eq!(ready["redis"], "connected", "{ready}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_redis_signed_by_another_ca_is_refused_with_a_certificate_error() {
    let redis = TlsRedis::start().await;
    let other = tempfile::tempdir().unwrap();
    let (wrong_ca, _) = aragora_gateway::tls::self_signed(other.path()).unwrap();
    let engine = Engine::spawn(
        EngineOptions::sqlite()
            .env("ARAGORA_REDIS_URL", redis.url())
            .env("ARAGORA_REDIS_CA_FILE", wrong_ca.display())
            .env("ARAGORA_REQUIRE_DISTRIBUTED", "true"),
    );
    let ready = not_ready_saying(&engine, "/readyz", "certificate is not trusted").await;
    assert_eq!(ready["redis"], "disconnected", "{ready}");
    let reason = ready["reason"].as_str().unwrap();
    assert!(
        reason.contains(&redis.url()),
        "names the Redis it tried: {reason}"
    );
    assert!(
        reason.contains("ARAGORA_REDIS_CA_FILE"),
        "says what to set: {reason}"
    );
}
