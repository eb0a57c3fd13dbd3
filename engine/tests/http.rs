//! The REST handlers through `app(state).oneshot(request)`, as axum's testing example does: no
//! socket, no process. Debates run on SQLite with offline agents behind a gate.

mod support;

use aragora_engine::http::{app, Phase};
use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use std::sync::OnceLock;
use support::{eventually, Gate, Harness, AGENTS};
use tower::ServiceExt;

/// The API over `engine`, ready, with `max_running` slots and room for `queue_size` more.
fn api(engine: &Harness, max_running: usize, queue_size: usize) -> Router {
    app(engine.ready_state(max_running, queue_size))
}

struct Answer {
    status: StatusCode,
    location: Option<String>,
    body: Value,
}

async fn call(api: &Router, method: Method, uri: &str, body: Option<&str>) -> Answer {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, support::admin_bearer());
    if body.is_some() {
        request = request.header(header::CONTENT_TYPE, "application/json");
    }
    let request = request
        .body(body.map(|b| Body::from(b.to_string())).unwrap_or_default())
        .unwrap();
    let response = api.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let location = response
        .headers()
        .get(header::LOCATION)
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|err| panic!("{uri} answered non-JSON ({err}): {bytes:?}"));
    Answer {
        status,
        location,
        body,
    }
}

async fn get(api: &Router, uri: &str) -> Answer {
    call(api, Method::GET, uri, None).await
}

async fn post(api: &Router, uri: &str, body: &str) -> Answer {
    call(api, Method::POST, uri, Some(body)).await
}

/// The one error envelope, with this code.
fn assert_error(answer: &Answer, status: StatusCode, code: &str) {
    assert_eq!(answer.status, status, "{}", answer.body);
    let error = &answer.body["error"];
    assert_eq!(error["code"], code, "{}", answer.body);
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        answer.body
    );
    assert_eq!(
        answer.body.as_object().unwrap().len(),
        1,
        "nothing beside the error: {}",
        answer.body
    );
}

fn create_body(topic: &str) -> String {
    json!({"topic": topic, "rounds": 1, "agents": AGENTS}).to_string()
}

async fn finished(api: &Router, id: &str) -> Value {
    eventually(&format!("debate {id} to end"), || async {
        let body = get(api, &format!("/api/debates/{id}")).await.body;
        matches!(
            body["status"].as_str(),
            Some("completed" | "failed" | "cancelled" | "timed_out")
        )
        .then_some(body)
    })
    .await
}

#[tokio::test]
async fn create_answers_202_with_the_debates_location_and_the_debate_runs_there() {
    let engine = Harness::new(&Gate::open()).await;
    let api = api(&engine, 2, 2);

    let created = post(&api, "/api/debates", &create_body("Ship on Fridays?")).await;

    assert_eq!(created.status, StatusCode::ACCEPTED, "{}", created.body);
    let id = created.body["debate_id"].as_str().unwrap().to_string();
    let location = created.location.expect("a Location header");
    assert_eq!(location, format!("/api/debates/{id}"));
    assert_eq!(created.body["links"]["self"], location);
    assert_eq!(created.body["status"], "queued");
    let done = finished(&api, &id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["topic"], "Ship on Fridays?");
    let messages = get(&api, &format!("{location}/messages")).await;
    assert_eq!(messages.status, StatusCode::OK);
    // One round of two positions and two critiques, then two votes.
    assert_eq!(messages.body["total"], 6, "{}", messages.body);
    let listed = messages.body["messages"].as_array().unwrap();
    let of = |kind: &str| listed.iter().find(|m| m["type"] == kind).unwrap().clone();
    let (position, critique, vote) = (of("agent_message"), of("critique"), of("vote"));
    assert_eq!(
        (&position["phase"], &position["target"], &position["choice"]),
        (&json!("proposal"), &Value::Null, &Value::Null)
    );
    assert!(
        AGENTS.contains(&critique["target"].as_str().unwrap()),
        "{critique}"
    );
    assert_eq!(critique["choice"], Value::Null);
    assert!(AGENTS.contains(&vote["choice"].as_str().unwrap()), "{vote}");
    for message in [&position, &critique, &vote] {
        assert_eq!(message["provider"], "offline");
        assert!(message["text"].as_str().is_some_and(|t| !t.is_empty()));
    }
    assert_eq!(
        get(&api, &format!("/api/v1/debates/{id}")).await.body["debate_id"],
        id.as_str()
    );
}

#[tokio::test]
async fn bad_bodies_are_refused_with_the_json_error_envelope() {
    let engine = Harness::new(&Gate::open()).await;
    let api = api(&engine, 2, 2);
    let cases = [
        ("{not json", StatusCode::BAD_REQUEST, "invalid_json"),
        (
            r#"{"topic": "t", "colour": "red"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            r#"{"rounds": 2}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            r#"{"topic": "   "}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            r#"{"topic": "t", "rounds": 0}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            r#"{"topic": "t", "agents": ["offline-skeptic"]}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            r#"{"topic": "t", "agents": ["nobody", "offline-skeptic"]}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            r#"{"topic": "t", "consensus": "most"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
    ];
    for (body, status, code) in cases {
        let answer = post(&api, "/api/debates", body).await;
        assert_error(&answer, status, code);
    }
    let untyped = Request::post("/api/debates")
        .header(header::AUTHORIZATION, support::admin_bearer())
        .body(Body::from(create_body("t")))
        .unwrap();
    let response = api.clone().oneshot(untyped).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let listed = get(&api, "/api/debates").await;
    assert_eq!(listed.body["total"], 0, "no refused body created a debate");
}

#[tokio::test]
async fn unknown_debates_paths_and_methods_answer_json_errors() {
    let engine = Harness::new(&Gate::open()).await;
    let api = api(&engine, 2, 2);
    for uri in [
        "/api/debates/no-such-id",
        "/api/debates/no-such-id/messages",
        "/api/debates/no-such-id/receipt",
        "/api/nothing-here",
    ] {
        assert_error(&get(&api, uri).await, StatusCode::NOT_FOUND, "not_found");
    }
    assert_error(
        &post(&api, "/api/debates/no-such-id/cancel", "{}").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &call(&api, Method::DELETE, "/api/debates", None).await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
}

#[tokio::test]
async fn cancel_stops_a_running_debate_and_is_refused_with_409_once_it_ended() {
    let gate = Gate::closed("proposal");
    let engine = Harness::new(&gate).await;
    let api = api(&engine, 2, 2);
    let created = post(&api, "/api/debates", &create_body("Cancel me")).await;
    let id = created.body["debate_id"].as_str().unwrap().to_string();
    gate.held(2).await;

    let cancelled = post(&api, &format!("/api/debates/{id}/cancel"), "").await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
    assert_eq!(cancelled.body["status"], "cancelled");
    assert_eq!(cancelled.body["outcome"], "cancelled");

    let again = post(&api, &format!("/api/debates/{id}/cancel"), "").await;
    assert_error(&again, StatusCode::CONFLICT, "conflict");
    let receipt = get(&api, &format!("/api/debates/{id}/receipt")).await;
    assert_error(&receipt, StatusCode::NOT_FOUND, "no_receipt");
}

#[tokio::test]
async fn a_full_queue_answers_429_with_retry_after() {
    let gate = Gate::closed("proposal");
    let engine = Harness::new(&gate).await;
    let api = api(&engine, 1, 0);
    let first = post(&api, "/api/debates", &create_body("one")).await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    let request = Request::post("/api/debates")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, support::admin_bearer())
        .body(Body::from(create_body("two")))
        .unwrap();
    let response = api.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key(header::RETRY_AFTER));
    gate.release();
}

#[tokio::test]
async fn list_filters_by_status_and_pages() {
    let gate = Gate::closed("proposal");
    let engine = Harness::new(&gate).await;
    let api = api(&engine, 1, 2);
    let mut ids = Vec::new();
    for topic in ["a", "b", "c"] {
        let created = post(&api, "/api/debates", &create_body(topic)).await;
        ids.push(created.body["debate_id"].as_str().unwrap().to_string());
    }
    gate.held(2).await;
    // Cancel the last one so that three states are present: running, queued, cancelled.
    let cancelled = post(&api, &format!("/api/debates/{}/cancel", ids[2]), "").await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);

    let ids_of = |answer: &Answer| -> Vec<String> {
        answer.body["debates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["debate_id"].as_str().unwrap().to_string())
            .collect()
    };
    let all = get(&api, "/api/debates").await;
    assert_eq!(all.body["total"], 3);
    let running = get(&api, "/api/debates?status=running").await;
    assert_eq!(ids_of(&running), [ids[0].clone()]);
    let active = get(&api, "/api/debates?status=active").await;
    assert_eq!(active.body["total"], 2);
    let finished = get(&api, "/api/debates?status=finished").await;
    assert_eq!(ids_of(&finished), [ids[2].clone()]);
    let either = get(&api, "/api/debates?status=queued,cancelled").await;
    assert_eq!(either.body["total"], 2);
    let page = get(&api, "/api/debates?limit=1&offset=1").await;
    assert_eq!(
        (page.body["total"].as_i64(), ids_of(&page).len()),
        (Some(3), 1)
    );
    assert_eq!(page.body["limit"], 1);

    for uri in [
        "/api/debates?status=sleeping",
        "/api/debates?limit=0",
        "/api/debates?limit=101",
        "/api/debates?offset=-1",
        "/api/debates?colour=red",
    ] {
        assert_error(
            &get(&api, uri).await,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        );
    }
    gate.release();
}

#[tokio::test]
async fn an_engine_still_starting_is_not_ready_and_says_why() {
    let engine = Harness::new(&Gate::open()).await;
    let starting = app(engine.state(
        OnceLock::new(),
        Phase::Starting("running database migrations".into()),
    ));

    let ready = starting
        .clone()
        .oneshot(Request::get("/readyz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let created = post(&starting, "/api/debates", &create_body("too early")).await;
    assert_error(&created, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    assert!(
        created.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("running database migrations"),
        "{}",
        created.body
    );

    let running = api(&engine, 1, 1);
    let ready = running
        .oneshot(Request::get("/readyz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
}
