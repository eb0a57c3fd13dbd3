//! Gateway claims no other test proves: past `ARAGORA_GATEWAY_MAX_INFLIGHT` the next request
//! gets 503 with the JSON envelope and Retry-After, and the gateway recovers; an idle upgraded
//! WebSocket is cut after `ARAGORA_WS_IDLE_TIMEOUT` while a busy one stays; an upstream given
//! by name is re-resolved every `ARAGORA_DNS_REFRESH_SECS`.

use crate::support::held::HeldUpstream;
use crate::support::{eventually, hosts, Engine, EngineOptions, GatewayProcess};
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

const PATIENCE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_inflight_the_next_request_gets_503_with_retry_after_and_the_gateway_recovers() {
    let upstream = HeldUpstream::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let gateway = GatewayProcess::start(
        &[upstream.addr.to_string()],
        &[("ARAGORA_GATEWAY_MAX_INFLIGHT", "2".into())],
    )
    .await;
    gateway.wait_ready_count(1, PATIENCE).await;
    let client = gateway.client();

    // Two requests held at the replica: the gateway's whole allowance is in flight.
    let held: Vec<_> = (0..2)
        .map(|_| tokio::spawn(client.get(gateway.https_url("/hold")).send()))
        .collect();
    eventually("two requests held at the replica", PATIENCE, || async {
        (upstream.holding() == 2).then_some(())
    })
    .await;

    let refused = client
        .get(gateway.https_url("/api/debates"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    assert_eq!(
        refused
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("1")
    );
    let body: Value = refused.json().await.expect("a JSON body");
    assert_eq!(body["error"]["code"], "overloaded", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ARAGORA_GATEWAY_MAX_INFLIGHT"),
        "{body}"
    );
    assert_eq!(
        upstream.holding(),
        2,
        "the refused request never reached it"
    );

    // The held requests finish whole, and the gateway admits again.
    upstream.release();
    for request in held {
        let response = request.await.unwrap().expect("the held request completes");
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["held"], true, "{body}");
    }
    let admitted = eventually("a request admitted again", PATIENCE, || async {
        let response = client
            .get(gateway.https_url("/api/debates"))
            .send()
            .await
            .ok()?;
        (response.status() == 200).then_some(response)
    })
    .await;
    let body: Value = admitted.json().await.unwrap();
    assert_eq!(body["upstream"], upstream.addr.to_string(), "{body}");
}

type TlsSocket =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

async fn wss(gateway: &GatewayProcess, path: &str) -> TlsSocket {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", gateway.https_port))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = gateway.tls_connector().connect(name, tcp).await.unwrap();
    let (socket, _) = tokio_tungstenite::client_async(gateway.wss_request(path), tls)
        .await
        .expect("the WebSocket upgrade through the gateway");
    socket
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_websocket_is_cut_after_the_idle_timeout_and_a_busy_one_is_not() {
    let idle_timeout = Duration::from_secs(2);
    // No heartbeats from the engine during the test: an idle socket is silent both ways.
    let engine =
        Engine::start(EngineOptions::sqlite().env("ARAGORA_WS_HEARTBEAT_INTERVAL", 3600)).await;
    let gateway = GatewayProcess::start(
        &[engine.api.to_string()],
        &[(
            "ARAGORA_WS_IDLE_TIMEOUT",
            idle_timeout.as_secs().to_string(),
        )],
    )
    .await;
    gateway.wait_ready_count(1, PATIENCE).await;

    let mut idle = wss(&gateway, "/ws").await;
    let mut busy = wss(&gateway, "/ws").await;
    let opened = Instant::now();

    // The busy one pings every half timeout for three timeouts; every ping gets its pong.
    let busy_side = tokio::spawn(async move {
        let mut last_pong = Duration::ZERO;
        while opened.elapsed() < idle_timeout * 3 {
            busy.send(Message::Text(r#"{"type":"ping"}"#.into()))
                .await
                .expect("the busy socket stays writable");
            let answer = tokio::time::timeout(PATIENCE, busy.next())
                .await
                .expect("a pong in time")
                .expect("the busy socket stays open")
                .expect("the busy socket stays healthy");
            let answer: Value = serde_json::from_str(answer.to_text().unwrap()).unwrap();
            assert_eq!(answer["data"]["pong"], true, "{answer}");
            last_pong = opened.elapsed();
            tokio::time::sleep(idle_timeout / 2).await;
        }
        last_pong
    });

    // The idle one sends and receives nothing until the gateway ends it.
    let ended = tokio::time::timeout(idle_timeout * 8, async {
        match idle.next().await {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => opened.elapsed(),
            Some(Ok(message)) => panic!("the idle socket got {message:?}"),
        }
    })
    .await
    .expect("the gateway cuts the idle WebSocket well within 8 idle timeouts");
    assert!(
        ended >= idle_timeout.mul_f64(0.75),
        "cut after {ended:?}, before the idle timeout of {idle_timeout:?}"
    );
    let last_pong = busy_side
        .await
        .expect("the busy socket stays open and answered");
    assert!(
        last_pong > ended && last_pong >= idle_timeout * 2,
        "the busy socket answered until {last_pong:?}; the idle one was cut at {ended:?}"
    );
}

/// A replica listening on `ip` at `port`.
async fn replica_at(ip: &str, port: u16) -> Option<HeldUpstream> {
    let addr: SocketAddr = format!("{ip}:{port}").parse().unwrap();
    HeldUpstream::start(addr).await.ok()
}

/// Which replica served a request through the gateway.
async fn served_by(gateway: &GatewayProcess, client: &reqwest::Client) -> Option<String> {
    let response = client.get(gateway.https_url("/who")).send().await.ok()?;
    let body: Value = response.json().await.ok()?;
    body["upstream"].as_str().map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_name_is_re_resolved_and_the_gateway_follows_its_answers() {
    // Two replicas on one port under two loopback addresses, as a headless service has.
    let (first, second) = eventually("one port free on two addresses", PATIENCE, || async {
        let first = replica_at("127.0.0.2", 0).await?;
        let second = replica_at("127.0.0.3", first.addr.port()).await?;
        Some((first, second))
    })
    .await;
    let port = first.addr.port();
    let (gateway, hosts) = hosts::start(
        &[format!("replicas.aragora.test:{port}")],
        "127.0.0.2 replicas.aragora.test\n",
        &[("ARAGORA_DNS_REFRESH_SECS", "1".into())],
    )
    .await;
    gateway.wait_ready_count(1, PATIENCE).await;
    let client = gateway.client();
    assert_eq!(
        served_by(&gateway, &client).await,
        Some(first.addr.to_string())
    );

    // The name gains an address: a second replica joins.
    hosts.set("127.0.0.2 replicas.aragora.test\n127.0.0.3 replicas.aragora.test\n");
    let both = gateway.wait_ready_count(2, PATIENCE).await;
    let listed: Vec<&str> = both["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["addr"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        [first.addr.to_string(), second.addr.to_string()],
        "{both}"
    );

    // The name loses its first address: only the second replica is left, and it serves.
    hosts.set("127.0.0.3 replicas.aragora.test\n");
    let left = eventually("the first address to leave the pool", PATIENCE, || async {
        let body = gateway.try_admin_json("/api/system/upstreams").await?;
        (body["total"] == 1).then_some(body)
    })
    .await;
    assert_eq!(
        left["upstreams"][0]["addr"],
        second.addr.to_string(),
        "{left}"
    );
    assert_eq!(
        left["upstreams"][0]["name"],
        format!("replicas.aragora.test:{port}"),
        "{left}"
    );
    for _ in 0..10 {
        assert_eq!(
            served_by(&gateway, &client).await,
            Some(second.addr.to_string())
        );
    }
}
