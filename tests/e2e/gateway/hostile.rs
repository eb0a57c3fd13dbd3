//! Hostile requests through the edge: one catalogue (request smuggling, oversize, encoding,
//! slow clients, HTTP/2 abuse), sent over real TLS through the gateway to a real engine, and
//! the same bytes through nginx and HAProxy in front of the same engine. Every case must be
//! refused by the gateway (a 4xx, an RFC 501/505, a closed connection or GOAWAY, a slow client
//! cut off) unless the case says a pass-through is legitimate; never a 5xx it caused, never
//! silence; and the gateway's answer must be at least as strict as each reference's. After the
//! catalogue the system is healthy: ready, a debate completes, no in-flight request or
//! connection left over on the gateway's /metrics, and no panic in its log.

use super::*;
use crate::support::hostile::{
    h2, never_read, say_nothing, send_h2, send_raw, send_slowly, H2Wait, Outcome, References,
    Target,
};
use futures::StreamExt;

on_both_engines!(hostile_requests_are_refused_at_least_as_strictly_as_by_nginx_and_haproxy,);

/// Every client timeout of the three proxies (the gateway's `ARAGORA_CLIENT_READ_TIMEOUT`,
/// nginx's header, body and send timeouts, HAProxy's `timeout client` and `http-request`):
/// short, so the slow cases take seconds.
const CLIENT_TIMEOUT_SECS: u64 = 2;
/// How long a slow client may be kept at most: the timeout twice over, and a second.
const CUT_WITHIN: Duration = Duration::from_secs(2 * CLIENT_TIMEOUT_SECS + 1);
/// The body limit of all three proxies.
const MAX_BODY: usize = 1024 * 1024;
/// The big debate's topic, for a response a client can refuse to read.
const BIG_TOPIC_CHARS: usize = 200_000;
/// Pipelined GETs of it in the never-read case.
const NEVER_READ_REQUESTS: usize = 40;

/// How one case is sent.
enum Send {
    /// HTTP/1.1 bytes, written at once.
    Raw(Vec<u8>),
    /// A TCP connection that never starts TLS.
    Nothing,
    /// A head, then a piece of `drip` every half second (nothing more when empty).
    Slow { head: Vec<u8>, drip: Vec<u8> },
    /// Pipelined requests on a tiny receive buffer, never read for a while.
    NeverRead { requests: Vec<u8>, expected: usize },
    /// HTTP/2 over ALPN h2: a preface and frames.
    H2(Vec<u8>, H2Wait),
}

/// One row of the catalogue.
struct Case {
    class: &'static str,
    name: &'static str,
    send: Send,
    /// The least strictness the gateway must show ([`Outcome::strictness`]): 2 refused, 1 when
    /// letting it through is legitimate (RFC-valid, or nothing a replica could misread).
    least: u8,
    /// Whether the gateway must also be as strict as the stricter reference (all but one case).
    versus: bool,
}

fn case(class: &'static str, name: &'static str, send: Send) -> Case {
    Case {
        class,
        name,
        send,
        least: 2,
        versus: true,
    }
}

fn passable(class: &'static str, name: &'static str, send: Send) -> Case {
    Case {
        class,
        name,
        send,
        least: 1,
        versus: true,
    }
}

/// An HTTP/1.1 request: `line`, `Host` and the credential, `headers` (each ending in CRLF),
/// then `body`.
fn request(line: &str, headers: &str, body: &[u8], token: &str) -> Vec<u8> {
    let mut out =
        format!("{line}\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n{headers}\r\n")
            .into_bytes();
    out.extend_from_slice(body);
    out
}

/// A JSON POST to /api/debates with `body`, its length declared.
fn post_json(body: &[u8], token: &str) -> Send {
    let headers = format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    Send::Raw(request("POST /api/debates HTTP/1.1", &headers, body, token))
}

fn raw(bytes: Vec<u8>) -> Send {
    Send::Raw(bytes)
}

/// `bytes` with its first `@@` replaced by two bytes that are not UTF-8 (0xff 0xfe).
fn bytes_at(mut bytes: Vec<u8>) -> Vec<u8> {
    let at = bytes
        .windows(2)
        .position(|pair| pair == b"@@")
        .expect("a @@ marker");
    bytes[at..at + 2].copy_from_slice(&[0xff, 0xfe]);
    bytes
}

/// The catalogue: one table, every class. `big` is the id of a debate whose record is large.
fn catalogue(token: &str, big: &str) -> Vec<Case> {
    let t = token;
    let get = "GET /api/debates HTTP/1.1";
    let post = "POST /api/debates HTTP/1.1";
    let chunked = "Transfer-Encoding: chunked\r\n";
    let end_chunks = b"0\r\n\r\n".as_slice();
    let preface = |frames: &[Vec<u8>]| {
        let mut out = h2::PREFACE.to_vec();
        out.extend(h2::settings(&[]));
        for frame in frames {
            out.extend_from_slice(frame);
        }
        out
    };
    let get_block = h2::get("/api/debates", Some(t));

    let mut over_limit_chunks = request(
        post,
        &format!("Content-Type: application/json\r\n{chunked}"),
        b"",
        t,
    );
    for _ in 0..(MAX_BODY / 65_536 + 2) {
        over_limit_chunks.extend(b"10000\r\n");
        over_limit_chunks.extend(vec![b'x'; 65_536]);
        over_limit_chunks.extend(b"\r\n");
    }
    over_limit_chunks.extend(end_chunks);

    let nested = format!("{{\"topic\":{}{}}}", "[".repeat(50_000), "]".repeat(50_000));
    let wide = format!(
        "{{\"topic\":\"wide\",{}\"rounds\":1}}",
        (0..40_000)
            .map(|i| format!("\"k{i}\":0,"))
            .collect::<String>()
    );
    let agents = format!(
        "{{\"topic\":\"many\",\"agents\":[{}]}}",
        (0..10_000)
            .map(|i| format!("\"agent-{i}\""))
            .collect::<Vec<_>>()
            .join(",")
    );
    let invalid_utf8_json = bytes_at(b"{\"topic\":\"bad @@ bytes\",\"rounds\":1}".to_vec());
    let nul_json = b"{\"topic\":\"nul \x00 byte\",\"rounds\":1}".to_vec();

    let mut rapid_reset = Vec::new();
    for i in 0..1000u32 {
        let stream = 2 * i + 1;
        rapid_reset.push(h2::frame(
            h2::HEADERS,
            h2::END_HEADERS | h2::END_STREAM,
            stream,
            &get_block,
        ));
        rapid_reset.push(h2::frame(h2::RST_STREAM, 0, stream, &8u32.to_be_bytes()));
    }
    let mut continuation = vec![h2::frame(h2::HEADERS, h2::END_STREAM, 1, &get_block)];
    let filler = h2::literal("x-flood", &"a".repeat(100));
    for _ in 0..20_000 {
        continuation.push(h2::frame(h2::CONTINUATION, 0, 1, &filler));
    }
    let settings_flood: Vec<Vec<u8>> = (0..50_000).map(|_| h2::settings(&[(3, 100)])).collect();
    let mut zero_window = h2::PREFACE.to_vec();
    // SETTINGS_INITIAL_WINDOW_SIZE 0: the server may send no DATA on any stream.
    zero_window.extend(h2::settings(&[(4, 0)]));
    zero_window.extend(h2::frame(
        h2::HEADERS,
        h2::END_HEADERS | h2::END_STREAM,
        1,
        &h2::get(&format!("/api/debates/{big}"), Some(t)),
    ));

    let pipelined: Vec<u8> = (0..NEVER_READ_REQUESTS)
        .flat_map(|_| request(&format!("GET /api/debates/{big} HTTP/1.1"), "", b"", t))
        .collect();

    vec![
        // Request smuggling.
        case("smuggling", "Content-Length with Transfer-Encoding", raw(request(post, &format!("Content-Length: 5\r\n{chunked}"), end_chunks, t))),
        case("smuggling", "two different Content-Lengths", raw(request(post, "Content-Length: 5\r\nContent-Length: 6\r\n", b"{}{}{}", t))),
        case("smuggling", "chunk size overflow", raw(request(post, chunked, b"ffffffffffffffffffffff1\r\nx\r\n0\r\n\r\n", t))),
        case("smuggling", "Transfer-Encoding: chunked, identity", raw(request(post, "Transfer-Encoding: chunked, identity\r\n", end_chunks, t))),
        case("smuggling", "obs-fold header", raw(request(get, "X-Folded: a\r\n  b\r\n", b"", t))),
        case("smuggling", "bare CR in a header", raw(request(get, "X-Bare: a\rb\r\n", b"", t))),
        passable("smuggling", "bare LF line ends", raw(request(get, "", b"", t).iter().copied().filter(|b| *b != b'\r').collect())),
        case("smuggling", "space before the colon", raw(request(get, "X-Space : a\r\n", b"", t))),
        case("smuggling", "HTTP/1.0 with chunked", raw(request("POST /api/debates HTTP/1.0", chunked, end_chunks, t))),
        // Oversize.
        case("oversize", "request line of 40 KiB", raw(request(&format!("GET /api/debates?pad={} HTTP/1.1", "a".repeat(40 * 1024)), "", b"", t))),
        case("oversize", "300 headers", raw(request(get, &(0..300).map(|i| format!("X-H{i}: v\r\n")).collect::<String>(), b"", t))),
        case("oversize", "one header of 40 KiB", raw(request(get, &format!("X-Big: {}\r\n", "b".repeat(40 * 1024)), b"", t))),
        case("oversize", "declared body over the limit", raw(request(post, &format!("Content-Length: {}\r\n", 2 * MAX_BODY), &[b'x'; 1000], t))),
        case("oversize", "chunked body over the limit", raw(over_limit_chunks)),
        case("oversize", "JSON nested 50,000 deep", post_json(nested.as_bytes(), t)),
        case("oversize", "JSON 40,000 keys wide", post_json(wide.as_bytes(), t)),
        case("oversize", "100 MB topic", raw(request(post, "Content-Type: application/json\r\nContent-Length: 100000020\r\n", b"{\"topic\":\"aaaaaaaaaaaa", t))),
        case("oversize", "10,000 agents", post_json(agents.as_bytes(), t)),
        // Encoding.
        case("encoding", "invalid UTF-8 in the path", raw(bytes_at(request("GET /api/debates/@@ HTTP/1.1", "", b"", t)))),
        case("encoding", "percent-encoded invalid UTF-8 in the path", raw(request("GET /api/debates/%ff%fe HTTP/1.1", "", b"", t))),
        case("encoding", "invalid UTF-8 in the query", raw(request("GET /api/debates?limit=%ff%fe HTTP/1.1", "", b"", t))),
        passable("encoding", "invalid UTF-8 in a header", raw(bytes_at(request(get, "X-Bytes: @@\r\n", b"", t)))),
        case("encoding", "invalid UTF-8 in a JSON string", post_json(&invalid_utf8_json, t)),
        case("encoding", "NUL in a header", raw(request(get, "X-Nul: a\0b\r\n", b"", t))),
        case("encoding", "NUL in the path (%00)", raw(request("GET /api/debates/%00 HTTP/1.1", "", b"", t))),
        case("encoding", "NUL in a JSON string", post_json(&nul_json, t)),
        case("encoding", "traversal /%2e%2e/", raw(request("GET /api/debates/%2e%2e/%2e%2e/metrics HTTP/1.1", "", b"", t))),
        passable("encoding", "absolute-form target", raw(request("GET https://127.0.0.1/api/debates HTTP/1.1", "", b"", t))),
        case("encoding", "authority-form target", raw(request("GET 127.0.0.1:443 HTTP/1.1", "", b"", t))),
        case("encoding", "Host with a port and a path", raw(format!("GET /api/debates HTTP/1.1\r\nHost: 127.0.0.1:443/api\r\nAuthorization: Bearer {t}\r\n\r\n").into_bytes())),
        case("encoding", "two Host headers", raw(request(get, "Host: other.example\r\n", b"", t))),
        case("encoding", "HTTP/1.1 without Host", raw(format!("GET /api/debates HTTP/1.1\r\nAuthorization: Bearer {t}\r\n\r\n").into_bytes())),
        case("encoding", "unknown method", raw(request("BREW /api/debates HTTP/1.1", "", b"", t))),
        case("encoding", "CONNECT", raw(request("CONNECT 127.0.0.1:443 HTTP/1.1", "", b"", t))),
        case("encoding", "HTTP/9.9", raw(request("GET /api/debates HTTP/9.9", "", b"", t))),
        // Slow clients.
        case("slow", "a connection that never starts TLS", Send::Nothing),
        case("slow", "slowloris headers", Send::Slow { head: format!("{get}\r\nHost: 127.0.0.1\r\n").into_bytes(), drip: b"X-Slow: a\r\n".to_vec() }),
        case("slow", "slow body", Send::Slow { head: request(post, "Content-Type: application/json\r\nContent-Length: 1000\r\n", b"{\"topic\":", t), drip: Vec::new() }),
        case("slow", "never reads its response", Send::NeverRead { requests: pipelined, expected: NEVER_READ_REQUESTS * BIG_TOPIC_CHARS }),
        // HTTP/2.
        case("http2", "rapid reset (CVE-2023-44487)", Send::H2(preface(&rapid_reset), H2Wait::Ping)),
        case("http2", "CONTINUATION flood", Send::H2(preface(&continuation), H2Wait::Refusal)),
        // nginx counts frames it must answer and closes past a limit; HAProxy and the h2 crate
        // under pingora answer them one at a time and read nothing more until each ACK is
        // written, so a flood costs what a client reads back: bounded, and not closed.
        Case { versus: false, ..passable("http2", "SETTINGS flood", Send::H2(preface(&settings_flood), H2Wait::Ping)) },
        case("http2", "a window that never opens", Send::H2(zero_window, H2Wait::StreamEnd)),
    ]
}

/// Sends one case to one target.
async fn run(target: &Target, send: &Send) -> Outcome {
    let patience = Duration::from_secs(10);
    match send {
        Send::Raw(bytes) => send_raw(target, bytes, patience).await,
        Send::Nothing => say_nothing(target, CUT_WITHIN + patience).await,
        Send::Slow { head, drip } => {
            let every = Duration::from_millis(500);
            send_slowly(target, head, drip, every, CUT_WITHIN + patience).await
        }
        Send::NeverRead { requests, expected } => {
            never_read(target, requests, *expected, CUT_WITHIN).await
        }
        Send::H2(bytes, wait) => send_h2(target, bytes, *wait, CUT_WITHIN + patience).await,
    }
}

async fn hostile_requests_are_refused_at_least_as_strictly_as_by_nginx_and_haproxy() {
    let started = Instant::now();
    let engine = Engine::start(
        EngineOptions::sqlite()
            .env("ARAGORA_MAX_BODY_BYTES", MAX_BODY)
            .env("ARAGORA_MAX_TOPIC_LENGTH", BIG_TOPIC_CHARS + 10),
    )
    .await;
    let big = engine
        .start_debate(serde_json::json!({"topic": "t".repeat(BIG_TOPIC_CHARS), "rounds": 1}))
        .await;
    let timeout = CLIENT_TIMEOUT_SECS.to_string();
    let gateway = GatewayProcess::start(
        &[engine.api.to_string()],
        &[
            ("ARAGORA_CLIENT_READ_TIMEOUT", timeout),
            ("ARAGORA_GATEWAY_MAX_BODY_BYTES", MAX_BODY.to_string()),
        ],
    )
    .await;
    gateway.wait_ready_count(1, PATIENCE).await;
    let tls = gateway.dir.path().join("tls");
    let references = References::start(
        engine.api,
        &tls.join("cert.pem"),
        &tls.join("key.pem"),
        CLIENT_TIMEOUT_SECS,
        MAX_BODY,
    )
    .await;
    let targets = [
        Target::new("aragora", gateway.https_port, &gateway.cert_pem),
        Target::new("nginx", references.nginx, &gateway.cert_pem),
        Target::new("haproxy", references.haproxy, &gateway.cert_pem),
    ];
    let token = gateway.token.clone().unwrap();
    let cases = catalogue(&token, &big);

    // Every case through every proxy, a dozen connections at a time.
    let jobs = cases.iter().enumerate().flat_map(|(row, case)| {
        targets
            .iter()
            .enumerate()
            .map(move |(col, t)| (row, col, t, case))
    });
    let mut outcomes: Vec<Vec<Option<Outcome>>> = vec![vec![None; targets.len()]; cases.len()];
    let done: Vec<(usize, usize, Outcome)> = futures::stream::iter(jobs)
        .map(|(row, col, target, case)| async move { (row, col, run(target, &case.send).await) })
        .buffer_unordered(12)
        .collect()
        .await;
    for (row, col, outcome) in done {
        outcomes[row][col] = Some(outcome);
    }
    let catalogue_time = started.elapsed();

    let mut table =
        String::from("| class | case | aragora | nginx | HAProxy |\n|---|---|---|---|---|\n");
    let mut wrong = Vec::new();
    for (case, row) in cases.iter().zip(&outcomes) {
        let row: Vec<&Outcome> = row.iter().map(|o| o.as_ref().unwrap()).collect();
        table.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            case.class,
            case.name,
            row[0].label(),
            row[1].label(),
            row[2].label()
        ));
        let ours = row[0];
        let strictest = row[1..].iter().map(|o| o.strictness()).max().unwrap();
        let needed = if case.versus {
            case.least.max(strictest)
        } else {
            case.least
        };
        if ours.strictness() < needed {
            wrong.push(format!(
                "{}: aragora {} (strictness {}), nginx {}, HAProxy {}; needed {}",
                case.name,
                ours.label(),
                ours.strictness(),
                row[1].label(),
                row[2].label(),
                needed
            ));
        }
        if let Outcome::Cut(_, after) = ours {
            if *after > CUT_WITHIN {
                wrong.push(format!("{}: cut only after {after:?}", case.name));
            }
        }
    }
    println!(
        "{table}\ncatalogue: {} cases x 3 proxies in {catalogue_time:?}",
        cases.len()
    );
    assert!(wrong.is_empty(), "{}\n{table}", wrong.join("\n"));

    // Healthy afterwards: ready, a debate completes, nothing left in flight or open.
    let client = gateway.client();
    assert_eq!(
        get_status(&client, &gateway.https_url("/readyz")).await,
        200
    );
    let created = fetch_json(
        client
            .post(gateway.https_url("/api/debates"))
            .json(&serde_json::json!({"topic": "still standing?", "rounds": 1})),
    )
    .await;
    let url = gateway.https_url(&format!(
        "/api/debates/{}",
        created["debate_id"].as_str().unwrap()
    ));
    eventually(
        "a debate to complete after the catalogue",
        PATIENCE,
        || async {
            let debate: Value = client.get(&url).send().await.ok()?.json().await.ok()?;
            (debate["status"] == "completed").then_some(())
        },
    )
    .await;
    drop(client);
    eventually(
        "no request in flight and no connection left open",
        PATIENCE,
        || async {
            let metrics = gateway.metrics().await;
            let inflight = sample(&metrics, "aragora_gateway_inflight_requests");
            let open = sample(&metrics, "aragora_gateway_connections");
            (inflight == Some(0.0) && open == Some(0.0)).then_some(())
        },
    )
    .await;
    let log = gateway.log_text();
    assert!(!log.contains("panicked"), "no panic in the gateway: {log}");
    println!("whole test: {:?}", started.elapsed());
}
