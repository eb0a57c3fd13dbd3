//! The OpenAPI document against the live engine: it serves the committed `docs/openapi.json`
//! at `/api/openapi.json`, and schemathesis (PyPI, installed by scripts/setup.sh), reading that
//! document from the engine, finds no answer outside it: no 5xx, every status documented,
//! every body and header as documented, refusals where the credential is missing (once as the
//! admin, once with no credential).
//!
//! The gateway's admin API (its own document, `docs/gateway-admin-openapi.json`, served at the
//! admin listener's `GET /openapi.json` to admins) is tried the same way, as an admin and
//! without a credential, against a gateway with a ready engine behind it.
//!
//! Each run is bounded: 20 examples per operation, one pass of each phase, a fixed seed (a
//! failure replays with the same seed), two workers, and a 240 s kill. Both together take about
//! 30 s here.
//!
//! Left out, and why:
//! - `GET /ws`: an upgrade, not a request/response; tests/e2e/websocket.rs tries it.
//! - As the admin, `POST /api/admin/maintenance/enable` and `POST /api/system/faults`: they
//!   make the engine refuse or fail on purpose (maintenance answers new debates 503; a
//!   `database_unavailable` fault makes reads fail) for the rest of the run. The anonymous run
//!   still tries both (401), and tests/e2e/maintenance.rs and faults.rs try what they do.
//! - The check `positive_data_acceptance`: some rules span fields (`topic` or `question`;
//!   `delay_ms` only with `agent_slow`; agent names from the registry; 5.0 is an integer to
//!   JSON Schema and not to the API), which the document says in words, not in JSON Schema, so
//!   a schema-valid body may still be answered 422.

use crate::support::deploy::repo;
use crate::support::{Engine, EngineOptions, GatewayProcess};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// How long one schemathesis run may take before the test kills it and fails.
const RUN_LIMIT: Duration = Duration::from_secs(240);

fn schemathesis() -> PathBuf {
    repo().join("target/tools/schemathesis/bin/schemathesis")
}

/// What one schemathesis run tries: the document (a URL or a file), the server, the
/// credential sent (or none) and what is left out.
struct Run<'a> {
    schema: String,
    base: String,
    credential: Option<&'a str>,
    exclude_operations: &'a [&'a str],
    exclude_paths: &'a [&'a str],
    who: &'a str,
}

/// Runs schemathesis against `engine`'s document with `credential` (or none) and fails the test
/// with its report when it found anything.
fn run_schemathesis(engine: &Engine, credential: Option<&str>, exclude: &[&str]) {
    run(Run {
        schema: engine.url("/api/openapi.json"),
        base: engine.url(""),
        credential,
        exclude_operations: exclude,
        exclude_paths: &["/ws"],
        who: credential.map_or("engine, no credential", |_| "engine, the admin token"),
    })
}

/// Runs schemathesis as `run` says and fails the test with its report when it found anything.
fn run(run: Run<'_>) {
    let schemathesis = schemathesis();
    assert!(
        schemathesis.is_file(),
        "{} is missing; run scripts/setup.sh",
        schemathesis.display()
    );
    // Its example database (.hypothesis) goes in a directory of its own.
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(&schemathesis);
    command
        .current_dir(dir.path())
        .arg("run")
        .arg(&run.schema)
        .args(["--url", &run.base])
        .args(["--checks", "all"])
        .args(["--exclude-checks", "positive_data_acceptance"])
        .args(["--max-examples", "20", "--seed", "1", "--workers", "2"])
        .args(["--request-timeout", "10"]);
    for path in run.exclude_paths {
        command.args(["--exclude-path", path]);
    }
    for operation_id in run.exclude_operations {
        command.args(["--exclude-operation-id", operation_id]);
    }
    if let Some(credential) = run.credential {
        command.args(["-H", &format!("Authorization: Bearer {credential}")]);
    }
    let who = run.who;
    let started = Instant::now();
    let out = dir.path().join("schemathesis.out");
    let mut child = command
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("schemathesis starts");
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let report = std::fs::read_to_string(&out).unwrap_or_default();
    let status = status.unwrap_or_else(|| {
        panic!("schemathesis ({who}) ran over {RUN_LIMIT:?}; its report so far:\n{report}")
    });
    assert!(
        status.success(),
        "schemathesis ({who}) found answers the document does not describe ({status}); its \
         report (each case with a curl line to reproduce it):\n{report}"
    );
    // Not vacuous: it tried every operation it was given.
    assert!(report.contains("Tested:"), "{report}");
    eprintln!(
        "schemathesis ({who}): {:.1} s\n{}",
        started.elapsed().as_secs_f64(),
        report
            .lines()
            .skip_while(|line| !line.contains("SUMMARY"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

async fn engine() -> Engine {
    Engine::start(EngineOptions::sqlite().env(
        "ARAGORA_JWT_SECRET",
        "openapi-e2e-jwt-secret-of-32-chars-or-more",
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_serves_the_committed_document() {
    let engine = engine().await;
    let response = reqwest::get(engine.url("/api/openapi.json")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let served = response.text().await.unwrap();
    let committed = std::fs::read_to_string(repo().join("docs/openapi.json")).unwrap();
    assert!(
        served == committed,
        "the engine serves another document than docs/openapi.json; run \
         `cargo run -- openapi --out docs/openapi.json`"
    );
    // The versioned alias serves it too, without a credential.
    let v1 = reqwest::get(engine.url("/api/v1/openapi.json"))
        .await
        .unwrap();
    assert_eq!(v1.text().await.unwrap(), committed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_as_the_admin_finds_every_answer_documented() {
    let engine = engine().await;
    let token = engine.token.clone().unwrap();
    tokio::task::block_in_place(|| {
        run_schemathesis(
            &engine,
            Some(&token),
            &["maintenance_enable", "inject_fault"],
        )
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_without_a_credential_finds_every_answer_documented() {
    let engine = engine().await;
    tokio::task::block_in_place(|| run_schemathesis(&engine, None, &[]));
}

/// A gateway in front of a ready engine (so that `/readyz` answers 200: a 503 there is the
/// probe doing its job, which schemathesis counts as a server error), and the engine.
async fn gateway() -> (GatewayProcess, Engine) {
    let engine = Engine::start(EngineOptions::sqlite()).await;
    let gateway = GatewayProcess::start(&[engine.api.to_string()], &[]).await;
    gateway.wait_ready_count(1, Duration::from_secs(30)).await;
    (gateway, engine)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_admin_api_serves_the_committed_document_to_admins_only() {
    let (gateway, _engine) = gateway().await;
    let committed =
        std::fs::read_to_string(repo().join("docs/gateway-admin-openapi.json")).unwrap();
    let response = gateway
        .admin
        .get(gateway.admin_url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    assert!(
        response.text().await.unwrap() == committed,
        "the gateway serves another document than docs/gateway-admin-openapi.json; run \
         `cargo run -- openapi --gateway-admin --out docs/gateway-admin-openapi.json`"
    );
    let anonymous = reqwest::get(gateway.admin_url("/openapi.json"))
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    // A method a path does not serve: 405 naming the one it does (after the credential).
    let wrong = gateway
        .admin
        .delete(gateway.admin_url("/api/system/upstreams"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 405);
    assert_eq!(wrong.headers()["allow"], "GET");
    let body: serde_json::Value = wrong.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_every_answer_of_the_gateway_admin_api_documented() {
    let (gateway, _engine) = gateway().await;
    let token = gateway.token.clone().unwrap();
    tokio::task::block_in_place(|| {
        run(Run {
            schema: gateway.admin_url("/openapi.json"),
            base: gateway.admin_url(""),
            credential: Some(&token),
            exclude_operations: &[],
            exclude_paths: &[],
            who: "gateway admin API, the admin token",
        });
        // Without the credential the document is not served: the committed one is read.
        run(Run {
            schema: repo()
                .join("docs/gateway-admin-openapi.json")
                .display()
                .to_string(),
            base: gateway.admin_url(""),
            credential: None,
            exclude_operations: &[],
            exclude_paths: &[],
            who: "gateway admin API, no credential",
        });
    });
}
