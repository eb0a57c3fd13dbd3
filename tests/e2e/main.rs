//! End-to-end tests of the real `aragora` binary: real processes on ephemeral ports, real
//! SQLite files and real PostgreSQL databases (one per test), real WebSocket clients.
//! One test binary, so cargo links it once.

mod support;

/// Runs an async test body once against SQLite and once against a fresh PostgreSQL database.
/// The body is `async fn name(options: EngineOptions)`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(crate::support::EngineOptions::sqlite()).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let database = crate::support::TestDatabase::create().await;
                super::$name(crate::support::EngineOptions::postgres(&database.url)).await
            }
        }
    )*};
}

/// Runs each named gateway test (an `async fn()`) once per HTTP/1.1 engine of the gateway
/// (`ARAGORA_GATEWAY_H1_ENGINE`): `NAME::pingora` and `NAME::lean`.
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn pingora() {
                crate::support::with_h1_engine("pingora", super::$name()).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn lean() {
                crate::support::with_h1_engine("lean", super::$name()).await
            }
        }
    )*};
}

mod admin_auth;
mod alert_inhibition;
mod alert_receivers;
mod alerting;
mod api;
mod auth;
mod backups;
mod bench_smoke;
mod chaos;
mod compose;
mod config;
mod console;
mod console_api;
mod deploy_facts;
mod deploy_image;
mod deploy_systemd;
mod drill_targets;
mod edge_websockets;
mod embedded;
mod experiments;
mod faults;
mod gateway;
mod gateway_claims;
mod health;
mod infra_alerts;
mod k8s;
mod leader;
mod lifecycle;
mod limits;
mod llm_debates;
mod maintenance;
mod migrations;
mod openapi;
mod probe;
mod providers;
mod receipt_ring;
mod recovery;
mod retention;
mod rotation;
mod secrets;
mod slo;
mod slo_live;
mod slo_prometheus;
mod storage;
mod stuck_debate;
mod tokens;
mod topology;
mod webhooks;
mod websocket;
