//! The gateway's background round: active health checks of every replica (the pool decides
//! readiness from them, see [`crate::upstream`]; a passing answer also says whether the replica
//! is in maintenance), DNS re-resolution of the upstream names, and
//! the rate limiters' sweep of recovered clients. Runs as a pingora background service.

use crate::state::Shared;
use crate::upstream::ReplicaMaintenance;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Runs active health checks and DNS refreshes until `stop` flips. Reads the configuration
/// each round, so a reload's path, interval and timeout apply from the next round.
pub async fn run_health_checks(shared: Arc<Shared>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let pool = shared.pool.clone();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap_or_default();
    pool.resolve().await;
    let mut last_resolve = Instant::now();
    let mut first_round = true;
    loop {
        let config = shared.config();
        // The first round runs at once, so replicas get traffic as soon as they pass.
        if !first_round {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(config.health_interval_ms)) => {}
                _ = stop.changed() => return,
            }
        }
        first_round = false;
        if last_resolve.elapsed() >= Duration::from_secs(config.dns_refresh_secs) {
            pool.resolve().await;
            last_resolve = Instant::now();
        }
        let path = config.health_path.clone();
        let timeout = Duration::from_millis(config.health_timeout_ms);
        let replicas = pool.replicas();
        let checks = replicas.iter().cloned().map(|replica| {
            let client = &client;
            let url = format!("http://{}{}", replica.addr, path);
            let pool = &pool;
            let path = &path;
            async move {
                let result = client.get(&url).timeout(timeout).send().await;
                let (ok, error) = match result {
                    Ok(response) if response.status().is_success() => {
                        let body = response.bytes().await.unwrap_or_default();
                        replica.set_maintenance(ReplicaMaintenance::from_ready_body(&body));
                        (true, None)
                    }
                    Ok(response) => {
                        let status = response.status();
                        let body = response.text().await.unwrap_or_default();
                        (
                            false,
                            Some(format!(
                                "{path} answered {status}: {}",
                                body.chars().take(200).collect::<String>()
                            )),
                        )
                    }
                    Err(err) => (false, Some(format!("{path} failed: {err}"))),
                };
                pool.observe(&replica, ok, error);
            }
        });
        futures::future::join_all(checks).await;
        shared.refresh_maintenance_gauge();
        shared.limits().sweep();
    }
}
