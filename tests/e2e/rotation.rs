//! Procedure 9 of the Production Operations Runbook ("Rotate All Secrets") as written, for the
//! secrets aragora reads (the JWT secret and the receipt key; the database and Redis passwords
//! are their servers' to change): two engine replicas on one PostgreSQL behind a gateway; new
//! secrets from `openssl rand -base64 32`; a rolling restart, one replica at a time, with
//! `..._PREVIOUS` set to the old values, during which the old JWT keeps working through the
//! gateway; then new JWTs work, the old receipt verifies (API and `aragora receipt verify`) and
//! a new one is signed with the new key; the procedure's checks (`/healthz`, the admin health
//! check `/health` with the admin token); then a second
//! rolling restart without the `..._PREVIOUS` variables, after which the old JWT gets 401 and
//! the old receipt no longer verifies, the answer naming its key id as not in the ring.

use crate::auth::{jwt, restart};
use crate::receipt_ring::verify_cli;
use crate::support::{free_port, Backend, Engine, EngineOptions, GatewayProcess, TestDatabase};
use aragora_auth::Role;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(60);
const JWT: &str = "ARAGORA_JWT_SECRET";
const JWT_PREVIOUS: &str = "ARAGORA_JWT_SECRET_PREVIOUS";
const RECEIPT_KEY: &str = "ARAGORA_RECEIPT_SIGNING_KEY";
const RECEIPT_PREVIOUS: &str = "ARAGORA_RECEIPT_SIGNING_KEY_PREVIOUS";

/// Step 1 of the procedure: `openssl rand -base64 32`.
fn openssl_rand() -> String {
    let output = std::process::Command::new("openssl")
        .args(["rand", "-base64", "32"])
        .output()
        .expect("openssl (scripts/setup.sh installs it)");
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

/// `GET path` through the gateway with `token` (none: no credential): status and body.
async fn get(gateway: &GatewayProcess, path: &str, token: Option<&str>) -> (u16, Value) {
    let client = gateway.anonymous_client_builder().build().unwrap();
    let mut request = client.get(gateway.https_url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|err| panic!("GET {path}: {err}"));
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Asks as many times as there are replicas and then some, so every replica answers.
async fn every_replica(gateway: &GatewayProcess, path: &str, token: &str) -> Vec<u16> {
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(get(gateway, path, Some(token)).await.0);
    }
    statuses
}

/// A completed debate through the gateway and its receipt.
async fn debate_receipt(gateway: &GatewayProcess, topic: &str) -> Value {
    let client = gateway.client();
    let (status, created) = crate::support::post_json(
        &client,
        &gateway.https_url("/api/debates"),
        &json!({"topic": topic, "rounds": 1}),
    )
    .await;
    assert_eq!(status, 202, "{created}");
    let id = created["debate_id"].as_str().unwrap().to_string();
    crate::support::eventually("the debate to complete", PATIENCE, || async {
        let (_, debate) =
            crate::support::get_json(&client, &gateway.https_url(&format!("/api/debates/{id}")))
                .await;
        (debate["status"] == "completed").then_some(())
    })
    .await;
    let (status, receipt) = crate::support::get_json(
        &client,
        &gateway.https_url(&format!("/api/debates/{id}/receipt")),
    )
    .await;
    assert_eq!(status, 200, "{receipt}");
    receipt
}

async fn verify(gateway: &GatewayProcess, receipt: &Value) -> Value {
    let (status, verdict) = crate::support::post_json(
        &gateway.client(),
        &gateway.https_url("/api/receipts/verify"),
        receipt,
    )
    .await;
    assert_eq!(status, 200, "{verdict}");
    verdict
}

/// The procedure's step 5: each replica in turn stopped (SIGTERM, exit awaited) and started
/// on its port and data with `env`, ready before the next, while a client keeps calling
/// `/api/auth/me` through the gateway with `token`. Every status that client got.
async fn rolling_restart(
    engines: Vec<Engine>,
    ports: &[u16],
    backend: &Backend,
    gateway: &GatewayProcess,
    env: &[(&str, &str)],
    token: &str,
) -> (Vec<Engine>, Vec<u16>) {
    let done = Arc::new(AtomicBool::new(false));
    let caller = {
        let (done, token) = (done.clone(), token.to_string());
        let client = gateway.anonymous_client_builder().build().unwrap();
        let url = gateway.https_url("/api/auth/me");
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            while !done.load(Ordering::Relaxed) {
                let status = match client.get(&url).bearer_auth(&token).send().await {
                    Ok(response) => response.status().as_u16(),
                    Err(_) => 0,
                };
                statuses.push(status);
                // Pacing, not synchronisation: a steady trickle across the roll without
                // taking the two cores from the replicas starting.
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            statuses
        })
    };
    let mut restarted = Vec::new();
    for (engine, port) in engines.into_iter().zip(ports) {
        let port = port.to_string();
        let mut env = env.to_vec();
        env.push(("ARAGORA_PORT", port.as_str()));
        restarted.push(restart(engine, backend, &env).await);
        gateway.wait_ready_count(ports.len(), PATIENCE).await;
    }
    done.store(true, Ordering::Relaxed);
    (restarted, caller.await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn procedure_9_rotates_jwt_and_receipt_keys_by_rolling_restart_then_retires_the_old_ones() {
    let database = TestDatabase::create().await;
    let backend = Backend::Postgres(database.url.clone());
    let (old_jwt, old_key) = (openssl_rand(), openssl_rand());
    let ports = [free_port(), free_port()];
    let mut engines = Vec::new();
    for port in ports {
        let options = EngineOptions::postgres(&database.url)
            .env("ARAGORA_PORT", port)
            .env(JWT, &old_jwt)
            .env(RECEIPT_KEY, &old_key);
        engines.push(Engine::start(options).await);
    }
    let upstreams: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let gateway = GatewayProcess::start(&upstreams, &[]).await;
    gateway.wait_ready_count(2, PATIENCE).await;

    // Before: a user's JWT of the old secret, and a receipt signed with the old key.
    let old_token = jwt(&old_jwt, "before-rotation", Role::Reader);
    let (status, me) = get(&gateway, "/api/auth/me", Some(&old_token)).await;
    assert_eq!(
        (status, &me["subject"]),
        (200, &json!("before-rotation")),
        "{me}"
    );
    let old_receipt = debate_receipt(&gateway, "Signed before the rotation").await;
    let old_key_id = old_receipt["key_id"].as_str().unwrap().to_string();

    // 1. Generate new secrets. 4. New values, the old ones as _PREVIOUS. 5. Rolling restart.
    let (new_jwt, new_key) = (openssl_rand(), openssl_rand());
    assert_ne!((&new_jwt, &new_key), (&old_jwt, &old_key));
    let overlap = [
        (JWT, new_jwt.as_str()),
        (JWT_PREVIOUS, old_jwt.as_str()),
        (RECEIPT_KEY, new_key.as_str()),
        (RECEIPT_PREVIOUS, old_key.as_str()),
    ];
    let (engines, during) =
        rolling_restart(engines, &ports, &backend, &gateway, &overlap, &old_token).await;
    assert!(
        during.len() >= 4,
        "the old JWT was tried during the roll: {during:?}"
    );
    assert!(
        during.iter().all(|status| *status == 200),
        "the old JWT worked throughout the rolling restart: {during:?}"
    );

    // After the roll: new JWTs on every replica, the old one still, the old receipt verifies
    // by its key id, a new receipt is signed with the new key.
    let new_token = jwt(&new_jwt, "after-rotation", Role::Reader);
    assert_eq!(
        every_replica(&gateway, "/api/auth/me", &new_token).await,
        [200; 6]
    );
    assert_eq!(
        every_replica(&gateway, "/api/auth/me", &old_token).await,
        [200; 6]
    );
    let verdict = verify(&gateway, &old_receipt).await;
    assert_eq!(
        (
            &verdict["valid"],
            &verdict["signed_with"],
            &verdict["key_id"]
        ),
        (&json!(true), &json!("previous"), &json!(old_key_id)),
        "{verdict}"
    );
    let new_receipt = debate_receipt(&gateway, "Signed after the rotation").await;
    let new_key_id = new_receipt["key_id"].as_str().unwrap().to_string();
    assert_ne!(new_key_id, old_key_id);
    let verdict = verify(&gateway, &new_receipt).await;
    assert_eq!(
        (&verdict["valid"], &verdict["current"]),
        (&json!(true), &json!(true)),
        "{verdict}"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("old-receipt.json");
    std::fs::write(&file, old_receipt.to_string()).unwrap();
    let (ok, text) = verify_cli(&file, dir.path(), &new_key, &old_key);
    assert!(ok && text.contains(&old_key_id), "{text}");

    // 6. Verify: liveness, and the admin deep health check through the gateway.
    let (status, live) = get(&gateway, "/healthz", None).await;
    assert_eq!((status, &live["status"]), (200, &json!("ok")), "{live}");
    let (status, health) = get(&gateway, "/health", gateway.token.as_deref()).await;
    assert_eq!(
        (
            status,
            &health["overall"],
            &health["checks"]["database"]["status"]
        ),
        (200, &json!("healthy"), &json!("ok")),
        "{health}"
    );

    // 7. After the overlap, the _PREVIOUS variables removed, by another rolling restart. The
    // new JWT keeps working throughout.
    let retired = [(JWT, new_jwt.as_str()), (RECEIPT_KEY, new_key.as_str())];
    let (_engines, during) =
        rolling_restart(engines, &ports, &backend, &gateway, &retired, &new_token).await;
    assert!(
        !during.is_empty() && during.iter().all(|status| *status == 200),
        "the new JWT worked throughout the second roll: {during:?}"
    );
    let statuses = every_replica(&gateway, "/api/auth/me", &old_token).await;
    assert_eq!(
        statuses, [401; 6],
        "the old JWT is refused on every replica"
    );
    assert_eq!(
        every_replica(&gateway, "/api/auth/me", &new_token).await,
        [200; 6]
    );
    // The old receipt: not valid, and the answer says why, naming the key that is gone.
    let verdict = verify(&gateway, &old_receipt).await;
    let reason = verdict["reason"].as_str().unwrap_or_default();
    assert!(
        verdict["valid"] == false
            && reason.contains(&old_key_id)
            && reason.contains("not in the key ring"),
        "{verdict}"
    );
    let (ok, text) = verify_cli(&file, dir.path(), &new_key, "");
    assert!(
        !ok && text.contains(&old_key_id) && text.contains("not in the key ring"),
        "{text}"
    );
    assert!(verify(&gateway, &new_receipt).await["valid"] == true);
    // No secret reached the gateway's log.
    let log = gateway.log_text();
    for secret in [&old_jwt, &new_jwt, &old_key, &new_key] {
        assert!(!log.contains(secret.as_str()));
    }
}
