//! Webhooks end to end: real engines (SQLite and PostgreSQL) deliver to a receiver in the test
//! (a real HTTP server on an ephemeral port; http and private addresses allowed by their
//! settings, as a test needs), which checks both signatures and records every request.
//! Backoff, timeout and poll settings are scaled down; waits poll with deadlines.

use crate::support::{eventually, sample, Backend, Engine, EngineOptions};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SECRET: &str = "receiver-shared-secret-0123456789";
const KEY: &str = "webhook-encryption-key-for-the-e2e-tests-0001";
const PATIENCE: Duration = Duration::from_secs(60);

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Ok,
    /// 500 to the first `n` requests, then 200.
    FailFirst(usize),
    /// Never answers (the connection stays open until the engine gives up).
    Hang,
    /// 429 with `Retry-After: secs` to the first `n` requests, then 200.
    TooManyFirst(usize, u64),
    /// Holds the first request open, answers the others 200.
    HangFirst,
}

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Receipt {
    at: Instant,
    delivery: String,
    event: String,
    attempt: u32,
    body: Vec<u8>,
    signature: Option<String>,
    /// `X-Aragora-Signature`, the timestamped one.
    stamped: Option<String>,
    /// Both signatures present and right (over the exact body; the stamped one fresh).
    verified: bool,
}

#[derive(Clone)]
struct Receiver {
    addr: SocketAddr,
    mode: Arc<Mutex<Mode>>,
    receipts: Arc<Mutex<Vec<Receipt>>>,
}

fn hmac_hex(parts: &[&[u8]]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    for part in parts {
        mac.update(part);
    }
    hex::encode(mac.finalize().into_bytes())
}

/// What a receiver following the README checks.
fn verify(headers: &HeaderMap, body: &[u8]) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let plain = header("x-webhook-signature") == Some(&format!("sha256={}", hmac_hex(&[body])));
    let stamped = header("x-aragora-signature").is_some_and(|value| {
        let Some((t, v1)) = value
            .strip_prefix("t=")
            .and_then(|rest| rest.split_once(",v1="))
        else {
            return false;
        };
        let fresh = t
            .parse::<i64>()
            .is_ok_and(|t| (chrono::Utc::now().timestamp() - t).abs() < 300);
        fresh && v1 == hmac_hex(&[t.as_bytes(), b".", body])
    });
    plain && stamped
}

async fn receive(
    State(receiver): State<Receiver>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> impl IntoResponse {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let count = {
        let mut receipts = receiver.receipts.lock().unwrap();
        receipts.push(Receipt {
            at: Instant::now(),
            delivery: header("x-aragora-delivery"),
            event: header("x-aragora-event"),
            attempt: header("x-aragora-attempt").parse().unwrap_or(0),
            signature: headers
                .get("x-webhook-signature")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            stamped: headers
                .get("x-aragora-signature")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            verified: verify(&headers, &body),
            body: body.to_vec(),
        });
        receipts.len()
    };
    let mode = *receiver.mode.lock().unwrap();
    match mode {
        Mode::Ok => StatusCode::OK.into_response(),
        Mode::FailFirst(n) if count <= n => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Mode::FailFirst(_) => StatusCode::OK.into_response(),
        Mode::TooManyFirst(n, secs) if count <= n => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", secs.to_string())],
        )
            .into_response(),
        Mode::TooManyFirst(..) => StatusCode::OK.into_response(),
        Mode::HangFirst if count > 1 => StatusCode::OK.into_response(),
        Mode::Hang | Mode::HangFirst => std::future::pending().await,
    }
}

impl Receiver {
    async fn start(mode: Mode) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = Self {
            addr: listener.local_addr().unwrap(),
            mode: Arc::new(Mutex::new(mode)),
            receipts: Arc::default(),
        };
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        receiver
    }

    fn url(&self) -> String {
        format!("http://{}/hook?token=receiver-token", self.addr)
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn receipts(&self) -> Vec<Receipt> {
        self.receipts.lock().unwrap().clone()
    }

    /// Deliveries by id: (event type, times received).
    fn by_delivery(&self) -> BTreeMap<String, (String, usize)> {
        let mut seen: BTreeMap<String, (String, usize)> = BTreeMap::new();
        for receipt in self.receipts() {
            seen.entry(receipt.delivery.clone())
                .or_insert((receipt.event.clone(), 0))
                .1 += 1;
        }
        seen
    }

    async fn wait_for(&self, what: &str, check: impl Fn(&[Receipt]) -> bool) -> Vec<Receipt> {
        eventually(what, PATIENCE, || async {
            let receipts = self.receipts();
            check(&receipts).then_some(receipts)
        })
        .await
    }
}

/// An engine that may deliver to the test's receiver, with scaled-down timings.
fn options(base: EngineOptions) -> EngineOptions {
    base.env("ARAGORA_WEBHOOK_ALLOW_HTTP", "true")
        .env("ARAGORA_WEBHOOK_ALLOW_PRIVATE", "true")
        .env("ARAGORA_WEBHOOK_ENCRYPTION_KEY", KEY)
        .env("ARAGORA_WEBHOOK_POLL_INTERVAL_MS", 25)
        .env("ARAGORA_WEBHOOK_BACKOFF_BASE_MS", 200)
        .env("ARAGORA_WEBHOOK_BACKOFF_MAX_MS", 5_000)
        .env("ARAGORA_OFFLINE_AGENT_LATENCY_MS", 5)
}

async fn subscribe(engine: &Engine, url: &str, events: &[&str]) -> Value {
    let (status, body) = engine
        .post_json(
            "/api/admin/webhooks",
            &json!({"url": url, "event_types": events, "secret": SECRET}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body
}

fn event_of(receipt: &Receipt) -> Value {
    serde_json::from_slice(&receipt.body).expect("a JSON body")
}

async fn every_event_of_a_debate_arrives_once_signed(options: EngineOptions) {
    let receiver = Receiver::start(Mode::Ok).await;
    let engine = Engine::start(self::options(options)).await;
    let created = subscribe(
        &engine,
        &receiver.url(),
        &["debate_start", "consensus", "debate_end", "debate_failed"],
    )
    .await;
    let text = created.to_string();
    assert!(!text.contains(SECRET), "the secret was shown: {text}");
    assert_eq!(created["has_secret"], true, "{created}");
    assert_eq!(created["state"], "active", "{created}");

    let debate = engine
        .run_debate(json!({"topic": "Café ✓ or tea 😀? \"both\"", "rounds": 1}))
        .await;
    assert_eq!(debate["status"], "completed", "{debate}");
    let id = debate["debate_id"].as_str().unwrap();
    let receipts = receiver
        .wait_for("debate_start, consensus and debate_end", |r| r.len() >= 3)
        .await;
    let events: BTreeSet<String> = receiver
        .by_delivery()
        .values()
        .map(|(event, times)| {
            assert_eq!(*times, 1, "{event} sent {times} times");
            event.clone()
        })
        .collect();
    assert_eq!(
        events,
        BTreeSet::from([
            "consensus".into(),
            "debate_end".into(),
            "debate_start".into()
        ])
    );
    for receipt in &receipts {
        assert!(receipt.verified, "bad signatures on {receipt:?}");
        let body = event_of(receipt);
        assert_eq!(body["event_type"], receipt.event.as_str(), "{body}");
        assert_eq!(body["delivery_id"], receipt.delivery.as_str(), "{body}");
        assert_eq!(body["data"]["debate_id"], id, "{body}");
        assert!(
            receipt.body.is_ascii(),
            "non-ASCII is escaped as json.dumps does"
        );
    }
    // The list shows the last delivery's state, never the secret.
    let listed = eventually(
        "the list to show a delivered delivery",
        PATIENCE,
        || async {
            let (status, list) = engine.get("/api/admin/webhooks").await;
            assert_eq!(status, 200, "{list}");
            (list["webhooks"][0]["last_delivery"]["state"] == "delivered").then_some(list)
        },
    )
    .await;
    assert!(!listed.to_string().contains(SECRET), "{listed}");
    assert_eq!(listed["webhooks"][0]["breaker"], "closed", "{listed}");
    let metrics = engine.metrics().await;
    let delivered = sample(
        &metrics,
        r#"aragora_webhook_deliveries_total{component="engine",event_type="debate_end",status="delivered"}"#,
    );
    assert_eq!(delivered, Some(1.0), "{metrics}");
}

on_both_backends!(every_event_of_a_debate_arrives_once_signed);

/// The runbook's verification snippet, exactly as the Operations Runbook prints it.
const RUNBOOK_SNIPPET: &str = r#"import hmac
import hashlib
import json

def verify_signature(payload: dict, signature: str, secret: str) -> bool:
    expected = "sha256=" + hmac.new(
        secret.encode(),
        json.dumps(payload).encode(),
        hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(expected, signature)
"#;

/// The snippet run by python3 as written, on a body file and a signature.
fn python_verifies(body: &[u8], signature: &str) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let body_path = dir.path().join("body.json");
    std::fs::write(&body_path, body).unwrap();
    let script = format!(
        "{RUNBOOK_SNIPPET}\nimport sys\npayload = json.loads(open(sys.argv[1], 'rb').read())\nsys.exit(0 if verify_signature(payload, sys.argv[2], sys.argv[3]) else 1)\n"
    );
    let status = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&body_path)
        .arg(signature)
        .arg(SECRET)
        .status()
        .expect("python3 runs");
    status.success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runbooks_python_snippet_accepts_a_delivery() {
    let receiver = Receiver::start(Mode::Ok).await;
    let engine = Engine::start(options(EngineOptions::sqlite())).await;
    subscribe(&engine, &receiver.url(), &["debate_start"]).await;
    // Non-ASCII, an astral character, quotes, a backslash and a control character: what
    // json.dumps escapes.
    engine
        .start_debate(json!({"topic": "Ünïcode ✓ 😀 \"q\" \\ tab\there", "rounds": 1}))
        .await;
    let receipts = receiver.wait_for("debate_start", |r| !r.is_empty()).await;
    let receipt = &receipts[0];
    let signature = receipt.signature.clone().expect("a signature header");
    assert!(
        python_verifies(&receipt.body, &signature),
        "the runbook's snippet refused {:?}",
        String::from_utf8_lossy(&receipt.body)
    );
    let mut forged = signature.clone();
    forged.replace_range(7..8, if &signature[7..8] == "0" { "1" } else { "0" });
    assert!(
        !python_verifies(&receipt.body, &forged),
        "a forged signature passed"
    );
}

/// The README's verifier of the exact bytes, as the README prints it.
fn readme_verifier() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let after = readme
        .split_once("Verifying the exact bytes:")
        .expect("the README's verification section")
        .1;
    let code = after
        .split_once("```python\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .expect("a python block")
        .0;
    code.to_string()
}

/// The README's `verify` run by python3 on a delivery's body and its `X-Aragora-Signature`.
fn readme_verifies(body: &[u8], stamped: &str) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let body_path = dir.path().join("body.json");
    std::fs::write(&body_path, body).unwrap();
    let script = format!(
        "{}\nimport sys\nbody = open(sys.argv[1], 'rb').read()\nsys.exit(0 if verify(body, {{'X-Aragora-Signature': sys.argv[2]}}, sys.argv[3]) else 1)\n",
        readme_verifier()
    );
    std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&body_path)
        .arg(stamped)
        .arg(SECRET)
        .status()
        .expect("python3 runs")
        .success()
}

/// A failed debate and a failed DR drill reach a receiver subscribed to `debate_failed` and
/// `drill_failed`; the drill's body (with its measured RTO and RPO, floats) passes the
/// runbook's `json.dumps` verifier and the README's verifier of the exact bytes, run by python3.
async fn failed_debates_and_drills_are_delivered(options: EngineOptions) {
    let receiver = Receiver::start(Mode::Ok).await;
    // Agents that think 200 ms per call: the debate after the backup outlasts the RPO target.
    let options = self::options(options).env("ARAGORA_OFFLINE_AGENT_LATENCY_MS", 200);
    let engine = Engine::start(replica_of(&options, None)).await;
    subscribe(&engine, &receiver.url(), &["debate_failed", "drill_failed"]).await;

    let failed = engine.run_failing_debate("Will every agent fail?").await;
    let receipts = receiver
        .wait_for("the debate_failed delivery", |r| !r.is_empty())
        .await;
    assert_eq!(receipts[0].event, "debate_failed");
    assert!(receipts[0].verified, "signed like every delivery");
    let body = event_of(&receipts[0]);
    assert_eq!(body["data"]["debate_id"], failed["debate_id"], "{body}");
    assert_eq!(body["data"]["type"], "debate_end", "{body}");
    assert_eq!(body["data"]["data"]["outcome"], "failed", "{body}");

    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut command = crate::support::command_on(&options, &engine.data_dir);
        command.args(args).envs(env.iter().copied());
        tokio::task::block_in_place(|| command.output().expect("run aragora"))
    };
    let before = engine
        .run_debate(json!({"topic": "In the backup", "rounds": 1}))
        .await;
    assert_eq!(before["status"], "completed", "{before}");
    let backup = run(&["backup", "create"], &[]);
    assert!(
        backup.status.success(),
        "{}",
        crate::support::describe_output(&backup)
    );
    let after = engine
        .run_debate(json!({"topic": "Written after the backup", "rounds": 4}))
        .await;
    assert_eq!(after["status"], "completed", "{after}");
    let drill = run(
        &["drill", "run", "--output", "json"],
        &[("ARAGORA_RPO_TARGET_SECS", "1")],
    );
    assert_eq!(
        drill.status.code(),
        Some(1),
        "{}",
        crate::support::describe_output(&drill)
    );
    let report: Value = serde_json::from_slice(&drill.stdout).unwrap();
    let receipts = receiver
        .wait_for("the drill_failed delivery", |r| {
            r.iter().any(|r| r.event == "drill_failed")
        })
        .await;
    let delivery = receipts.iter().find(|r| r.event == "drill_failed").unwrap();
    assert!(delivery.verified, "signed like every delivery");
    let body = event_of(delivery);
    assert_eq!(body["data"]["drill_id"], report["id"], "{body}");
    assert_eq!(body["data"]["status"], "failed", "{body}");
    let rpo = body["data"]["rpo_seconds"]
        .as_f64()
        .expect("a measured RPO");
    assert!(rpo > 1.0 && rpo.fract() != 0.0, "{body}");
    assert!(
        python_verifies(&delivery.body, delivery.signature.as_deref().unwrap()),
        "the runbook's snippet refused {:?}",
        String::from_utf8_lossy(&delivery.body)
    );
    let stamped = delivery.stamped.as_deref().expect("X-Aragora-Signature");
    assert!(
        readme_verifies(&delivery.body, stamped),
        "the README's verify refused {:?} with {stamped}",
        String::from_utf8_lossy(&delivery.body)
    );
    let mut tampered = delivery.body.clone();
    let last = tampered.len() - 2;
    tampered[last] = if tampered[last] == b'0' { b'1' } else { b'0' };
    assert!(
        !readme_verifies(&tampered, stamped),
        "the README's verify took a changed body"
    );
}

on_both_backends!(failed_debates_and_drills_are_delivered);

async fn a_failing_receiver_gets_retries_with_growing_gaps(options: EngineOptions) {
    let receiver = Receiver::start(Mode::FailFirst(3)).await;
    let engine = Engine::start(self::options(options)).await;
    let hook = subscribe(&engine, &receiver.url(), &["debate_start"]).await;
    engine
        .start_debate(json!({"topic": "retries", "rounds": 1}))
        .await;
    let receipts = receiver
        .wait_for("three 500s and a 200", |r| r.len() >= 4)
        .await;
    assert!(
        receipts.iter().all(|r| r.delivery == receipts[0].delivery),
        "one delivery, retried"
    );
    let attempts: Vec<u32> = receipts.iter().map(|r| r.attempt).collect();
    assert_eq!(attempts, [1, 2, 3, 4]);
    let gaps: Vec<Duration> = receipts.windows(2).map(|w| w[1].at - w[0].at).collect();
    // 200 ms doubling (plus up to 10 % jitter and a 25 ms poll).
    for (gap, least) in gaps.iter().zip([200, 400, 800]) {
        assert!(*gap >= Duration::from_millis(least), "gaps {gaps:?}");
    }
    assert!(
        gaps[0] < gaps[1] && gaps[1] < gaps[2],
        "gaps do not grow: {gaps:?}"
    );
    let path = format!("/api/admin/webhooks/{}", hook["id"].as_str().unwrap());
    let shown = eventually(
        "the delivery to be recorded as delivered",
        PATIENCE,
        || async {
            let (_, shown) = engine.get(&path).await;
            (shown["last_delivery"]["state"] == "delivered").then_some(shown)
        },
    )
    .await;
    assert_eq!(shown["last_delivery"]["attempts"], 4, "{shown}");
    let metrics = engine.metrics().await;
    let retries = sample(
        &metrics,
        r#"aragora_webhook_retries_total{component="engine",event_type="debate_start"}"#,
    );
    assert_eq!(retries, Some(3.0), "{metrics}");
}

on_both_backends!(a_failing_receiver_gets_retries_with_growing_gaps);

async fn a_silent_receiver_is_dead_lettered_then_retried_by_the_admin(options: EngineOptions) {
    let receiver = Receiver::start(Mode::Hang).await;
    let options = self::options(options)
        .env("ARAGORA_WEBHOOK_TIMEOUT_MS", 300)
        .env("ARAGORA_WEBHOOK_MAX_RETRIES", 1)
        .env("ARAGORA_WEBHOOK_BACKOFF_BASE_MS", 50);
    let engine = Engine::start(options).await;
    subscribe(&engine, &receiver.url(), &["debate_start"]).await;
    engine
        .start_debate(json!({"topic": "silence", "rounds": 1}))
        .await;
    let dead = eventually("the delivery to be dead-lettered", PATIENCE, || async {
        let (status, dead) = engine.get("/api/admin/webhooks/dead-letters").await;
        assert_eq!(status, 200, "{dead}");
        (dead["total"] == 1).then_some(dead)
    })
    .await;
    let delivery = &dead["deliveries"][0];
    assert_eq!(delivery["attempts"], 2, "{dead}");
    assert_eq!(delivery["state"], "dead", "{dead}");
    let error = delivery["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("no answer within 300 ms"), "{error}");
    assert!(
        !error.contains("receiver-token"),
        "the URL's query leaked: {error}"
    );
    assert_eq!(
        receiver.receipts().len(),
        2,
        "the first attempt and one retry"
    );
    let metrics = engine.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            r#"aragora_webhook_dead_letter_queue_depth{component="engine"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            r#"aragora_webhook_dead_lettered_total{component="engine",event_type="debate_start"}"#
        ),
        Some(1.0),
        "{metrics}"
    );

    let (status, errors) = engine.get("/api/system/errors").await;
    assert_eq!(status, 200, "{errors}");
    let noted = errors["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|entry| entry["kind"] == "webhook_failed")
        .unwrap_or_else(|| panic!("no webhook_failed entry in {errors}"));
    let message = noted["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(delivery["id"].as_str().unwrap()) && message.contains("dead-lettered"),
        "{message}"
    );
    assert!(
        !message.contains("receiver-token"),
        "the URL's query leaked: {message}"
    );

    receiver.set(Mode::Ok);
    let id = delivery["id"].as_str().unwrap();
    let retry = format!("/api/admin/webhooks/deliveries/{id}/retry");
    let (status, queued) = engine.post_json(&retry, &json!({})).await;
    assert_eq!(status, 202, "{queued}");
    assert_eq!(queued["state"], "pending", "{queued}");
    receiver
        .wait_for("the retried delivery", |r| {
            r.len() >= 3 && r[2].delivery == id
        })
        .await;
    eventually("the dead-letter queue to empty", PATIENCE, || async {
        let (_, dead) = engine.get("/api/admin/webhooks/dead-letters").await;
        (dead["total"] == 0).then_some(())
    })
    .await;
    let (status, again) = engine.post_json(&retry, &json!({})).await;
    assert_eq!(status, 409, "{again}");
    assert_eq!(again["error"]["code"], "conflict", "{again}");
    let (status, unknown) = engine
        .post_json("/api/admin/webhooks/deliveries/dlv_nope/retry", &json!({}))
        .await;
    assert_eq!(status, 404, "{unknown}");
}

on_both_backends!(a_silent_receiver_is_dead_lettered_then_retried_by_the_admin);

/// A receiver that hangs until its timeout holds its endpoint's share of the replica's delivery
/// slots, not all of them: another receiver's delivery goes out at once, long before the hung
/// attempts time out, and the hung receiver's further deliveries wait unattempted.
async fn a_hanging_receiver_does_not_hold_up_another(options: EngineOptions) {
    let hanging = Receiver::start(Mode::Hang).await;
    let healthy = Receiver::start(Mode::Ok).await;
    let timeout = Duration::from_secs(30);
    let options = self::options(options)
        .env("ARAGORA_WEBHOOK_TIMEOUT_MS", timeout.as_millis())
        .env("ARAGORA_WEBHOOK_CONCURRENCY", 4)
        .env("ARAGORA_WEBHOOK_CONCURRENCY_PER_ENDPOINT", 2);
    let engine = Engine::start(options).await;
    subscribe(&engine, &hanging.url(), &["debate_start"]).await;
    for n in 0..4 {
        engine
            .start_debate(json!({"topic": format!("hung {n}"), "rounds": 1}))
            .await;
    }
    // Four due deliveries to the hung receiver: without a share per endpoint they would take
    // all four slots for the whole timeout.
    hanging
        .wait_for("the hung receiver's share in flight", |r| r.len() >= 2)
        .await;
    subscribe(&engine, &healthy.url(), &["debate_start"]).await;
    engine
        .start_debate(json!({"topic": "healthy", "rounds": 1}))
        .await;
    eventually(
        "the healthy receiver's delivery while the others hang",
        timeout / 3,
        || async { (!healthy.receipts().is_empty()).then_some(()) },
    )
    .await;
    assert_eq!(
        hanging.receipts().len(),
        2,
        "the hung receiver got more than its share of 2 at once"
    );
}

on_both_backends!(a_hanging_receiver_does_not_hold_up_another);

/// Each bad subscription, its status, and words the message must hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_subscriptions_are_refused_with_what_to_fix() {
    // Production defaults: https only, no private addresses.
    let engine = Engine::start(EngineOptions::sqlite()).await;
    let good = |url: &str| json!({"url": url, "event_types": ["debate_end"]});
    let cases: Vec<(Value, u16, &str)> = vec![
        (good("https://127.0.0.1/hook"), 422, "loopback"),
        (
            good("https://localhost:8443/hook"),
            422,
            "ARAGORA_WEBHOOK_ALLOW_PRIVATE",
        ),
        (good("https://10.1.2.3/hook"), 422, "private"),
        (good("https://169.254.169.254/latest"), 422, "link-local"),
        (good("https://[::1]/hook"), 422, "loopback"),
        (good("https://[fd00::1]/hook"), 422, "unique local"),
        (
            good("http://93.184.216.34/hook"),
            422,
            "ARAGORA_WEBHOOK_ALLOW_HTTP",
        ),
        (good("ftp://93.184.216.34/hook"), 422, "https://"),
        (good("not a url"), 422, "not valid"),
        (good("https://user:pw@93.184.216.34/"), 422, "password"),
        (json!({"event_types": ["debate_end"]}), 422, "\"url\""),
        (
            json!({"url": "https://93.184.216.34/", "event_types": ["debate_over"]}),
            422,
            "debate_over",
        ),
        (
            json!({"url": "https://93.184.216.34/", "event_types": []}),
            422,
            "non-empty",
        ),
        (
            json!({"url": "https://93.184.216.34/", "event_types": ["debate_end"], "secret": "short"}),
            422,
            "16 to 256",
        ),
        (
            json!({"url": "https://93.184.216.34/", "event_types": ["debate_end"], "colour": "red"}),
            422,
            "colour",
        ),
        (
            json!({"url": "https://93.184.216.34/", "event_types": "debate_end"}),
            422,
            "event_types",
        ),
    ];
    for (body, status, words) in cases {
        let (got, answer) = engine.post_json("/api/admin/webhooks", &body).await;
        assert_eq!(got, status, "{body} → {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(words),
            "{body} → {message:?} lacks {words:?}"
        );
    }
    let (status, list) = engine.get("/api/admin/webhooks").await;
    assert_eq!(status, 200);
    assert_eq!(
        list["webhooks"],
        json!([]),
        "a refused subscription was stored: {list}"
    );
    // Admins only.
    let anonymous = reqwest::Client::new();
    let refused = anonymous
        .post(engine.url("/api/admin/webhooks"))
        .json(&good("https://93.184.216.34/"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let (status, missing) = engine.get("/api/admin/webhooks/wh_nope").await;
    assert_eq!(status, 404, "{missing}");
    // A public address is accepted, and can be paused, resumed and deleted.
    let (status, created) = engine
        .post_json("/api/admin/webhooks", &good("https://93.184.216.34/hook"))
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["has_secret"], false);
    let path = format!("/api/admin/webhooks/{}", created["id"].as_str().unwrap());
    let (_, paused) = engine.post_json(&format!("{path}/pause"), &json!({})).await;
    assert_eq!(paused["state"], "paused", "{paused}");
    let (_, resumed) = engine
        .post_json(&format!("{path}/resume"), &json!({}))
        .await;
    assert_eq!(resumed["state"], "active", "{resumed}");
    let deleted = engine.http.delete(engine.url(&path)).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    let (status, _) = engine.get(&path).await;
    assert_eq!(status, 404);
}

/// Egress is checked at delivery too: a subscription to a loopback receiver made while private
/// addresses were allowed, then the engine restarted with them refused, gets its deliveries
/// dead-lettered with the reason and the setting, and the receiver sees nothing.
async fn a_private_receiver_is_refused_at_delivery_after_the_setting_changed(
    options: EngineOptions,
) {
    let receiver = Receiver::start(Mode::Ok).await;
    let options = self::options(options);
    let mut engine = Engine::start(replica_of(&options, None)).await;
    subscribe(&engine, &receiver.url(), &["debate_start"]).await;
    engine.signal(libc::SIGTERM);
    eventually("the engine to stop", PATIENCE, || {
        let exited = engine.exited().is_some();
        async move { exited.then_some(()) }
    })
    .await;
    let strict = replica_of(&options, None).env("ARAGORA_WEBHOOK_ALLOW_PRIVATE", "false");
    let engine = Engine::start(engine.restart_options(strict)).await;
    engine
        .start_debate(json!({"topic": "into the internal network?", "rounds": 1}))
        .await;
    let dead = eventually("the delivery to be dead-lettered", PATIENCE, || async {
        let (_, dead) = engine.get("/api/admin/webhooks/dead-letters").await;
        (dead["total"] == 1).then_some(dead)
    })
    .await;
    let delivery = &dead["deliveries"][0];
    assert_eq!(
        delivery["attempts"], 1,
        "refused at once, not retried: {dead}"
    );
    let error = delivery["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("127.0.0.1")
            && error.contains("loopback")
            && error.contains("ARAGORA_WEBHOOK_ALLOW_PRIVATE"),
        "{error}"
    );
    assert!(
        !error.contains("receiver-token"),
        "the URL's query leaked: {error}"
    );
    assert!(
        receiver.receipts().is_empty(),
        "nothing reached the receiver"
    );
}

on_both_backends!(a_private_receiver_is_refused_at_delivery_after_the_setting_changed);

async fn a_delivery_survives_the_engine_killed_mid_delivery(options: EngineOptions) {
    let receiver = Receiver::start(Mode::HangFirst).await;
    // The lease of a delivery lasts the timeout plus 10 s; a short timeout frees it sooner.
    let options = self::options(options).env("ARAGORA_WEBHOOK_TIMEOUT_MS", 1_000);
    let (backend, env) = (options.backend.clone(), options.env.clone());
    let mut engine = Engine::start(options).await;
    subscribe(&engine, &receiver.url(), &["debate_start", "debate_end"]).await;
    engine
        .start_debate(json!({"topic": "kill -9", "rounds": 1}))
        .await;
    receiver
        .wait_for("the first delivery to be in flight", |r| !r.is_empty())
        .await;
    engine.signal(libc::SIGKILL);
    eventually("the engine to die", PATIENCE, || {
        let exited = engine.exited().is_some();
        async move { exited.then_some(()) }
    })
    .await;
    let again = EngineOptions {
        backend,
        env,
        data_dir: None,
        temp: None,
        bearer: None,
    };
    let engine = Engine::start(engine.restart_options(again)).await;
    let seen = eventually(
        "debate_start and debate_end, delivered",
        Duration::from_secs(90),
        || async {
            let seen = receiver.by_delivery();
            let events: BTreeSet<&str> = seen.values().map(|(e, _)| e.as_str()).collect();
            let first = receiver.receipts()[0].delivery.clone();
            (events == BTreeSet::from(["debate_start", "debate_end"]) && seen[&first].1 >= 2)
                .then_some(seen)
        },
    )
    .await;
    // At least once: the interrupted one again (same id), every event once by id.
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(receiver.receipts().iter().all(|r| r.verified));
    let (_, list) = engine.get("/api/admin/webhooks").await;
    assert_eq!(list["webhooks"].as_array().map(Vec::len), Some(1), "{list}");
}

on_both_backends!(a_delivery_survives_the_engine_killed_mid_delivery);

/// Options like `options` for another engine: a replica on the same database as `first` when
/// given (for SQLite, the same file in its data directory).
fn replica_of(options: &EngineOptions, first: Option<&Engine>) -> EngineOptions {
    EngineOptions {
        backend: options.backend.clone(),
        env: options.env.clone(),
        data_dir: first.map(|engine| engine.data_dir.clone()),
        temp: None,
        bearer: options.bearer.clone(),
    }
}

/// The test's own connection to the database of `engine`, started with `options`.
async fn database(options: &EngineOptions, engine: &Engine) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    let url = match &options.backend {
        Backend::Sqlite => format!(
            "sqlite://{}?mode=rw",
            engine.data_dir.join("aragora.db").display()
        ),
        Backend::Postgres(url) => url.clone(),
    };
    sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .expect("the engines' database")
}

async fn count(db: &sqlx::AnyPool, sql: &str) -> i64 {
    let row = sqlx::query(sql).fetch_one(db).await.unwrap();
    sqlx::Row::get::<i64, _>(&row, 0)
}

async fn three_replicas_deliver_each_event_once(options: EngineOptions) {
    let receiver = Receiver::start(Mode::Ok).await;
    let options = self::options(options).env("ARAGORA_WEBHOOK_POLL_INTERVAL_MS", 10);
    let first = Engine::start(replica_of(&options, None)).await;
    let (second, third) = tokio::join!(
        Engine::start(replica_of(&options, Some(&first))),
        Engine::start(replica_of(&options, Some(&first)))
    );
    subscribe(&first, &receiver.url(), &["debate_start", "debate_end"]).await;
    let replicas = [&first, &second, &third];
    for i in 0..6 {
        replicas[i % 3]
            .start_debate(json!({"topic": format!("replicas {i}"), "rounds": 1}))
            .await;
    }
    let db = database(&options, &first).await;
    eventually("all 12 deliveries delivered", PATIENCE, || {
        let db = db.clone();
        async move {
            let delivered = count(
                &db,
                "SELECT COUNT(*) FROM webhook_deliveries WHERE state = 'delivered'",
            )
            .await;
            (delivered == 12).then_some(())
        }
    })
    .await;
    // Delivered rows are never claimed again: what the receiver has now is all it gets.
    let seen = receiver.by_delivery();
    assert_eq!(seen.len(), 12, "{seen:?}");
    let twice: Vec<_> = seen.iter().filter(|(_, (_, times))| *times != 1).collect();
    assert!(twice.is_empty(), "sent more than once: {twice:?}");
}

on_both_backends!(three_replicas_deliver_each_event_once);

fn breaker_series(receiver: &Receiver) -> String {
    format!(
        r#"aragora_webhook_circuit_breaker_state{{component="engine",endpoint="http://{}"}}"#,
        receiver.addr
    )
}

/// The breaker's gauge is the state as of the scrape: open, then half-open when the cooldown
/// ends though no delivery ran since (the one delivery is dead-lettered), and gone with the
/// last subscription to its endpoint.
async fn the_breaker_gauge_is_the_state_at_scrape_time(options: EngineOptions) {
    let failing = Receiver::start(Mode::FailFirst(usize::MAX)).await;
    let engine = Engine::start(
        self::options(options)
            .env("ARAGORA_WEBHOOK_BACKOFF_BASE_MS", 50)
            .env("ARAGORA_WEBHOOK_MAX_RETRIES", 1)
            .env("ARAGORA_WEBHOOK_BREAKER_THRESHOLD", 2)
            .env("ARAGORA_WEBHOOK_BREAKER_COOLDOWN_MS", 2_000),
    )
    .await;
    let hook = subscribe(&engine, &failing.url(), &["debate_start"]).await;
    let series = breaker_series(&failing);
    assert_eq!(
        sample(&engine.metrics().await, &series),
        Some(0.0),
        "a series from the subscription on"
    );
    engine
        .start_debate(json!({"topic": "down for good", "rounds": 1}))
        .await;
    eventually("the breaker to open", PATIENCE, || async {
        (sample(&engine.metrics().await, &series) == Some(1.0)).then_some(())
    })
    .await;
    eventually("the delivery to be dead-lettered", PATIENCE, || async {
        let (_, dead) = engine.get("/api/admin/webhooks/dead-letters").await;
        (dead["total"] == 1).then_some(())
    })
    .await;
    eventually(
        "the breaker to be half-open once its cooldown ends",
        PATIENCE,
        || async { (sample(&engine.metrics().await, &series) == Some(2.0)).then_some(()) },
    )
    .await;
    let path = format!("/api/admin/webhooks/{}", hook["id"].as_str().unwrap());
    let (_, shown) = engine.get(&path).await;
    assert_eq!(shown["breaker"], "half_open", "{shown}");
    assert_eq!(failing.receipts().len(), 2, "nothing was sent since");
    let deleted = engine.http.delete(engine.url(&path)).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    let metrics = engine.metrics().await;
    assert_eq!(
        sample(&metrics, &series),
        None,
        "the series outlived its subscription: {metrics}"
    );
}

on_both_backends!(the_breaker_gauge_is_the_state_at_scrape_time);

/// The breaker is the database's: failures on replica A open it for replica B, which never
/// sent anything, and B leaves the receiver alone too.
async fn a_breaker_opened_on_one_replica_is_open_on_another(options: EngineOptions) {
    let failing = Receiver::start(Mode::FailFirst(usize::MAX)).await;
    let options = self::options(options)
        .env("ARAGORA_WEBHOOK_BACKOFF_BASE_MS", 50)
        .env("ARAGORA_WEBHOOK_MAX_RETRIES", 20)
        .env("ARAGORA_WEBHOOK_BREAKER_THRESHOLD", 3)
        .env("ARAGORA_WEBHOOK_BREAKER_COOLDOWN_MS", 60_000);
    let a = Engine::start(replica_of(&options, None)).await;
    let hook = subscribe(&a, &failing.url(), &["debate_start"]).await;
    a.start_debate(json!({"topic": "down on a", "rounds": 1}))
        .await;
    let path = format!("/api/admin/webhooks/{}", hook["id"].as_str().unwrap());
    eventually("A to see the breaker open", PATIENCE, || async {
        let (_, shown) = a.get(&path).await;
        (shown["breaker"] == "open").then_some(())
    })
    .await;
    assert_eq!(failing.receipts().len(), 3, "three failures open it");
    let b = Engine::start(replica_of(&options, Some(&a))).await;
    let (status, shown) = b.get(&path).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["breaker"], "open", "B sees A's breaker: {shown}");
    let metrics = b.metrics().await;
    assert_eq!(
        sample(&metrics, &breaker_series(&failing)),
        Some(1.0),
        "{metrics}"
    );
    // A new delivery, whichever replica takes it, is put back unattempted.
    b.start_debate(json!({"topic": "down on b", "rounds": 1}))
        .await;
    let db = database(&options, &a).await;
    eventually("the new delivery to be put back unattempted", PATIENCE, || {
        let db = db.clone();
        async move {
            let deferred = count(
                &db,
                "SELECT COUNT(*) FROM webhook_deliveries WHERE attempts = 0 AND next_attempt_at_ms > created_at_ms + 30000",
            )
            .await;
            (deferred == 1).then_some(())
        }
    })
    .await;
    assert_eq!(failing.receipts().len(), 3, "no replica sent more");
}

on_both_backends!(a_breaker_opened_on_one_replica_is_open_on_another);

/// A half-open breaker lets one delivery through, however many wait and however many replicas
/// want to send them: after the first cooldown the receiver sees one request per cooldown.
async fn half_open_lets_one_trial_through_across_replicas(options: EngineOptions) {
    let failing = Receiver::start(Mode::FailFirst(usize::MAX)).await;
    let options = self::options(options)
        .env("ARAGORA_WEBHOOK_BACKOFF_BASE_MS", 50)
        .env("ARAGORA_WEBHOOK_BACKOFF_MAX_MS", 200)
        .env("ARAGORA_WEBHOOK_MAX_RETRIES", 50)
        .env("ARAGORA_WEBHOOK_BREAKER_THRESHOLD", 2)
        .env("ARAGORA_WEBHOOK_BREAKER_COOLDOWN_MS", 1_500);
    let a = Engine::start(replica_of(&options, None)).await;
    let b = Engine::start(replica_of(&options, Some(&a))).await;
    subscribe(&a, &failing.url(), &["debate_start"]).await;
    for (i, engine) in [&a, &b, &a, &b].into_iter().enumerate() {
        engine
            .start_debate(json!({"topic": format!("queued {i}"), "rounds": 1}))
            .await;
    }
    let long = Duration::from_millis(1_000);
    let receipts = eventually(
        "three trials after the breaker opened",
        Duration::from_secs(90),
        || async {
            let receipts = failing.receipts();
            let long_gaps = receipts
                .windows(2)
                .filter(|w| w[1].at - w[0].at >= long)
                .count();
            (long_gaps >= 4).then_some(receipts)
        },
    )
    .await;
    let gaps: Vec<Duration> = receipts.windows(2).map(|w| w[1].at - w[0].at).collect();
    let opened = gaps.iter().position(|gap| *gap >= long).unwrap();
    assert!(
        gaps[opened..].iter().all(|gap| *gap >= long),
        "more than one delivery per half-open breaker: gaps {gaps:?}"
    );
    // Two failures open it, for both replicas: the 4 queued deliveries may all have been in
    // flight by then, and a retry or two racing the second failure, never 2 per replica more.
    assert!(
        opened < 6,
        "the breaker opened after {} requests: gaps {gaps:?}",
        opened + 1
    );
}

on_both_backends!(half_open_lets_one_trial_through_across_replicas);

/// `aragora webhooks` from a shell against the running engine: add (with a secret file), list,
/// pause, the dead-letter queue, delete; a refused subscription exits 2 with the API's reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_manages_subscriptions_through_the_admin_api() {
    let receiver = Receiver::start(Mode::Ok).await;
    let engine = Engine::start(options(EngineOptions::sqlite())).await;
    let secret_file = engine.data_dir.join("receiver.secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let cli = |args: &[&str]| {
        let mut command = crate::support::aragora_command();
        command
            .env("ARAGORA_DATA_DIR", &engine.data_dir)
            .env("ARAGORA_API_TOKEN", engine.token.as_deref().unwrap())
            .arg("webhooks")
            .args(args)
            .args(["--url", &engine.url("")]);
        let output = command.output().unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).to_string(),
            String::from_utf8_lossy(&output.stderr).to_string(),
        )
    };
    let url = receiver.url();
    let secret = secret_file.display().to_string();
    let (code, out, err) = cli(&[
        "add",
        &url,
        "--event",
        "debate_end",
        "--event",
        "consensus",
        "--secret-file",
        &secret,
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    let id = out.split_whitespace().next().unwrap().to_string();
    assert!(
        out.contains("active")
            && out.contains("debate_end,consensus")
            && out.contains("signed=true"),
        "{out}"
    );
    assert!(
        !out.contains(SECRET) && !err.contains(SECRET),
        "the secret is never echoed"
    );

    let (code, out, _) = cli(&["list"]);
    assert_eq!(code, Some(0));
    assert!(out.contains(&id) && out.contains(&url), "{out}");
    let (code, out, _) = cli(&["list", "--output", "json"]);
    assert_eq!(code, Some(0));
    let listed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed[0]["id"], id.as_str(), "{listed}");

    let (code, out, _) = cli(&["pause", &id]);
    assert_eq!(code, Some(0));
    assert!(out.contains("paused"), "{out}");
    let (_, shown) = engine.get(&format!("/api/admin/webhooks/{id}")).await;
    assert_eq!(
        shown["state"], "paused",
        "the engine has it paused: {shown}"
    );

    // Paused, it is sent nothing (nor queued): a debate ending now never reaches it.
    let quiet = engine
        .run_debate(json!({"topic": "while paused", "rounds": 1}))
        .await;
    let (code, out, err) = cli(&["resume", &id]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("active"), "{out}");
    let heard = engine
        .run_debate(json!({"topic": "after resuming", "rounds": 1}))
        .await;
    let receipts = receiver
        .wait_for("the resumed subscription's debate_end", |r| {
            r.iter().any(|r| {
                r.event == "debate_end" && event_of(r)["data"]["debate_id"] == heard["debate_id"]
            })
        })
        .await;
    assert!(
        receipts
            .iter()
            .all(|r| event_of(r)["data"]["debate_id"] != quiet["debate_id"]),
        "a delivery of the debate that ended while paused: {receipts:?}"
    );

    let (code, out, _) = cli(&["dead-letters"]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("0 dead deliveries") && out.contains("empty"),
        "{out}"
    );
    let (code, out, err) = cli(&["retry", "dlv_nope"]);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(
        err.contains("dlv_nope"),
        "the refusal names the delivery: {err}"
    );

    let (code, out, err) = cli(&["add", &url, "--event", "debate_over"]);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(
        err.contains("debate_over") && err.contains("refused"),
        "{err}"
    );

    let (code, out, _) = cli(&["delete", &id]);
    assert_eq!(code, Some(0));
    assert!(out.contains("deleted"), "{out}");
    let (code, out, _) = cli(&["list"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("no webhook subscriptions"), "{out}");
}

/// A 429's `Retry-After` is honoured (the retry waits that long, not the 200 ms backoff), and a
/// receiver failing over and over opens its endpoint's breaker: deliveries then wait out the
/// cooldown unattempted, and the breaker's gauge says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_and_a_failing_endpoint_opens_its_breaker() {
    let receiver = Receiver::start(Mode::TooManyFirst(1, 2)).await;
    let engine = Engine::start(options(EngineOptions::sqlite())).await;
    subscribe(&engine, &receiver.url(), &["debate_start"]).await;
    engine
        .start_debate(json!({"topic": "slow down", "rounds": 1}))
        .await;
    let receipts = receiver
        .wait_for("a 429 and the retry", |r| r.len() >= 2)
        .await;
    let gap = receipts[1].at - receipts[0].at;
    assert!(
        gap >= Duration::from_secs(2),
        "the retry came {gap:?} after a 429 asking for 2 s"
    );

    let failing = Receiver::start(Mode::FailFirst(usize::MAX)).await;
    let engine = Engine::start(
        options(EngineOptions::sqlite())
            .env("ARAGORA_WEBHOOK_BACKOFF_BASE_MS", 50)
            .env("ARAGORA_WEBHOOK_MAX_RETRIES", 10)
            .env("ARAGORA_WEBHOOK_BREAKER_THRESHOLD", 2)
            .env("ARAGORA_WEBHOOK_BREAKER_COOLDOWN_MS", 3_000),
    )
    .await;
    subscribe(&engine, &failing.url(), &["debate_start"]).await;
    engine
        .start_debate(json!({"topic": "down", "rounds": 1}))
        .await;
    let endpoint = format!("http://{}", failing.addr);
    let series = format!(
        r#"aragora_webhook_circuit_breaker_state{{component="engine",endpoint="{endpoint}"}}"#
    );
    eventually("the breaker to open", PATIENCE, || async {
        (sample(&engine.metrics().await, &series) == Some(1.0)).then_some(())
    })
    .await;
    let receipts = failing
        .wait_for("two failures and a trial after the cooldown", |r| {
            r.len() >= 3
        })
        .await;
    let gaps: Vec<Duration> = receipts.windows(2).map(|w| w[1].at - w[0].at).collect();
    assert!(
        gaps[1] >= Duration::from_secs(3),
        "after the second failure the delivery waited out the 3 s cooldown: {gaps:?}"
    );
}

/// control's Alertmanager sink queues one `slo_alert` delivery per alert in the engines'
/// database, which the engine delivers; a database it cannot reach is a 503 (Alertmanager
/// sends the notification again) that never shows the database password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_reaching_controls_sink_are_delivered_as_slo_alert_webhooks() {
    use crate::support::process::{address, Process};
    let receiver = Receiver::start(Mode::Ok).await;
    let engine = Engine::start(options(EngineOptions::sqlite())).await;
    subscribe(&engine, &receiver.url(), &["slo_alert"]).await;
    let token_file = engine.data_dir.join("sink.token");
    std::fs::write(&token_file, "sink-token-of-this-test\n").unwrap();
    let start_control = |env: &[(&str, &str)], name: &str| {
        let mut command = crate::support::aragora_command();
        command
            .args(["control", "--listen", "127.0.0.1:0"])
            .env("ARAGORA_DATA_DIR", &engine.data_dir)
            .env("ARAGORA_BACKUP_SCHEDULE", "")
            .env("ARAGORA_DRILL_SCHEDULE", "")
            .env("ARAGORA_ALERT_WEBHOOK_TOKEN_FILE", &token_file)
            .envs(env.iter().copied());
        let mut control = Process::spawn(
            &mut command,
            &engine.data_dir.join(format!("{name}.log")),
            &engine.data_dir.join(format!("{name}.out")),
        );
        let sink = address(&control.announcement("aragora control listening "), "http");
        (control, format!("http://{sink}/api/alerts/webhook"))
    };
    let notification = json!({"version": "4", "status": "firing", "receiver": "pager",
        "alerts": [{"status": "firing",
            "labels": {"alertname": "AragoraAvailabilitySLOBreach", "severity": "critical"},
            "annotations": {"summary": "availability burning"},
            "startsAt": "2026-12-02T07:00:00Z"}]});
    let http = reqwest::Client::new();
    let (_control, sink) = start_control(&[], "control");
    let answer = http
        .post(&sink)
        .bearer_auth("sink-token-of-this-test")
        .json(&notification)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let answered: Value = answer.json().await.unwrap();
    assert_eq!(answered["webhook_deliveries"], 1, "{answered}");
    let receipts = receiver
        .wait_for("the slo_alert delivery", |r| !r.is_empty())
        .await;
    assert_eq!(receipts[0].event, "slo_alert");
    assert!(receipts[0].verified, "signed like every delivery");
    let body = event_of(&receipts[0]);
    assert_eq!(
        body["data"]["alertname"], "AragoraAvailabilitySLOBreach",
        "{body}"
    );
    assert_eq!(body["data"]["status"], "firing", "{body}");
    assert_eq!(body["data"]["receiver"], "pager", "{body}");

    let (_unreachable, sink) = start_control(
        &[
            ("ARAGORA_DB_BACKEND", "postgres"),
            (
                "DATABASE_URL",
                "postgres://postgres:db-password-never-shown@127.0.0.1:1/aragora",
            ),
        ],
        "control-unreachable",
    );
    let answer = http
        .post(&sink)
        .bearer_auth("sink-token-of-this-test")
        .json(&notification)
        .send()
        .await
        .unwrap();
    assert_eq!(
        answer.status(),
        503,
        "Alertmanager is told to send it again"
    );
    let text = answer.text().await.unwrap();
    assert!(
        text.contains("webhooks_unavailable") && text.contains("aragora migrate status"),
        "{text}"
    );
    assert!(!text.contains("db-password-never-shown"), "{text}");
}
