//! The proxy runs one single-threaded runtime per `ARAGORA_GATEWAY_THREADS`, each accepting on
//! its own socket of the HTTPS address: connections are served by all of them, and a drain
//! still ends them all.

use aragora_gateway::GatewayConfig;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_runtimes_both_accept_connections_and_every_connection_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = aragora_gateway::tls::self_signed(dir.path()).unwrap();
    let config = GatewayConfig {
        host: "127.0.0.1".into(),
        https_port: 0,
        http_port: 0,
        admin_host: "127.0.0.1".into(),
        admin_port: 0,
        tls_cert: Some(cert),
        tls_key: Some(key),
        // Nothing listens there: /healthz is answered by the gateway itself.
        upstreams: vec!["127.0.0.1:9".into()],
        threads: 2,
        rate_limit_per_minute: 0,
        drain_delay_secs: 0,
        drain_timeout_secs: 5,
        ..GatewayConfig::default()
    };
    let problems = config.validate_settings();
    assert!(problems.is_empty(), "{problems:?}");
    let mut gateway = aragora_gateway::start(config).unwrap();
    let url = format!("https://127.0.0.1:{}/healthz", gateway.addrs().https.port());
    // No pooling: each request is a new TCP connection and a new TLS handshake, so the
    // kernel hashes each one to a socket afresh.
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let requests = 64;
    let answers = futures::future::join_all((0..requests).map(|_| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            // The listeners are bound before start() returns; the runtimes may still be
            // starting, and a connection waits in its socket's queue until they accept.
            client.get(&url).send().await.map(|r| r.status().as_u16())
        }
    }))
    .await;
    let statuses: Vec<_> = answers.into_iter().map(|a| a.unwrap()).collect();
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    let accepted = gateway.accepted_per_runtime();
    assert_eq!(accepted.len(), 2);
    assert!(
        accepted.iter().sum::<u64>() >= requests,
        "every connection was accepted by a runtime: {accepted:?}"
    );
    // 64 connections hashed over two sockets all landing on one happens once in 2^63 runs.
    assert!(
        accepted.iter().all(|&n| n > 0),
        "both runtimes accept: {accepted:?}"
    );

    gateway.shutdown();
    let waited = Instant::now();
    tokio::task::spawn_blocking(move || gateway.wait())
        .await
        .unwrap();
    assert!(
        waited.elapsed() < Duration::from_secs(5),
        "an idle gateway drains at once, whatever the runtime count"
    );
}
