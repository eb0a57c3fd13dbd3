//! `aragora probe`, the image's HEALTHCHECK: with no URL it finds the listener this
//! environment configures (engine, gateway, control) and answers 0 when one serves `/healthz`,
//! 1 with one line naming every URL tried when none does.

use crate::support::{aragora_command, describe_output, Engine, EngineOptions, UpProcess};
use std::net::TcpListener;
use std::process::Output;

/// `aragora probe ARGS` in an environment that names only the listeners in `env`: every other
/// port is 0 (not probed), so nothing else on this machine can answer for them.
fn probe(args: &[&str], env: &[(&str, String)]) -> Output {
    let mut command = aragora_command();
    command
        .arg("probe")
        .args(args)
        .env("ARAGORA_HOST", "127.0.0.1")
        .env("ARAGORA_PORT", "0")
        .env("ARAGORA_ADMIN_PORT", "0")
        .env("ARAGORA_HTTPS_PORT", "0")
        .env("ARAGORA_CONTROL_LISTEN", "127.0.0.1:0");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run aragora probe")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A port nothing listens on (bound, then released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_finds_a_serving_engine_by_its_port_and_fails_naming_the_url_when_nothing_listens() {
    let engine = Engine::start(EngineOptions::sqlite()).await;
    let port = engine.api.port().to_string();
    let healthy = probe(&[], &[("ARAGORA_PORT", port.clone())]);
    assert_eq!(
        healthy.status.code(),
        Some(0),
        "{}",
        describe_output(&healthy)
    );
    let url = format!("http://127.0.0.1:{port}/healthz");
    assert!(
        stdout(&healthy).contains(&url) && stdout(&healthy).contains("200"),
        "says what answered: {}",
        describe_output(&healthy)
    );

    // An explicit URL that answers, but not 2xx: unhealthy, with the status.
    let refused = probe(&[&engine.url("/api/debates")], &[]);
    assert_eq!(
        refused.status.code(),
        Some(1),
        "{}",
        describe_output(&refused)
    );
    assert!(
        stderr(&refused).contains("401"),
        "{}",
        describe_output(&refused)
    );

    let silent = free_port();
    let down = probe(&[], &[("ARAGORA_PORT", silent.to_string())]);
    assert_eq!(down.status.code(), Some(1), "{}", describe_output(&down));
    let message = stderr(&down);
    assert_eq!(message.trim().lines().count(), 1, "one line: {message}");
    assert!(
        message.contains(&format!("http://127.0.0.1:{silent}/healthz"))
            && message.to_lowercase().contains("refused"),
        "names the URL and why: {message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_probe_line_serves_up_on_its_self_signed_https_port_and_control() {
    // `up` with only its gateway's HTTPS port in the probe's environment: the self-signed
    // certificate on loopback is accepted.
    let up = UpProcess::start(&[]).await;
    let https = probe(&[], &[("ARAGORA_HTTPS_PORT", up.https.to_string())]);
    assert_eq!(https.status.code(), Some(0), "{}", describe_output(&https));
    assert!(
        stdout(&https).contains(&format!("https://127.0.0.1:{}/healthz", up.https)),
        "{}",
        describe_output(&https)
    );
    // And by its gateway's admin port, as the image's environment would name it.
    let admin = probe(&[], &[("ARAGORA_ADMIN_PORT", up.admin.to_string())]);
    assert_eq!(admin.status.code(), Some(0), "{}", describe_output(&admin));

    // `control` on its listener.
    let dir = tempfile::tempdir().unwrap();
    let mut command = aragora_command();
    command
        .args(["control", "--listen", "127.0.0.1:0"])
        .env("ARAGORA_DATA_DIR", dir.path());
    let mut control = crate::support::Process::spawn(
        &mut command,
        &dir.path().join("control.log"),
        &dir.path().join("control.out"),
    );
    let listening = control.announcement("aragora control listening ");
    let listen = crate::support::address(&listening, "http");
    let healthy = probe(&[], &[("ARAGORA_CONTROL_LISTEN", listen.to_string())]);
    assert_eq!(
        healthy.status.code(),
        Some(0),
        "{}",
        describe_output(&healthy)
    );
    assert!(
        stdout(&healthy).contains(&format!("http://{listen}/healthz")),
        "{}",
        describe_output(&healthy)
    );
}
