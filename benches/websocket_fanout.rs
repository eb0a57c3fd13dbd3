//! Idle WebSockets held through the TLS gateway, and how fast a debate's events reach all of them.
//!
//! Starts the release `aragora serve` (SQLite) and `aragora gateway` in front of it, opens
//! `BENCH_WEBSOCKETS` (10,000) `wss://` connections through the gateway, holds them idle for
//! `BENCH_HOLD_SECS` (70: longer than pingora's 60 s read timeout, with the engine's heartbeats
//! off so nothing moves), counts how many are still open, and reads the resident memory each
//! process gained per connection. Then every client subscribes to one running debate and each
//! live event's delivery time is measured from the engine's event timestamp (taken before the
//! event is stored) to its arrival at the client (same clock), along with the CPU time each
//! process spent while the debate was broadcast. Prints a Markdown table for `BENCHMARKS.md`.
//!
//! Where one gateway cannot hold `BENCH_WEBSOCKETS` under the open-file limit (two sockets per
//! WebSocket), `BENCH_GATEWAYS` (default: 2 then, else 1) gateway processes share the HTTPS
//! port (`ARAGORA_GATEWAY_SHARE_HTTPS_PORT`, one proxy runtime each) and the kernel spreads the
//! connections over them; their memory and CPU are reported summed.
//!
//! `BENCH_TARGET=engine` connects `ws://` straight to the engine's WebSocket listener instead
//! (no gateway, no TLS), to tell the gateway's share of the delivery time from the rest.
//!
//! ```text
//! cargo bench --bench websocket_fanout
//! BENCH_WEBSOCKETS=2000 BENCH_HOLD_SECS=5 cargo bench --bench websocket_fanout
//! BENCH_TARGET=engine BENCH_WEBSOCKETS=2000 BENCH_HOLD_SECS=5 cargo bench --bench websocket_fanout
//! ```

#[path = "common/mod.rs"]
mod common;
use common::{engine_api, env_or, percentile, serve_command};
use futures::{SinkExt, StreamExt};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

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

/// CPU time (user + system) a process has used, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at the state, field 3;
    // utime and stime are fields 14 and 15, in clock ticks.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // SAFETY: sysconf only reads a configuration value.
    let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (ticks(11) + ticks(12)) as f64 / per_sec
}

/// Every process here holds one socket per connection (a gateway two): lift the open-file
/// limit for this process and the children it starts, as far as the hard limit allows; returns
/// the limit they get.
fn raise_open_file_limit(wanted: u64) -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read or write a valid rlimit struct; failure is
    // reported, not undefined.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        let raised = libc::rlimit {
            rlim_cur: wanted,
            rlim_max: wanted.max(limit.rlim_max),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
            return wanted;
        }
        // Raising the hard limit needs CAP_SYS_RESOURCE; the soft one can reach the hard one.
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
    eprintln!(
        "bench: the open-file limit stays at {} (raising it needs CAP_SYS_RESOURCE): one gateway, \
         with two sockets per WebSocket, can hold about {}",
        limit.rlim_cur,
        limit.rlim_cur.saturating_sub(32) / 2
    );
    limit.rlim_cur
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

/// Where the clients connect.
#[derive(Clone)]
enum Target {
    /// `wss://` through the gateway's TLS listener.
    Gateway(u16, tokio_rustls::TlsConnector),
    /// `ws://` straight to the engine's WebSocket listener.
    Engine(String),
}

/// The client side of each connection. tungstenite zero-fills its whole read buffer before
/// every read, so its default 128 KiB buffer costs each received event a 128 KiB memset: with
/// 10,000 clients in this process that, not the servers, was most of the delivery time.
fn client_config() -> WebSocketConfig {
    let mut config = WebSocketConfig::default();
    config.read_buffer_size = env_or("BENCH_CLIENT_READ_BUFFER", 4 * 1024);
    config
}

/// Opens one connection and hands it to a reader task.
async fn open(target: &Target, readers: &Readers) -> Result<(), String> {
    match target {
        Target::Gateway(port, connector) => {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", *port))
                .await
                .map_err(|err| format!("connect: {err}"))?;
            let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
            let tls = connector
                .connect(name, tcp)
                .await
                .map_err(|err| format!("TLS handshake: {err}"))?;
            let url = format!("wss://127.0.0.1:{port}/ws");
            readers.start(url, tls).await
        }
        Target::Engine(addr) => {
            let tcp = tokio::net::TcpStream::connect(addr.as_str())
                .await
                .map_err(|err| format!("connect: {err}"))?;
            readers.start(format!("ws://{addr}/ws"), tcp).await
        }
    }
}

/// What the readers saw: (seq, delivery ms) of every event, and connections that ended.
#[derive(Default)]
struct Deliveries {
    events: Mutex<Vec<(i64, f64)>>,
    closed: AtomicUsize,
    /// How each connection that ended, ended, and how long after its upgrade.
    endings: Mutex<Vec<(String, Duration)>>,
}

/// Starts one task per connection: it waits for the subscribe message, sends it, and records
/// every event's delivery time on arrival.
#[derive(Clone)]
struct Readers {
    deliveries: Arc<Deliveries>,
    subscribe: tokio::sync::watch::Receiver<Option<String>>,
}

/// The fields of an event the bench reads.
#[derive(serde::Deserialize)]
struct Stamped<'a> {
    seq: Option<i64>,
    #[serde(borrow)]
    timestamp: Option<&'a str>,
}

impl Readers {
    async fn start<S>(&self, url: String, stream: S) -> Result<(), String>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (socket, _) =
            tokio_tungstenite::client_async_with_config(url, stream, Some(client_config()))
                .await
                .map_err(|err| format!("WebSocket handshake: {err}"))?;
        let upgraded = Instant::now();
        let deliveries = self.deliveries.clone();
        let mut subscribe = self.subscribe.clone();
        tokio::spawn(async move {
            let (mut sink, mut stream) = socket.split();
            let mut subscribed = false;
            let ended = loop {
                let message = tokio::select! {
                    message = stream.next() => message,
                    text = async {
                        subscribe.wait_for(Option::is_some).await.ok().and_then(|text| text.clone())
                    }, if !subscribed => {
                        subscribed = true;
                        let Some(text) = text else { continue };
                        if let Err(err) = sink.send(Message::Text(text.into())).await {
                            break format!("subscribe failed: {err}");
                        }
                        continue;
                    }
                };
                let message = match message {
                    Some(Ok(message)) => message,
                    Some(Err(err)) => break format!("error: {err}"),
                    None => break "closed without a close frame".to_string(),
                };
                let Message::Text(text) = message else {
                    if let Message::Close(frame) = &message {
                        break format!("close frame: {frame:?}");
                    }
                    continue;
                };
                // On arrival, before any parsing.
                let arrived = now_ms();
                let Ok(event) = serde_json::from_str::<Stamped>(&text) else {
                    continue;
                };
                let (Some(seq), Some(stamp)) = (event.seq, event.timestamp) else {
                    continue;
                };
                if let Ok(at) = chrono::DateTime::parse_from_rfc3339(stamp) {
                    let took = arrived - at.timestamp_millis() as f64;
                    deliveries.events.lock().unwrap().push((seq, took));
                }
            };
            deliveries.closed.fetch_add(1, Ordering::SeqCst);
            deliveries
                .endings
                .lock()
                .unwrap()
                .push((ended, upgraded.elapsed()));
        });
        Ok(())
    }
}

fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0
}

/// Opens `count` connections, 64 at a time; returns how many could not be opened.
async fn open_many(count: usize, target: &Target, readers: &Readers, opening: Instant) -> usize {
    let mut failed = 0usize;
    let mut opened = 0usize;
    let mut pending = futures::stream::iter(0..count)
        .map(|_| open(target, readers))
        .buffer_unordered(64);
    while let Some(result) = pending.next().await {
        if let Err(err) = result {
            failed += 1;
            if failed <= 3 {
                eprintln!("bench: a connection could not be opened: {err}");
            }
            continue;
        }
        opened += 1;
        if opened % 1000 == 0 {
            eprintln!(
                "bench: {opened} open ({:.1} s)",
                opening.elapsed().as_secs_f64()
            );
        }
    }
    failed
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let sockets: usize = env_or("BENCH_WEBSOCKETS", 10_000);
    let hold = Duration::from_secs(env_or("BENCH_HOLD_SECS", 70));
    let rounds: u32 = env_or("BENCH_ROUNDS", 5);
    let agent_ms: u64 = env_or("BENCH_AGENT_MS", 400);
    let through_gateway = env_or("BENCH_TARGET", "gateway".to_string()) != "engine";
    let files = raise_open_file_limit((sockets as u64) * 3 + 4096);
    // A gateway holds two sockets per WebSocket: where one process cannot hold them all under
    // this machine's open-file limit, several share the HTTPS port.
    let gateways: usize = env_or(
        "BENCH_GATEWAYS",
        if (sockets as u64) * 2 + 64 > files {
            2
        } else {
            1
        },
    );
    let data = tempfile::tempdir().expect("temp dir");
    let binary = env!("CARGO_BIN_EXE_aragora");
    let mut processes = Processes(Vec::new());

    let mut engine = serve_command(data.path());
    engine
        .env("ARAGORA_OFFLINE_AGENT_LATENCY_MS", agent_ms.to_string())
        .env("ARAGORA_WS_HEARTBEAT_INTERVAL", "3600")
        // Every watcher is the one anonymous client: let it hold them all.
        .env("ARAGORA_WS_MAX_CONNECTIONS_PER_CLIENT", "1000000")
        // ... and send every watcher's subscribe at once (the default, 100 a second per
        // client, closes all but the first hundred or so with 1008).
        .env("ARAGORA_WS_MAX_MESSAGES_PER_SECOND", "100000")
        .stderr(std::fs::File::create(data.path().join("engine.log")).unwrap());
    let mut engine = engine.spawn().expect("start aragora serve");
    let (api, ws) = engine_api(&mut engine);
    let engine_pid = engine.id();
    processes.0.push(engine);

    let http_client = reqwest::Client::new();
    let mut gateway_pids: Vec<u32> = Vec::new();
    let (target, gateway_pids) = if through_gateway {
        let (cert, key) = aragora_gateway::tls::self_signed(&data.path().join("tls")).unwrap();
        let https = free_port();
        for index in 0..gateways {
            let (http, admin) = (free_port(), free_port());
            let mut gateway = Command::new(binary);
            gateway
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
                // Every client is this one address.
                .env(
                    "ARAGORA_GATEWAY_MAX_WEBSOCKETS_PER_CLIENT",
                    sockets.to_string(),
                )
                .env("ARAGORA_SLOW_START_SECS", "0")
                .env("ARAGORA_GATEWAY_DRAIN_DELAY", "0")
                .env("ARAGORA_LOG_LEVEL", "warning")
                .stdout(Stdio::null())
                .stderr(
                    std::fs::File::create(data.path().join(format!("gateway{index}.log"))).unwrap(),
                );
            if gateways > 1 {
                // One address for all of them (the kernel spreads the connections), and as
                // many proxy runtimes in all as one gateway has by default.
                gateway
                    .env("ARAGORA_GATEWAY_SHARE_HTTPS_PORT", "true")
                    .env("ARAGORA_GATEWAY_THREADS", (2 / gateways).max(1).to_string());
            }
            let gateway = gateway.spawn().expect("start aragora gateway");
            gateway_pids.push(gateway.id());
            processes.0.push(gateway);

            // The admin listener's `/readyz` needs no credential (its upstream view does) and
            // answers 200 once a replica is ready.
            wait_ready(
                &http_client,
                &format!("http://127.0.0.1:{admin}/readyz"),
                "the gateway never saw the engine ready",
            )
            .await;
        }

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
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        (Target::Gateway(https, connector), gateway_pids)
    } else {
        wait_ready(
            &http_client,
            &format!("http://{api}/readyz"),
            "the engine never became ready",
        )
        .await;
        (Target::Engine(ws), gateway_pids)
    };
    let path = if through_gateway && gateways > 1 {
        format!("wss:// connections through {gateways} gateways on one port")
    } else if through_gateway {
        "wss:// connections through the gateway".to_string()
    } else {
        "ws:// connections straight to the engine (no gateway)".to_string()
    };

    let (subscribe_tx, subscribe_rx) = tokio::sync::watch::channel(None);
    let readers = Readers {
        deliveries: Arc::new(Deliveries::default()),
        subscribe: subscribe_rx,
    };
    let deliveries = readers.deliveries.clone();
    let rss = |pids: &[u32]| pids.iter().copied().map(rss_bytes).sum::<u64>();
    let base_rss = (rss(&gateway_pids), rss_bytes(engine_pid));
    eprintln!("bench: opening {sockets} {path}");
    let opening = Instant::now();
    let failed = open_many(sockets, &target, &readers, opening).await;
    let opened = sockets - failed;
    let open_time = opening.elapsed();
    eprintln!(
        "bench: holding {opened} idle connections for {} s",
        hold.as_secs()
    );
    tokio::time::sleep(hold).await;
    let ended_early = deliveries.closed.load(Ordering::SeqCst);
    let still_open = opened - ended_early;
    let held_rss = (rss(&gateway_pids), rss_bytes(engine_pid));
    let held = opened.max(1) as f64;
    let per_connection =
        |after: u64, before: u64| after.saturating_sub(before) as f64 / held / 1024.0;
    let early_endings: Vec<(String, Duration)> = deliveries.endings.lock().unwrap().clone();
    let mut reopened = 0;
    if failed > 0 || ended_early > 0 {
        for name in (0..gateways)
            .map(|index| format!("gateway{index}.log"))
            .chain(["engine.log".to_string()])
        {
            let log = std::fs::read_to_string(data.path().join(&name)).unwrap_or_default();
            for line in log
                .lines()
                .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                .filter(|l| !l.contains("receipt signing key"))
                .take(5)
            {
                eprintln!("bench: {name}: {line}");
            }
        }
    }
    if ended_early > 0 {
        // Say why: how the client saw them end.
        let mut kinds: std::collections::BTreeMap<&str, (usize, Duration)> = Default::default();
        for (ending, after) in &early_endings {
            let entry = kinds.entry(ending.as_str()).or_default();
            entry.0 += 1;
            entry.1 = entry.1.max(*after);
        }
        for (ending, (count, latest)) in kinds {
            eprintln!(
                "bench: {count} connections ended early ({ending}), at most {:.0} ms after their upgrade",
                latest.as_secs_f64() * 1000.0
            );
        }
        // A client reconnects (and resumes by last_seq); so does the bench, so that the
        // broadcast below reaches `sockets` watchers.
        let failed_again = open_many(ended_early, &target, &readers, Instant::now()).await;
        reopened = ended_early - failed_again;
    }
    let watchers = still_open + reopened;

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
    let cpu = |pids: &[u32]| pids.iter().copied().map(cpu_secs).sum::<f64>();
    let cpu_before = (
        cpu(&gateway_pids),
        cpu_secs(engine_pid),
        cpu_secs(std::process::id()),
    );
    let _ = subscribe_tx.send(Some(
        serde_json::json!({"type": "subscribe", "debate_id": id}).to_string(),
    ));
    let debate_url = format!("http://{api}/api/debates/{id}");
    let debate_now = || async {
        let response = http_client.get(&debate_url).send().await.unwrap();
        response.json::<serde_json::Value>().await.unwrap()
    };
    let debate = debate_now().await;
    let live_after = debate["last_seq"].as_i64().unwrap_or(0);
    eprintln!("bench: {watchers} subscribed; events after seq {live_after} are live");
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
    let debate_secs = finish.elapsed().as_secs_f64();
    let expected = (total - live_after).max(0) as usize * watchers;
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
    let cpu_spent = (
        cpu(&gateway_pids) - cpu_before.0,
        cpu_secs(engine_pid) - cpu_before.1,
        cpu_secs(std::process::id()) - cpu_before.2,
    );
    live.sort_by(|a, b| a.partial_cmp(b).unwrap());
    // Where the time goes, per event: until its first watcher has it (storing the event,
    // publishing it, one write through each hop) and from then until its last watcher does
    // (the fan-out: every other watcher's write, queued on the same cores).
    let mut per_event: std::collections::BTreeMap<i64, (f64, f64)> = Default::default();
    for (seq, ms) in deliveries.events.lock().unwrap().iter() {
        if *seq > live_after {
            let entry = per_event.entry(*seq).or_insert((f64::MAX, f64::MIN));
            entry.0 = entry.0.min(*ms);
            entry.1 = entry.1.max(*ms);
        }
    }
    let mut first: Vec<f64> = per_event.values().map(|(min, _)| *min).collect();
    let mut spread: Vec<f64> = per_event.values().map(|(min, max)| max - min).collect();
    first.sort_by(|a, b| a.partial_cmp(b).unwrap());
    spread.sort_by(|a, b| a.partial_cmp(b).unwrap());

    println!(
        "\n{sockets} {path} to one engine (SQLite), held idle {} s; one debate of {rounds} rounds broadcast to all\n",
        hold.as_secs()
    );
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| connections opened (failed) | {opened} ({failed}) in {:.1} s |",
        open_time.as_secs_f64()
    );
    println!("| still open after the idle hold | {still_open} |");
    if ended_early > 0 {
        let soon = early_endings
            .iter()
            .filter(|(_, after)| *after < Duration::from_secs(1))
            .count();
        println!(
            "| ended early (of them within 1 s of the upgrade), reopened | {ended_early} ({soon}), {reopened} |"
        );
    }
    if !gateway_pids.is_empty() {
        println!(
            "| gateway memory per connection | {:.1} KiB |",
            per_connection(held_rss.0, base_rss.0)
        );
    }
    println!(
        "| engine memory per connection | {:.1} KiB |",
        per_connection(held_rss.1, base_rss.1)
    );
    println!(
        "| live events delivered / expected | {} / {expected} (debate ran {debate_secs:.1} s) |",
        live.len()
    );
    println!(
        "| delivery p50 / p99 / max | {:.1} / {:.1} / {:.1} ms |",
        percentile(&live, 50.0),
        percentile(&live, 99.0),
        live.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "| per event ({}): first watcher reached after, median / max | {:.1} / {:.1} ms |",
        per_event.len(),
        percentile(&first, 50.0),
        first.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "| per event: first to last watcher, median / max | {:.1} / {:.1} ms |",
        percentile(&spread, 50.0),
        spread.last().copied().unwrap_or(f64::NAN)
    );
    let per_message = |secs: f64| secs * 1e6 / live.len().max(1) as f64;
    println!(
        "| CPU during the broadcast: gateway / engine / bench client | {:.2} / {:.2} / {:.2} s ({:.1} / {:.1} / {:.1} µs per delivered event) |",
        cpu_spent.0,
        cpu_spent.1,
        cpu_spent.2,
        per_message(cpu_spent.0),
        per_message(cpu_spent.1),
        per_message(cpu_spent.2)
    );
    // A watcher that lost its events (closed by a limit, say) makes the others' latency look
    // better than a full broadcast's: then the run measures nothing and says so.
    let complete = live.len() == expected;
    println!(
        "| p99 under 100 ms (seeds) | {} |",
        match (complete, percentile(&live, 99.0) < 100.0) {
            (false, _) => "NOT MEASURED: events were lost (see engine.log and gateway*.log)",
            (true, true) => "met",
            (true, false) => "MISSED",
        }
    );
    if !complete {
        drop(processes);
        eprintln!(
            "bench: {} of {expected} live events did not arrive: the run is not a measurement; the processes' logs are in {}",
            expected.saturating_sub(live.len()),
            data.keep().display()
        );
        std::process::exit(1);
    }
}

/// Polls `url` until it answers 2xx; panics with `never` after 30 s.
async fn wait_ready(client: &reqwest::Client, url: &str, never: &str) {
    let started = Instant::now();
    loop {
        let ready = client
            .get(url)
            .send()
            .await
            .is_ok_and(|response| response.status().is_success());
        if ready {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{never}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
