//! WebSockets through the TLS edge: every watcher of a debate on one replica, and a drained
//! replica's watchers moved to another with no event lost.

use crate::support::{
    eventually, sample, ws_request, Engine, EngineOptions, GatewayProcess, TestDatabase,
};
use futures::StreamExt;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

const PATIENCE: Duration = Duration::from_secs(60);
const WATCHERS: usize = 100;

type TlsSocket =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// An open WebSocket and the replica the gateway pinned it to (its `aragora-affinity` cookie).
type Connection = (TlsSocket, String);

/// Opens `wss://` through the gateway with the gateway's own certificate trusted, sending
/// `token`; `Err` with the HTTP status when the upgrade was answered with one, `Err(None)`
/// when no answer came.
pub(crate) async fn connect_wss(
    gateway_port: u16,
    connector: &tokio_rustls::TlsConnector,
    token: Option<&str>,
    path: &str,
) -> Result<Connection, Option<u16>> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", gateway_port))
        .await
        .map_err(|_| None)?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = connector.connect(name, tcp).await.map_err(|_| None)?;
    let request = ws_request(&format!("wss://127.0.0.1:{gateway_port}{path}"), token);
    let (socket, response) = match tokio_tungstenite::client_async(request, tls).await {
        Ok(connected) => connected,
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            return Err(Some(response.status().as_u16()))
        }
        Err(_) => return Err(None),
    };
    let pin = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("aragora-affinity="))
        .map(|v| v.split(';').next().unwrap_or_default().to_string())
        .unwrap_or_default();
    Ok((socket, pin))
}

/// What one watcher saw of a debate.
#[derive(Debug, Default)]
struct Watch {
    seqs: Vec<i64>,
    close_codes: Vec<u16>,
    /// The replica (affinity token) of each connection, in order.
    replicas: Vec<String>,
}

/// Follows a debate to its end like a browser does: on a close or a broken connection it
/// reconnects through the gateway and resumes after the last `seq` it has.
async fn watch(
    gateway_port: u16,
    connector: tokio_rustls::TlsConnector,
    token: Option<String>,
    id: String,
    first: Option<Connection>,
) -> Watch {
    let deadline = Instant::now() + PATIENCE;
    let mut seen = Watch::default();
    let mut socket = first;
    loop {
        assert!(
            Instant::now() < deadline,
            "watcher did not see the debate end: {seen:?}"
        );
        let last = seen.seqs.last().copied().unwrap_or(0);
        let (mut current, replica) = match socket.take() {
            Some(connection) => connection,
            None => {
                let path = format!("/ws?debate_id={id}&last_seq={last}");
                match connect_wss(gateway_port, &connector, token.as_deref(), &path).await {
                    Ok(connection) => connection,
                    Err(_) => {
                        // The replica is leaving and the gateway has not noticed yet: back off
                        // briefly, as a client's reconnect loop does.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                }
            }
        };
        seen.replicas.push(replica);
        loop {
            let message = tokio::time::timeout(PATIENCE, current.next()).await;
            match message {
                Ok(Some(Ok(Message::Text(text)))) => {
                    let event: Value = serde_json::from_str(&text).expect("JSON event");
                    let Some(seq) = event["seq"].as_i64() else {
                        continue;
                    };
                    seen.seqs.push(seq);
                    if event["type"] == "debate_end" {
                        return seen;
                    }
                }
                Ok(Some(Ok(Message::Close(frame)))) => {
                    seen.close_codes
                        .push(frame.map_or(0, |f| u16::from(f.code)));
                    break;
                }
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_)) | None) => break,
                Err(_) => panic!("no message for {PATIENCE:?}: {seen:?}"),
            }
        }
    }
}

/// The gateway's count of open WebSockets to `engine`.
fn held_to(metrics: &str, engine: &Engine) -> f64 {
    let series = format!(
        "aragora_websocket_connections{{upstream=\"{}\"}}",
        engine.api
    );
    sample(metrics, &series).unwrap_or(0.0)
}

/// Calls an admin endpoint of `engine` with its admin token.
async fn admin(
    engine: &Engine,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = engine.http.request(method, engine.url(path));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("admin request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_debates_watchers_share_one_replica_and_move_without_loss_when_it_drains() {
    let database = TestDatabase::create().await;
    let options = || {
        EngineOptions::postgres(&database.url)
            .env("ARAGORA_REDIS_URL", "redis://127.0.0.1:6379/0")
            .env("ARAGORA_OFFLINE_AGENT_LATENCY_MS", 120)
    };
    let mut engines = Vec::new();
    for _ in 0..3 {
        engines.push(Engine::start(options()).await);
    }
    let upstreams: Vec<String> = engines.iter().map(|e| e.api.to_string()).collect();
    let gateway = GatewayProcess::start(&upstreams, &[]).await;
    gateway.wait_ready_count(3, PATIENCE).await;
    let connector = gateway.tls_connector();
    let port = gateway.https_port;
    let token = gateway.token.clone();

    // Engine 0's agents are held (an injected slow-agent fault) until the watchers' replica is
    // drained, so the drain happens mid-debate however long the watchers take to connect.
    let hold = json!({"kind": "agent_slow", "delay_ms": 2000, "duration_seconds": 600});
    let (status, held) = admin(
        &engines[0],
        reqwest::Method::POST,
        "/api/system/faults",
        Some(hold),
    )
    .await;
    assert_eq!(status, 201, "{held}");

    // The debate runs on engine 0; find one whose watchers the gateway sends elsewhere, so
    // draining their replica does not also interrupt the debate. The others are cancelled, so
    // they do not take engine 0's slots and queue the chosen one.
    let (id, owner, first) = {
        let mut found = None;
        for _ in 0..12 {
            let id = engines[0]
                .start_debate(json!({"topic": "Edge drain", "rounds": 8}))
                .await;
            let probe = connect_wss(
                port,
                &connector,
                token.as_deref(),
                &format!("/ws?debate_id={id}"),
            )
            .await;
            let probe = probe.expect("a WebSocket through the gateway");
            let owner = eventually("the probe to be counted", PATIENCE, || async {
                let metrics = gateway.metrics().await;
                engines.iter().position(|e| held_to(&metrics, e) == 1.0)
            })
            .await;
            if owner != 0 {
                found = Some((id, owner, probe));
                break;
            }
            drop(probe);
            let (status, cancelled) = engines[0]
                .post_json(&format!("/api/debates/{id}/cancel"), &json!({}))
                .await;
            assert_eq!(status, 200, "{cancelled}");
            eventually("the probe to close", PATIENCE, || async {
                (held_to(&gateway.metrics().await, &engines[0]) == 0.0).then_some(())
            })
            .await;
        }
        found.expect("some debate hashes to a replica other than engine 0")
    };

    let mut watchers = vec![tokio::spawn(watch(
        port,
        connector.clone(),
        token.clone(),
        id.clone(),
        Some(first),
    ))];
    for _ in 1..WATCHERS {
        let socket = connect_wss(
            port,
            &connector,
            token.as_deref(),
            &format!("/ws?debate_id={id}"),
        )
        .await;
        assert!(socket.is_ok(), "every watcher gets through the TLS edge");
        watchers.push(tokio::spawn(watch(
            port,
            connector.clone(),
            token.clone(),
            id.clone(),
            socket.ok(),
        )));
    }
    eventually(
        "every watcher on the debate's replica",
        PATIENCE,
        || async {
            let metrics = gateway.metrics().await;
            (held_to(&metrics, &engines[owner]) == WATCHERS as f64).then_some(())
        },
    )
    .await;
    let engine_side = sample(
        &engines[owner].metrics().await,
        "aragora_websocket_connections",
    );
    assert_eq!(
        engine_side,
        Some(WATCHERS as f64),
        "the replica serves all of them"
    );
    let status: Value = engines[0].get(&format!("/api/debates/{id}")).await.1;
    assert_eq!(
        status["status"], "running",
        "the drain must happen mid-debate"
    );

    engines[owner].signal(libc::SIGTERM);
    let (status, _) = admin(
        &engines[0],
        reqwest::Method::DELETE,
        "/api/system/faults",
        None,
    )
    .await;
    assert_eq!(status, 200, "the hold on engine 0's agents is lifted");
    let mut watches = Vec::new();
    for watcher in watchers {
        watches.push(watcher.await.expect("watcher task"));
    }
    let debate = engines[0].wait_final(&id, PATIENCE).await;
    let total = debate["last_seq"].as_i64().unwrap();
    for watch in &watches {
        assert_eq!(
            watch.seqs,
            (1..=total).collect::<Vec<_>>(),
            "every event once, in order"
        );
        assert!(watch.replicas.len() >= 2, "each watcher moved: {watch:?}");
        assert!(
            watch.close_codes.contains(&1001),
            "closed with 1001 (going away): {watch:?}"
        );
    }
    // They all moved to one replica (the debate's next owner on the ring), not the drained one.
    let before: std::collections::BTreeSet<&String> =
        watches.iter().map(|w| &w.replicas[0]).collect();
    let after: std::collections::BTreeSet<&String> =
        watches.iter().map(|w| w.replicas.last().unwrap()).collect();
    assert_eq!(before.len(), 1, "one replica before: {before:?}");
    assert_eq!(after.len(), 1, "one replica after: {after:?}");
    assert_ne!(before, after);
    assert_eq!(held_to(&gateway.metrics().await, &engines[owner]), 0.0);
    let _ = engines[owner].wait_exit(PATIENCE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_closes_its_websockets_with_1001_at_its_drain_timeout() {
    let engine = Engine::start(EngineOptions::sqlite()).await;
    let gateway = GatewayProcess::start(
        &[engine.api.to_string()],
        &[("ARAGORA_GATEWAY_DRAIN_TIMEOUT", "2".into())],
    )
    .await;
    gateway.wait_ready_count(1, PATIENCE).await;
    let connector = gateway.tls_connector();
    let mut sockets = Vec::new();
    for _ in 0..5 {
        let (socket, _) = connect_wss(
            gateway.https_port,
            &connector,
            gateway.token.as_deref(),
            "/ws",
        )
        .await
        .expect("a WebSocket through the gateway");
        sockets.push(socket);
    }
    eventually("the gateway to count 5 WebSockets", PATIENCE, || async {
        let metrics = gateway.metrics().await;
        (held_to(&metrics, &engine) == 5.0).then_some(())
    })
    .await;
    let stopping = Instant::now();
    gateway.signal(libc::SIGTERM);
    for mut socket in sockets {
        // One deadline for the close frame: other frames (heartbeats) must not extend it.
        let deadline = tokio::time::Instant::now() + PATIENCE;
        let code = loop {
            match tokio::time::timeout_at(deadline, socket.next()).await {
                Ok(Some(Ok(Message::Close(frame)))) => break frame.map(|f| u16::from(f.code)),
                Ok(Some(Ok(_))) => continue,
                other => panic!("no close frame, got {other:?}"),
            }
        };
        assert_eq!(code, Some(1001), "Going Away");
    }
    let waited = stopping.elapsed();
    assert!(
        waited >= Duration::from_millis(1500),
        "the WebSockets were held until the 2 s drain timeout, not cut at once: {waited:?}"
    );
    let mut child = gateway;
    let exited = eventually("the gateway to exit", PATIENCE, || {
        let status = child.child.try_wait().unwrap();
        async move { status }
    })
    .await;
    assert!(exited.success(), "{exited:?}");
    // The engine is untouched: the gateway ended only its own side.
    let (status, _) = engine.get("/readyz").await;
    assert_eq!(status, 200);
}
