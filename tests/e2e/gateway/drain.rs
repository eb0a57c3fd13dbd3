//! Stopping without failing requests: a rolling restart of every replica under load, the
//! gateway's own SIGTERM drain, and `aragora up` stopping cleanly.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_every_replica_under_load_fails_no_request() {
    let (mut engines, ports) = three_engines().await;
    let upstreams: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let gateway = GatewayProcess::start(&upstreams, &[]).await;
    gateway.wait_ready_count(3, PATIENCE).await;
    let load = Load::start(
        gateway.client(),
        gateway.https_url("/api/debates?limit=5"),
        4,
    );
    load.wait_for_more(30).await;
    for (index, port) in ports.iter().enumerate() {
        engines[index].signal(libc::SIGTERM);
        let status = engines[index].wait_exit(PATIENCE).await;
        assert!(status.success());
        // The restarted replica keeps the old one's data directory (and its clean-up).
        let restart =
            engines[index].restart_options(EngineOptions::sqlite().env("ARAGORA_PORT", port));
        engines[index] = Engine::start(restart).await;
        gateway.wait_ready_count(3, PATIENCE).await;
        load.wait_for_more(30).await;
    }
    let (ok, failed, errors) = load.finish().await;
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests failed, first: {:?}",
        ok + failed,
        &errors[..errors.len().min(5)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_sigterm_under_load_fails_nothing_that_arrived_before_and_exits_promptly() {
    let (_upstream, gateway) = gateway_with_echo(&[
        ("ARAGORA_GATEWAY_DRAIN_DELAY", "1".into()),
        ("ARAGORA_GATEWAY_DRAIN_TIMEOUT", "20".into()),
    ])
    .await;
    let client = gateway.client();
    let load = Load::start(client.clone(), gateway.https_url("/api/echo"), 4);
    load.wait_for_more(50).await;
    let before_signal = load.ok.load(Ordering::SeqCst) + load.failed.load(Ordering::SeqCst);
    gateway.signal(libc::SIGTERM);
    let signalled = Instant::now();
    // Readiness goes false at once, while requests are still served.
    eventually(
        "the gateway to report not ready",
        Duration::from_secs(5),
        || async {
            let response = client.get(gateway.https_url("/readyz")).send().await.ok()?;
            (response.status() == 503).then_some(())
        },
    )
    .await;
    let mut child = gateway;
    let exit = eventually("the gateway to exit", Duration::from_secs(20), || {
        let status = child.child.try_wait().ok().flatten();
        async move { status }
    })
    .await;
    let (ok, _failed, errors) = load.finish().await;
    assert!(exit.success(), "{exit:?}\n{}", child.log_text());
    assert!(
        signalled.elapsed() < Duration::from_secs(10),
        "exited after {:?}, not pingora's 300 s",
        signalled.elapsed()
    );
    assert!(
        ok >= before_signal,
        "requests sent before SIGTERM were answered"
    );
    // After the listeners close, new requests are refused by the OS (they never arrived):
    // those are the only failures allowed.
    for error in &errors {
        assert!(
            error.contains("connect")
                || error.contains("Connection refused")
                || error.contains("error sending request"),
            "a request failed otherwise: {error}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aragora_up_serves_debates_over_https_through_the_gateway_and_stops_cleanly() {
    let mut up = crate::support::UpProcess::start(&[]).await;
    let https = up.https;
    let log = up.dir.path().join("up.log");
    let finished = up.run_debate("Does the embedded run work?").await;
    assert!(finished["final_answer"].is_string() || finished["outcome"] == "no_consensus");
    let out = std::fs::read_to_string(up.dir.path().join("up.out")).unwrap();
    assert!(
        out.contains(&format!("https://localhost:{https}")),
        "the banner says where to go: {out}"
    );

    // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
    unsafe {
        libc::kill(up.child.id() as i32, libc::SIGTERM);
    }
    let status = eventually("aragora up to stop", PATIENCE, || {
        let status = up.child.try_wait().ok().flatten();
        async move { status }
    })
    .await;
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}
