//! Who may call what, in process: every route of the API against every kind of caller (the
//! role table below is the specification; a route missing from it fails the test), each
//! credential kind accepted and each bad one refused alike, JWT rotation, cancelling only
//! one's own debates, API keys on SQLite and PostgreSQL, CORS, and `/ws`.

mod support;

use aragora_auth::{AuthConfig, Authenticator, Role};
use aragora_engine::http::{app, route_table, AppState, Phase};
use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use futures::StreamExt;
use serde_json::{json, Value};
use std::sync::Arc;
use support::{
    Gate, Harness, ALLOWED_ORIGIN, API_TOKEN, JWT_SECRET, JWT_SECRET_PREVIOUS, PATIENCE,
};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tower::ServiceExt;

/// The debate every share link of these tests is for; created by [`OPERATOR`].
const SHARED: &str = "shared-debate";
const OPERATOR: &str = "op-alice";

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
}

async fn send(api: &Router, request: Request<Body>) -> Answer {
    let response = api.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
    }
}

async fn call(api: &Router, method: Method, uri: &str, token: Option<&str>, body: &str) -> Answer {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    if !body.is_empty() {
        request = request.header(header::CONTENT_TYPE, "application/json");
    }
    send(api, request.body(Body::from(body.to_string())).unwrap()).await
}

fn jwt(subject: &str, role: Role) -> String {
    Authenticator::new(support::auth_config(), None)
        .mint_jwt(subject, role, Some(600))
        .unwrap()
}

fn share_link(debate: &str) -> String {
    aragora_auth::mint_loop_token(API_TOKEN, debate, aragora_auth::unix_now() + 600)
}

/// What a route needs, as the README's role table says.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Need {
    /// Probes and metrics: no credential.
    Open,
    /// Any valid credential, a share link included.
    Any,
    /// A reader or higher over everything (a share link is refused).
    Reader,
    /// A reader, or a share link to this debate.
    DebateRead,
    Operator,
    Admin,
}

fn need(path: &str, method: &Method) -> Need {
    let unversioned = path
        .strip_prefix("/api/v1")
        .or_else(|| path.strip_prefix("/api"))
        .unwrap_or(path);
    // The runbook's deep check, `/health` itself (not `/api/health`), is for admins.
    if path == "/health" {
        return Need::Admin;
    }
    match (unversioned, method.as_str()) {
        (
            "/healthz" | "/readyz" | "/metrics" | "/health" | "/health/db" | "/health/redis"
            | "/health/ready" | "/ready" | "/status" | "/openapi.json",
            _,
        ) => Need::Open,
        ("/ws" | "/auth/me" | "/auth/me/usage", _) => Need::Any,
        ("/debates", "POST") | ("/debates/{id}/cancel", _) => Need::Operator,
        ("/debates" | "/receipts/verify" | "/drills" | "/agents" | "/auth/token", _) => {
            Need::Reader
        }
        ("/debates/{id}" | "/debates/{id}/messages" | "/debates/{id}/receipt", _) => {
            Need::DebateRead
        }
        ("/admin/stats", _) => Need::Reader,
        (p, _)
            if p.starts_with("/system/")
                || p.starts_with("/auth/api-key")
                || p.starts_with("/admin/maintenance")
                || p.starts_with("/admin/schedulers/")
                || p.starts_with("/admin/webhooks") =>
        {
            Need::Admin
        }
        _ => panic!(
            "{method} {path} is not in the role table; say what it needs here and in the README"
        ),
    }
}

/// Is `status` what `need` says the caller `who` gets?
fn admitted(need: Need, who: &str) -> bool {
    match (need, who) {
        (Need::Open, _) => true,
        (_, "none") => false,
        (Need::Any | Need::DebateRead, _) => true,
        (Need::Reader, who) => who != "share",
        (Need::Operator, who) => who == "operator" || who == "admin",
        (Need::Admin, who) => who == "admin",
    }
}

async fn engine_with_shared_debate(gate: &Gate) -> (Harness, AppState) {
    let engine = Harness::new(gate).await;
    let record = support::record(SHARED, 1, 1).created_by(OPERATOR);
    aragora_engine::store::DebateStore::insert_debate(&engine.store, &record)
        .await
        .unwrap();
    let state = engine.ready_state(2, 8);
    (engine, state)
}

#[tokio::test]
async fn every_route_admits_exactly_the_callers_the_role_table_says() {
    let gate = Gate::closed("proposal");
    let (_engine, state) = engine_with_shared_debate(&gate).await;
    let api = app(state);
    let callers: [(&str, Option<String>); 5] = [
        ("none", None),
        ("reader", Some(jwt("reader-bob", Role::Reader))),
        ("operator", Some(jwt(OPERATOR, Role::Operator))),
        ("admin", Some(API_TOKEN.to_string())),
        ("share", Some(share_link(SHARED))),
    ];
    let mut checked = 0;
    for template in route_table() {
        let path = template
            .replace("{id}", SHARED)
            .replace("{agent}", "offline-skeptic");
        for method in [Method::GET, Method::POST, Method::DELETE] {
            let served = call(&api, method.clone(), &path, Some(API_TOKEN), "{}").await;
            if served.status == StatusCode::METHOD_NOT_ALLOWED {
                continue;
            }
            let need = need(&template, &method);
            for (who, token) in &callers {
                let body = if method == Method::POST { "{}" } else { "" };
                let answer = call(&api, method.clone(), &path, token.as_deref(), body).await;
                let refused = matches!(
                    answer.status,
                    StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
                );
                assert_eq!(
                    !refused,
                    admitted(need, who),
                    "{method} {template} as {who} (needs {need:?}) answered {} {}",
                    answer.status,
                    answer.body
                );
                if who == &"none" && refused {
                    assert_eq!(
                        answer.status,
                        StatusCode::UNAUTHORIZED,
                        "{method} {template}"
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(
        checked > 200,
        "only {checked} checks: the route table went missing"
    );
}

/// `GET /api/auth/me` as `token`.
async fn me(api: &Router, token: &str) -> Answer {
    call(api, Method::GET, "/api/auth/me", Some(token), "").await
}

#[tokio::test]
async fn each_credential_kind_is_accepted_and_each_bad_one_refused_alike() {
    let engine = Harness::new(&Gate::open()).await;
    let state = engine.ready_state(1, 1);
    let api = app(state.clone());

    let key = call(
        &api,
        Method::POST,
        "/api/auth/api-key",
        Some(API_TOKEN),
        r#"{"name": "ci", "role": "operator"}"#,
    )
    .await;
    assert_eq!(key.status, StatusCode::CREATED, "{}", key.body);
    let api_key = key.body["key"].as_str().unwrap().to_string();
    let loop_admin =
        aragora_auth::mint_loop_token(API_TOKEN, "admin", aragora_auth::unix_now() + 60);
    for (token, kind, role) in [
        (jwt("alice", Role::Reader), "jwt", "reader"),
        (loop_admin.clone(), "loop_token", "admin"),
        (API_TOKEN.to_string(), "api_token", "admin"),
        (api_key.clone(), "api_key", "operator"),
    ] {
        let answer = me(&api, &token).await;
        assert_eq!(answer.status, StatusCode::OK, "{kind}: {}", answer.body);
        assert_eq!(answer.body["credential"]["kind"], kind);
        assert_eq!(answer.body["role"], role);
    }

    let now = aragora_auth::unix_now();
    let expired_jwt = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &aragora_auth::Claims {
            sub: "alice".into(),
            role: Role::Admin,
            iat: now - 7200,
            exp: now - 3600,
            jti: "j".into(),
        },
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap();
    let reader = jwt("alice", Role::Reader);
    let foreign_admin = Authenticator::new(
        AuthConfig {
            jwt_secret: Some("some-other-deployments-secret-32-chars".into()),
            ..AuthConfig::default()
        },
        None,
    )
    .mint_jwt("alice", Role::Admin, None)
    .unwrap();
    let mut tampered: Vec<&str> = reader.split('.').collect();
    tampered[1] = foreign_admin.split('.').nth(1).unwrap();
    let tampered = tampered.join(".");
    let revoked = {
        let id = key.body["id"].as_str().unwrap();
        let answer = call(
            &api,
            Method::DELETE,
            &format!("/api/auth/api-key/ara_{id}"),
            Some(API_TOKEN),
            "",
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        api_key.clone()
    };
    let expired_loop = aragora_auth::mint_loop_token(API_TOKEN, "admin", now - 1);

    let refusals: Vec<(&str, Request<Body>)> = vec![
        ("expired", bearer(&expired_jwt)),
        ("expired", bearer(&expired_loop)),
        ("bad_signature", bearer(&tampered)),
        ("bad_signature", bearer(&foreign_admin)),
        ("bad_signature", bearer("not-the-api-token")),
        ("revoked", bearer(&revoked)),
        (
            "missing",
            Request::get("/api/auth/me").body(Body::empty()).unwrap(),
        ),
        (
            "malformed",
            Request::get("/api/auth/me")
                .header(header::AUTHORIZATION, "Basic YWxpY2U6c2VjcmV0")
                .body(Body::empty())
                .unwrap(),
        ),
        ("malformed", bearer("ara_not_a_key")),
    ];
    let mut bodies = Vec::new();
    for (reason, request) in refusals {
        let before = failures(&state, reason);
        let answer = send(&api, request).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{reason}");
        assert_eq!(
            answer.headers[header::WWW_AUTHENTICATE],
            aragora_auth::AuthError::WWW_AUTHENTICATE,
            "{reason}"
        );
        assert_eq!(failures(&state, reason), before + 1, "{reason} counted");
        bodies.push(answer.body);
    }
    assert!(
        bodies.windows(2).all(|pair| pair[0] == pair[1]),
        "every refusal answers the same body: {bodies:?}"
    );
    assert_eq!(bodies[0]["error"]["code"], "unauthorized");
}

fn bearer(token: &str) -> Request<Body> {
    Request::get("/api/auth/me")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap()
}

/// `aragora_auth_failures_total{reason}` as `/metrics` would show it.
fn failures(state: &AppState, reason: &str) -> u64 {
    state
        .metrics
        .auth_failures
        .with_label_values(&[reason])
        .get()
}

#[tokio::test]
async fn a_jwt_signed_with_the_previous_secret_works_only_while_it_is_set() {
    let engine = Harness::new(&Gate::open()).await;
    let old = Authenticator::new(
        AuthConfig {
            jwt_secret: Some(JWT_SECRET_PREVIOUS.into()),
            ..AuthConfig::default()
        },
        None,
    )
    .mint_jwt("alice", Role::Reader, None)
    .unwrap();
    let during = app(engine.ready_state(1, 1));
    assert_eq!(me(&during, &old).await.status, StatusCode::OK);
    let after_rotation = Arc::new(Authenticator::new(
        AuthConfig {
            jwt_secret_previous: None,
            ..support::auth_config()
        },
        None,
    ));
    let after = app(engine.state_with_auth(engine.ready_core(1, 1), Phase::Ready, after_rotation));
    assert_eq!(me(&after, &old).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        me(&after, &jwt("alice", Role::Reader)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn an_operator_cancels_its_own_debates_only_and_an_admin_anyones() {
    let gate = Gate::closed("proposal");
    let engine = Harness::new(&gate).await;
    let api = app(engine.ready_state(4, 4));
    let (alice, bob) = (jwt("alice", Role::Operator), jwt("bob", Role::Operator));
    let create = |token: String| {
        let api = api.clone();
        async move {
            let answer = call(
                &api,
                Method::POST,
                "/api/debates",
                Some(&token),
                &json!({"topic": "who cancels?", "agents": support::AGENTS}).to_string(),
            )
            .await;
            assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
            answer.body["debate_id"].as_str().unwrap().to_string()
        }
    };
    let alices = create(alice.clone()).await;
    let bobs = create(bob.clone()).await;
    let shown = call(
        &api,
        Method::GET,
        &format!("/api/debates/{alices}"),
        Some(&bob),
        "",
    )
    .await;
    assert_eq!(shown.body["created_by"], "alice");

    let cancel = |id: &str, token: &str| {
        let (api, uri, token) = (
            api.clone(),
            format!("/api/debates/{id}/cancel"),
            token.to_string(),
        );
        async move { call(&api, Method::POST, &uri, Some(&token), "").await }
    };
    let refused = cancel(&alices, &bob).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert_eq!(refused.body["error"]["code"], "forbidden");
    assert_eq!(cancel(&alices, &alice).await.status, StatusCode::OK);
    assert_eq!(cancel(&bobs, API_TOKEN).await.status, StatusCode::OK);
    gate.release();
}

/// Creates, lists and revokes a key through the API of `state`.
async fn api_key_lifecycle(state: AppState) {
    let api = app(state);
    let bad = call(
        &api,
        Method::POST,
        "/api/auth/api-key",
        Some(API_TOKEN),
        r#"{"name": " ", "role": "reader"}"#,
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("name"));
    let bad = call(
        &api,
        Method::POST,
        "/api/auth/api-key",
        Some(API_TOKEN),
        r#"{"name": "x", "role": "root"}"#,
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let bad = call(
        &api,
        Method::POST,
        "/api/auth/api-key",
        Some(API_TOKEN),
        r#"{"name": "x", "role": "reader", "ttl_secs": 0}"#,
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);

    let created = call(
        &api,
        Method::POST,
        "/api/auth/api-key",
        Some(API_TOKEN),
        r#"{"name": "deploy", "role": "reader", "ttl_secs": 3600}"#,
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let key = created.body["key"].as_str().unwrap().to_string();
    let id = created.body["id"].as_str().unwrap().to_string();
    assert!(key.starts_with(&format!("ara_{id}_")));
    assert_eq!(created.body["created_by"], "admin-token");
    assert_eq!(me(&api, &key).await.body["role"], "reader");

    let listed = call(&api, Method::GET, "/api/auth/api-keys", Some(API_TOKEN), "").await;
    assert_eq!(listed.status, StatusCode::OK);
    let text = listed.body.to_string();
    let secret = key.rsplit('_').next().unwrap();
    assert!(!text.contains(secret) && !text.contains("argon2"), "{text}");
    assert_eq!(listed.body["api_keys"][0]["prefix"], format!("ara_{id}"));

    let uri = format!("/api/auth/api-key/{id}");
    let revoked = call(&api, Method::DELETE, &uri, Some(API_TOKEN), "").await;
    assert_eq!(revoked.status, StatusCode::OK);
    assert_eq!(revoked.body["state"], "revoked");
    assert_eq!(revoked.body["already_revoked"], false);
    let again = call(&api, Method::DELETE, &uri, Some(API_TOKEN), "").await;
    assert_eq!(again.status, StatusCode::OK, "revoking is idempotent");
    assert_eq!(again.body["already_revoked"], true);
    assert_eq!(me(&api, &key).await.status, StatusCode::UNAUTHORIZED);
    let unknown = call(
        &api,
        Method::DELETE,
        "/api/auth/api-key/ara_000000000000",
        Some(API_TOKEN),
        "",
    )
    .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn api_keys_are_created_listed_and_revoked_on_sqlite() {
    let engine = Harness::new(&Gate::open()).await;
    api_key_lifecycle(engine.ready_state(1, 1)).await;
}

#[tokio::test]
async fn api_keys_are_created_listed_and_revoked_on_postgres() {
    let database = support::PostgresDatabase::create().await;
    let store = aragora_engine::store::SqlStore::connect(
        aragora_engine::config::DbBackend::Postgres,
        &database.url,
        2,
    )
    .await
    .unwrap();
    store.migrate().await.unwrap();
    let engine = Harness::new(&Gate::open()).await;
    let auth = Arc::new(Authenticator::new(
        support::auth_config(),
        Some(Arc::new(store)),
    ));
    api_key_lifecycle(engine.state_with_auth(engine.ready_core(1, 1), Phase::Ready, auth)).await;
}

#[tokio::test]
async fn minting_a_jwt_gives_at_most_the_callers_role() {
    let engine = Harness::new(&Gate::open()).await;
    let api = app(engine.ready_state(1, 1));
    let operator = jwt("carol", Role::Operator);
    let minted = call(
        &api,
        Method::POST,
        "/api/auth/token",
        Some(&operator),
        r#"{"role": "reader", "ttl_secs": 60}"#,
    )
    .await;
    assert_eq!(minted.status, StatusCode::OK, "{}", minted.body);
    let token = minted.body["token"].as_str().unwrap();
    let who = me(&api, token).await.body;
    assert_eq!(
        (who["subject"].as_str(), who["role"].as_str()),
        (Some("carol"), Some("reader"))
    );
    let higher = call(
        &api,
        Method::POST,
        "/api/auth/token",
        Some(&operator),
        r#"{"role": "admin"}"#,
    )
    .await;
    assert_eq!(higher.status, StatusCode::FORBIDDEN);
    // A field given twice is refused, not read as its last (or first) value.
    for body in [
        r#"{"role": "reader", "role": "admin"}"#,
        r#"{"ttl_secs": 60, "ttl_secs": 60}"#,
    ] {
        let twice = call(&api, Method::POST, "/api/auth/token", Some(&operator), body).await;
        assert_eq!(twice.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let message = twice.body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("duplicate field") && message.contains("or an empty body"),
            "{message}"
        );
    }
    let malformed = call(&api, Method::POST, "/api/auth/token", Some(&operator), "{").await;
    assert_eq!(
        malformed.status,
        StatusCode::BAD_REQUEST,
        "{}",
        malformed.body
    );
    let share = call(
        &api,
        Method::POST,
        "/api/auth/token",
        Some(&share_link("d")),
        "",
    )
    .await;
    assert_eq!(share.status, StatusCode::FORBIDDEN);

    let no_secret = Arc::new(Authenticator::new(
        AuthConfig {
            api_token: Some(API_TOKEN.into()),
            ..AuthConfig::default()
        },
        None,
    ));
    let api = app(engine.state_with_auth(engine.ready_core(1, 1), Phase::Ready, no_secret));
    let refused = call(&api, Method::POST, "/api/auth/token", Some(API_TOKEN), "").await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert!(refused.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("ARAGORA_JWT_SECRET"));
}

#[tokio::test]
async fn a_share_link_reads_its_debate_also_from_the_query_and_nothing_else() {
    let (_engine, state) = engine_with_shared_debate(&Gate::closed("proposal")).await;
    let api = app(state.clone());
    let link = share_link(SHARED);
    let forbidden = failures(&state, "forbidden");
    let shown = call(
        &api,
        Method::GET,
        &format!("/api/debates/{SHARED}?token={link}"),
        None,
        "",
    )
    .await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.body);
    assert_eq!(shown.body["created_by"], OPERATOR);
    let other = call(
        &api,
        Method::GET,
        &format!("/api/debates/other?token={link}"),
        None,
        "",
    )
    .await;
    assert_eq!(other.status, StatusCode::FORBIDDEN);
    assert_eq!(failures(&state, "forbidden"), forbidden + 1);
    let list = call(
        &api,
        Method::GET,
        &format!("/api/debates?token={link}"),
        None,
        "",
    )
    .await;
    assert_eq!(
        list.status,
        StatusCode::UNAUTHORIZED,
        "?token= works on a debate's GETs only"
    );
}

async fn preflight(api: &Router, origin: &str) -> Answer {
    let request = Request::builder()
        .method(Method::OPTIONS)
        .uri("/api/debates")
        .header(header::ORIGIN, origin)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            "authorization,content-type",
        )
        .body(Body::empty())
        .unwrap();
    send(api, request).await
}

#[tokio::test]
async fn cors_admits_exactly_the_listed_origins() {
    let engine = Harness::new(&Gate::open()).await;
    let state = engine.ready_state(1, 1);
    let api = app(state.clone());
    let listed = preflight(&api, ALLOWED_ORIGIN).await;
    assert!(listed.status.is_success(), "{}", listed.status);
    let h = &listed.headers;
    assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], ALLOWED_ORIGIN);
    assert_eq!(h[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
    let allowed = h[header::ACCESS_CONTROL_ALLOW_HEADERS].to_str().unwrap();
    assert!(
        allowed.contains("authorization") && allowed.contains("x-request-id"),
        "{allowed}"
    );
    assert!(h[header::ACCESS_CONTROL_ALLOW_METHODS]
        .to_str()
        .unwrap()
        .contains("DELETE"));

    let before = failures(&state, "origin");
    let foreign = preflight(&api, "https://evil.example").await;
    assert!(foreign
        .headers
        .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        .is_none());
    assert!(foreign
        .headers
        .get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS)
        .is_none());
    assert_eq!(failures(&state, "origin"), before + 1);
}

#[tokio::test]
async fn websockets_need_a_credential_an_allowed_origin_and_the_right_debate() {
    let (engine, state) = engine_with_shared_debate(&Gate::closed("proposal")).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app(state)).await });
    let _ = &engine;
    let status_of = |result: Result<_, tokio_tungstenite::tungstenite::Error>| match result {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => 101,
    };
    let url = format!("ws://{address}/ws?debate_id={SHARED}");
    assert_eq!(
        status_of(tokio_tungstenite::connect_async(&url).await.map(|_| ())),
        401
    );

    let mut foreign = format!("{url}&token={API_TOKEN}")
        .into_client_request()
        .unwrap();
    foreign
        .headers_mut()
        .insert(header::ORIGIN, "https://evil.example".parse().unwrap());
    assert_eq!(
        status_of(tokio_tungstenite::connect_async(foreign).await.map(|_| ())),
        403
    );

    let link = share_link(SHARED);
    let other = format!("ws://{address}/ws?debate_id=another&token={link}");
    assert_eq!(
        status_of(tokio_tungstenite::connect_async(&other).await.map(|_| ())),
        403
    );

    // A browser: the token as a subprotocol, from the allowed origin; the echo is aragora.v1.
    let browser_token = jwt("dave", Role::Reader);
    let mut browser = url.clone().into_client_request().unwrap();
    let headers = browser.headers_mut();
    headers.insert(header::ORIGIN, ALLOWED_ORIGIN.parse().unwrap());
    headers.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        format!("aragora.v1, aragora.bearer.{browser_token}")
            .parse()
            .unwrap(),
    );
    let (_socket, response) = tokio_tungstenite::connect_async(browser).await.unwrap();
    assert_eq!(
        response.headers()[header::SEC_WEBSOCKET_PROTOCOL],
        "aragora.v1"
    );

    // A share link, by query: its debate streams; another debate's subscription is refused.
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("{url}&token={link}"))
        .await
        .unwrap();
    futures::SinkExt::send(
        &mut socket,
        Message::Text(
            json!({"type": "subscribe", "debate_id": "another"})
                .to_string()
                .into(),
        ),
    )
    .await
    .unwrap();
    let refusal = loop {
        let message = tokio::time::timeout(PATIENCE, socket.next())
            .await
            .expect("an answer within the patience")
            .expect("the socket stays open")
            .unwrap();
        let Message::Text(text) = message else {
            continue;
        };
        let event: Value = serde_json::from_str(&text).unwrap();
        if event["type"] == "error" {
            break event;
        }
        assert_eq!(
            event["debate_id"], SHARED,
            "only the shared debate streams: {event}"
        );
    };
    assert_eq!(refusal["debate_id"], "another");
    assert_eq!(refusal["data"]["code"], "forbidden");
}

/// The OpenAPI document says an operation needs a credential exactly where the role table does.
#[test]
fn the_documents_security_is_the_role_tables() {
    let doc = aragora_engine::http::openapi::json();
    let paths = doc["paths"].as_object().unwrap();
    let documented = |template: &str| {
        paths.get(template).or_else(|| {
            paths.values().find(|item| {
                item["x-aliases"]
                    .as_array()
                    .is_some_and(|aliases| aliases.iter().any(|a| a == template))
            })
        })
    };
    for template in route_table() {
        let item = documented(&template).unwrap_or_else(|| panic!("{template} is not documented"));
        for (method, operation) in item.as_object().unwrap() {
            if !["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                continue;
            }
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let secured = operation["security"]
                .as_array()
                .is_some_and(|requirements| !requirements.is_empty());
            let open = matches!(need(&template, &method), Need::Open);
            assert_eq!(
                secured, !open,
                "{method} {template}: the document's security says secured={secured}, the role table {:?}",
                need(&template, &method)
            );
        }
    }
}
