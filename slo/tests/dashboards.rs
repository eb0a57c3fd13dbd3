//! The Grafana dashboards: committed as generated, every query names something that exists
//! and parses.

use aragora_slo::check::catalogue_entry;
use aragora_slo::dashboards::{dashboards, RULE_SERIES};
use aragora_slo::generate::{dashboard_files, SLO_RULES};
use aragora_slo::promql::selectors;
use aragora_slo::SloSettings;
use std::path::Path;
use std::process::Command;

fn all() -> Vec<aragora_slo::dashboards::Dashboard> {
    dashboards(0.5)
}

#[test]
fn committed_dashboards_match_the_generator() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards");
    for file in dashboard_files(&SloSettings::default()) {
        let committed = std::fs::read_to_string(dir.join(file.name)).unwrap_or_default();
        assert!(
            committed == file.text,
            "dashboards/{} differs from what the generator writes; run \
             `aragora slo generate --out alerts --dashboards dashboards` and commit",
            file.name
        );
    }
}

#[test]
fn the_runbooks_five_dashboards_with_stable_uids_and_a_datasource_variable() {
    let files: Vec<&str> = all().iter().map(|d| d.file).collect();
    assert_eq!(
        files,
        [
            "aragora-overview.json",
            "api-performance.json",
            "debate-analytics.json",
            "slo-dashboard.json",
            "receipt-retention.json"
        ]
    );
    let uids: Vec<String> = all()
        .iter()
        .map(|d| d.json["uid"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        uids,
        [
            "aragora-overview",
            "aragora-api-performance",
            "aragora-debate-analytics",
            "aragora-slo",
            "aragora-receipt-retention"
        ]
    );
    for dashboard in all() {
        let json = &dashboard.json;
        let variables = json["templating"]["list"].as_array().unwrap();
        assert_eq!(variables[0]["type"], "datasource");
        for query in dashboard.queries() {
            for used in query.split('$').skip(1) {
                let name: String = used.chars().take_while(|c| c.is_alphanumeric()).collect();
                assert!(
                    variables.iter().any(|v| v["name"] == name.as_str()),
                    "{}: ${name} is not a variable of the dashboard",
                    dashboard.file
                );
            }
        }
        for panel in json["panels"].as_array().unwrap() {
            assert_eq!(panel["datasource"]["uid"], "${datasource}", "{panel}");
            let unit = panel["fieldConfig"]["defaults"]["unit"].as_str().unwrap();
            assert!(!unit.is_empty(), "{panel}");
            assert!(!panel["targets"].as_array().unwrap().is_empty(), "{panel}");
        }
    }
}

#[test]
fn every_query_names_an_exported_metric_or_a_generated_rule() {
    let rules = aragora_slo::generate(
        &SloSettings::default().default_spec(),
        &SloSettings::default(),
    )
    .unwrap()
    .into_iter()
    .find(|f| f.name == SLO_RULES)
    .unwrap()
    .text;
    for series in RULE_SERIES.iter().filter(|s| **s != "ALERTS") {
        assert!(
            rules.contains(&format!("record: {series}\n")),
            "{series} is not recorded"
        );
    }
    for dashboard in all() {
        for query in dashboard.queries() {
            for selector in selectors(&query) {
                assert!(
                    catalogue_entry(&selector.metric).is_some()
                        || RULE_SERIES.contains(&selector.metric.as_str()),
                    "{}: {query} names {}, which nothing exports",
                    dashboard.file,
                    selector.metric
                );
            }
        }
    }
}

#[test]
fn every_query_parses_in_promtool() {
    // Each query as a recording rule: `promtool check rules` parses every expression.
    let mut rules = String::from("groups:\n- name: dashboards\n  rules:\n");
    for (index, query) in all().iter().flat_map(|d| d.queries()).enumerate() {
        let query = query.replace("$slo", "availability");
        rules.push_str(&format!(
            "  - record: dashboard:query{index}\n    expr: {}\n",
            serde_json::to_string(&query).unwrap()
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dashboards.yaml");
    std::fs::write(&path, rules).unwrap();
    let output = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&path)
        .output()
        .expect("promtool (Debian package prometheus; scripts/setup.sh installs it)");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
