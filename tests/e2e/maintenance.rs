//! The Self-Hosted Guide's 7.4 Maintenance Windows, as written: enable maintenance on one
//! replica, watch `/api/admin/stats | jq .active_debates` fall to 0 while the running debate
//! completes, check `/api/health`, disable. Two engine replicas on one PostgreSQL database
//! behind a gateway: the other replica and the gateway refuse new debates too, and serve reads.
//! Then the endpoints' refusals of bad callers and bodies, on SQLite alone.

use crate::support::{
    eventually, sample, with_bearer, Engine, EngineOptions, GatewayProcess, TestDatabase,
};
use serde_json::{json, Value};
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(60);

/// The refusal message's fixed part: what the operator's users are told goes on.
const GOES_ON: &str = "reads and running debates continue";

/// `options` able to mint and check JWTs (`POST /api/auth/token`) signed with `secret`, for a
/// reader's credential.
fn minting(options: EngineOptions, secret: &str) -> EngineOptions {
    options.env("ARAGORA_JWT_SECRET", secret)
}

fn new_secret() -> String {
    format!("jwt-{}", uuid::Uuid::new_v4().simple())
}

/// A client sending a reader's JWT, minted by `engine` with its admin token.
async fn reader_client(engine: &Engine) -> reqwest::Client {
    let (status, minted) = engine
        .post_json("/api/auth/token", &json!({"role": "reader"}))
        .await;
    assert_eq!(status, 200, "{minted}");
    let token = minted["token"].as_str().expect("a JWT");
    with_bearer(reqwest::Client::builder(), Some(token))
        .build()
        .unwrap()
}

/// POSTs `body` (raw, when given) to `url`: status, `Retry-After` and the JSON answer.
async fn post(
    client: &reqwest::Client,
    url: &str,
    body: Option<&str>,
) -> (u16, Option<String>, Value) {
    let mut request = client.post(url);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|err| panic!("POST {url}: {err}"));
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (
        status,
        retry_after,
        response.json().await.unwrap_or(Value::Null),
    )
}

fn new_debate() -> String {
    json!({"topic": "Is a maintenance window worth the wait?", "rounds": 1}).to_string()
}

/// Asserts a new debate at `url` is accepted (`when` says at which step).
async fn assert_accepted(client: &reqwest::Client, url: &str, when: &str) {
    let (status, _, accepted) = post(client, url, Some(&new_debate())).await;
    assert_eq!(status, 202, "POST {url} {when}: {accepted}");
}

/// Asserts a new debate at `url` is refused for maintenance with `reason` and `retry_after`.
async fn assert_refused(client: &reqwest::Client, url: &str, reason: &str, retry_after: &str) {
    let (status, retry, body) = post(client, url, Some(&new_debate())).await;
    assert_eq!(status, 503, "POST {url} during maintenance: {body}");
    assert_eq!(retry.as_deref(), Some(retry_after), "POST {url}: {body}");
    assert_eq!(body["error"]["code"], "maintenance", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(&format!("maintenance: {reason}; {GOES_ON}")),
        "POST {url}: {message}"
    );
}

/// Waits until `engine`'s `/api/health` says maintenance is `on`; its answer.
async fn health_says(engine: &Engine, on: bool) -> Value {
    eventually(
        &format!("/api/health of {} to say maintenance {on}", engine.api),
        PATIENCE,
        || async {
            let (status, health) = engine.get("/api/health").await;
            (status == 200 && health["maintenance"]["enabled"] == on).then_some(health)
        },
    )
    .await
}

/// Waits until the gateway's `aragora_maintenance_mode` is `value` (its replicas' report).
async fn gateway_gauge_is(gateway: &GatewayProcess, value: f64) {
    eventually(
        &format!("the gateway's aragora_maintenance_mode to be {value}"),
        PATIENCE,
        || async {
            (sample(&gateway.metrics().await, "aragora_maintenance_mode") == Some(value))
                .then_some(())
        },
    )
    .await
}

/// `GET /api/admin/stats` as `client`.
async fn stats(client: &reqwest::Client, url: &str) -> Value {
    let response = client.get(url).send().await.expect("stats");
    assert_eq!(response.status(), 200);
    response.json().await.expect("stats JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_maintenance_window_refuses_new_debates_everywhere_while_the_running_one_completes() {
    let database = TestDatabase::create().await;
    let secret = new_secret();
    let a = Engine::start(minting(EngineOptions::postgres(&database.url), &secret)).await;
    let b = Engine::start(minting(EngineOptions::postgres(&database.url), &secret)).await;
    let gateway = GatewayProcess::start(&[a.api.to_string(), b.api.to_string()], &[]).await;
    gateway.wait_ready_count(2, PATIENCE).await;
    let edge = gateway.client();
    let reader = reader_client(&a).await;

    // A debate kept running on A: each agent call takes 3 s until the test lifts the fault.
    let slow = json!({"kind": "agent_slow", "delay_ms": 3000, "duration_seconds": 600});
    let (status, fault) = a.post_json("/api/system/faults", &slow).await;
    assert_eq!(status, 201, "{fault}");
    let held = a
        .start_debate(json!({"topic": "Held through the window", "rounds": 3}))
        .await;
    eventually("the held debate to run", PATIENCE, || async {
        let (_, debate) = a.get(&format!("/api/debates/{held}")).await;
        (debate["status"] == "running").then_some(())
    })
    .await;

    // 1. "Disable new debate creation": the guide's curl, a POST with no body.
    let (status, _, enabled) = post(&a.http, &a.url("/api/admin/maintenance/enable"), None).await;
    assert_eq!(status, 200, "{enabled}");
    assert_eq!(enabled["enabled"], true, "{enabled}");
    assert_eq!(enabled["changed"], true, "{enabled}");
    assert_eq!(enabled["reason"], "scheduled maintenance", "{enabled}");
    assert_eq!(enabled["changed_by"], "admin-token", "{enabled}");
    let since = enabled["since"].as_str().expect("since").to_string();
    // Again, with a reason: the same window (since, who), the new reason and Retry-After.
    let body = r#"{"reason": "upgrade to 2.0", "retry_after_seconds": 30}"#;
    let (status, _, again) =
        post(&a.http, &a.url("/api/admin/maintenance/enable"), Some(body)).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["changed"], false, "{again}");
    assert_eq!(again["since"], since.as_str(), "{again}");
    assert_eq!(again["reason"], "upgrade to 2.0", "{again}");

    // New debates are refused on A at once, on B and at the edge once they have read it.
    assert_refused(&a.http, &a.url("/api/debates"), "upgrade to 2.0", "30").await;
    let health = health_says(&b, true).await;
    assert_eq!(
        health["maintenance"]["reason"], "upgrade to 2.0",
        "{health}"
    );
    assert_eq!(health["maintenance"]["since"], since.as_str(), "{health}");
    assert_refused(&b.http, &b.url("/api/v1/debates"), "upgrade to 2.0", "30").await;
    gateway_gauge_is(&gateway, 1.0).await;
    for path in ["/api/debates", "/api/v1/debates"] {
        assert_refused(&edge, &gateway.https_url(path), "upgrade to 2.0", "30").await;
    }
    for engine in [&a, &b] {
        assert_eq!(
            sample(&engine.metrics().await, "aragora_maintenance_mode"),
            Some(1.0),
            "{}",
            engine.api
        );
    }

    // Reads go on, through the gateway and on B.
    let (status, debate) =
        crate::support::get_json(&edge, &gateway.https_url(&format!("/api/debates/{held}"))).await;
    assert_eq!(status, 200, "{debate}");
    assert_eq!(debate["status"], "running", "{debate}");
    let (status, listed) = b.get("/api/debates").await;
    assert_eq!(status, 200, "{listed}");

    // 2. "Wait for active debates to complete": the held debate counts until it ends, on
    // every replica (the database's count), the replica running it says it is its own.
    let through_edge = gateway.https_url("/api/admin/stats");
    let edge_anonymous = gateway.anonymous_client_builder().build().unwrap();
    let anonymous = edge_anonymous.get(&through_edge).send().await.unwrap();
    assert_eq!(anonymous.status(), 401, "stats need a reader");
    let counted = stats(&reader, &b.url("/api/admin/stats")).await;
    assert!(counted["active_debates"].as_i64() >= Some(1), "{counted}");
    assert!(counted["running_debates"].as_i64() >= Some(1), "{counted}");
    assert_eq!(counted["maintenance"]["enabled"], true, "{counted}");
    assert_eq!(
        counted["this_replica"]["running_debates"], 0,
        "B runs nothing: {counted}"
    );
    let on_a = stats(&reader, &a.url("/api/admin/stats")).await;
    assert_eq!(on_a["this_replica"]["running_debates"], 1, "{on_a}");
    assert!(
        on_a["debates_by_status"]["running"].as_i64() >= Some(1),
        "{on_a}"
    );

    // The running debate is not cancelled: once its agents are fast again it completes.
    let cleared = a
        .http
        .delete(a.url("/api/system/faults"))
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.status(), 200);
    let finished = a.wait_final(&held, PATIENCE).await;
    assert_eq!(finished["status"], "completed", "{finished}");
    let drained = eventually("active_debates to reach 0", PATIENCE, || async {
        let counted = stats(&edge, &through_edge).await;
        (counted["active_debates"] == 0).then_some(counted)
    })
    .await;
    assert!(
        drained["debates_by_status"]["completed"].as_i64() >= Some(1),
        "{drained}"
    );

    // 6. "Verify health" during the window, then 7. disable, here on B: idempotent.
    let health = health_says(&a, true).await;
    assert_eq!(health["status"], "healthy", "{health}");
    for changed in [true, false] {
        let (status, _, disabled) =
            post(&b.http, &b.url("/api/admin/maintenance/disable"), None).await;
        assert_eq!(status, 200, "{disabled}");
        assert_eq!(disabled["enabled"], false, "{disabled}");
        assert_eq!(disabled["changed"], changed, "{disabled}");
    }

    // New debates are accepted again everywhere.
    health_says(&a, false).await;
    gateway_gauge_is(&gateway, 0.0).await;
    for (client, url) in [
        (&edge, gateway.https_url("/api/v1/debates")),
        (&a.http, a.url("/api/debates")),
        (&b.http, b.url("/api/debates")),
    ] {
        assert_accepted(client, &url, "after the window").await;
    }
    assert_eq!(
        sample(&a.metrics().await, "aragora_maintenance_mode"),
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_refuses_bad_callers_and_bodies_and_works_on_sqlite_alone() {
    let engine = Engine::start(minting(EngineOptions::sqlite(), &new_secret())).await;
    let enable = engine.url("/api/admin/maintenance/enable");
    let anonymous = reqwest::Client::new();
    let reader = reader_client(&engine).await;

    let (status, _, body) = post(&anonymous, &enable, None).await;
    assert_eq!(status, 401, "{body}");
    let (status, _, body) = post(&reader, &enable, None).await;
    assert_eq!(status, 403, "{body}");
    let (status, _, body) = post(
        &anonymous,
        &engine.url("/api/admin/maintenance/disable"),
        None,
    )
    .await;
    assert_eq!(status, 401, "{body}");
    let stats_url = engine.url("/api/admin/stats");
    assert_eq!(
        anonymous.get(&stats_url).send().await.unwrap().status(),
        401
    );

    for (body, status, code, says) in [
        ("{\"reason\": ", 400, "invalid_request", "not valid JSON"),
        (r#"{"reason": 5}"#, 422, "validation_failed", "reason"),
        (
            r#"{"reasons": "typo"}"#,
            422,
            "validation_failed",
            "unknown field",
        ),
        (
            r#"{"reason": "   "}"#,
            422,
            "validation_failed",
            "1 to 200 characters",
        ),
        (
            r#"{"retry_after_seconds": 0}"#,
            422,
            "validation_failed",
            "1 to 86400",
        ),
        (
            r#"{"retry_after_seconds": 90000}"#,
            422,
            "validation_failed",
            "is 90000",
        ),
    ] {
        let (got, _, answer) = post(&engine.http, &enable, Some(body)).await;
        assert_eq!(got, status, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{body}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{body}: {message}");
    }
    let (status, state) = engine.get("/api/admin/maintenance").await;
    assert_eq!(status, 200, "{state}");
    assert_eq!(
        state["enabled"], false,
        "refused calls changed nothing: {state}"
    );
    assert_accepted(
        &engine.http,
        &engine.url("/api/debates"),
        "with maintenance off",
    )
    .await;

    // One SQLite replica: the same switch, no PostgreSQL or Redis needed.
    let body = r#"{"reason": "disk swap", "retry_after_seconds": 5}"#;
    let (status, _, enabled) = post(&engine.http, &enable, Some(body)).await;
    assert_eq!(status, 200, "{enabled}");
    assert_refused(
        &engine.http,
        &engine.url("/api/v1/debates"),
        "disk swap",
        "5",
    )
    .await;
    let (status, ready) = engine.get("/readyz").await;
    assert_eq!(status, 200, "maintenance leaves the replica ready: {ready}");
    assert_eq!(ready["maintenance"]["enabled"], true, "{ready}");
    let (status, _, _) = post(
        &engine.http,
        &engine.url("/api/admin/maintenance/disable"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_accepted(
        &engine.http,
        &engine.url("/api/debates"),
        "with maintenance off",
    )
    .await;
}
