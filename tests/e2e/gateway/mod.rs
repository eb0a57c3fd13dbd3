//! The edge gateway end to end, by concern: [`tls`], [`ocsp`], [`limits`], [`routing`], [`drain`],
//! [`websockets`], [`hostile`]. Here: what they share (an echo replica behind a gateway, a load generator,
//! three engines).

use crate::support::echo::EchoUpstream;
use crate::support::{eventually, fetch_json, sample, Engine, EngineOptions, GatewayProcess};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod drain;
mod hostile;
mod limits;
mod ocsp;
mod routing;
mod tls;
mod websocket_hostile;
mod websockets;

const PATIENCE: Duration = Duration::from_secs(30);

/// A gateway (with `env`) in front of one ready echo replica, routing to it.
async fn gateway_with_echo(env: &[(&str, String)]) -> (EchoUpstream, GatewayProcess) {
    let upstream = EchoUpstream::start(true).await;
    let gateway = GatewayProcess::start(&[upstream.addr.to_string()], env).await;
    gateway.wait_ready_count(1, PATIENCE).await;
    (upstream, gateway)
}

/// The status of GET `url` with `client`; panics when no answer came.
async fn get_status(client: &reqwest::Client, url: &str) -> reqwest::StatusCode {
    client.get(url).send().await.unwrap().status()
}

/// A gateway (no extra env) in front of `count` ready echo replicas, routing to all of them.
async fn gateway_with_echoes(count: usize) -> (Vec<EchoUpstream>, GatewayProcess) {
    let mut upstreams = Vec::new();
    for _ in 0..count {
        upstreams.push(EchoUpstream::start(true).await);
    }
    let names: Vec<String> = upstreams.iter().map(|u| u.addr.to_string()).collect();
    let gateway = GatewayProcess::start(&names, &[]).await;
    gateway.wait_ready_count(count, PATIENCE).await;
    (upstreams, gateway)
}

/// Sends GETs from `workers` loops until `stop`; counts successes (a 200 with its whole body)
/// and failures.
struct Load {
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<Failure>>>,
}

/// One failed request of a [`Load`].
#[derive(Debug)]
struct Failure {
    /// No connection was made: refused or reset before the request was sent. Nothing reached
    /// the gateway.
    connect: bool,
    /// The status and body, or the error with its causes (read through `Debug`).
    #[allow(dead_code)]
    what: String,
}

impl Failure {
    fn of(err: &reqwest::Error) -> Self {
        Self {
            connect: err.is_connect(),
            what: aragora_telemetry::error_with_causes(err),
        }
    }
}

impl Load {
    fn start(client: reqwest::Client, url: String, workers: usize) -> Self {
        let ok = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..workers)
            .map(|_| {
                let (client, url, ok, failed, stop) = (
                    client.clone(),
                    url.clone(),
                    ok.clone(),
                    failed.clone(),
                    stop.clone(),
                );
                tokio::spawn(async move {
                    let mut errors = Vec::new();
                    while !stop.load(Ordering::SeqCst) {
                        let failure = match client.get(&url).send().await {
                            Ok(response) if response.status() == 200 => {
                                match response.bytes().await {
                                    Ok(_) => {
                                        ok.fetch_add(1, Ordering::SeqCst);
                                        continue;
                                    }
                                    Err(err) => Failure::of(&err),
                                }
                            }
                            Ok(response) => Failure {
                                connect: false,
                                what: format!(
                                    "{} {}",
                                    response.status(),
                                    response.text().await.unwrap_or_default()
                                ),
                            },
                            Err(err) => Failure::of(&err),
                        };
                        failed.fetch_add(1, Ordering::SeqCst);
                        errors.push(failure);
                    }
                    errors
                })
            })
            .collect();
        Self {
            ok,
            failed,
            stop,
            tasks,
        }
    }

    async fn finish(self) -> (usize, usize, Vec<Failure>) {
        self.stop.store(true, Ordering::SeqCst);
        let mut errors = Vec::new();
        for task in self.tasks {
            errors.extend(task.await.unwrap());
        }
        (
            self.ok.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst),
            errors,
        )
    }

    async fn wait_for_more(&self, count: usize) {
        let target = self.ok.load(Ordering::SeqCst) + count;
        eventually("load to make progress", PATIENCE, || async {
            (self.ok.load(Ordering::SeqCst) >= target).then_some(())
        })
        .await;
    }
}

/// Three engines on ports they chose, and those ports (a restart takes its predecessor's).
async fn three_engines() -> (Vec<Engine>, Vec<u16>) {
    let mut engines = Vec::new();
    for _ in 0..3 {
        engines.push(Engine::start(EngineOptions::sqlite()).await);
    }
    let ports = engines.iter().map(|engine| engine.api.port()).collect();
    (engines, ports)
}
