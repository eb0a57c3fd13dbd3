//! `aragora slo check` and `aragora slo generate`: exit codes, messages and files.

use crate::support::aragora_command;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

fn slo(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = aragora_command();
    command
        .arg("slo")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("SLO_AVAILABILITY_TARGET")
        .env_remove("SLO_LATENCY_P99_TARGET_MS")
        .env_remove("SLO_DEBATE_SUCCESS_TARGET")
        .stdin(std::process::Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run aragora")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn check_accepts_every_shipped_spec() {
    for spec in [
        "slo/specs/aragora.yaml",
        "slo/specs/examples/sloth.yaml",
        "slo/specs/examples/openslo.yaml",
    ] {
        let output = slo(&["check", "--spec", spec], &[]);
        assert!(output.status.success(), "{spec}: {}", text(&output));
        assert!(text(&output).contains("availability, latency, debate-success"));
    }
}

#[test]
fn check_lists_every_problem_and_exits_78() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("bad.yaml");
    std::fs::write(
        &spec,
        "version: aragora/v1\nservice: aragora\nslos:\n  - name: latency\n    objective: 100\n    sli:\n      latency: {metric: aragora_request_latency_seconds, threshold_ms: 450}\n",
    )
    .unwrap();
    let output = slo(&["check", "--spec", spec.to_str().unwrap()], &[]);
    let text = text(&output);
    assert_eq!(output.status.code(), Some(78), "{text}");
    assert!(text.contains("2 problem(s)"), "{text}");
    assert!(text.contains("objective 100 is outside (0, 100)"), "{text}");
    assert!(text.contains("use 300 ms or 500 ms"), "{text}");
}

#[test]
fn generate_applies_the_environment_to_the_default_slos() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let output = slo(
        &["generate", "--out", out],
        &[
            ("SLO_AVAILABILITY_TARGET", "99.5"),
            ("SLO_LATENCY_P99_TARGET_MS", "200"),
        ],
    );
    assert!(output.status.success(), "{}", text(&output));
    let rules = std::fs::read_to_string(Path::new(out).join("slo-rules.yaml")).unwrap();
    assert!(rules.contains("sloth_objective: '99.5'"), "{rules}");
    assert!(rules.contains("le=\"0.2\""), "{rules}");
    let refused = slo(
        &["generate", "--out", out],
        &[("SLO_LATENCY_P99_TARGET_MS", "450")],
    );
    assert_eq!(refused.status.code(), Some(78));
    assert!(text(&refused).contains("le=\"0.45\""), "{}", text(&refused));
}

/// How many times `needle` occurs in `haystack`.
fn occurrences(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

#[test]
fn check_accepts_another_services_sloth_spec_with_a_note_per_metric() {
    let output = slo(
        &[
            "check",
            "--spec",
            "slo/specs/examples/sloth-other-service.yaml",
        ],
        &[],
    );
    let text = text(&output);
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains(
            "the 2 SLO(s) of service myservice are valid: requests-availability, requests-latency"
        ),
        "{text}"
    );
    // Four queries name the two metrics: one note each.
    for metric in ["http_requests_total", "http_request_duration_seconds"] {
        assert_eq!(
            occurrences(&text, &format!("note: {metric} is not an aragora metric")),
            1,
            "{text}"
        );
    }
}

#[test]
fn an_unexported_aragora_name_is_refused_once_however_many_queries_name_it() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("typo.yaml");
    std::fs::write(
        &spec,
        "version: prometheus/v1\nservice: aragora\nslos:\n  - name: availability\n    objective: 99.9\n    sli:\n      events:\n        error_query: sum(rate(aragora_requests_total{status=~\"5..\"}[{{.window}}]))\n        total_query: sum(rate(aragora_requests_total[{{.window}}]))\n",
    )
    .unwrap();
    let output = slo(&["check", "--spec", spec.to_str().unwrap()], &[]);
    let text = text(&output);
    assert_eq!(output.status.code(), Some(78), "{text}");
    assert!(text.contains("1 problem(s)"), "{text}");
    assert_eq!(
        occurrences(
            &text,
            "names aragora_requests_total, which aragora does not export"
        ),
        1,
        "{text}"
    );
    assert!(
        text.contains("did you mean aragora_http_requests_total?"),
        "{text}"
    );
}

/// A service of the user's own, exposing one histogram in the text format on `/metrics`.
async fn foo_service() -> std::net::SocketAddr {
    const EXPOSITION: &str = "# HELP foo_seconds Time foo took.\n# TYPE foo_seconds histogram\n\
        foo_seconds_bucket{le=\"0.1\"} 4\nfoo_seconds_bucket{le=\"0.25\"} 9\n\
        foo_seconds_bucket{le=\"0.5\"} 10\nfoo_seconds_bucket{le=\"+Inf\"} 10\n\
        foo_seconds_sum 1.7\nfoo_seconds_count 10\n";
    let app = axum::Router::new().route("/metrics", axum::routing::get(|| async { EXPOSITION }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// A Sloth spec of service foo whose latency SLO counts requests faster than `le`.
fn foo_spec(dir: &Path, le: &str, histogram: &str) -> String {
    let path = dir.join(format!("foo-{le}-{histogram}.yaml"));
    std::fs::write(
        &path,
        format!(
            "version: prometheus/v1\nservice: foo\nslos:\n  - name: latency\n    objective: 99\n    sli:\n      events:\n        error_query: sum(rate({histogram}_count[{{{{.window}}}}])) - sum(rate({histogram}_bucket{{le=\"{le}\"}}[{{{{.window}}}}]))\n        total_query: sum(rate({histogram}_count[{{{{.window}}}}]))\n"
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_looks_up_a_foreign_histograms_buckets_in_prometheus() {
    let foo = foo_service().await;
    let prometheus =
        crate::support::prom::PromServer::prometheus(&[("foo", foo.to_string())]).await;
    crate::support::eventually(
        "Prometheus to scrape foo's buckets",
        Duration::from_secs(60),
        || async {
            let answer = prometheus
                .api(
                    "/api/v1/query",
                    &[("query", "count by (le) (foo_seconds_bucket)")],
                )
                .await;
            (answer["data"]["result"].as_array()?.len() == 4).then_some(())
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let check = |spec: String| {
        let url = prometheus.url.clone();
        tokio::task::spawn_blocking(move || {
            slo(&["check", "--spec", &spec, "--prometheus-url", &url], &[])
        })
    };

    // A threshold between two of foo's buckets: refused, with the bounds either side.
    let output = check(foo_spec(dir.path(), "0.3", "foo_seconds"))
        .await
        .unwrap();
    let said = text(&output);
    assert_eq!(output.status.code(), Some(78), "{said}");
    assert!(
        said.contains(
            "le=\"0.3\" (a latency threshold of 300 ms) is not a bucket boundary of foo_seconds"
        ),
        "{said}"
    );
    assert!(said.contains("use 250 ms or 500 ms"), "{said}");
    assert!(said.contains("[0.1, 0.25, 0.5]"), "{said}");

    // On a boundary: valid, with the note that foo_seconds is the user's.
    let output = check(foo_spec(dir.path(), "0.25", "foo_seconds"))
        .await
        .unwrap();
    let said = text(&output);
    assert!(output.status.success(), "{said}");
    assert!(
        said.contains("note: foo_seconds is not an aragora metric"),
        "{said}"
    );

    // A histogram this Prometheus does not have: not checkable, said so, not refused.
    let output = check(foo_spec(dir.path(), "0.3", "bar_seconds"))
        .await
        .unwrap();
    let said = text(&output);
    assert!(output.status.success(), "{said}");
    assert!(
        said.contains("has no series of bar_seconds_bucket"),
        "{said}"
    );

    // Without the flag the bound is not looked up.
    let spec = foo_spec(dir.path(), "0.3", "foo_seconds");
    let output = tokio::task::spawn_blocking(move || slo(&["check", "--spec", &spec], &[]))
        .await
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));
}

#[test]
fn generate_writes_the_prometheus_rule_objects_deploy_k8s_holds() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("k8s/prometheus-rules.yaml");
    let output = slo(
        &[
            "generate",
            "--out",
            dir.path().join("alerts").to_str().unwrap(),
            "--prometheus-rule",
            file.to_str().unwrap(),
        ],
        &[],
    );
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("prometheus-rules.yaml"),
        "{}",
        text(&output)
    );
    let written = std::fs::read_to_string(&file).unwrap();
    let committed = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/k8s/base/prometheus-rules.yaml"),
    )
    .unwrap();
    assert_eq!(written, committed);
    // A refused spec writes nothing.
    let refused = dir.path().join("refused.yaml");
    let output = slo(
        &[
            "generate",
            "--out",
            dir.path().join("alerts").to_str().unwrap(),
            "--prometheus-rule",
            refused.to_str().unwrap(),
        ],
        &[("SLO_LATENCY_P99_TARGET_MS", "450")],
    );
    assert_eq!(output.status.code(), Some(78), "{}", text(&output));
    assert!(!refused.exists());
}
