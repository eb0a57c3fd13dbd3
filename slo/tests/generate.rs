//! The generated files: that they match the committed ones, and what the real promtool and
//! amtool say of them.

use aragora_slo::generate::{self, GeneratedFile, OPERATIONAL_TESTS, SLO_TESTS};
use aragora_slo::receivers::ReceiverSettings;
use aragora_slo::SloSettings;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// What `aragora slo generate --out alerts` writes with no SLO_* variables set.
fn default_files() -> Vec<GeneratedFile> {
    let settings = SloSettings::from_env(&HashMap::new()).unwrap();
    aragora_slo::generate(&settings.default_spec(), &settings).unwrap()
}

/// Runs a tool of the Debian packages `prometheus` / `prometheus-alertmanager`.
fn run(tool: &str, args: &[&str], dir: &Path) -> Output {
    Command::new(tool)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|err| {
            panic!("cannot run {tool} ({err}); install it with scripts/setup.sh (Debian packages prometheus, prometheus-alertmanager)")
        })
}

fn assert_success(output: &Output, what: &str) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{what} failed:\n{text}");
    text
}

#[test]
fn committed_alerts_match_the_generator() {
    for file in default_files() {
        let path = repo_root().join("alerts").join(file.name);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == file.text,
            "alerts/{} differs from what the generator writes; run `aragora slo generate --out alerts` \
             (with no SLO_* variables set) and commit",
            file.name
        );
    }
}

#[test]
fn committed_prometheus_rules_match_the_generator() {
    let settings = SloSettings::from_env(&HashMap::new()).unwrap();
    let file = generate::prometheus_rules(&settings.default_spec(), &settings).unwrap();
    let path = repo_root().join("deploy/k8s/base").join(file.name);
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == file.text,
        "deploy/k8s/base/{} differs from what the generator writes; run `aragora slo generate \
         --prometheus-rule deploy/k8s/base/{}` (with no SLO_* variables set) and commit",
        file.name,
        file.name
    );
}

#[test]
fn prometheus_rules_hold_exactly_the_groups_of_the_rule_files() {
    let settings = SloSettings::from_env(&HashMap::new()).unwrap();
    let operator = generate::prometheus_rules(&settings.default_spec(), &settings).unwrap();
    let objects: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&operator.text)
        .map(|doc| serde::Deserialize::deserialize(doc).unwrap())
        .collect();
    let names: Vec<&str> = objects
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["aragora-slo", "aragora-operational"]);
    for (object, rule_file) in objects
        .iter()
        .zip([generate::SLO_RULES, generate::OPERATIONAL_RULES])
    {
        assert_eq!(object["kind"], "PrometheusRule");
        assert_eq!(object["apiVersion"], "monitoring.coreos.com/v1");
        let file = default_files()
            .into_iter()
            .find(|f| f.name == rule_file)
            .unwrap();
        let rules: serde_yaml::Value = serde_yaml::from_str(&file.text).unwrap();
        assert_eq!(object["spec"], rules, "{rule_file}");
    }
}

#[test]
fn promtool_accepts_the_rules_and_their_tests_pass() {
    let dir = tempfile::tempdir().unwrap();
    generate::write(dir.path(), &default_files()).unwrap();
    let check = run(
        "promtool",
        &["check", "rules", "slo-rules.yaml", "operational-rules.yaml"],
        dir.path(),
    );
    let text = assert_success(&check, "promtool check rules");
    assert!(text.contains("SUCCESS: 33 rules found"), "{text}");
    let test = run(
        "promtool",
        &["test", "rules", SLO_TESTS, OPERATIONAL_TESTS],
        dir.path(),
    );
    assert_success(&test, "promtool test rules");
}

#[test]
fn promtool_accepts_the_rules_of_another_services_sloth_spec() {
    let spec =
        aragora_slo::load_spec(&repo_root().join("slo/specs/examples/sloth-other-service.yaml"))
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = aragora_slo::generate(&spec, &SloSettings::default()).unwrap();
    generate::write(dir.path(), &files).unwrap();
    let check = run(
        "promtool",
        &["check", "rules", "slo-rules.yaml"],
        dir.path(),
    );
    let text = assert_success(&check, "promtool check rules");
    // Per SLO: 8 SLI rules (7 windows and the period), 7 metadata rules, 2 alerts.
    assert!(text.contains("SUCCESS: 34 rules found"), "{text}");
    let rules = std::fs::read_to_string(dir.path().join("slo-rules.yaml")).unwrap();
    assert!(
        rules.contains("http_request_duration_seconds_bucket")
            && rules.contains("MyServiceHighErrorRate"),
        "{rules}"
    );
}

#[test]
fn every_alert_has_tests_that_fire_it_and_tests_that_must_not() {
    let files = default_files();
    let rules: String = files
        .iter()
        .filter(|f| !f.name.contains(".test."))
        .map(|f| f.text.clone())
        .collect();
    let tests: String = files
        .iter()
        .filter(|f| f.name.contains(".test."))
        .map(|f| f.text.clone())
        .collect();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- alert: "))
        .collect();
    // Runbook table, DR, security, resource exhaustion, webhooks, infrastructure (TLS and OCSP
    // included); page and ticket per SLO.
    assert_eq!(alerts.len(), 15 + 5 + 1 + 1 + 2 + 9 + 3 * 2, "{alerts:?}");
    for alert in alerts {
        let groups = |kind: &str| tests.matches(&format!("'{alert}{kind}")).count();
        let slo_groups = tests.matches(&format!("'{alert} (")).count();
        assert!(
            groups(" fires:") == 1 && groups(" stays quiet:") >= 2 || slo_groups == 4,
            "{alert} lacks a firing test or two that must stay quiet"
        );
    }
    for slo in ["availability", "latency", "debate-success"] {
        for scenario in [
            "pages",
            "opens a ticket",
            "zero traffic stays quiet",
            "blip",
        ] {
            assert!(
                tests
                    .lines()
                    .any(|l| l.contains(&format!("({slo}): ")) && l.contains(scenario)),
                "SLO {slo} lacks the {scenario:?} test"
            );
        }
    }
}

#[test]
fn a_failing_promtool_test_is_reported() {
    // Guards the guard: a test expecting the wrong alert must make promtool fail.
    let dir = tempfile::tempdir().unwrap();
    let mut files = default_files();
    let tests = files
        .iter_mut()
        .find(|f| f.name == OPERATIONAL_TESTS)
        .unwrap();
    tests.text = tests.text.replace("severity: critical", "severity: info");
    generate::write(dir.path(), &files).unwrap();
    let output = run(
        "promtool",
        &["test", "rules", OPERATIONAL_TESTS],
        dir.path(),
    );
    assert!(!output.status.success());
}

#[test]
fn committed_alertmanager_config_matches_the_renderer() {
    let rendered = ReceiverSettings::from_env(&HashMap::new())
        .unwrap()
        .render();
    let committed =
        std::fs::read_to_string(repo_root().join("deploy/alertmanager/alertmanager.yml"))
            .unwrap_or_default();
    assert!(
        committed == rendered,
        "deploy/alertmanager/alertmanager.yml differs from what the renderer writes; run \
         `aragora slo generate --out alerts --alertmanager deploy/alertmanager/alertmanager.yml` \
         (with no ARAGORA_ALERT_* variables set) and commit"
    );
}

#[test]
fn amtool_accepts_receivers_with_every_setting_and_pages_still_reach_the_pager() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("webhook.token");
    let password = dir.path().join("smtp.password");
    std::fs::write(&token, "a-webhook-token-for-amtool\n").unwrap();
    std::fs::write(&password, "smtp-password\n").unwrap();
    let settings = ReceiverSettings::from_env(&aragora_config::env_map(&[
        (
            "ARAGORA_ALERT_PAGER_WEBHOOK_URL",
            "https://events.example.com/v2/enqueue",
        ),
        (
            "ARAGORA_ALERT_CHAT_WEBHOOK_URL",
            "https://chat.example.com/hooks/aragora",
        ),
        ("ARAGORA_ALERT_WEBHOOK_TOKEN_FILE", token.to_str().unwrap()),
        ("ARAGORA_ALERT_EMAIL_TO", "oncall@example.com"),
        ("ARAGORA_ALERT_SMTP_SMARTHOST", "smtp.example.com:587"),
        ("ARAGORA_ALERT_SMTP_AUTH_USERNAME", "alerts"),
        (
            "ARAGORA_ALERT_SMTP_AUTH_PASSWORD_FILE",
            password.to_str().unwrap(),
        ),
    ]))
    .unwrap();
    let config = dir.path().join("alertmanager.yml");
    let text = settings.render();
    std::fs::write(&config, &text).unwrap();
    assert!(
        !text.contains("smtp-password") && !text.contains("a-webhook-token"),
        "{text}"
    );
    let config = config.to_str().unwrap();
    let checked = assert_success(
        &run("amtool", &["check-config", config], dir.path()),
        "amtool check-config",
    );
    assert!(checked.contains("2 receivers"), "{checked}");
    let output = run(
        "amtool",
        &[
            "config",
            "routes",
            "test",
            "--config.file",
            config,
            "severity=critical",
        ],
        dir.path(),
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "pager");
}

#[test]
fn alertmanager_config_is_valid_and_routes_by_severity() {
    let config = repo_root().join("deploy/alertmanager/alertmanager.yml");
    let config = config.to_str().unwrap();
    assert_success(
        &run("amtool", &["check-config", config], &repo_root()),
        "amtool check-config",
    );
    let route = |labels: &[&str]| {
        let mut args = vec!["config", "routes", "test", "--config.file", config];
        args.extend(labels);
        let output = run("amtool", &args, &repo_root());
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    };
    assert_eq!(
        route(&[
            "severity=critical",
            "sloth_severity=page",
            "sloth_slo=availability"
        ]),
        "pager"
    );
    assert_eq!(
        route(&[
            "severity=warning",
            "sloth_severity=ticket",
            "sloth_slo=availability"
        ]),
        "chat"
    );
    assert_eq!(
        route(&["alertname=AragoraHighMemoryUsage", "severity=warning"]),
        "chat"
    );
}

#[test]
fn alertmanager_holds_an_slo_ticket_while_its_page_fires() {
    let text =
        std::fs::read_to_string(repo_root().join("deploy/alertmanager/alertmanager.yml")).unwrap();
    let config: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let inhibit = config["inhibit_rules"].as_sequence().unwrap();
    let page_over_ticket = inhibit.iter().find(|rule| {
        rule["source_matchers"][0] == "sloth_severity=\"page\""
            && rule["target_matchers"][0] == "sloth_severity=\"ticket\""
    });
    let rule = page_over_ticket.expect("an inhibit rule from page to ticket");
    let equal: Vec<&str> = rule["equal"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(equal, ["sloth_service", "sloth_slo"]);
    let group_by = config["route"]["group_by"].as_sequence().unwrap();
    assert!(group_by.iter().any(|label| label == "sloth_slo"));
}

#[test]
fn every_alert_has_its_runbook_heading() {
    let runbook = std::fs::read_to_string(repo_root().join("alerts/README.md")).unwrap();
    for file in default_files() {
        for alert in file
            .text
            .lines()
            .filter_map(|line| line.trim().strip_prefix("- alert: "))
        {
            assert!(
                runbook.contains(&format!("\n### {alert}\n")),
                "alerts/README.md lacks a `### {alert}` heading, which its runbook_url points to"
            );
        }
    }
}

#[test]
fn prometheus_config_loads_the_rules_and_names_the_jobs_they_select() {
    let config = repo_root().join("deploy/prometheus/prometheus.yml");
    let output = run(
        "promtool",
        &["check", "config", config.to_str().unwrap()],
        &repo_root(),
    );
    let text = assert_success(&output, "promtool check config");
    assert!(text.contains("SUCCESS: 2 rule files found"), "{text}");
    let config: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(config).unwrap()).unwrap();
    let jobs: Vec<&str> = config["scrape_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|job| job["job_name"].as_str())
        .collect();
    assert_eq!(
        jobs,
        [
            aragora_slo::settings::GATEWAY_JOB,
            aragora_slo::settings::ENGINE_JOB
        ]
    );
}
