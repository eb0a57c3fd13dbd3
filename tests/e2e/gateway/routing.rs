//! Where requests go: only to ready replicas, never replayed when not idempotent (a GET only
//! when the replica never read it), away from a killed replica, sticky by debate and pin, and
//! traced into the caller's trace.

use super::*;

on_both_engines!(
    a_killed_replica_leaves_rotation_after_a_few_refused_connections_and_only_its_in_flight_requests_fail,
    only_ready_replicas_get_traffic_and_none_ready_answers_503_at_once,
    a_replica_hanging_up_mid_request_gets_a_json_502_and_a_post_is_never_replayed,
    a_replica_resetting_a_request_unread_gets_a_get_again_but_never_a_post,
    spans_reach_an_otlp_collector_in_the_callers_trace,
    debates_stick_to_one_replica_clients_to_their_pin_and_removing_a_replica_remaps_its_share,
    http2_carries_bodies_of_every_size_both_ways_to_a_real_engine,
    a_chunked_answer_reaches_http_1_1_and_http_2_clients_whole,
);

/// A replica's chunked answer: passed on as it came to an HTTP/1.1 client, decoded into
/// HTTP/2's own framing for an h2 one (whose frames may not carry `Transfer-Encoding`).
async fn a_chunked_answer_reaches_http_1_1_and_http_2_clients_whole() {
    let (_upstream, gateway) = gateway_with_echo(&[]).await;
    for (client, version) in [
        (
            gateway.client_builder().http1_only().build().unwrap(),
            reqwest::Version::HTTP_11,
        ),
        (gateway.client(), reqwest::Version::HTTP_2),
    ] {
        for _ in 0..2 {
            let response = client
                .get(gateway.https_url("/chunked"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.version(), version);
            assert_eq!(response.status(), 200, "{version:?}");
            assert!(response.headers().contains_key("x-request-id"));
            assert_eq!(
                response.text().await.unwrap(),
                crate::support::echo::CHUNKED_BODY,
                "{version:?}"
            );
        }
    }
}

/// HTTP/2 through the edge to a real engine: a debate created by POST (its body sent on) and
/// read back; the 220 KB OpenAPI document whole and byte for byte as the engine sends it
/// (over three times the client's initial flow-control window); many streams at once on the
/// one connection; HEAD without a body; every answer stamped by the edge.
async fn http2_carries_bodies_of_every_size_both_ways_to_a_real_engine() {
    let engine = Engine::start(EngineOptions::sqlite()).await;
    let gateway = GatewayProcess::start(&[engine.api.to_string()], &[]).await;
    gateway.wait_ready_count(1, PATIENCE).await;
    let client = gateway.client();
    let created = client
        .post(gateway.https_url("/api/debates"))
        .json(&serde_json::json!({"topic": "Is HTTP/2 carried whole?", "rounds": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.version(), reqwest::Version::HTTP_2);
    assert_eq!(created.status(), 202);
    for stamped in [
        "x-request-id",
        "strict-transport-security",
        "x-content-type-options",
    ] {
        assert!(
            created.headers().contains_key(stamped),
            "{stamped} missing: {:?}",
            created.headers()
        );
    }
    let id = created.json::<Value>().await.unwrap()["debate_id"]
        .as_str()
        .unwrap()
        .to_string();
    let record = fetch_json(client.get(gateway.https_url(&format!("/api/debates/{id}")))).await;
    assert_eq!(record["topic"], "Is HTTP/2 carried whole?", "{record}");

    let direct = engine
        .http
        .get(engine.url("/api/openapi.json"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(direct.len() > 3 * 65_535, "{} bytes", direct.len());
    let fetches = (0..8).map(|_| {
        let client = client.clone();
        let url = gateway.https_url("/api/openapi.json");
        async move {
            let response = client.get(url).send().await.unwrap();
            assert_eq!(response.version(), reqwest::Version::HTTP_2);
            assert_eq!(response.status(), 200);
            response.bytes().await.unwrap()
        }
    });
    for through in futures::future::join_all(fetches).await {
        assert!(
            through == direct,
            "{} bytes against {}",
            through.len(),
            direct.len()
        );
    }
    let head = client
        .head(gateway.https_url("/api/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert!(head.bytes().await.unwrap().is_empty());
}

async fn only_ready_replicas_get_traffic_and_none_ready_answers_503_at_once() {
    let ready = EchoUpstream::start(true).await;
    let unready = EchoUpstream::start(false).await;
    let gateway =
        GatewayProcess::start(&[ready.addr.to_string(), unready.addr.to_string()], &[]).await;
    gateway.wait_ready_count(1, PATIENCE).await;
    let client = gateway.client();
    for _ in 0..40 {
        assert_eq!(
            get_status(&client, &gateway.https_url("/api/debates")).await,
            200
        );
    }
    assert_eq!(ready.served(), 40);
    assert_eq!(
        unready.served(),
        0,
        "a replica that is not ready never receives a request"
    );

    ready.set_ready(false);
    gateway.wait_ready_count(0, PATIENCE).await;
    let started = Instant::now();
    let response = client
        .get(gateway.https_url("/api/debates"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "no hang: {:?}",
        started.elapsed()
    );
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "no_ready_upstream");
    let readyz = client
        .get(gateway.https_url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        readyz.status(),
        503,
        "the gateway is not ready without a ready replica"
    );

    // A replica never ready before serves from its first passing check, like any new one.
    unready.set_ready(true);
    let view = gateway.wait_ready_count(1, PATIENCE).await;
    let replica = |view: &Value, addr: std::net::SocketAddr| {
        view["upstreams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["addr"] == addr.to_string())
            .unwrap()
            .clone()
    };
    assert_eq!(replica(&view, unready.addr)["ready"], true);
    let response = client
        .get(gateway.https_url("/api/debates"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // One taken out of rotation needs two passing checks in a row to come back.
    ready.set_ready(true);
    let view = gateway.wait_ready_count(2, PATIENCE).await;
    let back = replica(&view, ready.addr);
    assert!(back["consecutive_ok"].as_u64().unwrap() >= 2, "{back}");
    assert_eq!(unready.served(), 1);
}

async fn a_replica_hanging_up_mid_request_gets_a_json_502_and_a_post_is_never_replayed() {
    let (replicas, gateway) = gateway_with_echoes(2).await;
    let client = gateway.client();
    let served = || replicas.iter().map(EchoUpstream::served).sum::<usize>();
    for (method, attempt) in [("GET", 1), ("POST", 2), ("GET", 3), ("POST", 4)] {
        let response = client
            .request(method.parse().unwrap(), gateway.https_url("/hang-up"))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 502, "{method}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "bad_gateway", "{method}: {body}");
        assert_eq!(
            served(),
            attempt,
            "{method}: the request reached a replica once, never replayed"
        );
    }
    let inflight = eventually(
        "the gateway's in-flight count back to 0",
        PATIENCE,
        || async {
            let metrics = gateway.metrics().await;
            (sample(&metrics, "aragora_gateway_inflight_requests") == Some(0.0)).then_some(())
        },
    )
    .await;
    assert_eq!(inflight, ());
    let fine = client.get(gateway.https_url("/api/debates")).send().await;
    assert_eq!(fine.unwrap().status(), 200, "the gateway keeps serving");
}

async fn a_replica_resetting_a_request_unread_gets_a_get_again_but_never_a_post() {
    // One replica: the GET can only succeed by going to it again, on a new connection.
    let (replicas, gateway) = gateway_with_echoes(1).await;
    let replica = &replicas[0];
    let client = gateway.client();
    let retries = |metrics: &str| sample(metrics, "aragora_upstream_retries_total").unwrap_or(0.0);
    let retried_before = retries(&gateway.metrics().await);
    replica.reset_next_unread();
    let response = client
        .get(gateway.https_url("/reset-unread"))
        .send()
        .await
        .unwrap();
    assert!(!replica.reset_armed(), "the GET met the reset");
    assert_eq!(
        response.status(),
        200,
        "a GET the replica never read is sent again"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["path"], "/reset-unread");
    assert_eq!(replica.served(), 1);
    assert_eq!(retries(&gateway.metrics().await) - retried_before, 1.0);
    replica.reset_next_unread();
    let response = client
        .post(gateway.https_url("/reset-unread"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert!(!replica.reset_armed(), "the POST met the reset");
    assert_eq!(response.status(), 502, "a POST is never sent twice");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_gateway", "{body}");
    assert_eq!(replica.served(), 1, "the POST was not replayed");
}

async fn a_killed_replica_leaves_rotation_after_a_few_refused_connections_and_only_its_in_flight_requests_fail(
) {
    let (mut engines, ports) = three_engines().await;
    let upstreams: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    // Health checks alone would take it out only after 20 s or more (3 checks 10 s apart; the
    // first round runs at once, so the replicas are in rotation from the start): the passive
    // count of refused connections must do it first. At a second apart, a loaded machine's
    // slow requests let the checks win the race, and no request met the dead replica.
    let gateway = GatewayProcess::start(
        &upstreams,
        &[("ARAGORA_HEALTH_INTERVAL_MS", "10000".into())],
    )
    .await;
    gateway.wait_ready_count(3, PATIENCE).await;
    let workers = 4;
    let load = Load::start(
        gateway.client(),
        gateway.https_url("/api/debates?limit=5"),
        workers,
    );
    load.wait_for_more(50).await;
    let retries = |metrics: &str| sample(metrics, "aragora_upstream_retries_total").unwrap_or(0.0);
    let retried_before = retries(&gateway.metrics().await);

    engines[1].signal(libc::SIGKILL);
    gateway.wait_ready_count(2, PATIENCE).await;
    let retried = retries(&gateway.metrics().await) - retried_before;
    load.wait_for_more(100).await;
    let (ok, failed, errors) = load.finish().await;
    // Counts, not seconds: each refused connection is retried on another replica, and the
    // replica is out after 3 of them (ARAGORA_UNHEALTHY_THRESHOLD), give or take the
    // requests the other workers had already sent its way.
    let threshold = 3.0;
    assert!(retried >= 1.0, "no request met the dead replica: {retried}");
    assert!(
        retried <= threshold + workers as f64,
        "{retried} requests went to the dead replica before it left rotation (at most {threshold} + {workers})"
    );
    assert!(
        failed <= workers,
        "{failed} failures of {ok} (at most the {workers} in flight): {:?}",
        &errors[..errors.len().min(5)]
    );
    let _ = engines[1].wait_exit(Duration::from_secs(5)).await;
}

async fn spans_reach_an_otlp_collector_in_the_callers_trace() {
    let collector = crate::support::otlp::OtlpSink::start().await;
    let (_upstream, gateway) = gateway_with_echo(&[
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://{}", collector.addr),
        ),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
    ])
    .await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let response = gateway
        .client()
        .get(gateway.https_url("/api/debates/abc"))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .send()
        .await
        .unwrap();
    let echoed: Value = response.json().await.unwrap();
    let forwarded = echoed["headers"]["traceparent"]
        .as_str()
        .unwrap()
        .to_string();
    let gateway_span = forwarded.split('-').nth(2).unwrap().to_string();
    let bytes = |hex: &str| {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect::<Vec<u8>>()
    };
    eventually("the gateway's span at the collector", PATIENCE, || async {
        let exported = collector.received("/v1/traces", &bytes(trace_id))
            && collector.received("/v1/traces", &bytes(&gateway_span))
            && collector.received("/v1/traces", b"/api/debates/{id}");
        exported.then_some(())
    })
    .await;
}

async fn served_by(
    client: &reqwest::Client,
    url: &str,
    cookie: Option<&str>,
) -> (String, Option<String>) {
    let mut request = client.get(url);
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    let set_cookie = response
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_string());
    let body: Value = response.json().await.unwrap();
    (body["upstream"].as_str().unwrap().to_string(), set_cookie)
}

async fn debates_stick_to_one_replica_clients_to_their_pin_and_removing_a_replica_remaps_its_share()
{
    let (upstreams, gateway) = gateway_with_echoes(3).await;
    let client = gateway.client();

    // Every request and watcher of one debate reaches the same replica.
    let debate_url = gateway.https_url("/api/debates/debate-42/messages");
    let (home, _) = served_by(&client, &debate_url, None).await;
    for _ in 0..20 {
        assert_eq!(served_by(&client, &debate_url, None).await.0, home);
        let ws_style = gateway.https_url("/ws?debate_id=debate-42&last_seq=7");
        assert_eq!(served_by(&client, &ws_style, None).await.0, home);
    }

    // A client is pinned by cookie, with the attributes browsers need.
    let (pinned_to, cookie) = served_by(&client, &gateway.https_url("/api/debates"), None).await;
    let cookie = cookie.expect("the first response pins the client");
    for attribute in ["HttpOnly", "Secure", "SameSite=Lax", "Max-Age=1800"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let pair = cookie.split(';').next().unwrap().to_string();
    for _ in 0..20 {
        let (replica, renewed) =
            served_by(&client, &gateway.https_url("/api/debates"), Some(&pair)).await;
        assert_eq!(replica, pinned_to);
        assert!(renewed.is_none(), "a valid pin is not reissued");
    }

    let owners = |ids: std::ops::Range<u32>| {
        let client = client.clone();
        let gateway = &gateway;
        async move {
            let mut owners = Vec::new();
            for id in ids {
                let url = gateway.https_url(&format!("/api/debates/d{id}"));
                owners.push(served_by(&client, &url, None).await.0);
            }
            owners
        }
    };
    let before = owners(0..150).await;
    let distinct: std::collections::BTreeSet<&String> = before.iter().collect();
    assert_eq!(distinct.len(), 3, "debates spread over every replica");

    // Take the pinned client's replica out: the client is re-pinned, debates on the other
    // replicas stay where they are.
    let leaving = upstreams
        .iter()
        .find(|u| u.addr.to_string() == pinned_to)
        .unwrap();
    leaving.set_ready(false);
    gateway.wait_ready_count(2, PATIENCE).await;
    let (moved_to, repinned) =
        served_by(&client, &gateway.https_url("/api/debates"), Some(&pair)).await;
    assert_ne!(moved_to, pinned_to);
    assert!(repinned.is_some(), "the client gets a new pin");
    let after = owners(0..150).await;
    let mut moved = 0;
    for (was, now) in before.iter().zip(&after) {
        if was != now {
            assert_eq!(was, &pinned_to, "only debates of the removed replica move");
            moved += 1;
        }
    }
    let share = moved as f64 / before.len() as f64;
    assert!(
        (0.15..=0.55).contains(&share),
        "{moved} of 150 debates moved ({share:.2}); about 1/3 expected"
    );
}
