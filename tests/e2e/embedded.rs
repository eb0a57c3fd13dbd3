//! `aragora up` as a newcomer runs it: its engine reachable on loopback only (the gateway is the
//! way in from outside), and its log readable under the banner on a terminal, JSON otherwise.

use crate::support::UpProcess;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

/// A local address of this machine that is not loopback, if it has one: from `hostname -I`,
/// else the source address the kernel would use towards a public address (no packet is sent).
fn non_loopback_address() -> Option<IpAddr> {
    let listed = std::process::Command::new("hostname")
        .arg("-I")
        .output()
        .ok()
        .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
        .unwrap_or_default();
    let usable = |ip: &IpAddr| !ip.is_loopback() && !ip.is_unspecified();
    listed
        .split_whitespace()
        .filter_map(|word| word.parse::<IpAddr>().ok())
        .find(|ip| ip.is_ipv4() && usable(ip))
        .or_else(|| {
            let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
            socket.connect("192.0.2.1:9").ok()?;
            Some(socket.local_addr().ok()?.ip()).filter(usable)
        })
}

fn connects(addr: SocketAddr) -> std::io::Result<()> {
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map(drop)
}

/// Each log line's text (without the terminal's carriage returns; blank lines dropped), once
/// the engine's `listening` line is among them (the log is written by its own thread).
async fn log_lines(up: &UpProcess) -> Vec<String> {
    crate::support::eventually(
        "the engine's listening line in the log",
        Duration::from_secs(30),
        || async {
            let lines: Vec<String> = up
                .log_text()
                .lines()
                .map(|line| line.trim_end_matches('\r').to_string())
                .filter(|line| !line.trim().is_empty())
                .collect();
            lines
                .iter()
                .any(|line| line.contains("listening"))
                .then_some(lines)
        },
    )
    .await
}

fn is_json_line(line: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(line).is_ok_and(|value| value.is_object())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aragora_up_binds_its_engine_to_loopback_only_and_logs_json_when_not_on_a_terminal() {
    let up = UpProcess::start(&[]).await;
    for port in [up.api, up.ws] {
        connects(SocketAddr::from(([127, 0, 0, 1], port)))
            .unwrap_or_else(|err| panic!("the engine's port {port} on 127.0.0.1: {err}"));
    }
    let Some(other) = non_loopback_address() else {
        eprintln!("SKIPPED the non-loopback half: this machine has no address but loopback");
        return;
    };
    // The address really is this machine's and reachable: a listener on every interface
    // answers on it. Without that, a refusal below would prove nothing.
    let control = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    connects(SocketAddr::new(other, control.local_addr().unwrap().port()))
        .unwrap_or_else(|err| panic!("{other} is not a reachable local address: {err}"));
    for port in [up.api, up.ws] {
        let err = connects(SocketAddr::new(other, port))
            .expect_err("the engine answers on a non-loopback address under `up`");
        assert_eq!(
            err.kind(),
            std::io::ErrorKind::ConnectionRefused,
            "{other}:{port}: {err}"
        );
    }
    // The gateway is still the way in.
    let (status, _) = crate::support::get_json(&up.client, &format!("{}/readyz", up.base)).await;
    assert_eq!(status, 200);

    // Its stderr is a file here: JSON lines, as a log shipper wants them.
    let lines = log_lines(&up).await;
    assert!(
        lines.iter().any(|line| line.contains("listening")),
        "{lines:?}"
    );
    assert!(lines.iter().all(|line| is_json_line(line)), "{lines:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aragora_up_logs_text_when_asked_even_without_a_terminal() {
    let up = UpProcess::start(&[("ARAGORA_LOG_FORMAT", "text")]).await;
    let lines = log_lines(&up).await;
    let listening = lines
        .iter()
        .find(|line| line.contains("listening"))
        .unwrap_or_else(|| panic!("no listening line: {lines:?}"));
    assert!(!is_json_line(listening), "{lines:?}");
    assert!(listening.contains("INFO"), "{listening}");
    assert!(lines.iter().all(|line| !is_json_line(line)), "{lines:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aragora_up_on_a_terminal_logs_text_unless_json_is_asked_for() {
    let up = UpProcess::start_on_terminal(&[]).await;
    let lines = log_lines(&up).await;
    let listening = lines
        .iter()
        .find(|line| line.contains("listening"))
        .unwrap_or_else(|| panic!("no listening line on the terminal: {lines:?}"));
    assert!(!is_json_line(listening), "{lines:?}");
    assert!(listening.contains("INFO"), "{listening}");
    drop(up);

    let up = UpProcess::start_on_terminal(&[("ARAGORA_LOG_FORMAT", "json")]).await;
    let lines = log_lines(&up).await;
    assert!(
        lines.iter().any(|line| line.contains("listening")),
        "{lines:?}"
    );
    assert!(
        lines.iter().all(|line| is_json_line(line)),
        "ARAGORA_LOG_FORMAT wins over the terminal: {lines:?}"
    );
}
