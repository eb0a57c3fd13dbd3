//! The operations console (`/admin`) and developer portal (`/developer`) in a real headless
//! Chromium against the real `aragora up`: tests/browser/console.mjs (playwright-core driving
//! Debian's /usr/bin/chromium) signs in with the key `up` printed and goes through what an
//! on-call engineer and an API user do; this test starts `up` (with two LLM agents on a local
//! mock, so breakers exist and debates take long enough to watch), runs the script and holds
//! its exit, its report of each scenario and its screenshots. The pages' own headers are
//! checked here too, as the gateway serves them.

use crate::support::mock_llm::{MockLlm, Reply};
use crate::support::{sample, UpProcess};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What the script reports, in order, when everything passed.
const SCENARIOS: [&str; 12] = [
    "login",
    "overview",
    "slo",
    "debate-live",
    "breaker",
    "maintenance",
    "drill",
    "phone",
    "reader-refused",
    "developer-keys",
    "logout",
    "hygiene",
];

const CHROMIUM: &str = "/usr/bin/chromium";

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_and_a_developer_use_the_pages_in_a_real_browser() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: run scripts/setup.sh (it installs Debian's chromium)"
    );
    assert!(
        browser_dir().join("node_modules/playwright-core").exists(),
        "tests/browser has no node_modules: run scripts/setup.sh (it runs npm ci there)"
    );
    let mock = MockLlm::start().await;
    // Each provider call takes a while, so a debate is still running when the page watches it.
    mock.always(Reply::Slow(
        Duration::from_millis(1500),
        Box::new(Reply::Answer),
    ));
    let llm = mock.base_url("v1");
    let mut up = UpProcess::start(&[
        ("ANTHROPIC_API_KEY", "test-anthropic-key"),
        ("ARAGORA_ANTHROPIC_BASE_URL", &llm),
        ("OPENAI_API_KEY", "test-openai-key"),
        ("ARAGORA_OPENAI_BASE_URL", &llm),
        ("ARAGORA_AGENT_MAX_RETRIES", "0"),
        ("ARAGORA_CIRCUIT_BREAKER_THRESHOLD", "1"),
    ])
    .await;
    let printed = up.announcement("               ara_");
    let admin_key = format!("ara_{}", printed.trim());

    let created = up
        .client
        .post(format!("{}/api/auth/api-key", up.base))
        .json(&json!({"name": "console-reader", "role": "reader"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "no reader key");
    let reader: serde_json::Value = created.json().await.unwrap();
    let reader_key = reader["key"].as_str().unwrap().to_string();

    // The pages as the gateway serves them: the strict policy survives the edge's own headers.
    let page = up
        .client
        .get(format!("{}/admin", up.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let header = |name: &str| page.headers()[name].to_str().unwrap().to_string();
    assert_eq!(
        header("content-security-policy"),
        aragora_telemetry::PAGE_CONTENT_SECURITY_POLICY
    );
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert_eq!(header("cache-control"), "no-cache");

    let kept = std::env::var_os("ARAGORA_CONSOLE_SCREENSHOTS").map(PathBuf::from);
    let scratch = tempfile::tempdir().unwrap();
    let shots = kept.unwrap_or_else(|| scratch.path().to_path_buf());
    let run = tokio::process::Command::new("node")
        .arg("console.mjs")
        .current_dir(browser_dir())
        .env("ARAGORA_URL", &up.base)
        .env("ARAGORA_ADMIN_KEY", &admin_key)
        .env("ARAGORA_READER_KEY", &reader_key)
        .env("ARAGORA_SCREENSHOTS", &shots)
        .env("CHROMIUM", CHROMIUM)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(420), run)
        .await
        .expect("the browser script did not finish within 7 minutes")
        .expect("node runs (scripts/setup.sh installs it)");
    let report = crate::support::describe_output(&output);
    assert!(
        output.status.success(),
        "{report}\nscreenshots in {}\nup's log:\n{}",
        shots.display(),
        up.log_text()
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let passed: Vec<&str> = stdout
        .lines()
        .filter_map(|line| line.strip_prefix("ok "))
        .collect();
    assert_eq!(passed, SCENARIOS, "{report}");

    for shot in [
        "overview-1280.png",
        "slo-1280.png",
        "dr-1280.png",
        "overview-390.png",
        "slo-390.png",
    ] {
        let bytes = std::fs::read(shots.join(shot)).unwrap_or_default();
        assert!(
            bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
            "{shot} is not a real screenshot ({} bytes)",
            bytes.len()
        );
    }

    // The gateway labelled the pages by their templates, not as `unmatched`.
    let metrics = crate::support::get_text(
        &reqwest::Client::new(),
        &format!("http://127.0.0.1:{}/metrics", up.admin),
    )
    .await;
    for route in ["/admin", "/developer", "/console/assets/{version}/{file}"] {
        let series = format!(
            "aragora_http_requests_total{{method=\"GET\",route=\"{route}\",status=\"200\"}}"
        );
        assert!(
            sample(&metrics, &series).is_some_and(|count| count >= 1.0),
            "no {series} in the gateway's metrics"
        );
    }
    let log = up.log_text();
    for key in [&admin_key, &reader_key] {
        assert!(!log.contains(key.as_str()), "a key reached up's log");
    }
}
