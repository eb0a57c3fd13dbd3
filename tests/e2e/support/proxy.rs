//! `aragora chaos proxy` as a child process: one named TCP fault proxy in front of an
//! upstream, on ports it chose, with its HTTP API for adding faults. Its API is given the
//! test's admin token (`ARAGORA_API_TOKEN`) and the handle's client sends it.

use super::{address, aragora_command, eventually, get_json, post_json, test_token, Process};
use serde_json::Value;
use std::time::Duration;

/// `aragora chaos proxy` on ports it chose; waits for its API.
pub struct ProxyProcess {
    _process: Process,
    /// `http://HOST:PORT` of its API.
    pub api: String,
    /// The port it listens on.
    pub listen: u16,
    /// The admin token of its API.
    pub token: String,
    /// A client that sends `token`.
    pub http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl ProxyProcess {
    pub async fn start(name: &str, upstream: &str) -> ProxyProcess {
        let dir = tempfile::tempdir().unwrap();
        let token = test_token();
        let mut process = Process::spawn(
            aragora_command()
                .env("ARAGORA_API_TOKEN", &token)
                .args(["chaos", "proxy", "--proxy"])
                .arg(format!("{name}=127.0.0.1:0={upstream}"))
                .args(["--api", "127.0.0.1:0"]),
            &dir.path().join("proxy.log"),
            &dir.path().join("proxy.out"),
        );
        let listen = address(
            &process.announcement(&format!("aragora chaos proxy {name} ")),
            "listening",
        )
        .port();
        let api = process.announcement("aragora chaos proxy api=");
        let api = api
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        let health = format!("{api}/healthz");
        eventually("the fault proxy's API", Duration::from_secs(30), || {
            let health = health.clone();
            async move { reqwest::get(&health).await.ok().map(|_| ()) }
        })
        .await;
        ProxyProcess {
            _process: process,
            api,
            listen,
            http: super::with_bearer(reqwest::Client::builder(), Some(&token))
                .build()
                .unwrap(),
            token,
            _dir: dir,
        }
    }

    /// The faults active on proxy `name`.
    pub async fn faults(&self, name: &str) -> Vec<Value> {
        let (_, status) = get_json(&self.http, &format!("{}/proxies/{name}", self.api)).await;
        status["faults"].as_array().unwrap().clone()
    }

    /// Adds a fault (the API's JSON, such as `{"kind": "down"}`) to proxy `name`.
    pub async fn add_fault(&self, name: &str, fault: Value) {
        let url = format!("{}/proxies/{name}/faults", self.api);
        let (status, answer) = post_json(&self.http, &url, &fault).await;
        assert!(
            (200..300).contains(&status),
            "fault {fault} refused: {answer}"
        );
    }
}
