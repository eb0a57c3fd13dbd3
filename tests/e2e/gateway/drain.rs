//! Stopping without failing requests: a rolling restart of every replica under load, the
//! gateway's own SIGTERM drain, and `aragora up` stopping cleanly.

use super::*;
use crate::support::echo::SLOW_BODY_BYTES;

on_both_engines!(
    a_rolling_restart_of_every_replica_under_load_fails_no_request,
    gateway_sigterm_under_load_fails_nothing_that_arrived_before_and_exits_promptly,
);

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

async fn gateway_sigterm_under_load_fails_nothing_that_arrived_before_and_exits_promptly() {
    let (upstream, gateway) = gateway_with_echo(&[
        ("ARAGORA_GATEWAY_DRAIN_DELAY", "1".into()),
        ("ARAGORA_GATEWAY_DRAIN_TIMEOUT", "20".into()),
    ])
    .await;
    // A new connection per request, so that once the listeners close a request can only
    // fail by being refused, never on a kept-alive connection the drain closed.
    let client = gateway
        .client_builder()
        .pool_max_idle_per_host(0)
        .timeout(PATIENCE)
        .build()
        .unwrap();
    let load = Load::start(client.clone(), gateway.https_url("/api/echo"), 4);
    load.wait_for_more(20).await;
    // Slow answers (headers at once, the body over 3 s), all at the replica before SIGTERM
    // and still streaming when the listeners close a second after it.
    let slow = 6;
    let in_flight: Vec<_> = (0..slow)
        .map(|_| {
            let (client, url) = (client.clone(), gateway.https_url("/slow/3000"));
            tokio::spawn(async move {
                let response = client.get(url).send().await.map_err(|e| Failure::of(&e))?;
                let status = response.status();
                let body = response.bytes().await.map_err(|e| Failure::of(&e))?;
                Ok::<_, Failure>((status, body.len()))
            })
        })
        .collect();
    eventually(
        "the slow requests to reach the replica",
        PATIENCE,
        || async { (upstream.slow_started() == slow).then_some(()) },
    )
    .await;
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
    let mut gateway = gateway;
    let exit = gateway.wait_exit(Duration::from_secs(20)).await;
    let exited_after = signalled.elapsed();
    let (ok, _failed, errors) = load.finish().await;
    assert!(exit.success(), "{exit:?}\n{}", gateway.log_text());
    assert!(
        exited_after < Duration::from_secs(10),
        "exited after {exited_after:?}, not after the 20 s drain timeout or pingora's grace"
    );
    for request in in_flight {
        let answer = request.await.unwrap();
        assert!(
            matches!(answer, Ok((status, SLOW_BODY_BYTES)) if status == 200),
            "a request in flight at SIGTERM was not answered whole: {answer:?}\n{}",
            gateway.log_text()
        );
    }
    // After the listeners close, new requests are refused by the OS (they never arrived):
    // the only failures allowed, and there must be some, or the listeners never closed while
    // the slow answers were still streaming.
    let refused = errors.iter().filter(|failure| failure.connect).count();
    let otherwise: Vec<_> = errors.iter().filter(|failure| !failure.connect).collect();
    assert!(
        otherwise.is_empty(),
        "requests failed otherwise: {otherwise:?}"
    );
    assert!(
        refused > 0,
        "no request was refused: the listeners stayed open ({ok} answered)"
    );
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
