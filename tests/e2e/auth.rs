//! Identity and access end to end (issue 14), against the real binary on SQLite and PostgreSQL:
//! each credential kind accepted (a JWT, the runbook's loop token, `ARAGORA_API_TOKEN`, an API
//! key made through the API); bad ones refused alike with 401 and `WWW-Authenticate`; JWT
//! secret rotation across restarts; each role against each endpoint class; an operator's
//! debates are its own to cancel; a revocation reaching another replica; the engine's port
//! and the gateway closed to anonymous callers; CORS preflight; WebSocket tokens, origins and
//! share links; `aragora_auth_failures_total` by reason.
//!
//! Every request here sets its own credential (or none) on a client that sends nothing by
//! itself, so what is sent is what the test says.

use crate::support::{
    eventually, sample, ws_request, Backend, Engine, EngineOptions, GatewayProcess, TestDatabase,
};
use crate::websocket::{connect, next_event};
use aragora_auth::{AuthConfig, Authenticator, Claims, Role};
use futures::SinkExt;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

const PATIENCE: Duration = Duration::from_secs(60);

/// A random JWT secret of the required length (36 characters).
fn new_secret() -> String {
    format!("jwt-{}", uuid::Uuid::new_v4().simple())
}

/// `options` with `secret` as `ARAGORA_JWT_SECRET`; agents slow enough that a long debate is
/// still running when a test cancels it.
fn secured(options: EngineOptions, secret: &str) -> EngineOptions {
    options
        .env("ARAGORA_JWT_SECRET", secret)
        .env("ARAGORA_OFFLINE_AGENT_LATENCY_MS", 50)
}

/// A JWT for `sub` with `role`, valid for an hour, signed with `secret` as the engine signs.
pub(crate) fn jwt(secret: &str, sub: &str, role: Role) -> String {
    let config = AuthConfig {
        jwt_secret: Some(secret.to_string()),
        ..AuthConfig::default()
    };
    Authenticator::new(config, None)
        .mint_jwt(sub, role, Some(3600))
        .expect("mint a JWT")
}

/// A JWT signed with `secret` that expired an hour ago (beyond any leeway).
fn expired_jwt(secret: &str) -> String {
    let now = aragora_auth::unix_now();
    let claims = Claims {
        sub: "late".into(),
        role: Role::Admin,
        iat: now - 7200,
        exp: now - 3600,
        jti: uuid::Uuid::new_v4().to_string(),
    };
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// A reader's JWT whose payload was swapped for an admin's: the signature no longer matches.
fn tampered_jwt(secret: &str) -> String {
    let reader = jwt(secret, "mallory", Role::Reader);
    let admin = jwt(&new_secret(), "mallory", Role::Admin);
    let mut parts: Vec<&str> = reader.split('.').collect();
    parts[1] = admin.split('.').nth(1).unwrap();
    parts.join(".")
}

/// What one request got back.
struct Answer {
    status: u16,
    www_authenticate: Option<String>,
    body: Value,
}

/// Sends `method path` to `base` with `token` as `Authorization: Bearer` (none: no header).
async fn call(
    base: &str,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Answer {
    let mut request = reqwest::Client::new().request(method.clone(), format!("{base}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|err| panic!("{method} {path}: {err}"));
    Answer {
        status: response.status().as_u16(),
        www_authenticate: response
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap_or_default().to_string()),
        body: response.json().await.unwrap_or(Value::Null),
    }
}

fn base(engine: &Engine) -> String {
    format!("http://{}", engine.api)
}

/// `GET /api/auth/me` with `token`: who the engine says the caller is.
async fn me(engine: &Engine, token: &str) -> Value {
    let answer = call(
        &base(engine),
        Method::GET,
        "/api/auth/me",
        Some(token),
        None,
    )
    .await;
    assert_eq!(
        answer.status, 200,
        "GET /api/auth/me refused a valid credential: {}",
        answer.body
    );
    answer.body
}

/// Creates an API key with `role` through `POST /api/auth/api-key` as the engine's admin and
/// returns (the whole key, its id).
async fn create_key(engine: &Engine, name: &str, role: &str) -> (String, String) {
    let admin = engine.token.clone().expect("the engine's admin token");
    let answer = call(
        &base(engine),
        Method::POST,
        "/api/auth/api-key",
        Some(&admin),
        Some(json!({"name": name, "role": role})),
    )
    .await;
    assert!(
        [200, 201].contains(&answer.status),
        "POST /api/auth/api-key: {} {}",
        answer.status,
        answer.body
    );
    let key = answer.body["key"]
        .as_str()
        .unwrap_or_else(|| panic!("the new key is shown once, as `key`: {}", answer.body))
        .to_string();
    let (id, _) = aragora_auth::parse_key(&key)
        .unwrap_or_else(|| panic!("{key:?} is not an ara_<id>_<secret> key"));
    (key.clone(), id.to_string())
}

async fn revoke_key(engine: &Engine, id: &str) {
    let admin = engine.token.clone().unwrap();
    let path = format!("/api/auth/api-key/{id}");
    let answer = call(&base(engine), Method::DELETE, &path, Some(&admin), None).await;
    assert!(
        (200..300).contains(&answer.status),
        "DELETE {path}: {} {}",
        answer.status,
        answer.body
    );
}

/// Starts a debate as `token` and returns its id.
async fn start_debate_as(engine: &Engine, token: &str, topic: &str) -> String {
    let answer = call(
        &base(engine),
        Method::POST,
        "/api/debates",
        Some(token),
        Some(json!({"topic": topic, "rounds": 12})),
    )
    .await;
    assert_eq!(answer.status, 202, "debate not accepted: {}", answer.body);
    answer.body["debate_id"].as_str().unwrap().to_string()
}

/// Asserts a refusal of an unauthenticated request: 401, a Bearer challenge naming
/// `invalid_token`, and the body it returns (for comparing refusals with each other).
fn assert_unauthenticated(answer: &Answer, what: &str) -> Value {
    assert_eq!(answer.status, 401, "{what}: {}", answer.body);
    let challenge = answer
        .www_authenticate
        .as_deref()
        .unwrap_or_else(|| panic!("{what}: a 401 without WWW-Authenticate: {}", answer.body));
    assert!(
        challenge.starts_with("Bearer") && challenge.contains("error=\"invalid_token\""),
        "{what}: WWW-Authenticate is {challenge:?}, not Bearer error=\"invalid_token\""
    );
    assert!(
        answer.body["error"]["code"].is_string() && answer.body["error"]["message"].is_string(),
        "{what}: the 401 is the JSON error envelope: {}",
        answer.body
    );
    answer.body.clone()
}

fn assert_forbidden(answer: &Answer, what: &str) {
    assert_eq!(answer.status, 403, "{what}: {}", answer.body);
    assert!(
        answer.body["error"]["code"].is_string(),
        "{what}: the 403 is the JSON error envelope: {}",
        answer.body
    );
}

/// Reads `socket` until the server closes it: the close code and reason (heartbeats and
/// events before it are skipped).
async fn close_frame(socket: &mut crate::websocket::Socket) -> (u16, String) {
    use futures::StreamExt;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let message = tokio::time::timeout_at(deadline, socket.next())
            .await
            .expect("the server closes the WebSocket within a minute")
            .expect("a close frame before the end of the stream")
            .expect("socket healthy");
        if let Message::Close(frame) = message {
            let frame = frame.expect("a close frame with a code");
            return (u16::from(frame.code), frame.reason.to_string());
        }
    }
}

/// A WebSocket does not outlive its credential: a JWT's socket closes (1008) when the JWT
/// expires, an API key's at the first heartbeat after the key is revoked; a credential without
/// an end keeps its socket.
async fn a_websocket_closes_when_its_credential_expires_or_is_revoked(options: EngineOptions) {
    let secret = new_secret();
    let engine =
        Engine::start(secured(options, &secret).env("ARAGORA_WS_HEARTBEAT_INTERVAL", 1)).await;
    let config = AuthConfig {
        jwt_secret: Some(secret.clone()),
        ..AuthConfig::default()
    };
    let short = Authenticator::new(config, None)
        .mint_jwt("brief", Role::Reader, Some(3))
        .unwrap();
    let mut brief = connect(ws_request(&engine.ws_url("/ws"), Some(&short))).await;
    let (key, key_id) = create_key(&engine, "watcher", "reader").await;
    let mut keyed = connect(ws_request(&engine.ws_url("/ws"), Some(&key))).await;
    let admin = engine.token.clone().unwrap();
    let mut lasting = connect(ws_request(&engine.ws_url("/ws"), Some(&admin))).await;

    let opened = Instant::now();
    let (code, reason) = close_frame(&mut brief).await;
    assert_eq!(code, 1008, "{reason}");
    assert!(reason.contains("credential expired"), "{reason}");
    assert!(
        opened.elapsed() >= Duration::from_secs(1),
        "closed before the JWT expired: {reason}"
    );

    revoke_key(&engine, &key_id).await;
    let (code, reason) = close_frame(&mut keyed).await;
    assert_eq!(code, 1008, "{reason}");
    assert!(
        reason.contains("revoked") && reason.contains(&key_id),
        "{reason}"
    );
    assert!(
        !reason.contains(&key),
        "the key's secret is in the close reason"
    );

    // The admin token has no end: its socket still answers.
    lasting
        .send(Message::Text(r#"{"type":"ping"}"#.into()))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        use futures::StreamExt;
        let message = tokio::time::timeout_at(deadline, lasting.next())
            .await
            .expect("a pong within the deadline")
            .expect("the admin's socket is open")
            .expect("socket healthy");
        if let Message::Text(text) = message {
            let event: Value = serde_json::from_str(&text).unwrap();
            if event["data"]["pong"] == true {
                break;
            }
        }
    }
}

on_both_backends!(
    a_websocket_closes_when_its_credential_expires_or_is_revoked,
    each_credential_kind_is_accepted,
    bad_credentials_are_refused_alike_with_401,
    each_role_reaches_only_its_endpoint_classes,
    an_operator_cannot_cancel_another_operators_debate,
    a_jwt_of_the_previous_secret_works_during_the_rotation_only,
    websockets_need_a_token_and_a_listed_origin_and_a_share_link_opens_one_debate,
    auth_failures_are_counted_by_reason,
);

async fn each_credential_kind_is_accepted(options: EngineOptions) {
    let secret = new_secret();
    let engine = Engine::start(secured(options, &secret)).await;
    let admin = engine.token.clone().unwrap();

    // A JWT signed with the engine's secret.
    let token = jwt(&secret, "alice", Role::Reader);
    let who = me(&engine, &token).await;
    assert_eq!(
        (who["subject"].as_str(), who["role"].as_str()),
        (Some("alice"), Some("reader")),
        "{who}"
    );
    // ARAGORA_API_TOKEN itself is an admin.
    assert_eq!(me(&engine, &admin).await["role"], "admin");
    // A JWT the engine mints (POST /api/auth/token) for a lower role works for that role.
    let minted = call(
        &base(&engine),
        Method::POST,
        "/api/auth/token",
        Some(&admin),
        Some(json!({"role": "reader", "ttl_secs": 600})),
    )
    .await;
    assert_eq!(minted.status, 200, "POST /api/auth/token: {}", minted.body);
    let minted = minted.body["token"].as_str().expect("a token").to_string();
    assert_eq!(me(&engine, &minted).await["role"], "reader");
    let refused = call(
        &base(&engine),
        Method::POST,
        "/api/auth/token",
        Some(&minted),
        Some(json!({"role": "admin"})),
    )
    .await;
    assert_forbidden(&refused, "a reader minting an admin JWT");
    // The runbook's `admin:{expires}:{hmac}` token, signed with ARAGORA_API_TOKEN.
    let loop_admin =
        aragora_auth::mint_loop_token(&admin, "admin", aragora_auth::unix_now() + 3600);
    assert_eq!(me(&engine, &loop_admin).await["role"], "admin");
    let faults = call(
        &base(&engine),
        Method::GET,
        "/api/system/faults",
        Some(&loop_admin),
        None,
    )
    .await;
    assert_eq!(
        faults.status, 200,
        "the runbook's admin token reaches admin endpoints: {}",
        faults.body
    );
    // An API key made through the API works for its role.
    let (key, _) = create_key(&engine, "ci", "operator").await;
    assert!(key.starts_with(aragora_auth::KEY_PREFIX), "{key}");
    assert_eq!(me(&engine, &key).await["role"], "operator");
    let id = start_debate_as(&engine, &key, "Created with an API key").await;
    // A share link: the loop token of one debate reads that debate (header or `?token=`).
    let share = aragora_auth::mint_loop_token(&admin, &id, aragora_auth::unix_now() + 3600);
    let debate = format!("/api/debates/{id}");
    let read = call(&base(&engine), Method::GET, &debate, Some(&share), None).await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.body["debate_id"], id.as_str());
    let query = format!("{debate}?token={share}");
    let read = call(&base(&engine), Method::GET, &query, None, None).await;
    assert_eq!(
        read.status, 200,
        "?token= on the debate's URL: {}",
        read.body
    );
    // ...and nothing else.
    let other = engine.start_debate(json!({"topic": "Not shared"})).await;
    let path = format!("/api/debates/{other}");
    let refused = call(&base(&engine), Method::GET, &path, Some(&share), None).await;
    assert_forbidden(&refused, "a share link on another debate");
    let listed = call(
        &base(&engine),
        Method::GET,
        "/api/debates",
        Some(&share),
        None,
    )
    .await;
    assert_forbidden(&listed, "a share link listing debates");
    let create = call(
        &base(&engine),
        Method::POST,
        "/api/debates",
        Some(&share),
        Some(json!({"topic": "shared"})),
    )
    .await;
    assert_forbidden(&create, "a share link creating a debate");
}

async fn bad_credentials_are_refused_alike_with_401(options: EngineOptions) {
    let secret = new_secret();
    let engine = Engine::start(secured(options, &secret)).await;
    let admin = engine.token.clone().unwrap();
    let (revoked, revoked_id) = create_key(&engine, "soon revoked", "admin").await;
    assert_eq!(me(&engine, &revoked).await["role"], "admin");
    revoke_key(&engine, &revoked_id).await;
    let now = aragora_auth::unix_now();
    let expired_loop = aragora_auth::mint_loop_token(&admin, "admin", now - 60);
    let forged_loop = aragora_auth::mint_loop_token("not-the-api-token", "admin", now + 3600);
    let cases: Vec<(&str, Option<String>)> = vec![
        ("no credential", None),
        ("an expired JWT", Some(expired_jwt(&secret))),
        ("a tampered JWT", Some(tampered_jwt(&secret))),
        (
            "a JWT of another secret",
            Some(jwt(&new_secret(), "eve", Role::Admin)),
        ),
        ("a revoked API key", Some(revoked)),
        ("an expired runbook token", Some(expired_loop)),
        ("a runbook token of another key", Some(forged_loop)),
        ("a wrong API token", Some(format!("{admin}-guess"))),
    ];
    let mut bodies = Vec::new();
    for (what, token) in &cases {
        for (method, path) in [
            (Method::GET, "/api/debates"),
            (Method::GET, "/api/auth/me"),
            (Method::GET, "/api/system/faults"),
        ] {
            let answer = call(&base(&engine), method.clone(), path, token.as_deref(), None).await;
            let body = assert_unauthenticated(&answer, &format!("{method} {path} with {what}"));
            bodies.push((format!("{method} {path} with {what}"), body));
        }
    }
    // Which check failed is for the log, not the caller: every refusal reads the same.
    let (first_what, first) = &bodies[0];
    for (what, body) in &bodies[1..] {
        assert_eq!(
            body, first,
            "{what} is refused differently from {first_what}, which tells an attacker which check failed"
        );
    }
    // A refused request changed nothing.
    let (status, list) = engine.get("/api/debates").await;
    assert_eq!(status, 200);
    assert_eq!(list["debates"], json!([]), "{list}");
}

async fn each_role_reaches_only_its_endpoint_classes(options: EngineOptions) {
    let secret = new_secret();
    let engine = Engine::start(secured(options, &secret)).await;
    let url = base(&engine);
    let tokens: Vec<(&str, Option<String>)> = vec![
        ("reader", Some(jwt(&secret, "reader-1", Role::Reader))),
        ("operator", Some(jwt(&secret, "operator-1", Role::Operator))),
        ("admin", Some(jwt(&secret, "admin-1", Role::Admin))),
        ("no credential", None),
    ];
    // Expected status per endpoint class, in the order of `tokens`: 401 without a credential,
    // 403 for a role below the class's.
    let classes: [(&str, [u16; 4]); 6] = [
        ("list debates", [200, 200, 200, 401]),
        ("create a debate", [403, 202, 202, 401]),
        ("cancel own debate", [403, 200, 200, 401]),
        ("circuit breakers", [403, 403, 200, 401]),
        ("faults", [403, 403, 200, 401]),
        ("api keys", [403, 403, 200, 401]),
    ];
    let mut got = Vec::new();
    for (class, expected) in classes {
        for ((role, token), want) in tokens.iter().zip(expected) {
            let token = token.as_deref();
            let answer = match class {
                "list debates" => call(&url, Method::GET, "/api/debates", token, None).await,
                "create a debate" => {
                    let body = json!({"topic": format!("created by {role}"), "rounds": 1});
                    call(&url, Method::POST, "/api/debates", token, Some(body)).await
                }
                "cancel own debate" => {
                    // The caller's own debate where it may create one, else the admin's.
                    let owner = match (role, token) {
                        (&"operator", Some(token)) | (&"admin", Some(token)) => token.to_string(),
                        _ => engine.token.clone().unwrap(),
                    };
                    let id = start_debate_as(&engine, &owner, "to cancel").await;
                    let path = format!("/api/debates/{id}/cancel");
                    call(&url, Method::POST, &path, token, Some(json!({}))).await
                }
                "circuit breakers" => {
                    call(
                        &url,
                        Method::GET,
                        "/api/system/circuit-breakers",
                        token,
                        None,
                    )
                    .await
                }
                "faults" => call(&url, Method::GET, "/api/system/faults", token, None).await,
                "api keys" => call(&url, Method::GET, "/api/auth/api-keys", token, None).await,
                _ => unreachable!(),
            };
            if answer.status == 401 {
                assert_unauthenticated(&answer, &format!("{class} as {role}"));
            }
            got.push((class, *role, want, answer.status, answer.body));
        }
    }
    let wrong: Vec<String> = got
        .iter()
        .filter(|(_, _, want, status, _)| want != status)
        .map(|(class, role, want, status, body)| {
            format!("{class} as {role}: {status}, expected {want}: {body}")
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

async fn an_operator_cannot_cancel_another_operators_debate(options: EngineOptions) {
    let secret = new_secret();
    let engine = Engine::start(secured(options, &secret)).await;
    let alice = jwt(&secret, "alice", Role::Operator);
    let bob = jwt(&secret, "bob", Role::Operator);
    let id = start_debate_as(&engine, &alice, "Alice's debate").await;
    let debate = call(
        &base(&engine),
        Method::GET,
        &format!("/api/debates/{id}"),
        Some(&bob),
        None,
    )
    .await;
    assert_eq!(
        debate.status, 200,
        "operators read every debate: {}",
        debate.body
    );
    assert_eq!(debate.body["created_by"], "alice", "{}", debate.body);
    let cancel = format!("/api/debates/{id}/cancel");
    let refused = call(
        &base(&engine),
        Method::POST,
        &cancel,
        Some(&bob),
        Some(json!({})),
    )
    .await;
    assert_forbidden(&refused, "bob cancelling alice's debate");
    let (_, still) = engine.get(&format!("/api/debates/{id}")).await;
    assert!(
        ["queued", "running"].contains(&still["status"].as_str().unwrap_or_default()),
        "a refused cancel left the debate alone: {still}"
    );
    let own = call(
        &base(&engine),
        Method::POST,
        &cancel,
        Some(&alice),
        Some(json!({})),
    )
    .await;
    assert_eq!(
        own.status, 200,
        "alice cancels her own debate: {}",
        own.body
    );
    let ended = engine.wait_final(&id, PATIENCE).await;
    assert_eq!(ended["status"], "cancelled", "{ended}");
    // An admin may cancel anyone's.
    let other = start_debate_as(&engine, &bob, "Bob's debate").await;
    let path = format!("/api/debates/{other}/cancel");
    let admin = jwt(&secret, "root", Role::Admin);
    let by_admin = call(
        &base(&engine),
        Method::POST,
        &path,
        Some(&admin),
        Some(json!({})),
    )
    .await;
    assert_eq!(by_admin.status, 200, "{}", by_admin.body);
}

/// Stops `engine` and starts its successor on the same data with `env` over a fresh set of
/// options for `backend`.
pub(crate) async fn restart(mut engine: Engine, backend: &Backend, env: &[(&str, &str)]) -> Engine {
    engine.signal(libc::SIGTERM);
    let status = engine.wait_exit(PATIENCE).await;
    assert!(status.success(), "{status:?}\n{}", engine.log_text());
    let mut options = EngineOptions {
        backend: backend.clone(),
        ..EngineOptions::sqlite()
    };
    for (key, value) in env {
        options = options.env(key, value);
    }
    Engine::start(engine.restart_options(options)).await
}

async fn a_jwt_of_the_previous_secret_works_during_the_rotation_only(options: EngineOptions) {
    let backend = options.backend.clone();
    let (old, new) = (new_secret(), new_secret());
    let engine = Engine::start(options.env("ARAGORA_JWT_SECRET", &old)).await;
    let token = jwt(&old, "rotating", Role::Reader);
    assert_eq!(me(&engine, &token).await["subject"], "rotating");

    let engine = restart(
        engine,
        &backend,
        &[
            ("ARAGORA_JWT_SECRET", &new),
            ("ARAGORA_JWT_SECRET_PREVIOUS", &old),
        ],
    )
    .await;
    assert_eq!(
        me(&engine, &token).await["subject"],
        "rotating",
        "during the rotation the old secret still verifies"
    );
    let fresh = jwt(&new, "fresh", Role::Reader);
    assert_eq!(me(&engine, &fresh).await["subject"], "fresh");

    let engine = restart(engine, &backend, &[("ARAGORA_JWT_SECRET", &new)]).await;
    let refused = call(
        &base(&engine),
        Method::GET,
        "/api/auth/me",
        Some(&token),
        None,
    )
    .await;
    assert_unauthenticated(
        &refused,
        "a JWT of the old secret after the rotation window",
    );
    assert_eq!(me(&engine, &fresh).await["subject"], "fresh");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_stops_working_on_another_replica_within_the_cache_time() {
    const CACHE_SECONDS: u64 = 2;
    let database = TestDatabase::create().await;
    let options = || {
        EngineOptions::postgres(&database.url).env("ARAGORA_API_KEY_CACHE_SECONDS", CACHE_SECONDS)
    };
    let first = Engine::start(options()).await;
    let second = Engine::start(options()).await;
    let (key, id) = create_key(&first, "replicated", "reader").await;
    // The second replica knows the key from the shared database and caches the answer.
    assert_eq!(me(&second, &key).await["role"], "reader");
    let revoked_at = Instant::now();
    revoke_key(&first, &id).await;
    let refused = call(&base(&first), Method::GET, "/api/auth/me", Some(&key), None).await;
    assert_unauthenticated(&refused, "the revoked key on the replica that revoked it");
    let slack = Duration::from_secs(3);
    let patience = Duration::from_secs(CACHE_SECONDS) + slack;
    eventually(
        "the other replica to refuse the revoked key",
        patience,
        || async {
            let answer = call(
                &base(&second),
                Method::GET,
                "/api/auth/me",
                Some(&key),
                None,
            )
            .await;
            match answer.status {
                200 => None,
                401 => Some(()),
                other => panic!(
                    "the revoked key got {other} on the other replica: {}",
                    answer.body
                ),
            }
        },
    )
    .await;
    let took = revoked_at.elapsed();
    assert!(
        took <= patience,
        "the revocation took {took:?}, beyond ARAGORA_API_KEY_CACHE_SECONDS={CACHE_SECONDS} + {slack:?}"
    );
    // The listing says so on either replica.
    let admin = second.token.clone().unwrap();
    let listed = call(
        &base(&second),
        Method::GET,
        "/api/auth/api-keys",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let text = listed.body.to_string();
    assert!(text.contains(&id) && text.contains("revoked"), "{text}");
    assert!(
        !text.contains(&key),
        "a listing never shows a key's secret: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_and_the_gateway_refuse_anonymous_callers_but_keep_probes_open() {
    let engine = Engine::start(EngineOptions::sqlite()).await;
    let admin = engine.token.clone().unwrap();
    let url = base(&engine);
    for path in [
        "/api/debates",
        "/api/agents",
        "/api/auth/me",
        "/api/system/faults",
    ] {
        let answer = call(&url, Method::GET, path, None, None).await;
        assert_unauthenticated(&answer, &format!("GET {path} straight to the engine"));
    }
    let create = call(
        &url,
        Method::POST,
        "/api/debates",
        None,
        Some(json!({"topic": "anonymous"})),
    )
    .await;
    assert_unauthenticated(&create, "POST /api/debates straight to the engine");
    for path in ["/healthz", "/readyz", "/metrics"] {
        let response = reqwest::get(format!("{url}{path}")).await.unwrap();
        assert_eq!(response.status(), 200, "{path} stays open");
    }

    let gateway = GatewayProcess::start(&[engine.api.to_string()], &[]).await;
    gateway.wait_ready_count(1, PATIENCE).await;
    let anonymous = gateway.anonymous_client_builder().build().unwrap();
    let through = anonymous
        .get(gateway.https_url("/api/debates"))
        .send()
        .await
        .unwrap();
    assert_eq!(through.status(), 401, "through the gateway without a token");
    assert!(
        through.headers().contains_key("www-authenticate"),
        "the engine's challenge passes through the gateway"
    );
    let allowed = anonymous
        .get(gateway.https_url("/api/debates"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(
        allowed.status(),
        200,
        "the gateway passes the credential through"
    );
    let ready = anonymous
        .get(gateway.https_url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200, "probes stay open through the gateway");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflight_through_the_gateway_admits_only_listed_origins() {
    const LISTED: &str = "https://app.example.com";
    const UNLISTED: &str = "https://evil.example.net";
    let engine =
        Engine::start(EngineOptions::sqlite().env("ARAGORA_ALLOWED_ORIGINS", LISTED)).await;
    let gateway = GatewayProcess::start(&[engine.api.to_string()], &[]).await;
    gateway.wait_ready_count(1, PATIENCE).await;
    // A browser's preflight carries no credential.
    let anonymous = gateway.anonymous_client_builder().build().unwrap();
    let preflight = |origin: &'static str| {
        anonymous
            .request(Method::OPTIONS, gateway.https_url("/api/debates"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
    };
    let listed = preflight(LISTED).await.unwrap();
    assert!(
        listed.status().is_success(),
        "a listed origin's preflight is answered: {}",
        listed.status()
    );
    let header = |response: &reqwest::Response, name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap_or_default().to_ascii_lowercase())
    };
    assert_eq!(
        header(&listed, "access-control-allow-origin").as_deref(),
        Some(LISTED)
    );
    assert_eq!(
        header(&listed, "access-control-allow-credentials").as_deref(),
        Some("true")
    );
    let methods = header(&listed, "access-control-allow-methods").unwrap_or_default();
    assert!(methods.contains("post"), "allowed methods: {methods:?}");
    let headers = header(&listed, "access-control-allow-headers").unwrap_or_default();
    assert!(
        headers.contains("authorization"),
        "allowed headers: {headers:?}"
    );

    let unlisted = preflight(UNLISTED).await.unwrap();
    assert_eq!(
        header(&unlisted, "access-control-allow-origin"),
        None,
        "an unlisted origin is not allowed ({})",
        unlisted.status()
    );
    assert_eq!(header(&unlisted, "access-control-allow-credentials"), None);

    // The real request of a listed origin carries the header too; an unlisted one's does not.
    let admin = engine.token.clone().unwrap();
    for (origin, allowed) in [(LISTED, true), (UNLISTED, false)] {
        let response = anonymous
            .get(gateway.https_url("/api/debates"))
            .header("origin", origin)
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            header(&response, "access-control-allow-origin").is_some(),
            allowed,
            "{origin}"
        );
    }
}

/// The HTTP status a WebSocket handshake was refused with, or the open socket.
async fn handshake(
    request: tokio_tungstenite::tungstenite::handshake::client::Request,
) -> Result<(), u16> {
    use tokio_tungstenite::tungstenite::Error;
    match tokio_tungstenite::connect_async(request).await {
        Ok(_) => Ok(()),
        Err(Error::Http(response)) => Err(response.status().as_u16()),
        Err(other) => panic!("the handshake failed without an HTTP answer: {other}"),
    }
}

async fn websockets_need_a_token_and_a_listed_origin_and_a_share_link_opens_one_debate(
    options: EngineOptions,
) {
    const LISTED: &str = "https://app.example.com";
    let engine = Engine::start(
        options
            .env("ARAGORA_ALLOWED_ORIGINS", LISTED)
            .env("ARAGORA_OFFLINE_AGENT_LATENCY_MS", 20),
    )
    .await;
    let admin = engine.token.clone().unwrap();
    let shared = engine
        .start_debate(json!({"topic": "Shared", "rounds": 2}))
        .await;
    let private = engine
        .start_debate(json!({"topic": "Private", "rounds": 2}))
        .await;
    let path = format!("/ws?debate_id={shared}");
    for (what, url) in [
        ("the API port", engine.ws_url(&path)),
        ("the WebSocket port", format!("ws://{}{path}", engine.ws)),
    ] {
        assert_eq!(
            handshake(ws_request(&url, None)).await,
            Err(401),
            "a WebSocket without a token on {what}"
        );
        let mut foreign = ws_request(&url, Some(&admin));
        foreign
            .headers_mut()
            .insert("origin", "https://evil.example.net".parse().unwrap());
        assert_eq!(
            handshake(foreign).await,
            Err(403),
            "a WebSocket from a foreign origin on {what}, even with a token"
        );
        let mut listed = ws_request(&url, Some(&admin));
        listed
            .headers_mut()
            .insert("origin", LISTED.parse().unwrap());
        assert_eq!(handshake(listed).await, Ok(()), "a listed origin on {what}");
    }

    // A share link: `?token=` with the loop token of the shared debate, as a browser sends it.
    let share = aragora_auth::mint_loop_token(&admin, &shared, aragora_auth::unix_now() + 3600);
    let mut socket = connect(engine.ws_url(&format!("{path}&token={share}"))).await;
    let first = next_event(&mut socket).await;
    assert_eq!(first["debate_id"], shared.as_str(), "{first}");
    assert_ne!(first["type"], "error", "{first}");
    // The same socket may not subscribe to another debate...
    let subscribe = json!({"type": "subscribe", "debate_id": private, "last_seq": 0});
    socket
        .send(Message::Text(subscribe.to_string().into()))
        .await
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    loop {
        assert!(Instant::now() < deadline, "no refusal of the other debate");
        let event = next_event(&mut socket).await;
        if event["type"] == "error" {
            break;
        }
        assert_ne!(
            event["debate_id"],
            private.as_str(),
            "a share link watched another debate: {event}"
        );
    }
    // ...nor open one on it.
    let other = engine.ws_url(&format!("/ws?debate_id={private}&token={share}"));
    match handshake(ws_request(&other, None)).await {
        Err(403) => {}
        Ok(()) => {
            let mut socket = connect(other.as_str()).await;
            let event = next_event(&mut socket).await;
            assert_eq!(
                event["type"], "error",
                "a share link opened another debate's WebSocket: {event}"
            );
        }
        Err(status) => panic!("a share link on another debate's WebSocket got {status}, not 403"),
    }
}

/// `aragora_auth_failures_total{reason}` of `engine`, for each of `reasons`.
async fn failures(engine: &Engine, reasons: &[&str]) -> Vec<f64> {
    let metrics = reqwest::get(engine.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    reasons
        .iter()
        .map(|reason| {
            sample(
                &metrics,
                &format!("aragora_auth_failures_total{{reason=\"{reason}\"}}"),
            )
            .unwrap_or(0.0)
        })
        .collect()
}

async fn auth_failures_are_counted_by_reason(options: EngineOptions) {
    let secret = new_secret();
    let engine = Engine::start(secured(options, &secret)).await;
    let (revoked, revoked_id) = create_key(&engine, "revoked", "reader").await;
    revoke_key(&engine, &revoked_id).await;
    // A well-formed key the engine never issued.
    let unknown = aragora_auth::generate_key("never stored", Role::Admin, None, "test").key;
    let attempts: Vec<(&str, Option<String>, usize)> = vec![
        ("missing", None, 3),
        ("malformed", Some("a.b.c".into()), 1),
        ("expired", Some(expired_jwt(&secret)), 2),
        ("bad_signature", Some(tampered_jwt(&secret)), 2),
        ("revoked", Some(revoked), 1),
        ("unknown_key", Some(unknown), 1),
    ];
    let reasons: Vec<&str> = attempts.iter().map(|(reason, _, _)| *reason).collect();
    let before = failures(&engine, &reasons).await;
    for (reason, token, times) in &attempts {
        for _ in 0..*times {
            let answer = call(
                &base(&engine),
                Method::GET,
                "/api/debates",
                token.as_deref(),
                None,
            )
            .await;
            assert_unauthenticated(&answer, reason);
        }
    }
    // A forbidden request is no authentication failure of those reasons.
    let reader = jwt(&secret, "reader", Role::Reader);
    let forbidden = call(
        &base(&engine),
        Method::GET,
        "/api/system/faults",
        Some(&reader),
        None,
    )
    .await;
    assert_forbidden(&forbidden, "a reader on an admin endpoint");
    let after = failures(&engine, &reasons).await;
    let counted: Vec<(&str, f64)> = reasons
        .iter()
        .zip(after.iter().zip(&before))
        .map(|(reason, (after, before))| (*reason, after - before))
        .collect();
    let expected: Vec<(&str, f64)> = attempts
        .iter()
        .map(|(reason, _, times)| (*reason, *times as f64))
        .collect();
    assert_eq!(counted, expected, "failures counted by reason");
    // The metric never carries a credential.
    let metrics = engine.metrics().await;
    assert!(!metrics.contains(&secret) && !metrics.contains(engine.token.as_deref().unwrap()));
}
