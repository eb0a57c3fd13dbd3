//! Idle WebSockets held through the TLS gateway, and how fast a debate's events reach all of them.
//!
//! Starts the release `aragora serve` (SQLite) and `aragora gateway` in front of it, opens
//! `BENCH_WEBSOCKETS` (10,000) `wss://` connections through the gateway, holds them idle for
//! `BENCH_HOLD_SECS` (70: longer than pingora's 60 s read timeout, with the engine's heartbeats
//! off so nothing moves), counts how many are still open, and reads the resident memory each
//! process gained per connection. Then every client subscribes to one running debate and each
//! live event's delivery time is measured from the engine's event timestamp to its arrival at
//! the client (same clock). Prints a Markdown table for `BENCHMARKS.md`.
//!
//! ```text
//! cargo bench --bench websocket_fanout
//! BENCH_WEBSOCKETS=2000 BENCH_HOLD_SECS=5 cargo bench --bench websocket_fanout
//! ```

#[path = "common/mod.rs"]
mod common;
use common::{engine_api, env_or, percentile, serve_command};
use futures::{SinkExt, StreamExt};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

type TlsSocket =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Resident memory of a process, in bytes.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Every process here holds one socket per connection (the gateway two): lift the open-file
/// limit for this process and the children it starts.
fn raise_open_file_limit(wanted: u64) {
    let limit = libc::rlimit {
        rlim_cur: wanted,
        rlim_max: wanted,
    };
    // SAFETY: setrlimit reads a valid rlimit struct; failure is reported, not undefined.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        eprintln!(
            "bench: cannot raise the open-file limit to {wanted} (run as root or raise `ulimit -n`)"
        );
    }
}

struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn connect(port: u16, connector: &tokio_rustls::TlsConnector) -> Option<TlsSocket> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = connector.connect(name, tcp).await.ok()?;
    let url = format!("wss://127.0.0.1:{port}/ws");
    tokio_tungstenite::client_async(url, tls)
        .await
        .ok()
        .map(|(socket, _)| socket)
}

/// What the readers saw: (seq, delivery ms) of every event, and sockets that closed.
#[derive(Default)]
struct Deliveries {
    events: Mutex<Vec<(i64, f64)>>,
    closed: AtomicUsize,
    /// How each connection that ended, ended.
    endings: Mutex<Vec<String>>,
}

fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let sockets: usize = env_or("BENCH_WEBSOCKETS", 10_000);
    let hold = Duration::from_secs(env_or("BENCH_HOLD_SECS", 70));
    let rounds: u32 = env_or("BENCH_ROUNDS", 5);
    let agent_ms: u64 = env_or("BENCH_AGENT_MS", 400);
    raise_open_file_limit((sockets as u64) * 3 + 4096);
    let data = tempfile::tempdir().expect("temp dir");
    let binary = env!("CARGO_BIN_EXE_aragora");
    let mut processes = Processes(Vec::new());

    let mut engine = serve_command(data.path());
    engine
        .env("ARAGORA_OFFLINE_AGENT_LATENCY_MS", agent_ms.to_string())
        .env("ARAGORA_WS_HEARTBEAT_INTERVAL", "3600")
        .stderr(std::fs::File::create(data.path().join("engine.log")).unwrap());
    let mut engine = engine.spawn().expect("start aragora serve");
    let api = engine_api(&mut engine);
    let engine_pid = engine.id();
    processes.0.push(engine);

    let (cert, key) = aragora_gateway::tls::self_signed(&data.path().join("tls")).unwrap();
    let (https, http, admin) = (free_port(), free_port(), free_port());
    let gateway = Command::new(binary)
        .arg("gateway")
        .args(["--upstream", &api])
        .args(["--https-port", &https.to_string()])
        .args(["--http-port", &http.to_string()])
        .args(["--admin-port", &admin.to_string()])
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .env("ARAGORA_GATEWAY_HOST", "127.0.0.1")
        .env("ARAGORA_RATE_LIMIT", "0")
        .env("ARAGORA_GATEWAY_MAX_INFLIGHT", (sockets + 1000).to_string())
        .env("ARAGORA_SLOW_START_SECS", "0")
        .env("ARAGORA_GATEWAY_DRAIN_DELAY", "0")
        .env("ARAGORA_LOG_LEVEL", "warning")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(data.path().join("gateway.log")).unwrap())
        .spawn()
        .expect("start aragora gateway");
    let gateway_pid = gateway.id();
    processes.0.push(gateway);

    let http_client = reqwest::Client::new();
    let started = Instant::now();
    loop {
        let view = http_client
            .get(format!("http://127.0.0.1:{admin}/api/system/upstreams"))
            .send()
            .await;
        let ready = match view {
            Ok(response) => response
                .json::<serde_json::Value>()
                .await
                .is_ok_and(|v| v["ready"] == 1),
            Err(_) => false,
        };
        if ready {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the gateway never saw the engine ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let connector = {
        let mut roots = rustls::RootCertStore::empty();
        let pem = std::fs::read(&cert).unwrap();
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    };

    let base_rss = (rss_bytes(gateway_pid), rss_bytes(engine_pid));
    eprintln!("bench: opening {sockets} wss:// connections through the gateway");
    let opening = Instant::now();
    let mut sinks = Vec::with_capacity(sockets);
    let deliveries = Arc::new(Deliveries::default());
    let mut failed = 0usize;
    let mut pending = futures::stream::iter(0..sockets)
        .map(|_| connect(https, &connector))
        .buffer_unordered(64);
    while let Some(socket) = pending.next().await {
        let Some(socket) = socket else {
            failed += 1;
            continue;
        };
        let (sink, mut stream) = socket.split();
        sinks.push(sink);
        let deliveries = deliveries.clone();
        tokio::spawn(async move {
            let ended = loop {
                let message = match stream.next().await {
                    Some(Ok(message)) => message,
                    Some(Err(err)) => break format!("error: {err}"),
                    None => break "closed without a close frame".to_string(),
                };
                if let Message::Close(frame) = &message {
                    break format!("close frame: {frame:?}");
                }
                if let Message::Text(text) = message {
                    let arrived = now_ms();
                    let Ok(event) = serde_json::from_str::<serde_json::Value>(&text) else {
                        continue;
                    };
                    let (Some(seq), Some(stamp)) =
                        (event["seq"].as_i64(), event["timestamp"].as_str())
                    else {
                        continue;
                    };
                    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(stamp) {
                        let took = arrived - at.timestamp_millis() as f64;
                        deliveries.events.lock().unwrap().push((seq, took));
                    }
                }
            };
            deliveries.closed.fetch_add(1, Ordering::SeqCst);
            deliveries.endings.lock().unwrap().push(ended);
        });
        if sinks.len() % 1000 == 0 {
            eprintln!(
                "bench: {} open ({:.1} s)",
                sinks.len(),
                opening.elapsed().as_secs_f64()
            );
        }
    }
    drop(pending);
    let open_time = opening.elapsed();
    eprintln!(
        "bench: holding {} idle connections for {} s",
        sinks.len(),
        hold.as_secs()
    );
    tokio::time::sleep(hold).await;
    let still_open = sinks.len() - deliveries.closed.load(Ordering::SeqCst);
    if still_open < sinks.len() {
        // Say why: how the client saw them end, and the servers' own warnings.
        for ending in deliveries.endings.lock().unwrap().iter().take(5) {
            eprintln!("bench: a connection ended early: {ending}");
        }
        for name in ["gateway.log", "engine.log"] {
            let log = std::fs::read_to_string(data.path().join(name)).unwrap_or_default();
            for line in log
                .lines()
                .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                .take(5)
            {
                eprintln!("bench: {name}: {line}");
            }
        }
    }
    let held_rss = (rss_bytes(gateway_pid), rss_bytes(engine_pid));
    let held = sinks.len().max(1) as f64;
    let per_connection =
        |after: u64, before: u64| after.saturating_sub(before) as f64 / held / 1024.0;

    // One debate, watched by every connection.
    let created: serde_json::Value = http_client
        .post(format!("http://{api}/api/debates"))
        .json(&serde_json::json!({"topic": "Fan-out benchmark", "rounds": rounds}))
        .send()
        .await
        .expect("create a debate")
        .json()
        .await
        .unwrap();
    let id = created["debate_id"]
        .as_str()
        .expect("debate id")
        .to_string();
    let subscribe = serde_json::json!({"type": "subscribe", "debate_id": id}).to_string();
    for sink in &mut sinks {
        let _ = sink.send(Message::Text(subscribe.clone().into())).await;
    }
    let debate_url = format!("http://{api}/api/debates/{id}");
    let debate_now = || async {
        let response = http_client.get(&debate_url).send().await.unwrap();
        response.json::<serde_json::Value>().await.unwrap()
    };
    let debate = debate_now().await;
    let live_after = debate["last_seq"].as_i64().unwrap_or(0);
    eprintln!(
        "bench: {} subscribed; events after seq {live_after} are live",
        sinks.len()
    );
    let finish = Instant::now();
    let total = loop {
        let debate = debate_now().await;
        if debate["status"] != "running" && debate["status"] != "queued" {
            break debate["last_seq"].as_i64().unwrap_or(0);
        }
        assert!(
            finish.elapsed() < Duration::from_secs(600),
            "the debate never ended"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let expected = (total - live_after).max(0) as usize * sinks.len();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut live: Vec<f64> = loop {
        let live: Vec<f64> = deliveries
            .events
            .lock()
            .unwrap()
            .iter()
            .filter(|(seq, _)| *seq > live_after)
            .map(|(_, ms)| *ms)
            .collect();
        if live.len() >= expected || Instant::now() > deadline {
            break live;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    live.sort_by(|a, b| a.partial_cmp(b).unwrap());

    println!(
        "\n{sockets} wss:// connections through the gateway to one engine (SQLite), held idle {} s; one debate of {rounds} rounds broadcast to all\n",
        hold.as_secs()
    );
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| connections opened (failed) | {} ({failed}) in {:.1} s |",
        sinks.len(),
        open_time.as_secs_f64()
    );
    println!("| still open after the idle hold | {still_open} |");
    println!(
        "| gateway memory per connection | {:.1} KiB |",
        per_connection(held_rss.0, base_rss.0)
    );
    println!(
        "| engine memory per connection | {:.1} KiB |",
        per_connection(held_rss.1, base_rss.1)
    );
    println!(
        "| live events delivered / expected | {} / {expected} |",
        live.len()
    );
    println!(
        "| delivery p50 / p99 / max | {:.1} / {:.1} / {:.1} ms |",
        percentile(&live, 50.0),
        percentile(&live, 99.0),
        live.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "| p99 under 100 ms (seeds) | {} |",
        if percentile(&live, 99.0) < 100.0 {
            "met"
        } else {
            "MISSED"
        }
    );
}
